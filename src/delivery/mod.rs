//! Delivery: take a job from the queue, POST the event to its endpoint, record the attempt,
//! decide what comes next (done, retry later, or the graveyard), settle the message.

mod attempt;
mod reaper;
mod ssrf;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use slog::{Logger, debug, info, warn};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::task::TaskTracker;

use crate::batch::{self, Written};
use crate::db::models::delivery::{self, AttemptRecord, Claim, DeliveryJob};
use crate::db::models::rate_limit;
use crate::db::{Database, DbError};
use crate::domain::{
    DeliveryId, EventStatus, Policy, RateLimit, RetrySchedule, SubscriptionId, WorkspaceId,
};
use crate::live::{EventNotice, Live, Notice};
use crate::metrics;
use crate::queue::{Envelope, Job, Publisher, Route};

pub use attempt::HttpClient;
pub(crate) use attempt::{describe, read_truncated, sign};
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

/// How much earlier than it is due a delivery may be attempted: a message back from a wait
/// queue sooner than that waits again.
const EARLY: chrono::TimeDelta = chrono::TimeDelta::seconds(1);
/// The longest a delivery waits here for its rate limit's next send; past it, it waits in a
/// queue for a slot of its own.
const RATE_WAIT: Duration = Duration::from_secs(1);

/// When a rate-limited delivery may be sent.
enum Turn {
    Now,
    /// At this slot, handed to it: it waits in a queue until then.
    WaitFor(chrono::DateTime<Utc>),
}

/// Claims taken, and attempts recorded, in one statement each at most; per process.
const SLOTS: usize = 2;
/// The most attempts one statement records.
const MAX_RECORDS: usize = 256;
/// How long a batch of attempts to record waits for others: no event waits for its record (it
/// has reached its endpoint already), so at moderate rates, where each attempt would otherwise
/// be recorded alone, the attempts of a few milliseconds share one statement and one commit,
/// and their messages are acknowledged to the broker together. Claims and ingest do not
/// linger: their events wait on them.
const RECORD_LINGER: Duration = Duration::from_millis(5);
/// How long an attempt waits for a slot in its subscription's share before it is deferred:
/// a fast endpoint's attempts come back well within it, on a busy machine too.
const SHARE_WAIT: Duration = Duration::from_secs(1);
/// How long half of a subscription's attempts under way must have run for its endpoint to
/// count as slow: then a delivery finding every slot taken is deferred at once, and a slow
/// endpoint's backlog does not hold the delivery slots others need.
const SLOW: Duration = Duration::from_secs(1);

/// Makes deliveries; shared by every delivery task of a process.
///
/// A job's path: jobs handed out while the previous claims were being taken are claimed
/// together in one statement; each claimed event is attempted on its own task; attempts that
/// end while the previous records are being written, or within [`RECORD_LINGER`] of the first
/// of them, are recorded together in one statement, after which their messages are settled and
/// their retries published.
pub struct Deliverer {
    db: Database,
    http: HttpClient,
    publisher: Publisher,
    schedule: RetrySchedule,
    breaker_threshold: i32,
    lease: Duration,
    in_flight: InFlight,
    live: Live,
    tasks: TaskTracker,
    log: Logger,
}

/// An attempt made, waiting to be recorded with others.
struct Made {
    job: Job,
    workspace: WorkspaceId,
    record: AttemptRecord,
    /// When it failed and a retry is due: after how long.
    retry: Option<Duration>,
}

impl Deliverer {
    /// A deliverer using one shared HTTP client, running its tasks on `tasks`.
    pub fn new(
        db: Database,
        http: HttpClient,
        publisher: Publisher,
        policy: DeliveryPolicy,
        live: Live,
        tasks: TaskTracker,
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
            tasks,
            log,
        }
    }

    /// Claims, attempts and records until the job stream ends (the consumer stopped). The
    /// consumer's prefetch bounds how many jobs are under way; every task runs on the tracker,
    /// so shutdown can wait for them.
    pub async fn dispatch(self: Arc<Self>, jobs: mpsc::Receiver<Job>) {
        let (made, to_record) = mpsc::channel(MAX_RECORDS);
        let recorder = self.clone();
        self.tasks.spawn(batch::pump(
            to_record,
            SLOTS,
            MAX_RECORDS,
            RECORD_LINGER,
            move |batch, slot| {
                recorder.tasks.spawn(recorder.clone().record(batch, slot));
            },
        ));
        let claims = jobs.max_capacity();
        batch::pump(jobs, SLOTS, claims, Duration::ZERO, |batch, slot| {
            self.tasks
                .spawn(self.clone().claim(batch, slot, made.clone()));
        })
        .await;
    }

    /// Claims a batch of jobs in one statement and starts an attempt for each claimed.
    async fn claim(
        self: Arc<Self>,
        jobs: Vec<Job>,
        slot: OwnedSemaphorePermit,
        made: mpsc::Sender<Made>,
    ) {
        let claims: Vec<Claim> = jobs
            .iter()
            .map(|job| Claim {
                id: job.envelope.delivery(),
                event: job.envelope.event_id,
                retry_count: job.envelope.retry_count,
            })
            .collect();
        let (lease, timeout) = (self.lease, self.http.timeout());
        let db = &self.db;
        let written = batch::write_together_or_alone(&claims, &self.log, "claim", |claims| {
            db.run(async move |conn| {
                delivery::claim_for_delivery(conn, claims, lease, timeout, false).await
            })
        })
        .await;
        drop(slot);
        let mut failed = vec![false; jobs.len()];
        let rows = match written {
            Ok(Written::Together(rows)) => rows,
            Ok(Written::Alone(outcomes)) => {
                let mut rows = Vec::new();
                for (n, outcome) in outcomes.into_iter().enumerate() {
                    match outcome {
                        Ok(claimed) => rows.extend(claimed),
                        Err(_) => failed[n] = true,
                    }
                }
                rows
            }
            Err(error) => {
                warn!(self.log, "could not claim deliveries; left for the reaper";
                    "jobs" => jobs.len(), "error" => %error);
                return jobs.into_iter().for_each(|job| job.acker.reject());
            }
        };
        // Each claimed at the step its message carries: of a stale copy and the current
        // message in one batch, the current one takes it.
        let mut claimed: HashMap<(DeliveryId, i32), DeliveryJob> = rows
            .into_iter()
            .map(|row| ((row.id, row.retry_count), row.job))
            .collect();
        let mut held = Vec::new();
        for (job, failed) in jobs.into_iter().zip(failed) {
            if failed {
                warn!(self.log, "could not claim a delivery; left for the reaper";
                    "event_id" => %job.envelope.event_id,
                    "delivery_id" => %job.envelope.delivery());
                job.acker.reject();
                continue;
            }
            let step = i32::try_from(job.envelope.retry_count).unwrap_or(i32::MAX);
            match claimed.remove(&(job.envelope.delivery(), step)) {
                // Nothing to attempt: delivered or failed already, further along its chain,
                // held by the delivery of another copy of this message, or deleted with its
                // subscription.
                None => {
                    debug!(self.log, "a delivery message with nothing to attempt; dropped";
                        "event_id" => %job.envelope.event_id,
                        "delivery_id" => %job.envelope.delivery(),
                        "retry_count" => job.envelope.retry_count);
                    job.acker.ack();
                }
                // Held while its subscription is disabled; once it is re-enabled, the reaper
                // takes what was held.
                Some(found) if !found.is_active => held.push(job),
                // Back from a wait queue before it is due: it waits again for what is left.
                Some(DeliveryJob {
                    next_attempt_at: Some(due),
                    ..
                }) if due > Utc::now() + EARLY => {
                    self.tasks.spawn(self.clone().wait_until(job, due, None));
                }
                // A `cli` subscription's: its `spenza listen` sessions make it.
                Some(found) if found.listen => {
                    self.tasks.spawn(self.clone().pass_to_listeners(job));
                }
                Some(found) => {
                    self.tasks
                        .spawn(self.clone().attempt(job, found, made.clone()));
                }
            }
        }
        if !held.is_empty() {
            let ids: Vec<DeliveryId> = held.iter().map(|job| job.envelope.delivery()).collect();
            match self
                .db
                .run(async |conn| delivery::hold(conn, &ids).await)
                .await
            {
                Ok(()) => held.into_iter().for_each(|job| job.acker.ack()),
                Err(error) => {
                    warn!(self.log, "could not hold deliveries; left for the reaper";
                        "error" => %error);
                    held.into_iter().for_each(|job| job.acker.reject());
                }
            }
        }
    }

    /// One attempt at the endpoint, passed on to be recorded.
    async fn attempt(self: Arc<Self>, job: Job, found: DeliveryJob, made: mpsc::Sender<Made>) {
        let (id, retry_count) = (job.envelope.delivery(), job.envelope.retry_count);
        let policy = Policy::from_stored(&found.policy);
        // Its subscription has its share at the endpoint, and none came free in a moment (a
        // slow endpoint): the event goes back as it was, and the job waits its turn in a defer
        // queue, not in a delivery slot others need.
        let Some(slot) = self
            .in_flight
            .take(
                job.envelope.subscription_id,
                policy.max_in_flight.map(|cap| cap as usize),
                SHARE_WAIT,
            )
            .await
        else {
            return match self
                .db
                .run(async |conn| delivery::release_leases(conn, &[id]).await)
                .await
            {
                Ok(()) => self.defer(job).await,
                Err(error) => {
                    warn!(self.log, "could not release a delivery; left for the reaper";
                        "delivery_id" => %id, "error" => %error);
                    job.acker.reject();
                }
            };
        };
        if let Some(limit) = policy.rate_limit {
            match self.take_send(job.envelope.subscription_id, limit).await {
                Ok(Turn::Now) => {}
                Ok(Turn::WaitFor(turn)) => {
                    drop(slot);
                    return self.wait_until(job, turn, Some(limit)).await;
                }
                Err(error) => {
                    warn!(self.log, "could not check a rate limit; left for the reaper";
                        "delivery_id" => %id, "error" => %error);
                    return job.acker.reject();
                }
            }
        }
        let attempt = self.http.attempt(found.event_id, &found, &policy).await;
        drop(slot);
        let took = Duration::from_millis(u64::try_from(attempt.duration_ms).unwrap_or(0));
        metrics::get().attempted(job.envelope.subscription_id, attempt.outcome, took);
        if attempt.succeeded() {
            let waited = (Utc::now() - found.received_at)
                .to_std()
                .unwrap_or_default();
            metrics::get().end_to_end.observe(waited.as_secs_f64());
        }
        let retry = if attempt.succeeded() {
            None
        } else {
            policy
                .retry_schedule()
                .as_ref()
                .unwrap_or(&self.schedule)
                .next_delay(retry_count, attempt.retry_after)
        };
        let (status, retry_count) = match retry {
            _ if attempt.succeeded() => (EventStatus::Completed, retry_count),
            Some(_) => (EventStatus::Retrying, retry_count + 1),
            None => (EventStatus::Failed, retry_count),
        };
        let record = AttemptRecord {
            delivery: id,
            event: found.event_id,
            subscription: job.envelope.subscription_id,
            started_at: attempt.started_at,
            duration_ms: attempt.duration_ms,
            status_code: attempt.status_code,
            error: attempt.error,
            response_body: attempt.response_body,
            status,
            next_attempt_at: retry.map(|delay| Utc::now() + delay),
            retry_count: i32::try_from(retry_count).unwrap_or(i32::MAX),
        };
        // The recorder runs as long as a sender, this one included, is left.
        let _ = made
            .send(Made {
                job,
                workspace: found.workspace_id,
                record,
                retry,
            })
            .await;
    }

    /// Records a batch of attempts in one statement (see [`batch::write_together_or_alone`] for
    /// when they are recorded one by one instead), then, for each recorded: tells live pages,
    /// publishes its retry, and acks its message. One not recorded is rejected: its event is
    /// still due in PostgreSQL, for the reaper.
    async fn record(self: Arc<Self>, batch: Vec<Made>, slot: OwnedSemaphorePermit) {
        let (records, made): (Vec<AttemptRecord>, Vec<_>) = batch
            .into_iter()
            .map(|made| (made.record, (made.job, made.workspace, made.retry)))
            .unzip();
        let threshold = self.breaker_threshold;
        let db = &self.db;
        let written = batch::write_together_or_alone(&records, &self.log, "record", |records| {
            db.run(async move |conn| delivery::record_attempts(conn, records, threshold).await)
        })
        .await;
        let recorded: Vec<Result<(), DbError>> = match written {
            Ok(Written::Together(tripped)) => {
                metrics::get().breaker_trips.inc_by(tripped);
                records.iter().map(|_| Ok(())).collect()
            }
            Ok(Written::Alone(outcomes)) => outcomes
                .into_iter()
                .map(|outcome| {
                    outcome.map(|tripped| {
                        metrics::get().breaker_trips.inc_by(tripped);
                    })
                })
                .collect(),
            Err(error) => {
                let reason = error.to_string();
                records
                    .iter()
                    .map(|_| Err(DbError::Unavailable(reason.clone())))
                    .collect()
            }
        };
        drop(slot);
        let mut retries: Vec<(Duration, Vec<Envelope>)> = Vec::new();
        for ((record, (job, workspace, retry)), recorded) in records.iter().zip(made).zip(recorded)
        {
            if let Err(error) = recorded {
                warn!(self.log, "delivery outcome not recorded; left for the reaper";
                    "delivery_id" => %record.delivery, "error" => %error);
                job.acker.reject();
                continue;
            }
            self.log_attempt(record, &job.envelope, retry);
            self.live.notify(Notice::Event(EventNotice {
                event: record.event,
                subscription: record.subscription,
                workspace,
                new: false,
            }));
            if let Some(delay) = retry {
                let next = Envelope {
                    retry_count: u32::try_from(record.retry_count).unwrap_or(u32::MAX),
                    deferrals: 0,
                    ..job.envelope.clone()
                };
                match retries.iter_mut().find(|(wait, _)| *wait == delay) {
                    Some((_, envelopes)) => envelopes.push(next),
                    None => retries.push((delay, vec![next])),
                }
            }
            // The retry is due in PostgreSQL now: should its publish be lost, the reaper
            // makes it. So the message is acked without waiting for the broker's confirm.
            job.acker.ack();
        }
        for (delay, envelopes) in retries {
            if let Err(error) = self
                .publisher
                .publish_all_detached(&envelopes, Route::Wait(delay))
                .await
            {
                warn!(self.log, "could not publish retries; left for the reaper";
                    "retries" => envelopes.len(), "error" => %error);
            }
        }
    }

    /// One line per attempt: at debug level when it succeeded, at info when it failed and will
    /// be retried, at warning when it was the event's last.
    fn log_attempt(&self, record: &AttemptRecord, envelope: &Envelope, retry: Option<Duration>) {
        use slog::Drain as _;
        if record.status == EventStatus::Completed && !self.log.is_debug_enabled() {
            return;
        }
        let log = self.log.new(slog::o!(
            "event_id" => record.event.to_string(),
            "delivery_id" => record.delivery.to_string(),
            "subscription_id" => record.subscription.to_string(),
            "request_id" => envelope.request_id.clone(),
            "retry_count" => envelope.retry_count,
            "status_code" => record.status_code,
            "duration_ms" => record.duration_ms,
        ));
        match (record.status, retry) {
            (EventStatus::Completed, _) => debug!(log, "delivered"),
            (_, Some(delay)) => info!(log, "delivery attempt failed; it will be retried";
                "error" => record.error.as_deref(),
                "retry_in" => %humantime::format_duration(delay)),
            (_, None) => warn!(log, "delivery failed for good: the event is in the graveyard";
                "error" => record.error.as_deref()),
        }
    }

    /// Takes the subscription's next send under its rate limit: now, after a short wait here,
    /// or, when the wait would be long, at a slot handed to this delivery to come back at.
    async fn take_send(
        &self,
        subscription: SubscriptionId,
        limit: RateLimit,
    ) -> Result<Turn, DbError> {
        let spacing = limit.spacing();
        let deadline = Instant::now() + RATE_WAIT;
        loop {
            let taken = self
                .db
                .run(async |conn| rate_limit::take_send(conn, subscription, spacing).await)
                .await?;
            let free_at = match taken {
                Ok(()) => return Ok(Turn::Now),
                Err(free_at) => free_at,
            };
            let wait = (free_at - Utc::now()).to_std().unwrap_or_default();
            if Instant::now() + wait > deadline {
                let slot = self
                    .db
                    .run(async |conn| rate_limit::reserve_slot(conn, subscription, spacing).await)
                    .await?;
                return Ok(Turn::WaitFor(slot));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends a delivery to wait until `due`, without an attempt and without using a retry: it
    /// is due then in PostgreSQL (saying why, when it waits for a rate limit), and its message
    /// waits in a wait queue.
    async fn wait_until(
        self: Arc<Self>,
        job: Job,
        due: chrono::DateTime<Utc>,
        rate_limit: Option<RateLimit>,
    ) {
        let id = job.envelope.delivery();
        let saved = match rate_limit {
            Some(_) => {
                self.db
                    .run(async |conn| delivery::wait_for_rate_limit(conn, id, due).await)
                    .await
            }
            None => {
                self.db
                    .run(async |conn| delivery::release_leases(conn, &[id]).await)
                    .await
            }
        };
        if let Err(error) = saved {
            warn!(self.log, "could not send a delivery to wait; left for the reaper";
                "delivery_id" => %id, "error" => %error);
            return job.acker.reject();
        }
        if let Some(limit) = rate_limit {
            debug!(self.log, "delivery waits for its subscription's rate limit";
                "delivery_id" => %id, "rate_limit" => %limit, "until" => %due);
        }
        let wait = (due - Utc::now()).to_std().unwrap_or_default();
        match self
            .publisher
            .publish(&job.envelope, Route::Wait(wait))
            .await
        {
            Ok(()) => job.acker.ack(),
            Err(error) => {
                warn!(self.log, "could not send a delivery to wait; left for the reaper";
                    "delivery_id" => %id, "error" => %error);
                job.acker.reject();
            }
        }
    }

    /// Passes a `cli` subscription's delivery on to its queue, which its `spenza listen`
    /// sessions consume (and where it waits, durably, while none is connected). Should the
    /// broker not take it, it is still due in PostgreSQL: the reaper publishes it again once a
    /// session is connected.
    async fn pass_to_listeners(self: Arc<Self>, job: Job) {
        let subscription = job.envelope.subscription_id;
        let passed = Envelope {
            deferrals: 0,
            ..job.envelope.clone()
        };
        match self
            .publisher
            .publish(&passed, Route::Listen(subscription))
            .await
        {
            Ok(()) => job.acker.ack(),
            Err(error) => {
                warn!(self.log, "could not pass a delivery to its listen sessions; left for the reaper";
                    "delivery_id" => %job.envelope.delivery(), "error" => %error);
                job.acker.reject();
            }
        }
    }

    /// Sends a job round a defer queue: back in a moment (longer each time it comes back to a
    /// subscription still busy, so a long backlog does not churn), no attempt made, no retry
    /// used.
    async fn defer(self: Arc<Self>, job: Job) {
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
                    "delivery_id" => %job.envelope.delivery(), "error" => %error);
                job.acker.reject();
            }
        }
    }
}

/// Attempts at their endpoints per subscription in this process, up to a limit each. Only the
/// time at the endpoint counts: a delivery waiting for the database holds up every
/// subscription alike, a slow endpoint only its own.
struct InFlight {
    limit: usize,
    subscriptions: Mutex<HashMap<SubscriptionId, Arc<Share>>>,
}

/// One subscription's attempts under way.
struct Share {
    /// How many it may have at once: its policy's cap, or the process's.
    limit: usize,
    slots: Arc<Semaphore>,
    /// When each attempt under way started (a count per instant).
    running: Mutex<BTreeMap<Instant, usize>>,
}

impl Share {
    fn new(limit: usize) -> Arc<Share> {
        Arc::new(Share {
            limit,
            slots: Arc::new(Semaphore::new(limit)),
            running: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether at least half of its attempts under way have run for [`SLOW`] already: its
    /// endpoint is slow, and a delivery would wait long for a place. (One attempt stuck on a
    /// fast endpoint, say behind a lost packet, does not make it slow.)
    fn is_slow(&self) -> bool {
        let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = running.values().sum();
        // Oldest first: the attempt at the middle, and all before it, are at least this old.
        let mut seen = 0;
        for (started, count) in running.iter() {
            seen += count;
            if seen * 2 >= total {
                return started.elapsed() >= SLOW;
            }
        }
        false
    }
}

impl InFlight {
    fn new(limit: usize) -> Self {
        InFlight {
            limit: limit.max(1),
            subscriptions: Mutex::new(HashMap::new()),
        }
    }

    /// A slot for one delivery of `subscription`'s, which allows `limit` at once (`None`: the
    /// process's limit), held until dropped. With every slot taken, it waits for one up to
    /// `wait`, unless the subscription's endpoint is slow; `None` when it got none. A changed
    /// limit applies to the attempts that start after the change.
    async fn take(
        &self,
        subscription: SubscriptionId,
        limit: Option<usize>,
        wait: Duration,
    ) -> Option<Slot<'_>> {
        let limit = limit.unwrap_or(self.limit).max(1);
        let share = {
            let mut subscriptions = self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let share = subscriptions
                .entry(subscription)
                .and_modify(|share| {
                    if share.limit != limit {
                        *share = Share::new(limit);
                    }
                })
                .or_insert_with(|| Share::new(limit));
            share.clone()
        };
        let permit = match share.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if share.is_slow() => return None,
            Err(_) => tokio::time::timeout(wait, share.slots.clone().acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        let started = Instant::now();
        *share
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(started)
            .or_default() += 1;
        Some(Slot {
            in_flight: self,
            subscription,
            share,
            started,
            permit: Some(permit),
        })
    }
}

/// One delivery's place in its subscription's share.
struct Slot<'a> {
    in_flight: &'a InFlight,
    subscription: SubscriptionId,
    share: Arc<Share>,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        {
            let mut running = self
                .share
                .running
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(count) = running.get_mut(&self.started) {
                *count -= 1;
                if *count == 0 {
                    running.remove(&self.started);
                }
            }
        }
        self.permit.take();
        let mut subscriptions = self
            .in_flight
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Idle (all its slots free, nobody waiting: only the map and this hold it): forgotten.
        let current = subscriptions
            .get(&self.subscription)
            .is_some_and(|share| Arc::ptr_eq(share, &self.share));
        if current
            && Arc::strong_count(&self.share) == 2
            && self.share.slots.available_permits() == self.share.limit
        {
            subscriptions.remove(&self.subscription);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_is_slow_once_half_its_attempts_under_way_have_taken_a_while() {
        let long_ago = Instant::now() - SLOW * 2;
        let share = |starts: &[Instant]| {
            let mut running = BTreeMap::new();
            for started in starts {
                *running.entry(*started).or_insert(0) += 1;
            }
            Share {
                limit: 8,
                slots: Arc::new(Semaphore::new(8)),
                running: Mutex::new(running),
            }
        };
        let now = Instant::now();
        assert!(!share(&[]).is_slow());
        assert!(!share(&[long_ago, now, now]).is_slow(), "one stuck attempt");
        assert!(share(&[long_ago, long_ago, now]).is_slow());
        assert!(share(&[long_ago]).is_slow());
    }

    #[tokio::test]
    async fn a_subscription_takes_slots_up_to_its_limit_and_waits_for_one_to_come_free() {
        let in_flight = InFlight::new(2);
        let (busy, other) = (
            SubscriptionId(uuid::Uuid::new_v4()),
            SubscriptionId(uuid::Uuid::new_v4()),
        );
        let wait = Duration::from_millis(50);
        let first = in_flight
            .take(busy, None, wait)
            .await
            .expect("a first slot");
        let second = in_flight
            .take(busy, None, wait)
            .await
            .expect("a second slot");
        assert!(
            in_flight.take(busy, None, wait).await.is_none(),
            "a third is over the limit, and none comes free"
        );
        assert!(
            in_flight.take(other, None, wait).await.is_some(),
            "another subscription has its own"
        );
        let (third, ()) =
            tokio::join!(in_flight.take(busy, None, Duration::from_secs(10)), async {
                drop(first);
            });
        assert!(third.is_some(), "a slot that comes free is taken");
        drop((second, third));
        assert!(
            in_flight.subscriptions.lock().unwrap().is_empty(),
            "idle ones are forgotten"
        );
    }

    #[tokio::test]
    async fn a_subscription_with_its_own_cap_takes_slots_up_to_it() {
        let in_flight = InFlight::new(8);
        let capped = SubscriptionId(uuid::Uuid::new_v4());
        let wait = Duration::from_millis(50);
        let first = in_flight.take(capped, Some(1), wait).await.expect("a slot");
        assert!(
            in_flight.take(capped, Some(1), wait).await.is_none(),
            "its cap of one is taken"
        );
        // Its cap raised: attempts from now on count against the new one.
        let second = in_flight.take(capped, Some(2), wait).await.expect("a slot");
        let third = in_flight.take(capped, Some(2), wait).await.expect("a slot");
        assert!(in_flight.take(capped, Some(2), wait).await.is_none());
        drop((first, second, third));
        assert!(
            in_flight.subscriptions.lock().unwrap().is_empty(),
            "idle ones are forgotten"
        );
    }
}
