//! `events`: what providers sent, exactly as sent, and where each event is in its life.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    BigInt, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
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
    /// The provider's id for the event: a second event with the same key is a retry of the
    /// first and is not stored again.
    pub idempotency_key: Option<&'a str>,
}

/// What ingest learns from the accept statement. No `Debug`: it holds the provider's secret.
#[derive(Clone, Queryable)]
pub struct Accepted {
    pub subscription_id: SubscriptionId,
    /// The subscription's owner, whose pages hear of the event.
    pub user_id: UserId,
    pub target_url: String,
    /// The provider whose signature must be checked, as stored (secret included).
    pub provider: Option<serde_json::Value>,
    /// The stored event's id; `None` when nothing was stored: a provider signature must be
    /// checked first, or the idempotency key was seen before.
    pub stored: Option<EventId>,
}

/// The ingest statement: looks the token up and stores the event in one round trip, so the
/// lookup and the insert commit together or not at all. The event is stored only when its
/// subscription checks no provider signature, or the caller has checked it (`verified`); a
/// repeated idempotency key stores nothing. Hand-written (a CTE the query builder cannot
/// express) with a static query id, so it is prepared once per connection.
struct AcceptEvent<'a> {
    token: &'a str,
    verified: bool,
    event: NewEvent<'a>,
    /// The arrival its id carries.
    received_at: DateTime<Utc>,
}

impl QueryId for AcceptEvent<'_> {
    type QueryId = AcceptEvent<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for AcceptEvent<'_> {
    type SqlType = (SqlUuid, SqlUuid, Text, Nullable<Jsonb>, Nullable<SqlUuid>);
}

impl QueryFragment<Pg> for AcceptEvent<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "WITH subscription AS (SELECT id, user_id, target_url, provider FROM subscriptions \
             WHERE ingest_token = ",
        );
        out.push_bind_param::<Text, _>(&self.token)?;
        out.push_sql(
            "), inserted AS (INSERT INTO events (id, received_at, subscription_id, body, \
             payload, content_type, headers, idempotency_key, next_attempt_at) SELECT ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.event.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Timestamptz, _>(&self.received_at)?;
        out.push_sql(", subscription.id, ");
        out.push_bind_param::<Bytea, _>(&self.event.body)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Jsonb>, _>(&self.event.payload)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.content_type)?;
        out.push_sql(", ");
        out.push_bind_param::<Jsonb, _>(&self.event.headers)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&self.event.idempotency_key)?;
        out.push_sql(", now() FROM subscription WHERE subscription.provider IS NULL OR ");
        out.push_bind_param::<diesel::sql_types::Bool, _>(&self.verified)?;
        out.push_sql(
            " ON CONFLICT (subscription_id, idempotency_key) DO NOTHING RETURNING id) \
             SELECT subscription.id, subscription.user_id, subscription.target_url, \
                 subscription.provider, \
                 (SELECT id FROM inserted) \
             FROM subscription",
        );
        Ok(())
    }
}

/// Stores an event for the subscription that owns `token` (see [`Accepted`] for when it is
/// not stored); `None` when no subscription owns the token.
pub async fn accept(
    conn: &mut AsyncPgConnection,
    token: &IngestToken,
    verified: bool,
    event: NewEvent<'_>,
) -> QueryResult<Option<Accepted>> {
    AcceptEvent {
        token: token.as_str(),
        verified,
        received_at: event.id.arrival(),
        event,
    }
    .get_result(conn)
    .await
    .optional()
}

/// The event a subscription stored under an idempotency key.
pub async fn find_by_idempotency_key(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    key: &str,
) -> QueryResult<Option<EventId>> {
    events::table
        .filter(events::subscription_id.eq(subscription))
        .filter(events::idempotency_key.eq(key))
        .select(events::id)
        .first(conn)
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

/// These of a user's events (others' are left out), newest first.
pub async fn summaries_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    ids: &[EventId],
) -> QueryResult<Vec<EventSummary>> {
    events::table
        .inner_join(subscriptions::table)
        .filter(subscriptions::user_id.eq(user))
        .filter(events::id.eq_any(ids))
        .order(events::id.desc())
        .select(EventSummary::as_select())
        .load(conn)
        .await
}

/// Which page of a subscription's events to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub status: Option<EventStatus>,
    /// Only events older than this one (keyset pagination: ids sort by arrival).
    pub before: Option<EventId>,
    /// Only events newer than this one.
    pub after: Option<EventId>,
    /// Only events received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events received before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only events whose JSON payload contains this document (`@>`, answered by the GIN index).
    pub payload: Option<serde_json::Value>,
    pub limit: i64,
}

/// What a delivery worker needs: the event's bytes and its subscription as they are now, so an
/// edited URL or a disabled subscription takes effect for deliveries already queued.
/// No `Debug`: it holds the signing secrets.
#[derive(Clone, Queryable)]
pub struct DeliveryJob {
    /// The subscription's owner, whose pages hear of the attempt.
    pub user_id: UserId,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub target_url: String,
    pub is_active: bool,
    pub signing_secret: String,
    pub previous_signing_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// The delivery claim: takes an event for one attempt, only if it is still to deliver, its
/// retry count is the one the message carries (a message of an earlier step of its chain is
/// stale), and no other delivery holds it; then holds it for `lease`. One round trip, which
/// also loads what the attempt needs. Hand-written (an `UPDATE ... FROM ... RETURNING` across
/// two tables) with a static query id, so it is prepared once per connection.
struct ClaimForDelivery {
    id: EventId,
    retry_count: i32,
    lease_ms: i64,
}

impl QueryId for ClaimForDelivery {
    type QueryId = ClaimForDelivery;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for ClaimForDelivery {
    type SqlType = (
        SqlUuid,
        Bytea,
        Nullable<Text>,
        Text,
        diesel::sql_types::Bool,
        Text,
        Nullable<Text>,
        Nullable<Timestamptz>,
    );
}

impl QueryFragment<Pg> for ClaimForDelivery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("UPDATE events SET leased_until = now() + make_interval(secs => ");
        out.push_bind_param::<BigInt, _>(&self.lease_ms)?;
        out.push_sql(
            " / 1000.0), republishes = 0 FROM subscriptions \
             WHERE subscriptions.id = events.subscription_id AND events.id = ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(
            " AND events.status IN ('pending', 'retrying') \
             AND (events.leased_until IS NULL OR events.leased_until < now()) \
             AND events.retry_count = ",
        );
        out.push_bind_param::<Integer, _>(&self.retry_count)?;
        out.push_sql(
            " RETURNING subscriptions.user_id, events.body, events.content_type, \
             subscriptions.target_url, subscriptions.is_active, subscriptions.signing_secret, \
             subscriptions.previous_signing_secret, subscriptions.previous_secret_expires_at",
        );
        Ok(())
    }
}

/// Claims `id` for one delivery attempt of the step `retry_count` of its chain, holding it for
/// `lease`. `None` when there is nothing to attempt: the event is gone, delivered, failed,
/// further along its chain, or held by another delivery (a duplicate message).
pub async fn claim_for_delivery(
    conn: &mut AsyncPgConnection,
    id: EventId,
    retry_count: u32,
    lease: std::time::Duration,
) -> QueryResult<Option<DeliveryJob>> {
    ClaimForDelivery {
        id,
        retry_count: i32::try_from(retry_count).unwrap_or(i32::MAX),
        lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
    }
    .get_result(conn)
    .await
    .optional()
}

/// Gives up a delivery's hold on `id` without an attempt.
pub async fn release_lease(conn: &mut AsyncPgConnection, id: EventId) -> QueryResult<()> {
    diesel::update(events::table.filter(events::id.eq(id)))
        .set(events::leased_until.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
        .map(drop)
}

/// Holds an event of a disabled subscription: still to deliver, but due at no particular time
/// (`next_attempt_at` null) until the subscription is re-enabled.
pub async fn hold(conn: &mut AsyncPgConnection, id: EventId) -> QueryResult<()> {
    diesel::update(
        events::table
            .filter(events::id.eq(id))
            .filter(events::status.eq_any([EventStatus::Pending, EventStatus::Retrying])),
    )
    .set((
        events::next_attempt_at.eq(None::<DateTime<Utc>>),
        events::leased_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
    .map(drop)
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
    /// Retries scheduled so far, this one included.
    pub retry_count: i32,
    /// Consecutive failures at which the subscription's circuit breaker opens.
    pub breaker_threshold: i32,
}

/// Records an attempt and moves the event and its subscription on, in one statement (one round
/// trip on the hot path):
/// - the attempt number is the event's new attempt count, so concurrent duplicate deliveries
///   still number their attempts without gaps or clashes; a completed event stays completed;
/// - the circuit breaker: a failure adds one to the subscription's consecutive failures and, at
///   the threshold, disables it with a reason; a success resets the count (writing the row only
///   when there is something to reset).
///
/// Hand-written with a static query id, so it is prepared once per connection.
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
        out.push_sql("::text AS error, ");
        out.push_bind_param::<Integer, _>(&attempt.breaker_threshold)?;
        out.push_sql(
            "::integer AS threshold), updated AS (UPDATE events SET \
                 attempts = events.attempts + 1, \
                 status = CASE WHEN events.status = 'completed' THEN events.status ELSE next.status END, \
                 completed_at = CASE WHEN next.status = 'completed' \
                     THEN coalesce(events.completed_at, now()) ELSE events.completed_at END, \
                 last_error = CASE WHEN events.status = 'completed' OR next.status = 'completed' \
                     THEN NULL ELSE next.error END, \
                 leased_until = NULL, retry_count = ",
        );
        out.push_bind_param::<Integer, _>(&attempt.retry_count)?;
        out.push_sql(", next_attempt_at = ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&attempt.next_attempt_at)?;
        out.push_sql(" FROM next WHERE events.id = ");
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(
            " RETURNING events.id, events.attempts, events.subscription_id), \
             breaker AS (UPDATE subscriptions SET \
                 consecutive_failures = CASE WHEN next.status = 'completed' THEN 0 \
                     ELSE subscriptions.consecutive_failures + 1 END, \
                 is_active = subscriptions.is_active AND (next.status = 'completed' \
                     OR subscriptions.consecutive_failures + 1 < next.threshold), \
                 disabled_reason = CASE WHEN subscriptions.is_active AND next.status <> 'completed' \
                     AND subscriptions.consecutive_failures + 1 >= next.threshold \
                     THEN 'circuit breaker opened after ' || (subscriptions.consecutive_failures + 1) \
                          || ' consecutive failed attempts; last: ' || coalesce(next.error, 'unknown') \
                     ELSE subscriptions.disabled_reason END \
             FROM updated, next \
             WHERE subscriptions.id = updated.subscription_id \
                 AND (next.status <> 'completed' OR subscriptions.consecutive_failures <> 0)) \
             INSERT INTO delivery_attempts (event_id, subscription_id, attempt, started_at, \
                 duration_ms, status_code, error, response_body) \
             SELECT updated.id, updated.subscription_id, updated.attempts, ",
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

/// An event that is due for (another) publish, with what its envelope needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueEvent {
    #[diesel(sql_type = SqlUuid)]
    pub id: EventId,
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    #[diesel(sql_type = Integer)]
    pub retry_count: i32,
    #[diesel(sql_type = Text)]
    pub target_url: String,
}

/// Makes events matching the conditions that follow due again with a fresh retry budget.
const REPLAY: &str = "UPDATE events SET status = 'pending', retry_count = 0, \
     next_attempt_at = now(), completed_at = NULL \
     FROM subscriptions WHERE subscriptions.id = events.subscription_id";
/// What a due event's envelope needs, from an `UPDATE events ... FROM subscriptions`.
const RETURNING_DUE: &str =
    " RETURNING events.id, events.subscription_id, events.retry_count, subscriptions.target_url";

/// The reaper's claim: up to `batch` events of active subscriptions still to deliver whose due
/// time passed more than `grace` ago, or that were held (no due time) while their subscription
/// was disabled (those first: a re-enabled subscription's backlog does not wait behind other
/// late events), and that no delivery holds, skipping rows another replica has locked.
/// Claiming pushes their due time on: one grace period, doubled for each republish since a
/// delivery last claimed the event (up to 64), so an event still waiting in a long queue is
/// not republished every grace period; the copies that are are dropped by the delivery claim.
pub async fn claim_overdue(
    conn: &mut AsyncPgConnection,
    grace: std::time::Duration,
    batch: i64,
) -> QueryResult<Vec<DueEvent>> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    diesel::sql_query(format!(
        "UPDATE events SET next_attempt_at = now() \
             + make_interval(secs => $1 / 1000.0 * 2 ^ least(events.republishes, 6)), \
             republishes = events.republishes + 1 \
         FROM subscriptions \
         WHERE subscriptions.id = events.subscription_id AND events.id IN ( \
             SELECT e.id FROM events e JOIN subscriptions s ON s.id = e.subscription_id \
             WHERE e.status IN ('pending', 'retrying') AND s.is_active \
               AND (e.leased_until IS NULL OR e.leased_until < now()) \
               AND (e.next_attempt_at IS NULL \
                    OR e.next_attempt_at <= now() - make_interval(secs => $1 / 1000.0)) \
             ORDER BY e.next_attempt_at NULLS FIRST LIMIT $2 \
             FOR UPDATE OF e SKIP LOCKED) \
         {RETURNING_DUE}"
    ))
    .bind::<BigInt, _>(grace_ms)
    .bind::<BigInt, _>(batch)
    .load(conn)
    .await
}

/// The reaper's claim of these events, whose publish failed while the broker was away, with no
/// grace period: those still to deliver, of active subscriptions, that no delivery holds. They
/// are in no queue, so their due time moves on by one grace period only, and the count of
/// republishes that lengthens the reaper's waits is left as it is.
pub async fn claim_missed(
    conn: &mut AsyncPgConnection,
    ids: &[EventId],
    grace: std::time::Duration,
) -> QueryResult<Vec<DueEvent>> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    diesel::sql_query(format!(
        "UPDATE events SET next_attempt_at = now() + make_interval(secs => $1 / 1000.0) \
         FROM subscriptions \
         WHERE subscriptions.id = events.subscription_id AND events.id = ANY($2) \
           AND events.status IN ('pending', 'retrying') AND subscriptions.is_active \
           AND (events.leased_until IS NULL OR events.leased_until < now()) \
         {RETURNING_DUE}"
    ))
    .bind::<BigInt, _>(grace_ms)
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(ids)
    .load(conn)
    .await
}

/// Makes one of a user's delivered or failed events due again with a fresh retry budget.
/// `Ok(None)`: no such event of theirs, or it is still being delivered.
pub async fn replay_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: EventId,
) -> QueryResult<Option<DueEvent>> {
    diesel::sql_query(format!(
        "{REPLAY} AND subscriptions.user_id = $1 AND events.id = $2 \
         AND events.status IN ('completed', 'failed'){RETURNING_DUE}"
    ))
    .bind::<SqlUuid, _>(user)
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()
}

/// Makes those of `ids` that are the user's and failed due again with a fresh retry budget; the
/// rest are left alone (the graveyard replays what failed, never a delivered event by mistake).
pub async fn replay_failed_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    ids: &[EventId],
) -> QueryResult<Vec<DueEvent>> {
    let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.0).collect();
    diesel::sql_query(format!(
        "{REPLAY} AND subscriptions.user_id = $1 AND events.id = ANY($2) \
         AND events.status = 'failed'{RETURNING_DUE}"
    ))
    .bind::<SqlUuid, _>(user)
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(ids)
    .load(conn)
    .await
}

/// Which of a user's events a bulk replay takes: those with the status (`completed` or
/// `failed`), of one subscription or all, received in a time range, with a payload filter.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    pub status: EventStatus,
    pub subscription: Option<SubscriptionId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub payload: Option<serde_json::Value>,
}

/// The conditions of a replay filter on `events` joined to `subscriptions`, binds $1..$6. The
/// time range bounds ids (v7 uuids carry their arrival time), so it walks the same indexes as
/// the pages do.
const IN_REPLAY: &str = "subscriptions.user_id = $1 AND events.status = $6 \
     AND ($2::uuid IS NULL OR events.subscription_id = $2) \
     AND ($3::uuid IS NULL OR events.id >= $3) AND ($4::uuid IS NULL OR events.id < $4) \
     AND ($5::jsonb IS NULL OR events.payload @> $5)";

/// How many of the user's events the filter takes.
pub async fn count_replayable(
    conn: &mut AsyncPgConnection,
    user: UserId,
    filter: &ReplayFilter,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let query = diesel::sql_query(format!(
        "SELECT count(*) AS count FROM events JOIN subscriptions \
         ON subscriptions.id = events.subscription_id WHERE {IN_REPLAY}"
    ));
    bind_replay(query, user, filter)
        .get_result::<Count>(conn)
        .await
        .map(|found| found.count)
}

/// Replays up to `batch` of the user's events the filter takes with ids after `after`, oldest
/// first, skipping rows another transaction holds; what it made due. A bulk replay walks its
/// range with `after` set to the last id of each batch, so an event replayed (and maybe
/// already delivered again, back in the status the filter takes) is not taken twice.
pub async fn replay_batch(
    conn: &mut AsyncPgConnection,
    user: UserId,
    filter: &ReplayFilter,
    after: Option<EventId>,
    batch: i64,
) -> QueryResult<Vec<DueEvent>> {
    let query = diesel::sql_query(format!(
        "{REPLAY} AND events.id IN (SELECT events.id FROM events JOIN subscriptions \
         ON subscriptions.id = events.subscription_id WHERE {IN_REPLAY} \
         AND ($8::uuid IS NULL OR events.id > $8) \
         ORDER BY events.id LIMIT $7 FOR UPDATE OF events SKIP LOCKED){RETURNING_DUE}"
    ));
    bind_replay(query, user, filter)
        .bind::<BigInt, _>(batch)
        .bind::<Nullable<SqlUuid>, _>(after)
        .load(conn)
        .await
}

fn bind_replay(
    query: diesel::query_builder::SqlQuery,
    user: UserId,
    filter: &ReplayFilter,
) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    query
        .into_boxed()
        .bind::<SqlUuid, _>(user)
        .bind::<Nullable<SqlUuid>, _>(filter.subscription)
        .bind::<Nullable<SqlUuid>, _>(filter.since.map(EventId::first_at))
        .bind::<Nullable<SqlUuid>, _>(filter.until.map(EventId::first_at))
        .bind::<Nullable<Jsonb>, _>(filter.payload.clone())
        .bind::<Text, _>(filter.status)
}

/// A page of a user's events, newest first: of one subscription, or of all of them (the
/// graveyard is `status: failed`). The time range bounds ids (v7 uuids carry their arrival
/// time), so it walks the same indexes as the pages do.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    subscription: Option<SubscriptionId>,
    page: &EventPage,
) -> QueryResult<Vec<EventSummary>> {
    let mut query = events::table
        .inner_join(subscriptions::table)
        .filter(subscriptions::user_id.eq(user))
        .select(EventSummary::as_select())
        .order(events::id.desc())
        .limit(page.limit)
        .into_boxed();
    if let Some(subscription) = subscription {
        query = query.filter(events::subscription_id.eq(subscription));
    }
    if let Some(status) = page.status {
        query = query.filter(events::status.eq(status));
    }
    if let Some(before) = page.before {
        query = query.filter(events::id.lt(before));
    }
    if let Some(after) = page.after {
        query = query.filter(events::id.gt(after));
    }
    if let Some(since) = page.since {
        query = query.filter(events::id.ge(EventId::first_at(since)));
    }
    if let Some(until) = page.until {
        query = query.filter(events::id.lt(EventId::first_at(until)));
    }
    if let Some(payload) = &page.payload {
        query = query.filter(events::payload.contains(payload.clone()));
    }
    query.load(conn).await
}
