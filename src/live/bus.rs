//! The thread that owns the live bus's AMQP connection: publishes each tick's notices as one
//! transient message (no confirms: a lost update costs a page a refresh, not an event), and
//! broadcasts what the fanout delivers to this process's exclusive queue.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::{
    AmqpProperties, Channel, ConsumerMessage, ConsumerOptions, ExchangeDeclareOptions,
    ExchangeType, FieldTable, Publish, QueueDeclareOptions,
};
use crossbeam_channel::{Receiver, Sender, select};
use slog::{Logger, info, warn};
use tokio::sync::broadcast;

use super::{INCOMING, Live, Notice, OUTGOING};
use crate::queue::{Backoff, Topology, connect};

/// How long notices gather before they are published together.
const TICK: Duration = Duration::from_millis(100);
/// The most notices one message carries.
const MAX_BATCH: usize = 512;

/// Starts and stops the live bus's thread.
pub struct LiveThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl LiveThread {
    /// Connects this process to the live exchange of `topology`'s prefix. A process that serves
    /// no pages (`listen` false) only publishes.
    pub fn start(
        urls: &[String],
        topology: Topology,
        listen: bool,
        log: Logger,
    ) -> std::io::Result<(Live, Self)> {
        let (outgoing_tx, outgoing_rx) = crossbeam_channel::bounded(OUTGOING);
        let (incoming, _) = broadcast::channel(INCOMING);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let worker = Worker {
            urls: urls.to_vec(),
            exchange: topology.live_exchange(),
            listen,
            outgoing: outgoing_rx,
            incoming: incoming.clone(),
            stop: stop_rx,
            log,
        };
        let thread = std::thread::Builder::new()
            .name("spenza-live".into())
            .spawn(move || worker.run())?;
        Ok((
            Live {
                outgoing: outgoing_tx,
                incoming,
            },
            LiveThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        ))
    }

    /// Stops the thread and closes its connection.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LiveThread {
    fn drop(&mut self) {
        self.stop.take();
    }
}

struct Worker {
    /// The broker's URLs, tried in turn at each (re)connection.
    urls: Vec<String>,
    exchange: String,
    listen: bool,
    outgoing: Receiver<Notice>,
    incoming: broadcast::Sender<Arc<Vec<Notice>>>,
    stop: Receiver<()>,
    log: Logger,
}

enum Ended {
    Stopped,
    Lost(anyhow::Error),
}

impl Worker {
    fn run(self) {
        let mut backoff = Backoff::new();
        loop {
            match self.serve(&mut backoff) {
                Ended::Stopped => return,
                Ended::Lost(error) => {
                    warn!(self.log, "live updates lost the broker"; "error" => %error)
                }
            }
            // Notices that arrive while the broker is away are dropped, not hoarded.
            while self.outgoing.try_recv().is_ok() {}
            if let Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
                self.stop.recv_timeout(backoff.step())
            {
                return;
            }
        }
    }

    fn serve(&self, backoff: &mut Backoff) -> Ended {
        let mut connection = match connect::open(&self.urls) {
            Ok(connection) => connection,
            Err(error) => return Ended::Lost(error),
        };
        backoff.reset();
        let ended = match connection.open_channel(None) {
            Ok(channel) => self.relay(&channel),
            Err(error) => Ended::Lost(error.into()),
        };
        let _ = connection.close();
        ended
    }

    fn relay(&self, channel: &Channel) -> Ended {
        let queue = match self.bind(channel) {
            Ok(queue) => queue,
            Err(error) => return Ended::Lost(error.into()),
        };
        let consumer = match queue.map(|queue| {
            queue.consume(ConsumerOptions {
                no_ack: true,
                exclusive: true,
                ..ConsumerOptions::default()
            })
        }) {
            Some(Ok(consumer)) => Some(consumer),
            Some(Err(error)) => return Ended::Lost(error.into()),
            None => None,
        };
        let incoming = consumer
            .as_ref()
            .map_or_else(crossbeam_channel::never, |consumer| {
                consumer.receiver().clone()
            });
        info!(self.log, "live updates connected to the broker");
        let mut batch: Vec<Notice> = Vec::new();
        // Waits for a first notice, then sleeps out the tick and takes what gathered meanwhile:
        // the thread wakes a few times a second, however many notices there are.
        let mut deadline: Option<Instant> = None;
        loop {
            let (outgoing, timeout) = match deadline {
                Some(deadline) => (crossbeam_channel::never(), crossbeam_channel::at(deadline)),
                None => (self.outgoing.clone(), crossbeam_channel::never()),
            };
            select! {
                recv(outgoing) -> notice => {
                    let Ok(notice) = notice else { return Ended::Stopped };
                    batch.push(notice);
                    deadline = Some(Instant::now() + TICK);
                }
                recv(timeout) -> _ => {
                    deadline = None;
                    batch.extend(self.outgoing.try_iter());
                    if let Err(error) = self.publish(channel, &mut batch) {
                        return Ended::Lost(error);
                    }
                }
                recv(incoming) -> message => match message {
                    Ok(ConsumerMessage::Delivery(delivery)) => {
                        if let Some(notices) = decode(&delivery.body) {
                            // No page open here: nobody subscribed, nothing to do.
                            let _ = self.incoming.send(Arc::new(notices));
                        }
                    }
                    Ok(other) => return Ended::Lost(anyhow::anyhow!("live consumer ended: {other:?}")),
                    Err(_) => return Ended::Lost(anyhow::anyhow!("connection closed")),
                },
                recv(self.stop) -> _ => return Ended::Stopped,
            }
        }
    }

    /// Declares the fanout exchange and, for a process that listens, its own queue, bound to it.
    fn bind<'a>(&self, channel: &'a Channel) -> amiquip::Result<Option<amiquip::Queue<'a>>> {
        let exchange = channel.exchange_declare(
            ExchangeType::Fanout,
            self.exchange.clone(),
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
        )?;
        if !self.listen {
            return Ok(None);
        }
        let queue = channel.queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
        )?;
        queue.bind(&exchange, "", FieldTable::default())?;
        Ok(Some(queue))
    }

    /// Publishes what gathered, in messages of at most [`MAX_BATCH`] notices.
    fn publish(&self, channel: &Channel, batch: &mut Vec<Notice>) -> anyhow::Result<()> {
        for notices in batch.chunks(MAX_BATCH) {
            let body = serde_json::to_vec(notices)?;
            channel.basic_publish(
                self.exchange.clone(),
                Publish::with_properties(&body, "", AmqpProperties::default()),
            )?;
        }
        batch.clear();
        Ok(())
    }
}

/// A batch as another replica published it. A notice this version does not know (one of a newer
/// version's, while a deploy rolls) is skipped rather than the whole batch; the usual batch is
/// read in one pass.
fn decode(body: &[u8]) -> Option<Vec<Notice>> {
    serde_json::from_slice::<Vec<Notice>>(body)
        .ok()
        .or_else(|| {
            let notices: Vec<serde_json::Value> = serde_json::from_slice(body).ok()?;
            Some(
                notices
                    .into_iter()
                    .filter_map(|notice| serde_json::from_value(notice).ok())
                    .collect(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{UserId, WorkspaceId};

    #[test]
    fn a_batch_keeps_the_notices_this_version_knows_and_skips_a_newer_ones() {
        let known = Notice::Access {
            workspace: WorkspaceId(uuid::Uuid::nil()),
            user: UserId(uuid::Uuid::nil()),
        };
        let batch = serde_json::json!([known, {"FromTheFuture": {"x": 1}}, known]);
        let body = serde_json::to_vec(&batch).unwrap();
        assert_eq!(decode(&body), Some(vec![known, known]));
        assert_eq!(decode(b"not json"), None);
    }
}
