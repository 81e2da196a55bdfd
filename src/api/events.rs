//! `/api/v1/events`, `/api/v1/deliveries` and a subscription's event log.

use actix_web::{HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{ApiCaller, ApiError};
use crate::db::models::delivery::{DeliverySummary, EventPage};
use crate::db::models::delivery_attempt::DeliveryAttempt;
use crate::domain::{DeliveryId, EventId, EventStatus, SourceId, SubscriptionId};
use crate::retention::RetentionPolicy;
use crate::service;
use crate::service::events::EventDetail;
use crate::state::AppState;

/// One event, body included, with its deliveries. Its status, attempts and times roll its
/// deliveries' up.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventOut {
    pub id: EventId,
    /// The source it arrived at.
    pub source_id: SourceId,
    /// The subscription of its first delivery; null when no subscription took it.
    #[schema(required = true)]
    pub subscription_id: Option<SubscriptionId>,
    /// `failed` if any delivery failed, else `retrying` if any retries, else `pending` if any
    /// is pending, else `completed`; `unrouted` when no subscription took it.
    pub status: EventStatus,
    /// Attempts made, by all its deliveries.
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
    /// The path it was posted to after the ingest token, with its leading `/`; empty when
    /// there was none. As received (percent-encoded).
    pub path: String,
    /// The query it was posted with, as received, without the `?`; empty when there was none.
    pub query: String,
    /// The body as received: text when it is UTF-8, otherwise base64 (see `body_encoding`).
    pub body: String,
    pub body_encoding: BodyEncoding,
    /// The body as a JSON document, when it is one.
    #[schema(value_type = Option<Value>, required = true)]
    pub payload: Option<serde_json::Value>,
    /// One per subscription it was routed to.
    pub deliveries: Vec<DeliveryOut>,
}

/// One event for one subscription, and where it is in its life.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub status: EventStatus,
    pub attempts: i32,
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_error: Option<String>,
    /// What it waits for until `next_attempt_at`: `retry` (its next retry) or `rate_limit` (its
    /// subscription's rate limit, which uses no attempt and no retry); null when it waits for
    /// nothing.
    #[schema(required = true)]
    pub waiting: Option<String>,
}

impl From<DeliverySummary> for DeliveryOut {
    fn from(delivery: DeliverySummary) -> Self {
        DeliveryOut {
            id: delivery.id,
            event_id: delivery.event_id,
            subscription_id: delivery.subscription_id,
            status: delivery.status,
            attempts: delivery.attempts,
            next_attempt_at: delivery.next_attempt_at,
            completed_at: delivery.completed_at,
            last_error: delivery.last_error,
            waiting: delivery.waiting,
        }
    }
}

/// One delivery with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetailOut {
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// Its attempts, first first.
    pub attempt_log: Vec<AttemptOut>,
}

impl DeliveryDetailOut {
    fn new((delivery, attempts): (DeliverySummary, Vec<DeliveryAttempt>)) -> Self {
        DeliveryDetailOut {
            delivery: delivery.into(),
            attempt_log: attempts.into_iter().map(AttemptOut::from).collect(),
        }
    }
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

impl From<EventDetail> for EventOut {
    fn from(detail: EventDetail) -> Self {
        let status = detail.status();
        let EventDetail { event, deliveries } = detail;
        let (body, body_encoding) = match String::from_utf8(event.body) {
            Ok(text) => (text, BodyEncoding::Utf8),
            Err(bytes) => (STANDARD.encode(bytes.into_bytes()), BodyEncoding::Base64),
        };
        let completed_at = if status == EventStatus::Completed {
            deliveries.iter().filter_map(|d| d.completed_at).max()
        } else {
            None
        };
        EventOut {
            id: event.id,
            source_id: event.source_id,
            subscription_id: deliveries.first().map(|d| d.subscription_id),
            status,
            attempts: deliveries.iter().map(|d| d.attempts).sum(),
            received_at: event.received_at,
            completed_at,
            next_attempt_at: deliveries.iter().filter_map(|d| d.next_attempt_at).min(),
            last_error: deliveries.iter().find_map(|d| d.last_error.clone()),
            content_type: event.content_type,
            headers: event.headers,
            path: event.path,
            query: event.query,
            body,
            body_encoding,
            payload: event.payload,
            deliveries: deliveries.into_iter().map(DeliveryOut::from).collect(),
        }
    }
}

/// One delivery in a list, as an event of its subscription: no body.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventSummaryOut {
    /// The event's id.
    pub id: EventId,
    /// The delivery's id: pass the last row's as `before` for the next page.
    pub delivery_id: DeliveryId,
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

impl From<DeliverySummary> for EventSummaryOut {
    fn from(event: DeliverySummary) -> Self {
        EventSummaryOut {
            id: event.event_id,
            delivery_id: event.id,
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

/// A page of deliveries, newest first; pass `next_before` as `before` for the next page.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<EventSummaryOut>,
    #[schema(required = true)]
    pub next_before: Option<DeliveryId>,
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
    /// Only deliveries older than this one: the previous page's `next_before`.
    #[garde(skip)]
    pub before: Option<DeliveryId>,
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
    /// The delivery that made it.
    pub delivery_id: DeliveryId,
    /// The subscription it was made for; null for attempts recorded before this was kept.
    #[schema(required = true)]
    pub subscription_id: Option<SubscriptionId>,
    /// Its number among its delivery's attempts.
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
            delivery_id: attempt.delivery_id,
            subscription_id: attempt.subscription_id,
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
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = service::events::get(&state, &caller.0, EventId(id.into_inner())).await?;
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
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let attempts = service::events::attempts(&state, &caller.0, EventId(id.into_inner())).await?;
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
    fn new(events: Vec<DeliverySummary>, page: &EventPage, retention: RetentionPolicy) -> Self {
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
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let subscription = Some(SubscriptionId(id.into_inner()));
    let events = service::events::list(&state, &caller.0, subscription, &page).await?;
    Ok(HttpResponse::Ok().json(EventList::new(events, &page, state.retention)))
}

/// `GET /api/v1/events?status=&since=&until=&payload=&limit=&before=`: across all of the workspace's subscriptions;
/// `status=failed` is the graveyard.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    operation_id = "list_events",
    summary = "List the events of all the workspace's subscriptions",
    description = "A page of events, newest first; pass `next_before` as `before` for the next page. `status=failed` is the graveyard: the events whose retries are exhausted.",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of the events of all the workspace's subscriptions, newest first", body = EventList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list_all(
    caller: ApiCaller,
    state: web::Data<AppState>,
    query: web::Query<EventQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page()?;
    let events = service::events::list(&state, &caller.0, None, &page).await?;
    Ok(HttpResponse::Ok().json(EventList::new(events, &page, state.retention)))
}

/// `POST /api/v1/events/{id}/replay`: makes an event's ended deliveries again, same bytes and
/// `webhook-id`, with a fresh retry budget.
#[utoipa::path(
    post,
    path = "/api/v1/events/{id}/replay",
    tag = "events",
    operation_id = "replay_event",
    summary = "Replay an event",
    description = "Makes again each of the event's deliveries that has ended (completed or failed): the same bytes and `webhook-id`, with a fresh retry budget. An event none of whose deliveries has ended (or that no subscription took) is a conflict.",
    params(("id" = EventId, Path, description = "The event's id")),
    responses(
        (status = 202, description = "The event, queued for delivery again", body = EventOut),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn replay(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let replayed = service::events::replay(&state, &caller.0, EventId(id.into_inner())).await?;
    Ok(HttpResponse::Accepted().json(EventOut::from(replayed)))
}

/// `GET /api/v1/deliveries/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/deliveries/{id}",
    tag = "events",
    operation_id = "get_delivery",
    summary = "Get a delivery, with its attempts",
    params(("id" = DeliveryId, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "The delivery, with its attempts", body = DeliveryDetailOut),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_delivery(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found =
        service::events::get_delivery(&state, &caller.0, DeliveryId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(DeliveryDetailOut::new(found)))
}

/// `POST /api/v1/deliveries/{id}/replay`
#[utoipa::path(
    post,
    path = "/api/v1/deliveries/{id}/replay",
    tag = "events",
    operation_id = "replay_delivery",
    summary = "Replay a delivery",
    description = "Makes a completed or failed delivery again: the same bytes and `webhook-id`, with a fresh retry budget. A delivery still being made is a conflict.",
    params(("id" = DeliveryId, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "The delivery, queued again", body = DeliveryDetailOut),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn replay_delivery(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let replayed =
        service::events::replay_delivery(&state, &caller.0, DeliveryId(id.into_inner())).await?;
    Ok(HttpResponse::Accepted().json(DeliveryDetailOut::new(replayed)))
}

/// `POST /api/v1/deliveries/{id}/retry`
#[utoipa::path(
    post,
    path = "/api/v1/deliveries/{id}/retry",
    tag = "events",
    operation_id = "retry_delivery",
    summary = "Retry a delivery now",
    description = "Attempts now a delivery that waits for its next retry (after its endpoint was fixed, say). The attempt takes the scheduled retry's place in its chain, and the scheduled one is dropped: two calls, or a call racing the retry, still make one attempt. A delivery that does not wait for a retry, or whose subscription is paused or disabled, is a conflict.",
    params(("id" = DeliveryId, Path, description = "The delivery's id")),
    responses(
        (status = 202, description = "The delivery, queued for an attempt now", body = DeliveryDetailOut),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn retry_delivery(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let retried =
        service::events::retry_delivery(&state, &caller.0, DeliveryId(id.into_inner())).await?;
    Ok(HttpResponse::Accepted().json(DeliveryDetailOut::new(retried)))
}
