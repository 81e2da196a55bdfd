//! The consumer: one thread owns the AMQP connection deliveries arrive on, hands each one to
//! tokio as a `Job`, and acks it when the job's outcome comes back. The prefetch count bounds
//! how many jobs are in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::{Channel, Connection, ConsumerMessage, ConsumerOptions, Delivery};
use crossbeam_channel::{Receiver, Sender, select};
use slog::{Logger, info, warn};
use tokio::sync::mpsc;

use super::{Backoff, Envelope, Topology};
use crate::domain::SubscriptionId;

/// One delivery to make, and the means to settle it with the broker.
#[derive(Debug)]
pub struct Job {
    pub envelope: Envelope,
    pub acker: Acker,
}

/// Settles one message. Dropped without settling (its delivery task panicked, say), it puts
/// the message back in the queue: the prefetch slot is freed, and the message is delivered
/// again (where the claim of an event still leased drops it; the reaper takes the event once
/// the lease has run out).
#[derive(Debug)]
pub struct Acker {
    outcomes: Sender<Outcome>,
    session: u64,
    tag: u64,
    settled: bool,
}

#[derive(Debug)]
struct Outcome {
    session: u64,
    tag: u64,
    settle: Settle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    /// Dropped from the queue.
    Reject,
    /// Back in the queue, for another delivery.
    Requeue,
}

impl Acker {
    /// The outcome is recorded: remove the message from the queue.
    pub fn ack(mut self) {
        self.settle(Settle::Ack);
    }

    /// The outcome could not be recorded: drop the message; the event is still due in
    /// PostgreSQL and the reaper publishes it again.
    pub fn reject(mut self) {
        self.settle(Settle::Reject);
    }

    fn settle(&mut self, settle: Settle) {
        self.settled = true;
        let _ = self.outcomes.send(Outcome {
            session: self.session,
            tag: self.tag,
            settle,
        });
    }
}

impl Drop for Acker {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(Settle::Requeue);
        }
    }
}

/// Which queue a consumer takes its messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumed {
    /// The deliver queue, which every replica's delivery workers share.
    Deliver,
    /// A `cli` subscription's queue, for one `spenza listen` session. The consumer stops for
    /// good when the broker cancels it: the queue was deleted with its subscription.
    Listen(SubscriptionId),
}

/// Starts and stops the consumer thread.
pub struct Consumer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    connected: Arc<AtomicBool>,
}

/// Whether a consumer is taking deliveries: connected, its queue consumed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConsumerStatus(Arc<AtomicBool>);

impl ConsumerStatus {
    pub fn is_consuming(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

impl Consumer {
    /// Starts consuming `queue` with `prefetch` messages in flight at most; jobs arrive on the
    /// returned receiver.
    pub fn start(
        urls: &[String],
        topology: Topology,
        queue: Consumed,
        prefetch: u16,
        drain_timeout: Duration,
        log: Logger,
    ) -> std::io::Result<(Consumer, mpsc::Receiver<Job>)> {
        // Room for every unacked message and those of a session just lost; beyond that, the
        // consumer thread waits for the dispatcher, which takes jobs as fast as it claims them.
        let (jobs_tx, jobs_rx) = mpsc::channel(usize::from(prefetch.max(1)) * 2);
        let (outcomes_tx, outcomes_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let connected = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            connected: connected.clone(),
            urls: urls.to_vec(),
            topology,
            queue,
            prefetch: prefetch.max(1),
            drain_timeout,
            jobs: Some(jobs_tx),
            outcomes_tx,
            outcomes: outcomes_rx,
            stop: stop_rx,
            log,
        };
        let thread = std::thread::Builder::new()
            .name("spenza-consumer".into())
            .spawn(move || worker.run())?;
        Ok((
            Consumer {
                stop: Some(stop_tx),
                thread: Some(thread),
                connected,
            },
            jobs_rx,
        ))
    }

    /// Whether it is taking deliveries, as readiness reports it.
    pub fn status(&self) -> ConsumerStatus {
        ConsumerStatus(self.connected.clone())
    }

    /// Stops taking new messages; once the thread has stopped handing out jobs, the job
    /// receiver ends. Does not wait.
    pub fn begin_stop(&mut self) {
        self.stop.take();
    }

    /// Waits (bounded by the drain timeout) for jobs in flight to be settled, then closes the
    /// connection: whatever is still unacked goes back to the queue.
    pub fn join(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.take();
    }
}

enum Ended {
    Stopped,
    Lost(anyhow::Error),
}

struct Worker {
    connected: Arc<AtomicBool>,
    /// The broker's URLs, tried in turn at each (re)connection.
    urls: Vec<String>,
    topology: Topology,
    queue: Consumed,
    prefetch: u16,
    drain_timeout: Duration,
    jobs: Option<mpsc::Sender<Job>>,
    outcomes_tx: Sender<Outcome>,
    outcomes: Receiver<Outcome>,
    stop: Receiver<()>,
    log: Logger,
}

impl Worker {
    fn run(mut self) {
        let mut backoff = Backoff::new();
        let mut session_id = 0;
        loop {
            session_id += 1;
            let ended = match self.open() {
                Ok((connection, channel)) => {
                    backoff.reset();
                    info!(self.log, "consumer connected to the broker"; "prefetch" => self.prefetch);
                    self.serve(session_id, connection, channel)
                }
                Err(error) => Ended::Lost(error),
            };
            match ended {
                Ended::Stopped => return,
                Ended::Lost(error) => {
                    warn!(self.log, "consumer lost the broker"; "error" => %error)
                }
            }
            let wait = backoff.step();
            if let Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
                self.stop.recv_timeout(wait)
            {
                return;
            }
        }
    }

    fn open(&self) -> anyhow::Result<(Connection, Channel)> {
        let mut connection = super::connect::open(&self.urls)?;
        let channel = connection.open_channel(None)?;
        match self.queue {
            Consumed::Deliver => self.topology.declare(&channel)?,
            Consumed::Listen(subscription) => {
                self.topology.declare_listen_queue(&channel, subscription)?;
            }
        }
        channel.qos(0, self.prefetch, false)?;
        Ok((connection, channel))
    }

    fn serve(&mut self, session: u64, connection: Connection, channel: Channel) -> Ended {
        let queue = match self.queue {
            Consumed::Deliver => self.topology.deliver_queue(),
            Consumed::Listen(subscription) => self.topology.listen_queue(subscription),
        };
        let consumer = match channel.basic_consume(queue, ConsumerOptions::default()) {
            Ok(consumer) => consumer,
            Err(error) => return Ended::Lost(error.into()),
        };
        let mut unacked: BTreeMap<u64, Delivery> = BTreeMap::new();
        self.connected.store(true, Ordering::Relaxed);
        let ended = loop {
            select! {
                recv(consumer.receiver()) -> message => match message {
                    Ok(ConsumerMessage::Delivery(delivery)) => {
                        if let Err(error) = self.hand_out(session, &channel, delivery, &mut unacked) {
                            break Ended::Lost(error.into());
                        }
                    }
                    Ok(ConsumerMessage::ServerCancelled) if self.queue != Consumed::Deliver => {
                        info!(self.log, "the listen queue was deleted; its consumer stops");
                        break Ended::Stopped;
                    }
                    Ok(other) => break Ended::Lost(anyhow::anyhow!("consumer ended: {other:?}")),
                    Err(_) => break Ended::Lost(anyhow::anyhow!("connection closed")),
                },
                recv(self.outcomes) -> outcome => {
                    let outcome = outcome.expect("the worker holds a sender");
                    let outcomes = std::iter::once(outcome).chain(self.outcomes.try_iter());
                    if let Err(error) = settle(session, &channel, outcomes, &mut unacked) {
                        break Ended::Lost(error.into());
                    }
                }
                recv(self.stop) -> _ => break Ended::Stopped,
            }
        };
        self.connected.store(false, Ordering::Relaxed);
        if let Ended::Stopped = ended {
            let _ = consumer.cancel();
            // No more jobs: the dispatcher sees its receiver end once it has taken what was sent.
            self.jobs.take();
            let deadline = Instant::now() + self.drain_timeout;
            while !unacked.is_empty() {
                match self.outcomes.recv_deadline(deadline) {
                    Ok(outcome) => {
                        if settle(session, &channel, [outcome], &mut unacked).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            if !unacked.is_empty() {
                warn!(self.log, "leaving deliveries unacked for redelivery"; "count" => unacked.len());
            }
            drop(consumer);
            let _ = connection.close();
        }
        ended
    }

    fn hand_out(
        &self,
        session: u64,
        channel: &Channel,
        delivery: Delivery,
        unacked: &mut BTreeMap<u64, Delivery>,
    ) -> amiquip::Result<()> {
        let envelope = match Envelope::from_bytes(&delivery.body) {
            Ok(envelope) => envelope,
            Err(error) => {
                warn!(self.log, "dropping a message that is not an envelope"; "error" => %error);
                return delivery.reject(channel, false);
            }
        };
        let tag = delivery.delivery_tag();
        let acker = Acker {
            outcomes: self.outcomes_tx.clone(),
            session,
            tag,
            settled: false,
        };
        match &self.jobs {
            Some(jobs) if jobs.blocking_send(Job { envelope, acker }).is_ok() => {
                unacked.insert(tag, delivery);
                Ok(())
            }
            // Nobody takes jobs any more: leave it for another consumer.
            _ => delivery.nack(channel, true),
        }
    }
}

/// Acks, rejects or requeues messages; outcomes from an earlier connection are stale (their
/// messages were requeued when it closed) and are ignored. Where the oldest unsettled messages
/// are all acked, one ack with `multiple` settles the run; other acks go one by one.
fn settle(
    session: u64,
    channel: &Channel,
    outcomes: impl IntoIterator<Item = Outcome>,
    unacked: &mut BTreeMap<u64, Delivery>,
) -> amiquip::Result<()> {
    let mut acked = BTreeSet::new();
    for outcome in outcomes {
        if outcome.session != session {
            continue;
        }
        match outcome.settle {
            Settle::Ack => {
                acked.insert(outcome.tag);
            }
            Settle::Reject | Settle::Requeue => {
                if let Some(delivery) = unacked.remove(&outcome.tag) {
                    delivery.reject(channel, outcome.settle == Settle::Requeue)?;
                }
            }
        }
    }
    let run = unacked
        .keys()
        .take_while(|tag| acked.contains(tag))
        .last()
        .copied();
    if let Some(last) = run {
        let later = unacked.split_off(&(last + 1));
        let run = std::mem::replace(unacked, later);
        acked = acked.split_off(&(last + 1));
        if let Some((_, delivery)) = run.into_iter().next_back() {
            delivery.ack_multiple(channel)?;
        }
    }
    for tag in acked {
        if let Some(delivery) = unacked.remove(&tag) {
            delivery.ack(channel)?;
        }
    }
    Ok(())
}
