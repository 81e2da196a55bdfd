//! `GET /events`: the latest events across the user's subscriptions. The live log with filters
//! and event detail is built on this page's place in the navigation.

use actix_web::{HttpResponse, web};
use askama::Template;
use chrono::{DateTime, Utc};

use super::error::DashboardError;
use super::session::Session;
use super::view::{Layout, Moment, Nav, pages, render};
use crate::db::models::event::{EventPage, EventSummary};
use crate::service;
use crate::state::AppState;

/// How many events the page lists.
const SHOWN: i64 = 50;

/// One event as the list shows it.
pub struct EventLine {
    pub id: String,
    pub status: &'static str,
    pub attempts: i32,
    pub received: Moment,
    pub last_error: Option<String>,
}

impl EventLine {
    /// An event of a list, its time described from `now`.
    pub fn new(event: EventSummary, now: DateTime<Utc>) -> Self {
        EventLine {
            id: event.id.to_string(),
            status: event.status.as_str(),
            attempts: event.attempts,
            received: Moment::of(event.received_at, now),
            last_error: event.last_error,
        }
    }
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    layout: Layout,
    events: Vec<EventLine>,
}

pages!(EventsPage);

/// `GET /events`
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let page = EventPage {
        status: None,
        before: None,
        limit: SHOWN,
    };
    let now = Utc::now();
    let events = service::events::list(&state, session.user_id(), None, page)
        .await?
        .into_iter()
        .map(|event| EventLine::new(event, now))
        .collect();
    render(&EventsPage {
        layout: session.layout(Nav::Events),
        events,
    })
}
