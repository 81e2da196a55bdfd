//! Sources: what faces a provider (a name, the ingest URL and the provider check), and the
//! subscriptions that route its events.

use chrono::Utc;
use garde::Validate;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::subscriptions::{
    present, stored, valid_changed_provider, valid_name, valid_optional_name, valid_provider,
};
use super::{ServiceError, SubscriptionForm};
use crate::db::models::event::{self, EventLine};
use crate::db::models::rejected_request::{self, RejectedRequest};
use crate::db::models::source::{self, NewSource, Source, SourceChanges, SourceCounts};
use crate::db::models::subscription::{self, Subscription};
use crate::domain::{EventId, IngestResponse, IngestToken, SourceId, UserId};
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
    /// What a request the source accepts is answered with; absent or null for the default
    /// (`202` and the event id).
    #[serde(default)]
    #[garde(custom(valid_response))]
    pub response: Option<IngestResponse>,
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
    /// Absent: unchanged; null: back to the default answer; an object: the new answer.
    #[serde(default, deserialize_with = "present")]
    #[garde(custom(valid_changed_response))]
    pub response: Option<Option<IngestResponse>>,
}

fn valid_response(value: &Option<IngestResponse>, _: &()) -> garde::Result {
    value.as_ref().map_or(Ok(()), |response| {
        response.check().map_err(garde::Error::new)
    })
}

fn valid_changed_response(value: &Option<Option<IngestResponse>>, context: &()) -> garde::Result {
    value
        .as_ref()
        .map_or(Ok(()), |response| valid_response(response, context))
}

/// The answer a stored source gives accepted requests, when not the default.
pub fn stored_response(source: &Source) -> Option<IngestResponse> {
    source
        .response
        .clone()
        .and_then(|stored| serde_json::from_value(stored).ok())
}

fn stored_json(response: &IngestResponse) -> Result<serde_json::Value, ServiceError> {
    serde_json::to_value(response).map_err(|e| ServiceError::Unexpected(e.into()))
}

/// The values of the source form, as the dashboard posts them: a name, and the provider check in
/// the subscription form's fields, its secret write-only (an edit form never holds it, so a blank
/// one keeps the stored secret). No `Debug`: it holds the provider's secret.
#[derive(Default, Deserialize)]
pub struct SourceForm {
    #[serde(default)]
    pub name: String,
    /// `none` for no check.
    #[serde(default)]
    pub provider_kind: String,
    #[serde(default)]
    pub provider_secret: String,
    #[serde(default)]
    pub provider_header: String,
    #[serde(default)]
    pub provider_algorithm: String,
    #[serde(default)]
    pub provider_encoding: String,
    #[serde(default)]
    pub provider_prefix: String,
}

impl SourceForm {
    /// The form for an existing source: its values, but never its provider's secret.
    pub fn of(source: &Source) -> Self {
        let provider = stored_provider(source);
        let view = provider.as_ref().map(ProviderConfig::public_view);
        let option = |name: &str| {
            view.as_ref()
                .and_then(|view| view[name].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        SourceForm {
            name: source.name.clone(),
            provider_kind: provider
                .as_ref()
                .map_or("none", ProviderConfig::kind)
                .to_owned(),
            provider_secret: String::new(),
            provider_header: option("header"),
            provider_algorithm: option("algorithm"),
            provider_encoding: option("encoding"),
            provider_prefix: option("prefix"),
        }
    }

    /// The same values with the secret dropped, to show the form again.
    pub fn without_secret(self) -> Self {
        SourceForm {
            provider_secret: String::new(),
            ..self
        }
    }

    /// The source it describes, given the provider stored now (`None` when creating). The
    /// provider's fields are read exactly as the subscription form reads them; every problem of
    /// theirs is reported, and with them the name's.
    fn input(&self, current: Option<&ProviderConfig>) -> Result<SourceIn, ServiceError> {
        // The subscription form's other fields stay blank: they set nothing a source has.
        let fields = SubscriptionForm {
            name: self.name.clone(),
            provider_kind: self.provider_kind.clone(),
            provider_secret: self.provider_secret.clone(),
            provider_header: self.provider_header.clone(),
            provider_algorithm: self.provider_algorithm.clone(),
            provider_encoding: self.provider_encoding.clone(),
            provider_prefix: self.provider_prefix.clone(),
            ..SubscriptionForm::default()
        };
        let input = fields.input(current, false, |others| {
            let name = SourceIn {
                name: others.name.clone(),
                provider: None,
                response: None,
            };
            name.validate().map_err(ServiceError::from)
        })?;
        Ok(SourceIn {
            name: input.name,
            provider: input.provider,
            response: None,
        })
    }
}

/// The provider a stored source checks, if any.
pub fn stored_provider(source: &Source) -> Option<ProviderConfig> {
    source
        .provider
        .clone()
        .and_then(|stored| serde_json::from_value(stored).ok())
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
        response: input.response.as_ref().map(stored_json).transpose()?,
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

/// Creates a source from the dashboard's form.
pub async fn create_from_form(
    state: &AppState,
    user: UserId,
    form: &SourceForm,
) -> Result<Source, ServiceError> {
    create(state, user, form.input(None)?).await
}

/// A user's sources, oldest first, each with how many subscriptions it has and how many events
/// it received in the last 24 hours.
pub async fn list_with_counts(
    state: &AppState,
    user: UserId,
) -> Result<Vec<(Source, Option<SourceCounts>)>, ServiceError> {
    let since = Utc::now() - chrono::TimeDelta::hours(24);
    let (sources, mut counts) = state
        .db
        .run(async |conn| {
            Ok((
                source::list_for_user(conn, user).await?,
                source::counts_for_user(conn, user, since).await?,
            ))
        })
        .await?;
    Ok(sources
        .into_iter()
        .map(|s| {
            let found = counts.iter().position(|c| c.source_id == s.id);
            (s, found.map(|at| counts.swap_remove(at)))
        })
        .collect())
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

/// One of a user's sources as its page shows it.
pub struct SourceOverview {
    pub source: Source,
    /// Its subscriptions, oldest first, each with the deliveries made for it of events received
    /// in the last 24 hours: how many of the source's events its filter took.
    pub subscriptions: Vec<(Subscription, i64)>,
    /// Its latest events, newest first, routed or not.
    pub recent_events: Vec<EventLine>,
}

/// One of a user's sources with its subscriptions, what each took over the last 24 hours, and
/// its `events` latest events.
pub async fn overview(
    state: &AppState,
    user: UserId,
    id: SourceId,
    events: i64,
) -> Result<SourceOverview, ServiceError> {
    let since = Utc::now() - chrono::TimeDelta::hours(24);
    state
        .db
        .run(async |conn| {
            let Some(found) = source::find_for_user(conn, user, id).await? else {
                return Ok(None);
            };
            let subscriptions = subscription::list_for_source(conn, id).await?;
            let stats = subscription::stats_for_user(conn, user, since).await?;
            let recent_events = event::list_for_source(conn, id, None, events).await?;
            Ok(Some(SourceOverview {
                source: found,
                subscriptions: subscriptions
                    .into_iter()
                    .map(|s| {
                        let matched = stats
                            .iter()
                            .find(|st| st.subscription_id == s.id)
                            .map_or(0, |st| st.events);
                        (s, matched)
                    })
                    .collect(),
                recent_events,
            }))
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// Edits a source from the dashboard's form: a blank provider secret keeps the stored one.
pub async fn edit_from_form(
    state: &AppState,
    user: UserId,
    id: SourceId,
    form: &SourceForm,
) -> Result<Source, ServiceError> {
    let current = stored_provider(&get(state, user, id).await?);
    let input = form.input(current.as_ref())?;
    let patch = SourcePatch {
        name: Some(input.name),
        provider: (input.provider != current).then_some(input.provider),
        response: None,
    };
    edit(state, user, id, patch).await
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
        response: patch
            .response
            .as_ref()
            .map(|response| response.as_ref().map(stored_json).transpose())
            .transpose()?,
    };
    if changes.name.is_none() && changes.provider.is_none() && changes.response.is_none() {
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

/// One of a user's sources' refused requests, newest first (at most the last 100 are kept).
pub async fn rejections(
    state: &AppState,
    user: UserId,
    id: SourceId,
    limit: i64,
) -> Result<Vec<RejectedRequest>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if source::find_for_user(conn, user, id).await?.is_none() {
                return Ok(None);
            }
            rejected_request::recent(conn, id, limit).await.map(Some)
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}
