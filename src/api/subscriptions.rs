//! `/api/v1/subscriptions`: create, list, get, edit, delete, rotate the secret, replay.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::responses::{
    BadRequest, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{ApiCaller, ApiError};
use crate::db::models::subscription::Subscription;
use crate::domain::{Policy, RateLimit, SourceId, SubscriptionId, SubscriptionKind, compact_delay};
use crate::service::subscriptions::{self, ReplayIn, SubscriptionIn, SubscriptionPatch};
use crate::service::{Actor, Permission};
use crate::signing::incoming::ProviderConfig;
use crate::state::AppState;

/// A subscription as the API shows it to its owner.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: SubscriptionId,
    /// The source whose events it receives.
    pub source_id: SourceId,
    pub name: String,
    /// How it delivers: `http`, to `target_url`; or `cli`, to the `spenza listen` sessions
    /// connected to it (made by `spenza listen`; `target_url` then only names it).
    pub kind: SubscriptionKind,
    /// Where events are delivered.
    pub target_url: String,
    /// Where providers send its source's events; null for a viewer key: it lets anyone who has
    /// it send events.
    #[schema(required = true)]
    pub ingest_url: Option<String>,
    /// Whether events are delivered: false while its owner has paused it or the circuit breaker
    /// has disabled it, and its events are stored and held meanwhile.
    pub is_active: bool,
    /// Why the circuit breaker disabled the subscription; null when it did not.
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// The secret deliveries are signed with (`webhook-signature`, `X-Spenza-Signature`); null
    /// for a viewer key, whose role may not see secrets. Every answer that carries it is in the
    /// audit log as `subscription.secret_revealed`, but for those of `create` and
    /// `rotate-secret`, themselves recorded.
    #[schema(required = true)]
    pub signing_secret: Option<String>,
    /// Its source's provider check, without its secret (write-only).
    #[schema(value_type = Option<Object>, required = true)]
    pub provider: Option<serde_json::Value>,
    /// Which of its source's events it receives; null for every event.
    #[schema(value_type = Option<Object>, required = true)]
    pub filter: Option<serde_json::Value>,
    /// Whether the path and query each event arrived with are appended to the target URL.
    pub forward_path: bool,
    /// How its deliveries are made, where not as the process-wide settings say.
    pub policy: PolicyOut,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscription's delivery policy: each field null (or, for `headers`, empty) follows the
/// process-wide setting.
#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyOut {
    /// The waits before each retry, such as `["5s", "1m"]`.
    #[schema(required = true)]
    pub retry_schedule: Option<Vec<String>>,
    /// How long an attempt may take, such as `"10s"`.
    #[schema(required = true)]
    pub timeout: Option<String>,
    /// Attempts at the endpoint at once, per delivering process.
    #[schema(required = true)]
    pub max_in_flight: Option<u32>,
    #[schema(required = true)]
    pub rate_limit: Option<RateLimit>,
    /// How long the oldest undelivered event may wait before a `subscription_lagging` issue
    /// opens, such as `"15m"`.
    #[schema(required = true)]
    pub lag_threshold: Option<String>,
    /// The names of the extra headers added to every delivery; their values are write-only.
    pub headers: Vec<String>,
}

impl From<Policy> for PolicyOut {
    fn from(policy: Policy) -> Self {
        let text = |ms: u64| compact_delay(std::time::Duration::from_millis(ms));
        PolicyOut {
            retry_schedule: policy
                .retry_schedule_ms
                .map(|delays| delays.into_iter().map(text).collect()),
            timeout: policy.timeout_ms.map(text),
            max_in_flight: policy.max_in_flight,
            rate_limit: policy.rate_limit,
            lag_threshold: policy.lag_threshold_ms.map(text),
            headers: policy.headers.into_keys().collect(),
        }
    }
}

/// A list of subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub data: Vec<SubscriptionOut>,
}

/// How many events a bulk replay queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Replayed {
    /// How many events are queued to be delivered again.
    pub replayed: i64,
}

impl SubscriptionOut {
    /// The answer for `caller`: the signing secret only when their role may see secrets.
    fn new(subscription: Subscription, state: &AppState, caller: &Actor) -> Self {
        SubscriptionOut {
            ingest_url: state.ingest_url_for(&subscription.ingest_token, caller),
            id: subscription.id,
            source_id: subscription.source_id,
            name: subscription.name,
            kind: subscription.kind,
            target_url: subscription.target_url,
            is_active: subscription.is_active,
            disabled_reason: subscription.disabled_reason,
            signing_secret: caller
                .may(Permission::Secrets)
                .then_some(subscription.signing_secret),
            provider: subscription
                .provider
                .and_then(|stored| serde_json::from_value::<ProviderConfig>(stored).ok())
                .map(|provider| provider.public_view()),
            filter: subscription.filter,
            forward_path: subscription.forward_path,
            policy: Policy::from_stored(&subscription.policy).into(),
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
        }
    }
}

/// Records that an answer shows these subscriptions' signing secrets, when the caller's role
/// lets it.
async fn shown(
    state: &AppState,
    caller: &Actor,
    ids: impl IntoIterator<Item = SubscriptionId>,
) -> Result<(), ApiError> {
    if caller.may(Permission::Secrets) {
        subscriptions::secrets_shown(state, caller, ids).await?;
    }
    Ok(())
}

/// `POST /api/v1/subscriptions`
#[utoipa::path(
    post,
    path = "/api/v1/subscriptions",
    tag = "subscriptions",
    operation_id = "create_subscription",
    summary = "Create a subscription",
    request_body = SubscriptionIn,
    responses(
        (status = 201, description = "The subscription, created", body = SubscriptionOut),
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
    input: web::Json<SubscriptionIn>,
) -> Result<HttpResponse, ApiError> {
    let created = subscriptions::create(&state, &caller.0, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(SubscriptionOut::new(created, &state, &caller.0)))
}

/// `GET /api/v1/subscriptions`
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions",
    tag = "subscriptions",
    operation_id = "list_subscriptions",
    summary = "List the workspace's subscriptions",
    responses(
        (status = 200, description = "The workspace's subscriptions, oldest first", body = SubscriptionList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(caller: ApiCaller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let found = subscriptions::list(&state, &caller.0).await?;
    shown(&state, &caller.0, found.iter().map(|s| s.id)).await?;
    let data = found
        .into_iter()
        .map(|s| SubscriptionOut::new(s, &state, &caller.0))
        .collect();
    Ok(HttpResponse::Ok().json(SubscriptionList { data }))
}

/// `GET /api/v1/subscriptions/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{id}",
    tag = "subscriptions",
    operation_id = "get_subscription",
    summary = "Get a subscription",
    params(("id" = SubscriptionId, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionOut),
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
    let found = subscriptions::get(&state, &caller.0, SubscriptionId(id.into_inner())).await?;
    shown(&state, &caller.0, [found.id]).await?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(found, &state, &caller.0)))
}

/// `PATCH /api/v1/subscriptions/{id}`
#[utoipa::path(
    patch,
    path = "/api/v1/subscriptions/{id}",
    tag = "subscriptions",
    operation_id = "edit_subscription",
    summary = "Edit a subscription",
    description = "Every field is optional. `is_active: false` pauses deliveries; `is_active: true` resumes them, clears why the circuit breaker disabled the subscription, and delivers the events held meanwhile.",
    params(("id" = SubscriptionId, Path, description = "The subscription's id")),
    request_body = SubscriptionPatch,
    responses(
        (status = 200, description = "The subscription, edited", body = SubscriptionOut),
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
    patch: web::Json<SubscriptionPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let updated = subscriptions::edit(&state, &caller.0, id, patch.into_inner()).await?;
    shown(&state, &caller.0, [updated.id]).await?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(updated, &state, &caller.0)))
}

/// `POST /api/v1/subscriptions/{id}/rotate-secret`
#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{id}/rotate-secret",
    tag = "subscriptions",
    operation_id = "rotate_subscription_secret",
    summary = "Rotate the signing secret",
    description = "The previous secret keeps signing deliveries beside the new one for the configured overlap, so that receivers can switch without refusing any.",
    params(("id" = SubscriptionId, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription with its new signing secret", body = SubscriptionOut),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn rotate_secret(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let rotated = subscriptions::rotate_secret(&state, &caller.0, id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(rotated, &state, &caller.0)))
}

/// `POST /api/v1/subscriptions/{id}/replay`: `{"status", "since", "until"}`, all optional.
/// Answers at once with how many events are queued; they go out in the background.
#[utoipa::path(
    post,
    path = "/api/v1/subscriptions/{id}/replay",
    tag = "subscriptions",
    operation_id = "replay_subscription",
    summary = "Replay a subscription's events in bulk",
    description = "Delivers again every event of the subscription with the status (default `failed`) received in `[since, until)`. Answers at once with how many events are queued; they go out in the background.",
    params(("id" = SubscriptionId, Path, description = "The subscription's id")),
    request_body = ReplayIn,
    responses(
        (status = 202, description = "How many events are queued; they go out in the background", body = Replayed),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn replay(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    input: web::Json<ReplayIn>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let replayed =
        subscriptions::replay(state.into_inner(), &caller.0, id, input.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(Replayed { replayed }))
}

/// `DELETE /api/v1/subscriptions/{id}`: the subscription and its deliveries; a source made for
/// it goes too, with its events, once no subscription uses it.
#[utoipa::path(
    delete,
    path = "/api/v1/subscriptions/{id}",
    tag = "subscriptions",
    operation_id = "delete_subscription",
    summary = "Delete a subscription and its deliveries",
    description = "A source made for the subscription (it was created without `source_id`) is deleted with it, with its ingest URL and events, unless another subscription uses it.",
    params(("id" = SubscriptionId, Path, description = "The subscription's id")),
    responses(
        (status = 204, description = "The subscription and its deliveries are deleted"),
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
    subscriptions::delete(&state, &caller.0, SubscriptionId(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}
