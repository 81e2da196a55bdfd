//! Notification channels: where a workspace is told of its issues (an email address, a Slack
//! incoming webhook, or any webhook URL, signed like deliveries), with the kinds each takes,
//! and a test send. Developers and above manage them; a webhook channel's signing secret is a
//! secret like a subscription's.

use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Actor, Permission, ServiceError};
use crate::db::models::notification::{self, Channel, ChannelChanges, NewChannel};
use crate::db::models::{audit, workspace};
use crate::domain::{
    ChannelId, ChannelKind, EmailAddress, IssueKind, SigningSecret, TargetUrl, UserId,
};
use crate::problem::FieldError;
use crate::state::AppState;

/// The longest channel name, in characters.
const MAX_NAME_CHARS: usize = 200;

/// A channel to add: `{"kind": "email", "address"}`, `{"kind": "slack", "url"}` or
/// `{"kind": "webhook", "url"}`, each with an optional name and `kinds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelIn {
    pub kind: ChannelKind,
    /// What to call it; by default its address or its URL's host.
    pub name: Option<String>,
    /// For `email`: where to send.
    pub address: Option<String>,
    /// For `slack` (an incoming-webhook URL) and `webhook`: where to post. It passes the same
    /// address checks as a subscription's endpoint.
    pub url: Option<String>,
    /// The issue kinds it is told of; all of them by default.
    pub kinds: Option<Vec<IssueKind>>,
}

/// An edit of a channel: each field left out stays as it is. Its kind cannot change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelEdit {
    pub name: Option<String>,
    /// For an `email` channel.
    pub address: Option<String>,
    /// For a `slack` or `webhook` channel.
    pub url: Option<String>,
    pub kinds: Option<Vec<IssueKind>>,
}

/// A channel as answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelOut {
    pub id: ChannelId,
    pub kind: ChannelKind,
    pub name: String,
    /// The address of an `email` channel; null for the others.
    #[schema(required = true)]
    pub address: Option<String>,
    /// The URL of a `slack` or `webhook` channel; null for `email`, and for viewers (whoever
    /// has it can post there).
    #[schema(required = true)]
    pub url: Option<String>,
    pub kinds: Vec<IssueKind>,
    /// A `webhook` channel's secret, which signs its payloads as deliveries are signed
    /// (Standard Webhooks); null for the other kinds, and for viewers.
    #[schema(required = true)]
    pub signing_secret: Option<String>,
    #[schema(required = true)]
    pub created_by: Option<UserId>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl ChannelOut {
    /// The channel as `actor` may see it.
    pub fn of(channel: Channel, actor: &Actor) -> Self {
        let kinds = channel.issue_kinds();
        // A Slack or webhook URL lets whoever has it post there: a secret.
        let may_see_secrets = actor.may(Permission::Secrets);
        let (address, url) = match channel.kind {
            ChannelKind::Email => (Some(channel.target), None),
            ChannelKind::Slack | ChannelKind::Webhook => {
                (None, Some(channel.target).filter(|_| may_see_secrets))
            }
        };
        ChannelOut {
            id: channel.id,
            kind: channel.kind,
            name: channel.name,
            address,
            url,
            kinds,
            signing_secret: channel.signing_secret.filter(|_| may_see_secrets),
            created_by: channel.created_by,
            created_at: channel.created_at,
        }
    }
}

fn problem(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Checks where a channel of `kind` sends: the normalised target, or what is wrong with it.
fn checked_target(
    state: &AppState,
    kind: ChannelKind,
    address: Option<&str>,
    url: Option<&str>,
) -> Result<String, FieldError> {
    match kind {
        ChannelKind::Email => {
            if url.is_some() {
                return Err(problem(
                    "url",
                    "an email channel takes an address, not a URL",
                ));
            }
            let raw =
                address.ok_or_else(|| problem("address", "an email channel needs an address"))?;
            if state.mailer.is_none() {
                return Err(problem(
                    "kind",
                    "no SMTP server is set (SPENZA_SMTP_URL): the relay cannot send email",
                ));
            }
            EmailAddress::parse(raw)
                .map(|email| email.as_str().to_owned())
                .map_err(|error| problem("address", error.to_string()))
        }
        ChannelKind::Slack | ChannelKind::Webhook => {
            if address.is_some() {
                return Err(problem(
                    "address",
                    "this channel takes a URL, not an address",
                ));
            }
            let raw = url.ok_or_else(|| problem("url", format!("a {kind} channel needs a URL")))?;
            let url = TargetUrl::parse(raw).map_err(|error| problem("url", error.to_string()))?;
            if let Some(refusal) = state.target_policy.refusal_for_literal(url.url()) {
                return Err(problem("url", refusal));
            }
            Ok(url.as_str().to_owned())
        }
    }
}

fn checked_name(name: Option<&str>, target: &str) -> Result<String, FieldError> {
    let name = match name.map(str::trim) {
        Some(name) => name.to_owned(),
        None => url::Url::parse(target)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| target.to_owned()),
    };
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(problem(
            "name",
            format!("a channel's name needs 1 to {MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(name)
}

fn kind_names(kinds: Option<&[IssueKind]>) -> Result<Vec<&'static str>, FieldError> {
    let kinds = kinds.unwrap_or(IssueKind::ALL);
    if kinds.is_empty() {
        return Err(problem(
            "kinds",
            "a channel takes at least one kind of issue (leave it out for all)",
        ));
    }
    Ok(IssueKind::ALL
        .iter()
        .filter(|kind| kinds.contains(kind))
        .map(|kind| kind.as_str())
        .collect())
}

/// The workspace's channels.
pub async fn list(state: &AppState, actor: &Actor) -> Result<Vec<Channel>, ServiceError> {
    actor.require(Permission::Read)?;
    Ok(state
        .db
        .run(async |conn| notification::list_in_workspace(conn, actor.workspace).await)
        .await?)
}

/// One of the workspace's channels.
pub async fn get(state: &AppState, actor: &Actor, id: ChannelId) -> Result<Channel, ServiceError> {
    actor.require(Permission::Read)?;
    state
        .db
        .run(async |conn| notification::find_in_workspace(conn, actor.workspace, id).await)
        .await?
        .ok_or(ServiceError::NotFound("notification channel"))
}

/// Adds a channel; every problem with the input at once.
pub async fn create(
    state: &AppState,
    actor: &Actor,
    input: &ChannelIn,
) -> Result<Channel, ServiceError> {
    actor.require(Permission::Change)?;
    let target = checked_target(
        state,
        input.kind,
        input.address.as_deref(),
        input.url.as_deref(),
    );
    let name = target
        .as_ref()
        .ok()
        .map(|target| checked_name(input.name.as_deref(), target));
    let kinds = kind_names(input.kinds.as_deref());
    let (target, name, kinds) = match (target, name, kinds) {
        (Ok(target), Some(Ok(name)), Ok(kinds)) => (target, name, kinds),
        (target, name, kinds) => {
            let errors = [target.err(), name.and_then(Result::err), kinds.err()];
            return Err(ServiceError::Invalid(
                errors.into_iter().flatten().collect(),
            ));
        }
    };
    let secret = (input.kind == ChannelKind::Webhook).then(SigningSecret::generate);
    let new = NewChannel {
        id: ChannelId(uuid::Uuid::now_v7()),
        workspace_id: actor.workspace,
        kind: input.kind,
        name: &name,
        target: &target,
        signing_secret: secret.as_ref().map(SigningSecret::expose),
        kinds,
        created_by: actor.user(),
    };
    let line = actor
        .audit(
            "notification_channel.created",
            "notification_channel",
            new.id,
        )
        .detail(format!("{} {name}", input.kind));
    Ok(state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let channel = notification::insert(conn, &new).await?;
                audit::append(conn, &[line]).await?;
                Ok(channel)
            })
            .await
        })
        .await?)
}

/// Edits a channel.
pub async fn edit(
    state: &AppState,
    actor: &Actor,
    id: ChannelId,
    input: &ChannelEdit,
) -> Result<Channel, ServiceError> {
    actor.require(Permission::Change)?;
    let current = get(state, actor, id).await?;
    let target = if input.address.is_some() || input.url.is_some() {
        Some(checked_target(
            state,
            current.kind,
            input.address.as_deref(),
            input.url.as_deref(),
        ))
    } else {
        None
    };
    let name = input
        .name
        .as_deref()
        .map(|name| checked_name(Some(name), &current.target));
    let kinds = input.kinds.as_deref().map(|kinds| kind_names(Some(kinds)));
    let errors: Vec<FieldError> = [
        target.as_ref().and_then(|t| t.as_ref().err().cloned()),
        name.as_ref().and_then(|n| n.as_ref().err().cloned()),
        kinds.as_ref().and_then(|k| k.as_ref().err().cloned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !errors.is_empty() {
        return Err(ServiceError::Invalid(errors));
    }
    let target = target.and_then(Result::ok);
    let name = name.and_then(Result::ok);
    let changes = ChannelChanges {
        name: name.as_deref(),
        target: target.as_deref(),
        kinds: kinds.and_then(Result::ok),
    };
    let line = actor.audit("notification_channel.updated", "notification_channel", id);
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let channel =
                    notification::update_in_workspace(conn, actor.workspace, id, &changes).await?;
                if channel.is_some() {
                    audit::append(conn, &[line]).await?;
                }
                Ok(channel)
            })
            .await
        })
        .await?
        .ok_or(ServiceError::NotFound("notification channel"))
}

/// Removes a channel, and the messages still waiting for it.
pub async fn delete(state: &AppState, actor: &Actor, id: ChannelId) -> Result<(), ServiceError> {
    actor.require(Permission::Change)?;
    super::delete_audited(
        &state.db,
        "notification channel",
        actor.audit("notification_channel.deleted", "notification_channel", id),
        |conn| Box::pin(notification::delete_in_workspace(conn, actor.workspace, id)),
    )
    .await
}

/// Sends a test message to a channel now: `Ok(Err(why))` when it did not go.
pub async fn send_test(
    state: &AppState,
    actor: &Actor,
    id: ChannelId,
) -> Result<Result<(), String>, ServiceError> {
    actor.require(Permission::Change)?;
    let channel = get(state, actor, id).await?;
    let workspace_name = state
        .db
        .run(async |conn| workspace::name(conn, actor.workspace).await)
        .await?;
    let line = actor.audit("notification_channel.tested", "notification_channel", id);
    state
        .db
        .run(async |conn| audit::append(conn, &[line]).await)
        .await?;
    Ok(state
        .messenger
        .send_test(&channel, &workspace_name)
        .await
        .map_err(|error| error.0))
}
