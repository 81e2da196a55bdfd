//! What every HTTP handler shares: the state each actix worker holds.

use std::sync::Arc;

use slog::Logger;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::auth::SessionPolicy;
use crate::config::SignupPolicy;
use crate::db::Database;
use crate::delivery::TargetPolicy;
use crate::ingest::Intake;
use crate::issues::notify::Messenger;
use crate::listen::ListenConfig;
use crate::live::Live;
use crate::mail::Mailer;
use crate::queue::{ConsumerStatus, Publisher};
use crate::retention::RetentionPolicy;
use crate::service::{Actor, Permission};

/// What HTTP handlers share.
pub struct AppState {
    pub db: Database,
    /// Stores ingested events, in batches, on this worker's connections.
    pub intake: Intake,
    pub publisher: Publisher,
    /// This process's consumer, when it delivers.
    pub consumer: Option<ConsumerStatus>,
    pub public_base: String,
    /// The longest a delivery attempt takes.
    pub delivery_timeout: std::time::Duration,
    /// How long a rotated-out signing secret keeps signing.
    pub secret_rotation_overlap: std::time::Duration,
    /// Where deliveries may go; subscriptions to refused IP literals are refused up front.
    pub target_policy: Arc<TargetPolicy>,
    /// Live updates for dashboard pages, on every replica.
    pub live: Live,
    /// Wakes this process's reaper: a re-enabled subscription's held events go out at once.
    pub reaper: Arc<tokio::sync::Notify>,
    /// Cancelled when the process stops: long-lived connections close on it.
    pub shutdown: CancellationToken,
    /// Live renders this worker runs at once: open pages share the pool with ingest, and must
    /// never take all of it.
    pub live_renders: Semaphore,
    /// Who may sign up from the dashboard.
    pub signup: SignupPolicy,
    /// How long dashboard sessions last and how their cookie is set.
    pub sessions: SessionPolicy,
    /// Sends invitations, when an SMTP server is configured.
    pub mailer: Option<Arc<Mailer>>,
    /// Sends notifications' test messages.
    pub messenger: Arc<Messenger>,
    /// The least time between two messages about a recurring issue to one channel.
    pub notification_quiet: std::time::Duration,
    /// What `spenza listen` sessions share.
    pub listen: Arc<ListenConfig>,
    /// How long finished events are kept, which the pages and the API say.
    pub retention: RetentionPolicy,
    pub log: Logger,
}

impl AppState {
    /// The URL providers post to for a subscription with this token.
    pub fn ingest_url(&self, token: &str) -> String {
        format!("{}/ingest/{}", self.public_base, token)
    }

    /// The ingest URL, for someone whose role may see secrets: it lets anyone who has it send
    /// events, which a viewer may not.
    pub fn ingest_url_for(&self, token: &str, actor: &Actor) -> Option<String> {
        actor
            .may(Permission::Secrets)
            .then(|| self.ingest_url(token))
    }
}
