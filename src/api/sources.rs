//! `/api/v1/sources`: create, list, get, edit, delete, and a source's events.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::responses::{
    BadRequest, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{ApiCaller, ApiError};
use crate::db::models::event::EventLine;
use crate::db::models::rejected_request::KEPT_PER_SOURCE;
use crate::db::models::source::Source;
use crate::domain::{EventId, EventStatus, IngestResponse, SourceId};
use crate::service::Actor;
use crate::service::sources::{self, SourceIn, SourcePatch};
use crate::signing::incoming::ProviderConfig;
use crate::state::AppState;

/// A source as the API shows it to its owner.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceOut {
    pub id: SourceId,
    pub name: String,
    /// Where providers send the source's events; null for a viewer key: it lets anyone who has
    /// it send events.
    #[schema(required = true)]
    pub ingest_url: Option<String>,
    /// The provider checked at ingest, without its secret (write-only).
    #[schema(value_type = Option<Object>, required = true)]
    pub provider: Option<serde_json::Value>,
    /// What a request the source accepts is answered with; null for the default (`202` and
    /// the event id).
    #[schema(required = true)]
    pub response: Option<IngestResponse>,
    /// When the relay last answered the provider's handshake at this source, and how.
    #[schema(required = true)]
    pub last_handshake: Option<HandshakeOut>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The last provider handshake a source's ingest URL answered (or refused).
#[derive(Debug, Serialize, ToSchema)]
pub struct HandshakeOut {
    pub at: DateTime<Utc>,
    /// `answered`, or why it was refused (`bad_signature`, `failed_handshake`, ...).
    pub outcome: String,
    /// When one was last answered: the last may have been refused since (Discord follows a
    /// good handshake with a badly signed one, to check that it is refused).
    #[schema(required = true)]
    pub answered_at: Option<DateTime<Utc>>,
}

impl SourceOut {
    /// The answer for `caller`: the ingest URL only when their role may see secrets.
    fn new(source: Source, state: &AppState, caller: &Actor) -> Self {
        let response = sources::stored_response(&source);
        SourceOut {
            ingest_url: state.ingest_url_for(&source.ingest_token, caller),
            id: source.id,
            name: source.name,
            response,
            provider: source
                .provider
                .and_then(|stored| serde_json::from_value::<ProviderConfig>(stored).ok())
                .map(|provider| provider.public_view()),
            last_handshake: source
                .last_handshake_at
                .zip(source.last_handshake_outcome)
                .map(|(at, outcome)| HandshakeOut {
                    at,
                    outcome,
                    answered_at: source.last_handshake_answered_at,
                }),
            created_at: source.created_at,
            updated_at: source.updated_at,
        }
    }
}

/// A list of sources.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceList {
    pub data: Vec<SourceOut>,
}

/// One event of a source, routed or not: no body.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceEventOut {
    pub id: EventId,
    /// Its deliveries' statuses rolled up; `unrouted` when no subscription took it.
    pub status: EventStatus,
    /// How many subscriptions it was routed to.
    pub deliveries: usize,
    pub received_at: DateTime<Utc>,
    #[schema(required = true)]
    pub content_type: Option<String>,
}

impl From<EventLine> for SourceEventOut {
    fn from(line: EventLine) -> Self {
        SourceEventOut {
            status: line.status(),
            deliveries: line.statuses.len(),
            id: line.id,
            received_at: line.received_at,
            content_type: line.content_type,
        }
    }
}

/// A page of a source's events, newest first; pass `next_before` as `before` for the next page.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceEventList {
    pub data: Vec<SourceEventOut>,
    #[schema(required = true)]
    pub next_before: Option<EventId>,
}

/// Query of a source's events.
#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SourceEventQuery {
    /// How many events a page holds at most.
    #[garde(range(min = 1, max = 100))]
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<i64>,
    /// Only events older than this one: the previous page's `next_before`.
    #[garde(skip)]
    pub before: Option<EventId>,
}

/// `POST /api/v1/sources`
#[utoipa::path(
    post,
    path = "/api/v1/sources",
    tag = "sources",
    operation_id = "create_source",
    summary = "Create a source",
    request_body = SourceIn,
    responses(
        (status = 201, description = "The source, created, with its ingest URL", body = SourceOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create(
    caller: ApiCaller,
    state: web::Data<AppState>,
    input: web::Json<SourceIn>,
) -> Result<HttpResponse, ApiError> {
    let created = sources::create(&state, &caller.0, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(SourceOut::new(created, &state, &caller.0)))
}

/// `GET /api/v1/sources`
#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "sources",
    operation_id = "list_sources",
    summary = "List the workspace's sources",
    responses(
        (status = 200, description = "The workspace's sources, oldest first", body = SourceList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(caller: ApiCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = sources::list(&state, &caller.0)
        .await?
        .into_iter()
        .map(|s| SourceOut::new(s, &state, &caller.0))
        .collect();
    Ok(HttpResponse::Ok().json(SourceList { data }))
}

/// `GET /api/v1/sources/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    operation_id = "get_source",
    summary = "Get a source",
    params(("id" = SourceId, Path, description = "The source's id")),
    responses(
        (status = 200, description = "The source", body = SourceOut),
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
    let found = sources::get(&state, &caller.0, SourceId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(SourceOut::new(found, &state, &caller.0)))
}

/// `PATCH /api/v1/sources/{id}`
#[utoipa::path(
    patch,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    operation_id = "edit_source",
    summary = "Edit a source",
    description = "Every field is optional. `provider: null` checks no signature from then on.",
    params(("id" = SourceId, Path, description = "The source's id")),
    request_body = SourcePatch,
    responses(
        (status = 200, description = "The source, edited", body = SourceOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn edit(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    patch: web::Json<SourcePatch>,
) -> Result<HttpResponse, ApiError> {
    let id = SourceId(id.into_inner());
    let updated = sources::edit(&state, &caller.0, id, patch.into_inner()).await?;
    Ok(HttpResponse::Ok().json(SourceOut::new(updated, &state, &caller.0)))
}

/// `DELETE /api/v1/sources/{id}`: the source, its subscriptions and its events.
#[utoipa::path(
    delete,
    path = "/api/v1/sources/{id}",
    tag = "sources",
    operation_id = "delete_source",
    summary = "Delete a source, its subscriptions and its events",
    params(("id" = SourceId, Path, description = "The source's id")),
    responses(
        (status = 204, description = "The source, its subscriptions and its events are deleted"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    sources::delete(&state, &caller.0, SourceId(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/sources/{id}/events?limit=&before=`
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/events",
    tag = "sources",
    operation_id = "list_source_events",
    summary = "List a source's events",
    description = "A page of the events that arrived at the source, newest first, routed or not; pass `next_before` as `before` for the next page.",
    params(("id" = SourceId, Path, description = "The source's id"), SourceEventQuery),
    responses(
        (status = 200, description = "A page of the source's events, newest first", body = SourceEventList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn events(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    query: web::Query<SourceEventQuery>,
) -> Result<HttpResponse, ApiError> {
    query.validate()?;
    let limit = query.limit.unwrap_or(50);
    let id = SourceId(id.into_inner());
    let lines = sources::events(&state, &caller.0, id, query.before, limit).await?;
    let next_before = (lines.len() as i64 == limit)
        .then(|| lines.last().map(|line| line.id))
        .flatten();
    Ok(HttpResponse::Ok().json(SourceEventList {
        data: lines.into_iter().map(SourceEventOut::from).collect(),
        next_before,
    }))
}

/// A request a source's check refused, as its owner may see it: credentials masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionOut {
    pub received_at: DateTime<Utc>,
    /// `missing_header`, `malformed`, `bad_signature`, `stale_timestamp`, `wrong_method`,
    /// `failed_handshake` or `wrong_credentials`.
    pub reason: String,
    /// Refused while answering the provider's handshake.
    pub handshake: bool,
    pub method: String,
    /// The path after the ingest token, and the query.
    pub path: String,
    /// The headers it came with, credentials masked.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// The start of its body (at most 1 KiB), as text with invalid UTF-8 replaced.
    pub body_sample: String,
    /// The whole body's length in bytes.
    pub body_bytes: i32,
}

/// A source's latest refused requests, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RejectionList {
    pub data: Vec<RejectionOut>,
}

/// `GET /api/v1/sources/{id}/rejections`
#[utoipa::path(
    get,
    path = "/api/v1/sources/{id}/rejections",
    tag = "sources",
    operation_id = "list_source_rejections",
    summary = "List a source's refused requests",
    description = "The last requests the source's check refused (at most 100 are kept), newest first, with why: how to find out that a secret was pasted wrong.",
    params(("id" = SourceId, Path, description = "The source's id")),
    responses(
        (status = 200, description = "The source's refused requests, newest first", body = RejectionList),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn rejections(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = SourceId(id.into_inner());
    let data = sources::rejections(&state, &caller.0, id, KEPT_PER_SOURCE)
        .await?
        .into_iter()
        .map(|rejected| RejectionOut {
            received_at: rejected.received_at,
            reason: rejected.reason,
            handshake: rejected.handshake,
            method: rejected.method,
            path: rejected.path,
            headers: rejected.headers,
            body_sample: String::from_utf8_lossy(&rejected.body_sample).into_owned(),
            body_bytes: rejected.body_bytes,
        })
        .collect();
    Ok(HttpResponse::Ok().json(RejectionList { data }))
}
