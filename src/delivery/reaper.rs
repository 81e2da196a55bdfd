//! The reaper: PostgreSQL is the source of truth and RabbitMQ the fast path. Every replica
//! periodically republishes events that should have been delivered by now but were not (a
//! publish lost to a broker outage, a crash between commit and publish, a lost wait-queue
//! message), claiming them with `FOR UPDATE SKIP LOCKED` so replicas share the work.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use slog::{Logger, info, warn};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::models::delivery::{self, DueDelivery};
use crate::db::{Database, DbError};
use crate::metrics;
use crate::queue::{Envelope, PublishError, Publisher, Route};

/// The envelope that makes a due delivery.
pub fn envelope_for(due: &DueDelivery) -> Envelope {
    Envelope {
        event_id: due.event_id,
        delivery_id: Some(due.id),
        subscription_id: due.subscription_id,
        target_url: due.target_url.clone(),
        retry_count: u32::try_from(due.retry_count).unwrap_or(0),
        deferrals: 0,
        request_id: None,
    }
}

/// Publishes deliveries made due by a replay or a re-enabled subscription, without waiting for
/// confirms: whatever fails to publish is still due, and the reaper publishes it.
pub async fn publish_due(publisher: &Publisher, due: &[DueDelivery]) {
    let envelopes: Vec<Envelope> = due.iter().map(envelope_for).collect();
    // What is not published is still due: the reaper takes it.
    let _ = publisher
        .publish_all_detached(&envelopes, Route::Deliver)
        .await;
}

/// How often the reaper looks for events the publisher missed while the broker was away.
const MISSED_EVERY: Duration = Duration::from_secs(1);

/// Periodically republishes overdue events.
pub struct Reaper {
    pub db: Database,
    /// Wakes it for a sweep before its next tick.
    pub wake: Arc<Notify>,
    pub publisher: Publisher,
    pub interval: Duration,
    pub grace: Duration,
    pub batch: u32,
    pub log: Logger,
}

impl Reaper {
    /// Sweeps every `interval` until `shutdown` is cancelled; every second, publishes what the
    /// publisher could not while the broker was away.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut missed_ticker = tokio::time::interval(MISSED_EVERY);
        missed_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = missed_ticker.tick() => {
                    if self.publisher.is_connected() {
                        self.publish_missed().await;
                    }
                    continue;
                }
                _ = ticker.tick() => {}
                () = self.wake.notified() => {}
            }
            // Claiming while the broker is down would only push due times back.
            if !self.publisher.is_connected() {
                continue;
            }
            // A full batch means there may be more: keep going, within this tick.
            loop {
                match self.sweep().await {
                    Ok(claimed) if claimed == self.batch as usize => continue,
                    Ok(_) => break,
                    Err(error) => {
                        warn!(self.log, "reaper sweep failed"; "error" => %error);
                        break;
                    }
                }
            }
        }
    }

    /// Publishes the events whose publish failed while the broker was away, without waiting
    /// for the grace period. Should that fail too, the grace sweep has them.
    async fn publish_missed(&self) {
        let missed = self.publisher.take_missed();
        if missed.is_empty() {
            return;
        }
        let grace = self.grace;
        match self
            .db
            .run(async |conn| delivery::claim_missed(conn, &missed, grace).await)
            .await
        {
            Ok(due) => {
                let failed = self.publish(&due).await;
                info!(self.log, "published events the broker missed";
                    "claimed" => due.len(), "failed" => failed);
            }
            Err(error) => warn!(self.log, "claiming missed events failed"; "error" => %error),
        }
    }

    /// Claims one batch and publishes it; returns how many were claimed.
    async fn sweep(&self) -> Result<usize, DbError> {
        let (grace, batch) = (self.grace, i64::from(self.batch));
        let due = self
            .db
            .run(async |conn| delivery::claim_overdue(conn, grace, batch).await)
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let failed = self.publish(&due).await;
        info!(self.log, "republished overdue events"; "claimed" => due.len(), "failed" => failed);
        Ok(due.len())
    }

    /// Publishes these events, waiting for the broker's confirms; how many failed. Those are
    /// in no queue: unless the broker returned them (which it would do again), they are
    /// remembered to publish again within a second of the broker being back, rather than after
    /// the longer wait their claim set.
    async fn publish(&self, due: &[DueDelivery]) -> usize {
        let envelopes: Vec<Envelope> = due.iter().map(envelope_for).collect();
        let results = join_all(
            envelopes
                .iter()
                .map(|envelope| self.publisher.publish(envelope, Route::Deliver)),
        )
        .await;
        let mut failed = 0;
        for (envelope, result) in envelopes.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(PublishError::Unroutable) => failed += 1,
                Err(_) => {
                    failed += 1;
                    self.publisher.remember_missed(envelope.delivery());
                }
            }
        }
        metrics::get()
            .reaper_republished
            .inc_by(u64::try_from(envelopes.len() - failed).unwrap_or(0));
        failed
    }
}
