//! `GET /ws`: the WebSocket that keeps a page current. It answers only a signed-in browser on a
//! page of this relay (its `Origin` must be the relay's own: no cross-site WebSocket hijacking),
//! and sends, for its workspace's subscriptions only, new rows and replaced rows as htmx
//! out-of-band swaps, rendered by the same partials as the page. A connection renders at most
//! a few times a second; under a burst, new rows give way to a "N new events: show" marker; a
//! browser that stops reading only ever holds up its own connection, which it then closes. A
//! page's feed ends when its session does, and when the process stops (with 1012, so that
//! htmx-ext-ws reconnects to a replica that is up).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use slog::debug;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use super::csrf::own_origin;
use super::error::DashboardError;
use super::events::{EventDetail, EventLine, event_detail};
use super::session::Session;
use super::view::Layout;
use crate::auth;
use crate::db::models::delivery::EventPage;
use crate::domain::{EventId, EventStatus, SubscriptionId};
use crate::live::{EventNotice, Notice};
use crate::metrics;
use crate::service::{self, Permission};
use crate::state::AppState;

/// How often a connection renders what gathered: about three updates a second at most.
const RENDER_EVERY: Duration = Duration::from_millis(300);
/// New rows one render adds at most; beyond, the marker counts them.
const MAX_NEW_ROWS: usize = 20;
/// Rows one render replaces at most (a page shows 50).
const MAX_CHANGED_ROWS: usize = 50;
/// Rows added live that a connection keeps track of.
const MAX_ADDED: usize = 1000;
/// How often the server pings, and how long a silent browser is kept.
const PING_EVERY: Duration = Duration::from_secs(10);
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// The longest a send to a browser may wait: one that does not read is closed.
const SEND_LIMIT: Duration = Duration::from_secs(5);
/// The longest message a browser may send (it sends none but pongs and closes).
const MAX_FRAME: usize = 4 * 1024;

/// What the page is showing, from its `ws-connect` URL (with what the page's script adds).
#[derive(Debug, Default, Deserialize)]
pub struct Watched {
    /// One subscription's log, or all of the user's.
    subscription: Option<SubscriptionId>,
    /// A log filtered by status: new rows only of it.
    status: Option<EventStatus>,
    /// One event's page.
    event: Option<EventId>,
    /// `false` where new rows do not belong at the top (an older page, a time or payload
    /// filter): rows shown are still kept current.
    new: Option<bool>,
    /// The newest event the page has: older "new" notices are already on it. Set by the page's
    /// script on each (re)connection; new events since are sent at once.
    after: Option<EventId>,
    /// Events the page shows in flight (rows, or the event of an event's page) when it
    /// (re)connected, comma-separated: sent at once, as they are now.
    rows: Option<String>,
    /// The navigation's connection, which every page of a workspace has: it carries the count
    /// of open issues, and no events.
    nav: Option<bool>,
}

impl Watched {
    /// The page the "show" marker reloads.
    fn page(&self) -> String {
        let base = match self.subscription {
            Some(subscription) => format!("/subscriptions/{subscription}"),
            None => "/events".to_owned(),
        };
        match self.status {
            Some(status) => format!("{base}?status={status}"),
            None => base,
        }
    }

    fn is_nav(&self) -> bool {
        self.nav == Some(true)
    }

    /// Whether new events go on top of the page as rows.
    fn adds_rows(&self) -> bool {
        !self.is_nav()
            && self.event.is_none()
            && self.new != Some(false)
            && self
                .status
                .is_none_or(|status| status == EventStatus::Pending)
    }

    /// Whether a notice belongs on the page, and whether as a new row.
    fn shows(&self, notice: &EventNotice) -> Option<bool> {
        if self.event.is_some_and(|event| event != notice.event)
            || self
                .subscription
                .is_some_and(|subscription| subscription != notice.subscription)
        {
            return None;
        }
        if !notice.new {
            return Some(false);
        }
        (self.adds_rows() && self.after.is_none_or(|after| notice.event > after)).then_some(true)
    }
}

#[derive(Template)]
#[template(path = "partials/live_update.html")]
struct LiveUpdate<'a> {
    layout: &'a Layout,
    across: bool,
    selectable: bool,
    new_rows: Vec<EventLine>,
    changed_rows: Vec<EventLine>,
    held_back: usize,
    /// Updates were skipped: the marker asks for a reload.
    lagged: bool,
    /// The count of open issues changed: it is sent, as `issue_count`.
    issues_changed: bool,
    issue_count: i64,
    page: &'a str,
    detail: Option<EventDetail>,
}

/// `GET /ws`
pub async fn connect(
    request: HttpRequest,
    body: web::Payload,
    session: Session,
    state: web::Data<AppState>,
    watched: web::Query<Watched>,
) -> Result<HttpResponse, DashboardError> {
    if own_origin(&request) != Some(true) {
        return Err(DashboardError::Forbidden);
    }
    let (response, ws, stream) = actix_ws::handle(&request, body)
        .map_err(|error| DashboardError::BadRequest(error.to_string()))?;
    // Subscribed before the handshake is answered: nothing sent after it is missed.
    let notices = state.live.subscribe();
    let watched = watched.into_inner();
    let connection = Connection {
        state: state.into_inner(),
        layout: session.layout(super::view::Nav::Events),
        page: watched.page(),
        watched,
        session,
    };
    actix_web::rt::spawn(connection.run(ws, stream.max_frame_size(MAX_FRAME), notices));
    Ok(response)
}

struct Connection {
    state: Arc<AppState>,
    session: Session,
    /// The session's layout context: its CSRF token goes into the forms a render replaces.
    layout: Layout,
    watched: Watched,
    /// The page the "show" marker reloads.
    page: String,
}

/// What gathered since the last render.
#[derive(Default)]
struct Pending {
    new: Vec<EventId>,
    changed: HashSet<EventId>,
    /// New events the marker counts instead of rows, since the page was loaded.
    held_back: usize,
    lagged: bool,
    /// Rows this connection added to the page, whose changes it sends (up to [`MAX_ADDED`];
    /// beyond, every change is sent, as the page is long).
    added: HashSet<EventId>,
    /// The workspace's issues changed: the navigation's count is sent again.
    issues: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.new.is_empty() && self.changed.is_empty() && !self.lagged && !self.issues
    }
}

impl Connection {
    async fn run(
        self,
        mut ws: actix_ws::Session,
        mut stream: actix_ws::MessageStream,
        mut notices: broadcast::Receiver<Arc<Vec<Notice>>>,
    ) {
        let _counted = metrics::Connected::live_page();
        let mut render = tokio::time::interval(RENDER_EVERY);
        render.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut heard = Instant::now();
        // The navigation's count may have changed since the page was rendered.
        let mut pending = Pending {
            issues: self.watched.is_nav(),
            ..Pending::default()
        };
        self.catch_up(&mut pending).await;
        let shutdown = self.state.shutdown.clone();
        let reason = loop {
            tokio::select! {
                // The process is stopping: the page reconnects to a replica that is not.
                () = shutdown.cancelled() => break Some(CloseCode::Restart),
                batch = notices.recv() => match batch {
                    // Removed, or given another role: what the page shows may no longer be
                    // theirs to see. A page that reconnects gets what they may see now.
                    Ok(batch) if self.access_changed(&batch) => break Some(CloseCode::Policy),
                    Ok(batch) => self.take(&batch, &mut pending),
                    // Fell behind: the marker asks for a reload, or the count is read again.
                    Err(RecvError::Lagged(_)) if self.watched.is_nav() => pending.issues = true,
                    Err(RecvError::Lagged(_)) => pending.lagged = true,
                    Err(RecvError::Closed) => break Some(CloseCode::Restart),
                },
                _ = render.tick() => {
                    if let Some(message) = self.render(&mut pending).await {
                        // A browser that does not read is closed, never waited for long.
                        match tokio::time::timeout(SEND_LIMIT, ws.text(message)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => return,
                            Err(_) => break Some(CloseCode::Away),
                        }
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > SILENCE_LIMIT {
                        break Some(CloseCode::Away);
                    }
                    // A session that ended (log-out, expiry) ends its pages' feed too.
                    if !self.session_lives().await {
                        break Some(CloseCode::Policy);
                    }
                    match tokio::time::timeout(SEND_LIMIT, ws.ping(b"")).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => break Some(CloseCode::Away),
                    }
                }
                message = stream.recv() => match message {
                    Some(Ok(Message::Ping(bytes))) => {
                        heard = Instant::now();
                        if ws.pong(&bytes).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                    Some(Ok(_)) => heard = Instant::now(),
                },
            }
        };
        let _ = tokio::time::timeout(SEND_LIMIT, ws.close(reason.map(CloseReason::from))).await;
    }

    /// What happened while the page was not connected (since it was rendered, or while a
    /// restart kept it away): the new events it does not have, and the events it showed in
    /// flight.
    /// Notices of the same events that arrive meanwhile are not sent twice.
    async fn catch_up(&self, pending: &mut Pending) {
        let rows = self.watched.rows.as_deref().unwrap_or("");
        pending.changed.extend(
            rows.split(',')
                .filter_map(|id| Uuid::parse_str(id.trim()).ok().map(EventId))
                .take(MAX_CHANGED_ROWS),
        );
        if !self.watched.adds_rows() {
            return;
        }
        let page = EventPage {
            status: self.watched.status,
            after: self.watched.after,
            limit: i64::try_from(MAX_ADDED).unwrap_or(i64::MAX),
            ..EventPage::default()
        };
        // As a render does: after a restart every page reconnects at once, and their queries
        // must leave ingest its connection.
        let Ok(_permit) = self.state.live_renders.acquire().await else {
            return;
        };
        match service::events::list(
            &self.state,
            self.session.actor(),
            self.watched.subscription,
            &page,
        )
        .await
        {
            Ok(missed) => {
                for delivery in missed {
                    if !pending.new.contains(&delivery.event_id) {
                        pending.new.push(delivery.event_id);
                    }
                }
            }
            Err(error) => {
                debug!(self.state.log, "a live page could not catch up"; "error" => %error);
                pending.lagged = true;
            }
        }
    }

    /// Whether the session still sees this workspace with the same role. Only a definite "no"
    /// closes: a database hiccup does not.
    async fn session_lives(&self) -> bool {
        let token = self.session.user.token.clone();
        match auth::resume_session(&self.state.db, token, self.state.sessions).await {
            Ok(Some(user)) => user.workspace.as_ref().is_some_and(|now| {
                now.id == self.session.workspace.id && now.role == self.session.workspace.role
            }),
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Whether a batch tells that this page's member lost access to its workspace or changed
    /// role there.
    fn access_changed(&self, batch: &[Notice]) -> bool {
        let actor = self.session.actor();
        batch.iter().any(|notice| {
            matches!(notice, Notice::Access { workspace, user }
                if *workspace == actor.workspace && Some(*user) == actor.user())
        })
    }

    /// Keeps the notices this page shows: only its own user's, and only what it displays. A
    /// change matters only to a row the page has: one it was rendered with, or one added since
    /// (under load, most changes are of events held back behind the marker).
    fn take(&self, batch: &[Notice], pending: &mut Pending) {
        let own = self.session.actor().workspace;
        for notice in batch {
            let notice = match notice {
                Notice::Event(notice) if !self.watched.is_nav() => notice,
                Notice::Issues { workspace } if self.watched.is_nav() => {
                    pending.issues |= *workspace == own;
                    continue;
                }
                _ => continue,
            };
            if notice.workspace != own {
                continue;
            }
            match self.watched.shows(notice) {
                Some(true) if !pending.new.contains(&notice.event) => {
                    pending.new.push(notice.event)
                }
                Some(false) if self.has_row(notice.event, pending) => {
                    pending.changed.insert(notice.event);
                }
                _ => {}
            }
        }
    }

    fn has_row(&self, event: EventId, pending: &Pending) -> bool {
        self.watched.event.is_some()
            || self.watched.after.is_some_and(|newest| event <= newest)
            || pending.added.contains(&event)
            || pending.added.len() >= MAX_ADDED
    }

    /// The message for what gathered, if anything did.
    async fn render(&self, pending: &mut Pending) -> Option<String> {
        if pending.is_empty() {
            return None;
        }
        let actor = self.session.actor();
        // Waiting here only delays this page: what gathers meanwhile goes out in one message.
        let _permit = self.state.live_renders.acquire().await.ok()?;
        let mut new = std::mem::take(&mut pending.new);
        if new.len() > MAX_NEW_ROWS || pending.held_back > 0 {
            // A burst: the page would scroll away under the reader. Count instead.
            pending.held_back += new.len();
            new.clear();
        }
        if pending.added.len() < MAX_ADDED {
            pending.added.extend(new.iter().copied());
        }
        let changed: Vec<EventId> = std::mem::take(&mut pending.changed)
            .into_iter()
            .filter(|id| !new.contains(id))
            .take(MAX_CHANGED_ROWS)
            .collect();
        let detail = match self.watched.event {
            Some(event) => event_detail(&self.state, actor, event, false).await.ok(),
            None => None,
        };
        let ids: Vec<EventId> = new.iter().chain(&changed).copied().collect();
        let across = self.watched.subscription.is_none() && self.watched.event.is_none();
        // An event's page has no rows: its changing parts are the detail. Rows there would
        // also make htmx parse the whole message as table rows, and take the forms of the
        // detail (Replay, Retry now) apart.
        let lines = if ids.is_empty() || self.watched.event.is_some() {
            Vec::new()
        } else {
            service::events::lines(&self.state, actor, &ids)
                .await
                .unwrap_or_else(|error| {
                    debug!(self.state.log, "a live render found no rows"; "error" => %error);
                    Vec::new()
                })
        };
        // Across subscriptions, each row names its own.
        let names = if across && !lines.is_empty() {
            service::subscriptions::list(&self.state, actor)
                .await
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let now = Utc::now();
        let (new_rows, changed_rows): (Vec<_>, Vec<_>) = lines
            .into_iter()
            .filter(|(delivery, _)| {
                self.watched
                    .subscription
                    .is_none_or(|subscription| subscription == delivery.subscription_id)
            })
            .map(|(event, last)| {
                let is_new = new.contains(&event.event_id);
                let subscription = names
                    .iter()
                    .find(|s| s.id == event.subscription_id)
                    .map(|s| (s.id, s.name.clone()));
                let line = EventLine {
                    subscription,
                    ..EventLine::new(event, last, now)
                };
                (is_new, line)
            })
            .partition(|(is_new, _)| *is_new);
        let issues_changed = std::mem::take(&mut pending.issues);
        let issue_count = if issues_changed {
            service::issues::count_open(&self.state, actor)
                .await
                .unwrap_or_else(|_| self.layout.open_issues())
        } else {
            0
        };
        let update = LiveUpdate {
            issues_changed,
            issue_count,
            layout: &self.layout,
            across,
            selectable: across
                && self.watched.status == Some(EventStatus::Failed)
                && actor.may(Permission::Change),
            new_rows: new_rows.into_iter().map(|(_, line)| line).collect(),
            changed_rows: changed_rows.into_iter().map(|(_, line)| line).collect(),
            held_back: pending.held_back,
            lagged: std::mem::take(&mut pending.lagged),
            page: &self.page,
            detail,
        };
        update.render().ok()
    }
}
