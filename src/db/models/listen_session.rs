//! `listen_sessions`: the `spenza listen` sessions connected now, each kept alive by the replica
//! that holds its WebSocket.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{api_keys, listen_sessions};
use crate::domain::{ApiKeyId, SubscriptionId};

/// How often a replica notes that a session it holds is still connected.
pub const REFRESH_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a session's row counts without being refreshed: past it, the replica that held it
/// is gone, and the session with it.
pub const LIVE_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// A connected session, as its subscription's page shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = listen_sessions)]
pub struct ListenSession {
    pub id: Uuid,
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

fn live_since() -> DateTime<Utc> {
    Utc::now() - chrono::TimeDelta::from_std(LIVE_FOR).unwrap_or_default()
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
        let creator: Option<Uuid> = api_keys::table
            .filter(api_keys::id.eq(session.api_key))
            .select(api_keys::created_by)
            .first::<Option<crate::domain::UserId>>(conn)
            .await?
            .map(|user| user.0);
        let holder = creator.unwrap_or(session.api_key.0);
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1::text))")
            .bind::<diesel::sql_types::Uuid, _>(holder)
            .execute(conn)
            .await?;
        diesel::delete(listen_sessions::table.filter(listen_sessions::seen_at.lt(live_since())))
            .execute(conn)
            .await?;
        let connected: i64 = listen_sessions::table
            .filter(listen_sessions::holder.eq(holder))
            .count()
            .get_result(conn)
            .await?;
        if connected >= i64::from(limit) {
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

/// Notes that a session is still connected; false when its row is gone (its subscription was
/// deleted, or it lapsed while its replica could not refresh it).
pub async fn refresh(conn: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::update(listen_sessions::table.find(id))
        .set(listen_sessions::seen_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
        .map(|updated| updated > 0)
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
        .filter(listen_sessions::seen_at.ge(live_since()))
        .order(listen_sessions::connected_at)
        .select(ListenSession::as_select())
        .load(conn)
        .await
}
