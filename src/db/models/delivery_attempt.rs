//! `delivery_attempts`: every request made to an endpoint, in order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{delivery_attempts, events, subscriptions};
use crate::domain::{EventId, SubscriptionId, UserId};

/// One attempt as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = delivery_attempts)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// The attempts made for one of a user's events, first first; `None` when the event is not theirs.
pub async fn list_for_event(
    conn: &mut AsyncPgConnection,
    user: UserId,
    event: EventId,
) -> QueryResult<Option<Vec<DeliveryAttempt>>> {
    let owned: Option<EventId> = events::table
        .inner_join(subscriptions::table)
        .filter(events::id.eq(event))
        .filter(subscriptions::user_id.eq(user))
        .select(events::id)
        .first(conn)
        .await
        .optional()?;
    if owned.is_none() {
        return Ok(None);
    }
    delivery_attempts::table
        .filter(delivery_attempts::event_id.eq(event))
        .order(delivery_attempts::attempt.asc())
        .select(DeliveryAttempt::as_select())
        .load(conn)
        .await
        .map(Some)
}

/// How an event's latest attempt ended.
#[derive(Debug, Clone, Queryable)]
pub struct LastAttempt {
    pub event_id: EventId,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// The latest attempt of each of these events that has one (looked up by primary key).
pub async fn latest_of(
    conn: &mut AsyncPgConnection,
    events: &[EventId],
) -> QueryResult<Vec<LastAttempt>> {
    delivery_attempts::table
        .filter(delivery_attempts::event_id.eq_any(events))
        .distinct_on(delivery_attempts::event_id)
        .order((
            delivery_attempts::event_id,
            delivery_attempts::attempt.desc(),
        ))
        .select((
            delivery_attempts::event_id,
            delivery_attempts::status_code,
            delivery_attempts::error,
        ))
        .load(conn)
        .await
}

/// One time bucket of a subscription's attempts: how they ended, and how long they took.
#[derive(Debug, Clone, QueryableByName)]
pub struct AttemptBucket {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub bucket: DateTime<Utc>,
    /// Answered 2xx.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub succeeded: i64,
    /// Answered 3xx or 4xx: the endpoint refused.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub refused: i64,
    /// Answered 5xx.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub server_error: i64,
    /// No answer: timeout, connection error, the SSRF guard.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub no_answer: i64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub p50_ms: f64,
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub p95_ms: f64,
}

/// A subscription's attempts since `since`, in buckets of `width` starting there (buckets with
/// no attempt are left out). One range of the `(subscription_id, started_at)` index.
pub async fn buckets_for_subscription(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    since: DateTime<Utc>,
    width: std::time::Duration,
) -> QueryResult<Vec<AttemptBucket>> {
    diesel::sql_query(
        "SELECT date_bin($3, started_at, $2) AS bucket, \
             count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS succeeded, \
             count(*) FILTER (WHERE status_code BETWEEN 300 AND 499) AS refused, \
             count(*) FILTER (WHERE status_code >= 500) AS server_error, \
             count(*) FILTER (WHERE status_code IS NULL) AS no_answer, \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms, \
             percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms \
         FROM delivery_attempts WHERE subscription_id = $1 AND started_at >= $2 \
         GROUP BY 1 ORDER BY 1",
    )
    .bind::<diesel::sql_types::Uuid, _>(subscription)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .bind::<diesel::sql_types::Interval, _>(super::pg_interval(width))
    .load(conn)
    .await
}
