//! `GET /ws`: the WebSocket that keeps a page current. It answers only a signed-in browser on a
//! page of this relay (its `Origin` must be the relay's own: no cross-site WebSocket hijacking),
//! and sends, for that user's own subscriptions only, new rows and replaced rows as htmx
//! out-of-band swaps, rendered by the same partials as the page. A connection renders at most
//! a few times a second; under a burst, new rows give way to a "N new events: show" marker; and
//! a browser that stops reading only ever holds up its own connection, which skips ahead.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use slog::debug;
use tokio::sync::broadcast::error::RecvError;

use super::error::DashboardError;
use super::events::{EventDetail, EventLine, event_detail};
use super::session::Session;
use super::view::Layout;
use crate::domain::{EventId, EventStatus, SubscriptionId, UserId};
use crate::live::Notice;
use crate::service;
use crate::state::AppState;

/// How often a connection renders what gathered: at most this many updates a second.
const RENDER_EVERY: Duration = Duration::from_millis(300);
/// New rows one render adds at most; beyond, the marker counts them.
const MAX_NEW_ROWS: usize = 20;
/// Rows one render replaces at most (a page shows 50).
const MAX_CHANGED_ROWS: usize = 50;
/// How often the server pings, and how long a silent browser is kept.
const PING_EVERY: Duration = Duration::from_secs(10);
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Other users' subscriptions a connection remembers at most.
const MAX_OTHERS: usize = 10_000;
/// The longest message a browser may send (it sends none but pongs and closes).
const MAX_FRAME: usize = 4 * 1024;

/// What the page is showing, from its `ws-connect` URL.
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
    page: &'a str,
    detail: Option<EventDetail>,
}

/// Whether a request comes from a page of this relay: its `Origin` names this very host.
fn same_origin(request: &HttpRequest) -> bool {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    let origin = header("origin").and_then(|origin| url::Url::parse(origin).ok());
    let authority = origin.and_then(|url| {
        let host = url.host_str()?.to_owned();
        Some(match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    });
    authority.is_some() && authority.as_deref() == header("host")
}

/// `GET /ws`
pub async fn connect(
    request: HttpRequest,
    body: web::Payload,
    session: Session,
    state: web::Data<AppState>,
    watched: web::Query<Watched>,
) -> Result<HttpResponse, DashboardError> {
    if !same_origin(&request) {
        return Err(DashboardError::Forbidden);
    }
    let (response, ws, stream) = actix_ws::handle(&request, body)
        .map_err(|error| DashboardError::BadRequest(error.to_string()))?;
    let page = request
        .headers()
        .get("referer")
        .and_then(|value| value.to_str().ok())
        .and_then(|referer| url::Url::parse(referer).ok())
        .map_or_else(|| "/events".to_owned(), |url| url.path().to_owned());
    // Subscribed before the handshake is answered: nothing sent after it is missed.
    let notices = state.live.subscribe();
    let connection = Connection {
        state: state.into_inner(),
        user: session.user_id(),
        layout: session.layout(super::view::Nav::Events),
        watched: watched.into_inner(),
        page,
        mine: HashSet::new(),
        others: HashSet::new(),
    };
    actix_web::rt::spawn(connection.run(ws, stream.max_frame_size(MAX_FRAME), notices));
    Ok(response)
}

struct Connection {
    state: std::sync::Arc<AppState>,
    user: UserId,
    /// The session's layout context: its CSRF token goes into the forms a render replaces.
    layout: Layout,
    watched: Watched,
    /// The page's path, where the "show" marker links to.
    page: String,
    /// The user's subscriptions, looked up again when a notice names one not seen yet.
    mine: HashSet<SubscriptionId>,
    /// Subscriptions seen not to be the user's (an owner never changes), so that other users'
    /// traffic costs no query.
    others: HashSet<SubscriptionId>,
}

/// What gathered since the last render.
#[derive(Default)]
struct Pending {
    new: Vec<EventId>,
    changed: HashSet<EventId>,
    /// New events the marker counts instead of rows, since the page was loaded.
    held_back: usize,
}

impl Connection {
    async fn run(
        mut self,
        mut ws: actix_ws::Session,
        mut stream: actix_ws::MessageStream,
        mut notices: tokio::sync::broadcast::Receiver<std::sync::Arc<Vec<Notice>>>,
    ) {
        let mut render = tokio::time::interval(RENDER_EVERY);
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut heard = Instant::now();
        let mut pending = Pending::default();
        let reason = loop {
            tokio::select! {
                batch = notices.recv() => match batch {
                    Ok(batch) => self.take(&batch, &mut pending).await,
                    // Fell behind: what was skipped shows on the page's next load.
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break None,
                },
                _ = render.tick() => {
                    if let Some(message) = self.render(&mut pending).await
                        && ws.text(message).await.is_err()
                    {
                        return;
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > SILENCE_LIMIT {
                        break Some(CloseReason::from(CloseCode::Away));
                    }
                    if ws.ping(b"").await.is_err() {
                        return;
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
        let _ = ws.close(reason).await;
    }

    /// Keeps the notices this page shows.
    async fn take(&mut self, batch: &[Notice], pending: &mut Pending) {
        for notice in batch {
            if !self.is_mine(notice.subscription).await {
                continue;
            }
            let watched = &self.watched;
            if watched.event.is_some_and(|event| event != notice.event)
                || watched
                    .subscription
                    .is_some_and(|subscription| subscription != notice.subscription)
            {
                continue;
            }
            let adds_rows = watched.event.is_none()
                && watched.new != Some(false)
                && watched
                    .status
                    .is_none_or(|status| status == EventStatus::Pending);
            if notice.new && adds_rows {
                pending.new.push(notice.event);
            } else if !notice.new {
                pending.changed.insert(notice.event);
            }
        }
    }

    async fn is_mine(&mut self, subscription: SubscriptionId) -> bool {
        if self.mine.contains(&subscription) {
            return true;
        }
        if self.others.contains(&subscription) {
            return false;
        }
        // Not seen yet: one of the user's created since the page loaded, or someone else's.
        if let Ok(found) = service::subscriptions::list(&self.state, self.user).await {
            self.mine = found.into_iter().map(|s| s.id).collect();
        }
        let mine = self.mine.contains(&subscription);
        if !mine {
            if self.others.len() >= MAX_OTHERS {
                self.others.clear();
            }
            self.others.insert(subscription);
        }
        mine
    }

    /// The message for what gathered, if anything did.
    async fn render(&self, pending: &mut Pending) -> Option<String> {
        if pending.new.is_empty() && pending.changed.is_empty() {
            return None;
        }
        let mut new = std::mem::take(&mut pending.new);
        if new.len() > MAX_NEW_ROWS || pending.held_back > 0 {
            // A burst: the page would scroll away under the reader. Count instead.
            pending.held_back += new.len();
            new.clear();
        }
        let changed: Vec<EventId> = std::mem::take(&mut pending.changed)
            .into_iter()
            .filter(|id| !new.contains(id))
            .take(MAX_CHANGED_ROWS)
            .collect();
        let detail = match self.watched.event {
            Some(event) => event_detail(&self.state, self.user, event).await.ok(),
            None => None,
        };
        let ids: Vec<EventId> = new.iter().chain(&changed).copied().collect();
        let lines = match ids.is_empty() {
            true => Vec::new(),
            false => service::events::lines(&self.state, self.user, &ids)
                .await
                .unwrap_or_else(|error| {
                    debug!(self.state.log, "a live render found no rows"; "error" => %error);
                    Vec::new()
                }),
        };
        let now = Utc::now();
        let (new_rows, changed_rows) = lines
            .into_iter()
            .map(|(event, last)| (new.contains(&event.id), EventLine::new(event, last, now)))
            .partition::<Vec<_>, _>(|(is_new, _)| *is_new);
        let update = LiveUpdate {
            layout: &self.layout,
            across: self.watched.subscription.is_none(),
            selectable: self.watched.subscription.is_none()
                && self.watched.status == Some(EventStatus::Failed),
            new_rows: new_rows.into_iter().map(|(_, line)| line).collect(),
            changed_rows: changed_rows.into_iter().map(|(_, line)| line).collect(),
            held_back: pending.held_back,
            page: &self.page,
            detail,
        };
        update.render().ok()
    }
}
