//! One `spenza listen` session on the relay: the replica holding its WebSocket consumes its
//! subscription's queue (at most `in_flight` messages unacked), claims each delivery as a
//! delivery worker would, sends it to the CLI, and records the outcome the CLI reports as an
//! attempt, after which the message is acked. A session that ends leaves what it had not
//! recorded for the next: unleased and back in the queue when it closes. When its replica
//! dies, the claims it held keep their lease: the reaper publishes those deliveries again once
//! the lease and its grace period have passed and a session is connected.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_ws::{CloseCode, CloseReason, Message, MessageStream};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use slog::{Logger, info, warn};
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::protocol::{CLOSE_GONE, Forward, FromCli, Outcome, ToCli};
use crate::db::Database;
use crate::db::models::delivery::{self, AttemptRecord, Claim, DeliveryJob};
use crate::db::models::event;
use crate::db::models::listen_session::{self, Refreshed};
use crate::domain::{
    DeliveryId, EventStatus, Policy, RetrySchedule, SubscriptionId, is_reserved_header,
};
use crate::live::{EventNotice, Live, Notice};
use crate::metrics::{self, AttemptOutcome};
use crate::queue::{Consumed, Consumer, Envelope, Job, Publisher, Route, Topology};

/// How often the relay pings the CLI (and refreshes the session's row), and how long a silent
/// CLI is kept.
const PING_EVERY: Duration = listen_session::REFRESH_EVERY;
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// The longest a send to the CLI may wait: one that does not read is closed.
const SEND_LIMIT: Duration = Duration::from_secs(5);
/// How long past its timeout an event's outcome may take to come back before the session is
/// closed as stuck: well within the lease, which outlasts the timeout by twice the database
/// timeout and ten seconds more, so that no outcome is recorded once another claim may hold
/// the delivery.
const REPORT_MARGIN: Duration = Duration::from_secs(5);
/// How often the deadlines of the outcomes awaited are checked.
const DEADLINE_CHECK: Duration = Duration::from_secs(1);
/// How long a stopping session's consumer waits for its messages to be settled.
const DRAIN: Duration = Duration::from_secs(2);

/// What every listen session of a process shares.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    pub amqp_urls: Vec<String>,
    pub topology: Topology,
    /// The process's retry schedule, for a subscription without its own.
    pub schedule: RetrySchedule,
    /// How long a claimed delivery is held.
    pub lease: Duration,
    /// The process's delivery timeout, for a subscription without its own.
    pub timeout: Duration,
    /// Events in flight per session.
    pub in_flight: u16,
    /// Sessions per holder (see [`listen_session::open`]).
    pub sessions_per_holder: u32,
    /// This replica, as the source's page names it.
    pub replica: String,
}

/// A connected session.
pub struct Session {
    /// Its row in `listen_sessions`.
    pub id: Uuid,
    pub subscription: SubscriptionId,
    pub ready: ToCli,
    /// Whether failures are retried on the subscription's schedule.
    pub retry: bool,
    pub db: Database,
    pub publisher: Publisher,
    pub live: Live,
    pub config: Arc<ListenConfig>,
    pub shutdown: CancellationToken,
    pub log: Logger,
}

/// A delivery sent to the CLI, whose outcome is awaited.
struct Sent {
    job: Job,
    found: DeliveryJob,
    started_at: DateTime<Utc>,
    /// When the session gives up on its outcome.
    deadline: Instant,
}

/// Why a session ends, as the CLI is told.
type Ending = Option<CloseReason>;

fn ending(code: CloseCode, description: &str) -> Ending {
    Some(CloseReason {
        code,
        description: Some(description.to_owned()),
    })
}

impl Session {
    /// Serves the session until the CLI leaves, stops reading, or the process stops; then
    /// leaves what was not recorded for the next session.
    pub async fn run(self, mut ws: actix_ws::Session, mut stream: MessageStream) {
        let started = Consumer::start(
            &self.config.amqp_urls,
            self.config.topology.clone(),
            Consumed::Listen(self.subscription),
            self.config.in_flight,
            DRAIN,
            self.log.clone(),
        );
        let (consumer, mut jobs) = match started {
            Ok(started) => started,
            Err(error) => {
                warn!(self.log, "could not start a listen session's consumer"; "error" => %error);
                self.close_row().await;
                let _ = ws
                    .close(ending(
                        CloseCode::Error,
                        "the relay could not start the session",
                    ))
                    .await;
                return;
            }
        };
        let _counted = metrics::Connected::listen_session();
        info!(self.log, "listen session connected");
        let mut sent: HashMap<DeliveryId, Sent> = HashMap::new();
        let reason = self.serve(&mut ws, &mut stream, &mut jobs, &mut sent).await;
        // Nothing more is taken; what was goes back to the queue, for the next session.
        let mut consumer = consumer;
        consumer.begin_stop();
        self.leave(sent).await;
        drop(jobs);
        let _ = tokio::time::timeout(SEND_LIMIT, ws.close(reason)).await;
        self.close_row().await;
        tokio::task::spawn_blocking(move || consumer.join());
        info!(self.log, "listen session ended");
    }

    async fn serve(
        &self,
        ws: &mut actix_ws::Session,
        stream: &mut MessageStream,
        jobs: &mut mpsc::Receiver<Job>,
        sent: &mut HashMap<DeliveryId, Sent>,
    ) -> Ending {
        if !self.send(ws, &self.ready).await {
            return None;
        }
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut deadlines = tokio::time::interval(DEADLINE_CHECK);
        deadlines.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut heard = Instant::now();
        loop {
            tokio::select! {
                // The process is stopping: the CLI reconnects, to a replica that is not.
                () = self.shutdown.cancelled() => {
                    return ending(CloseCode::Restart, "the relay is restarting");
                }
                job = jobs.recv() => match job {
                    Some(job) => {
                        if let Some(forward) = self.claim(job, sent).await
                            && !self.send(ws, &ToCli::Event(forward)).await
                        {
                            return ending(CloseCode::Away, "the CLI does not read");
                        }
                    }
                    // The broker cancelled the consumer: its queue was deleted.
                    None => return self.gone_or_restart().await,
                },
                message = stream.recv() => match message {
                    Some(Ok(Message::Text(text))) => {
                        heard = Instant::now();
                        match serde_json::from_str::<FromCli>(&text) {
                            Ok(FromCli::Outcome(outcome)) => self.record(outcome, sent).await,
                            Err(error) => {
                                return ending(CloseCode::Invalid, &format!("not understood: {error}"));
                            }
                        }
                    }
                    Some(Ok(Message::Ping(bytes))) => {
                        heard = Instant::now();
                        if ws.pong(&bytes).await.is_err() {
                            return None;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                    Some(Ok(_)) => heard = Instant::now(),
                },
                _ = deadlines.tick() => {
                    let now = Instant::now();
                    if sent.values().any(|waiting| waiting.deadline < now) {
                        return ending(CloseCode::Away, "an event's outcome did not come back in time");
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > SILENCE_LIMIT {
                        return ending(CloseCode::Away, "the CLI went silent");
                    }
                    match self.db.run(async |conn| listen_session::refresh(conn, self.id).await).await {
                        Ok(Refreshed::Live) => {}
                        Ok(Refreshed::KeyRevoked) => {
                            return ending(
                                CloseCode::Other(CLOSE_GONE),
                                "the API key was revoked, or its role may no longer listen",
                            );
                        }
                        Ok(Refreshed::Gone) => return self.gone_or_restart().await,
                        Err(error) => warn!(self.log, "could not refresh a listen session"; "error" => %error),
                    }
                    match tokio::time::timeout(SEND_LIMIT, ws.ping(b"")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return None,
                        Err(_) => return ending(CloseCode::Away, "the CLI does not read"),
                    }
                }
            }
        }
    }

    /// Sends a frame; false when the CLI is gone or does not read.
    async fn send(&self, ws: &mut actix_ws::Session, frame: &ToCli) -> bool {
        let text = serde_json::to_string(frame).expect("a frame always serializes");
        matches!(
            tokio::time::timeout(SEND_LIMIT, ws.text(text)).await,
            Ok(Ok(()))
        )
    }

    /// Ends for good when the subscription is gone (deleted, with its source or by itself),
    /// else so that the CLI reconnects.
    async fn gone_or_restart(&self) -> Ending {
        let subscription = self.subscription;
        match self
            .db
            .run(async |conn| crate::db::models::subscription::exists(conn, subscription).await)
            .await
        {
            Ok(false) => ending(
                CloseCode::Other(CLOSE_GONE),
                "the listen subscription was deleted: run spenza listen again to make a new one",
            ),
            _ => ending(CloseCode::Restart, "the session's queue went away"),
        }
    }

    /// Claims a job's delivery for this session, as a delivery worker claims one; the frame
    /// to send when there is something to forward. Nothing is: the message is settled here.
    async fn claim(&self, job: Job, sent: &mut HashMap<DeliveryId, Sent>) -> Option<Forward> {
        let id = job.envelope.delivery();
        let claim = [Claim {
            id,
            event: job.envelope.event_id,
            retry_count: job.envelope.retry_count,
        }];
        let (lease, timeout) = (self.config.lease, self.config.timeout);
        let claimed = self
            .db
            .run(async |conn| {
                let mut claimed =
                    delivery::claim_for_delivery(conn, &claim, lease, timeout, true).await?;
                let Some(found) = claimed.pop() else {
                    return Ok(None);
                };
                let headers = event::headers_of(conn, found.job.event_id).await?;
                Ok(Some((found.job, headers)))
            })
            .await;
        let (found, headers) = match claimed {
            Ok(Some(found)) => found,
            // Delivered, failed, further along its chain or held: a copy with nothing to do.
            Ok(None) => {
                job.acker.ack();
                return None;
            }
            Err(error) => {
                warn!(self.log, "could not claim a delivery for a listen session; left for the reaper";
                    "delivery_id" => %id, "error" => %error);
                job.acker.reject();
                return None;
            }
        };
        if !found.is_active {
            // Paused: held until it is resumed, as any subscription's.
            let held = self
                .db
                .run(async |conn| delivery::hold(conn, &[id]).await)
                .await;
            match held {
                Ok(()) => job.acker.ack(),
                Err(_) => job.acker.reject(),
            }
            return None;
        }
        let started_at = Utc::now();
        let policy = Policy::from_stored(&found.policy);
        let timeout = policy.timeout().unwrap_or(self.config.timeout);
        let forward = forward(id, &found, &headers, &policy, started_at, timeout);
        sent.insert(
            id,
            Sent {
                job,
                found,
                started_at,
                deadline: Instant::now() + timeout + REPORT_MARGIN,
            },
        );
        match forward {
            Ok(forward) => Some(forward),
            Err(reason) => {
                // Nothing to send: recorded as a failed attempt, as a delivery worker would.
                let outcome = Outcome {
                    delivery_id: id,
                    duration_ms: 0,
                    status: None,
                    error: Some(reason),
                    timed_out: false,
                    response_body: None,
                };
                self.record(outcome, sent).await;
                None
            }
        }
    }

    /// Records what the CLI reports as an attempt of the delivery, then acks its message and,
    /// when it failed and the session retries, sends it to wait for its next retry. A report of
    /// a delivery not awaited (reported already, or sent before a reconnection) is ignored.
    async fn record(&self, outcome: Outcome, sent: &mut HashMap<DeliveryId, Sent>) {
        let Some(Sent {
            job,
            found,
            started_at,
            ..
        }) = sent.remove(&outcome.delivery_id)
        else {
            return;
        };
        let succeeded = outcome.error.is_none()
            && outcome
                .status
                .is_some_and(|code| (200..300).contains(&code));
        let retry_count = job.envelope.retry_count;
        let retry = if succeeded || !self.retry {
            None
        } else {
            Policy::from_stored(&found.policy)
                .retry_schedule()
                .as_ref()
                .unwrap_or(&self.config.schedule)
                .next_delay(retry_count, None)
        };
        let (status, retry_count) = match retry {
            _ if succeeded => (EventStatus::Completed, retry_count),
            Some(_) => (EventStatus::Retrying, retry_count + 1),
            None => (EventStatus::Failed, retry_count),
        };
        let record = AttemptRecord {
            delivery: outcome.delivery_id,
            event: found.event_id,
            subscription: self.subscription,
            started_at,
            duration_ms: i32::try_from(outcome.duration_ms).unwrap_or(i32::MAX),
            status_code: outcome.status.map(i32::from),
            error: match (&outcome.error, outcome.status) {
                (Some(error), _) => Some(error.clone()),
                (None, Some(code)) if !succeeded => Some(format!("HTTP {code}")),
                _ => None,
            },
            response_body: outcome.response_body,
            status,
            next_attempt_at: retry.map(|delay| Utc::now() + delay),
            retry_count: i32::try_from(retry_count).unwrap_or(i32::MAX),
        };
        // A developer's machine failing does not open the breaker: its events are held only
        // while no session is connected.
        let recorded = self
            .db
            .run(async |conn| delivery::record_attempts(conn, &[record], i32::MAX).await)
            .await;
        if let Err(error) = recorded {
            warn!(self.log, "listen outcome not recorded; left for the reaper";
                "delivery_id" => %outcome.delivery_id, "error" => %error);
            return job.acker.reject();
        }
        let kind = match outcome.status {
            Some(code) => AttemptOutcome::of_status(code),
            None if outcome.timed_out => AttemptOutcome::Timeout,
            None => AttemptOutcome::ConnectionError,
        };
        metrics::get().attempted(
            self.subscription,
            kind,
            Duration::from_millis(u64::from(outcome.duration_ms)),
        );
        self.live.notify(Notice::Event(EventNotice {
            event: found.event_id,
            subscription: self.subscription,
            workspace: found.workspace_id,
            new: false,
        }));
        if let Some(delay) = retry {
            let next = Envelope {
                retry_count,
                deferrals: 0,
                ..job.envelope.clone()
            };
            // Due in PostgreSQL now: should the publish be lost, the reaper makes it.
            let _ = self
                .publisher
                .publish_all_detached(&[next], Route::Wait(delay))
                .await;
        }
        job.acker.ack();
    }

    /// Gives up the deliveries sent and not reported: unleased, so that the next session
    /// claims them at once (their messages go back to the queue as the jobs drop).
    async fn leave(&self, sent: HashMap<DeliveryId, Sent>) {
        if sent.is_empty() {
            return;
        }
        let ids: Vec<DeliveryId> = sent.keys().copied().collect();
        if let Err(error) = self
            .db
            .run(async |conn| delivery::release_leases(conn, &ids).await)
            .await
        {
            warn!(self.log, "could not release a listen session's deliveries; they wait for their lease";
                "count" => ids.len(), "error" => %error);
        }
    }

    async fn close_row(&self) {
        let id = self.id;
        if let Err(error) = self
            .db
            .run(async |conn| listen_session::close(conn, id).await)
            .await
        {
            warn!(self.log, "could not close a listen session's row; it lapses"; "error" => %error);
        }
    }
}

/// The frame of one delivery: the event as it arrived (its kept headers, its bytes), signed as
/// a delivery to an endpoint is, with the subscription's own headers.
fn forward(
    id: DeliveryId,
    found: &DeliveryJob,
    headers: &serde_json::Value,
    policy: &Policy,
    at: DateTime<Utc>,
    timeout: Duration,
) -> Result<Forward, String> {
    let signatures = crate::delivery::sign(found.event_id, at, found)
        .map_err(|_| "the subscription's signing secret is not valid base64".to_owned())?;
    let ours = [
        ("webhook-id", found.event_id.to_string()),
        ("webhook-timestamp", at.timestamp().to_string()),
        ("webhook-signature", signatures.webhook_signature),
        ("x-spenza-signature", signatures.spenza_signature),
    ];
    let mut sent: Vec<(String, String)> = headers
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, value)| Some((name.clone(), value.as_str()?.to_owned())))
        .filter(|(name, _)| !ours.iter().any(|(own, _)| name.eq_ignore_ascii_case(own)))
        .collect();
    if let Some(content_type) = &found.content_type
        && !sent
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        sent.push(("content-type".to_owned(), content_type.clone()));
    }
    for (name, value) in &policy.headers {
        if !is_reserved_header(name) {
            sent.retain(|(kept, _)| !kept.eq_ignore_ascii_case(name));
            sent.push((name.clone(), value.clone()));
        }
    }
    sent.extend(ours.map(|(name, value)| (name.to_owned(), value)));
    Ok(Forward {
        delivery_id: id,
        event_id: found.event_id,
        method: "POST".to_owned(),
        path: if found.forward_path {
            found.path.clone()
        } else {
            String::new()
        },
        query: if found.forward_path {
            found.query.clone()
        } else {
            String::new()
        },
        headers: sent,
        body: STANDARD.encode(&found.body),
        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
    })
}
