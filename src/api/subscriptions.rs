//! `/api/v1/subscriptions`: create, list, get, edit, delete.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::validated::Valid;
use super::{ApiError, ApiUser};
use crate::db::models::event::{self, ReplayFilter};
use crate::db::models::subscription::{self, NewSubscription, Subscription, SubscriptionChanges};
use crate::delivery::publish_due;
use crate::domain::{EventStatus, IngestToken, SigningSecret, SubscriptionId, TargetUrl};
use crate::problem::FieldError;
use crate::signing::incoming::ProviderConfig;
use crate::state::AppState;

/// A subscription to create.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    #[garde(length(chars, min = 1, max = 200))]
    pub name: String,
    #[garde(custom(valid_target_url))]
    pub target_url: String,
    /// The provider whose signatures ingest checks; absent or null for none.
    #[serde(default)]
    #[garde(custom(valid_provider))]
    pub provider: Option<ProviderConfig>,
}

/// An edit: every field is optional.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatch {
    #[garde(length(chars, min = 1, max = 200))]
    pub name: Option<String>,
    #[garde(custom(valid_optional_target_url))]
    pub target_url: Option<String>,
    #[garde(skip)]
    pub is_active: Option<bool>,
    /// Absent: unchanged; null: check no signature; an object: the new provider.
    #[serde(default, deserialize_with = "present")]
    #[garde(custom(valid_changed_provider))]
    pub provider: Option<Option<ProviderConfig>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn valid_provider(value: &Option<ProviderConfig>, _: &()) -> garde::Result {
    match value {
        Some(provider) => provider.check().map_err(garde::Error::new),
        None => Ok(()),
    }
}

fn valid_changed_provider(value: &Option<Option<ProviderConfig>>, context: &()) -> garde::Result {
    value
        .as_ref()
        .map_or(Ok(()), |provider| valid_provider(provider, context))
}

fn stored(provider: &ProviderConfig) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(provider).map_err(|e| ApiError::Unexpected(e.into()))
}

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

fn valid_target_url(value: &str, _: &()) -> garde::Result {
    TargetUrl::parse(value)
        .map(drop)
        .map_err(|e| garde::Error::new(e.to_string()))
}

fn valid_optional_target_url(value: &Option<String>, context: &()) -> garde::Result {
    value
        .as_deref()
        .map_or(Ok(()), |url| valid_target_url(url, context))
}

/// A target URL deliveries may go to: well formed, and not an IP literal the SSRF guard refuses
/// (names are checked each time they resolve).
fn deliverable(state: &AppState, raw: &str) -> Result<TargetUrl, ApiError> {
    let invalid = |message: String| {
        ApiError::Invalid(vec![FieldError {
            field: "target_url".into(),
            message,
        }])
    };
    let url = TargetUrl::parse(raw).map_err(|e| invalid(e.to_string()))?;
    match state.target_policy.refusal_for_literal(url.url()) {
        Some(refusal) => Err(invalid(refusal)),
        None => Ok(url),
    }
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
    Valid(input): Valid<SubscriptionIn>,
) -> Result<HttpResponse, ApiError> {
    let target_url = deliverable(&state, &input.target_url)?;
    let token = IngestToken::generate();
    let secret = SigningSecret::generate();
    let new = NewSubscription {
        id: SubscriptionId(Uuid::new_v4()),
        user_id: user.0,
        name: input.name.trim(),
        target_url: target_url.as_str(),
        ingest_token: token.as_str(),
        signing_secret: secret.expose(),
        provider: input.provider.as_ref().map(stored).transpose()?,
    };
    let created = state
        .db
        .run(async |conn| subscription::insert(conn, &new).await)
        .await?;
    Ok(HttpResponse::Created().json(SubscriptionOut::new(created, &state)))
}

/// `GET /api/v1/subscriptions`
pub async fn list(user: ApiUser, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let subscriptions = state
        .db
        .run(async |conn| subscription::list_for_user(conn, user.0).await)
        .await?;
    let data = subscriptions
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
    let id = SubscriptionId(id.into_inner());
    let found = state
        .db
        .run(async |conn| subscription::find_for_user(conn, user.0, id).await)
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(found, &state)))
}

/// `PATCH /api/v1/subscriptions/{id}`
pub async fn edit(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    Valid(patch): Valid<SubscriptionPatch>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let target_url = patch
        .target_url
        .as_deref()
        .map(|url| deliverable(&state, url))
        .transpose()?;
    let changes = SubscriptionChanges {
        name: patch.name.as_deref().map(str::trim),
        target_url: target_url.as_ref().map(TargetUrl::as_str),
        is_active: patch.is_active,
        // Re-enabling clears why it was disabled and gives the endpoint a fresh count.
        disabled_reason: patch.is_active.filter(|active| *active).map(|_| None),
        consecutive_failures: patch.is_active.filter(|active| *active).map(|_| 0),
        provider: patch
            .provider
            .as_ref()
            .map(|provider| provider.as_ref().map(stored).transpose())
            .transpose()?,
    };
    let reenabled = patch.is_active == Some(true);
    let (updated, held) = state
        .db
        .run(async |conn| {
            // One transaction: re-enabled and released together, or neither.
            conn.transaction(async |conn| {
                let Some(updated) =
                    subscription::update_for_user(conn, user.0, id, &changes).await?
                else {
                    return Ok(None);
                };
                // Deliver what was held while it was disabled.
                let held = if reenabled {
                    event::release_held(conn, id).await?
                } else {
                    Vec::new()
                };
                Ok(Some((updated, held)))
            })
            .await
        })
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    publish_due(&state.publisher, &held).await;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(updated, &state)))
}

/// `POST /api/v1/subscriptions/{id}/rotate-secret`: a new signing secret; the previous one
/// keeps signing deliveries beside it for the configured overlap.
pub async fn rotate_secret(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let secret = SigningSecret::generate();
    let previous_until = Utc::now() + state.secret_rotation_overlap;
    let rotated = state
        .db
        .run(async |conn| {
            subscription::rotate_secret(conn, user.0, id, secret.expose(), previous_until).await
        })
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    Ok(HttpResponse::Ok().json(SubscriptionOut::new(rotated, &state)))
}

/// Which events a bulk replay takes: one status (default `failed`), received in a time range.
#[derive(Debug, Default, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    #[garde(custom(final_status))]
    pub status: Option<EventStatus>,
    #[garde(skip)]
    pub since: Option<DateTime<Utc>>,
    #[garde(skip)]
    pub until: Option<DateTime<Utc>>,
}

fn final_status(value: &Option<EventStatus>, _: &()) -> garde::Result {
    match value {
        Some(status) if !status.is_final() => Err(garde::Error::new(
            "only completed or failed events can be replayed",
        )),
        _ => Ok(()),
    }
}

/// `POST /api/v1/subscriptions/{id}/replay`: delivers again every event of the subscription
/// with the status (default `failed`) received in `[since, until)`.
pub async fn replay(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    Valid(input): Valid<ReplayIn>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let filter = ReplayFilter {
        status: input.status.unwrap_or(EventStatus::Failed),
        since: input.since,
        until: input.until,
    };
    let due = state
        .db
        .run(async |conn| {
            if subscription::find_for_user(conn, user.0, id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            event::replay_subscription(conn, id, filter).await.map(Some)
        })
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    publish_due(&state.publisher, &due).await;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "replayed": due.len() })))
}

/// `DELETE /api/v1/subscriptions/{id}`: the subscription and its events.
pub async fn delete(
    user: ApiUser,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = SubscriptionId(id.into_inner());
    let deleted = state
        .db
        .run(async |conn| subscription::delete_for_user(conn, user.0, id).await)
        .await?;
    if deleted {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("subscription"))
    }
}
