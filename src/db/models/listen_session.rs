//! `listen_sessions`: the `spenza listen` sessions connected now, each kept alive by the replica
//! that holds its WebSocket.

use chrono::{DateTime, Utc};
use diesel::dsl::{now, sql};
use diesel::expression::SqlLiteral;
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{api_keys, listen_sessions};
use crate::domain::{ApiKeyId, Role, SubscriptionId, UserId};

/// How often a replica notes that a session it holds is still connected.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long, in seconds, a session's row counts without being refreshed: past it, the replica
/// that held it is gone, and the session with it. Measured on the database's clock.
pub const LIVE_SECONDS: i32 = 30;

/// A connected session, as its subscription's page shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = listen_sessions)]
pub struct ListenSession {
    pub subscription_id: SubscriptionId,
    /// The address the CLI connected from.
    pub address: Option<String>,
    /// The replica that holds its WebSocket.
    pub replica: String,
    pub connected_at: DateTime<Utc>,
}

/// A session to open.
pub struct NewListenSession<'a> {
    pub id: Uuid,
    pub subscription_id: SubscriptionId,
    pub api_key: ApiKeyId,
    pub address: Option<&'a str>,
    pub replica: &'a str,
}

/// The oldest refresh of a connected session, on the database's clock (as the reaper reads it).
fn live_since() -> SqlLiteral<Timestamptz> {
    sql(&format!("now() - interval '{LIVE_SECONDS} seconds'"))
}

/// Whose sessions a key's count against: its creator's, else its own.
async fn holder_of(conn: &mut AsyncPgConnection, key: ApiKeyId) -> QueryResult<Uuid> {
    let creator: Option<UserId> = api_keys::table
        .filter(api_keys::id.eq(key))
        .select(api_keys::created_by)
        .first(conn)
        .await?;
    Ok(creator.map_or(key.0, |user| user.0))
}

/// How many sessions the holder of `key` has connected.
async fn connected(conn: &mut AsyncPgConnection, holder: Uuid) -> QueryResult<i64> {
    listen_sessions::table
        .filter(listen_sessions::holder.eq(holder))
        .filter(listen_sessions::seen_at.gt(live_since()))
        .count()
        .get_result(conn)
        .await
}

/// Whether the holder of `key` may open one more session: a check before a `listen` makes or
/// changes its subscription ([`open`] checks again, for good).
pub async fn has_room(
    conn: &mut AsyncPgConnection,
    key: ApiKeyId,
    limit: u32,
) -> QueryResult<bool> {
    let holder = holder_of(conn, key).await?;
    Ok(connected(conn, holder).await? < i64::from(limit))
}

/// Opens a session unless its holder (the key's creator, else the key) has `limit` connected
/// already; false when it has. Holders are counted one at a time (a transaction-scoped lock on
/// the holder), so two sessions opening at once cannot both take the last place. Rows of
/// sessions no longer refreshed are removed on the way.
pub async fn open(
    conn: &mut AsyncPgConnection,
    session: &NewListenSession<'_>,
    limit: u32,
) -> QueryResult<bool> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        let holder = holder_of(conn, session.api_key).await?;
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1::text))")
            .bind::<diesel::sql_types::Uuid, _>(holder)
            .execute(conn)
            .await?;
        diesel::delete(listen_sessions::table.filter(listen_sessions::seen_at.le(live_since())))
            .execute(conn)
            .await?;
        if connected(conn, holder).await? >= i64::from(limit) {
            return Ok(false);
        }
        diesel::insert_into(listen_sessions::table)
            .values((
                listen_sessions::id.eq(session.id),
                listen_sessions::subscription_id.eq(session.subscription_id),
                listen_sessions::holder.eq(holder),
                listen_sessions::api_key_id.eq(session.api_key),
                listen_sessions::address.eq(session.address),
                listen_sessions::replica.eq(session.replica),
            ))
            .execute(conn)
            .await?;
        Ok(true)
    })
    .await
}

/// Where a session stands when its replica refreshes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// Still connected, its key still good.
    Live,
    /// Its key was revoked, or its role may no longer change anything: the row is removed.
    KeyRevoked,
    /// Its row is gone: its subscription was deleted, or it lapsed while its replica could not
    /// refresh it.
    Gone,
}

/// Notes that a session is still connected, as long as its key is unrevoked and of a role that
/// may listen (a developer's or above).
pub async fn refresh(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Refreshed> {
    let listening = [Role::Owner, Role::Admin, Role::Developer].map(Role::as_str);
    let valid_key = api_keys::table
        .filter(api_keys::id.nullable().eq(listen_sessions::api_key_id))
        .filter(api_keys::revoked_at.is_null())
        .filter(api_keys::role.eq_any(listening));
    let updated = diesel::update(
        listen_sessions::table
            .find(id)
            .filter(diesel::dsl::exists(valid_key)),
    )
    .set(listen_sessions::seen_at.eq(now))
    .execute(conn)
    .await?;
    if updated > 0 {
        return Ok(Refreshed::Live);
    }
    let removed = diesel::delete(listen_sessions::table.find(id))
        .execute(conn)
        .await?;
    Ok(if removed > 0 {
        Refreshed::KeyRevoked
    } else {
        Refreshed::Gone
    })
}

/// Ends a session.
pub async fn close(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<()> {
    diesel::delete(listen_sessions::table.find(id))
        .execute(conn)
        .await
        .map(drop)
}

/// The sessions connected to these subscriptions, oldest first.
pub async fn of_subscriptions(
    conn: &mut AsyncPgConnection,
    subscriptions: &[SubscriptionId],
) -> QueryResult<Vec<ListenSession>> {
    listen_sessions::table
        .filter(listen_sessions::subscription_id.eq_any(subscriptions))
        .filter(listen_sessions::seen_at.gt(live_since()))
        .order(listen_sessions::connected_at)
        .select(ListenSession::as_select())
        .load(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reaper_counts_a_session_live_for_as_long_as_the_rest_do() {
        assert!(
            crate::db::models::delivery::LISTENED
                .contains(&format!("now() - interval '{LIVE_SECONDS} seconds'")),
            "{}",
            crate::db::models::delivery::LISTENED
        );
        assert!(REFRESH_EVERY.as_secs() * 2 < u64::try_from(LIVE_SECONDS).unwrap());
    }
}
