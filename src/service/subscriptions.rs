//! Subscriptions: create, read, edit (pause and resume included), rotate the signing secret,
//! replay in bulk, send a test event, delete.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, Utc};
use diesel_async::AsyncConnection;
use garde::Validate;
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::policy::PolicyIn;
use super::subscription_form::SubscriptionForm;
use super::{Actor, Permission, ServiceError};
use crate::db::models::audit;
use crate::db::models::delivery::{self, DueDelivery, ReplayFilter};
use crate::db::models::delivery_attempt::{self, AttemptBucket};
use crate::db::models::event::NewEvent;
use crate::db::models::source::{self, NewSource, SourceChanges};
use crate::db::models::subscription::{
    self, NewSubscription, Subscription, SubscriptionChanges, SubscriptionStats,
};
use crate::domain::{
    EventId, EventStatus, Filter, IngestToken, Policy, RequestId, SigningSecret, SourceId,
    SubscriptionId, SubscriptionKind, TargetUrl, WorkspaceId,
};
use crate::live::{EventNotice, Notice};
use crate::problem::FieldError;
use crate::signing::incoming::ProviderConfig;
use crate::state::AppState;

/// A subscription to create.
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    /// Not blank, and at most 200 characters once trimmed.
    #[garde(custom(valid_name))]
    pub name: String,
    /// Where events are delivered: an `http` or `https` URL.
    #[garde(custom(valid_target_url))]
    pub target_url: String,
    /// The source whose events it receives. Absent: a source is made for it (named after it,
    /// with its own ingest URL and the `provider` given here), and deleted with it.
    #[serde(default)]
    #[garde(skip)]
    pub source_id: Option<SourceId>,
    /// The provider whose signatures ingest checks, set on the source made for the
    /// subscription; absent or null for none. With `source_id`, set it on that source instead.
    #[serde(default)]
    #[garde(custom(valid_provider))]
    pub provider: Option<ProviderConfig>,
    /// Which of the source's events it receives; absent or null for every event. See the
    /// README for the filter language, and its limits of size and depth.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[garde(custom(valid_filter))]
    pub filter: Option<serde_json::Value>,
    /// Whether the path and query each event arrived with after its ingest token are appended
    /// to the target URL. Default false.
    #[serde(default)]
    #[garde(skip)]
    pub forward_path: bool,
    /// How its deliveries are made, where not as the process-wide settings say.
    #[serde(default)]
    #[garde(dive)]
    pub policy: Option<PolicyIn>,
}

/// An edit: every field is optional.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatch {
    #[garde(custom(valid_optional_name))]
    pub name: Option<String>,
    #[garde(custom(valid_optional_target_url))]
    pub target_url: Option<String>,
    #[garde(skip)]
    pub is_active: Option<bool>,
    /// Its source's provider check. Absent: unchanged; null: check no signature; an object:
    /// the new provider.
    #[serde(default, deserialize_with = "present")]
    #[garde(custom(valid_changed_provider))]
    pub provider: Option<Option<ProviderConfig>>,
    /// Absent: unchanged; null: every event; an object: the new filter.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    #[garde(custom(valid_changed_filter))]
    pub filter: Option<Option<serde_json::Value>>,
    #[garde(skip)]
    pub forward_path: Option<bool>,
    /// The fields of its delivery policy to change.
    #[garde(dive)]
    pub policy: Option<PolicyIn>,
}

/// Which events a bulk replay takes: one status (default `failed`), received in a time range.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    #[garde(custom(final_status))]
    pub status: Option<EventStatus>,
    #[garde(skip)]
    pub since: Option<DateTime<Utc>>,
    #[garde(skip)]
    pub until: Option<DateTime<Utc>>,
}

/// Where a subscription stands, as its owner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Delivering.
    Active,
    /// Stopped by its owner; events are stored and held.
    Paused,
    /// Stopped by the circuit breaker, for this reason; events are stored and held.
    Disabled(String),
}

impl SubscriptionState {
    /// The state of a stored subscription: the breaker gives a reason when it disables one,
    /// its owner does not.
    pub fn of(subscription: &Subscription) -> Self {
        match (subscription.is_active, &subscription.disabled_reason) {
            (true, _) => SubscriptionState::Active,
            (false, None) => SubscriptionState::Paused,
            (false, Some(reason)) => SubscriptionState::Disabled(reason.clone()),
        }
    }
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
pub(super) fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

pub(super) fn valid_provider(value: &Option<ProviderConfig>, _: &()) -> garde::Result {
    match value {
        Some(provider) => provider.check().map_err(garde::Error::new),
        None => Ok(()),
    }
}

pub(super) fn valid_changed_provider(
    value: &Option<Option<ProviderConfig>>,
    context: &(),
) -> garde::Result {
    value
        .as_ref()
        .map_or(Ok(()), |provider| valid_provider(provider, context))
}

fn valid_filter(value: &Option<serde_json::Value>, _: &()) -> garde::Result {
    match value {
        Some(filter) => Filter::parse(filter)
            .map(drop)
            .map_err(|error| garde::Error::new(error.to_string())),
        None => Ok(()),
    }
}

fn valid_changed_filter(value: &Option<Option<serde_json::Value>>, context: &()) -> garde::Result {
    value
        .as_ref()
        .map_or(Ok(()), |filter| valid_filter(filter, context))
}

pub(super) fn valid_name(value: &str, _: &()) -> garde::Result {
    match value.trim().chars().count() {
        0 => Err(garde::Error::new("a name is required")),
        1..=200 => Ok(()),
        _ => Err(garde::Error::new("a name may have at most 200 characters")),
    }
}

pub(super) fn valid_optional_name(value: &Option<String>, context: &()) -> garde::Result {
    value
        .as_ref()
        .map_or(Ok(()), |name| valid_name(name, context))
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

fn final_status(value: &Option<EventStatus>, _: &()) -> garde::Result {
    match value {
        Some(status) if !status.is_final() => Err(garde::Error::new(
            "only completed or failed events can be replayed",
        )),
        _ => Ok(()),
    }
}

pub(super) fn stored(provider: &ProviderConfig) -> Result<serde_json::Value, ServiceError> {
    serde_json::to_value(provider).map_err(|e| ServiceError::Unexpected(e.into()))
}

/// Every problem with an input at once: garde's, and the SSRF guard's refusal of a target URL
/// that is an internal IP literal (names are checked each time they resolve); the parsed target
/// URL when there is none.
fn checked(
    state: &AppState,
    validated: Result<(), garde::Report>,
    target_url: Option<&str>,
) -> Result<Option<TargetUrl>, ServiceError> {
    let mut errors = match validated {
        Ok(()) => Vec::new(),
        Err(report) => match ServiceError::from(report) {
            ServiceError::Invalid(fields) => fields,
            other => return Err(other),
        },
    };
    // A malformed URL is garde's to report; a well-formed one may still be refused.
    let url = target_url.and_then(|raw| TargetUrl::parse(raw).ok());
    if let Some(refusal) = url
        .as_ref()
        .and_then(|url| state.target_policy.refusal_for_literal(url.url()))
    {
        errors.push(FieldError {
            field: "target_url".to_owned(),
            message: refusal,
        });
    }
    if errors.is_empty() {
        Ok(url)
    } else {
        Err(ServiceError::Invalid(errors))
    }
}

/// Checks a subscription to create without creating it: every field's problem at once.
pub fn check_new(state: &AppState, input: &SubscriptionIn) -> Result<TargetUrl, ServiceError> {
    checked(state, input.validate(), Some(&input.target_url))?
        .ok_or_else(|| ServiceError::invalid("target_url", "a target URL is required"))
}

/// The provider a stored subscription checks, if any.
pub fn stored_provider(subscription: &Subscription) -> Option<ProviderConfig> {
    subscription
        .provider
        .clone()
        .and_then(|stored| serde_json::from_value(stored).ok())
}

/// Creates a subscription from the dashboard's form.
pub async fn create_from_form(
    state: &AppState,
    actor: &Actor,
    form: &SubscriptionForm,
) -> Result<Subscription, ServiceError> {
    // Refused before the form is read: a viewer learns nothing from its problems.
    actor.require(Permission::Change)?;
    let input = form.input(None, false, |others| check_new(state, others).map(drop))?;
    create(state, actor, input).await
}

/// Edits a subscription from the dashboard's form: a blank provider secret keeps the stored one.
pub async fn edit_from_form(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
    form: &SubscriptionForm,
) -> Result<Subscription, ServiceError> {
    // Refused before the form is read: a viewer learns nothing from its problems.
    actor.require(Permission::Change)?;
    let current = stored_provider(&get(state, actor, id).await?);
    let input = form.input(current.as_ref(), true, |others| {
        check_new(state, others).map(drop)
    })?;
    let patch = SubscriptionPatch {
        name: Some(input.name),
        target_url: Some(input.target_url),
        is_active: None,
        provider: (input.provider != current).then_some(input.provider),
        filter: Some(input.filter),
        forward_path: Some(input.forward_path),
        policy: input.policy,
    };
    edit(state, actor, id, patch).await
}

/// Creates a subscription in `actor`'s workspace with a fresh signing secret, on the source it names or on
/// a source made for it, with a fresh ingest token.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: SubscriptionIn,
) -> Result<Subscription, ServiceError> {
    actor.require(Permission::Change)?;
    let target_url = check_new(state, &input)?;
    let provider = input.provider.as_ref().map(stored).transpose()?;
    if input.source_id.is_some() && provider.is_some() {
        return Err(ServiceError::invalid(
            "provider",
            "the provider check belongs to the source: set it on the source instead",
        ));
    }
    let policy = input
        .policy
        .as_ref()
        .map(|edit| edit.applied_to(Policy::default()))
        .unwrap_or_default()
        .to_stored();
    let name = input.name.trim();
    let token = IngestToken::generate();
    let secret = SigningSecret::generate();
    let created = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let source_id = match input.source_id {
                    Some(id) => match source::find_in_workspace(conn, actor.workspace, id).await? {
                        Some(found) => found.id,
                        None => return Ok(None),
                    },
                    None => {
                        let new = NewSource {
                            id: SourceId(Uuid::new_v4()),
                            workspace_id: actor.workspace,
                            name,
                            ingest_token: token.as_str(),
                            provider,
                            response: None,
                            implicit: true,
                        };
                        let id = source::insert(conn, &new).await?.id;
                        let line = actor
                            .audit("source.created", "source", id)
                            .detail(format!("for subscription {name}"));
                        audit::append(conn, &[line]).await?;
                        id
                    }
                };
                let new = NewSubscription {
                    id: SubscriptionId(Uuid::new_v4()),
                    workspace_id: actor.workspace,
                    source_id,
                    name,
                    target_url: target_url.as_str(),
                    signing_secret: secret.expose(),
                    filter: input.filter.as_ref(),
                    forward_path: input.forward_path,
                    policy: policy.clone(),
                    kind: SubscriptionKind::Http,
                };
                let created = subscription::insert(conn, &new).await?;
                let line = actor.audit("subscription.created", "subscription", created.id);
                audit::append(conn, &[line]).await?;
                Ok(Some(created))
            })
            .await
        })
        .await?;
    created.ok_or_else(|| ServiceError::invalid("source_id", "you have no source with this id"))
}

/// A workspace's subscriptions, oldest first.
pub async fn list(state: &AppState, actor: &Actor) -> Result<Vec<Subscription>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| subscription::list_in_workspace(conn, actor.workspace).await)
        .await?)
}

/// A workspace's subscriptions, each with how it did over the last day (see [`counted_day`]).
pub async fn list_with_stats(
    state: &AppState,
    actor: &Actor,
) -> Result<Vec<(Subscription, Option<SubscriptionStats>)>, ServiceError> {
    let (since, settled) = counted_day(state, Utc::now());
    let (subscriptions, mut stats) = state
        .db
        .run(async |conn| {
            Ok((
                subscription::list_in_workspace(conn, actor.workspace).await?,
                subscription::stats_in_workspace(conn, actor.workspace, since, settled).await?,
            ))
        })
        .await?;
    Ok(subscriptions
        .into_iter()
        .map(|s| {
            let found = stats.iter().position(|st| st.subscription_id == s.id);
            (s, found.map(|at| stats.swap_remove(at)))
        })
        .collect())
}

/// One of the workspace's subscriptions.
pub async fn get(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
) -> Result<Subscription, ServiceError> {
    state
        .db
        .run(async |conn| subscription::find_in_workspace(conn, actor.workspace, id).await)
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

/// Applies an edit. Re-enabling (`is_active: true`) clears why it was disabled, gives the
/// endpoint a fresh failure count, and delivers every event held while it was stopped.
pub async fn edit(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
    patch: SubscriptionPatch,
) -> Result<Subscription, ServiceError> {
    actor.require(Permission::Change)?;
    let target_url = checked(state, patch.validate(), patch.target_url.as_deref())?;
    if target_url.is_some() && get(state, actor, id).await?.kind == SubscriptionKind::Cli {
        return Err(ServiceError::invalid(
            "target_url",
            "a listen subscription delivers to its spenza listen sessions: it has no target URL",
        ));
    }
    let policy = match &patch.policy {
        Some(edit) => {
            let current = Policy::from_stored(&get(state, actor, id).await?.policy);
            Some(edit.applied_to(current).to_stored())
        }
        None => None,
    };
    let reenabled = patch.is_active == Some(true);
    let action = edit_action(&patch);
    let changes = SubscriptionChanges {
        name: patch.name.as_deref().map(str::trim),
        target_url: target_url.as_ref().map(TargetUrl::as_str),
        is_active: patch.is_active,
        disabled_reason: reenabled.then_some(None),
        consecutive_failures: reenabled.then_some(0),
        filter: patch.filter.as_ref().map(Option::as_ref),
        forward_path: patch.forward_path,
        policy,
    };
    let provider = patch
        .provider
        .as_ref()
        .map(|provider| provider.as_ref().map(stored).transpose())
        .transpose()?;
    let updated = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let Some(updated) =
                    subscription::update_in_workspace(conn, actor.workspace, id, &changes).await?
                else {
                    return Ok(None);
                };
                audit::append(conn, &[actor.audit(action, "subscription", id)]).await?;
                if reenabled {
                    delivery::wait_from_now_if_held(conn, id).await?;
                }
                if provider.is_none() {
                    return Ok(Some(updated));
                }
                let changes = SourceChanges {
                    name: None,
                    provider,
                    response: None,
                };
                source::update_in_workspace(conn, actor.workspace, updated.source_id, &changes)
                    .await?;
                subscription::find_in_workspace(conn, actor.workspace, id).await
            })
            .await
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?;
    if reenabled {
        // What was held has no due time: the reaper takes such events of an active
        // subscription in bounded batches. Woken now, it starts at once.
        state.reaper.notify_one();
    }
    Ok(updated)
}

/// The audit action of an edit: pausing and resuming are told apart from other edits.
fn edit_action(patch: &SubscriptionPatch) -> &'static str {
    let only_state = patch.name.is_none()
        && patch.target_url.is_none()
        && patch.provider.is_none()
        && patch.filter.is_none()
        && patch.forward_path.is_none()
        && patch.policy.is_none();
    match patch.is_active {
        Some(false) if only_state => "subscription.paused",
        Some(true) if only_state => "subscription.resumed",
        _ => "subscription.updated",
    }
}

/// Pauses (`false`) or resumes (`true`) deliveries; resuming delivers what was held.
pub async fn set_active(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
    active: bool,
) -> Result<Subscription, ServiceError> {
    let patch = SubscriptionPatch {
        is_active: Some(active),
        ..SubscriptionPatch::default()
    };
    edit(state, actor, id, patch).await
}

/// A new signing secret; the previous one keeps signing deliveries beside it for the
/// configured overlap, so receivers can switch without refusing any.
pub async fn rotate_secret(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
) -> Result<Subscription, ServiceError> {
    actor.require(Permission::Change)?;
    let secret = SigningSecret::generate();
    let previous_until = Utc::now() + state.secret_rotation_overlap;
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let rotated = subscription::rotate_secret(
                    conn,
                    actor.workspace,
                    id,
                    secret.expose(),
                    previous_until,
                )
                .await?;
                if rotated.is_some() {
                    let line = actor.audit("subscription.secret_rotated", "subscription", id);
                    audit::append(conn, &[line]).await?;
                }
                Ok(rotated)
            })
            .await
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

/// The subscription, its signing secrets included, shown to someone whose role may see
/// secrets; each reveal is in the audit log.
pub async fn reveal_secret(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
) -> Result<Subscription, ServiceError> {
    actor.require(Permission::Secrets)?;
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let found = subscription::find_in_workspace(conn, actor.workspace, id).await?;
                if found.is_some() {
                    let line = actor.audit("subscription.secret_revealed", "subscription", id);
                    audit::append(conn, &[line]).await?;
                }
                Ok(found)
            })
            .await
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

/// Records that an API answer showed these subscriptions' signing secrets to `actor`.
pub async fn secrets_shown(
    state: &AppState,
    actor: &Actor,
    ids: impl IntoIterator<Item = SubscriptionId>,
) -> Result<(), ServiceError> {
    let lines: Vec<_> = ids
        .into_iter()
        .map(|id| actor.audit("subscription.secret_revealed", "subscription", id))
        .collect();
    Ok(state
        .db
        .run(async |conn| audit::append(conn, &lines).await)
        .await?)
}

/// Makes again every delivery of the subscription with the status (default `failed`) of events
/// received in `[since, until)`, in the background in bounded batches; answers how many it
/// queued.
pub async fn replay(
    state: Arc<AppState>,
    actor: &Actor,
    id: SubscriptionId,
    input: ReplayIn,
) -> Result<i64, ServiceError> {
    // Another workspace's is not found; then the role; then what is asked.
    get(&state, actor, id).await?;
    actor.require(Permission::Change)?;
    input.validate()?;
    let filter = ReplayFilter {
        status: input.status.unwrap_or(EventStatus::Failed),
        subscription: Some(id),
        since: input.since,
        until: input.until,
        payload: None,
    };
    super::events::replay_in_background(state, actor, filter).await
}

/// Tells the workspace's pages that these deliveries of theirs are to be made again.
pub(super) fn notify_replayed(state: &AppState, workspace: WorkspaceId, due: &[DueDelivery]) {
    for delivery in due {
        state.live.notify(Notice::Event(EventNotice {
            event: delivery.event_id,
            subscription: delivery.subscription_id,
            workspace,
            new: false,
        }));
    }
}

/// Stores a small JSON event on the subscription's source, as if its provider had sent it, and
/// hands it to delivery to this subscription only; answers its id. No provider signature is
/// asked for: its owner sends it, with `request`.
pub async fn send_test_event(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
    request: RequestId,
) -> Result<EventId, ServiceError> {
    actor.require(Permission::Change)?;
    let found = get(state, actor, id).await?;
    let token = IngestToken::parse(&found.ingest_token).ok_or_else(|| {
        ServiceError::Unexpected(anyhow::anyhow!("a stored ingest token is malformed"))
    })?;
    let event_id = EventId::new();
    let payload = json!({
        "type": "spenza.test",
        "message": "A test event sent from the Spenza dashboard.",
        "sent_at": Utc::now(),
    });
    let new = NewEvent {
        token,
        routing_version: None,
        routes: vec![id],
        id: event_id,
        body: payload.to_string().into(),
        payload: Some(payload),
        content_type: Some("application/json".into()),
        headers: json!({}),
        path: String::new(),
        query: String::new(),
        idempotency_key: None,
    };
    // Stored, announced and handed to delivery as an ingested event is.
    state
        .intake
        .store(new, request)
        .await?
        .ok_or(ServiceError::NotFound("subscription"))?;
    // Ingest's batched insert stores the event: its line follows, naming the event.
    let line = actor
        .audit("subscription.test_event_sent", "subscription", id)
        .detail(format!("event {event_id}"));
    state
        .db
        .run(async |conn| audit::append(conn, &[line]).await)
        .await?;
    Ok(event_id)
}

/// Where the charts' windows start, seen at `now`: the last hour in minutes and the last day in
/// hours, each ending with the bucket `now` is in.
pub fn activity_windows(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let minute = now
        .duration_trunc(chrono::TimeDelta::minutes(1))
        .unwrap_or(now);
    let hour = now
        .duration_trunc(chrono::TimeDelta::hours(1))
        .unwrap_or(now);
    (
        minute - chrono::TimeDelta::minutes(59),
        hour - chrono::TimeDelta::hours(23),
    )
}

const MINUTE: std::time::Duration = std::time::Duration::from_secs(60);

/// The day the dashboard counts over, as seen at `now`: where it starts (on the hour, as the day
/// chart's) and where its settled hours end. An hour is settled (its counts kept, never redone)
/// once it ended longer ago than a delivery can take, plus a minute.
pub fn counted_day(state: &AppState, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let (_, day_start) = activity_windows(now);
    let unsettled = chrono::TimeDelta::from_std(state.delivery_timeout + MINUTE)
        .unwrap_or(chrono::TimeDelta::MAX);
    let settled = now
        .checked_sub_signed(unsettled)
        .and_then(|at| at.duration_trunc(chrono::TimeDelta::hours(1)).ok())
        .map_or(day_start, |at| at.max(day_start));
    (day_start, settled)
}

/// A subscription's attempts over the last hour by minute, and over the last day by hour (see
/// [`counted_day`]), as seen at `now`.
pub async fn activity(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
    now: DateTime<Utc>,
) -> Result<(Vec<AttemptBucket>, Vec<AttemptBucket>), ServiceError> {
    let (hour_start, _) = activity_windows(now);
    let (day_start, settled) = counted_day(state, now);
    state
        .db
        .run(async |conn| {
            if subscription::find_in_workspace(conn, actor.workspace, id)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            let hour =
                delivery_attempt::buckets_for_subscription(conn, id, hour_start, MINUTE).await?;
            let day =
                delivery_attempt::hourly_for_subscription(conn, id, day_start, settled).await?;
            Ok(Some((hour, day)))
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

/// One of the workspace's subscriptions, and whether deleting it deletes its source too, with the
/// source's ingest URL and events (see [`delete`]).
pub async fn get_for_deletion(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
) -> Result<(Subscription, bool), ServiceError> {
    state
        .db
        .run(async |conn| {
            let Some(found) = subscription::find_in_workspace(conn, actor.workspace, id).await?
            else {
                return Ok(None);
            };
            Ok(Some((found, source::goes_with(conn, id).await?)))
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

/// Deletes one of the workspace's subscriptions and, with it, its deliveries; a source made for it,
/// that no other subscription uses, goes too, with its ingest URL and events.
pub async fn delete(
    state: &AppState,
    actor: &Actor,
    id: SubscriptionId,
) -> Result<(), ServiceError> {
    actor.require(Permission::Change)?;
    let deleted = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let Some(source) =
                    subscription::delete_in_workspace(conn, actor.workspace, id).await?
                else {
                    return Ok(false);
                };
                let mut lines = vec![actor.audit("subscription.deleted", "subscription", id)];
                if source::delete_if_implicit_and_unused(conn, source).await? {
                    lines.push(actor.audit("source.deleted", "source", source));
                }
                audit::append(conn, &lines).await?;
                Ok(true)
            })
            .await
        })
        .await?;
    if deleted {
        Ok(())
    } else {
        Err(ServiceError::NotFound("subscription"))
    }
}
