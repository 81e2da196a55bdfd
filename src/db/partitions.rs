//! The partitions of the tables that grow with every event (events, deliveries,
//! delivery_attempts): one per UTC day of their ids, made ahead of time (see the migration
//! `partitions_by_day`, whose `ensure_partitions` makes them).

use diesel::sql_types::Integer;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Days made ahead of today: a relay whose upkeep stops still stores into days' partitions for
/// that long (and after, into the DEFAULT partitions, until the upkeep runs again).
pub const DAYS_AHEAD: i32 = 3;

/// Makes the partitions from today (UTC) to [`DAYS_AHEAD`] days ahead that do not exist yet;
/// quick when they all do.
pub async fn ensure_ahead(conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "SELECT FROM ensure_partitions((now() AT TIME ZONE 'UTC')::date, \
             (now() AT TIME ZONE 'UTC')::date + $1)",
    )
    .bind::<Integer, _>(DAYS_AHEAD)
    .execute(conn)
    .await
    .map(drop)
}
