//! Sources: what faces a provider (a name, the ingest URL and the provider check), and the
//! subscriptions that route its events.

use garde::Validate;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::ServiceError;
use super::subscriptions::{
    present, stored, valid_changed_provider, valid_name, valid_optional_name, valid_provider,
};
use crate::db::models::event::{self, EventLine};
use crate::db::models::source::{self, NewSource, Source, SourceChanges};
use crate::db::models::subscription::{self, Subscription};
use crate::domain::{EventId, IngestToken, SourceId, UserId};
use crate::signing::incoming::ProviderConfig;
use crate::state::AppState;

/// A source to create.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceIn {
    /// Not blank, and at most 200 characters once trimmed.
    #[garde(custom(valid_name))]
    pub name: String,
    /// The provider whose signatures ingest checks; absent or null for none.
    #[serde(default)]
    #[garde(custom(valid_provider))]
    pub provider: Option<ProviderConfig>,
}

/// An edit: every field is optional.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcePatch {
    #[garde(custom(valid_optional_name))]
    pub name: Option<String>,
    /// Absent: unchanged; null: check no signature; an object: the new provider.
    #[serde(default, deserialize_with = "present")]
    #[garde(custom(valid_changed_provider))]
    pub provider: Option<Option<ProviderConfig>>,
}

/// Creates a source for `user` with a fresh ingest token.
pub async fn create(
    state: &AppState,
    user: UserId,
    input: SourceIn,
) -> Result<Source, ServiceError> {
    input.validate()?;
    let token = IngestToken::generate();
    let new = NewSource {
        id: SourceId(Uuid::new_v4()),
        user_id: user,
        name: input.name.trim(),
        ingest_token: token.as_str(),
        provider: input.provider.as_ref().map(stored).transpose()?,
        implicit: false,
    };
    Ok(state
        .db
        .run(async |conn| source::insert(conn, &new).await)
        .await?)
}

/// A user's sources, oldest first.
pub async fn list(state: &AppState, user: UserId) -> Result<Vec<Source>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| source::list_for_user(conn, user).await)
        .await?)
}

/// One of a user's sources.
pub async fn get(state: &AppState, user: UserId, id: SourceId) -> Result<Source, ServiceError> {
    state
        .db
        .run(async |conn| source::find_for_user(conn, user, id).await)
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// One of a user's sources with its subscriptions, oldest first.
pub async fn get_with_subscriptions(
    state: &AppState,
    user: UserId,
    id: SourceId,
) -> Result<(Source, Vec<Subscription>), ServiceError> {
    state
        .db
        .run(async |conn| {
            let Some(found) = source::find_for_user(conn, user, id).await? else {
                return Ok(None);
            };
            let subscriptions = subscription::list_for_source(conn, id).await?;
            Ok(Some((found, subscriptions)))
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// Applies an edit.
pub async fn edit(
    state: &AppState,
    user: UserId,
    id: SourceId,
    patch: SourcePatch,
) -> Result<Source, ServiceError> {
    patch.validate()?;
    let changes = SourceChanges {
        name: patch.name.as_deref().map(str::trim),
        provider: patch
            .provider
            .as_ref()
            .map(|provider| provider.as_ref().map(stored).transpose())
            .transpose()?,
    };
    if changes.name.is_none() && changes.provider.is_none() {
        return get(state, user, id).await;
    }
    state
        .db
        .run(async |conn| source::update_for_user(conn, user, id, &changes).await)
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// Deletes one of a user's sources and, with it, its subscriptions and events: its ingest URL
/// answers 404 from then on.
pub async fn delete(state: &AppState, user: UserId, id: SourceId) -> Result<(), ServiceError> {
    let deleted = state
        .db
        .run(async |conn| source::delete_for_user(conn, user, id).await)
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(ServiceError::NotFound("source"))
    }
}

/// A page of one of a user's sources' events, newest first, routed or not.
pub async fn events(
    state: &AppState,
    user: UserId,
    id: SourceId,
    before: Option<EventId>,
    limit: i64,
) -> Result<Vec<EventLine>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if source::find_for_user(conn, user, id).await?.is_none() {
                return Ok(None);
            }
            event::list_for_source(conn, id, before, limit)
                .await
                .map(Some)
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}
