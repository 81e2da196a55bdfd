//! RabbitMQ: the envelope on the wire, the topology, and the threads that own amiquip's blocking
//! connections (bridged to tokio with channels).

pub(crate) mod connect;
mod consumer;
mod envelope;
mod publisher;
mod topology;

pub use consumer::{Acker, Consumed, Consumer, ConsumerStatus, Job};
pub use envelope::Envelope;
pub use publisher::{PublishError, Publisher, PublisherThread, Route};
pub use topology::Topology;

use std::time::Duration;

/// How long a broker thread waits before reconnecting, growing from `MIN` to `MAX`.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Backoff { next: Self::MIN }
    }

    /// The wait before the next try; each call doubles the one after.
    pub(crate) fn step(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }

    pub(crate) fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new();
        assert_eq!(backoff.step(), Duration::from_millis(100));
        assert_eq!(backoff.step(), Duration::from_millis(200));
        for _ in 0..10 {
            backoff.step();
        }
        assert_eq!(backoff.step(), Duration::from_secs(5));
        backoff.reset();
        assert_eq!(backoff.step(), Duration::from_millis(100));
    }
}
