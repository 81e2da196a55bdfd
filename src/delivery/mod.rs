//! Delivery: take a job from the queue, POST the event to its endpoint, record the attempt,
//! settle the message.

mod attempt;

use std::sync::Arc;

use slog::{Logger, warn};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::db::Database;
use crate::db::models::event::{self, AttemptRecord};
use crate::domain::EventStatus;
use crate::queue::{Envelope, Job};

pub use attempt::{Attempt, HttpClient};

/// Makes deliveries; shared by every delivery task of a process.
pub struct Deliverer {
    db: Database,
    http: HttpClient,
    log: Logger,
}

impl Deliverer {
    /// A deliverer using one shared HTTP client.
    pub fn new(db: Database, http: HttpClient, log: Logger) -> Self {
        Deliverer { db, http, log }
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
                warn!(self.log, "delivery not recorded; left for the reaper";
                    "event_id" => %job.envelope.event_id, "error" => %error);
                job.acker.reject();
            }
        }
    }

    /// One delivery attempt, recorded. An error means the outcome could not be recorded.
    async fn deliver(&self, envelope: &Envelope) -> Result<(), crate::db::DbError> {
        let id = envelope.event_id;
        let Some(job) = self
            .db
            .run(async |conn| event::load_for_delivery(conn, id).await)
            .await?
        else {
            // Deleted with its subscription: nothing left to deliver.
            return Ok(());
        };
        // Already delivered by a duplicate message, or held by a disabled subscription.
        if job.status.is_final() || !job.is_active {
            return Ok(());
        }
        let attempt = self.http.attempt(id, &job).await;
        let record = AttemptRecord {
            started_at: attempt.started_at,
            duration_ms: attempt.duration_ms,
            status_code: attempt.status_code,
            error: attempt.error.as_deref(),
            response_body: attempt.response_body.as_deref(),
            status: if attempt.succeeded() {
                EventStatus::Completed
            } else {
                EventStatus::Retrying
            },
            next_attempt_at: None,
        };
        self.db
            .run(async |conn| event::record_attempt(conn, id, &record).await)
            .await
    }
}
