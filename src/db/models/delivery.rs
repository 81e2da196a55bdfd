//! `deliveries`: one event for one subscription, and where it is in its life: claimed and
//! leased by a worker, its attempts recorded (with the circuit breaker), republished by the
//! reaper, replayed, listed, and removed once past retention.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{
    Array, BigInt, Bool, Bytea, Integer, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{deliveries, events, subscriptions};
use crate::domain::{DeliveryId, EventId, EventStatus, SubscriptionId, WorkspaceId, forwarded_url};

/// A delivery as listed: its state, and of its event what a list shows (no body).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = deliveries)]
#[diesel(check_for_backend(Pg))]
pub struct DeliverySummary {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    #[diesel(select_expression = events::content_type)]
    pub content_type: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[diesel(select_expression = events::received_at)]
    pub received_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// What it waits for until `next_attempt_at`: `retry` (its next retry) or [`RATE_LIMIT`].
    pub waiting: Option<String>,
}

/// Which page of deliveries to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventPage {
    pub status: Option<EventStatus>,
    /// Only deliveries older than this one (keyset pagination: ids sort by arrival).
    pub before: Option<DeliveryId>,
    /// Only deliveries of events newer than this one (a live page's newest row).
    pub after: Option<EventId>,
    /// Only deliveries of events received at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only deliveries of events received before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only deliveries of events whose JSON payload contains this document (`@>`).
    pub payload: Option<serde_json::Value>,
    pub limit: i64,
}

/// The smallest delivery id of an event received at `at` or later (a delivery's id carries
/// its event's arrival).
fn first_at(at: DateTime<Utc>) -> DeliveryId {
    DeliveryId(EventId::first_at(at).0)
}

/// What a delivery worker needs: the event's bytes and its subscription as they are now, so an
/// edited URL or a disabled subscription takes effect for deliveries already queued.
/// No `Debug`: it holds the signing secrets.
#[derive(Clone, Queryable)]
pub struct DeliveryJob {
    /// The subscription's owner, whose pages hear of the attempt.
    pub workspace_id: WorkspaceId,
    /// The event delivered: its id is the `webhook-id` of every attempt.
    pub event_id: EventId,
    pub body: Vec<u8>,
    pub content_type: Option<String>,
    pub target_url: String,
    pub is_active: bool,
    pub signing_secret: String,
    pub previous_signing_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When the event arrived, for the end-to-end latency of its delivery.
    pub received_at: DateTime<Utc>,
    /// Whether the subscription forwards the path and query the event arrived with.
    pub forward_path: bool,
    pub path: String,
    pub query: String,
    /// The subscription's delivery policy, as stored (see [`Policy`]).
    pub policy: serde_json::Value,
    /// When the delivery is due, as its retry or its rate limit set it: a message may bring it
    /// back before (see [`crate::queue::Route::Wait`]). `None` when it waits for nothing (`waiting`
    /// is null): due now, or republished by the reaper, whose claim pushes `next_attempt_at` on to
    /// mark when it may republish it again, not when it is due.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Whether its subscription is of kind `cli`: its `spenza listen` sessions make it.
    pub listen: bool,
}

impl DeliveryJob {
    /// Where the event goes: the target URL, with the event's path and query when the
    /// subscription forwards them.
    pub fn url(&self) -> std::borrow::Cow<'_, str> {
        if self.forward_path {
            forwarded_url(&self.target_url, &self.path, &self.query).into()
        } else {
            self.target_url.as_str().into()
        }
    }
}

/// What a delivery worker needs, for the delivery it claimed.
#[derive(Clone, Queryable)]
pub struct Claimed {
    pub id: DeliveryId,
    /// The step of its chain it was claimed at: that of the message that took it.
    pub retry_count: i32,
    pub job: DeliveryJob,
}

/// One delivery message's claim: its delivery, at the step of its attempt chain it carries.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub id: DeliveryId,
    /// The delivery's event, as its message names it.
    pub event: EventId,
    pub retry_count: u32,
}

/// The delivery claim: takes each delivery for one attempt, only if it is still to deliver, its
/// retry count is the one its message carries (a message of an earlier step of its chain is
/// stale), and no other delivery holds it; then holds it for the lease. A claim that waited for
/// another transaction's update of the row checks these again on the row as updated. (Two
/// batches that deadlock over rows they share fail, and are claimed again one by one.) One round
/// trip for the whole batch, which also loads what each attempt needs. Hand-written (an
/// `UPDATE ... FROM ... RETURNING` across two tables) with a static query id, so it is
/// prepared once per connection.
struct ClaimForDelivery {
    ids: Vec<DeliveryId>,
    events: Vec<EventId>,
    id_range: (Option<DeliveryId>, Option<DeliveryId>),
    event_range: (Option<EventId>, Option<EventId>),
    retry_counts: Vec<i32>,
    lease_ms: i64,
    /// The process's delivery timeout.
    timeout_ms: i64,
    /// Whether a `spenza listen` session claims (it leases every delivery); else a delivery
    /// worker, which leases none of a `cli` subscription's (it only passes them on).
    listening: bool,
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
            SqlUuid,
            Bytea,
            Nullable<Text>,
            Text,
            Bool,
            Text,
            Nullable<Text>,
            Nullable<Timestamptz>,
            Timestamptz,
            Bool,
            Text,
            Text,
            Jsonb,
            Nullable<Timestamptz>,
            Bool,
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
             UPDATE deliveries SET leased_until = CASE WHEN subscriptions.kind = 'cli' AND NOT ",
        );
        out.push_bind_param::<Bool, _>(&self.listening)?;
        out.push_sql(" THEN deliveries.leased_until ELSE now() + make_interval(secs => (");
        out.push_bind_param::<BigInt, _>(&self.lease_ms)?;
        // A subscription whose timeout is longer than the process's holds its deliveries
        // longer by as much.
        out.push_sql(" + greatest(0, coalesce((subscriptions.policy ->> 'timeout_ms')::bigint, ");
        out.push_bind_param::<BigInt, _>(&self.timeout_ms)?;
        out.push_sql(") - ");
        out.push_bind_param::<BigInt, _>(&self.timeout_ms)?;
        out.push_sql(
            ")) / 1000.0) END, \
             republishes = CASE WHEN subscriptions.kind = 'cli' AND NOT ",
        );
        out.push_bind_param::<Bool, _>(&self.listening)?;
        out.push_sql(
            " THEN deliveries.republishes ELSE 0 END \
             FROM subscriptions, events, wanted \
             WHERE subscriptions.id = deliveries.subscription_id \
               AND events.id = deliveries.event_id AND deliveries.id = wanted.id \
               AND deliveries.id = ANY(",
        );
        // The batch's keys, again, for each growing table: whatever plan is made, it reaches
        // them through an index searched for the keys (see `Plans::Generic`). For the same
        // reason the status is written as what it is not: no partial index's predicate follows
        // from that, so no plan walks the whole of such an index.
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(") AND deliveries.id BETWEEN ");
        // And their range, so that the plan skips the partitions of other days (see
        // `super::key_range`).
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.id_range.0)?;
        out.push_sql(" AND ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.id_range.1)?;
        out.push_sql(" AND events.id = ANY(");
        out.push_bind_param::<Array<SqlUuid>, _>(&self.events)?;
        out.push_sql(") AND events.id BETWEEN ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.event_range.0)?;
        out.push_sql(" AND ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.event_range.1)?;
        out.push_sql(
            " \
               AND deliveries.status NOT IN ('completed', 'failed') \
               AND (deliveries.leased_until IS NULL OR deliveries.leased_until < now()) \
               AND deliveries.retry_count = wanted.retry_count \
             RETURNING deliveries.id, wanted.retry_count, subscriptions.workspace_id, events.id, \
             events.body, events.content_type, \
             subscriptions.target_url, subscriptions.is_active, subscriptions.signing_secret, \
             subscriptions.previous_signing_secret, subscriptions.previous_secret_expires_at, \
             events.received_at, subscriptions.forward_path, events.path, events.query, \
             subscriptions.policy, \
             CASE WHEN deliveries.waiting IS NOT NULL THEN deliveries.next_attempt_at END, \
             subscriptions.kind = 'cli'",
        );
        Ok(())
    }
}

/// Claims each of these deliveries for one attempt at the step of its chain its claim
/// names, holding it for `lease`; those it could claim, each with the step it was claimed at.
/// One not claimed has nothing to attempt: it is gone, delivered, failed, further along its
/// chain, or held by another delivery (a duplicate message; of two claims of one delivery
/// in a batch, at most one is taken, and only one at the delivery's own step).
///
/// A delivery worker (`listening` false) takes a `cli` subscription's delivery without holding
/// it, only to pass it on to its `spenza listen` sessions' queue; the session's claim
/// (`listening` true) holds it while the CLI forwards it.
pub async fn claim_for_delivery(
    conn: &mut AsyncPgConnection,
    claims: &[Claim],
    lease: std::time::Duration,
    timeout: std::time::Duration,
    listening: bool,
) -> QueryResult<Vec<Claimed>> {
    let ids: Vec<DeliveryId> = claims.iter().map(|claim| claim.id).collect();
    let events: Vec<EventId> = claims.iter().map(|claim| claim.event).collect();
    ClaimForDelivery {
        id_range: super::key_range(&ids),
        event_range: super::key_range(&events),
        ids,
        events,
        retry_counts: claims
            .iter()
            .map(|claim| i32::try_from(claim.retry_count).unwrap_or(i32::MAX))
            .collect(),
        lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        timeout_ms: i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX),
        listening,
    }
    .load(conn)
    .await
}

/// Sends a delivery to wait for its subscription's rate limit, without an attempt: due at
/// `until`, saying why it waits, its hold given up.
pub async fn wait_for_rate_limit(
    conn: &mut AsyncPgConnection,
    id: DeliveryId,
    until: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(deliveries::table.filter(deliveries::id.eq(id)))
        .set((
            deliveries::leased_until.eq(None::<DateTime<Utc>>),
            deliveries::next_attempt_at.eq(until),
            deliveries::waiting.eq(RATE_LIMIT),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// What `deliveries.waiting` holds for a delivery waiting for its subscription's rate limit.
pub const RATE_LIMIT: &str = "rate_limit";

/// Gives up deliveries' holds without an attempt: one deferred or sent to wait, or those a
/// `spenza listen` session that ended had sent and not had reported.
pub async fn release_leases(conn: &mut AsyncPgConnection, ids: &[DeliveryId]) -> QueryResult<()> {
    diesel::update(deliveries::table.filter(deliveries::id.eq_any(ids)))
        .set(deliveries::leased_until.eq(None::<DateTime<Utc>>))
        .execute(conn)
        .await
        .map(drop)
}

/// Holds deliveries of disabled subscriptions: still to make, but due at no particular time
/// (`next_attempt_at` null) until the subscription is re-enabled.
pub async fn hold(conn: &mut AsyncPgConnection, ids: &[DeliveryId]) -> QueryResult<()> {
    diesel::update(
        deliveries::table
            .filter(deliveries::id.eq_any(ids))
            .filter(deliveries::status.eq_any([EventStatus::Pending, EventStatus::Retrying])),
    )
    .set((
        deliveries::next_attempt_at.eq(None::<DateTime<Utc>>),
        deliveries::waiting.eq(None::<String>),
        deliveries::leased_until.eq(None::<DateTime<Utc>>),
    ))
    .execute(conn)
    .await
    .map(drop)
}

/// Counts the wait of a subscription's held deliveries (no due time: it was paused or
/// disabled) from now, as it is enabled again: how long it was stopped is not lag.
pub async fn wait_from_now_if_held(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
) -> QueryResult<()> {
    diesel::update(
        deliveries::table
            .filter(deliveries::subscription_id.eq(subscription))
            .filter(deliveries::status.eq_any([EventStatus::Pending, EventStatus::Retrying]))
            .filter(deliveries::next_attempt_at.is_null()),
    )
    .set(deliveries::due_since.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(drop)
}

/// One delivery attempt's result, to record.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery: DeliveryId,
    /// Its event, which live pages show.
    pub event: EventId,
    pub subscription: SubscriptionId,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
    /// The status the delivery moves to (a completed one stays completed whatever this says).
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

/// Records attempts and moves their deliveries and subscriptions on, in one statement (one round
/// trip for the whole batch):
/// - each attempt's number is its delivery's new attempt count, so concurrent duplicate
///   deliveries still number their attempts without gaps or clashes; a completed one stays
///   completed;
/// - the circuit breaker: each failure adds one to its subscription's consecutive failures and,
///   at the threshold, disables it with a reason; a success resets the count (writing the row
///   only when there is something to reset). A subscription's attempts in the batch count in
///   the order given.
///
/// Hand-written with a static query id, so it is prepared once per connection.
struct RecordAttempts<'a> {
    ids: Vec<DeliveryId>,
    id_range: (Option<DeliveryId>, Option<DeliveryId>),
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
             updated AS (UPDATE deliveries SET \
                 attempts = deliveries.attempts + 1, \
                 status = CASE WHEN deliveries.status = 'completed' THEN deliveries.status \
                     ELSE outcome.status END, \
                 completed_at = CASE WHEN outcome.status = 'completed' \
                     THEN coalesce(deliveries.completed_at, now()) \
                     ELSE deliveries.completed_at END, \
                 last_error = CASE WHEN deliveries.status = 'completed' \
                     OR outcome.status = 'completed' THEN NULL ELSE outcome.error END, \
                 leased_until = NULL, retry_count = outcome.retry_count, \
                 next_attempt_at = outcome.next_attempt_at, \
                 waiting = CASE WHEN outcome.status = 'retrying' THEN 'retry' END \
                 FROM outcome WHERE deliveries.id = outcome.id AND deliveries.id = ANY(",
        );
        // The keys again, so that any plan reaches deliveries by them (see `ClaimForDelivery`).
        out.push_bind_param::<Array<SqlUuid>, _>(&self.ids)?;
        out.push_sql(") AND deliveries.id BETWEEN ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.id_range.0)?;
        out.push_sql(" AND ");
        out.push_bind_param::<Nullable<SqlUuid>, _>(&self.id_range.1)?;
        out.push_sql(
            " \
                 RETURNING deliveries.id, deliveries.attempts, deliveries.subscription_id), \
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
             inserted AS (INSERT INTO delivery_attempts (delivery_id, subscription_id, attempt, \
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
    let ids: Vec<DeliveryId> = attempts.iter().map(|a| a.delivery).collect();
    RecordAttempts {
        id_range: super::key_range(&ids),
        ids,
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

/// A delivery that is due for (another) publish, with what its envelope needs.
#[derive(Debug, Clone, QueryableByName)]
pub struct DueDelivery {
    #[diesel(sql_type = SqlUuid)]
    pub id: DeliveryId,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: EventId,
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    #[diesel(sql_type = Integer)]
    pub retry_count: i32,
    #[diesel(sql_type = Text)]
    pub target_url: String,
}

/// Makes deliveries matching the conditions that follow due again with a fresh retry budget.
const REPLAY: &str = "UPDATE deliveries SET status = 'pending', retry_count = 0, \
     next_attempt_at = now(), due_since = now(), completed_at = NULL, waiting = NULL \
     FROM subscriptions WHERE subscriptions.id = deliveries.subscription_id";
/// What a due delivery's envelope needs, from an `UPDATE deliveries ... FROM subscriptions`.
const RETURNING_DUE: &str = " RETURNING deliveries.id, deliveries.event_id, \
     deliveries.subscription_id, deliveries.retry_count, subscriptions.target_url";

/// A condition on `s`, a subscription: it delivers over HTTP, or has a `spenza listen` session
/// connected. A `cli` subscription's deliveries wait in its queue while no session is
/// connected, and the reaper leaves them there: only once one is does it publish what the
/// queue may have lost. Within [`super::listen_session::LIVE_SECONDS`] of its last refresh, a
/// session counts as connected.
pub(crate) const LISTENED: &str = "AND (s.kind = 'http' OR EXISTS (SELECT 1 FROM listen_sessions l \
     WHERE l.subscription_id = s.id AND l.seen_at > now() - interval '30 seconds'))";

/// The reaper's claim: up to `batch` deliveries of active subscriptions still to make whose due
/// time passed more than `grace` ago, or that were held (no due time) while their subscription
/// was disabled (those first: a re-enabled subscription's backlog does not wait behind other
/// late deliveries), and that no worker holds, skipping rows another replica has locked.
/// Claiming pushes their due time on: one grace period, doubled for each republish since a
/// worker last claimed the delivery (up to 64), so a delivery still waiting in a long queue is
/// not republished every grace period; the copies that are are dropped by the delivery claim.
/// A held delivery waits from its release on, as far as its subscription's lag goes.
pub async fn claim_overdue(
    conn: &mut AsyncPgConnection,
    grace: std::time::Duration,
    batch: i64,
) -> QueryResult<Vec<DueDelivery>> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    diesel::sql_query(format!(
        "UPDATE deliveries SET next_attempt_at = now() \
             + make_interval(secs => $1 / 1000.0 * 2 ^ least(deliveries.republishes, 6)), \
             republishes = deliveries.republishes + 1, waiting = NULL, \
             due_since = CASE WHEN deliveries.next_attempt_at IS NULL THEN now() \
                 ELSE deliveries.due_since END \
         FROM subscriptions \
         WHERE subscriptions.id = deliveries.subscription_id AND deliveries.id IN ( \
             SELECT d.id FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id \
             WHERE d.status IN ('pending', 'retrying') AND s.is_active {LISTENED} \
               AND (d.leased_until IS NULL OR d.leased_until < now()) \
               AND (d.next_attempt_at IS NULL \
                    OR d.next_attempt_at <= now() - make_interval(secs => $1 / 1000.0)) \
             ORDER BY d.next_attempt_at NULLS FIRST LIMIT $2 \
             FOR UPDATE OF d SKIP LOCKED) \
         {RETURNING_DUE}"
    ))
    .bind::<BigInt, _>(grace_ms)
    .bind::<BigInt, _>(batch)
    .load(conn)
    .await
}

/// The reaper's claim of these deliveries, whose publish failed while the broker was away, with
/// no grace period: those still to make, of active subscriptions, that no worker holds. They
/// are in no queue, so their due time moves on by one grace period only, and the count of
/// republishes that lengthens the reaper's waits is left as it is.
pub async fn claim_missed(
    conn: &mut AsyncPgConnection,
    ids: &[DeliveryId],
    grace: std::time::Duration,
) -> QueryResult<Vec<DueDelivery>> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    diesel::sql_query(format!(
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1 / 1000.0), \
             waiting = NULL \
         FROM subscriptions \
         WHERE subscriptions.id = deliveries.subscription_id AND deliveries.id = ANY($2) \
           AND deliveries.status IN ('pending', 'retrying') AND subscriptions.is_active \
           AND (deliveries.leased_until IS NULL OR deliveries.leased_until < now()) \
         {RETURNING_DUE}"
    ))
    .bind::<BigInt, _>(grace_ms)
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await
}

/// Makes one of a workspace's deliveries that waits for its next retry due now, at the step of
/// its chain it is at: its envelope claims it, and the retry's own message, arriving later at
/// the same step, finds it further along (or held) and is dropped. `Ok(None)`: no such delivery
/// of theirs waiting for a retry of an active subscription, or one being attempted.
pub async fn retry_now_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: DeliveryId,
) -> QueryResult<Option<DueDelivery>> {
    diesel::sql_query(format!(
        "UPDATE deliveries SET next_attempt_at = now(), waiting = NULL, republishes = 0 \
         FROM subscriptions WHERE subscriptions.id = deliveries.subscription_id \
         AND subscriptions.workspace_id = $1 AND deliveries.id = $2 \
         AND deliveries.status = 'retrying' AND subscriptions.is_active \
         AND (deliveries.leased_until IS NULL OR deliveries.leased_until < now()){RETURNING_DUE}"
    ))
    .bind::<SqlUuid, _>(workspace)
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()
}

/// Makes one of a workspace's delivered or failed deliveries due again with a fresh retry budget.
/// `Ok(None)`: no such delivery of theirs, or it is still being made.
pub async fn replay_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: DeliveryId,
) -> QueryResult<Option<DueDelivery>> {
    diesel::sql_query(format!(
        "{REPLAY} AND subscriptions.workspace_id = $1 AND deliveries.id = $2 \
         AND deliveries.status IN ('completed', 'failed'){RETURNING_DUE}"
    ))
    .bind::<SqlUuid, _>(workspace)
    .bind::<SqlUuid, _>(id)
    .get_result(conn)
    .await
    .optional()
}

/// Makes the ended (delivered or failed) deliveries of one of a workspace's events due again with
/// a fresh retry budget; those still being made are left alone.
pub async fn replay_event_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    event: EventId,
) -> QueryResult<Vec<DueDelivery>> {
    diesel::sql_query(format!(
        "{REPLAY} AND subscriptions.workspace_id = $1 AND deliveries.event_id = $2 \
         AND deliveries.status IN ('completed', 'failed'){RETURNING_DUE}"
    ))
    .bind::<SqlUuid, _>(workspace)
    .bind::<SqlUuid, _>(event)
    .load(conn)
    .await
}

/// Makes those of `ids` that are the workspace's and failed due again with a fresh retry budget; the
/// rest are left alone (the graveyard replays what failed, never a delivered one by mistake).
pub async fn replay_failed_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    ids: &[DeliveryId],
) -> QueryResult<Vec<DueDelivery>> {
    diesel::sql_query(format!(
        "{REPLAY} AND subscriptions.workspace_id = $1 AND deliveries.id = ANY($2) \
         AND deliveries.status = 'failed'{RETURNING_DUE}"
    ))
    .bind::<SqlUuid, _>(workspace)
    .bind::<Array<SqlUuid>, _>(ids)
    .load(conn)
    .await
}

/// Which of a workspace's deliveries a bulk replay takes: those with the status (`completed` or
/// `failed`), of one subscription or all, whose events were received in a time range and have
/// a payload containing a document.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    pub status: EventStatus,
    pub subscription: Option<SubscriptionId>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub payload: Option<serde_json::Value>,
}

/// The conditions of a replay filter on `deliveries` joined to `subscriptions`, binds $1..$6.
/// The time range bounds ids (a delivery's id carries its event's arrival), so it walks the
/// same indexes as the pages do; the payload is its event's.
const IN_REPLAY: &str = "subscriptions.workspace_id = $1 AND deliveries.status = $6 \
     AND ($2::uuid IS NULL OR deliveries.subscription_id = $2) \
     AND ($3::uuid IS NULL OR deliveries.id >= $3) AND ($4::uuid IS NULL OR deliveries.id < $4) \
     AND ($5::jsonb IS NULL OR EXISTS (SELECT 1 FROM events \
         WHERE events.id = deliveries.event_id AND events.payload @> $5))";

/// How many of the workspace's deliveries the filter takes.
pub async fn count_replayable(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    filter: &ReplayFilter,
) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        count: i64,
    }
    let query = diesel::sql_query(format!(
        "SELECT count(*) AS count FROM deliveries JOIN subscriptions \
         ON subscriptions.id = deliveries.subscription_id WHERE {IN_REPLAY}"
    ));
    bind_replay(query, workspace, filter)
        .get_result::<Count>(conn)
        .await
        .map(|found| found.count)
}

/// Replays up to `batch` of the workspace's deliveries the filter takes with ids after `after`,
/// oldest first; what it made due. A bulk replay walks its range with `after` set to the last
/// id of each batch, so a delivery replayed (and maybe already made again, back in the status
/// the filter takes) is not taken twice. Rows another transaction holds (the issue scan counting
/// the graveyard) are waited for, not skipped: the walk would pass them by for good. The scan
/// skips what a replay holds, and replays lock in id order, so none of them deadlock.
pub async fn replay_batch(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    filter: &ReplayFilter,
    after: Option<DeliveryId>,
    batch: i64,
) -> QueryResult<Vec<DueDelivery>> {
    let query = diesel::sql_query(format!(
        "{REPLAY} AND deliveries.id IN (SELECT deliveries.id FROM deliveries JOIN subscriptions \
         ON subscriptions.id = deliveries.subscription_id WHERE {IN_REPLAY} \
         AND ($8::uuid IS NULL OR deliveries.id > $8) \
         ORDER BY deliveries.id LIMIT $7 FOR UPDATE OF deliveries){RETURNING_DUE}"
    ));
    bind_replay(query, workspace, filter)
        .bind::<BigInt, _>(batch)
        .bind::<Nullable<SqlUuid>, _>(after)
        .load(conn)
        .await
}

fn bind_replay(
    query: diesel::query_builder::SqlQuery,
    workspace: WorkspaceId,
    filter: &ReplayFilter,
) -> diesel::query_builder::BoxedSqlQuery<'static, Pg, diesel::query_builder::SqlQuery> {
    query
        .into_boxed()
        .bind::<SqlUuid, _>(workspace)
        .bind::<Nullable<SqlUuid>, _>(filter.subscription)
        .bind::<Nullable<SqlUuid>, _>(filter.since.map(first_at))
        .bind::<Nullable<SqlUuid>, _>(filter.until.map(first_at))
        .bind::<Nullable<Jsonb>, _>(filter.payload.clone())
        .bind::<Text, _>(filter.status)
}

/// A page of a workspace's deliveries, newest first: of one subscription, or of all of them (the
/// graveyard is `status: failed`).
pub async fn list_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    subscription: Option<SubscriptionId>,
    page: &EventPage,
) -> QueryResult<Vec<DeliverySummary>> {
    let mut query = deliveries::table
        .inner_join(subscriptions::table)
        .inner_join(events::table)
        .filter(subscriptions::workspace_id.eq(workspace))
        .select(DeliverySummary::as_select())
        .order(deliveries::id.desc())
        .limit(page.limit)
        .into_boxed();
    if let Some(subscription) = subscription {
        query = query.filter(deliveries::subscription_id.eq(subscription));
    }
    if let Some(status) = page.status {
        query = query.filter(deliveries::status.eq(status));
    }
    if let Some(before) = page.before {
        query = query.filter(deliveries::id.lt(before));
    }
    if let Some(after) = page.after {
        query = query.filter(deliveries::event_id.gt(after));
    }
    if let Some(since) = page.since {
        query = query.filter(deliveries::id.ge(first_at(since)));
    }
    if let Some(until) = page.until {
        query = query.filter(deliveries::id.lt(first_at(until)));
    }
    if let Some(payload) = &page.payload {
        query = query.filter(events::payload.contains(payload.clone()));
    }
    query.load(conn).await
}

/// The deliveries of these of a workspace's events (others' are left out), newest first.
pub async fn summaries_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    events: &[EventId],
) -> QueryResult<Vec<DeliverySummary>> {
    deliveries::table
        .inner_join(subscriptions::table)
        .inner_join(events::table)
        .filter(subscriptions::workspace_id.eq(workspace))
        .filter(deliveries::event_id.eq_any(events))
        .order(deliveries::id.desc())
        .select(DeliverySummary::as_select())
        .load(conn)
        .await
}

/// The deliveries of one event, in the order they were made.
pub async fn of_event(
    conn: &mut AsyncPgConnection,
    event: EventId,
) -> QueryResult<Vec<DeliverySummary>> {
    deliveries::table
        .inner_join(events::table)
        .filter(deliveries::event_id.eq(event))
        .order(deliveries::id.asc())
        .select(DeliverySummary::as_select())
        .load(conn)
        .await
}

/// One of a workspace's deliveries; someone else's is `None`, exactly like a missing one.
pub async fn find_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: DeliveryId,
) -> QueryResult<Option<DeliverySummary>> {
    deliveries::table
        .inner_join(subscriptions::table)
        .inner_join(events::table)
        .filter(deliveries::id.eq(id))
        .filter(subscriptions::workspace_id.eq(workspace))
        .select(DeliverySummary::as_select())
        .first(conn)
        .await
        .optional()
}

/// Deliveries still to make, and failed ones, counted by status (completed ones, most of the
/// table, are not). Each count reads one partial index.
pub async fn count_unfinished(
    conn: &mut AsyncPgConnection,
) -> QueryResult<Vec<(EventStatus, i64)>> {
    #[derive(QueryableByName)]
    struct Counted {
        #[diesel(sql_type = Text)]
        status: EventStatus,
        #[diesel(sql_type = BigInt)]
        deliveries: i64,
    }
    let counted: Vec<Counted> = diesel::sql_query(
        "SELECT status, count(*) AS deliveries FROM deliveries \
             WHERE status IN ('pending', 'retrying') GROUP BY status \
         UNION ALL \
         SELECT 'failed', count(*) FROM deliveries WHERE status = 'failed'",
    )
    .load(conn)
    .await?;
    Ok(counted
        .into_iter()
        .map(|counted| (counted.status, counted.deliveries))
        .collect())
}

/// Removes, with their attempts, at most `limit` of the oldest deliveries in `status`
/// (completed or failed) whose events arrived before `before` and that were last finished
/// before it too (a replay that delivered an old event recently keeps it), with ids below
/// `until` when given; then the events of those that have no delivery left. Rows another
/// replica is removing are skipped; answers how many deliveries were removed.
pub async fn remove_expired(
    conn: &mut AsyncPgConnection,
    status: EventStatus,
    before: DateTime<Utc>,
    until: Option<EventId>,
    limit: i64,
) -> QueryResult<usize> {
    #[derive(QueryableByName)]
    struct Removed {
        #[diesel(sql_type = SqlUuid)]
        event_id: EventId,
    }
    let removed: Vec<Removed> = diesel::sql_query(
        "WITH doomed AS (SELECT id FROM deliveries \
             WHERE id < $1 AND status = $2 AND coalesce(completed_at, '-infinity') < $3 \
             ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
         DELETE FROM deliveries USING doomed WHERE deliveries.id = doomed.id \
         RETURNING deliveries.event_id",
    )
    .bind::<SqlUuid, _>(below(before, until))
    .bind::<Text, _>(status)
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await?;
    let events: Vec<EventId> = removed.iter().map(|removed| removed.event_id).collect();
    diesel::delete(
        events::table
            .filter(events::id.eq_any(&events))
            .filter(diesel::dsl::not(diesel::dsl::exists(
                deliveries::table.filter(deliveries::event_id.eq(events::id)),
            ))),
    )
    .execute(conn)
    .await?;
    Ok(removed.len())
}

/// Removes at most `limit` of the oldest events received before `before` (with ids below
/// `until` when given) that have no delivery (no subscription took them), skipping rows another
/// replica is removing; answers how many.
pub async fn remove_unrouted(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    until: Option<EventId>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "WITH doomed AS (SELECT id FROM events WHERE id < $1 \
             AND NOT EXISTS (SELECT 1 FROM deliveries WHERE deliveries.event_id = events.id) \
             ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         DELETE FROM events USING doomed WHERE events.id = doomed.id",
    )
    .bind::<SqlUuid, _>(below(before, until))
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

/// The first id retention leaves: that of `before`, or `until` if lower.
fn below(before: DateTime<Utc>, until: Option<EventId>) -> EventId {
    let bound = EventId::first_at(before);
    until.map_or(bound, |until| until.min(bound))
}
