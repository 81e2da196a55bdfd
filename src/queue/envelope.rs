//! What travels on the queue: a reference to the event, never its payload.

use serde::{Deserialize, Serialize};

use crate::domain::{DeliveryId, EventId, SubscriptionId};

/// One delivery to make. The worker reads the body and the subscription from PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: EventId,
    /// Absent from messages published before deliveries existed: each of those events became
    /// one delivery with the event's own id (see [`Envelope::delivery`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<DeliveryId>,
    pub subscription_id: SubscriptionId,
    pub target_url: String,
    /// How many retries preceded this delivery (kept here: RabbitMQ 4 ignores client `x-death`).
    pub retry_count: u32,
    /// How many times this delivery was deferred while its subscription had its share under
    /// way: each wait is longer than the one before.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
    /// The id of the ingest request that brought the event, for the log lines about its
    /// deliveries (retries keep it); absent when the reaper or a replay published it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

impl Envelope {
    /// The delivery to make.
    pub fn delivery(&self) -> DeliveryId {
        self.delivery_id.unwrap_or(DeliveryId(self.event_id.0))
    }

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
    fn an_envelope_of_an_earlier_release_reads_as_never_deferred_and_without_a_request() {
        let event = EventId::new();
        let bytes = format!(
            r#"{{"event_id":"{event}","subscription_id":"{}","target_url":"https://example.com/","retry_count":0}}"#,
            uuid::Uuid::new_v4()
        );
        let envelope = Envelope::from_bytes(bytes.as_bytes()).unwrap();
        assert_eq!(envelope.deferrals, 0);
        assert_eq!(envelope.request_id, None);
        assert_eq!(
            envelope.delivery(),
            DeliveryId(event.0),
            "its event's one delivery kept the event's id"
        );
    }

    #[test]
    fn an_envelope_round_trips_through_its_bytes() {
        let envelope = Envelope {
            event_id: EventId::new(),
            delivery_id: Some(DeliveryId(uuid::Uuid::now_v7())),
            subscription_id: SubscriptionId(uuid::Uuid::new_v4()),
            target_url: "https://example.com/hook".into(),
            retry_count: 2,
            deferrals: 1,
            request_id: Some("req-1".into()),
        };
        assert_eq!(
            Envelope::from_bytes(&envelope.to_bytes()).unwrap(),
            envelope
        );
    }
}
