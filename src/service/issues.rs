//! Issues as members see them: listed, read, acknowledged and resolved. The relay opens,
//! reopens and resolves them by itself (see [`crate::issues`]); people acknowledge them (which
//! says someone is on it) and may resolve them by hand (a condition still there reopens it).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::subscriptions::ReplayIn;
use super::{Actor, Permission, ServiceError};
use crate::db::models::delivery::{self, ReplayFilter};
use crate::db::models::issue::{self, Issue, IssuePage};
use crate::db::models::{audit, notification};
use crate::domain::{EventStatus, IssueId, IssueKind, IssueState, SourceId, SubscriptionId};
use crate::live::Notice;
use crate::state::AppState;

/// An issue.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IssueOut {
    pub id: IssueId,
    pub kind: IssueKind,
    pub state: IssueState,
    /// Occurrences: failed deliveries, refused requests, or (for `subscription_disabled` and
    /// `subscription_lagging`) the times the condition began.
    pub count: i64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Null for `source_rejecting`.
    #[schema(required = true)]
    pub subscription_id: Option<SubscriptionId>,
    pub source_id: SourceId,
    /// The class of failure a `deliveries_failed` issue groups, such as `HTTP 500 from
    /// api.example.com` or `timeout at api.example.com`; empty for the other kinds.
    pub cause: String,
    /// What was seen last, in words: the breaker's reason, the last error, the lag.
    pub detail: String,
    /// When it last opened (or reopened), and how many times it reopened.
    pub opened_at: DateTime<Utc>,
    pub reopened: i32,
    #[schema(required = true)]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// Who acknowledged it: a member's address or a key's name.
    #[schema(required = true)]
    pub acknowledged_by: Option<String>,
    #[schema(required = true)]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Who resolved it; null when it resolved by itself (its condition cleared).
    #[schema(required = true)]
    pub resolved_by: Option<String>,
    /// A few recent occurrences, newest first: event ids (read at `/api/v1/events/{id}`), or
    /// for `source_rejecting` ids of refused requests (listed on the source's page).
    pub examples: Vec<Uuid>,
}

impl From<Issue> for IssueOut {
    fn from(issue: Issue) -> Self {
        IssueOut {
            id: issue.id,
            kind: issue.kind,
            state: issue.state,
            count: issue.count,
            first_seen: issue.first_seen,
            last_seen: issue.last_seen,
            subscription_id: issue.subscription_id,
            source_id: issue.source_id,
            cause: issue.cause,
            detail: issue.detail,
            opened_at: issue.opened_at,
            reopened: issue.reopened,
            acknowledged_at: issue.acknowledged_at,
            acknowledged_by: issue.acknowledged_by,
            resolved_at: issue.resolved_at,
            resolved_by: issue.resolved_by,
            examples: issue.examples,
        }
    }
}

/// What a person may do to an issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueChange {
    /// `acknowledged` (someone is on it; an open issue only) or `resolved`.
    pub state: IssueState,
}

/// A page of the workspace's issues, newest first.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    page: &IssuePage,
) -> Result<Vec<Issue>, ServiceError> {
    actor.require(Permission::Read)?;
    Ok(state
        .db
        .run(async |conn| issue::list_in_workspace(conn, actor.workspace, page).await)
        .await?)
}

/// The Issues page: unresolved first (most recently seen first), then resolved ones.
pub async fn board(
    state: &AppState,
    actor: &Actor,
    kind: Option<IssueKind>,
    states: &[IssueState],
) -> Result<Vec<Issue>, ServiceError> {
    actor.require(Permission::Read)?;
    Ok(state
        .db
        .run(async |conn| issue::board(conn, actor.workspace, kind, states, 200).await)
        .await?)
}

/// One of the workspace's issues.
pub async fn get(state: &AppState, actor: &Actor, id: IssueId) -> Result<Issue, ServiceError> {
    actor.require(Permission::Read)?;
    state
        .db
        .run(async |conn| issue::find_in_workspace(conn, actor.workspace, id).await)
        .await?
        .ok_or(ServiceError::NotFound("issue"))
}

/// The unresolved issues about one subscription, or about one source itself (its page's
/// banners).
pub async fn unresolved_about(
    state: &AppState,
    actor: &Actor,
    subscription: Option<SubscriptionId>,
    source: Option<SourceId>,
) -> Result<Vec<Issue>, ServiceError> {
    actor.require(Permission::Read)?;
    Ok(state
        .db
        .run(async |conn| {
            issue::unresolved_about(conn, actor.workspace, subscription, source).await
        })
        .await?)
}

/// How many of the workspace's issues are open, acknowledged ones aside (the navigation's
/// count: what nobody is on yet).
pub async fn count_open(state: &AppState, actor: &Actor) -> Result<i64, ServiceError> {
    actor.require(Permission::Read)?;
    Ok(state
        .db
        .run(async |conn| issue::count_open(conn, actor.workspace).await)
        .await?)
}

/// The subscription of an issue about one, for an action on it ("what to do") that needs
/// `Change`.
async fn subscription_to_act_on(
    state: &AppState,
    actor: &Actor,
    id: IssueId,
) -> Result<SubscriptionId, ServiceError> {
    actor.require(Permission::Change)?;
    get(state, actor, id)
        .await?
        .subscription_id
        .ok_or(ServiceError::NotFound("subscription of the issue"))
}

/// Enables again the subscription of an issue about one (the breaker's).
pub async fn reenable(state: &AppState, actor: &Actor, id: IssueId) -> Result<(), ServiceError> {
    let subscription = subscription_to_act_on(state, actor, id).await?;
    super::subscriptions::set_active(state, actor, subscription, true)
        .await
        .map(drop)
}

/// Replays the failed deliveries of the subscription of an issue about one; how many it queued.
pub async fn replay_failed(
    state: Arc<AppState>,
    actor: &Actor,
    id: IssueId,
) -> Result<i64, ServiceError> {
    let subscription = subscription_to_act_on(&state, actor, id).await?;
    let everything_failed = ReplayIn {
        status: None,
        since: None,
        until: None,
    };
    super::subscriptions::replay(state, actor, subscription, everything_failed).await
}

/// How many of a subscription's deliveries wait in the graveyard (what replaying its failures
/// would take).
pub async fn failed_waiting(
    state: &AppState,
    actor: &Actor,
    subscription: SubscriptionId,
) -> Result<i64, ServiceError> {
    actor.require(Permission::Read)?;
    let filter = ReplayFilter {
        status: EventStatus::Failed,
        subscription: Some(subscription),
        since: None,
        until: None,
        payload: None,
    };
    Ok(state
        .db
        .run(async |conn| delivery::count_replayable(conn, actor.workspace, &filter).await)
        .await?)
}

/// The messages sent, or waiting, about an issue.
pub async fn notifications(
    state: &AppState,
    actor: &Actor,
    id: IssueId,
) -> Result<Vec<notification::Sent>, ServiceError> {
    get(state, actor, id).await?;
    Ok(state
        .db
        .run(async |conn| notification::about_issue(conn, id).await)
        .await?)
}

/// Acknowledges or resolves an issue; answers it as it is then. Resolving tells the channels,
/// like a resolution the relay sees by itself.
pub async fn change(
    state: &AppState,
    actor: &Actor,
    id: IssueId,
    to: IssueState,
) -> Result<Issue, ServiceError> {
    actor.require(Permission::Change)?;
    let quiet = state.notification_quiet;
    let changed = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let Some(found) = issue::find_in_workspace(conn, actor.workspace, id).await? else {
                    return Ok(Err(ServiceError::NotFound("issue")));
                };
                match to {
                    IssueState::Acknowledged => {
                        if !issue::acknowledge(conn, actor.workspace, id, actor.name()).await? {
                            return Ok(Err(ServiceError::Conflict(format!(
                                "only an open issue can be acknowledged; this one is {}",
                                found.state
                            ))));
                        }
                        audit::append(conn, &[actor.audit("issue.acknowledged", "issue", id)])
                            .await?;
                    }
                    IssueState::Resolved => {
                        for transition in issue::resolve(conn, &[id], Some(actor.name())).await? {
                            notification::enqueue(conn, &transition, quiet).await?;
                        }
                        audit::append(conn, &[actor.audit("issue.resolved", "issue", id)]).await?;
                    }
                    IssueState::Open => {
                        return Ok(Err(ServiceError::invalid(
                            "state",
                            "an issue can be acknowledged or resolved; it opens by itself",
                        )));
                    }
                }
                issue::find_in_workspace(conn, actor.workspace, id)
                    .await
                    .map(|issue| issue.ok_or(ServiceError::NotFound("issue")))
            })
            .await
        })
        .await??;
    state.live.notify(Notice::Issues {
        workspace: actor.workspace,
    });
    Ok(changed)
}
