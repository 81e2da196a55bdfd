//! Exchange and queue names under the configured prefix, declared idempotently.

use amiquip::{
    AmqpValue, Channel, ExchangeDeclareOptions, ExchangeType, FieldTable, QueueDeclareOptions,
};

use crate::config::QueueKind;

/// The names this deployment uses on the broker.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    kind: QueueKind,
}

impl Topology {
    /// Names under `prefix` (so deployments and tests can share one broker).
    pub fn new(prefix: &str, kind: QueueKind) -> Self {
        Topology {
            prefix: prefix.to_owned(),
            kind,
        }
    }

    /// The direct exchange deliveries are published to.
    pub fn deliver_exchange(&self) -> String {
        format!("{}.deliver", self.prefix)
    }

    /// The queue delivery workers consume.
    pub fn deliver_queue(&self) -> String {
        format!("{}.deliver", self.prefix)
    }

    /// The routing key binding the deliver queue to its exchange.
    pub fn deliver_routing_key(&self) -> &'static str {
        "deliver"
    }

    /// Declares everything; safe to repeat on every start and every reconnect.
    pub fn declare(&self, channel: &Channel) -> amiquip::Result<()> {
        channel.exchange_declare(
            ExchangeType::Direct,
            self.deliver_exchange(),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
        )?;
        let mut arguments = FieldTable::new();
        let kind = match self.kind {
            QueueKind::Quorum => "quorum",
            QueueKind::Classic => "classic",
        };
        arguments.insert("x-queue-type".into(), AmqpValue::LongString(kind.into()));
        channel.queue_declare(
            self.deliver_queue(),
            QueueDeclareOptions {
                durable: true,
                arguments,
                ..QueueDeclareOptions::default()
            },
        )?;
        channel.queue_bind(
            self.deliver_queue(),
            self.deliver_exchange(),
            self.deliver_routing_key(),
            FieldTable::new(),
        )
    }

    /// Deletes everything this topology declares (tests use it to leave the broker clean).
    pub fn delete(&self, channel: &Channel) -> amiquip::Result<()> {
        channel.queue_delete(self.deliver_queue(), amiquip::QueueDeleteOptions::default())?;
        channel.exchange_delete(self.deliver_exchange(), false)
    }
}
