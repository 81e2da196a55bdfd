//! Accounts: sign-up under the configured policy, and log-in with a per-address throttle.

use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use uuid::Uuid;

use crate::config::SignupPolicy;
use crate::db::models::audit::{self, NewEntry};
use crate::db::models::{login_failure, user};
use crate::db::{Database, DbError};
use crate::domain::{EmailAddress, Password, UserId};
use crate::problem::FieldError;

/// Failed log-ins for one address within [`THROTTLE_WINDOW`] after which log-in is refused.
pub const MAX_FAILED_LOGINS: i64 = 5;
/// How far back failed log-ins count.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Why an account was not created or a log-in refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The sign-up policy allows no new account now.
    #[error("sign-up is closed on this relay")]
    SignupClosed,
    /// The email address or the password is not acceptable, field by field.
    #[error("the input is invalid")]
    Invalid(Vec<FieldError>),
    /// The same answer for an unknown address and a wrong password, so that log-in does not
    /// tell who has an account.
    #[error("wrong email address or password")]
    WrongCredentials,
    /// Too many failed log-ins for the address; log-in opens again after `retry_after`.
    #[error("too many failed log-ins for this address")]
    Throttled { retry_after: Duration },
    /// PostgreSQL failed or did not answer in time.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A bug or an unforeseen failure.
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

fn invalid(field: &str, message: impl ToString) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_string(),
    }
}

/// Parses an address and a password, reporting every field that fails.
fn parse_credentials(
    email: &str,
    password: &str,
) -> Result<(EmailAddress, Password), AccountError> {
    match (EmailAddress::parse(email), Password::parse(password)) {
        (Ok(email), Ok(password)) => Ok((email, password)),
        (email, password) => Err(AccountError::Invalid(
            [
                email.err().map(|e| invalid("email", e)),
                password.err().map(|e| invalid("password", e)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        )),
    }
}

/// A new account's address, and its password's hash. argon2id is deliberately slow: it hashes
/// off the async workers.
pub async fn new_credentials(
    email: &str,
    password: &str,
) -> Result<(EmailAddress, String), AccountError> {
    let (email, password) = parse_credentials(email, password)?;
    let hash = tokio::task::spawn_blocking(move || password.hash())
        .await
        .context("hashing a password")?;
    Ok((email, hash))
}

fn new_user<'a>(email: &'a EmailAddress, password_hash: &'a str) -> user::NewUser<'a> {
    user::NewUser {
        id: UserId(Uuid::new_v4()),
        email: email.as_str(),
        password_hash,
    }
}

/// Whether the sign-up page may create an account now.
pub async fn signup_open(db: &Database, policy: SignupPolicy) -> Result<bool, DbError> {
    match policy {
        SignupPolicy::Open => Ok(true),
        SignupPolicy::Closed => Ok(false),
        SignupPolicy::First => Ok(!db.run(async |conn| user::any_exist(conn).await).await?),
    }
}

/// Creates an account from the sign-up page, if `policy` allows one now.
pub async fn sign_up(
    db: &Database,
    policy: SignupPolicy,
    email: &str,
    password: &str,
) -> Result<UserId, AccountError> {
    match policy {
        SignupPolicy::Closed => Err(AccountError::SignupClosed),
        SignupPolicy::Open => create_user(db, email, password).await,
        SignupPolicy::First => {
            let (email, password_hash) = new_credentials(email, password).await?;
            let new = new_user(&email, &password_hash);
            db.run(async |conn| user::insert_first(conn, &new).await)
                .await?
                .map(|created| created.id)
                .ok_or(AccountError::SignupClosed)
        }
    }
}

/// Creates an account whatever the sign-up policy (an operator's `spenza users create`, or an
/// open sign-up page).
pub async fn create_user(
    db: &Database,
    email: &str,
    password: &str,
) -> Result<UserId, AccountError> {
    let (email, password_hash) = new_credentials(email, password).await?;
    let new = new_user(&email, &password_hash);
    match db
        .run(async |conn| user::insert_with_workspace(conn, &new).await)
        .await
    {
        Ok(created) => Ok(created.id),
        Err(DbError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _))) => {
            Err(AccountError::Invalid(vec![invalid(
                "email",
                "an account with this address exists: log in instead",
            )]))
        }
        Err(other) => Err(other.into()),
    }
}

/// A hash no password matches, checked when an address has no account, so that an unknown
/// address takes as long to refuse as a wrong password.
static NO_SUCH_USER: LazyLock<String> = LazyLock::new(|| {
    Password::parse(&hex::encode(crate::domain::random_bytes::<32>()))
        .expect("64 characters is a valid password")
        .hash()
});

/// Checks an address and a password, and records a failure in the audit log (a success is
/// recorded with the session it starts). After [`MAX_FAILED_LOGINS`] failures for an address within
/// [`THROTTLE_WINDOW`], its log-ins are refused unchecked until the window passes; a success
/// forgets its failures.
pub async fn log_in(
    db: &Database,
    email: &str,
    password: &str,
    ip: Option<String>,
) -> Result<UserId, AccountError> {
    let Ok(email) = EmailAddress::parse(email) else {
        return Err(AccountError::WrongCredentials);
    };
    let (attempt, recent) = db
        .run(async |conn| login_failure::record(conn, email.as_str(), THROTTLE_WINDOW).await)
        .await?;
    if recent.count > MAX_FAILED_LOGINS {
        let line = NewEntry::about_account("user.sign_in_failed", email.as_str(), None, ip)
            .detail("refused unchecked: too many failures");
        db.run(async |conn| {
            use diesel_async::AsyncConnection;
            conn.transaction(async |conn| {
                login_failure::withdraw(conn, attempt).await?;
                audit::append(conn, &[line]).await
            })
            .await
        })
        .await?;
        let reopens = recent.oldest.map_or(THROTTLE_WINDOW, |oldest| {
            let elapsed = (chrono::Utc::now() - oldest).to_std().unwrap_or_default();
            THROTTLE_WINDOW.saturating_sub(elapsed)
        });
        return Err(AccountError::Throttled {
            retry_after: reopens.max(Duration::from_secs(1)),
        });
    }
    let found = db
        .run(async |conn| user::find_by_email(conn, &email).await)
        .await?;
    let password = password.to_owned();
    let stored = found.as_ref().map(|u| u.password_hash.clone());
    let matches = tokio::task::spawn_blocking(move || {
        let stored = stored.as_deref().unwrap_or(&NO_SUCH_USER);
        // A password of a length that cannot have been set is refused unchecked: its timing
        // tells nothing about whether the address has an account.
        Password::parse(&password).is_ok_and(|password| password.verify(stored))
    })
    .await
    .context("checking a password")?;
    match found {
        Some(user) if matches => {
            db.run(async |conn| login_failure::clear(conn, email.as_str()).await)
                .await?;
            Ok(user.id)
        }
        found => {
            let line = NewEntry::about_account(
                "user.sign_in_failed",
                email.as_str(),
                found.map(|user| user.id),
                ip,
            );
            db.run(async |conn| audit::append(conn, &[line]).await)
                .await?;
            Err(AccountError::WrongCredentials)
        }
    }
}
