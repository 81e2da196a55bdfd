//! `api_keys`: bearer keys for the JSON API, each a workspace's, with a role. Only a hash of each
//! key is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{api_keys, users};
use crate::domain::{ApiKeyId, UserId, WorkspaceId};

/// A key as its workspace sees it listed: never the key itself.
#[derive(Debug, Clone, Queryable)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// Who created it; null once they are deleted, or for a key made with the CLI.
    pub created_by: Option<String>,
}

/// A key to create.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
    pub role: &'a str,
    pub created_by: Option<UserId>,
}

/// An unrevoked key, found by its hash.
#[derive(Debug, Clone, Queryable)]
pub struct KeyHolder {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub role: String,
    last_used_at: Option<DateTime<Utc>>,
}

/// Stores a new key.
pub async fn insert(conn: &mut AsyncPgConnection, key: &NewApiKey<'_>) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(conn)
        .await
        .map(drop)
}

/// The unrevoked key with this hash, if any. Notes the use at most once a minute, so that a busy
/// API client does not turn every call into a write.
pub async fn holder_of(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> QueryResult<Option<KeyHolder>> {
    let found: Option<KeyHolder> = api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select((
            api_keys::id,
            api_keys::workspace_id,
            api_keys::name,
            api_keys::role,
            api_keys::last_used_at,
        ))
        .first(conn)
        .await
        .optional()?;
    let Some(holder) = found else {
        return Ok(None);
    };
    if holder
        .last_used_at
        .is_none_or(|at| Utc::now() - at > chrono::TimeDelta::minutes(1))
    {
        diesel::update(api_keys::table.filter(api_keys::id.eq(holder.id)))
            .set(api_keys::last_used_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
    }
    Ok(Some(holder))
}

/// A workspace's unrevoked keys, newest first, with who created each.
pub async fn list_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .left_join(users::table)
        .filter(api_keys::workspace_id.eq(workspace))
        .filter(api_keys::revoked_at.is_null())
        .order(api_keys::created_at.desc())
        .select((
            api_keys::id,
            api_keys::name,
            api_keys::prefix,
            api_keys::role,
            api_keys::created_at,
            api_keys::last_used_at,
            users::email.nullable(),
        ))
        .load(conn)
        .await
}

/// Revokes one of a workspace's keys; its name when there was such an unrevoked key.
pub async fn revoke_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: ApiKeyId,
) -> QueryResult<Option<String>> {
    diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::workspace_id.eq(workspace))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(diesel::dsl::now))
    .returning(api_keys::name)
    .get_result(conn)
    .await
    .optional()
}
