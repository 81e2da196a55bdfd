//! Retention: deliveries made are removed, with their attempts, once their events are older
//! than `SPENZA_RETENTION`, failed ones once older than `SPENZA_FAILED_RETENTION`, and an event
//! goes with its last delivery (one no subscription took, after `SPENZA_RETENTION`); deliveries
//! still to make are never removed. Lines of the audit log go once older than
//! `SPENZA_AUDIT_RETENTION`, and resolved issues (with their notifications) once resolved longer
//! than `SPENZA_ISSUE_RETENTION`. Every replica runs it.
//!
//! Events, deliveries and attempts are partitioned by day (see [`partitions`]): once a day is
//! past the shorter retention, its partitions are replaced by what stays of them (nothing, most
//! days), and once more past the longer one, so that a day goes whole and its space comes back
//! at once. What stays, and what the partitions of the ids before the partitioning hold, is
//! removed row by row: each batch locks its rows with `SKIP LOCKED`, so two replicas never
//! remove the same ones, and is small and short, so ingest never waits behind it. The job also
//! makes the days' partitions ahead of time, and vacuums each day's once, when it is settled.

use std::time::{Duration, Instant};

use chrono::Utc;
use slog::{Logger, info, warn};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::db::models::{audit, delivery, issue};
use crate::db::{Database, partitions};
use crate::domain::{EventId, EventStatus};

/// Events removed by one statement at most.
const BATCH: i64 = 500;
/// Batches one run removes at most; what is left waits for the next run.
const BATCHES_PER_RUN: usize = 200;
/// The pause between two batches, leaving the database to others.
const PAUSE: Duration = Duration::from_millis(20);
/// How long keeping what stays of a day's partitions may take: it copies those rows.
const COMPACTION_TIMEOUT: Duration = Duration::from_secs(600);

/// How long finished events are kept.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPolicy {
    /// Delivered events.
    pub completed: Duration,
    /// Failed events: the graveyard.
    pub failed: Duration,
    /// Lines of the audit log.
    pub audit: Duration,
    /// Resolved issues.
    pub issues: Duration,
}

impl RetentionPolicy {
    /// How often to look for expired events and audit lines: a tenth of the shortest retention,
    /// between every 100 ms (for tests' short retentions) and every 5 minutes.
    fn every(&self) -> Duration {
        (self
            .completed
            .min(self.failed)
            .min(self.audit)
            .min(self.issues)
            / 10)
            .clamp(Duration::from_millis(100), Duration::from_secs(300))
    }

    /// The policy in words, for the dashboard: "30 days", "12 hours", "90 seconds".
    pub fn describe(duration: Duration) -> String {
        let seconds = duration.as_secs();
        let (count, unit) = match seconds {
            s if s >= 86_400 && s % 86_400 == 0 => (s / 86_400, "day"),
            s if s >= 3_600 && s % 3_600 == 0 => (s / 3_600, "hour"),
            s if s >= 60 && s % 60 == 0 => (s / 60, "minute"),
            s => (s, "second"),
        };
        format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
    }
}

/// The retention job.
pub struct Retention {
    pub db: Database,
    pub policy: RetentionPolicy,
    pub log: Logger,
}

impl Retention {
    /// Makes the coming days' partitions and removes expired events every so often until
    /// `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.policy.every());
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.db.run(partitions::ensure_ahead).await {
                warn!(self.log, "making the coming days' partitions failed"; "error" => %error);
            }
            match self.db.run(partitions::ranges).await {
                Ok(ranges) => {
                    // Rows are removed one by one only below the days' partitions not
                    // compacted yet; first, as compacting may wait for busy tables.
                    let until = partitions::row_by_row_until(&ranges);
                    for (status, kept) in [
                        (EventStatus::Completed, self.policy.completed),
                        (EventStatus::Failed, self.policy.failed),
                        (EventStatus::Unrouted, self.policy.completed),
                    ] {
                        self.remove(status, kept, until, &stop).await;
                    }
                    self.compact(&ranges).await;
                }
                Err(error) => warn!(self.log, "listing the partitions failed"; "error" => %error),
            }
            self.vacuum_settled().await;
            self.remove_older(
                self.policy.audit,
                "audit lines",
                &stop,
                audit::delete_older_than,
            )
            .await;
            self.remove_older(
                self.policy.issues,
                "resolved issues",
                &stop,
                issue::delete_resolved_before,
            )
            .await;
        }
    }

    /// Compacts those of the days' partitions that are due.
    async fn compact(&self, ranges: &[partitions::Range]) {
        let (shorter, longer) = (
            self.policy.completed.min(self.policy.failed),
            self.policy.completed.max(self.policy.failed),
        );
        let (Ok(completed), Ok(failed)) = (
            chrono::Duration::from_std(self.policy.completed),
            chrono::Duration::from_std(self.policy.failed),
        ) else {
            return;
        };
        let slow = self.db.with_timeout(COMPACTION_TIMEOUT);
        for range in ranges
            .iter()
            .filter(|range| range.due(shorter, longer, Utc::now()))
        {
            let started = Instant::now();
            let now = Utc::now();
            let kept = async |conn: &mut diesel_async::AsyncPgConnection| {
                if !partitions::detach(conn, range).await? {
                    return Ok(Err(()));
                }
                let kept =
                    partitions::keep_survivors(conn, range, now - completed, now - failed).await?;
                partitions::drop_expired(conn).await?;
                Ok(Ok(kept))
            };
            match slow.run(kept).await {
                Ok(Ok(Some(kept))) => info!(self.log, "removed a day of events";
                    "range" => &range.suffix, "events_kept" => kept,
                    "ms" => started.elapsed().as_millis()),
                Ok(Ok(None)) => {}
                Ok(Err(())) => warn!(self.log,
                    "a day of events waits: its tables were busy for 30 s";
                    "range" => &range.suffix),
                Err(error) => warn!(self.log, "removing a day of events failed";
                    "range" => &range.suffix, "error" => %error),
            }
        }
    }

    /// Vacuums the partitions of a settled day not vacuumed yet (see
    /// [`partitions::vacuum`]): one day's three tables a run, the oldest first.
    async fn vacuum_settled(&self) {
        let tables = match self.db.run(partitions::settled_unvacuumed).await {
            Ok(tables) => tables,
            Err(error) => {
                warn!(self.log, "listing the days to vacuum failed"; "error" => %error);
                return;
            }
        };
        let slow = self.db.with_timeout(COMPACTION_TIMEOUT);
        for table in tables.iter().take(3) {
            let started = Instant::now();
            match slow
                .run(async |conn| partitions::vacuum(conn, table).await)
                .await
            {
                Ok(()) => info!(self.log, "vacuumed a settled day's partition";
                    "table" => table, "ms" => started.elapsed().as_millis()),
                Err(error) => {
                    warn!(self.log, "vacuuming a settled day's partition failed";
                        "table" => table, "error" => %error);
                    return;
                }
            }
        }
    }

    /// Removes rows older than `kept` (`what` they are, for the log) with `delete`, which
    /// removes up to a batch of those before a time, batch by batch.
    async fn remove_older(
        &self,
        kept: Duration,
        what: &str,
        stop: &CancellationToken,
        delete: impl AsyncFn(
            &mut diesel_async::AsyncPgConnection,
            chrono::DateTime<Utc>,
            i64,
        ) -> diesel::QueryResult<usize>,
    ) {
        let Ok(kept) = chrono::Duration::from_std(kept) else {
            return;
        };
        let before = Utc::now() - kept;
        for _ in 0..BATCHES_PER_RUN {
            match self
                .db
                .run(async |conn| delete(conn, before, BATCH).await)
                .await
            {
                Ok(count) if count < BATCH as usize || stop.is_cancelled() => break,
                Ok(_) => tokio::time::sleep(PAUSE).await,
                Err(error) => {
                    warn!(self.log, "removing old rows failed"; "what" => what, "error" => %error);
                    break;
                }
            }
        }
    }

    /// Removes deliveries in `status` (events, for `unrouted`) kept longer than `kept`, with
    /// ids below `until` when given, batch by batch.
    async fn remove(
        &self,
        status: EventStatus,
        kept: Duration,
        until: Option<EventId>,
        stop: &CancellationToken,
    ) {
        let Ok(kept) = chrono::Duration::from_std(kept) else {
            return;
        };
        let before = Utc::now() - kept;
        let mut removed = 0;
        for _ in 0..BATCHES_PER_RUN {
            match self
                .db
                .run(async |conn| match status {
                    EventStatus::Unrouted => {
                        delivery::remove_unrouted(conn, before, until, BATCH).await
                    }
                    _ => delivery::remove_expired(conn, status, before, until, BATCH).await,
                })
                .await
            {
                Ok(count) => {
                    removed += count;
                    if count < BATCH as usize || stop.is_cancelled() {
                        break;
                    }
                    tokio::time::sleep(PAUSE).await;
                }
                Err(error) => {
                    warn!(self.log, "removing expired events failed"; "error" => %error);
                    break;
                }
            }
        }
        if removed > 0 {
            info!(self.log, "removed expired events";
                "status" => status.as_str(), "removed" => removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_is_described_in_its_largest_whole_unit() {
        let describe = |seconds| RetentionPolicy::describe(Duration::from_secs(seconds));
        assert_eq!(describe(30 * 86_400), "30 days");
        assert_eq!(describe(86_400), "1 day");
        assert_eq!(describe(36 * 3_600), "36 hours");
        assert_eq!(describe(90), "90 seconds");
        assert_eq!(describe(120), "2 minutes");
    }

    #[test]
    fn short_retentions_are_checked_often_and_long_ones_every_five_minutes() {
        let policy = |completed, failed| RetentionPolicy {
            completed: Duration::from_secs(completed),
            failed: Duration::from_secs(failed),
            audit: Duration::from_secs(365 * 86_400),
            issues: Duration::from_secs(90 * 86_400),
        };
        assert_eq!(policy(2, 4).every(), Duration::from_millis(200));
        assert_eq!(
            policy(30 * 86_400, 90 * 86_400).every(),
            Duration::from_secs(300)
        );
    }
}
