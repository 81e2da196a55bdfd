//! Bootstrap commands that work without the dashboard: create a user, create an API key.

use anyhow::Context;

use crate::auth::{self, AccountError};
use crate::config::DatabaseSettings;
use crate::db::models::{user, workspace};
use crate::db::{self, Database};
use crate::domain::{ApiKey, EmailAddress, Role, UserId};
use crate::service::api_keys::ApiKeyIn;
use crate::service::{self, Actor, Principal};

async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Database> {
    db::migrations::run(settings.url.expose()).await?;
    Ok(Database::new(
        db::build_pool(settings, 1, db::Commits::Durable, db::Plans::Custom)?,
        settings.timeout,
    ))
}

/// Creates a user; returns its id.
pub async fn create_user(
    settings: &DatabaseSettings,
    email: &str,
    password: &str,
) -> anyhow::Result<UserId> {
    let db = connect(settings).await?;
    auth::create_user(&db, email, password)
        .await
        .map_err(|error| match error {
            AccountError::Invalid(fields) => anyhow::anyhow!(
                "{}",
                fields
                    .iter()
                    .map(|field| format!("{}: {}", field.field, field.message))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            other => anyhow::Error::new(other).context("creating the user"),
        })
}

/// Creates an admin API key, made by the user with `email`, in the first workspace they
/// administer (their own, for a user made with [`create_user`]); returns the key, which is not
/// stored.
pub async fn create_api_key(
    settings: &DatabaseSettings,
    email: &str,
    name: &str,
) -> anyhow::Result<ApiKey> {
    let email = EmailAddress::parse(email)?;
    let db = connect(settings).await?;
    let (maker, memberships) = db
        .run(async |conn| {
            let Some(found) = user::find_by_email(conn, &email).await? else {
                return Ok(None);
            };
            let memberships = workspace::memberships_of(conn, found.id).await?;
            Ok(Some((found, memberships)))
        })
        .await?
        .with_context(|| format!("no user has email {email}"))?;
    let (workspace, role) = memberships
        .iter()
        .find_map(|membership| {
            let role = membership.role.parse::<Role>().ok()?;
            role.includes(Role::Admin)
                .then_some((membership.workspace_id, role))
        })
        .with_context(|| format!("{email} administers no workspace"))?;
    let actor = Actor {
        workspace,
        role,
        who: Principal::User {
            id: maker.id,
            email: maker.email,
        },
        ip: None,
    };
    let input = ApiKeyIn {
        name: name.to_owned(),
        role: Role::Admin,
    };
    let (_, key) = service::api_keys::create(&db, &actor, &input)
        .await
        .context("creating the key")?;
    Ok(key)
}
