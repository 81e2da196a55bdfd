//! `events`: what providers sent, exactly as sent, and where each event is in its life.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Bytea, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{events, subscriptions};
use crate::domain::{EventId, EventStatus, IngestToken, SubscriptionId, UserId};

/// An event as the API shows it, body included.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub body: Vec<u8>,
    pub payload: Option<serde_json::Value>,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// An event in a list: everything but the body.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = events)]
pub struct EventSummary {
    pub id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub content_type: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// An event as received, to store.
#[derive(Debug)]
pub struct NewEvent<'a> {
    pub id: EventId,
    pub body: &'a [u8],
    pub payload: Option<serde_json::Value>,
    pub content_type: Option<&'a str>,
    pub headers: serde_json::Value,
}

/// What the publisher needs to know about a stored event.
#[derive(Debug, Clone, QueryableByName)]
pub struct Accepted {
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    #[diesel(sql_type = Text)]
    pub target_url: String,
}

/// Stores an event for the subscription that owns `token`; `None` when no subscription does.
///
/// One statement, so that ingest costs one round trip: the token lookup and the insert commit
/// together or not at all.
pub async fn accept(
    conn: &mut AsyncPgConnection,
    token: &IngestToken,
    event: NewEvent<'_>,
) -> QueryResult<Option<Accepted>> {
    diesel::sql_query(
        "WITH subscription AS ( \
             SELECT id, target_url FROM subscriptions WHERE ingest_token = $1 \
         ), inserted AS ( \
             INSERT INTO events (id, subscription_id, body, payload, content_type, headers, next_attempt_at) \
             SELECT $2, subscription.id, $3, $4, $5, $6, now() FROM subscription \
             RETURNING subscription_id \
         ) \
         SELECT inserted.subscription_id, subscription.target_url \
         FROM inserted JOIN subscription ON subscription.id = inserted.subscription_id",
    )
    .bind::<Text, _>(token.as_str())
    .bind::<SqlUuid, _>(event.id)
    .bind::<Bytea, _>(event.body)
    .bind::<Nullable<Jsonb>, _>(event.payload)
    .bind::<Nullable<Text>, _>(event.content_type)
    .bind::<Jsonb, _>(event.headers)
    .get_result(conn)
    .await
    .optional()
}

/// One of a user's events; someone else's is `None`, exactly like a missing one.
pub async fn find_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: EventId,
) -> QueryResult<Option<Event>> {
    events::table
        .inner_join(subscriptions::table)
        .filter(events::id.eq(id))
        .filter(subscriptions::user_id.eq(user))
        .select(Event::as_select())
        .first(conn)
        .await
        .optional()
}

/// Which page of a subscription's events to list, newest first.
#[derive(Debug, Clone, Copy)]
pub struct EventPage {
    pub status: Option<EventStatus>,
    /// Only events older than this one (keyset pagination: ids sort by arrival).
    pub before: Option<EventId>,
    pub limit: i64,
}

/// A page of one of a user's subscriptions' events, newest first.
pub async fn list_for_subscription(
    conn: &mut AsyncPgConnection,
    user: UserId,
    subscription: SubscriptionId,
    page: EventPage,
) -> QueryResult<Vec<EventSummary>> {
    let mut query = events::table
        .inner_join(subscriptions::table)
        .filter(events::subscription_id.eq(subscription))
        .filter(subscriptions::user_id.eq(user))
        .select(EventSummary::as_select())
        .order(events::id.desc())
        .limit(page.limit)
        .into_boxed();
    if let Some(status) = page.status {
        query = query.filter(events::status.eq(status));
    }
    if let Some(before) = page.before {
        query = query.filter(events::id.lt(before));
    }
    query.load(conn).await
}

/// What a delivery worker needs: the event's bytes and its subscription as they are now, so an
/// edited URL or a disabled subscription takes effect for deliveries already queued.
#[derive(Debug, Clone, Queryable)]
pub struct DeliveryJob {
    pub status: EventStatus,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub target_url: String,
    pub is_active: bool,
}

/// Loads what delivering `id` needs; `None` when the event is gone.
pub async fn load_for_delivery(
    conn: &mut AsyncPgConnection,
    id: EventId,
) -> QueryResult<Option<DeliveryJob>> {
    events::table
        .inner_join(subscriptions::table)
        .filter(events::id.eq(id))
        .select((
            events::status,
            events::body,
            events::content_type,
            subscriptions::target_url,
            subscriptions::is_active,
        ))
        .first(conn)
        .await
        .optional()
}

/// One delivery attempt's result, to record.
#[derive(Debug)]
pub struct AttemptRecord<'a> {
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub response_body: Option<&'a str>,
    /// The status the event moves to (a completed event stays completed whatever this says).
    pub status: EventStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Records an attempt and moves the event on, in one statement: the attempt number is the
/// event's new attempt count, so concurrent duplicate deliveries still number their attempts
/// without gaps or clashes.
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    id: EventId,
    attempt: &AttemptRecord<'_>,
) -> QueryResult<()> {
    diesel::sql_query(
        "WITH updated AS ( \
             UPDATE events SET \
                 attempts = attempts + 1, \
                 status = CASE WHEN status = 'completed' THEN status ELSE $2 END, \
                 completed_at = CASE WHEN $2 = 'completed' THEN coalesce(completed_at, now()) \
                                     ELSE completed_at END, \
                 last_error = CASE WHEN status = 'completed' OR $2 = 'completed' THEN NULL \
                                   ELSE $3 END, \
                 next_attempt_at = $4 \
             WHERE id = $1 \
             RETURNING id, attempts \
         ) \
         INSERT INTO delivery_attempts \
             (event_id, attempt, started_at, duration_ms, status_code, error, response_body) \
         SELECT id, attempts, $5, $6, $7, $3, $8 FROM updated",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(attempt.status)
    .bind::<Nullable<Text>, _>(attempt.error)
    .bind::<Nullable<Timestamptz>, _>(attempt.next_attempt_at)
    .bind::<Timestamptz, _>(attempt.started_at)
    .bind::<Integer, _>(attempt.duration_ms)
    .bind::<Nullable<Integer>, _>(attempt.status_code)
    .bind::<Nullable<Text>, _>(attempt.response_body)
    .execute(conn)
    .await
    .map(drop)
}
