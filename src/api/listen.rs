//! `GET /api/v1/listen`: the WebSocket `spenza listen` holds. Authenticated by the API key
//! alone (no cookie is read, so no `Origin` check applies); everything that can be refused is
//! refused before the upgrade, as a problem the CLI shows.

use actix_web::{HttpRequest, HttpResponse, web};
use slog::o;

use super::{ApiCaller, ApiError};
use crate::listen::Session;
use crate::listen::protocol::{ListenQuery, ToCli};
use crate::service;
use crate::state::AppState;

/// The largest frame a CLI sends: an outcome, whose answer body is cut to a few KiB.
const MAX_FRAME: usize = 64 * 1024;

/// `GET /api/v1/listen`
#[utoipa::path(
    get,
    path = "/api/v1/listen",
    tag = "listen",
    operation_id = "listen",
    summary = "Receive a source's events over a WebSocket, as `spenza listen` does",
    description = "Upgrades to a WebSocket on which the relay sends the source's events, as \
        JSON text frames, to forward locally, and the client reports each outcome. It attaches \
        to the source's subscription of kind `cli` with the name given, made on the first \
        `listen` with it. See the README's local development section for the frames.",
    params(
        ("source" = String, Query, description = "The source: its id or its name"),
        ("name" = String, Query, description = "The listen subscription's name"),
        ("filter" = Option<String>, Query, description = "Its filter, as JSON; every event without it"),
        ("retry" = Option<bool>, Query, description = "Whether a local failure is retried on the subscription's schedule"),
    ),
    responses(
        (status = 101, description = "The WebSocket"),
        (status = 400, response = super::responses::BadRequest),
        (status = 401, response = super::responses::Unauthorized),
        (status = 403, response = super::responses::Forbidden),
        (status = 404, response = super::responses::NotFound),
        (status = 409, response = super::responses::Conflict),
        (status = 422, response = super::responses::Invalid),
        (status = 429, description = "As many sessions of the key's user are connected as the relay allows", body = crate::problem::Problem, content_type = "application/problem+json"),
        (status = 500, response = super::responses::Unexpected),
        (status = 503, response = super::responses::Unavailable),
    ),
    security(("bearer" = []))
)]
pub async fn connect(
    request: HttpRequest,
    body: web::Payload,
    ApiCaller(actor): ApiCaller,
    state: web::Data<AppState>,
    query: web::Query<ListenQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let attached = service::listen::attach(&state, &actor, &query).await?;
    let subscription = attached.subscription.id;
    let id = service::listen::open_session(&state, &actor, subscription).await?;
    let (response, ws, stream) = match actix_ws::handle(&request, body) {
        Ok(handled) => handled,
        Err(error) => {
            let _ = state
                .db
                .run(async |conn| crate::db::models::listen_session::close(conn, id).await)
                .await;
            return Err(ApiError::BadRequest(error.to_string()));
        }
    };
    let session = Session {
        id,
        subscription,
        ready: ToCli::Ready {
            subscription_id: subscription,
            subscription_name: attached.subscription.name,
            source_id: attached.source.id,
            source_name: attached.source.name,
            in_flight: state.listen.in_flight,
        },
        retry: query.retry,
        db: state.db.clone(),
        publisher: state.publisher.clone(),
        live: state.live.clone(),
        config: state.listen.clone(),
        shutdown: state.shutdown.clone(),
        log: state.log.new(o!(
            "component" => "listen",
            "listen_session" => id.to_string(),
            "subscription_id" => subscription.to_string(),
        )),
    };
    actix_web::rt::spawn(session.run(ws, stream.max_frame_size(MAX_FRAME)));
    Ok(response)
}
