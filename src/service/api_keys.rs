//! API keys: created (shown once), listed, revoked.

use uuid::Uuid;

use super::ServiceError;
use crate::db::Database;
use crate::db::models::api_key::{self, ApiKeyRow, NewApiKey};
use crate::domain::{ApiKey, ApiKeyId, UserId};

/// The longest key name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// Creates a key named `name` for `user`; the key itself is returned once and never stored.
pub async fn create(db: &Database, user: UserId, name: &str) -> Result<ApiKey, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            "name",
            format!("a key name needs 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    let key = ApiKey::generate();
    let hash = key.hash();
    let new = NewApiKey {
        id: ApiKeyId(Uuid::new_v4()),
        user_id: user,
        name,
        prefix: key.shown_prefix(),
        key_hash: &hash,
    };
    db.run(async |conn| api_key::insert(conn, &new).await)
        .await?;
    Ok(key)
}

/// A user's keys that still work, newest first.
pub async fn list(db: &Database, user: UserId) -> Result<Vec<ApiKeyRow>, ServiceError> {
    Ok(db
        .run(async |conn| api_key::list_for_user(conn, user).await)
        .await?)
}

/// Revokes one of a user's keys: it stops working at once.
pub async fn revoke(db: &Database, user: UserId, id: ApiKeyId) -> Result<(), ServiceError> {
    let revoked = db
        .run(async |conn| api_key::revoke_for_user(conn, user, id).await)
        .await?;
    if revoked {
        Ok(())
    } else {
        Err(ServiceError::NotFound("API key"))
    }
}
