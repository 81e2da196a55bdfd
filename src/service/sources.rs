//! Sources: what faces a provider (a name, the ingest URL and the provider check), and the
//! subscriptions that route its events.

use chrono::Utc;
use garde::Validate;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use diesel_async::AsyncConnection;

use super::provider_form::ProviderFields;
use super::subscriptions::{
    self, present, stored, valid_changed_provider, valid_name, valid_optional_name, valid_provider,
};
use super::{Actor, Permission, ServiceError};
use crate::db::models::audit;
use crate::db::models::event::{self, EventLine};
use crate::db::models::listen_session::{self, ListenSession};
use crate::db::models::rejected_request::{self, RejectedRequest};
use crate::db::models::source::{self, NewSource, Source, SourceChanges, SourceCounts};
use crate::db::models::subscription::{self, Subscription};
use crate::domain::{
    EventId, IngestResponse, IngestToken, SourceId, SubscriptionId, SubscriptionKind,
};
use crate::problem::FieldError;
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

/// The values of the source form, as the dashboard posts them: a name, the provider check
/// (its secrets write-only: an edit form never holds them, so a blank one keeps the stored
/// secret) and the answer to accepted requests. No `Debug`: it holds the provider's secrets.
#[derive(Default, Deserialize)]
pub struct SourceForm {
    #[serde(default)]
    pub name: String,
    #[serde(flatten)]
    pub provider: ProviderFields,
    /// Blank for the default answer (`202` and the event id), else 200, 201, 202 or 204.
    #[serde(default)]
    pub response_status: String,
    /// Blank for the default JSON.
    #[serde(default)]
    pub response_body: String,
    #[serde(default)]
    pub response_content_type: String,
}

impl SourceForm {
    /// The form for an existing source: its values, but never its provider's secrets.
    pub fn of(source: &Source) -> Self {
        let response = stored_response(source);
        SourceForm {
            name: source.name.clone(),
            provider: ProviderFields::of(stored_provider(source).as_ref()),
            response_status: response
                .as_ref()
                .map(|r| r.status.to_string())
                .unwrap_or_default(),
            response_body: response
                .as_ref()
                .and_then(|r| r.body.clone())
                .unwrap_or_default(),
            response_content_type: response.and_then(|r| r.content_type).unwrap_or_default(),
        }
    }

    /// The same values with the secrets dropped, to show the form again.
    pub fn without_secret(self) -> Self {
        SourceForm {
            provider: self.provider.clone().without_secrets(),
            ..self
        }
    }

    /// The answer the form sets; `None` for the default.
    fn response(&self) -> Result<Option<IngestResponse>, FieldError> {
        let text = |value: &str| (!value.trim().is_empty()).then(|| value.trim().to_owned());
        let status = match self.response_status.trim() {
            "" if self.response_body.trim().is_empty() => return Ok(None),
            "" => 202,
            status => status.parse().map_err(|_| FieldError {
                field: "response_status".to_owned(),
                message: "choose a status from the list".to_owned(),
            })?,
        };
        Ok(Some(IngestResponse {
            status,
            // The body is kept as typed: a provider may want exact whitespace.
            body: (!self.response_body.trim().is_empty()).then(|| self.response_body.clone()),
            content_type: text(&self.response_content_type),
        }))
    }

    /// The source it describes, given the provider stored now (`None` when creating). Every
    /// problem is reported at once, each at its field.
    fn input(&self, current: Option<&ProviderConfig>) -> Result<SourceIn, ServiceError> {
        let mut errors = Vec::new();
        let provider = self.provider.config(current).unwrap_or_else(|fields| {
            errors.extend(fields);
            None
        });
        let response = self.response().unwrap_or_else(|field| {
            errors.push(field);
            None
        });
        let input = SourceIn {
            name: self.name.clone(),
            provider,
            response,
        };
        match input.validate().map_err(ServiceError::from) {
            Err(ServiceError::Invalid(fields)) => errors.extend(fields),
            Err(other) => return Err(other),
            Ok(()) => {}
        }
        if errors.is_empty() {
            Ok(input)
        } else {
            Err(ServiceError::Invalid(errors))
        }
    }
}

/// The provider a stored source checks, if any.
pub fn stored_provider(source: &Source) -> Option<ProviderConfig> {
    source
        .provider
        .clone()
        .and_then(|stored| serde_json::from_value(stored).ok())
}

/// Creates a source in `actor`'s workspace with a fresh ingest token.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: SourceIn,
) -> Result<Source, ServiceError> {
    actor.require(Permission::Change)?;
    input.validate()?;
    let token = IngestToken::generate();
    let new = NewSource {
        id: SourceId(Uuid::new_v4()),
        workspace_id: actor.workspace,
        name: input.name.trim(),
        ingest_token: token.as_str(),
        provider: input.provider.as_ref().map(stored).transpose()?,
        response: input.response.as_ref().map(stored_json).transpose()?,
        implicit: false,
    };
    Ok(state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let created = source::insert(conn, &new).await?;
                audit::append(conn, &[actor.audit("source.created", "source", created.id)]).await?;
                Ok(created)
            })
            .await
        })
        .await?)
}

/// A workspace's sources, oldest first.
pub async fn list(state: &AppState, actor: &Actor) -> Result<Vec<Source>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| source::list_in_workspace(conn, actor.workspace).await)
        .await?)
}

/// Creates a source from the dashboard's form.
pub async fn create_from_form(
    state: &AppState,
    actor: &Actor,
    form: &SourceForm,
) -> Result<Source, ServiceError> {
    // Refused before the form is read: a viewer learns nothing from its problems.
    actor.require(Permission::Change)?;
    create(state, actor, form.input(None)?).await
}

/// A workspace's sources, oldest first, each with how many subscriptions it has and how many events
/// it received over the last day (see [`subscriptions::counted_day`]).
pub async fn list_with_counts(
    state: &AppState,
    actor: &Actor,
) -> Result<Vec<(Source, Option<SourceCounts>)>, ServiceError> {
    let (since, settled) = subscriptions::counted_day(state, Utc::now());
    let (sources, mut counts) = state
        .db
        .run(async |conn| {
            Ok((
                source::list_in_workspace(conn, actor.workspace).await?,
                source::counts_in_workspace(conn, actor.workspace, since, settled).await?,
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

/// One of the workspace's sources.
pub async fn get(state: &AppState, actor: &Actor, id: SourceId) -> Result<Source, ServiceError> {
    state
        .db
        .run(async |conn| source::find_in_workspace(conn, actor.workspace, id).await)
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// One of the workspace's sources with its subscriptions, oldest first.
pub async fn get_with_subscriptions(
    state: &AppState,
    actor: &Actor,
    id: SourceId,
) -> Result<(Source, Vec<Subscription>), ServiceError> {
    state
        .db
        .run(async |conn| {
            let Some(found) = source::find_in_workspace(conn, actor.workspace, id).await? else {
                return Ok(None);
            };
            let subscriptions = subscription::list_for_source(conn, id).await?;
            Ok(Some((found, subscriptions)))
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// One of the workspace's sources as its page shows it.
pub struct SourceOverview {
    pub source: Source,
    /// Its subscriptions, oldest first, each with the deliveries made for it of events received
    /// in the last 24 hours: how many of the source's events its filter took.
    pub subscriptions: Vec<(Subscription, i64)>,
    /// Its latest events, newest first, routed or not.
    pub recent_events: Vec<EventLine>,
    /// Its latest refused requests, newest first.
    pub rejections: Vec<RejectedRequest>,
    /// The `spenza listen` sessions connected to its `cli` subscriptions, oldest first.
    pub listening: Vec<ListenSession>,
}

/// One of the workspace's sources with its subscriptions, what each took over the last day (see
/// [`subscriptions::counted_day`]), its `events` latest events and its `rejections` latest refused
/// requests.
pub async fn overview(
    state: &AppState,
    actor: &Actor,
    id: SourceId,
    events: i64,
    rejections: i64,
) -> Result<SourceOverview, ServiceError> {
    let (since, settled) = subscriptions::counted_day(state, Utc::now());
    state
        .db
        .run(async |conn| {
            let Some(found) = source::find_in_workspace(conn, actor.workspace, id).await? else {
                return Ok(None);
            };
            let subscriptions = subscription::list_for_source(conn, id).await?;
            let stats =
                subscription::stats_in_workspace(conn, actor.workspace, since, settled).await?;
            let recent_events = event::list_for_source(conn, id, None, events).await?;
            let rejections = rejected_request::recent(conn, id, rejections).await?;
            let cli: Vec<SubscriptionId> = subscriptions
                .iter()
                .filter(|s| s.kind == SubscriptionKind::Cli)
                .map(|s| s.id)
                .collect();
            let listening = if cli.is_empty() {
                Vec::new()
            } else {
                listen_session::of_subscriptions(conn, &cli).await?
            };
            Ok(Some(SourceOverview {
                rejections,
                listening,
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
    actor: &Actor,
    id: SourceId,
    form: &SourceForm,
) -> Result<Source, ServiceError> {
    // Refused before the form is read: a viewer learns nothing from its problems.
    actor.require(Permission::Change)?;
    let current = stored_provider(&get(state, actor, id).await?);
    let input = form.input(current.as_ref())?;
    let patch = SourcePatch {
        name: Some(input.name),
        provider: (input.provider != current).then_some(input.provider),
        response: Some(input.response),
    };
    edit(state, actor, id, patch).await
}

/// Applies an edit.
pub async fn edit(
    state: &AppState,
    actor: &Actor,
    id: SourceId,
    patch: SourcePatch,
) -> Result<Source, ServiceError> {
    actor.require(Permission::Change)?;
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
        return get(state, actor, id).await;
    }
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let updated =
                    source::update_in_workspace(conn, actor.workspace, id, &changes).await?;
                if updated.is_some() {
                    audit::append(conn, &[actor.audit("source.updated", "source", id)]).await?;
                }
                Ok(updated)
            })
            .await
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// Deletes one of the workspace's sources and, with it, its subscriptions and events: its ingest URL
/// answers 404 from then on.
pub async fn delete(state: &AppState, actor: &Actor, id: SourceId) -> Result<(), ServiceError> {
    actor.require(Permission::Change)?;
    super::delete_audited(
        &state.db,
        "source",
        actor.audit("source.deleted", "source", id),
        |conn| Box::pin(source::delete_in_workspace(conn, actor.workspace, id)),
    )
    .await
}

/// A page of one of the workspace's sources' events, newest first, routed or not.
pub async fn events(
    state: &AppState,
    actor: &Actor,
    id: SourceId,
    before: Option<EventId>,
    limit: i64,
) -> Result<Vec<EventLine>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if source::find_in_workspace(conn, actor.workspace, id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            event::list_for_source(conn, id, before, limit)
                .await
                .map(Some)
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}

/// One of the workspace's sources' refused requests, newest first (at most the last 100 are kept).
pub async fn rejections(
    state: &AppState,
    actor: &Actor,
    id: SourceId,
    limit: i64,
) -> Result<Vec<RejectedRequest>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if source::find_in_workspace(conn, actor.workspace, id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            rejected_request::recent(conn, id, limit).await.map(Some)
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))
}
