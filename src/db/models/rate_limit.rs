//! `rate_limits`: each rate-limited subscription's next free moment, shared by every replica.
//!
//! A delivery may be sent when the subscription's `next_send` has passed, and sending moves it
//! one spacing past the later of itself and now (a generic cell rate algorithm without burst:
//! sends are at least one spacing apart, whichever replica makes them). A delivery that would
//! wait long is sent to wait in a queue instead, for a slot handed out from `reserved_until`,
//! so that a backlog comes back spread out rather than all at once.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryResult, QueryableByName};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::SubscriptionId;

#[derive(QueryableByName)]
struct Moment {
    #[diesel(sql_type = Timestamptz)]
    at: DateTime<Utc>,
}

/// Takes the subscription's next send if it is free now: `Ok(())` to send, or the moment the
/// next send is free.
pub async fn take_send(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    spacing: std::time::Duration,
) -> QueryResult<Result<(), DateTime<Utc>>> {
    let spacing_us = i64::try_from(spacing.as_micros()).unwrap_or(i64::MAX);
    let taken: Option<Moment> = diesel::sql_query(
        "INSERT INTO rate_limits AS r (subscription_id, next_send, reserved_until) \
         VALUES ($1, now() + make_interval(secs => $2 / 1e6), now()) \
         ON CONFLICT (subscription_id) DO UPDATE \
             SET next_send = greatest(r.next_send, now()) + make_interval(secs => $2 / 1e6) \
             WHERE r.next_send <= now() \
         RETURNING r.next_send AS at",
    )
    .bind::<SqlUuid, _>(subscription)
    .bind::<BigInt, _>(spacing_us)
    .get_result(conn)
    .await
    .optional()?;
    if taken.is_some() {
        return Ok(Ok(()));
    }
    let next: Moment =
        diesel::sql_query("SELECT next_send AS at FROM rate_limits WHERE subscription_id = $1")
            .bind::<SqlUuid, _>(subscription)
            .get_result(conn)
            .await?;
    Ok(Err(next.at))
}

/// Hands a delivery that is to wait a slot of its own: the first not handed out yet, no earlier
/// than the next send is free; when it comes back then, it takes its send as any other does.
pub async fn reserve_slot(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    spacing: std::time::Duration,
) -> QueryResult<DateTime<Utc>> {
    let spacing_us = i64::try_from(spacing.as_micros()).unwrap_or(i64::MAX);
    let slot: Moment = diesel::sql_query(
        "UPDATE rate_limits SET reserved_until = greatest(reserved_until, next_send, now()) \
             + make_interval(secs => $2 / 1e6) \
         WHERE subscription_id = $1 \
         RETURNING reserved_until - make_interval(secs => $2 / 1e6) AS at",
    )
    .bind::<SqlUuid, _>(subscription)
    .bind::<BigInt, _>(spacing_us)
    .get_result(conn)
    .await?;
    Ok(slot.at)
}
