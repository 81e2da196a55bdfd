//! `POST /ingest/{token}`: make the event durable, answer 202, then hand it to the publisher.

mod body;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;
use slog::debug;

use crate::db::DbError;
use crate::db::models::event::{self, NewEvent};
use crate::domain::{EventId, IngestToken};
use crate::problem::Problem;
use crate::queue::Envelope;
use crate::startup::AppState;

/// What a provider is told when its event is not accepted. Nothing is stored in any of them.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No subscription has this ingest token.
    #[error("no subscription has this ingest URL")]
    UnknownToken,
    /// The body is larger than the configured limit.
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body could not be read from the connection.
    #[error("the body could not be read: {0}")]
    BadBody(String),
    /// The event could not be made durable: the provider must retry.
    #[error("the event could not be stored; retry later")]
    Unavailable(#[source] DbError),
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::UnknownToken => StatusCode::NOT_FOUND,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BadBody(_) => StatusCode::BAD_REQUEST,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let title = match self {
            IngestError::UnknownToken => "Not Found",
            IngestError::TooLarge { .. } => "Payload Too Large",
            IngestError::BadBody(_) => "Bad Request",
            IngestError::Unavailable(_) => "Service Unavailable",
        };
        let mut response = Problem::new(self.status_code(), title, self.to_string()).response();
        if let IngestError::Unavailable(_) = self {
            response.headers_mut().insert(
                actix_web::http::header::RETRY_AFTER,
                actix_web::http::header::HeaderValue::from_static("5"),
            );
        }
        response
    }
}

/// Stores the event, answers 202 with its id, and publishes it without making the provider wait
/// for the broker: if publishing fails the event is still due in PostgreSQL and the reaper
/// publishes it.
pub async fn ingest(
    request: HttpRequest,
    token: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, IngestError> {
    let token = IngestToken::parse(&token).ok_or(IngestError::UnknownToken)?;
    let body = body::read_limited(&request, payload, state.max_body_bytes).await?;
    let id = EventId::new();
    let new_event = NewEvent {
        id,
        body: &body,
        payload: body::as_document(&body),
        content_type: request
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
        headers: body::selected_headers(request.headers()),
    };
    let accepted = state
        .db
        .run(async |conn| event::accept(conn, &token, new_event).await)
        .await
        .map_err(IngestError::Unavailable)?
        .ok_or(IngestError::UnknownToken)?;

    let envelope = Envelope {
        event_id: id,
        subscription_id: accepted.subscription_id,
        target_url: accepted.target_url,
        retry_count: 0,
    };
    let publisher = state.publisher.clone();
    let log = state.log.clone();
    actix_web::rt::spawn(async move {
        if let Err(error) = publisher.publish_detached(&envelope).await {
            debug!(log, "event left for the reaper"; "event_id" => %envelope.event_id, "error" => %error);
        }
    });
    Ok(HttpResponse::Accepted().json(json!({ "event_id": id })))
}

/// Mounts the ingest route.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/ingest/{token}", web::post().to(ingest));
}
