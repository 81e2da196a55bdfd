//! What travels on the queue: a reference to the event, never its payload.

use serde::{Deserialize, Serialize};

use crate::domain::{EventId, SubscriptionId};

/// One delivery to make. The worker reads the body and the subscription from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub target_url: String,
    /// How many retries preceded this delivery (kept here: RabbitMQ 4 ignores client `x-death`).
    pub retry_count: u32,
}

impl Envelope {
    /// The JSON bytes published.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }

    /// Parses published bytes.
    pub fn from_bytes(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_round_trips_through_its_bytes() {
        let envelope = Envelope {
            event_id: EventId::new(),
            subscription_id: SubscriptionId(uuid::Uuid::new_v4()),
            target_url: "https://example.com/hook".into(),
            retry_count: 2,
        };
        assert_eq!(
            Envelope::from_bytes(&envelope.to_bytes()).unwrap(),
            envelope
        );
    }
}
