//! `/api/v1/subscriptions`: create, list, get, edit, delete, rotate the secret, replay.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ApiError, ApiUser};
use crate::db::models::subscription::Subscription;
use crate::domain::SubscriptionId;
use crate::service::subscriptions::{self, ReplayIn, SubscriptionIn, SubscriptionPatch};
use crate::signing::incoming::ProviderConfig;
use crate::state::AppState;

/// A subscription as the API shows it to its owner.
#[derive(Debug, Serialize)]
pub struct SubscriptionOut {
    pub id: SubscriptionId,
    pub name: String,
    pub target_url: String,
    pub ingest_url: String,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub signing_secret: String,
    /// The provider checked at ingest, without its secret (write-only).
    pub provider: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A list of subscriptions.
#[derive(Debug, Serialize)]
pub struct SubscriptionList {
    pub data: Vec<SubscriptionOut>,
}

impl SubscriptionOut {
    fn new(subscription: Subscription, state: &AppState) -> Self {
        SubscriptionOut {
            ingest_url: state.ingest_url(&subscription.ingest_token),
            id: subscription.id,
            name: subscription.name,
            target_url: subscription.target_url,
            is_active: subscription.is_active,
            disabled_reason: subscription.disabled_reason,
            signing_secret: subscription.signing_secret,
            provider: subscription
                .provider
                .and_then(|stored| serde_json::from_value::<ProviderConfig>(stored).ok())
                .map(|provider| provider.public_view()),
            created_at: subscription.created_at,
            updated_at: subscription.updated_at,
        }
    }
}

/// `POST /api/v1/subscriptions`
pub async fn create(
    user: ApiUser,
    state: web::Data<AppState>,
    input: web::Json<SubscriptionIn>,
) -> Result<HttpResponse, ApiError> {
    let created = subscriptions::create(&state, user.0, input.into_inner()).await?;
    Ok(HttpResponse::Created().json(SubscriptionOut::new(created, &state)))
}

/// `GET /api/v1/subscriptions`
pub async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let data = subscriptions::list(&state, user.0)
        .await?
        .into_iter()
        .map(|s| SubscriptionOut::new(s, &state))
        .collect();
    Ok(HttpResponse::Ok().json(SubscriptionList { data }))
}

/// `GET /api/v1/subscriptions/{id}`
pub async fn get(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let found = subscriptions::get(&state, user.0, SubscriptionId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(found, &state)))
}

/// `PATCH /api/v1/subscriptions/{id}`
pub async fn edit(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    patch: web::Json<SubscriptionPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let updated = subscriptions::edit(&state, user.0, id, patch.into_inner()).await?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(updated, &state)))
}

/// `POST /api/v1/subscriptions/{id}/rotate-secret`
pub async fn rotate_secret(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let rotated = subscriptions::rotate_secret(&state, user.0, id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(rotated, &state)))
}

/// `POST /api/v1/subscriptions/{id}/replay`: `{"status", "since", "until"}`, all optional.
/// Answers at once with how many events are queued; they go out in the background.
pub async fn replay(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    input: web::Json<ReplayIn>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let replayed =
        subscriptions::replay(state.into_inner(), user.0, id, input.into_inner()).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "replayed": replayed })))
}

/// `DELETE /api/v1/subscriptions/{id}`: the subscription and its events.
pub async fn delete(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    subscriptions::delete(&state, user.0, SubscriptionId(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}
