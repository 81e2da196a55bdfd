//! `/api/v1/events` and a subscription's event log.

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ApiError, ApiUser};
use crate::db::models::delivery_attempt::DeliveryAttempt;
use crate::db::models::event::{Event, EventPage, EventSummary};
use crate::domain::{EventId, EventStatus, SubscriptionId};
use crate::retention::RetentionPolicy;
use crate::service;
use crate::state::AppState;

/// One event, body included.
#[derive(Debug, Serialize)]
pub struct EventOut {
    pub id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub content_type: Option<String>,
    pub headers: serde_json::Value,
    /// The body as received: text when it is UTF-8, otherwise base64 (see `body_encoding`).
    pub body: String,
    pub body_encoding: &'static str,
    /// The body as a JSON document, when it is one.
    pub payload: Option<serde_json::Value>,
}

impl From<Event> for EventOut {
    fn from(event: Event) -> Self {
        let (body, body_encoding) = match String::from_utf8(event.body) {
            Ok(text) => (text, "utf8"),
            Err(bytes) => (STANDARD.encode(bytes.into_bytes()), "base64"),
        };
        EventOut {
            id: event.id,
            subscription_id: event.subscription_id,
            status: event.status,
            attempts: event.attempts,
            received_at: event.received_at,
            completed_at: event.completed_at,
            next_attempt_at: event.next_attempt_at,
            last_error: event.last_error,
            content_type: event.content_type,
            headers: event.headers,
            body,
            body_encoding,
            payload: event.payload,
        }
    }
}

/// One event in a list: no body.
#[derive(Debug, Serialize)]
pub struct EventSummaryOut {
    pub id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub content_type: Option<String>,
}

impl From<EventSummary> for EventSummaryOut {
    fn from(event: EventSummary) -> Self {
        EventSummaryOut {
            id: event.id,
            subscription_id: event.subscription_id,
            status: event.status,
            attempts: event.attempts,
            received_at: event.received_at,
            completed_at: event.completed_at,
            next_attempt_at: event.next_attempt_at,
            last_error: event.last_error,
            content_type: event.content_type,
        }
    }
}

/// A page of events, newest first; pass `next_before` as `before` for the next page.
#[derive(Debug, Serialize)]
pub struct EventList {
    pub data: Vec<EventSummaryOut>,
    pub next_before: Option<EventId>,
    /// How long finished events are kept before they are removed.
    pub retention: RetentionOut,
}

/// How long finished events are kept, in seconds.
#[derive(Debug, Serialize)]
pub struct RetentionOut {
    /// Delivered events, from their arrival (or their delivery, if later).
    pub completed_seconds: u64,
    /// Failed events, from their arrival.
    pub failed_seconds: u64,
}

impl From<RetentionPolicy> for RetentionOut {
    fn from(policy: RetentionPolicy) -> Self {
        RetentionOut {
            completed_seconds: policy.completed.as_secs(),
            failed_seconds: policy.failed.as_secs(),
        }
    }
}

/// Query of a subscription's event log.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    #[garde(skip)]
    pub status: Option<EventStatus>,
    #[garde(range(min = 1, max = 100))]
    pub limit: Option<i64>,
    #[garde(skip)]
    pub before: Option<EventId>,
    /// Only events received at or after this time (RFC 3339).
    #[garde(skip)]
    pub since: Option<DateTime<Utc>>,
    /// Only events received before this time (RFC 3339).
    #[garde(skip)]
    pub until: Option<DateTime<Utc>>,
    /// A JSON document the payload must contain, e.g. `{"type":"invoice.paid"}`.
    #[garde(skip)]
    pub payload: Option<String>,
}

/// One attempt as the API shows it.
#[derive(Debug, Serialize)]
pub struct AttemptOut {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

impl From<DeliveryAttempt> for AttemptOut {
    fn from(attempt: DeliveryAttempt) -> Self {
        AttemptOut {
            attempt: attempt.attempt,
            started_at: attempt.started_at,
            duration_ms: attempt.duration_ms,
            status_code: attempt.status_code,
            error: attempt.error,
            response_body: attempt.response_body,
        }
    }
}

/// The attempts made for an event.
#[derive(Debug, Serialize)]
pub struct AttemptList {
    pub data: Vec<AttemptOut>,
}

/// `GET /api/v1/events/{id}`
pub async fn get(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = service::events::get(&state, user.0, EventId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(EventOut::from(found)))
}

/// `GET /api/v1/events/{id}/attempts`
pub async fn attempts(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let attempts = service::events::attempts(&state, user.0, EventId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(AttemptList {
        data: attempts.into_iter().map(AttemptOut::from).collect(),
    }))
}

impl EventQuery {
    fn page(&self) -> Result<EventPage, ApiError> {
        self.validate()?;
        Ok(EventPage {
            status: self.status,
            before: self.before,
            after: None,
            since: self.since,
            until: self.until,
            payload: service::events::payload_filter(self.payload.as_deref().unwrap_or(""))?,
            limit: self.limit.unwrap_or(50),
        })
    }
}

impl EventList {
    fn new(events: Vec<EventSummary>, page: &EventPage, retention: RetentionPolicy) -> Self {
        let next_before = (events.len() as i64 == page.limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        EventList {
            data: events.into_iter().map(EventSummaryOut::from).collect(),
            next_before,
            retention: retention.into(),
        }
    }
}

/// `GET /api/v1/subscriptions/{id}/events?status=&since=&until=&payload=&limit=&before=`
pub async fn list(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let subscription = Some(SubscriptionId(id.into_inner()));
    let events = service::events::list(&state, user.0, subscription, &page).await?;
    Ok(HttpResponse::Ok().json(EventList::new(events, &page, state.retention)))
}

/// `GET /api/v1/events?status=&since=&until=&payload=&limit=&before=`: across all of the user's subscriptions;
/// `status=failed` is the graveyard.
pub async fn list_all(
    user: ApiUser,
    state: web::Data<AppState>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let events = service::events::list(&state, user.0, None, &page).await?;
    Ok(HttpResponse::Ok().json(EventList::new(events, &page, state.retention)))
}

/// `POST /api/v1/events/{id}/replay`: delivers a completed or failed event again, same bytes
/// and `webhook-id`, with a fresh retry budget.
pub async fn replay(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let replayed = service::events::replay(&state, user.0, EventId(id.into_inner())).await?;
    Ok(HttpResponse::Accepted().json(EventOut::from(replayed)))
}
