//! `events`: what providers sent, exactly as sent, and where each event is in its life.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
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
#[derive(Debug, Clone, Queryable)]
pub struct Accepted {
    pub subscription_id: SubscriptionId,
    pub target_url: String,
}

/// The ingest statement: looks the token up and inserts the event in one round trip, so the
/// lookup and the insert commit together or not at all. Hand-written (a CTE the query builder
/// cannot express) but with a static query id, so it is prepared once per connection.
struct AcceptEvent<'a> {
    token: &'a str,
    event: NewEvent<'a>,
}

impl QueryId for AcceptEvent<'_> {
    type QueryId = AcceptEvent<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for AcceptEvent<'_> {
    type SqlType = (SqlUuid, Text);
}

impl QueryFragment<Pg> for AcceptEvent<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH subscription AS (SELECT id, target_url FROM subscriptions WHERE ingest_token = ",
        );
        out.push_bind_param::<Text, _>(&self.token)?;
        out.push_sql("), inserted AS (INSERT INTO events (id, subscription_id, body, payload, content_type, headers, next_attempt_at) SELECT ");
        out.push_bind_param::<SqlUuid, _>(&self.event.id)?;
        out.push_sql(", subscription.id, ");
        out.push_bind_param::<Bytea, _>(&self.event.body)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Jsonb>, _>(&self.event.payload)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.content_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Jsonb, _>(&self.event.headers)?;
        out.push_sql(
            ", now() FROM subscription RETURNING subscription_id) \
             SELECT inserted.subscription_id, subscription.target_url \
             FROM inserted JOIN subscription ON subscription.id = inserted.subscription_id",
        );
        Ok(())
    }
}

/// Stores an event for the subscription that owns `token`; `None` when no subscription does.
pub async fn accept(
    conn: &mut AsyncPgConnection,
    token: &IngestToken,
    event: NewEvent<'_>,
) -> QueryResult<Option<Accepted>> {
    AcceptEvent {
        token: token.as_str(),
        event,
    }
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
/// without gaps or clashes. A completed event stays completed. Prepared once per connection, like
/// [`AcceptEvent`].
struct RecordAttempt<'a> {
    id: EventId,
    attempt: &'a AttemptRecord<'a>,
}

impl QueryId for RecordAttempt<'_> {
    type QueryId = RecordAttempt<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for RecordAttempt<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let attempt = self.attempt;
        out.push_sql("WITH next AS (SELECT ");
        out.push_bind_param::<Text, _>(&attempt.status)?;
        out.push_sql("::text AS status, ");
        out.push_bind_param::<Nullable<Text>, _>(&attempt.error)?;
        out.push_sql(
            "::text AS error), updated AS (UPDATE events SET \
                 attempts = events.attempts + 1, \
                 status = CASE WHEN events.status = 'completed' THEN events.status ELSE next.status END, \
                 completed_at = CASE WHEN next.status = 'completed' \
                     THEN coalesce(events.completed_at, now()) ELSE events.completed_at END, \
                 last_error = CASE WHEN events.status = 'completed' OR next.status = 'completed' \
                     THEN NULL ELSE next.error END, \
                 next_attempt_at = ",
        );
        out.push_bind_param::<Nullable<Timestamptz>, _>(&attempt.next_attempt_at)?;
        out.push_sql(" FROM next WHERE events.id = ");
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(
            " RETURNING events.id, events.attempts) \
             INSERT INTO delivery_attempts \
                 (event_id, attempt, started_at, duration_ms, status_code, error, response_body) \
             SELECT updated.id, updated.attempts, ",
        );
        out.push_bind_param::<Timestamptz, _>(&attempt.started_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&attempt.duration_ms)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Integer>, _>(&attempt.status_code)?;
        out.push_sql(", next.error, ");
        out.push_bind_param::<Nullable<Text>, _>(&attempt.response_body)?;
        out.push_sql(" FROM updated, next");
        Ok(())
    }
}

/// Records one attempt of delivering `id`.
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    id: EventId,
    attempt: &AttemptRecord<'_>,
) -> QueryResult<()> {
    RecordAttempt { id, attempt }.execute(conn).await.map(drop)
}
