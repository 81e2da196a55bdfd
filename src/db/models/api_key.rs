//! `api_keys`: bearer keys for the JSON API. Only a hash of each key is stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::api_keys;
use crate::domain::{ApiKeyId, UserId};

/// A key as its owner sees it listed: never the key itself.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_keys)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key to create.
#[derive(Debug, Insertable)]
#[diesel(table_name = api_keys)]
pub struct NewApiKey<'a> {
    pub id: ApiKeyId,
    pub user_id: UserId,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a [u8],
}

/// Stores a new key.
pub async fn insert(conn: &mut AsyncPgConnection, key: &NewApiKey<'_>) -> QueryResult<()> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .execute(conn)
        .await
        .map(drop)
}

/// The owner of the unrevoked key with this hash, if any. Notes the use at most once a minute, so
/// that a busy API client does not turn every call into a write.
pub async fn owner_of(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> QueryResult<Option<UserId>> {
    let found: Option<(ApiKeyId, UserId, Option<DateTime<Utc>>)> = api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select((api_keys::id, api_keys::user_id, api_keys::last_used_at))
        .first(conn)
        .await
        .optional()?;
    let Some((id, owner, last_used_at)) = found else {
        return Ok(None);
    };
    if last_used_at.is_none_or(|at| Utc::now() - at > chrono::TimeDelta::minutes(1)) {
        diesel::update(api_keys::table.filter(api_keys::id.eq(id)))
            .set(api_keys::last_used_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
    }
    Ok(Some(owner))
}

/// A user's unrevoked keys, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::user_id.eq(user))
        .filter(api_keys::revoked_at.is_null())
        .order(api_keys::created_at.desc())
        .select(ApiKeyRow::as_select())
        .load(conn)
        .await
}

/// Revokes one of a user's keys; whether there was such an unrevoked key.
pub async fn revoke_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: ApiKeyId,
) -> QueryResult<bool> {
    diesel::update(
        api_keys::table
            .filter(api_keys::id.eq(id))
            .filter(api_keys::user_id.eq(user))
            .filter(api_keys::revoked_at.is_null()),
    )
    .set(api_keys::revoked_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(|revoked| revoked > 0)
}
