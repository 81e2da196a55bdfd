//! Delivery: take a job from the queue, POST the event to its endpoint, record the attempt,
//! decide what comes next (done, retry later, or the graveyard), settle the message.

mod attempt;
mod reaper;
mod ssrf;

use std::sync::Arc;

use chrono::Utc;
use slog::{Logger, warn};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::db::models::event::{self, AttemptRecord};
use crate::db::{Database, DbError};
use crate::domain::{EventStatus, RetrySchedule};
use crate::live::{Live, Notice};
use crate::queue::{Envelope, Job, PublishError, Publisher, Route};

pub use attempt::HttpClient;
pub use reaper::{Reaper, publish_due};
pub use ssrf::TargetPolicy;

/// What the outcome of a delivery could not be made durable by.
#[derive(Debug, thiserror::Error)]
enum NotRecorded {
    #[error("recording the attempt: {0}")]
    Database(#[from] DbError),
    #[error("scheduling the retry: {0}")]
    Publish(#[from] PublishError),
}

/// Makes deliveries; shared by every delivery task of a process.
pub struct Deliverer {
    db: Database,
    http: HttpClient,
    publisher: Publisher,
    schedule: RetrySchedule,
    breaker_threshold: i32,
    live: Live,
    log: Logger,
}

impl Deliverer {
    /// A deliverer using one shared HTTP client, retrying on `schedule`.
    pub fn new(
        db: Database,
        http: HttpClient,
        publisher: Publisher,
        schedule: RetrySchedule,
        breaker_threshold: u32,
        live: Live,
        log: Logger,
    ) -> Self {
        Deliverer {
            db,
            http,
            publisher,
            schedule,
            breaker_threshold: i32::try_from(breaker_threshold).unwrap_or(i32::MAX),
            live,
            log,
        }
    }

    /// Runs each job on its own task until the job stream ends (the consumer stopped). The
    /// consumer's prefetch bounds how many run at once. Tasks are tracked so shutdown can wait
    /// for them.
    pub async fn dispatch(
        self: Arc<Self>,
        mut jobs: mpsc::UnboundedReceiver<Job>,
        tasks: TaskTracker,
    ) {
        while let Some(job) = jobs.recv().await {
            let deliverer = self.clone();
            tasks.spawn(async move { deliverer.handle(job).await });
        }
    }

    async fn handle(&self, job: Job) {
        match self.deliver(&job.envelope).await {
            Ok(()) => job.acker.ack(),
            Err(error) => {
                warn!(self.log, "delivery outcome not recorded; left for the reaper";
                    "event_id" => %job.envelope.event_id, "error" => %error);
                job.acker.reject();
            }
        }
    }

    /// One delivery attempt, recorded, and the retry scheduled if one is due. An error means
    /// the outcome is not durable yet; the event is still due in PostgreSQL.
    async fn deliver(&self, envelope: &Envelope) -> Result<(), NotRecorded> {
        let id = envelope.event_id;
        let Some(job) = self
            .db
            .run(async |conn| event::load_for_delivery(conn, id).await)
            .await?
        else {
            // Deleted with its subscription: nothing left to deliver.
            return Ok(());
        };
        // Already delivered by a duplicate message.
        if job.status.is_final() {
            return Ok(());
        }
        // Held while its subscription is disabled; re-enabling it publishes what was held.
        if !job.is_active {
            self.db
                .run(async |conn| event::hold(conn, id).await)
                .await?;
            return Ok(());
        }
        let attempt = self.http.attempt(id, &job).await;
        let retry = if attempt.succeeded() {
            None
        } else {
            self.schedule
                .next_delay(envelope.retry_count, attempt.retry_after)
        };
        let (status, retry_count) = match retry {
            _ if attempt.succeeded() => (EventStatus::Completed, envelope.retry_count),
            Some(_) => (EventStatus::Retrying, envelope.retry_count + 1),
            None => (EventStatus::Failed, envelope.retry_count),
        };
        let record = AttemptRecord {
            started_at: attempt.started_at,
            duration_ms: attempt.duration_ms,
            status_code: attempt.status_code,
            error: attempt.error.as_deref(),
            response_body: attempt.response_body.as_deref(),
            status,
            next_attempt_at: retry.map(|delay| Utc::now() + delay),
            retry_count: i32::try_from(retry_count).unwrap_or(i32::MAX),
            breaker_threshold: self.breaker_threshold,
        };
        self.db
            .run(async |conn| event::record_attempt(conn, id, &record).await)
            .await?;
        self.live.notify(Notice {
            event: id,
            subscription: envelope.subscription_id,
            user: job.user_id,
            new: false,
        });
        if let Some(delay) = retry {
            let next = Envelope {
                retry_count,
                ..envelope.clone()
            };
            self.publisher.publish(&next, Route::Retry(delay)).await?;
        }
        Ok(())
    }
}
