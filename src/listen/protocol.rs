//! What the relay and `spenza listen` say to each other: JSON text frames on the WebSocket of
//! `GET /api/v1/listen`, each an object with a `type`.

use serde::{Deserialize, Serialize};

use crate::domain::{DeliveryId, EventId, SourceId, SubscriptionId};

/// The query of `GET /api/v1/listen`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ListenQuery {
    /// The source: its id or its name.
    pub source: String,
    /// The listen subscription's name.
    pub name: String,
    /// Its filter, as JSON; absent: every event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// Whether a failure is retried on the subscription's schedule.
    #[serde(default)]
    pub retry: bool,
}

/// From the relay to the CLI.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToCli {
    /// Sent once, first: what the session listens to.
    Ready {
        subscription_id: SubscriptionId,
        subscription_name: String,
        source_id: SourceId,
        source_name: String,
        /// The most events it sends before outcomes come back.
        in_flight: u16,
    },
    /// An event to forward.
    Event(Forward),
}

/// One delivery of an event, to make locally.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forward {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub method: String,
    /// The path the event arrived with after its ingest token (empty or starting with `/`),
    /// and its query (without `?`), to append to the local URL.
    pub path: String,
    pub query: String,
    /// The request's headers as stored (credentials stripped), then the relay's signature
    /// headers, which replace any of the same name.
    pub headers: Vec<(String, String)>,
    /// The body, in standard base64: the exact bytes that arrived.
    pub body: String,
    /// The longest the local request may take.
    pub timeout_ms: u64,
}

/// From the CLI to the relay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromCli {
    /// What came of forwarding a delivery.
    Outcome(Outcome),
}

/// What came of one local request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub delivery_id: DeliveryId,
    pub duration_ms: u32,
    /// The local server's status, when it answered.
    pub status: Option<u16>,
    /// What went wrong, when it did not answer with a 2xx.
    pub error: Option<String>,
    /// Whether it gave up waiting for an answer.
    #[serde(default)]
    pub timed_out: bool,
    /// The start of its answer.
    pub response_body: Option<String>,
}

/// The close code with which the relay ends a session for good (its subscription was deleted):
/// the CLI stops rather than reconnect.
pub const CLOSE_GONE: u16 = 4404;
