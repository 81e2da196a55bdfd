//! Bootstrap commands that work without the dashboard: create a user, create an API key.

use anyhow::{Context, bail};
use uuid::Uuid;

use crate::config::DatabaseSettings;
use crate::db::models::{api_key, user};
use crate::db::{self, Database};
use crate::domain::{ApiKey, ApiKeyId, EmailAddress, Password, UserId};

async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Database> {
    db::migrations::run(&settings.url).await?;
    Ok(Database::new(
        db::build_pool(settings, 1)?,
        settings.timeout,
    ))
}

/// Creates a user; returns its id.
pub async fn create_user(
    settings: &DatabaseSettings,
    email: &str,
    password: &str,
) -> anyhow::Result<UserId> {
    let email = EmailAddress::parse(email)?;
    let password_hash = Password::parse(password)?.hash();
    let db = connect(settings).await?;
    if db
        .run(async |conn| user::find_by_email(conn, &email).await)
        .await?
        .is_some()
    {
        bail!("a user with email {email} already exists");
    }
    let new = user::NewUser {
        id: UserId(Uuid::new_v4()),
        email: email.as_str(),
        password_hash: &password_hash,
    };
    let created = db
        .run(async |conn| user::insert(conn, &new).await)
        .await
        .context("creating the user")?;
    Ok(created.id)
}

/// Creates an API key for the user with `email`; returns the key, which is not stored.
pub async fn create_api_key(
    settings: &DatabaseSettings,
    email: &str,
    name: &str,
) -> anyhow::Result<ApiKey> {
    let email = EmailAddress::parse(email)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        bail!("a key name needs 1 to 200 characters");
    }
    let db = connect(settings).await?;
    let owner = db
        .run(async |conn| user::find_by_email(conn, &email).await)
        .await?
        .with_context(|| format!("no user has email {email}"))?;
    let key = ApiKey::generate();
    let hash = key.hash();
    let new = api_key::NewApiKey {
        id: ApiKeyId(Uuid::new_v4()),
        user_id: owner.id,
        name,
        prefix: key.shown_prefix(),
        key_hash: &hash,
    };
    db.run(async |conn| api_key::insert(conn, &new).await)
        .await
        .context("storing the key")?;
    Ok(key)
}
