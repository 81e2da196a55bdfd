//! Delivery: take a job from the queue, POST the event to its endpoint, record the attempt,
//! decide what comes next (done, retry later, or the graveyard), settle the message.

mod attempt;
mod reaper;
mod ssrf;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use slog::{Logger, debug, warn};
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::db::models::event::{self, AttemptRecord};
use crate::db::{Database, DbError};
use crate::domain::{EventStatus, RetrySchedule, SubscriptionId};
use crate::live::{Live, Notice};
use crate::queue::{Envelope, Job, Publisher, Route};

pub use attempt::HttpClient;
pub use reaper::{Reaper, publish_due};
pub use ssrf::TargetPolicy;

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub schedule: RetrySchedule,
    /// Consecutive failures at which a subscription's circuit breaker opens.
    pub breaker_threshold: u32,
    /// How long a delivery holds its event: longer than an attempt can take.
    pub lease: Duration,
    /// Attempts at their endpoints at once for one subscription, in this process.
    pub per_subscription: usize,
}

/// Makes deliveries; shared by every delivery task of a process.
pub struct Deliverer {
    db: Database,
    http: HttpClient,
    publisher: Publisher,
    schedule: RetrySchedule,
    breaker_threshold: i32,
    lease: Duration,
    in_flight: InFlight,
    live: Live,
    log: Logger,
}

impl Deliverer {
    /// A deliverer using one shared HTTP client.
    pub fn new(
        db: Database,
        http: HttpClient,
        publisher: Publisher,
        policy: DeliveryPolicy,
        live: Live,
        log: Logger,
    ) -> Self {
        Deliverer {
            db,
            http,
            publisher,
            schedule: policy.schedule,
            breaker_threshold: i32::try_from(policy.breaker_threshold).unwrap_or(i32::MAX),
            lease: policy.lease,
            in_flight: InFlight::new(policy.per_subscription),
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
        // Its subscription has its share of deliveries at their endpoint (a slow one): the job
        // waits its turn in a defer queue, not in a delivery slot others need, and without a
        // word to the database.
        if self.in_flight.is_full(job.envelope.subscription_id) {
            return self.defer(job).await;
        }
        match self.deliver(&job.envelope).await {
            Ok(Delivered::Done) => job.acker.ack(),
            Ok(Delivered::Deferred) => self.defer(job).await,
            Err(error) => {
                warn!(self.log, "delivery outcome not recorded; left for the reaper";
                    "event_id" => %job.envelope.event_id, "error" => %error);
                job.acker.reject();
            }
        }
    }

    /// Sends a job round a defer queue: back in a moment (longer each time it comes back to a
    /// subscription still busy, so a long backlog does not churn), no attempt made, no retry
    /// used.
    async fn defer(&self, job: Job) {
        let later = Envelope {
            deferrals: job.envelope.deferrals.saturating_add(1),
            ..job.envelope.clone()
        };
        match self
            .publisher
            .publish(&later, Route::Defer(job.envelope.deferrals))
            .await
        {
            Ok(()) => job.acker.ack(),
            Err(error) => {
                warn!(self.log, "could not defer a delivery; left for the reaper";
                    "event_id" => %job.envelope.event_id, "error" => %error);
                job.acker.reject();
            }
        }
    }

    /// One delivery attempt, recorded, and the retry scheduled if one is due. An error means
    /// the outcome is not durable yet; the event is still due in PostgreSQL.
    async fn deliver(&self, envelope: &Envelope) -> Result<Delivered, DbError> {
        let (id, retry_count, lease) = (envelope.event_id, envelope.retry_count, self.lease);
        let Some(job) = self
            .db
            .run(async |conn| event::claim_for_delivery(conn, id, retry_count, lease).await)
            .await?
        else {
            // Nothing to attempt: delivered or failed already, further along its chain, held by
            // the delivery of another copy of this message, or deleted with its subscription.
            debug!(self.log, "a delivery message with nothing to attempt; dropped";
                "event_id" => %id, "retry_count" => retry_count);
            return Ok(Delivered::Done);
        };
        // Held while its subscription is disabled; once it is re-enabled, the reaper takes what
        // was held.
        if !job.is_active {
            self.db
                .run(async |conn| event::hold(conn, id).await)
                .await?;
            return Ok(Delivered::Done);
        }
        // Its subscription's share filled up meanwhile (taken by the deliveries that passed
        // the first look at the same time): the event goes back as it was.
        let Some(slot) = self.in_flight.take(envelope.subscription_id) else {
            self.db
                .run(async |conn| event::release_lease(conn, id).await)
                .await?;
            return Ok(Delivered::Deferred);
        };
        let attempt = self.http.attempt(id, &job).await;
        drop(slot);
        let retry = if attempt.succeeded() {
            None
        } else {
            self.schedule.next_delay(retry_count, attempt.retry_after)
        };
        let (status, retry_count) = match retry {
            _ if attempt.succeeded() => (EventStatus::Completed, retry_count),
            Some(_) => (EventStatus::Retrying, retry_count + 1),
            None => (EventStatus::Failed, retry_count),
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
            // The retry is due in PostgreSQL now: should this publish be lost, the reaper makes
            // it. So the message is acked without waiting for the broker's confirm.
            let next = Envelope {
                retry_count,
                deferrals: 0,
                ..envelope.clone()
            };
            if let Err(error) = self
                .publisher
                .publish_detached(&next, Route::Retry(delay))
                .await
            {
                warn!(self.log, "could not publish a retry; left for the reaper";
                    "event_id" => %id, "error" => %error);
            }
        }
        Ok(Delivered::Done)
    }
}

/// What became of a delivery message whose outcome is durable.
enum Delivered {
    /// Attempted and recorded, or nothing to attempt: the message is done with.
    Done,
    /// Its subscription has its share of attempts under way: round the defer queue.
    Deferred,
}

/// Attempts at their endpoints per subscription in this process, up to a limit each. Only the
/// time at the endpoint counts: a delivery waiting for the database holds up every
/// subscription alike, a slow endpoint only its own.
struct InFlight {
    limit: usize,
    counts: Mutex<HashMap<SubscriptionId, usize>>,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        InFlight {
            limit: limit.max(1),
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `subscription` has its share under way.
    fn is_full(&self, subscription: SubscriptionId) -> bool {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .get(&subscription)
            .is_some_and(|count| *count >= self.limit)
    }

    /// A slot for one delivery of `subscription`'s, held until dropped; `None` at the limit.
    fn take(&self, subscription: SubscriptionId) -> Option<Slot<'_>> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(subscription).or_insert(0);
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(Slot {
            in_flight: self,
            subscription,
        })
    }
}

/// One delivery's place in its subscription's share.
struct Slot<'a> {
    in_flight: &'a InFlight,
    subscription: SubscriptionId,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut counts = self
            .in_flight
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.subscription) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.subscription);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_takes_slots_up_to_its_limit_and_gets_them_back() {
        let in_flight = InFlight::new(2);
        let (busy, other) = (
            SubscriptionId(uuid::Uuid::new_v4()),
            SubscriptionId(uuid::Uuid::new_v4()),
        );
        let first = in_flight.take(busy).expect("a first slot");
        assert!(!in_flight.is_full(busy));
        let second = in_flight.take(busy).expect("a second slot");
        assert!(in_flight.is_full(busy));
        assert!(in_flight.take(busy).is_none(), "a third is over the limit");
        assert!(
            in_flight.take(other).is_some(),
            "another subscription has its own"
        );
        drop(first);
        assert!(
            in_flight.take(busy).is_some(),
            "a slot comes back when dropped"
        );
        drop(second);
        assert!(
            in_flight.counts.lock().unwrap().is_empty(),
            "idle ones are forgotten"
        );
    }
}
