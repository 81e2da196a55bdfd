//! Exchange and queue names under the configured prefix, declared idempotently.

use amiquip::{
    AmqpValue, Channel, ExchangeDeclareOptions, ExchangeType, FieldTable, QueueDeclareOptions,
};

use std::time::Duration;

use crate::config::QueueKind;
use crate::domain::compact_delay;

/// How long a deferred delivery waits before it is back in the deliver queue: a second the
/// first time, doubling each time it is deferred again, up to half a minute.
const DEFER_DELAYS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(16),
    Duration::from_secs(30),
];

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

    /// The wait queue for a retry delay. Its delay and its kind are in the name, so a changed
    /// schedule or queue kind declares new queues instead of clashing with the arguments of old
    /// ones (which keep draining into the deliver exchange).
    pub fn retry_queue(&self, delay: Duration) -> String {
        self.wait_queue("retry", delay)
    }

    /// The wait queue a delivery deferred `deferrals` times before waits in while its
    /// subscription has its share of attempts under way.
    pub fn defer_queue(&self, deferrals: u32) -> String {
        let last = DEFER_DELAYS.len() - 1;
        let delay = DEFER_DELAYS[usize::try_from(deferrals).map_or(last, |n| n.min(last))];
        self.wait_queue("defer", delay)
    }

    fn wait_queue(&self, purpose: &str, delay: Duration) -> String {
        format!(
            "{}.{purpose}.{}.{}",
            self.prefix,
            compact_delay(delay),
            self.kind_name()
        )
    }

    fn kind_name(&self) -> &'static str {
        match self.kind {
            QueueKind::Quorum => "quorum",
            QueueKind::Classic => "classic",
        }
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

    /// The wait queues, each with its delay: one per retry delay, then the defer queues.
    fn waits(&self) -> impl Iterator<Item = (String, Duration)> + '_ {
        self.retry_delays
            .iter()
            .map(|delay| (self.retry_queue(*delay), *delay))
            .chain(
                (0u32..)
                    .zip(DEFER_DELAYS)
                    .map(|(deferrals, delay)| (self.defer_queue(deferrals), delay)),
            )
    }

    /// Every queue of this deployment, the deliver queue first, each with its name and its
    /// name without the prefix (`deliver`, `retry.30s.quorum`, `defer.1s.quorum`).
    pub fn queues(&self) -> Vec<(String, String)> {
        std::iter::once(self.deliver_queue())
            .chain(self.waits().map(|(queue, _)| queue))
            .map(|queue| {
                let short = queue[self.prefix.len() + 1..].to_owned();
                (queue, short)
            })
            .collect()
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
        let kind = || AmqpValue::LongString(self.kind_name().into());
        let mut arguments = FieldTable::new();
        arguments.insert("x-queue-type".into(), kind());
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
        for (queue, delay) in self.waits() {
            // A wait queue only holds messages until their TTL dead-letters them back to the
            // deliver exchange. Quorum wait queues are replicated like the deliver queue, and
            // dead-letter at least once: an expired message leaves only when the deliver queue
            // has confirmed it, so a node stopping on the way loses no retry. (Should a classic
            // one's node be lost, its events are still due in PostgreSQL and the reaper
            // publishes them again.)
            let mut arguments = FieldTable::new();
            arguments.insert("x-queue-type".into(), kind());
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
            if self.kind == QueueKind::Quorum {
                // At-least-once dead-lettering needs publishes refused, not heads dropped, at a
                // length limit (these queues have none).
                arguments.insert(
                    "x-dead-letter-strategy".into(),
                    AmqpValue::LongString("at-least-once".into()),
                );
                arguments.insert(
                    "x-overflow".into(),
                    AmqpValue::LongString("reject-publish".into()),
                );
            }
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
        for deferrals in (0u32..).take(DEFER_DELAYS.len()) {
            channel.queue_delete(
                self.defer_queue(deferrals),
                amiquip::QueueDeleteOptions::default(),
            )?;
        }
        channel.queue_delete(self.deliver_queue(), amiquip::QueueDeleteOptions::default())?;
        channel.exchange_delete(self.live_exchange(), false)?;
        channel.exchange_delete(self.deliver_exchange(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_deferred_again_waits_longer_up_to_half_a_minute() {
        let topology = Topology::new("p", QueueKind::Quorum, Vec::new());
        assert_eq!(topology.defer_queue(0), "p.defer.1s.quorum");
        assert_eq!(topology.defer_queue(1), "p.defer.2s.quorum");
        assert_eq!(topology.defer_queue(4), "p.defer.16s.quorum");
        assert_eq!(topology.defer_queue(5), "p.defer.30s.quorum");
        assert_eq!(topology.defer_queue(u32::MAX), "p.defer.30s.quorum");
    }

    #[test]
    fn a_wait_queue_is_named_after_its_delay_and_its_kind() {
        let delays = vec![Duration::from_secs(30), Duration::from_secs(300)];
        let quorum = Topology::new("p", QueueKind::Quorum, delays.clone());
        let classic = Topology::new("p", QueueKind::Classic, delays);
        assert_eq!(
            quorum.retry_queue(Duration::from_secs(30)),
            "p.retry.30s.quorum"
        );
        assert_eq!(
            classic.retry_queue(Duration::from_secs(300)),
            "p.retry.5m.classic"
        );
        let names: Vec<_> = quorum
            .queues()
            .into_iter()
            .map(|(_, short)| short)
            .collect();
        assert_eq!(
            names[..3],
            ["deliver", "retry.30s.quorum", "retry.5m.quorum"]
        );
    }
}
