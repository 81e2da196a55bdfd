//! `api_keys`: bearer keys for the JSON API. Only a hash of each key is stored.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::api_keys;
use crate::domain::{ApiKeyId, UserId};

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

/// The owner of the unrevoked key with this hash, if any.
pub async fn owner_of(
    conn: &mut AsyncPgConnection,
    key_hash: &[u8],
) -> QueryResult<Option<UserId>> {
    api_keys::table
        .filter(api_keys::key_hash.eq(key_hash))
        .filter(api_keys::revoked_at.is_null())
        .select(api_keys::user_id)
        .first(conn)
        .await
        .optional()
}
