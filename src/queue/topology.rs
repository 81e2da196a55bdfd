//! Exchange and queue names under the configured prefix, declared idempotently.

use amiquip::{
    AmqpValue, Channel, ExchangeDeclareOptions, ExchangeType, FieldTable, QueueDeclareOptions,
};

use std::time::Duration;

use anyhow::Context;

use crate::config::QueueKind;
use crate::domain::{SubscriptionId, compact_delay};

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

/// How long a `cli` subscription's queue is kept unused.
const LISTEN_QUEUE_EXPIRES: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// draining into the deliver exchange); so is the kind, for quorum queues (see
    /// [`Topology::wait_queue`]).
    pub fn retry_queue(&self, delay: Duration) -> String {
        self.wait_queue("retry", delay)
    }

    /// The wait queue for a delivery that is to wait `delay`: the retry queue of that delay
    /// when the process's schedule has one, else the longest wait queue no longer than the
    /// delay (the shortest when all are longer). A delivery back before it is due waits again
    /// for what is left (a subscription's own schedule, a rate limit), so any wait is kept to
    /// within the shortest queue's delay, in a few hops at most.
    pub fn wait_queue_for(&self, delay: Duration) -> String {
        if self.retry_delays.contains(&delay) {
            return self.retry_queue(delay);
        }
        let waits: Vec<(String, Duration)> = self.waits().collect();
        let within = waits
            .iter()
            .filter(|(_, wait)| *wait <= delay)
            .max_by_key(|(_, wait)| *wait);
        within
            .or_else(|| waits.iter().min_by_key(|(_, wait)| *wait))
            .map(|(queue, _)| queue.clone())
            .unwrap_or_else(|| self.defer_queue(0))
    }

    /// The wait queue a delivery deferred `deferrals` times before waits in while its
    /// subscription has its share of attempts under way.
    pub fn defer_queue(&self, deferrals: u32) -> String {
        let last = DEFER_DELAYS.len() - 1;
        let delay = DEFER_DELAYS[usize::try_from(deferrals).map_or(last, |n| n.min(last))];
        self.wait_queue("defer", delay)
    }

    /// `<prefix>.<purpose>.<delay>`, and `.quorum` after it for a quorum queue: a quorum
    /// queue cannot take the name of the classic one it replaces (wait queues were classic
    /// until quorum queues could expire messages), and classic ones keep their names.
    fn wait_queue(&self, purpose: &str, delay: Duration) -> String {
        let name = format!("{}.{purpose}.{}", self.prefix, compact_delay(delay));
        match self.kind {
            QueueKind::Quorum => format!("{name}.quorum"),
            QueueKind::Classic => name,
        }
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

    /// The queue a `cli` subscription's deliveries wait in for its `spenza listen` sessions,
    /// which consume it: durable, and of the deployment's kind (`.quorum` after the name of a
    /// quorum one, as for wait queues).
    pub fn listen_queue(&self, subscription: SubscriptionId) -> String {
        let name = format!("{}.listen.{subscription}", self.prefix);
        match self.kind {
            QueueKind::Quorum => format!("{name}.quorum"),
            QueueKind::Classic => name,
        }
    }

    /// Declares a `cli` subscription's queue; safe to repeat. A queue that has no consumer and
    /// is not declared again for [`LISTEN_QUEUE_EXPIRES`] is deleted by the broker (publishes do
    /// not count, but the publisher declares it again on each of its connections): that of a
    /// deleted subscription goes by itself, and should an idle subscription's go with messages
    /// in it, its deliveries are still due in PostgreSQL, and the reaper publishes them again
    /// once a session is connected.
    pub fn declare_listen_queue(
        &self,
        channel: &Channel,
        subscription: SubscriptionId,
    ) -> amiquip::Result<()> {
        let mut arguments = FieldTable::new();
        arguments.insert(
            "x-queue-type".into(),
            AmqpValue::LongString(self.kind_name().into()),
        );
        arguments.insert(
            "x-expires".into(),
            AmqpValue::LongLongInt(
                i64::try_from(LISTEN_QUEUE_EXPIRES.as_millis()).unwrap_or(i64::MAX),
            ),
        );
        channel
            .queue_declare(
                self.listen_queue(subscription),
                QueueDeclareOptions {
                    durable: true,
                    arguments,
                    ..QueueDeclareOptions::default()
                },
            )
            .map(drop)
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
    /// name without the prefix (`deliver`, `retry.30s.quorum`, `defer.1s.quorum`; without
    /// `.quorum` for classic queues).
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
    pub fn declare(&self, channel: &Channel) -> anyhow::Result<()> {
        channel.exchange_declare(
            ExchangeType::Direct,
            self.deliver_exchange(),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
        )?;
        let mut arguments = FieldTable::new();
        arguments.insert(
            "x-queue-type".into(),
            AmqpValue::LongString(self.kind_name().into()),
        );
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
            channel
                .queue_declare(
                    queue.as_str(),
                    QueueDeclareOptions {
                        durable: true,
                        arguments: self.wait_arguments(delay),
                        ..QueueDeclareOptions::default()
                    },
                )
                .with_context(|| match self.kind {
                    QueueKind::Quorum => format!(
                        "declaring the wait queue {queue} (a quorum queue with a message TTL: \
                         RabbitMQ 3.10 or later)"
                    ),
                    QueueKind::Classic => format!("declaring the wait queue {queue}"),
                })?;
        }
        Ok(())
    }

    /// A wait queue only holds messages until their TTL dead-letters them back to the deliver
    /// exchange. Quorum wait queues are replicated like the deliver queue, and dead-letter at
    /// least once: an expired message leaves only once the deliver queue has confirmed it, so a
    /// node stopping on the way loses no retry. (Should a classic one's node be lost, its
    /// events are still due in PostgreSQL and the reaper publishes them again.)
    fn wait_arguments(&self, delay: Duration) -> FieldTable {
        let mut arguments = FieldTable::new();
        let mut set = |name: &str, value| {
            arguments.insert(name.into(), value);
        };
        set(
            "x-queue-type",
            AmqpValue::LongString(self.kind_name().into()),
        );
        set(
            "x-message-ttl",
            AmqpValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
        );
        set(
            "x-dead-letter-exchange",
            AmqpValue::LongString(self.deliver_exchange()),
        );
        set(
            "x-dead-letter-routing-key",
            AmqpValue::LongString(self.deliver_routing_key().into()),
        );
        if self.kind == QueueKind::Quorum {
            // At-least-once dead-lettering needs publishes refused, not heads dropped, at a
            // length limit (these queues have none).
            set(
                "x-dead-letter-strategy",
                AmqpValue::LongString("at-least-once".into()),
            );
            set("x-overflow", AmqpValue::LongString("reject-publish".into()));
        }
        arguments
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
    fn a_wait_takes_its_own_retry_queue_or_the_longest_queue_within_it() {
        let topology = Topology::new(
            "p",
            QueueKind::Classic,
            vec![Duration::from_secs(30), Duration::from_secs(300)],
        );
        let wait = |secs: f64| topology.wait_queue_for(Duration::from_secs_f64(secs));
        assert_eq!(wait(30.0), "p.retry.30s");
        assert_eq!(wait(300.0), "p.retry.5m");
        assert_eq!(wait(600.0), "p.retry.5m");
        assert_eq!(wait(60.0), "p.defer.30s");
        assert_eq!(wait(5.0), "p.defer.4s");
        assert_eq!(wait(1.0), "p.defer.1s");
        assert_eq!(wait(0.2), "p.defer.1s");
    }

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
    fn a_quorum_wait_queue_is_named_apart_from_the_classic_one_it_replaces() {
        let delays = vec![Duration::from_secs(30), Duration::from_secs(300)];
        let quorum = Topology::new("p", QueueKind::Quorum, delays.clone());
        let classic = Topology::new("p", QueueKind::Classic, delays);
        assert_eq!(
            quorum.retry_queue(Duration::from_secs(30)),
            "p.retry.30s.quorum"
        );
        assert_eq!(classic.retry_queue(Duration::from_secs(300)), "p.retry.5m");
        assert_eq!(classic.defer_queue(0), "p.defer.1s");
        let subscription = SubscriptionId(uuid::Uuid::nil());
        assert_eq!(
            quorum.listen_queue(subscription),
            format!("p.listen.{subscription}.quorum")
        );
        assert_eq!(
            classic.listen_queue(subscription),
            format!("p.listen.{subscription}")
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

    #[test]
    fn quorum_wait_queues_dead_letter_at_least_once_and_classic_ones_as_they_can() {
        let text = |kind| {
            let topology = Topology::new("p", kind, Vec::new());
            let arguments = topology.wait_arguments(Duration::from_secs(30));
            let mut pairs: Vec<_> = arguments
                .iter()
                .map(|(name, value)| format!("{}={value:?}", name.as_str()))
                .collect();
            pairs.sort();
            pairs.join(" ")
        };
        let quorum = text(QueueKind::Quorum);
        for expected in [
            r#"x-queue-type=LongString("quorum")"#,
            "x-message-ttl=LongLongInt(30000)",
            r#"x-dead-letter-exchange=LongString("p.deliver")"#,
            r#"x-dead-letter-routing-key=LongString("deliver")"#,
            r#"x-dead-letter-strategy=LongString("at-least-once")"#,
            r#"x-overflow=LongString("reject-publish")"#,
        ] {
            assert!(quorum.contains(expected), "{expected} in {quorum}");
        }
        let classic = text(QueueKind::Classic);
        assert!(
            classic.contains(r#"x-queue-type=LongString("classic")"#),
            "{classic}"
        );
        assert!(!classic.contains("x-dead-letter-strategy"), "{classic}");
    }
}
