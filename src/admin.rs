//! Bootstrap commands that work without the dashboard: create a user, create an API key.

use anyhow::Context;

use crate::auth::{self, AccountError};
use crate::config::DatabaseSettings;
use crate::db::models::user;
use crate::db::{self, Database};
use crate::domain::{ApiKey, EmailAddress, UserId};
use crate::service;

async fn connect(settings: &DatabaseSettings) -> anyhow::Result<Database> {
    db::migrations::run(settings.url.expose()).await?;
    Ok(Database::new(
        db::build_pool(settings, 1, db::Commits::Durable)?,
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

/// Creates an API key for the user with `email`; returns the key, which is not stored.
pub async fn create_api_key(
    settings: &DatabaseSettings,
    email: &str,
    name: &str,
) -> anyhow::Result<ApiKey> {
    let email = EmailAddress::parse(email)?;
    let db = connect(settings).await?;
    let owner = db
        .run(async |conn| user::find_by_email(conn, &email).await)
        .await?
        .with_context(|| format!("no user has email {email}"))?;
    service::api_keys::create(&db, owner.id, name)
        .await
        .context("creating the key")
}
