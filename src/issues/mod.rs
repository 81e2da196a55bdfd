//! Issues: the relay watches for what breaks and tells. Every process runs a [`Watch`]; one at a
//! time (a PostgreSQL advisory lock) scans, in one transaction, for:
//! - subscriptions the circuit breaker disabled (`subscription_disabled`);
//! - deliveries that reached the graveyard since the last scan, grouped by subscription and
//!   class of failure (`deliveries_failed`);
//! - sources refusing requests (`source_rejecting`);
//! - active subscriptions whose oldest undelivered event waits too long
//!   (`subscription_lagging`);
//!
//! and for issues whose condition cleared, which resolve. Each transition writes its
//! notifications in the same transaction (see [`notify`]), so a transition is told once
//! whichever process made it, and the dashboards hear of it over the live bus.

pub mod notify;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::Utc;
use diesel_async::AsyncConnection;
use slog::{Logger, warn};
use tokio_util::sync::CancellationToken;

use crate::db::models::issue::{self, Change, Observation, Transition};
use crate::db::models::notification;
use crate::db::{Database, DbError};
use crate::domain::{IssueKind, SubscriptionId, WorkspaceId, failure_class};
use crate::live::{Live, Notice};
use crate::metrics::{self, IssueLabels};

/// Graveyard arrivals counted per statement.
const FAILURES_PER_BATCH: i64 = 1000;
/// Statements a scan counts with at most, so that it stays well within the database timeout;
/// what is left is counted by the next scan.
const FAILURE_BATCHES_PER_SCAN: usize = 10;

/// What the watch looks for.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    pub every: Duration,
    pub refusal_threshold: u32,
    pub refusal_window: Duration,
    pub lag_threshold: Duration,
    pub quiet: Duration,
}

/// Scans for issues every so often until stopped.
pub struct Watch {
    pub db: Database,
    pub live: Live,
    pub settings: WatchSettings,
    pub log: Logger,
}

impl Watch {
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.settings.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.scan().await {
                Ok(transitions) => {
                    for transition in &transitions {
                        let change = match transition.change() {
                            Change::Opened => "opened",
                            Change::Reopened => "reopened",
                            Change::Resolved => "resolved",
                        };
                        metrics::get()
                            .issue_transitions
                            .get_or_create(&IssueLabels {
                                kind: transition.kind.as_str(),
                                change,
                            })
                            .inc();
                    }
                    let workspaces: BTreeSet<WorkspaceId> =
                        transitions.iter().map(|t| t.workspace).collect();
                    for workspace in workspaces {
                        self.live.notify(Notice::Issues { workspace });
                    }
                }
                Err(error) => warn!(self.log, "scanning for issues failed"; "error" => %error),
            }
        }
    }

    /// One scan, in one transaction, unless another process is scanning: the transitions it
    /// made, their notifications written.
    pub async fn scan(&self) -> Result<Vec<Transition>, DbError> {
        let settings = self.settings;
        self.db
            .run(async |conn| {
                conn.transaction(async |conn| {
                    if !issue::try_lock_scan(conn).await? {
                        return Ok(Vec::new());
                    }
                    let mut transitions = Vec::new();
                    let disabled = breaker(conn, &mut transitions).await?;
                    graveyard(conn, &mut transitions).await?;
                    refusals(conn, &settings, &mut transitions).await?;
                    lag(conn, &settings, &disabled, &mut transitions).await?;
                    for transition in &transitions {
                        notification::enqueue(conn, transition, settings.quiet).await?;
                    }
                    Ok(transitions)
                })
                .await
            })
            .await
    }
}

type Conn = diesel_async::AsyncPgConnection;

fn keep(transitions: &mut Vec<Transition>, made: Option<Transition>) {
    transitions.extend(made);
}

/// Opens an issue for each subscription the breaker disabled; resolves those whose
/// subscription is enabled again and has delivered since. Answers the disabled ones.
async fn breaker(
    conn: &mut Conn,
    transitions: &mut Vec<Transition>,
) -> diesel::QueryResult<BTreeSet<SubscriptionId>> {
    let now = Utc::now();
    let disabled = issue::disabled_by_breaker(conn).await?;
    for subscription in &disabled {
        let seen = Observation {
            workspace: subscription.workspace_id,
            kind: IssueKind::SubscriptionDisabled,
            subscription: Some(subscription.id),
            source: subscription.source_id,
            cause: String::new(),
            count: 1,
            seen: now,
            examples: Vec::new(),
            detail: subscription.reason.clone(),
        };
        keep(transitions, issue::observe(conn, &seen).await?);
    }
    let still: BTreeSet<_> = disabled.iter().map(|s| s.id).collect();
    resolve_delivering(conn, IssueKind::SubscriptionDisabled, &still, transitions).await?;
    Ok(still)
}

/// Resolves the unresolved issues of `kind` whose subscription (not in `still`) has delivered
/// since the issue was last seen.
async fn resolve_delivering(
    conn: &mut Conn,
    kind: IssueKind,
    still: &BTreeSet<SubscriptionId>,
    transitions: &mut Vec<Transition>,
) -> diesel::QueryResult<()> {
    let mut cleared = Vec::new();
    for open in issue::unresolved(conn, kind).await? {
        let Some(subscription) = open.subscription_id else {
            continue;
        };
        if !still.contains(&subscription)
            && issue::delivers_since(conn, subscription, open.last_seen).await?
        {
            cleared.push(open.id);
        }
    }
    transitions.extend(issue::resolve(conn, &cleared, None).await?);
    Ok(())
}

/// Counts the deliveries that reached the graveyard since the last scan into one issue per
/// subscription and class of failure; resolves those whose subscription has delivered since.
async fn graveyard(conn: &mut Conn, transitions: &mut Vec<Transition>) -> diesel::QueryResult<()> {
    let now = Utc::now();
    let mut groups: BTreeMap<(uuid::Uuid, String), Observation> = BTreeMap::new();
    for _ in 0..FAILURE_BATCHES_PER_SCAN {
        let mut failed = issue::take_uncounted_failures(conn, FAILURES_PER_BATCH).await?;
        let full = failed.len() as i64 == FAILURES_PER_BATCH;
        // Newest first, as examples are kept (event ids sort by arrival); a scan that finds
        // more than its batches hold leaves the rest, taken in no order, to the next.
        failed.sort_by_key(|delivery| std::cmp::Reverse(delivery.event_id));
        for delivery in failed {
            let cause = failure_class(delivery.last_error.as_deref(), &delivery.target_url);
            let group = groups
                .entry((delivery.subscription_id.0, cause.clone()))
                .or_insert_with(|| Observation {
                    workspace: delivery.workspace_id,
                    kind: IssueKind::DeliveriesFailed,
                    subscription: Some(delivery.subscription_id),
                    source: delivery.source_id,
                    cause,
                    count: 0,
                    seen: now,
                    examples: Vec::new(),
                    detail: delivery.last_error.clone().unwrap_or_default(),
                });
            group.count += 1;
            if group.examples.len() < issue::EXAMPLES as usize
                && !group.examples.contains(&delivery.event_id.0)
            {
                group.examples.push(delivery.event_id.0);
            }
        }
        if !full {
            break;
        }
    }
    for seen in groups.values() {
        keep(transitions, issue::observe(conn, seen).await?);
    }
    resolve_delivering(
        conn,
        IssueKind::DeliveriesFailed,
        &BTreeSet::new(),
        transitions,
    )
    .await
}

/// Opens an issue for each source that refused `refusal_threshold` requests within the window,
/// adds later refusals to open ones, and resolves those with none for a whole window.
async fn refusals(
    conn: &mut Conn,
    settings: &WatchSettings,
    transitions: &mut Vec<Transition>,
) -> diesel::QueryResult<()> {
    let window =
        chrono::Duration::from_std(settings.refusal_window).unwrap_or(chrono::Duration::MAX);
    let now = Utc::now();
    let unresolved = issue::unresolved(conn, IssueKind::SourceRejecting).await?;
    let mut seen = Vec::new();
    for open in &unresolved {
        match issue::refusals_since(conn, open.source_id, open.last_seen).await? {
            Some(refusals) => seen.push(refusals),
            None if open.last_seen < now - window => {
                transitions.extend(issue::resolve(conn, &[open.id], None).await?);
            }
            None => {}
        }
    }
    let open_sources: BTreeSet<_> = unresolved.iter().map(|open| open.source_id).collect();
    for refusals in
        issue::refusing_sources(conn, now - window, i64::from(settings.refusal_threshold)).await?
    {
        if !open_sources.contains(&refusals.source_id) {
            seen.push(refusals);
        }
    }
    for refusals in seen {
        let observation = Observation {
            workspace: refusals.workspace_id,
            kind: IssueKind::SourceRejecting,
            subscription: None,
            source: refusals.source_id,
            cause: String::new(),
            count: refusals.count,
            seen: refusals.last,
            examples: refusals.examples,
            detail: format!("the last refused request: {}", refusals.reason),
        };
        keep(transitions, issue::observe(conn, &observation).await?);
    }
    Ok(())
}

/// Opens an issue for each active subscription falling behind; resolves those that caught up,
/// or were paused. One the breaker disabled stays behind (and has an issue of its own).
async fn lag(
    conn: &mut Conn,
    settings: &WatchSettings,
    disabled: &BTreeSet<SubscriptionId>,
    transitions: &mut Vec<Transition>,
) -> diesel::QueryResult<()> {
    let now = Utc::now();
    let default_ms = i64::try_from(settings.lag_threshold.as_millis()).unwrap_or(i64::MAX);
    let lagging = issue::lagging(conn, default_ms).await?;
    for behind in &lagging {
        let waited = (now - behind.due_since).to_std().unwrap_or_default();
        let observation = Observation {
            workspace: behind.workspace_id,
            kind: IssueKind::SubscriptionLagging,
            subscription: Some(behind.subscription_id),
            source: behind.source_id,
            cause: String::new(),
            count: 1,
            seen: now,
            examples: vec![behind.event_id.0],
            detail: format!(
                "its oldest undelivered event has waited {} (the threshold is {})",
                whole_seconds(waited),
                whole_seconds(Duration::from_millis(
                    u64::try_from(behind.threshold_ms).unwrap_or(0)
                )),
            ),
        };
        keep(transitions, issue::observe(conn, &observation).await?);
    }
    let behind: BTreeSet<_> = lagging.iter().map(|l| l.subscription_id).collect();
    let caught_up: Vec<_> = issue::unresolved(conn, IssueKind::SubscriptionLagging)
        .await?
        .into_iter()
        .filter(|open| {
            open.subscription_id
                .is_none_or(|s| !behind.contains(&s) && !disabled.contains(&s))
        })
        .map(|open| open.id)
        .collect();
    transitions.extend(issue::resolve(conn, &caught_up, None).await?);
    Ok(())
}

/// A duration to the second, as humans read it ("17m 3s").
fn whole_seconds(duration: Duration) -> String {
    humantime::format_duration(Duration::from_secs(duration.as_secs())).to_string()
}
