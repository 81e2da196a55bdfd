//! `delivery_attempts`: every request made to an endpoint, in order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{attempt_hours, deliveries, delivery_attempts, events, sources};
use crate::domain::{DeliveryId, EventId, SubscriptionId, WorkspaceId};

/// One attempt as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = delivery_attempts)]
pub struct DeliveryAttempt {
    pub delivery_id: DeliveryId,
    /// The subscription it was made for (unknown for attempts recorded before it was kept).
    pub subscription_id: Option<SubscriptionId>,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// The attempts made for one of a workspace's events, by all its deliveries, each delivery's first
/// first; `None` when the event is not theirs.
pub async fn list_for_event(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    event: EventId,
) -> QueryResult<Option<Vec<DeliveryAttempt>>> {
    let owned: Option<EventId> = events::table
        .inner_join(sources::table)
        .filter(events::id.eq(event))
        .filter(sources::workspace_id.eq(workspace))
        .select(events::id)
        .first(conn)
        .await
        .optional()?;
    if owned.is_none() {
        return Ok(None);
    }
    of_event(conn, event).await.map(Some)
}

/// The attempts made for an event, by all its deliveries, each delivery's first first.
pub async fn of_event(
    conn: &mut AsyncPgConnection,
    event: EventId,
) -> QueryResult<Vec<DeliveryAttempt>> {
    delivery_attempts::table
        .inner_join(deliveries::table)
        .filter(deliveries::event_id.eq(event))
        .order((
            delivery_attempts::delivery_id.asc(),
            delivery_attempts::attempt.asc(),
        ))
        .select(DeliveryAttempt::as_select())
        .load(conn)
        .await
}

/// The attempts made for one delivery, first first.
pub async fn list_for_delivery(
    conn: &mut AsyncPgConnection,
    delivery: DeliveryId,
) -> QueryResult<Vec<DeliveryAttempt>> {
    delivery_attempts::table
        .filter(delivery_attempts::delivery_id.eq(delivery))
        .order(delivery_attempts::attempt.asc())
        .select(DeliveryAttempt::as_select())
        .load(conn)
        .await
}

/// How a delivery's latest attempt ended.
#[derive(Debug, Clone, Queryable)]
pub struct LastAttempt {
    pub delivery_id: DeliveryId,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// The latest attempt of each of these deliveries that has one (looked up by primary key).
pub async fn latest_of(
    conn: &mut AsyncPgConnection,
    deliveries: &[DeliveryId],
) -> QueryResult<Vec<LastAttempt>> {
    delivery_attempts::table
        .filter(delivery_attempts::delivery_id.eq_any(deliveries))
        .distinct_on(delivery_attempts::delivery_id)
        .order((
            delivery_attempts::delivery_id,
            delivery_attempts::attempt.desc(),
        ))
        .select((
            delivery_attempts::delivery_id,
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

/// The columns of an [`AttemptBucket`] after its time, over the rows grouped.
macro_rules! bucket_columns {
    () => {
        "count(*) FILTER (WHERE status_code BETWEEN 200 AND 299) AS succeeded, \
         count(*) FILTER (WHERE status_code BETWEEN 300 AND 499) AS refused, \
         count(*) FILTER (WHERE status_code >= 500) AS server_error, \
         count(*) FILTER (WHERE status_code IS NULL) AS no_answer, \
         coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms), 0) AS p50_ms, \
         coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms), 0) AS p95_ms"
    };
}

/// A subscription's attempts since `since`, in buckets of `width` starting there (buckets with
/// no attempt are left out). One range of the `(subscription_id, started_at)` index.
pub async fn buckets_for_subscription(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    since: DateTime<Utc>,
    width: std::time::Duration,
) -> QueryResult<Vec<AttemptBucket>> {
    diesel::sql_query(concat!(
        "SELECT date_bin($3, started_at, $2) AS bucket, ",
        bucket_columns!(),
        " FROM delivery_attempts WHERE subscription_id = $1 AND started_at >= $2 \
         GROUP BY 1 ORDER BY 1"
    ))
    .bind::<diesel::sql_types::Uuid, _>(subscription)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .bind::<diesel::sql_types::Interval, _>(super::pg_interval(width))
    .load(conn)
    .await
}

/// Counts, once, each hour from `since` to `settled` (both on the hour) of these subscriptions
/// that is not counted yet: the hour's attempts and the deliveries made in it (one for each
/// event the subscription matched), into `attempt_hours`. Such an hour ended long enough ago
/// that nothing can still be added to it; each is one range of the `(subscription_id,
/// started_at)` index and one of the `(subscription_id, id)` index. The hours before `since`
/// go, once a new one is counted. Which hours are missing is asked first, so that the counting
/// statement (planned over every partition) is planned only when some are.
pub async fn settle_hours(
    conn: &mut AsyncPgConnection,
    subscriptions: &[SubscriptionId],
    since: DateTime<Utc>,
    settled: DateTime<Utc>,
) -> QueryResult<()> {
    let kept: Vec<(SubscriptionId, DateTime<Utc>)> = attempt_hours::table
        .filter(attempt_hours::subscription_id.eq_any(subscriptions))
        .filter(attempt_hours::hour.ge(since))
        .select((attempt_hours::subscription_id, attempt_hours::hour))
        .load(conn)
        .await?;
    let (owners, hours) = super::hours_missing(subscriptions, since, settled, &kept);
    if owners.is_empty() {
        return Ok(());
    }
    // Two pages counting the same hour at once count the same rows: either's count will do.
    diesel::sql_query(concat!(
        "INSERT INTO attempt_hours \
             (subscription_id, hour, succeeded, refused, server_error, no_answer, p50_ms, p95_ms, \
              deliveries) \
         SELECT missing.id, missing.hour, counted.*, made.deliveries \
         FROM unnest($1, $2) AS missing (id, hour) \
         CROSS JOIN LATERAL (SELECT ",
        bucket_columns!(),
        " FROM delivery_attempts WHERE subscription_id = missing.id \
              AND started_at >= missing.hour AND started_at < missing.hour + interval '1 hour' \
         ) AS counted \
         CROSS JOIN LATERAL (SELECT count(*) AS deliveries FROM deliveries \
             WHERE subscription_id = missing.id AND id >= first_id_at(missing.hour) \
                 AND id < first_id_at(missing.hour + interval '1 hour')) AS made \
         ON CONFLICT DO NOTHING"
    ))
    .bind::<diesel::sql_types::Array<diesel::sql_types::Uuid>, _>(&owners)
    .bind::<diesel::sql_types::Array<diesel::sql_types::Timestamptz>, _>(&hours)
    .execute(conn)
    .await?;
    diesel::delete(
        attempt_hours::table
            .filter(attempt_hours::subscription_id.eq_any(subscriptions))
            .filter(attempt_hours::hour.lt(since)),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// A subscription's attempts per hour since `since` (on the hour; hours with no attempt left
/// out). The hours before `settled` (on the hour, at or after `since`) are read from their
/// counts (see [`settle_hours`]); only the hours since `settled` are counted from the attempts,
/// so a day's chart reads about an hour of attempts however busy the day was.
pub async fn hourly_for_subscription(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    since: DateTime<Utc>,
    settled: DateTime<Utc>,
) -> QueryResult<Vec<AttemptBucket>> {
    settle_hours(conn, &[subscription], since, settled).await?;
    diesel::sql_query(concat!(
        "SELECT hour AS bucket, succeeded, refused, server_error, no_answer, p50_ms, p95_ms \
         FROM attempt_hours WHERE subscription_id = $1 AND hour >= $2 AND hour < $3 \
             AND succeeded + refused + server_error + no_answer > 0 \
         UNION ALL \
         SELECT date_bin('1 hour', started_at, $3) AS bucket, ",
        bucket_columns!(),
        " FROM delivery_attempts WHERE subscription_id = $1 AND started_at >= $3 \
         GROUP BY 1 ORDER BY 1"
    ))
    .bind::<diesel::sql_types::Uuid, _>(subscription)
    .bind::<diesel::sql_types::Timestamptz, _>(since)
    .bind::<diesel::sql_types::Timestamptz, _>(settled)
    .load(conn)
    .await
}
