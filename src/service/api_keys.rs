//! API keys: created (shown once) with a role, listed with who created them, revoked. Keys are
//! the workspace's: admins and owners manage them, and no key gets a higher role than its maker.

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Actor, Permission, ServiceError};
use crate::db::Database;
use crate::db::models::api_key::{self, ApiKeyRow, NewApiKey};
use crate::db::models::audit;
use crate::domain::{ApiKey, ApiKeyId, Role};

/// The longest key name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// What the key is for: 1 to 200 characters.
    pub name: String,
    /// What the key may do; at most the creator's own role.
    pub role: Role,
}

/// Creates a key in the actor's workspace; the key itself is returned once, with its id, and
/// never stored.
pub async fn create(
    db: &Database,
    actor: &Actor,
    input: &ApiKeyIn,
) -> Result<(ApiKeyId, ApiKey), ServiceError> {
    actor.require(Permission::Administer)?;
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(ServiceError::invalid(
            "name",
            format!("a key name needs 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    if !actor.role.includes(input.role) {
        return Err(ServiceError::Forbidden(
            "a key's role can be at most its creator's",
        ));
    }
    let key = ApiKey::generate();
    let hash = key.hash();
    let new = NewApiKey {
        id: ApiKeyId(Uuid::new_v4()),
        workspace_id: actor.workspace,
        name,
        prefix: key.shown_prefix(),
        key_hash: &hash,
        role: input.role.as_str(),
        created_by: actor.user(),
    };
    let line = actor
        .audit("api_key.created", "api_key", new.id)
        .detail(format!("{name} ({})", input.role));
    db.run(async |conn| {
        use diesel_async::AsyncConnection;
        conn.transaction(async |conn| {
            api_key::insert(conn, &new).await?;
            audit::append(conn, &[line]).await
        })
        .await
    })
    .await?;
    Ok((new.id, key))
}

/// The workspace's keys that still work, newest first.
pub async fn list(db: &Database, actor: &Actor) -> Result<Vec<ApiKeyRow>, ServiceError> {
    actor.require(Permission::Administer)?;
    Ok(db
        .run(async |conn| api_key::list_in_workspace(conn, actor.workspace).await)
        .await?)
}

/// Revokes one of the workspace's keys: it stops working at once.
pub async fn revoke(db: &Database, actor: &Actor, id: ApiKeyId) -> Result<(), ServiceError> {
    actor.require(Permission::Administer)?;
    let revoked = db
        .run(async |conn| {
            use diesel_async::AsyncConnection;
            conn.transaction(async |conn| {
                let Some(name) = api_key::revoke_in_workspace(conn, actor.workspace, id).await?
                else {
                    return Ok(false);
                };
                let line = actor.audit("api_key.revoked", "api_key", id).detail(name);
                audit::append(conn, &[line]).await?;
                Ok(true)
            })
            .await
        })
        .await?;
    if revoked {
        Ok(())
    } else {
        Err(ServiceError::NotFound("API key"))
    }
}
