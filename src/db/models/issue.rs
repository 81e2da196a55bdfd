//! `issues`: what the relay noticed going wrong, one row per condition, and the scans that
//! find the conditions (the breaker's disabled subscriptions, the graveyard's newcomers, the
//! sources refusing requests, the subscriptions falling behind).

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::issues;
use crate::domain::{
    EventId, IssueId, IssueKind, IssueState, SourceId, SubscriptionId, WorkspaceId,
};

/// How many example occurrences an issue keeps.
pub const EXAMPLES: i32 = 5;

/// The advisory lock one scan at a time holds, across replicas ("spenza:issues").
const SCAN_LOCK: i64 = 0x7370_656e_7a61_6973;

/// An issue as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = issues)]
#[diesel(check_for_backend(Pg))]
pub struct Issue {
    pub id: IssueId,
    pub workspace_id: WorkspaceId,
    pub kind: IssueKind,
    pub subscription_id: Option<SubscriptionId>,
    pub source_id: SourceId,
    pub cause: String,
    pub state: IssueState,
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub opened_at: DateTime<Utc>,
    pub reopened: i32,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    /// Events, or refused requests for `source_rejecting`; newest first.
    pub examples: Vec<Uuid>,
    pub detail: String,
    pub transition: i32,
}

/// What a scan saw of one condition.
#[derive(Debug, Clone)]
pub struct Observation {
    pub workspace: WorkspaceId,
    pub kind: IssueKind,
    pub subscription: Option<SubscriptionId>,
    pub source: SourceId,
    pub cause: String,
    /// Occurrences seen since the last scan (for an ongoing kind, counted only when it begins).
    pub count: i64,
    pub seen: DateTime<Utc>,
    /// The newest first.
    pub examples: Vec<Uuid>,
    pub detail: String,
}

/// What changed in an issue's life, to tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Opened,
    Reopened,
    Resolved,
}

/// One issue's change, as the notifications need it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Transition {
    #[diesel(sql_type = SqlUuid)]
    pub issue: IssueId,
    #[diesel(sql_type = SqlUuid)]
    pub workspace: WorkspaceId,
    #[diesel(sql_type = Text)]
    pub kind: IssueKind,
    #[diesel(sql_type = Integer)]
    pub transition: i32,
    #[diesel(sql_type = Text)]
    pub(super) change: String,
    /// Whether a person made it (resolving by hand) rather than the relay.
    #[diesel(sql_type = Bool)]
    pub by_person: bool,
}

impl Transition {
    pub fn change(&self) -> Change {
        match self.change.as_str() {
            "opened" => Change::Opened,
            "reopened" => Change::Reopened,
            _ => Change::Resolved,
        }
    }
}

/// Takes the scan's lock for the transaction, unless another process holds it.
pub async fn try_lock_scan(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Bool)]
        locked: bool,
    }
    diesel::sql_query("SELECT pg_try_advisory_xact_lock($1) AS locked")
        .bind::<BigInt, _>(SCAN_LOCK)
        .get_result::<Locked>(conn)
        .await
        .map(|row| row.locked)
}

/// Records an observation: opens the issue, reopens it when it was resolved, or adds to it.
/// Answers the transition, if it made one. (An issue's `opened_at` is set to the transaction's
/// time exactly when it opens or reopens, which is how the statement tells.)
pub async fn observe(
    conn: &mut AsyncPgConnection,
    seen: &Observation,
) -> QueryResult<Option<Transition>> {
    diesel::sql_query(
        "INSERT INTO issues AS i (id, workspace_id, kind, subscription_id, source_id, cause, \
             state, count, first_seen, last_seen, opened_at, examples, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, 'open', $7, $8, $8, now(), $9, $10) \
         ON CONFLICT (kind, coalesce(subscription_id, source_id), cause) DO UPDATE SET \
             count = i.count + CASE WHEN $11 AND i.state <> 'resolved' THEN 0 \
                 ELSE EXCLUDED.count END, \
             last_seen = greatest(i.last_seen, EXCLUDED.last_seen), \
             examples = CASE WHEN $11 AND i.state <> 'resolved' THEN i.examples \
                 ELSE ARRAY(SELECT e FROM unnest(EXCLUDED.examples || i.examples) \
                     WITH ORDINALITY AS u (e, n) GROUP BY e ORDER BY min(n) LIMIT $12) END, \
             detail = EXCLUDED.detail, \
             state = CASE WHEN i.state = 'resolved' THEN 'open' ELSE i.state END, \
             opened_at = CASE WHEN i.state = 'resolved' THEN now() ELSE i.opened_at END, \
             reopened = i.reopened + (i.state = 'resolved')::integer, \
             transition = i.transition + (i.state = 'resolved')::integer, \
             acknowledged_at = CASE WHEN i.state = 'resolved' THEN NULL \
                 ELSE i.acknowledged_at END, \
             acknowledged_by = CASE WHEN i.state = 'resolved' THEN NULL \
                 ELSE i.acknowledged_by END, \
             resolved_at = NULL, resolved_by = NULL \
         RETURNING i.id AS issue, i.workspace_id AS workspace, i.kind, i.transition, \
             CASE WHEN i.opened_at <> now() THEN '' \
                 WHEN i.transition = 1 THEN 'opened' ELSE 'reopened' END AS change, \
             false AS by_person",
    )
    .bind::<SqlUuid, _>(IssueId(Uuid::now_v7()))
    .bind::<SqlUuid, _>(seen.workspace)
    .bind::<Text, _>(seen.kind)
    .bind::<Nullable<SqlUuid>, _>(seen.subscription)
    .bind::<SqlUuid, _>(seen.source)
    .bind::<Text, _>(&seen.cause)
    .bind::<BigInt, _>(seen.count)
    .bind::<Timestamptz, _>(seen.seen)
    .bind::<Array<SqlUuid>, _>(&seen.examples)
    .bind::<Text, _>(&seen.detail)
    .bind::<Bool, _>(seen.kind.is_ongoing())
    .bind::<Integer, _>(EXAMPLES)
    .get_result::<Transition>(conn)
    .await
    .map(|transition| (!transition.change.is_empty()).then_some(transition))
}

/// Resolves these issues, by `by` (a person) or by themselves (`None`); answers the
/// transitions, for those not resolved already.
pub async fn resolve(
    conn: &mut AsyncPgConnection,
    ids: &[IssueId],
    by: Option<&str>,
) -> QueryResult<Vec<Transition>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    diesel::sql_query(
        "UPDATE issues SET state = 'resolved', resolved_at = now(), resolved_by = $2, \
             transition = transition + 1 \
         WHERE id = ANY($1) AND state <> 'resolved' \
         RETURNING id AS issue, workspace_id AS workspace, kind, transition, \
             'resolved' AS change, resolved_by IS NOT NULL AS by_person",
    )
    .bind::<Array<SqlUuid>, _>(ids)
    .bind::<Nullable<Text>, _>(by)
    .load(conn)
    .await
}

/// The unresolved issues of a kind, across workspaces (for the scan).
pub async fn unresolved(conn: &mut AsyncPgConnection, kind: IssueKind) -> QueryResult<Vec<Issue>> {
    issues::table
        .filter(issues::kind.eq(kind))
        .filter(issues::state.ne(IssueState::Resolved))
        .select(Issue::as_select())
        .load(conn)
        .await
}

/// A subscription the circuit breaker disabled.
#[derive(Debug, Clone, QueryableByName)]
pub struct Disabled {
    #[diesel(sql_type = SqlUuid)]
    pub id: SubscriptionId,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: WorkspaceId,
    #[diesel(sql_type = SqlUuid)]
    pub source_id: SourceId,
    #[diesel(sql_type = Text)]
    pub reason: String,
}

/// What `subscriptions.disabled_reason` starts with when the breaker disabled it.
pub const BREAKER_REASON: &str = "circuit breaker opened";

/// The subscriptions the circuit breaker has disabled.
pub async fn disabled_by_breaker(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Disabled>> {
    diesel::sql_query(
        "SELECT id, workspace_id, source_id, disabled_reason AS reason FROM subscriptions \
         WHERE NOT is_active AND starts_with(disabled_reason, $1)",
    )
    .bind::<Text, _>(BREAKER_REASON)
    .load(conn)
    .await
}

/// Whether a subscription is active and has delivered an event since `since`.
pub async fn delivers_since(
    conn: &mut AsyncPgConnection,
    subscription: SubscriptionId,
    since: DateTime<Utc>,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Delivers {
        #[diesel(sql_type = Bool)]
        delivers: bool,
    }
    diesel::sql_query(
        "SELECT s.is_active AND EXISTS (SELECT 1 FROM delivery_attempts a \
             WHERE a.subscription_id = s.id AND a.started_at > $2 AND a.error IS NULL) \
             AS delivers \
         FROM subscriptions s WHERE s.id = $1",
    )
    .bind::<SqlUuid, _>(subscription)
    .bind::<Timestamptz, _>(since)
    .get_result::<Delivers>(conn)
    .await
    .optional()
    .map(|row| row.is_some_and(|row| row.delivers))
}

/// A delivery that reached the graveyard and was not counted yet.
#[derive(Debug, Clone, QueryableByName)]
pub struct Failed {
    #[diesel(sql_type = SqlUuid)]
    pub event_id: EventId,
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: WorkspaceId,
    #[diesel(sql_type = SqlUuid)]
    pub source_id: SourceId,
    #[diesel(sql_type = Text)]
    pub target_url: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
}

/// Up to `limit` deliveries that reached the graveyard since they were last counted, in no
/// particular order, marked counted: in the scan's transaction, so they count exactly once
/// with its issues. Those of `cli` subscriptions are counted and not answered: a developer's
/// machine that fails is no issue of the workspace's. Unordered, the lookup is one of the
/// index of uncounted failures, which is about empty; in id order it walked the whole
/// graveyard's index for the rows it filtered out, every scan (140 to 300 ms at 40,000
/// failed deliveries).
pub async fn take_uncounted_failures(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> QueryResult<Vec<Failed>> {
    diesel::sql_query(
        "WITH taken AS (UPDATE deliveries d SET counted_attempts = d.attempts \
             FROM subscriptions s \
             WHERE s.id = d.subscription_id AND d.id IN ( \
                 SELECT id FROM deliveries WHERE status = 'failed' \
                 AND attempts > counted_attempts \
                 LIMIT $1 FOR UPDATE SKIP LOCKED) \
             RETURNING d.event_id, d.subscription_id, s.workspace_id, s.source_id, \
                 s.target_url, d.last_error, s.kind) \
         SELECT event_id, subscription_id, workspace_id, source_id, target_url, last_error \
         FROM taken WHERE kind = 'http'",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}

/// A source's refusals since some time.
#[derive(Debug, Clone, QueryableByName)]
pub struct Refusals {
    #[diesel(sql_type = SqlUuid)]
    pub source_id: SourceId,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: WorkspaceId,
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    #[diesel(sql_type = Timestamptz)]
    pub last: DateTime<Utc>,
    /// The newest first.
    #[diesel(sql_type = Array<SqlUuid>)]
    pub examples: Vec<Uuid>,
    /// The newest refusal's reason.
    #[diesel(sql_type = Text)]
    pub reason: String,
}

/// A source's refusals, counted with their newest examples ($3 of them) and reason, from
/// `rejected_requests r` joined to `sources s`: the statement goes on with its conditions.
const REFUSALS: &str = "SELECT r.source_id, s.workspace_id, count(*) AS count, \
     max(r.received_at) AS last, \
     (array_agg(r.id ORDER BY r.received_at DESC))[1:$3] AS examples, \
     (array_agg(r.reason ORDER BY r.received_at DESC))[1] AS reason \
     FROM rejected_requests r JOIN sources s ON s.id = r.source_id";

/// The sources that refused at least `threshold` requests since `since` (and since their issue
/// was last resolved: what came before counts no more), with those.
pub async fn refusing_sources(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
    threshold: i64,
) -> QueryResult<Vec<Refusals>> {
    diesel::sql_query(format!(
        "{REFUSALS} LEFT JOIN issues i ON i.kind = 'source_rejecting' AND i.subscription_id IS NULL \
             AND i.source_id = r.source_id AND i.cause = '' \
         WHERE r.received_at > $1 AND NOT r.handshake \
           AND (i.resolved_at IS NULL OR r.received_at > i.resolved_at) \
         GROUP BY r.source_id, s.workspace_id HAVING count(*) >= $2"
    ))
    .bind::<Timestamptz, _>(since)
    .bind::<BigInt, _>(threshold)
    .bind::<Integer, _>(EXAMPLES)
    .load(conn)
    .await
}

/// A source's refusals since `since`, when it has any.
pub async fn refusals_since(
    conn: &mut AsyncPgConnection,
    source: SourceId,
    since: DateTime<Utc>,
) -> QueryResult<Option<Refusals>> {
    diesel::sql_query(format!(
        "{REFUSALS} WHERE r.source_id = $1 AND r.received_at > $2 AND NOT r.handshake \
         GROUP BY r.source_id, s.workspace_id"
    ))
    .bind::<SqlUuid, _>(source)
    .bind::<Timestamptz, _>(since)
    .bind::<Integer, _>(EXAMPLES)
    .get_result(conn)
    .await
    .optional()
}

/// An active subscription whose oldest undelivered delivery has waited longer than its
/// threshold.
#[derive(Debug, Clone, QueryableByName)]
pub struct Lagging {
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    #[diesel(sql_type = SqlUuid)]
    pub workspace_id: WorkspaceId,
    #[diesel(sql_type = SqlUuid)]
    pub source_id: SourceId,
    #[diesel(sql_type = SqlUuid)]
    pub event_id: EventId,
    #[diesel(sql_type = Timestamptz)]
    pub due_since: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub threshold_ms: i64,
}

/// The active subscriptions falling behind: each one's oldest undelivered delivery (one probe
/// of `deliveries_undelivered` each) against its own threshold, or `default_ms`. A `cli`
/// subscription's deliveries wait for a `spenza listen` session to connect: that is no lag.
pub async fn lagging(conn: &mut AsyncPgConnection, default_ms: i64) -> QueryResult<Vec<Lagging>> {
    diesel::sql_query(
        "SELECT s.id AS subscription_id, s.workspace_id, s.source_id, oldest.event_id, \
             oldest.due_since, t.threshold_ms \
         FROM subscriptions s \
         CROSS JOIN LATERAL (SELECT coalesce((s.policy ->> 'lag_threshold_ms')::bigint, $1) \
             AS threshold_ms) t \
         CROSS JOIN LATERAL (SELECT d.event_id, d.due_since FROM deliveries d \
             WHERE d.subscription_id = s.id AND d.status IN ('pending', 'retrying') \
             ORDER BY d.due_since LIMIT 1) oldest \
         WHERE s.is_active AND s.kind = 'http' \
           AND oldest.due_since < now() - make_interval(secs => t.threshold_ms / 1000.0)",
    )
    .bind::<BigInt, _>(default_ms)
    .load(conn)
    .await
}

/// Which issues to list, the newest first.
#[derive(Debug, Clone, Default)]
pub struct IssuePage {
    pub states: Vec<IssueState>,
    pub kind: Option<IssueKind>,
    pub subscription: Option<SubscriptionId>,
    pub source: Option<SourceId>,
    /// Only issues opened before this one (keyset pagination: ids sort by first opening).
    pub before: Option<IssueId>,
    pub limit: i64,
}

/// A page of a workspace's issues, the newest first.
pub async fn list_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    page: &IssuePage,
) -> QueryResult<Vec<Issue>> {
    let mut query = issues::table
        .filter(issues::workspace_id.eq(workspace))
        .into_boxed();
    if !page.states.is_empty() {
        query = query.filter(issues::state.eq_any(page.states.clone()));
    }
    if let Some(kind) = page.kind {
        query = query.filter(issues::kind.eq(kind));
    }
    if let Some(subscription) = page.subscription {
        query = query.filter(issues::subscription_id.eq(subscription));
    }
    if let Some(source) = page.source {
        query = query.filter(issues::source_id.eq(source));
    }
    if let Some(before) = page.before {
        query = query.filter(issues::id.lt(before));
    }
    query
        .order(issues::id.desc())
        .limit(page.limit)
        .select(Issue::as_select())
        .load(conn)
        .await
}

/// A workspace's unresolved issues, the most recently seen first, then those resolved since
/// `since`, the most recently resolved first (the Issues page).
pub async fn board(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    kind: Option<IssueKind>,
    states: &[IssueState],
    limit: i64,
) -> QueryResult<Vec<Issue>> {
    let mut query = issues::table
        .filter(issues::workspace_id.eq(workspace))
        .into_boxed();
    if let Some(kind) = kind {
        query = query.filter(issues::kind.eq(kind));
    }
    if !states.is_empty() {
        query = query.filter(issues::state.eq_any(states.to_vec()));
    }
    query
        .order((
            issues::state.eq(IssueState::Resolved),
            issues::resolved_at.desc(),
            issues::last_seen.desc(),
        ))
        .limit(limit)
        .select(Issue::as_select())
        .load(conn)
        .await
}

/// One of a workspace's issues.
pub async fn find_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: IssueId,
) -> QueryResult<Option<Issue>> {
    issues::table
        .filter(issues::workspace_id.eq(workspace))
        .filter(issues::id.eq(id))
        .select(Issue::as_select())
        .first(conn)
        .await
        .optional()
}

/// Acknowledges one of a workspace's open issues; `false` when it is not open.
pub async fn acknowledge(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: IssueId,
    by: &str,
) -> QueryResult<bool> {
    diesel::update(
        issues::table
            .filter(issues::workspace_id.eq(workspace))
            .filter(issues::id.eq(id))
            .filter(issues::state.eq(IssueState::Open)),
    )
    .set((
        issues::state.eq(IssueState::Acknowledged),
        issues::acknowledged_at.eq(diesel::dsl::now),
        issues::acknowledged_by.eq(by),
    ))
    .execute(conn)
    .await
    .map(|updated| updated > 0)
}

/// How many of a workspace's issues are open: neither acknowledged nor resolved.
pub async fn count_open(conn: &mut AsyncPgConnection, workspace: WorkspaceId) -> QueryResult<i64> {
    issues::table
        .filter(issues::workspace_id.eq(workspace))
        .filter(issues::state.eq(IssueState::Open))
        .count()
        .get_result(conn)
        .await
}

/// The unresolved issues about one subscription or source (for its page's banner).
pub async fn unresolved_about(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    subscription: Option<SubscriptionId>,
    source: Option<SourceId>,
) -> QueryResult<Vec<Issue>> {
    let mut query = issues::table
        .filter(issues::workspace_id.eq(workspace))
        .filter(issues::state.ne(IssueState::Resolved))
        .into_boxed();
    if let Some(subscription) = subscription {
        query = query.filter(issues::subscription_id.eq(subscription));
    }
    if let Some(source) = source {
        query = query
            .filter(issues::source_id.eq(source))
            .filter(issues::subscription_id.is_null());
    }
    query
        .order(issues::last_seen.desc())
        .select(Issue::as_select())
        .load(conn)
        .await
}

/// Removes up to `limit` issues resolved before `before`; how many.
pub async fn delete_resolved_before(
    conn: &mut AsyncPgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM issues WHERE id IN (SELECT id FROM issues \
             WHERE state = 'resolved' AND resolved_at < $1 LIMIT $2)",
    )
    .bind::<Timestamptz, _>(before)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
