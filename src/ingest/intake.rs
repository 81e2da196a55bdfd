//! Group commit at ingest: events that arrive while earlier ones are being committed are
//! written together, in one statement and one commit, and each request is answered once the
//! commit holding its event has returned. Each HTTP worker has its own intake, on its own
//! runtime and pool, so no event crosses a thread on its way to PostgreSQL.
//!
//! The window is the commit itself: what arrives while both of a worker's slots are committing
//! is the next batch (at most [`MAX_EVENTS`] events and about [`MAX_BYTES`]). At low rates an
//! event is written alone, at once; at a few thousand a second a batch holds a few dozen.

use std::collections::HashMap;
use std::rc::Rc;

use slog::Logger;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::batch::{self, Written};
use crate::db::models::event::{self, Accepted, NewEvent};
use crate::db::{Database, DbError};
use crate::domain::{EventId, RequestId};
use crate::live::{EventNotice, Live, Notice};
use crate::metrics;
use crate::queue::{Envelope, Publisher, Route};

/// Batches committing at once, per HTTP worker: two (one fills while the other commits), each
/// on a connection of the worker's intake pool.
pub(crate) const SLOTS: usize = 2;
/// The most events one statement writes.
const MAX_EVENTS: usize = 256;
/// About the most body bytes one statement writes: a bigger batch is written as several
/// statements, one after another (an event bigger than this alone is one statement).
const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Events waiting for a slot, per worker; more wait in their request, for room here.
const QUEUE: usize = 1024;

/// Stores events durably for one HTTP worker; cheap to clone.
#[derive(Clone)]
pub struct Intake {
    events: mpsc::Sender<Pending>,
}

/// Where a request waits for its event's outcome.
type Reply = oneshot::Sender<Result<Option<Accepted>, DbError>>;

/// A stored event's row, and the request that brought it.
type Stored = (Accepted, RequestId);

/// An event waiting to be written, the request that brought it, and where its outcome goes.
struct Pending {
    event: NewEvent,
    request: RequestId,
    reply: Reply,
}

impl Intake {
    /// Starts writing on the current thread's runtime (an actix worker's), through `db`, a pool
    /// of its own with `connections` connections (one batch commits on each at a time). Once
    /// stored, an event is announced to live pages and handed to the publisher, without making
    /// its request wait for the broker.
    pub fn start(
        db: Database,
        connections: usize,
        publisher: Publisher,
        live: Live,
        log: Logger,
    ) -> Intake {
        let (events, arriving) = mpsc::channel(QUEUE);
        let slots = connections.max(1);
        let writer = Rc::new(Writer {
            db,
            publisher,
            live,
            log,
        });
        tokio::task::spawn_local(batch::pump(
            arriving,
            slots,
            MAX_EVENTS,
            std::time::Duration::ZERO,
            move |batch, slot| {
                tokio::task::spawn_local(writer.clone().write(batch, slot));
            },
        ));
        Intake { events }
    }

    /// Stores `event`, which `request` brought, and answers once it is committed, with what the
    /// statement learnt of it; `Ok(None)` when no source owns its token.
    pub async fn store(
        &self,
        event: NewEvent,
        request: RequestId,
    ) -> Result<Option<Accepted>, DbError> {
        let (reply, answer) = oneshot::channel();
        self.events
            .send(Pending {
                event,
                request,
                reply,
            })
            .await
            .map_err(|_| DbError::Unavailable("the intake has stopped".into()))?;
        answer
            .await
            .map_err(|_| DbError::Unavailable("the intake stopped before answering".into()))?
    }
}

struct Writer {
    db: Database,
    publisher: Publisher,
    live: Live,
    log: Logger,
}

impl Writer {
    /// Writes a batch (as statements of at most [`MAX_BYTES`]), answers each request, frees the
    /// slot, then hands what was stored to live pages and to the broker.
    async fn write(self: Rc<Self>, batch: Vec<Pending>, slot: OwnedSemaphorePermit) {
        let mut stored = Vec::new();
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let mut bytes = 0;
            let statement: Vec<Pending> = std::iter::from_fn(|| {
                batch.next_if(|pending| {
                    let first = bytes == 0;
                    bytes += pending.event.body.len().max(1);
                    first || bytes <= MAX_BYTES
                })
            })
            .collect();
            self.write_statement(statement, &mut stored).await;
        }
        drop(slot);
        for (accepted, _) in &stored {
            for delivery in &accepted.deliveries {
                self.live.notify(Notice::Event(EventNotice {
                    event: accepted.id,
                    subscription: delivery.subscription_id,
                    workspace: accepted.workspace_id,
                    new: true,
                }));
            }
        }
        let envelopes: Vec<Envelope> = stored
            .into_iter()
            .flat_map(|(accepted, request)| {
                let request = request.into_string();
                accepted
                    .deliveries
                    .into_iter()
                    .map(move |delivery| Envelope {
                        event_id: accepted.id,
                        delivery_id: Some(delivery.id),
                        subscription_id: delivery.subscription_id,
                        target_url: delivery.target_url,
                        retry_count: 0,
                        deferrals: 0,
                        request_id: Some(request.clone()),
                    })
            })
            .collect();
        // What is not published is due in PostgreSQL: the reaper publishes it.
        let _ = self
            .publisher
            .publish_all_detached(&envelopes, Route::Deliver)
            .await;
    }

    /// One statement and its commit (see [`batch::write_together_or_alone`] for when the events
    /// are written one by one instead).
    async fn write_statement(&self, statement: Vec<Pending>, stored: &mut Vec<Stored>) {
        let mut events = Vec::with_capacity(statement.len());
        let mut waiting = Vec::with_capacity(statement.len());
        for pending in statement {
            events.push(pending.event);
            waiting.push((pending.request, pending.reply));
        }
        metrics::get()
            .ingest_batch_events
            .observe(events.len() as f64);
        let db = &self.db;
        let written = batch::write_together_or_alone(&events, &self.log, "ingest", |events| {
            db.run(async move |conn| event::accept_all(conn, events).await)
        })
        .await;
        match written {
            Ok(Written::Together(accepted)) => answer(&events, waiting, accepted, stored),
            Ok(Written::Alone(outcomes)) => {
                for ((event, waiting), outcome) in events.iter().zip(waiting).zip(outcomes) {
                    match outcome {
                        Ok(accepted) => {
                            answer(std::slice::from_ref(event), vec![waiting], accepted, stored)
                        }
                        Err(error) => {
                            let _ = waiting.1.send(Err(error));
                        }
                    }
                }
            }
            Err(error) => {
                let reason = error.to_string();
                let mut replies = waiting.into_iter().map(|(_, reply)| reply);
                if let Some(first) = replies.next() {
                    let _ = first.send(Err(error));
                }
                for reply in replies {
                    let _ = reply.send(Err(DbError::Unavailable(reason.clone())));
                }
            }
        }
    }
}

/// Answers each request with its event's row (none: its token is unknown), and keeps the rows
/// of the events stored, with the requests that brought them.
fn answer(
    events: &[NewEvent],
    waiting: Vec<(RequestId, Reply)>,
    accepted: Vec<Accepted>,
    stored: &mut Vec<Stored>,
) {
    let mut accepted: HashMap<EventId, Accepted> =
        accepted.into_iter().map(|row| (row.id, row)).collect();
    for (event, (request, reply)) in events.iter().zip(waiting) {
        let row = accepted.remove(&event.id);
        if let Some(row) = row.as_ref().filter(|row| row.stored.is_some()) {
            stored.push((row.clone(), request));
        }
        let _ = reply.send(Ok(row));
    }
}
