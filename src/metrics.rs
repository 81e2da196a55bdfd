//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! One registry for the process, as Prometheus sees a process: every part of the relay counts
//! into [`get()`]. No label takes an unbounded value: each is an enum here, or a queue name
//! drawn from the configured topology. The one exception is for the operator to choose
//! ([`init`]): counts by subscription id.

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use slog::{Logger, debug};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::db::Database;
use crate::db::models::delivery;
use crate::domain::{EventStatus, SubscriptionId};
use crate::queue::{Topology, connect};
use crate::signing::incoming::Rejection;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What became of an ingest request: the status it was answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestStatus {
    /// 202: stored.
    Accepted,
    /// 200: its idempotency key was seen before.
    Duplicate,
    /// 400: its body could not be read.
    BadRequest,
    /// 401: its provider's signature or credentials do not hold.
    Unauthorized,
    /// 403: a handshake the relay may not answer (a wrong verify token).
    Forbidden,
    /// 405: neither a `POST` nor the provider's handshake.
    MethodNotAllowed,
    /// 200: a provider's handshake, answered by the relay.
    Handshake,
    /// 404: no subscription has its token.
    NotFound,
    /// 413: its body is over the limit.
    TooLarge,
    /// 500: the subscription cannot take events.
    Error,
    /// 503: it could not be made durable; the provider retries.
    Unavailable,
}

impl EncodeLabelValue for IngestStatus {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            IngestStatus::Accepted => "202",
            IngestStatus::Duplicate => "200",
            IngestStatus::BadRequest => "400",
            IngestStatus::Unauthorized => "401",
            IngestStatus::Forbidden => "403",
            IngestStatus::MethodNotAllowed => "405",
            IngestStatus::Handshake => "handshake",
            IngestStatus::NotFound => "404",
            IngestStatus::TooLarge => "413",
            IngestStatus::Error => "500",
            IngestStatus::Unavailable => "503",
        })
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Status2xx,
    /// A redirect, which is not followed.
    Status3xx,
    Status4xx,
    Status5xx,
    /// No answer within the delivery timeout.
    Timeout,
    /// The endpoint could not be connected to.
    ConnectionError,
    /// The SSRF guard refused the endpoint's address.
    Refused,
    /// Anything else: the request broke off, or the subscription's secret is unusable.
    OtherError,
}

impl AttemptOutcome {
    /// The outcome of an answer with this status.
    pub fn of_status(status: u16) -> AttemptOutcome {
        match status {
            200..=299 => AttemptOutcome::Status2xx,
            300..=399 => AttemptOutcome::Status3xx,
            400..=499 => AttemptOutcome::Status4xx,
            _ => AttemptOutcome::Status5xx,
        }
    }
}

impl EncodeLabelValue for AttemptOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            AttemptOutcome::Status2xx => "2xx",
            AttemptOutcome::Status3xx => "3xx",
            AttemptOutcome::Status4xx => "4xx",
            AttemptOutcome::Status5xx => "5xx",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::ConnectionError => "connection_error",
            AttemptOutcome::Refused => "refused",
            AttemptOutcome::OtherError => "error",
        })
    }
}

/// An event status, as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status(pub EventStatus);

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.0.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IngestLabels {
    pub status: IngestStatus,
}

/// A refused ingest request: the source's provider kind (or `none`) and a `Rejection::reason`,
/// both from fixed sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RejectionLabels {
    pub kind: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AttemptLabels {
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub subscription: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SubscriptionAttemptLabels {
    pub subscription: String,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: Status,
}

/// An issue's transition: its kind and what happened, from fixed sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct IssueLabels {
    pub kind: &'static str,
    pub change: &'static str,
}

/// A notification's try: its channel's kind and whether it went, from fixed sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct NotificationLabels {
    pub channel: &'static str,
    pub outcome: &'static str,
}

/// A queue, by its name without the deployment's prefix (`deliver`, `retry.30s.quorum`,
/// `defer.1s.quorum`; `retry.30s` for a classic queue).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// Everything the relay counts.
pub struct Metrics {
    registry: Registry,
    /// Ingest requests, by the status they were answered with.
    pub ingest_requests: Family<IngestLabels, Counter>,
    /// Refused ingest requests, by the source's provider kind and the reason.
    pub ingest_rejections: Family<RejectionLabels, Counter>,
    /// From an ingest request's arrival to its answer.
    pub ingest_duration: Histogram,
    /// Events written by one ingest statement (group commit).
    pub ingest_batch_events: Histogram,
    /// Delivery attempts, by how they ended.
    pub delivery_attempts: Family<AttemptLabels, Counter>,
    /// One attempt, from its request to its answer.
    pub delivery_duration: Histogram,
    /// From an event's arrival to its successful delivery, retries included.
    pub end_to_end: Histogram,
    /// Deliveries by status, counted every few seconds (completed ones are not counted).
    pub events: Family<StatusLabels, Gauge>,
    /// Messages ready in each queue, read every few seconds.
    pub queue_messages: Family<QueueLabels, Gauge>,
    /// Subscriptions the circuit breaker disabled.
    pub breaker_trips: Counter,
    /// Events the reaper published again (their publish or retry went missing).
    pub reaper_republished: Counter,
    /// Issues opened, reopened and resolved, by kind.
    pub issue_transitions: Family<IssueLabels, Counter>,
    /// Notifications tried, by channel kind and outcome.
    pub notifications: Family<NotificationLabels, Counter>,
    /// From a publish to the broker's confirm.
    pub publish_confirm: Histogram,
    /// Dashboard pages connected to the live WebSocket.
    pub live_connections: Gauge,
    /// `spenza listen` sessions this process holds.
    pub listen_sessions: Gauge,
    /// Counts by subscription, when the operator asked for them.
    by_subscription: Option<BySubscription>,
}

/// Counts labelled with subscription ids: one series per subscription (and outcome).
struct BySubscription {
    ingested: Family<SubscriptionLabels, Counter>,
    attempts: Family<SubscriptionAttemptLabels, Counter>,
}

impl Metrics {
    fn new(per_subscription: bool) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("spenza"),
            ingest_requests: Family::default(),
            ingest_rejections: Family::default(),
            ingest_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            ingest_batch_events: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            delivery_attempts: Family::default(),
            delivery_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            end_to_end: Histogram::new(exponential_buckets(0.001, 2.5, 20)),
            events: Family::default(),
            queue_messages: Family::default(),
            breaker_trips: Counter::default(),
            reaper_republished: Counter::default(),
            issue_transitions: Family::default(),
            notifications: Family::default(),
            publish_confirm: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            live_connections: Gauge::default(),
            listen_sessions: Gauge::default(),
            by_subscription: per_subscription.then(|| BySubscription {
                ingested: Family::default(),
                attempts: Family::default(),
            }),
        };
        let registry = &mut metrics.registry;
        registry.register(
            "ingest_requests",
            "Ingest requests, by the status they were answered with",
            metrics.ingest_requests.clone(),
        );
        registry.register(
            "ingest_rejections",
            "Ingest requests refused by their source's check, by provider kind and reason",
            metrics.ingest_rejections.clone(),
        );
        registry.register_with_unit(
            "ingest_duration",
            "From an ingest request's arrival to its answer",
            Unit::Seconds,
            metrics.ingest_duration.clone(),
        );
        registry.register(
            "ingest_batch_events",
            "Events written by one ingest statement and commit",
            metrics.ingest_batch_events.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by how they ended",
            metrics.delivery_attempts.clone(),
        );
        registry.register_with_unit(
            "delivery_duration",
            "One delivery attempt, from its request to its answer",
            Unit::Seconds,
            metrics.delivery_duration.clone(),
        );
        registry.register_with_unit(
            "end_to_end",
            "From an event's arrival to its successful delivery, retries included",
            Unit::Seconds,
            metrics.end_to_end.clone(),
        );
        registry.register(
            "events",
            "Deliveries (one per event and subscription) still to make or failed, by status, counted every few seconds",
            metrics.events.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages ready in each of the relay's queues, read every few seconds",
            metrics.queue_messages.clone(),
        );
        registry.register(
            "breaker_trips",
            "Subscriptions disabled by the circuit breaker",
            metrics.breaker_trips.clone(),
        );
        registry.register(
            "reaper_republished",
            "Events the reaper published again because their publish or retry went missing",
            metrics.reaper_republished.clone(),
        );
        registry.register(
            "issue_transitions",
            "Issues opened, reopened and resolved, by kind",
            metrics.issue_transitions.clone(),
        );
        registry.register(
            "notifications",
            "Notifications tried, by channel kind and outcome (sent or failed, to be tried again)",
            metrics.notifications.clone(),
        );
        registry.register_with_unit(
            "publish_confirm",
            "From a publish to the broker's confirm",
            Unit::Seconds,
            metrics.publish_confirm.clone(),
        );
        registry.register(
            "live_connections",
            "Dashboard pages connected to the live WebSocket",
            metrics.live_connections.clone(),
        );
        registry.register(
            "listen_sessions",
            "spenza listen sessions connected to this process",
            metrics.listen_sessions.clone(),
        );
        if let Some(by_subscription) = &metrics.by_subscription {
            registry.register(
                "subscription_events_ingested",
                "Events stored, by subscription",
                by_subscription.ingested.clone(),
            );
            registry.register(
                "subscription_delivery_attempts",
                "Delivery attempts, by subscription and how they ended",
                by_subscription.attempts.clone(),
            );
        }
        metrics
    }

    /// Counts an ingest request answered with `status` after `took`.
    pub fn ingested(&self, status: IngestStatus, took: Duration) {
        self.ingest_requests
            .get_or_create(&IngestLabels { status })
            .inc();
        self.ingest_duration.observe(took.as_secs_f64());
    }

    /// Counts a request refused by a source whose provider is `kind` (`none` when it has none).
    pub fn rejected(&self, kind: &'static str, rejection: Rejection) {
        self.ingest_rejections
            .get_or_create(&RejectionLabels {
                kind,
                reason: rejection.reason(),
            })
            .inc();
    }

    /// Counts an event stored for `subscription` (only by subscription: the ingest request
    /// is counted by [`Metrics::ingested`]).
    pub fn stored(&self, subscription: SubscriptionId) {
        if let Some(by_subscription) = &self.by_subscription {
            by_subscription
                .ingested
                .get_or_create(&SubscriptionLabels {
                    subscription: subscription.to_string(),
                })
                .inc();
        }
    }

    /// Counts a delivery attempt at `subscription`'s endpoint that ended as `outcome` after
    /// `took`; the time of one the SSRF guard refused, which sent nothing, is not observed.
    pub fn attempted(&self, subscription: SubscriptionId, outcome: AttemptOutcome, took: Duration) {
        self.delivery_attempts
            .get_or_create(&AttemptLabels { outcome })
            .inc();
        if let Some(by_subscription) = &self.by_subscription {
            by_subscription
                .attempts
                .get_or_create(&SubscriptionAttemptLabels {
                    subscription: subscription.to_string(),
                    outcome,
                })
                .inc();
        }
        if outcome != AttemptOutcome::Refused {
            self.delivery_duration.observe(took.as_secs_f64());
        }
    }

    fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Sets the process's metrics up, counting by subscription too if `per_subscription`. The
/// first call decides, or the first [`get`] (without counts by subscription): a process serves
/// one relay, and tests that start several in one process share the first one's. Whether
/// the metrics count by subscription as asked.
#[must_use]
pub fn init(per_subscription: bool) -> bool {
    get_or_init(per_subscription).by_subscription.is_some() == per_subscription
}

fn get_or_init(per_subscription: bool) -> &'static Metrics {
    METRICS.get_or_init(|| Metrics::new(per_subscription))
}

/// The process's metrics.
pub fn get() -> &'static Metrics {
    get_or_init(false)
}

/// The process's metrics in the OpenMetrics text format.
pub fn encode() -> String {
    get().encode()
}

/// Sets the events gauge from fresh counts; a status without events reads 0.
pub fn set_event_counts(counts: &[(EventStatus, i64)]) {
    for status in [
        EventStatus::Pending,
        EventStatus::Retrying,
        EventStatus::Failed,
    ] {
        let count = counts
            .iter()
            .find(|(counted, _)| *counted == status)
            .map_or(0, |(_, count)| *count);
        get()
            .events
            .get_or_create(&StatusLabels {
                status: Status(status),
            })
            .set(count);
    }
}

/// One connection counted in a gauge until this is dropped: a dashboard page on the live
/// WebSocket, or a `spenza listen` session.
pub struct Connected(Gauge);

impl Connected {
    /// A dashboard page, in `spenza_live_connections`.
    pub fn live_page() -> Connected {
        Connected::counting(&get().live_connections)
    }

    /// A `spenza listen` session, in `spenza_listen_sessions`.
    pub fn listen_session() -> Connected {
        Connected::counting(&get().listen_sessions)
    }

    fn counting(gauge: &Gauge) -> Connected {
        gauge.inc();
        Connected(gauge.clone())
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What reads the gauges that are counted rather than kept: deliveries by status, from
/// PostgreSQL, and messages in each queue, from the broker.
pub struct Gauges {
    pub db: Database,
    /// The broker's URLs, tried in turn.
    pub amqp_urls: Vec<String>,
    pub topology: Topology,
    /// How often they are read.
    pub every: Duration,
    pub log: Logger,
}

impl Gauges {
    /// Reads them at once, then every so often, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut broker = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            match self
                .db
                .run(async |conn| delivery::count_unfinished(conn).await)
                .await
            {
                Ok(counts) => set_event_counts(&counts),
                Err(error) => debug!(self.log, "could not count events"; "error" => %error),
            }
            let (urls, queues) = (self.amqp_urls.clone(), self.topology.queues());
            let held = broker.take();
            if let Ok((connection, depths)) =
                tokio::task::spawn_blocking(move || queue_depths(held, &urls, &queues)).await
            {
                broker = connection;
                for (queue, messages) in depths {
                    get()
                        .queue_messages
                        .get_or_create(&QueueLabels { queue })
                        .set(i64::from(messages));
                }
            }
        }
        if let Some(connection) = broker {
            let _ = tokio::task::spawn_blocking(move || connection.close()).await;
        }
    }
}

/// Messages ready in each queue (by short name), through `held` or a new connection; the
/// connection to keep for next time, if it still works.
fn queue_depths(
    held: Option<amiquip::Connection>,
    urls: &[String],
    queues: &[(String, String)],
) -> (Option<amiquip::Connection>, Vec<(String, u32)>) {
    let Some(mut connection) = held.or_else(|| connect::open(urls).ok()) else {
        return (None, Vec::new());
    };
    let mut depths = Vec::new();
    for (queue, short) in queues {
        // A passive declare that fails (a queue not declared yet) closes its channel.
        let Ok(channel) = connection.open_channel(None) else {
            return (None, depths);
        };
        if let Some(messages) = channel
            .queue_declare_passive(queue.as_str())
            .ok()
            .and_then(|declared| declared.declared_message_count())
        {
            depths.push((short.clone(), messages));
            let _ = channel.close();
        }
    }
    (Some(connection), depths)
}

/// Mounts `GET /metrics`.
pub fn routes(config: &mut actix_web::web::ServiceConfig) {
    config.route("/metrics", actix_web::web::get().to(exposition));
}

async fn exposition() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type(CONTENT_TYPE)
        .body(encode())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_described_and_labels_take_their_bounded_values() {
        get().ingested(IngestStatus::Duplicate, Duration::from_millis(3));
        get().attempted(
            SubscriptionId(uuid::Uuid::nil()),
            AttemptOutcome::Refused,
            Duration::ZERO,
        );
        set_event_counts(&[(EventStatus::Retrying, 7)]);
        // A family shows once it has a member; the gauge reader makes these.
        get()
            .queue_messages
            .get_or_create(&QueueLabels {
                queue: "deliver".into(),
            })
            .set(3);
        let text = encode();
        for family in [
            "ingest_requests",
            "ingest_duration_seconds",
            "ingest_batch_events",
            "delivery_attempts",
            "delivery_duration_seconds",
            "end_to_end_seconds",
            "events",
            "queue_messages",
            "breaker_trips",
            "reaper_republished",
            "publish_confirm_seconds",
            "live_connections",
        ] {
            assert!(
                text.contains(&format!("# HELP spenza_{family} ")),
                "{family}:\n{text}"
            );
        }
        assert!(
            text.contains(r#"spenza_ingest_requests_total{status="200"} "#),
            "{text}"
        );
        assert!(
            text.contains(r#"spenza_delivery_attempts_total{outcome="refused"} "#),
            "{text}"
        );
        assert!(
            text.contains(r#"spenza_events{status="retrying"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"spenza_events{status="pending"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"spenza_queue_messages{queue="deliver"} 3"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counts_by_subscription_are_made_only_when_the_operator_asks() {
        let subscription = SubscriptionId(uuid::Uuid::now_v7());
        let count = |metrics: &Metrics| {
            metrics.stored(subscription);
            metrics.attempted(subscription, AttemptOutcome::Status5xx, Duration::ZERO);
            metrics.attempted(subscription, AttemptOutcome::Status5xx, Duration::ZERO);
            metrics.encode()
        };
        let text = count(&Metrics::new(true));
        assert!(
            text.contains(&format!(
                "spenza_subscription_events_ingested_total{{subscription=\"{subscription}\"}} 1"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "spenza_subscription_delivery_attempts_total{{subscription=\"{subscription}\",outcome=\"5xx\"}} 2"
            )),
            "{text}"
        );
        let text = count(&Metrics::new(false));
        assert!(!text.contains("subscription"), "{text}");
        assert!(
            text.contains(r#"spenza_delivery_attempts_total{outcome="5xx"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn an_answer_counts_by_the_class_of_its_status() {
        assert_eq!(AttemptOutcome::of_status(204), AttemptOutcome::Status2xx);
        assert_eq!(AttemptOutcome::of_status(308), AttemptOutcome::Status3xx);
        assert_eq!(AttemptOutcome::of_status(429), AttemptOutcome::Status4xx);
        assert_eq!(AttemptOutcome::of_status(503), AttemptOutcome::Status5xx);
    }
}
