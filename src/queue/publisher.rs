//! The publisher: one thread owns the AMQP connection and a channel in confirm mode. Publishes are
//! pipelined: up to `window` messages await their confirms at once, and each caller's future
//! resolves when the broker acks, nacks or returns its message.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use amiquip::{AmqpProperties, Channel, Confirm, Connection, Publish, Return};
use crossbeam_channel::{Receiver, Sender, select};
use slog::{Logger, info, warn};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Backoff, Envelope, Topology};
use crate::domain::{DeliveryId, SubscriptionId};
use crate::metrics;

/// Why a message may not have reached its queue. In every case the event stays in PostgreSQL
/// and the reaper publishes it again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker is not connected right now.
    #[error("the broker is unreachable")]
    Unavailable,
    /// The broker refused the message.
    #[error("the broker nacked the message")]
    Nacked,
    /// No queue is bound for the message (the topology is missing).
    #[error("the broker returned the message as unroutable")]
    Unroutable,
    /// The broker did not confirm in time.
    #[error("the broker did not confirm the message in time")]
    Unconfirmed,
    /// The publisher has shut down.
    #[error("the publisher is closed")]
    Closed,
}

/// Longest wait for a confirm before a publish counts as failed.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a message is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Straight to the delivery queue.
    Deliver,
    /// To wait about this long (see [`super::Topology::wait_queue_for`]) in a wait queue, which
    /// dead-letters it to the delivery queue when its delay has passed.
    Wait(Duration),
    /// To a defer queue, after this many deferrals of the same delivery: back in the delivery
    /// queue a moment later (longer for each deferral), no retry used.
    Defer(u32),
    /// To a `cli` subscription's queue, for its `spenza listen` sessions (declared on first
    /// use: it may not be there yet, or may have been lost with a node).
    Listen(SubscriptionId),
}

struct Request {
    route: Route,
    delivery: DeliveryId,
    body: Vec<u8>,
    /// Where the outcome goes; `None` for a detached publish.
    reply: Option<oneshot::Sender<Result<(), PublishError>>>,
    /// Held until the confirm arrives: this is what bounds the confirm window.
    _permit: OwnedSemaphorePermit,
}

impl Request {
    /// Tells the publisher's caller how it went; a detached delivery that failed goes to
    /// `missed` instead.
    fn answer(self, result: Result<(), PublishError>, missed: &Missed) {
        match self.reply {
            Some(reply) => {
                let _ = reply.send(result);
            }
            // A returned message would only be returned again: the grace sweep takes it.
            None if result
                .as_ref()
                .is_err_and(|error| *error != PublishError::Unroutable)
                && self.route == Route::Deliver =>
            {
                missed.remember(self.delivery);
            }
            None => {}
        }
    }
}

/// Deliveries whose detached publish failed (the broker was away): once it is back, the
/// reaper publishes them at once instead of after its grace period. Bounded: past
/// [`Missed::MAX`], the rest wait for the grace period.
#[derive(Default)]
struct Missed(Mutex<Vec<DeliveryId>>);

impl Missed {
    const MAX: usize = 10_000;

    fn remember(&self, delivery: DeliveryId) {
        let mut missed = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if missed.len() < Self::MAX {
            missed.push(delivery);
        }
    }

    fn take(&self) -> Vec<DeliveryId> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

struct Pending {
    request: Request,
    returned: bool,
    /// When it was published, for the confirm's latency.
    published_at: Instant,
}

/// A handle to the publisher thread; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    /// Requests go to the thread in batches: one hand-off for what one caller publishes at once.
    requests: Sender<Vec<Request>>,
    window: Arc<Semaphore>,
    /// The window's size: the most messages one hand-off carries.
    window_size: usize,
    connected: Arc<AtomicBool>,
    missed: Arc<Missed>,
}

/// Owns the publisher thread; dropping `stop` asks it to finish.
pub struct PublisherThread {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts the publisher thread, which connects (and reconnects) by itself.
    pub fn start(
        urls: &[String],
        topology: Topology,
        window: usize,
        log: Logger,
    ) -> std::io::Result<(Publisher, PublisherThread)> {
        let (requests_tx, requests_rx) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let connected = Arc::new(AtomicBool::new(false));
        let missed = Arc::<Missed>::default();
        let worker = Worker {
            missed: missed.clone(),
            urls: urls.to_vec(),
            topology,
            requests: requests_rx,
            stop: stop_rx,
            connected: connected.clone(),
            log,
        };
        let thread = std::thread::Builder::new()
            .name("spenza-publisher".into())
            .spawn(move || worker.run())?;
        let publisher = Publisher {
            requests: requests_tx,
            window: Arc::new(Semaphore::new(window.max(1))),
            window_size: window.max(1),
            connected,
            missed,
        };
        Ok((
            publisher,
            PublisherThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
        ))
    }

    /// Publishes one delivery; resolves once the broker has confirmed it, or fails after
    /// [`CONFIRM_TIMEOUT`] (a broker under a resource alarm keeps the connection but confirms
    /// nothing, and a delivery must not hold its slot for that long).
    pub async fn publish(&self, envelope: &Envelope, route: Route) -> Result<(), PublishError> {
        let (reply, confirmed) = oneshot::channel();
        let mut reply = Some(reply);
        self.submit(std::slice::from_ref(envelope), route, || reply.take())
            .await?;
        match tokio::time::timeout(CONFIRM_TIMEOUT, confirmed).await {
            Ok(answer) => answer.map_err(|_| PublishError::Closed)?,
            Err(_) => Err(PublishError::Unconfirmed),
        }
    }

    /// Publishes `envelopes` without waiting for their confirms, handed to the publisher
    /// thread together (one hand-off per quarter of the window, so that a batch never waits for
    /// the whole window to be free, nor holds up other publishes that long): for events already
    /// due in PostgreSQL, a batch of ingests, retries or replays. Waits only for room in the
    /// window.
    /// On an error, what was not handed over is not published; deliveries among it are
    /// remembered as missed, for the reaper to publish once the broker is back.
    pub async fn publish_all_detached(
        &self,
        envelopes: &[Envelope],
        route: Route,
    ) -> Result<(), PublishError> {
        let hand_off = (self.window_size / 4).max(1);
        for (n, chunk) in envelopes.chunks(hand_off).enumerate() {
            if let Err(error) = self.submit(chunk, route, || None).await {
                if route == Route::Deliver {
                    for envelope in &envelopes[n * hand_off..] {
                        self.missed.remember(envelope.delivery());
                    }
                }
                return Err(error);
            }
        }
        Ok(())
    }

    async fn submit(
        &self,
        envelopes: &[Envelope],
        route: Route,
        mut reply: impl FnMut() -> Option<oneshot::Sender<Result<(), PublishError>>>,
    ) -> Result<(), PublishError> {
        if !self.is_connected() {
            return Err(PublishError::Unavailable);
        }
        let count = u32::try_from(envelopes.len()).map_err(|_| PublishError::Closed)?;
        let mut permits = self
            .window
            .clone()
            .acquire_many_owned(count)
            .await
            .map_err(|_| PublishError::Closed)?;
        let requests = envelopes
            .iter()
            .map(|envelope| Request {
                route,
                delivery: envelope.delivery(),
                body: envelope.to_bytes(),
                reply: reply(),
                _permit: permits.split(1).expect("one permit per envelope"),
            })
            .collect();
        self.requests
            .send(requests)
            .map_err(|_| PublishError::Closed)
    }

    /// Remembers a delivery that could not be published (the broker was away), for the reaper
    /// to publish again as soon as it is back.
    pub fn remember_missed(&self, delivery: DeliveryId) {
        self.missed.remember(delivery);
    }

    /// The deliveries whose detached publish failed since the last call, to publish again once
    /// the broker is back.
    pub fn take_missed(&self) -> Vec<DeliveryId> {
        self.missed.take()
    }

    /// Whether the thread holds a live connection to the broker.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl PublisherThread {
    /// Asks the thread to wait for outstanding confirms (bounded), close the connection and exit;
    /// returns once it has.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PublisherThread {
    fn drop(&mut self) {
        // Without an explicit stop (a test that panicked), let the thread wind down by itself.
        self.stop.take();
    }
}

/// How a connected session ended.
enum Ended {
    Stopped,
    Lost(anyhow::Error),
}

struct Worker {
    /// Deliveries whose detached publish failed, shared with the [`Publisher`].
    missed: Arc<Missed>,
    /// The broker's URLs, tried in turn at each (re)connection.
    urls: Vec<String>,
    topology: Topology,
    requests: Receiver<Vec<Request>>,
    stop: Receiver<()>,
    connected: Arc<AtomicBool>,
    log: Logger,
}

impl Worker {
    const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

    fn run(self) {
        let mut backoff = Backoff::new();
        loop {
            match Session::open(&self) {
                Ok(session) => {
                    backoff.reset();
                    self.connected.store(true, Ordering::Relaxed);
                    info!(self.log, "publisher connected to the broker");
                    let ended = session.serve(&self);
                    self.connected.store(false, Ordering::Relaxed);
                    match ended {
                        Ended::Stopped => return,
                        Ended::Lost(error) => {
                            warn!(self.log, "publisher lost the broker"; "error" => %error)
                        }
                    }
                }
                Err(error) => {
                    warn!(self.log, "publisher cannot reach the broker"; "error" => %error)
                }
            }
            if !self.refuse_until(Instant::now() + backoff.step()) {
                return;
            }
        }
    }

    /// While disconnected, answers every request at once; false when it is time to exit.
    fn refuse_until(&self, deadline: Instant) -> bool {
        loop {
            select! {
                recv(self.requests) -> requests => match requests {
                    Ok(requests) => {
                        for request in requests {
                            request.answer(Err(PublishError::Unavailable), &self.missed);
                        }
                    }
                    Err(_) => return false,
                },
                recv(self.stop) -> _ => return false,
                default(deadline.saturating_duration_since(Instant::now())) => return true,
            }
        }
    }
}

struct Session {
    log: Logger,
    /// The worker's: where failed detached deliveries are remembered.
    missed: Arc<Missed>,
    connection: Connection,
    channel: Channel,
    confirms: Receiver<Confirm>,
    returns: Receiver<Return>,
    /// The `cli` subscriptions' queues declared on this connection.
    listen_queues: HashSet<SubscriptionId>,
}

impl Session {
    fn open(worker: &Worker) -> anyhow::Result<Session> {
        let mut connection = super::connect::open(&worker.urls)?;
        let channel = connection.open_channel(None)?;
        worker.topology.declare(&channel)?;
        // Listeners first, then confirm mode: otherwise the first confirms could be missed.
        let confirms = channel.listen_for_publisher_confirms()?;
        let returns = channel.listen_for_returns()?;
        channel.enable_publisher_confirms()?;
        Ok(Session {
            log: worker.log.clone(),
            missed: worker.missed.clone(),
            connection,
            channel,
            confirms,
            returns,
            listen_queues: HashSet::new(),
        })
    }

    fn serve(mut self, worker: &Worker) -> Ended {
        let deliver_exchange = worker.topology.deliver_exchange();
        let mut pending = BTreeMap::new();
        let mut next_tag: u64 = 1;
        let ended = loop {
            select! {
                recv(worker.requests) -> requests => {
                    let Ok(requests) = requests else { break Ended::Stopped };
                    if let Err(error) = self.publish(worker, &deliver_exchange, requests, &mut pending, &mut next_tag) {
                        break Ended::Lost(error.into());
                    }
                }
                recv(self.confirms) -> confirm => {
                    let Ok(confirm) = confirm else { break Ended::Lost(anyhow::anyhow!("connection closed")) };
                    self.settle(&mut pending, confirm);
                }
                recv(self.returns) -> returned => {
                    let Ok(returned) = returned else { break Ended::Lost(anyhow::anyhow!("connection closed")) };
                    mark_returned(&mut pending, &returned);
                }
                recv(worker.stop) -> _ => break Ended::Stopped,
            }
        };
        if let Ended::Stopped = ended {
            self.drain(&mut pending);
            let _ = self.connection.close();
        }
        for (_, unsettled) in pending {
            unsettled
                .request
                .answer(Err(PublishError::Unavailable), &self.missed);
        }
        ended
    }

    /// Publishes a hand-off's messages, each awaiting its confirm in `pending`. On an error the
    /// message that failed and those after it are answered as not published.
    fn publish(
        &mut self,
        worker: &Worker,
        deliver_exchange: &str,
        requests: Vec<Request>,
        pending: &mut BTreeMap<u64, Pending>,
        next_tag: &mut u64,
    ) -> amiquip::Result<()> {
        let mut requests = requests.into_iter();
        while let Some(request) = requests.next() {
            let properties = AmqpProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(next_tag.to_string());
            // Wait queues have no consumers; they are reached through the default exchange,
            // by name.
            let (exchange, routing_key) = match request.route {
                Route::Deliver => (
                    deliver_exchange,
                    worker.topology.deliver_routing_key().to_owned(),
                ),
                Route::Wait(delay) => ("", worker.topology.wait_queue_for(delay)),
                Route::Defer(deferrals) => ("", worker.topology.defer_queue(deferrals)),
                Route::Listen(subscription) => ("", worker.topology.listen_queue(subscription)),
            };
            let publish = Publish {
                body: &request.body,
                routing_key,
                mandatory: true,
                immediate: false,
                properties,
            };
            let sent = match self.declare_for(worker, request.route) {
                Ok(()) => self.channel.basic_publish(exchange, publish),
                Err(error) => Err(error),
            };
            if let Err(error) = sent {
                request.answer(Err(PublishError::Unavailable), &self.missed);
                for unsent in requests {
                    unsent.answer(Err(PublishError::Unavailable), &self.missed);
                }
                return Err(error);
            }
            pending.insert(
                *next_tag,
                Pending {
                    request,
                    returned: false,
                    published_at: Instant::now(),
                },
            );
            *next_tag += 1;
        }
        Ok(())
    }

    /// Declares a `cli` subscription's queue before the first publish to it on this connection.
    fn declare_for(&mut self, worker: &Worker, route: Route) -> amiquip::Result<()> {
        if let Route::Listen(subscription) = route
            && !self.listen_queues.contains(&subscription)
        {
            worker
                .topology
                .declare_listen_queue(&self.channel, subscription)?;
            self.listen_queues.insert(subscription);
        }
        Ok(())
    }

    /// Settles what a confirm covers. A return always precedes the ack of the same message on
    /// the wire, so draining returns first tells returned messages apart.
    fn settle(&self, pending: &mut BTreeMap<u64, Pending>, confirm: Confirm) {
        for returned in self.returns.try_iter() {
            mark_returned(pending, &returned);
        }
        let (payload, acked) = match confirm {
            Confirm::Ack(payload) => (payload, true),
            Confirm::Nack(payload) => (payload, false),
        };
        let settled = if payload.multiple {
            let later = pending.split_off(&(payload.delivery_tag + 1));
            std::mem::replace(pending, later)
        } else {
            pending
                .remove_entry(&payload.delivery_tag)
                .into_iter()
                .collect()
        };
        for (_, done) in settled {
            metrics::get()
                .publish_confirm
                .observe(done.published_at.elapsed().as_secs_f64());
            let result = match (acked, done.returned) {
                (false, _) => Err(PublishError::Nacked),
                (true, true) => Err(PublishError::Unroutable),
                (true, false) => Ok(()),
            };
            if let Err(error) = &result {
                warn!(self.log, "a publish was not accepted; the reaper will repeat it"; "error" => %error);
            }
            done.request.answer(result, &self.missed);
        }
    }

    /// On shutdown: waits, bounded, for the confirms of what was already published.
    fn drain(&self, pending: &mut BTreeMap<u64, Pending>) {
        let deadline = Instant::now() + Worker::DRAIN_TIMEOUT;
        while !pending.is_empty() {
            match self.confirms.recv_deadline(deadline) {
                Ok(confirm) => self.settle(pending, confirm),
                Err(_) => return,
            }
        }
    }
}

fn mark_returned(pending: &mut BTreeMap<u64, Pending>, returned: &Return) {
    let tag = returned
        .properties
        .message_id()
        .as_deref()
        .and_then(|id| id.parse::<u64>().ok());
    if let Some(entry) = tag.and_then(|tag| pending.get_mut(&tag)) {
        entry.returned = true;
    }
}
