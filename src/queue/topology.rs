//! Exchange and queue names under the configured prefix, declared idempotently.

use amiquip::{
    AmqpValue, Channel, ExchangeDeclareOptions, ExchangeType, FieldTable, QueueDeclareOptions,
};

use std::time::Duration;

use crate::config::QueueKind;
use crate::domain::compact_delay;

/// How long a deferred delivery waits before it is back in the deliver queue.
pub const DEFER_DELAY: Duration = Duration::from_secs(1);

/// The names this deployment uses on the broker.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    kind: QueueKind,
    retry_delays: Vec<Duration>,
}

impl Topology {
    /// Names under `prefix` (so deployments and tests can share one broker), with one wait queue
    /// per retry delay.
    pub fn new(prefix: &str, kind: QueueKind, retry_delays: Vec<Duration>) -> Self {
        Topology {
            prefix: prefix.to_owned(),
            kind,
            retry_delays,
        }
    }

    /// The wait queue for a retry delay. The delay is in the name, so a changed schedule
    /// declares new queues instead of clashing with the arguments of old ones (which keep
    /// draining into the deliver exchange).
    pub fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.prefix, compact_delay(delay))
    }

    /// The wait queue a delivery waits in while its subscription has its share of deliveries
    /// in flight: [`DEFER_DELAY`] later, it is back in the deliver queue.
    pub fn defer_queue(&self) -> String {
        format!("{}.defer", self.prefix)
    }

    /// The direct exchange deliveries are published to.
    pub fn deliver_exchange(&self) -> String {
        format!("{}.deliver", self.prefix)
    }

    /// The fanout exchange live dashboard updates travel on between replicas.
    pub fn live_exchange(&self) -> String {
        format!("{}.live", self.prefix)
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
        )?;
        let waits = self
            .retry_delays
            .iter()
            .map(|delay| (self.retry_queue(*delay), *delay))
            .chain([(self.defer_queue(), DEFER_DELAY)]);
        for (queue, delay) in waits {
            // Classic queues: a wait queue only holds messages until their TTL dead-letters them
            // back to the deliver exchange. Should one be lost, the event is still due in
            // PostgreSQL and the reaper publishes it again.
            let mut arguments = FieldTable::new();
            arguments.insert(
                "x-queue-type".into(),
                AmqpValue::LongString("classic".into()),
            );
            arguments.insert(
                "x-message-ttl".into(),
                AmqpValue::LongLongInt(delay.as_millis() as i64),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AmqpValue::LongString(self.deliver_exchange()),
            );
            arguments.insert(
                "x-dead-letter-routing-key".into(),
                AmqpValue::LongString(self.deliver_routing_key().into()),
            );
            channel.queue_declare(
                queue,
                QueueDeclareOptions {
                    durable: true,
                    arguments,
                    ..QueueDeclareOptions::default()
                },
            )?;
        }
        Ok(())
    }

    /// Deletes everything this topology declares, and the live exchange (tests use it to leave
    /// the broker clean).
    pub fn delete(&self, channel: &Channel) -> amiquip::Result<()> {
        for delay in &self.retry_delays {
            channel.queue_delete(
                self.retry_queue(*delay),
                amiquip::QueueDeleteOptions::default(),
            )?;
        }
        channel.queue_delete(self.defer_queue(), amiquip::QueueDeleteOptions::default())?;
        channel.queue_delete(self.deliver_queue(), amiquip::QueueDeleteOptions::default())?;
        channel.exchange_delete(self.live_exchange(), false)?;
        channel.exchange_delete(self.deliver_exchange(), false)
    }
}
