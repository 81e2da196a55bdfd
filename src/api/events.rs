//! `/api/v1/events` and a subscription's event log.

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::openapi::{
    BadRequest, Conflict, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{ApiError, ApiUser};
use crate::db::models::delivery_attempt::DeliveryAttempt;
use crate::db::models::event::{Event, EventPage, EventSummary};
use crate::domain::{EventId, EventStatus, SubscriptionId};
use crate::retention::RetentionPolicy;
use crate::service;
use crate::state::AppState;

/// One event, body included.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
    pub content_type: Option<String>,
    /// The request headers kept with the event, by lower-case name; credentials are not kept.
    #[schema(value_type = std::collections::HashMap<String, String>)]
    pub headers: serde_json::Value,
    /// The body as received: text when it is UTF-8, otherwise base64 (see `body_encoding`).
    pub body: String,
    pub body_encoding: BodyEncoding,
    /// The body as a JSON document, when it is one.
    #[schema(value_type = Option<Value>, required = true)]
    pub payload: Option<serde_json::Value>,
}

/// How an event's `body` is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    /// The body is UTF-8 text, as received.
    Utf8,
    /// The body is not UTF-8: the standard base64 of its bytes.
    Base64,
}

impl From<Event> for EventOut {
    fn from(event: Event) -> Self {
        let (body, body_encoding) = match String::from_utf8(event.body) {
            Ok(text) => (text, BodyEncoding::Utf8),
            Err(bytes) => (STANDARD.encode(bytes.into_bytes()), BodyEncoding::Base64),
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
#[derive(Debug, Serialize, ToSchema)]
pub struct EventSummaryOut {
    pub id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    #[schema(required = true)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<EventSummaryOut>,
    #[schema(required = true)]
    pub next_before: Option<EventId>,
    /// How long finished events are kept before they are removed.
    pub retention: RetentionOut,
}

/// How long finished events are kept, in seconds.
#[derive(Debug, Serialize, ToSchema)]
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
#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only events with this status.
    #[garde(skip)]
    pub status: Option<EventStatus>,
    /// How many events a page holds at most.
    #[garde(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    /// Only events older than this one: the previous page's `next_before`.
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
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    #[schema(required = true)]
    pub status_code: Option<i32>,
    #[schema(required = true)]
    pub error: Option<String>,
    #[schema(required = true)]
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
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    pub data: Vec<AttemptOut>,
}

/// `GET /api/v1/events/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}",
    tag = "events",
    operation_id = "get_event",
    summary = "Get an event, body included",
    params(("id" = EventId, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event, body included", body = EventOut),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = service::events::get(&state, user.0, EventId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(EventOut::from(found)))
}

/// `GET /api/v1/events/{id}/attempts`
#[utoipa::path(
    get,
    path = "/api/v1/events/{id}/attempts",
    tag = "events",
    operation_id = "list_event_attempts",
    summary = "List an event's delivery attempts",
    params(("id" = EventId, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The delivery attempts made for the event, first first", body = AttemptList),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{id}/events",
    tag = "events",
    operation_id = "list_subscription_events",
    summary = "List a subscription's events",
    description = "A page of events, newest first; pass `next_before` as `before` for the next page.",
    params(("id" = SubscriptionId, Path, description = "The subscription's id"), EventQuery),
    responses(
        (status = 200, description = "A page of the subscription's events, newest first", body = EventList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
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
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    operation_id = "list_events",
    summary = "List the events of all the key owner's subscriptions",
    description = "A page of events, newest first; pass `next_before` as `before` for the next page. `status=failed` is the graveyard: the events whose retries are exhausted.",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of the events of all the key owner's subscriptions, newest first", body = EventList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
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
#[utoipa::path(
    post,
    path = "/api/v1/events/{id}/replay",
    tag = "events",
    operation_id = "replay_event",
    summary = "Replay an event",
    description = "Delivers a completed or failed event again: the same bytes and `webhook-id`, with a fresh retry budget. An event still being delivered is a conflict.",
    params(("id" = EventId, Path, description = "The event's id")),
    responses(
        (status = 202, description = "The event, queued for delivery again", body = EventOut),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn replay(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let replayed = service::events::replay(&state, user.0, EventId(id.into_inner())).await?;
    Ok(HttpResponse::Accepted().json(EventOut::from(replayed)))
}
