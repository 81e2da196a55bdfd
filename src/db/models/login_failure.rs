//! `login_failures`: recent failed log-ins per address, which the log-in throttle counts.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Interval, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::pg_interval;
use crate::db::schema::login_failures;

/// Log-in attempts for one address within the window, counting the one just recorded.
#[derive(Debug, QueryableByName)]
pub struct Recent {
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    /// When the oldest of them happened: the window reopens `window` after it.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest: Option<DateTime<Utc>>,
}

/// Records an attempt for `email` as failed before its password is checked, and answers how many
/// attempts the window holds with it. Counting after recording means that concurrent guesses
/// each see every other: none slips past the limit. Rows older than the window, of any address,
/// are dropped, so addresses tried once do not stay forever.
pub async fn record(
    conn: &mut AsyncPgConnection,
    email: &str,
    window: Duration,
) -> QueryResult<(i64, Recent)> {
    diesel::sql_query("DELETE FROM login_failures WHERE failed_at <= now() - $1")
        .bind::<Interval, _>(pg_interval(window))
        .execute(conn)
        .await?;
    let id: i64 = diesel::insert_into(login_failures::table)
        .values(login_failures::email.eq(email))
        .returning(login_failures::id)
        .get_result(conn)
        .await?;
    let recent = diesel::sql_query(
        "SELECT count(*) AS count, min(failed_at) AS oldest FROM login_failures \
         WHERE email = $1 AND failed_at > now() - $2",
    )
    .bind::<Text, _>(email)
    .bind::<Interval, _>(pg_interval(window))
    .get_result(conn)
    .await?;
    Ok((id, recent))
}

/// Withdraws one recorded attempt: it was refused by the throttle without a password check, or
/// its password was right.
pub async fn withdraw(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::id.eq(id)))
        .execute(conn)
        .await
        .map(drop)
}

/// Forgets every failure of an address, after its owner logged in.
pub async fn clear(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<()> {
    diesel::delete(login_failures::table.filter(login_failures::email.eq(email)))
        .execute(conn)
        .await
        .map(drop)
}
