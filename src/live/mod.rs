//! Live updates for dashboard pages, on every replica. Whatever changes an event (ingest, a
//! delivery attempt, a replay) drops a [`Notice`] into this process's bus without waiting; the
//! bus publishes what gathered in each tick as one transient message on the `<prefix>.live`
//! fanout exchange, and every process hands what arrives on its own exclusive queue to its
//! WebSocket connections. The delivery path never waits for a browser, nor for the broker.

mod bus;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use bus::LiveThread;

use crate::domain::{EventId, SubscriptionId, UserId, WorkspaceId};

/// What the live bus carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notice {
    /// Something happened to an event.
    Event(EventNotice),
    /// A member was removed from a workspace, or given another role: their live pages there
    /// close at once (a page that reconnects does so with what the member may now see).
    Access {
        workspace: WorkspaceId,
        user: UserId,
    },
    /// A workspace's issues changed: one opened, reopened, was acknowledged or resolved. Its
    /// pages update their count of open issues.
    Issues { workspace: WorkspaceId },
}

/// Something happened to an event: it arrived, or its status or attempts changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventNotice {
    pub event: EventId,
    pub subscription: SubscriptionId,
    /// The subscription's workspace: only its members' pages hear of it.
    pub workspace: WorkspaceId,
    /// Whether the event is new (a row to add) rather than changed (a row to replace).
    pub new: bool,
}

/// Notices waiting to be published, at most: beyond that a burst drops notices (pages catch up
/// on their next change or load) rather than grow memory or slow the caller.
const OUTGOING: usize = 8192;
/// Batches a slow WebSocket connection may fall behind by before it skips ahead: a few seconds
/// of 100 ms ticks (a busy tick publishes a batch per 512 notices). The channel keeps this many batches in memory however fast its
/// readers are, so it is kept small.
const INCOMING: usize = 64;

/// This process's end of the live bus: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Live {
    outgoing: crossbeam_channel::Sender<Notice>,
    incoming: broadcast::Sender<Arc<Vec<Notice>>>,
}

impl Live {
    /// Reports a change; dropped when the bus is this far behind.
    pub fn notify(&self, notice: Notice) {
        let _ = self.outgoing.try_send(notice);
    }

    /// Every batch of notices any replica publishes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Vec<Notice>>> {
        self.incoming.subscribe()
    }
}
