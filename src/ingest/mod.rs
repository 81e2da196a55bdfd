//! `POST /ingest/{token}`: make the event durable, answer 202, then hand it to the publisher.

mod body;
mod idempotency;
mod intake;

pub use intake::Intake;

use std::time::Instant;

use crate::db::DbError;
use crate::db::models::event::{self, Accepted, NewEvent, Routed};
use crate::domain::{EventId, IngestToken};
use crate::metrics::{self, IngestStatus};
use crate::problem::Problem;
use crate::request_id::RequestId;
use crate::signing::incoming::{ProviderConfig, Rejection};
use crate::state::AppState;
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderMap;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::json;
use slog::{Logger, debug, info};

/// What a provider is told when its event is not accepted. Nothing is stored in any of them.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// No source has this ingest token.
    #[error("no source has this ingest URL")]
    UnknownToken,
    /// The body is larger than the configured limit.
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// The body could not be read from the connection.
    #[error("the body could not be read: {0}")]
    BadBody(String),
    /// The provider's signature is missing, wrong or stale.
    #[error("signature check failed: {0}")]
    Signature(Rejection),
    /// The source's stored configuration cannot be used (a bug or a bad migration).
    #[error("the source cannot accept events: {0}")]
    Misconfigured(String),
    /// The event could not be made durable: the provider must retry.
    #[error("the event could not be stored; retry later")]
    Unavailable(#[source] DbError),
}

impl IngestError {
    /// How the metrics count a request answered with this error.
    fn counted_as(&self) -> IngestStatus {
        match self {
            IngestError::UnknownToken => IngestStatus::NotFound,
            IngestError::TooLarge { .. } => IngestStatus::TooLarge,
            IngestError::BadBody(_) => IngestStatus::BadRequest,
            IngestError::Signature(_) => IngestStatus::Unauthorized,
            IngestError::Misconfigured(_) => IngestStatus::Error,
            IngestError::Unavailable(_) => IngestStatus::Unavailable,
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        match self {
            IngestError::UnknownToken => StatusCode::NOT_FOUND,
            IngestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::BadBody(_) => StatusCode::BAD_REQUEST,
            IngestError::Signature(_) => StatusCode::UNAUTHORIZED,
            IngestError::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let title = match self {
            IngestError::UnknownToken => "Not Found",
            IngestError::TooLarge { .. } => "Payload Too Large",
            IngestError::BadBody(_) => "Bad Request",
            IngestError::Signature(_) => "Unauthorized",
            IngestError::Misconfigured(_) => "Internal Server Error",
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

/// Stores the event and answers 202 with its id once it is committed; the intake publishes it
/// without making the provider wait for the broker (if publishing fails its deliveries are still
/// due in PostgreSQL and the reaper publishes them). A source that names its provider has the
/// provider's signature checked before anything is stored; a repeated idempotency key answers
/// 200 with the first event's id. Every answer is counted, with the time it took.
pub async fn ingest(
    request: HttpRequest,
    token: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, IngestError> {
    let arrived = Instant::now();
    let answer = receive(request, token, payload, state, request_id).await;
    let status = match &answer {
        Ok(response) if response.status() == StatusCode::OK => IngestStatus::Duplicate,
        Ok(_) => IngestStatus::Accepted,
        Err(error) => error.counted_as(),
    };
    metrics::get().ingested(status, arrived.elapsed());
    answer
}

async fn receive(
    request: HttpRequest,
    token: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
    request_id: RequestId,
) -> Result<HttpResponse, IngestError> {
    let token = IngestToken::parse(&token).ok_or(IngestError::UnknownToken)?;
    let ingest = Ingest {
        state: &state,
        request_id,
    };
    let body = body::read_limited(&request, payload, state.max_body_bytes).await?;
    let headers = request.headers();
    let (token, id) = (&token, EventId::new());
    let generic_key = idempotency::generic_key(headers);
    // Most sources check no signature: for those, one statement looks the token up and
    // stores the event. Otherwise it answers with the provider, and the event is stored once
    // its signature holds.
    let first = ingest
        .store(arrived(
            token,
            id,
            &body,
            headers,
            false,
            generic_key.clone(),
        ))
        .await?;
    let (accepted, key) = match &first.provider {
        Some(provider) if first.stored.is_none() => {
            let provider: ProviderConfig = serde_json::from_value(provider.clone())
                .map_err(|e| IngestError::Misconfigured(e.to_string()))?;
            let validator = provider.validator();
            if let Err(rejection) = validator.verify(headers, &body, chrono::Utc::now().timestamp())
            {
                info!(ingest.log(), "event refused: its provider's signature does not hold";
                    "request_id" => %ingest.request_id,
                    "source_id" => %first.source_id,
                    "reason" => %rejection);
                return Err(IngestError::Signature(rejection));
            }
            let key =
                idempotency::bounded(validator.idempotency_key(headers, &body)).or(generic_key);
            let event = arrived(token, id, &body, headers, true, key.clone());
            (ingest.store(event).await?, key)
        }
        _ => (first, generic_key),
    };
    match (accepted.stored, key) {
        (Some(stored), _) => {
            for delivery in &accepted.deliveries {
                metrics::get().stored(delivery.subscription_id);
            }
            debug!(ingest.log(), "event stored";
                "request_id" => %ingest.request_id,
                "event_id" => %stored,
                "source_id" => %accepted.source_id,
                "subscription_id" => %SubscriptionIds(&accepted.deliveries));
            Ok(HttpResponse::Accepted().json(json!({ "event_id": stored })))
        }
        // Not stored although allowed: the key was seen before. The first event may have been
        // committed by a concurrent request after this statement began, so look it up anew.
        (None, Some(key)) => {
            let source = accepted.source_id;
            let first = state
                .db
                .run(async |conn| event::find_by_idempotency_key(conn, source, &key).await)
                .await
                .map_err(IngestError::Unavailable)?
                .ok_or_else(|| {
                    IngestError::Misconfigured("a duplicate key without its event".into())
                })?;
            debug!(ingest.log(), "event not stored again: its idempotency key was seen before";
                "request_id" => %ingest.request_id,
                "event_id" => %first,
                "source_id" => %source);
            Ok(HttpResponse::Ok().json(json!({ "event_id": first, "duplicate": true })))
        }
        (None, None) => Err(IngestError::Misconfigured(
            "the event was neither stored nor a duplicate".into(),
        )),
    }
}

/// The subscriptions an event was routed to, comma-separated: written out only when its log
/// line is, so ingest builds no string for a line at a level not logged.
struct SubscriptionIds<'a>(&'a [Routed]);

impl std::fmt::Display for SubscriptionIds<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, delivery) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            delivery.subscription_id.fmt(f)?;
        }
        Ok(())
    }
}

/// The event as it arrived, to store.
fn arrived(
    token: &IngestToken,
    id: EventId,
    body: &Bytes,
    headers: &HeaderMap,
    verified: bool,
    idempotency_key: Option<String>,
) -> NewEvent {
    NewEvent {
        token: token.clone(),
        verified,
        only: None,
        id,
        body: body.clone(),
        payload: body::as_document(body),
        content_type: headers
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned),
        headers: body::selected_headers(headers),
        idempotency_key,
    }
}

/// One ingest request's view of the app.
struct Ingest<'a> {
    state: &'a AppState,
    request_id: RequestId,
}

impl Ingest<'_> {
    fn log(&self) -> &Logger {
        &self.state.log
    }

    async fn store(&self, event: NewEvent) -> Result<Accepted, IngestError> {
        self.state
            .intake
            .store(event, self.request_id.clone())
            .await
            .map_err(IngestError::Unavailable)?
            .ok_or(IngestError::UnknownToken)
    }
}

/// Mounts the ingest route.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/ingest/{token}", web::post().to(ingest));
}
