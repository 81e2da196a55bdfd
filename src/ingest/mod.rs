//! `POST /ingest/{token}`: make the event durable, answer 202, then hand it to the publisher.

mod body;
mod idempotency;
pub(crate) mod intake;
mod refusals;
mod routes;
mod target;

pub use intake::Intake;
pub use refusals::Refusals;
pub use routes::Routes;

/// What ingest needs, shared by one HTTP worker's requests.
pub struct IngestState {
    pub db: Database,
    /// Stores events, in batches, on this worker's connections.
    pub intake: Intake,
    /// How each source routes its events, as this process last read it (shared by its workers).
    pub routes: Arc<Routes>,
    /// The largest body accepted.
    pub max_body_bytes: usize,
    /// The relay's public URL, without a trailing `/`: the URL providers sign starts with it.
    pub public_base: String,
    /// Bounds how many refused requests are written down at once.
    pub refusals: Arc<refusals::Refusals>,
    pub log: Logger,
}

use std::sync::Arc;
use std::time::Instant;

use crate::db::models::event::{self, Accepted, NewEvent, Routed};
use crate::db::models::source;
use crate::db::{Database, DbError};
use crate::domain::{EventId, FilterInput, IngestResponse, IngestToken, RequestId, query_object};
use crate::metrics::{self, IngestStatus};
use crate::problem::Problem;
use crate::signing::incoming::{Answer, Incoming, Rejection};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use routes::{Admission, Refusal, Route};
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
    /// The path after the token, or the query, cannot be kept or forwarded.
    #[error("{0}")]
    BadPath(&'static str),
    /// The source's check refused the request: a signature missing, wrong or stale, wrong
    /// credentials, a refused handshake, or a method other than `POST`.
    #[error("{}", refused_text(*.rejection))]
    Refused {
        rejection: Rejection,
        /// The source takes HTTP Basic credentials, so a 401 says so.
        basic: bool,
    },
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
            IngestError::BadBody(_) | IngestError::BadPath(_) => IngestStatus::BadRequest,
            IngestError::Refused { rejection, .. } => match rejection {
                Rejection::WrongMethod => IngestStatus::MethodNotAllowed,
                Rejection::Handshake => IngestStatus::Forbidden,
                _ => IngestStatus::Unauthorized,
            },
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
            IngestError::BadBody(_) | IngestError::BadPath(_) => StatusCode::BAD_REQUEST,
            IngestError::Refused { rejection, .. } => match rejection {
                Rejection::WrongMethod => StatusCode::METHOD_NOT_ALLOWED,
                Rejection::Handshake => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            },
            IngestError::Misconfigured(_) => StatusCode::INTERNAL_SERVER_ERROR,
            IngestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let title = match self {
            IngestError::UnknownToken => "Not Found",
            IngestError::TooLarge { .. } => "Payload Too Large",
            IngestError::BadBody(_) | IngestError::BadPath(_) => "Bad Request",
            IngestError::Refused { .. } => self
                .status_code()
                .canonical_reason()
                .unwrap_or("Unauthorized"),
            IngestError::Misconfigured(_) => "Internal Server Error",
            IngestError::Unavailable(_) => "Service Unavailable",
        };
        let mut response = Problem::new(self.status_code(), title, self.to_string()).response();
        let headers = response.headers_mut();
        match self {
            IngestError::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            IngestError::Refused {
                rejection: Rejection::WrongMethod,
                ..
            } => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            IngestError::Refused {
                rejection: Rejection::Credentials,
                basic: true,
            } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"spenza\", charset=\"UTF-8\""),
                );
            }
            _ => {}
        }
        response
    }
}

/// What a provider is told when its request is refused.
fn refused_text(rejection: Rejection) -> String {
    match rejection {
        Rejection::WrongMethod | Rejection::Handshake | Rejection::Credentials => {
            rejection.to_string()
        }
        _ => format!("signature check failed: {rejection}"),
    }
}

/// Stores the event and answers 202 with its id once it is committed; the intake publishes it
/// without making the provider wait for the broker (if publishing fails its deliveries are still
/// due in PostgreSQL and the reaper publishes them). A source that names its provider has the
/// provider's signature checked before anything is stored; a repeated idempotency key answers
/// 200 with the first event's id. Every answer is counted, with the time it took.
pub async fn ingest(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
    request_id: RequestId,
) -> Result<HttpResponse, IngestError> {
    let arrived = Instant::now();
    let answer = receive(request, payload, state, request_id).await;
    let status = match &answer {
        Ok(Answered::Handshake(_)) => IngestStatus::Handshake,
        Ok(Answered::Duplicate(_)) => IngestStatus::Duplicate,
        Ok(Answered::Stored(_)) => IngestStatus::Accepted,
        Err(error) => error.counted_as(),
    };
    metrics::get().ingested(status, arrived.elapsed());
    answer.map(Answered::into_response)
}

/// How an ingest request was answered, so that it is counted as what it was whatever status
/// its source answers with.
enum Answered {
    Handshake(HttpResponse),
    Stored(HttpResponse),
    Duplicate(HttpResponse),
}

impl Answered {
    fn into_response(self) -> HttpResponse {
        match self {
            Answered::Handshake(response)
            | Answered::Stored(response)
            | Answered::Duplicate(response) => response,
        }
    }
}

/// How many times an event is routed anew when its source's routing changed while it was
/// being stored; past it the provider is asked to retry.
const ROUTING_TRIES: usize = 3;

async fn receive(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
    request_id: RequestId,
) -> Result<Answered, IngestError> {
    let token = request
        .match_info()
        .get("token")
        .and_then(IngestToken::parse)
        .ok_or(IngestError::UnknownToken)?;
    let ingest = Ingest {
        state: &state,
        request_id,
    };
    let (path, query) = target::path_and_query(&request, &token)?;
    let body = body::read_limited(&request, payload, state.max_body_bytes).await?;
    let headers = request.headers();
    let url = format!("{}{}", state.public_base, request.uri());
    let mut incoming = Incoming::new(
        request.method(),
        headers,
        &query,
        &body,
        &url,
        chrono::Utc::now().timestamp(),
    );
    let id = EventId::new();
    let generic_key = idempotency::generic_key(headers);
    for _ in 0..ROUTING_TRIES {
        let route = match ingest.admit(&token, &incoming, &path).await? {
            (route, Admission::Event) => route,
            (route, Admission::Handshake(answer)) => {
                return Ok(Answered::Handshake(ingest.answer_handshake(&route, answer)));
            }
        };
        let key = route
            .validator
            .as_ref()
            .and_then(|validator| idempotency::bounded(validator.idempotency_key(&incoming)))
            .or_else(|| generic_key.clone());
        let payload = incoming.take_document();
        let kept_headers = body::selected_headers(headers, route.credential_header.as_deref());
        let kept_query = match &route.credential_query {
            Some(name) => body::without_param(&query, name, None),
            None => query.clone(),
        };
        let routes = route.matching(&FilterInput {
            body: payload.as_ref(),
            headers: &kept_headers,
            query: &query_object(&kept_query),
            path: &path,
        });
        let event = NewEvent {
            token: token.clone(),
            routing_version: Some(route.version),
            routes,
            id,
            body: body.clone(),
            payload,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
            headers: kept_headers,
            path: path.clone(),
            query: kept_query,
            idempotency_key: key.clone(),
        };
        let accepted = match ingest.store(event).await {
            Err(IngestError::UnknownToken) => {
                state.routes.forget(&token);
                return Err(IngestError::UnknownToken);
            }
            answer => answer?,
        };
        if !accepted.current {
            state.routes.forget(&token);
            continue;
        }
        return ingest.answer(accepted, key, route.response.as_ref()).await;
    }
    Err(IngestError::Unavailable(DbError::Unavailable(
        "the source's routing kept changing while the event was stored".into(),
    )))
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

/// One ingest request's view of the app.
struct Ingest<'a> {
    state: &'a IngestState,
    request_id: RequestId,
}

impl Ingest<'_> {
    fn log(&self) -> &Logger {
        &self.state.log
    }

    /// How the token's source routes its events: as this process last read it, or read now.
    async fn route(&self, token: &IngestToken) -> Result<Arc<Route>, IngestError> {
        if let Some(route) = self.state.routes.get(token) {
            return Ok(route);
        }
        let routing = self
            .state
            .db
            .run(async |conn| source::routing_for_token(conn, token.as_str()).await)
            .await
            .map_err(IngestError::Unavailable)?
            .ok_or(IngestError::UnknownToken)?;
        let route = Arc::new(
            Route::new(routing).map_err(|error| IngestError::Misconfigured(error.to_string()))?,
        );
        self.state.routes.keep(token, route.clone());
        Ok(route)
    }

    /// The token's route and what its check makes of the request. A refusal stands only
    /// against the source as it is now: the route kept may be out of date (a new secret, or
    /// the source is gone), so it is read again before refusing. A refusal is counted and
    /// written down for the source's page.
    async fn admit(
        &self,
        token: &IngestToken,
        request: &Incoming<'_>,
        target: &str,
    ) -> Result<(Arc<Route>, Admission), IngestError> {
        let route = self.route(token).await?;
        if let Ok(admission) = route.admit(request) {
            return Ok((route, admission));
        }
        self.state.routes.forget(token);
        let route = self.route(token).await?;
        match route.admit(request) {
            Ok(admission) => Ok((route, admission)),
            Err(refusal) => Err(self.refuse(&route, request, target, refusal).await),
        }
    }

    async fn refuse(
        &self,
        route: &Route,
        request: &Incoming<'_>,
        target: &str,
        refusal: Refusal,
    ) -> IngestError {
        let Refusal {
            rejection,
            handshake,
        } = refusal;
        info!(self.log(), "request refused by its source's check";
            "request_id" => %self.request_id,
            "source_id" => %route.source_id,
            "kind" => route.kind,
            "handshake" => handshake,
            "reason" => rejection.reason());
        metrics::get().rejected(route.kind, rejection);
        self.state
            .refusals
            .write_down(&self.state.db, route, request, target, refusal, self.log())
            .await;
        IngestError::Refused {
            rejection,
            basic: route.kind == "basic",
        }
    }

    /// The relay's answer to the provider's handshake, noted on the source.
    fn answer_handshake(&self, route: &Route, answer: Answer) -> HttpResponse {
        info!(self.log(), "handshake answered";
            "request_id" => %self.request_id,
            "source_id" => %route.source_id,
            "kind" => route.kind);
        self.state
            .refusals
            .note_handshake(&self.state.db, route.source_id, self.log());
        HttpResponse::Ok()
            .content_type(answer.content_type)
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(answer.body)
    }

    async fn store(&self, event: NewEvent) -> Result<Accepted, IngestError> {
        self.state
            .intake
            .store(event, self.request_id.clone())
            .await
            .map_err(IngestError::Unavailable)?
            .ok_or(IngestError::UnknownToken)
    }

    /// The answer to an event its current route was applied to: 202 when it was stored, 200
    /// with the first event's id when its key was seen before; or what the source says to
    /// answer instead.
    async fn answer(
        &self,
        accepted: Accepted,
        key: Option<String>,
        response: Option<&IngestResponse>,
    ) -> Result<Answered, IngestError> {
        match (accepted.stored, key) {
            (Some(stored), _) => {
                for delivery in &accepted.deliveries {
                    metrics::get().stored(delivery.subscription_id);
                }
                debug!(self.log(), "event stored";
                    "request_id" => %self.request_id,
                    "event_id" => %stored,
                    "source_id" => %accepted.source_id,
                    "subscription_id" => %SubscriptionIds(&accepted.deliveries));
                Ok(Answered::Stored(respond(
                    response,
                    StatusCode::ACCEPTED,
                    json!({ "event_id": stored }),
                )))
            }
            // Not stored although current: the key was seen before. The first event may have
            // been committed by a concurrent request after this statement began, so look it up
            // anew.
            (None, Some(key)) => {
                let source = accepted.source_id;
                let first = self
                    .state
                    .db
                    .run(async |conn| event::find_by_idempotency_key(conn, source, &key).await)
                    .await
                    .map_err(IngestError::Unavailable)?
                    .ok_or_else(|| {
                        IngestError::Misconfigured("a duplicate key without its event".into())
                    })?;
                debug!(self.log(), "event not stored again: its idempotency key was seen before";
                    "request_id" => %self.request_id,
                    "event_id" => %first,
                    "source_id" => %source);
                Ok(Answered::Duplicate(respond(
                    response,
                    StatusCode::OK,
                    json!({ "event_id": first, "duplicate": true }),
                )))
            }
            (None, None) => Err(IngestError::Misconfigured(
                "the event was neither stored nor a duplicate".into(),
            )),
        }
    }
}

/// The answer to an accepted request: the source's own when it sets one (its body, or the
/// default JSON under its status), otherwise `default` and its JSON.
fn respond(
    response: Option<&IngestResponse>,
    default: StatusCode,
    json: serde_json::Value,
) -> HttpResponse {
    let Some(response) = response else {
        return HttpResponse::build(default).json(json);
    };
    let status = StatusCode::from_u16(response.status).unwrap_or(default);
    let mut answer = HttpResponse::build(status);
    match response.custom_body() {
        _ if status == StatusCode::NO_CONTENT => answer.finish(),
        Some((body, content_type)) => answer.content_type(content_type).body(body.to_owned()),
        None => answer.json(json),
    }
}

/// Mounts the ingest routes: the token alone, or followed by a path. Every method reaches
/// ingest: events come by `POST`, providers' handshakes by `GET` or `POST`, and anything else is
/// refused (405) by the source's check, so that the source's page shows it.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/ingest/{token}", web::route().to(ingest))
        .route("/ingest/{token}/{rest:.*}", web::route().to(ingest));
}
