//! `events`: what providers sent, exactly as sent, and where each event is in its life.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
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

/// An event as received at an ingest URL, to store. Owned: it waits for its batch.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// The ingest token it arrived with, which names its subscription.
    pub token: IngestToken,
    /// Whether its provider's signature has been checked (see [`Accepted`]).
    pub verified: bool,
    pub id: EventId,
    pub body: Bytes,
    pub payload: Option<serde_json::Value>,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    /// The provider's id for the event: a second event with the same key is a retry of the
    /// first and is not stored again.
    pub idempotency_key: Option<String>,
}

/// What ingest learns of one event from the accept statement. No `Debug`: it holds the
/// provider's secret.
#[derive(Clone, Queryable)]
pub struct Accepted {
    /// The event as it arrived (whether stored or not).
    pub id: EventId,
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

/// The ingest statement: looks up the tokens and stores the events, any number of them, in
/// one round trip, so that the lookups and inserts commit together or not at all. An event is
/// stored only when its subscription checks no provider signature, or the caller has checked
/// it (`verified`); a repeated idempotency key stores nothing, also within the batch. Rows are
/// inserted in the order of their keys, so two batches with the same keys wait for each other
/// rather than deadlock. Hand-written (a CTE over `unnest` the query builder cannot express)
/// with a static query id, so it is prepared once per connection whatever the batch's size.
struct AcceptEvents<'a> {
    tokens: Vec<&'a str>,
    verified: Vec<bool>,
    ids: Vec<EventId>,
    /// The arrival each id carries.
    received_at: Vec<DateTime<Utc>>,
    bodies: Vec<&'a [u8]>,
    payloads: Vec<Option<&'a serde_json::Value>>,
    content_types: Vec<Option<&'a str>>,
    headers: Vec<&'a serde_json::Value>,
    keys: Vec<Option<&'a str>>,
}

impl QueryId for AcceptEvents<'_> {
    type QueryId = AcceptEvents<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for AcceptEvents<'_> {
    type SqlType = (
        SqlUuid,
        SqlUuid,
        SqlUuid,
        Text,
        Nullable<Jsonb>,
        Nullable<SqlUuid>,
    );
}

impl QueryFragment<Pg> for AcceptEvents<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH arriving AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.tokens)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.verified)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.received_at)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bytea>, _>(&self.bodies)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Jsonb>>, _>(&self.payloads)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.content_types)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Jsonb>, _>(&self.headers)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.keys)?;
        out.push_sql(
            ") AS arriving (token, verified, id, received_at, body, payload, content_type, \
                 headers, idempotency_key)), \
             matched AS (SELECT arriving.*, subscriptions.id AS subscription_id, \
                 subscriptions.user_id, subscriptions.target_url, subscriptions.provider \
                 FROM arriving JOIN subscriptions ON subscriptions.ingest_token = arriving.token), \
             inserted AS (INSERT INTO events (id, received_at, subscription_id, body, payload, \
                 content_type, headers, idempotency_key, next_attempt_at) \
                 SELECT id, received_at, subscription_id, body, payload, content_type, headers, \
                     idempotency_key, now() FROM matched \
                 WHERE provider IS NULL OR verified \
                 ORDER BY subscription_id, idempotency_key, id \
                 ON CONFLICT (subscription_id, idempotency_key) DO NOTHING RETURNING id) \
             SELECT matched.id, matched.subscription_id, matched.user_id, matched.target_url, \
                 matched.provider, inserted.id \
             FROM matched LEFT JOIN inserted ON inserted.id = matched.id",
        );
        Ok(())
    }
}

/// Stores these events, each for the subscription that owns its token (see [`Accepted`] for
/// when one is not stored), in one statement; what it learnt of each event whose token a
/// subscription owns. The caller commits them together.
pub async fn accept_all(
    conn: &mut AsyncPgConnection,
    events: &[NewEvent],
) -> QueryResult<Vec<Accepted>> {
    AcceptEvents {
        tokens: events.iter().map(|event| event.token.as_str()).collect(),
        verified: events.iter().map(|event| event.verified).collect(),
        ids: events.iter().map(|event| event.id).collect(),
        received_at: events.iter().map(|event| event.id.arrival()).collect(),
        bodies: events.iter().map(|event| event.body.as_ref()).collect(),
        payloads: events.iter().map(|event| event.payload.as_ref()).collect(),
        content_types: events
            .iter()
            .map(|event| event.content_type.as_deref())
            .collect(),
        headers: events.iter().map(|event| &event.headers).collect(),
        keys: events
            .iter()
            .map(|event| event.idempotency_key.as_deref())
            .collect(),
    }
    .load(conn)
    .await
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
    /// When the event arrived, for the end-to-end latency of its delivery.
    pub received_at: DateTime<Utc>,
}

/// What a delivery worker needs, for the event it claimed.
#[derive(Clone, Queryable)]
pub struct Claimed {
    pub id: EventId,
    /// The step of its chain it was claimed at: that of the message that took it.
    pub retry_count: i32,
    pub job: DeliveryJob,
}

/// One delivery message's claim: its event, at the step of its attempt chain it carries.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub id: EventId,
    pub retry_count: u32,
}

/// The delivery claim: takes each event for one attempt, only if it is still to deliver, its
/// retry count is the one its message carries (a message of an earlier step of its chain is
/// stale), and no other delivery holds it; then holds it for the lease. A claim that waited for
/// another transaction's update of the row checks these again on the row as updated. (Two
/// batches that deadlock over rows they share fail, and are claimed again one by one.) One round
/// trip for the whole batch, which also loads what each attempt needs. Hand-written (an
/// `UPDATE ... FROM ... RETURNING` across two tables) with a static query id, so it is
/// prepared once per connection.
struct ClaimForDelivery {
    ids: Vec<EventId>,
    retry_counts: Vec<i32>,
    lease_ms: i64,
}

impl QueryId for ClaimForDelivery {
    type QueryId = ClaimForDelivery;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for ClaimForDelivery {
    type SqlType = (
        SqlUuid,
        Integer,
        (
            SqlUuid,
            Bytea,
            Nullable<Text>,
            Text,
            Bool,
            Text,
            Nullable<Text>,
            Nullable<Timestamptz>,
            Timestamptz,
        ),
    );
}

impl QueryFragment<Pg> for ClaimForDelivery {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH wanted AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.retry_counts)?;
        out.push_sql(
            ") AS wanted (id, retry_count)) \
             UPDATE events SET leased_until = now() + make_interval(secs => ",
        );
        out.push_bind_param::<BigInt, _>(&self.lease_ms)?;
        out.push_sql(
            " / 1000.0), republishes = 0 FROM subscriptions, wanted \
             WHERE subscriptions.id = events.subscription_id AND events.id = wanted.id \
               AND events.status IN ('pending', 'retrying') \
               AND (events.leased_until IS NULL OR events.leased_until < now()) \
               AND events.retry_count = wanted.retry_count \
             RETURNING events.id, wanted.retry_count, subscriptions.user_id, events.body, \
             events.content_type, \
             subscriptions.target_url, subscriptions.is_active, subscriptions.signing_secret, \
             subscriptions.previous_signing_secret, subscriptions.previous_secret_expires_at, \
             events.received_at",
        );
        Ok(())
    }
}

/// Claims each of these events for one delivery attempt at the step of its chain its claim
/// names, holding it for `lease`; those it could claim, each with the step it was claimed at.
/// One not claimed has nothing to attempt: it is gone, delivered, failed, further along its
/// chain, or held by another delivery (a duplicate message; of two claims of one event in a
/// batch, at most one is taken, and only one at the event's own step).
pub async fn claim_for_delivery(
    conn: &mut AsyncPgConnection,
    claims: &[Claim],
    lease: std::time::Duration,
) -> QueryResult<Vec<Claimed>> {
    ClaimForDelivery {
        ids: claims.iter().map(|claim| claim.id).collect(),
        retry_counts: claims
            .iter()
            .map(|claim| i32::try_from(claim.retry_count).unwrap_or(i32::MAX))
            .collect(),
        lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
    }
    .load(conn)
    .await
}

/// Gives up a delivery's hold on `id` without an attempt.
pub async fn release_lease(conn: &mut AsyncPgConnection, id: EventId) -> QueryResult<()> {
    diesel::update(events::table.filter(events::id.eq(id)))
        .set(events::leased_until.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
        .map(drop)
}

/// Holds events of disabled subscriptions: still to deliver, but due at no particular time
/// (`next_attempt_at` null) until the subscription is re-enabled.
pub async fn hold(conn: &mut AsyncPgConnection, ids: &[EventId]) -> QueryResult<()> {
    diesel::update(
        events::table
            .filter(events::id.eq_any(ids))
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
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub event: EventId,
    pub subscription: SubscriptionId,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// The status the event moves to (a completed event stays completed whatever this says).
    pub status: EventStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Retries scheduled so far, this one included.
    pub retry_count: i32,
}

/// What a batch of attempts does to one subscription's circuit breaker, in the order they
/// were made: a success resets the count of consecutive failures, each failure adds one.
struct BreakerStep<'a> {
    subscription: SubscriptionId,
    /// Whether one of the attempts succeeded: the count starts again from the last success.
    reset: bool,
    /// Failures before the first success (all of them, without one): added to the count as it
    /// was, they may open the breaker even though a success follows.
    early: i32,
    /// Failures since the last success (all of them, without one).
    failures: i32,
    /// The last failure's error, for the reason the breaker gives when it opens.
    last_error: Option<&'a str>,
}

fn breaker_steps(attempts: &[AttemptRecord]) -> Vec<BreakerStep<'_>> {
    let mut steps: Vec<BreakerStep<'_>> = Vec::new();
    for attempt in attempts {
        let index = match steps
            .iter()
            .position(|step| step.subscription == attempt.subscription)
        {
            Some(index) => index,
            None => {
                steps.push(BreakerStep {
                    subscription: attempt.subscription,
                    reset: false,
                    early: 0,
                    failures: 0,
                    last_error: None,
                });
                steps.len() - 1
            }
        };
        let step = &mut steps[index];
        if attempt.status == EventStatus::Completed {
            step.reset = true;
            step.failures = 0;
        } else {
            if !step.reset {
                step.early += 1;
            }
            step.failures += 1;
            step.last_error = attempt.error.as_deref();
        }
    }
    // Locked in the order of their ids, as every batch locks them.
    steps.sort_by_key(|step| step.subscription.0);
    steps
}

/// Records attempts and moves their events and subscriptions on, in one statement (one round
/// trip for the whole batch):
/// - each attempt's number is its event's new attempt count, so concurrent duplicate
///   deliveries still number their attempts without gaps or clashes; a completed event stays
///   completed;
/// - the circuit breaker: each failure adds one to its subscription's consecutive failures and,
///   at the threshold, disables it with a reason; a success resets the count (writing the row
///   only when there is something to reset). A subscription's attempts in the batch count in
///   the order given.
///
/// Hand-written with a static query id, so it is prepared once per connection.
struct RecordAttempts<'a> {
    ids: Vec<EventId>,
    statuses: Vec<EventStatus>,
    errors: Vec<Option<&'a str>>,
    retry_counts: Vec<i32>,
    next_attempts: Vec<Option<DateTime<Utc>>>,
    started: Vec<DateTime<Utc>>,
    durations: Vec<i32>,
    status_codes: Vec<Option<i32>>,
    response_bodies: Vec<Option<&'a str>>,
    breakers: Vec<SubscriptionId>,
    resets: Vec<bool>,
    early: Vec<i32>,
    failures: Vec<i32>,
    last_errors: Vec<Option<&'a str>>,
    threshold: i32,
}

impl Query for RecordAttempts<'_> {
    /// How many subscriptions the batch's failures disabled.
    type SqlType = BigInt;
}

impl QueryId for RecordAttempts<'_> {
    type QueryId = RecordAttempts<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl QueryFragment<Pg> for RecordAttempts<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH outcome AS (SELECT * FROM unnest(");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.statuses)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.errors)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.retry_counts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Timestamptz>>, _>(&self.next_attempts)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Timestamptz>, _>(&self.started)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.durations)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Integer>>, _>(&self.status_codes)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.response_bodies)?;
        out.push_sql(
            ") AS outcome (id, status, error, retry_count, next_attempt_at, started_at, \
                 duration_ms, status_code, response_body)), \
             updated AS (UPDATE events SET \
                 attempts = events.attempts + 1, \
                 status = CASE WHEN events.status = 'completed' THEN events.status \
                     ELSE outcome.status END, \
                 completed_at = CASE WHEN outcome.status = 'completed' \
                     THEN coalesce(events.completed_at, now()) ELSE events.completed_at END, \
                 last_error = CASE WHEN events.status = 'completed' \
                     OR outcome.status = 'completed' THEN NULL ELSE outcome.error END, \
                 leased_until = NULL, retry_count = outcome.retry_count, \
                 next_attempt_at = outcome.next_attempt_at \
                 FROM outcome WHERE events.id = outcome.id \
                 RETURNING events.id, events.attempts, events.subscription_id), \
             step AS (SELECT unnested.*, ",
        );
        out.push_bind_param::<Integer, _>(&self.threshold)?;
        out.push_sql("::integer AS threshold FROM unnest(");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.breakers)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Bool>, _>(&self.resets)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.early)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Integer>, _>(&self.failures)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.last_errors)?;
        // Counted from the subscription's row as it is when locked, so batches recorded at
        // the same time each add their own failures. The breaker opens when the count reaches
        // the threshold before the batch's first success, or after its last.
        out.push_sql(
            ") AS unnested (subscription_id, reset, early, failures, last_error) \
                 WHERE EXISTS (SELECT 1 FROM updated \
                     WHERE updated.subscription_id = unnested.subscription_id)), \
             breaker_locked AS (SELECT subscriptions.id, \
                 subscriptions.is_active AS was_active FROM subscriptions \
                 JOIN step ON step.subscription_id = subscriptions.id \
                 WHERE step.failures > 0 OR step.early > 0 \
                     OR subscriptions.consecutive_failures <> 0 \
                 ORDER BY subscriptions.id FOR NO KEY UPDATE OF subscriptions), \
             breaker AS (UPDATE subscriptions SET \
                 consecutive_failures = CASE WHEN step.reset THEN step.failures \
                     ELSE subscriptions.consecutive_failures + step.failures END, \
                 is_active = subscriptions.is_active \
                     AND subscriptions.consecutive_failures + step.early < step.threshold \
                     AND CASE WHEN step.reset THEN step.failures \
                         ELSE subscriptions.consecutive_failures + step.failures END \
                         < step.threshold, \
                 disabled_reason = CASE WHEN subscriptions.is_active AND ( \
                         subscriptions.consecutive_failures + step.early >= step.threshold \
                         OR CASE WHEN step.reset THEN step.failures \
                             ELSE subscriptions.consecutive_failures + step.failures END \
                             >= step.threshold) \
                     THEN 'circuit breaker opened after ' \
                          || greatest(subscriptions.consecutive_failures + step.early, \
                                      step.failures) \
                          || ' consecutive failed attempts; last: ' \
                          || coalesce(step.last_error, 'unknown') \
                     ELSE subscriptions.disabled_reason END \
                 FROM step JOIN breaker_locked ON breaker_locked.id = step.subscription_id \
                 WHERE subscriptions.id = step.subscription_id \
                   AND (step.failures > 0 OR step.early > 0 \
                        OR subscriptions.consecutive_failures <> 0) \
                 RETURNING breaker_locked.was_active AND NOT subscriptions.is_active AS tripped), \
             inserted AS (INSERT INTO delivery_attempts (event_id, subscription_id, attempt, \
                 started_at, duration_ms, status_code, error, response_body) \
             SELECT updated.id, updated.subscription_id, updated.attempts, outcome.started_at, \
                 outcome.duration_ms, outcome.status_code, outcome.error, outcome.response_body \
             FROM updated JOIN outcome ON outcome.id = updated.id) \
             SELECT count(*) FROM breaker WHERE tripped",
        );
        Ok(())
    }
}

/// Records these attempts, in the order they were made, in one statement; a subscription's
/// circuit breaker opens once `breaker_threshold` consecutive attempts have failed. Answers how
/// many subscriptions it disabled.
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    attempts: &[AttemptRecord],
    breaker_threshold: i32,
) -> QueryResult<u64> {
    let steps = breaker_steps(attempts);
    RecordAttempts {
        ids: attempts.iter().map(|a| a.event).collect(),
        statuses: attempts.iter().map(|a| a.status).collect(),
        errors: attempts.iter().map(|a| a.error.as_deref()).collect(),
        retry_counts: attempts.iter().map(|a| a.retry_count).collect(),
        next_attempts: attempts.iter().map(|a| a.next_attempt_at).collect(),
        started: attempts.iter().map(|a| a.started_at).collect(),
        durations: attempts.iter().map(|a| a.duration_ms).collect(),
        status_codes: attempts.iter().map(|a| a.status_code).collect(),
        response_bodies: attempts
            .iter()
            .map(|a| a.response_body.as_deref())
            .collect(),
        breakers: steps.iter().map(|step| step.subscription).collect(),
        resets: steps.iter().map(|step| step.reset).collect(),
        early: steps.iter().map(|step| step.early).collect(),
        failures: steps.iter().map(|step| step.failures).collect(),
        last_errors: steps.iter().map(|step| step.last_error).collect(),
        threshold: breaker_threshold,
    }
    .get_result::<i64>(conn)
    .await
    .map(|tripped| u64::try_from(tripped).unwrap_or(0))
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

/// Events still to deliver, and failed ones, counted by status (completed events, most of the
/// table, are not). Each count reads one partial index.
pub async fn count_unfinished(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(EventStatus, i64)>> {
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = Text)]
        status: EventStatus,
        #[diesel(sql_type = BigInt)]
        events: i64,
    }
    let counted: Vec<Counted> = diesel::sql_query(
        "SELECT status, count(*) AS events FROM events \
             WHERE status IN ('pending', 'retrying') GROUP BY status \
         UNION ALL \
         SELECT 'failed', count(*) FROM events WHERE status = 'failed'",
    )
    .load(conn)
    .await?;
    Ok(counted
        .into_iter()
        .map(|counted| (counted.status, counted.events))
        .collect())
}

/// Removes, with their attempts, at most `limit` of the oldest events in `status` (completed or
/// failed) that arrived before `before` and were last finished before it too (a replay that
/// delivered an old event recently keeps it). Rows another replica is removing are skipped;
/// answers how many were removed.
pub async fn remove_expired(
    conn: &mut AsyncPgConnection,
    status: EventStatus,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "WITH doomed AS (SELECT id FROM events \
             WHERE id < $1 AND status = $2 AND coalesce(completed_at, received_at) < $3 \
             ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
         DELETE FROM events USING doomed WHERE events.id = doomed.id",
    )
    .bind::<SqlUuid, _>(EventId::first_at(before))
    .bind::<Text, _>(status)
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
