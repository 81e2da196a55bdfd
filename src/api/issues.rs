//! `/api/v1/issues` (what the relay noticed going wrong) and `/api/v1/notification-channels`
//! (where the workspace is told).

use actix_web::{HttpResponse, web};
use garde::Validate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{ApiCaller, ApiError};
use crate::db::models::issue::IssuePage;
use crate::domain::{ChannelId, IssueId, IssueKind, IssueState, SourceId, SubscriptionId};
use crate::service::channels::{self, ChannelEdit, ChannelIn, ChannelOut};
use crate::service::issues::{self, IssueChange, IssueOut};
use crate::state::AppState;

/// A page of issues, the newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueList {
    pub items: Vec<IssueOut>,
    /// Pass as `before` for the next page; null on the last.
    #[schema(required = true)]
    pub next_before: Option<IssueId>,
}

/// Which issues.
#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IssueQuery {
    /// Only issues in this state.
    #[garde(skip)]
    pub state: Option<IssueState>,
    /// Only issues of this kind.
    #[garde(skip)]
    pub kind: Option<IssueKind>,
    /// Only issues about this subscription.
    #[garde(skip)]
    pub subscription_id: Option<SubscriptionId>,
    /// Only issues about this source (its own, and its subscriptions').
    #[garde(skip)]
    pub source_id: Option<SourceId>,
    /// Only issues opened before this one: the previous page's `next_before`.
    #[garde(skip)]
    pub before: Option<IssueId>,
    /// How many issues a page holds at most.
    #[garde(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200, default = 50)]
    pub limit: Option<i64>,
}

/// `GET /api/v1/issues`
#[utoipa::path(
    get,
    path = "/api/v1/issues",
    tag = "issues",
    operation_id = "list_issues",
    summary = "List issues",
    description = "What the relay noticed going wrong, the newest first: subscriptions the circuit breaker disabled (`subscription_disabled`), deliveries that reached the graveyard, grouped by subscription and class of failure (`deliveries_failed`), sources refusing requests (`source_rejecting`), and subscriptions falling behind (`subscription_lagging`). Issues resolve by themselves when their condition clears, and reopen when it recurs.",
    params(IssueQuery),
    responses(
        (status = 200, description = "A page of issues", body = IssueList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(
    caller: ApiCaller,
    state: web::Data<AppState>,
    query: web::Query<IssueQuery>,
) -> Result<HttpResponse, ApiError> {
    query.validate()?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(50);
    let page = IssuePage {
        states: query.state.into_iter().collect(),
        kind: query.kind,
        subscription: query.subscription_id,
        source: query.source_id,
        before: query.before,
        limit,
    };
    let found = issues::list(&state, &caller.0, &page).await?;
    let next_before = (i64::try_from(found.len()).unwrap_or(i64::MAX) >= limit)
        .then(|| found.last().map(|issue| issue.id))
        .flatten();
    Ok(HttpResponse::Ok().json(IssueList {
        items: found.into_iter().map(IssueOut::from).collect(),
        next_before,
    }))
}

/// `GET /api/v1/issues/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/issues/{id}",
    tag = "issues",
    operation_id = "get_issue",
    summary = "Get an issue",
    params(("id" = IssueId, Path, description = "The issue's id")),
    responses(
        (status = 200, description = "The issue", body = IssueOut),
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
    let issue = issues::get(&state, &caller.0, IssueId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(IssueOut::from(issue)))
}

/// `PATCH /api/v1/issues/{id}`
#[utoipa::path(
    patch,
    path = "/api/v1/issues/{id}",
    tag = "issues",
    operation_id = "change_issue",
    summary = "Acknowledge or resolve an issue",
    description = "`{\"state\": \"acknowledged\"}` says someone is on it (an open issue only; 409 otherwise); `{\"state\": \"resolved\"}` resolves it and tells the channels. An issue whose condition is still there reopens at the relay's next look. Developers and above.",
    params(("id" = IssueId, Path, description = "The issue's id")),
    request_body = IssueChange,
    responses(
        (status = 200, description = "The issue as it is now", body = IssueOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn change(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    input: web::Json<IssueChange>,
) -> Result<HttpResponse, ApiError> {
    let issue = issues::change(&state, &caller.0, IssueId(id.into_inner()), input.state).await?;
    Ok(HttpResponse::Ok().json(IssueOut::from(issue)))
}

/// The workspace's notification channels.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelList {
    pub items: Vec<ChannelOut>,
}

/// How a test message went.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestSent {
    pub sent: bool,
    /// Why it did not go: the SMTP server's or the endpoint's answer, or the connection's
    /// failure.
    #[schema(required = true)]
    pub error: Option<String>,
}

/// `GET /api/v1/notification-channels`
#[utoipa::path(
    get,
    path = "/api/v1/notification-channels",
    tag = "issues",
    operation_id = "list_notification_channels",
    summary = "List notification channels",
    responses(
        (status = 200, description = "The channels, oldest first", body = ChannelList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list_channels(
    caller: ApiCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let items = channels::list(&state, &caller.0)
        .await?
        .into_iter()
        .map(|channel| ChannelOut::of(channel, &caller.0))
        .collect();
    Ok(HttpResponse::Ok().json(ChannelList { items }))
}

/// `POST /api/v1/notification-channels`
#[utoipa::path(
    post,
    path = "/api/v1/notification-channels",
    tag = "issues",
    operation_id = "create_notification_channel",
    summary = "Add a notification channel",
    description = "`{\"kind\": \"email\", \"address\"}`, `{\"kind\": \"slack\", \"url\"}` (an incoming webhook) or `{\"kind\": \"webhook\", \"url\"}`, each with an optional `name` and `kinds` (the issue kinds it is told of; all by default). A webhook channel answers with its `signing_secret`: its payloads (`NotificationPayload`) are signed with it as deliveries are (Standard Webhooks), with the event types `issue.opened`, `issue.reopened`, `issue.resolved`, `subscription.disabled` and `subscription.enabled`. URLs pass the same address checks as subscriptions' endpoints. Developers and above.",
    request_body = ChannelIn,
    responses(
        (status = 201, description = "The channel", body = ChannelOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create_channel(
    caller: ApiCaller,
    state: web::Data<AppState>,
    input: web::Json<ChannelIn>,
) -> Result<HttpResponse, ApiError> {
    let channel = channels::create(&state, &caller.0, &input).await?;
    Ok(HttpResponse::Created().json(ChannelOut::of(channel, &caller.0)))
}

/// `GET /api/v1/notification-channels/{id}`
#[utoipa::path(
    get,
    path = "/api/v1/notification-channels/{id}",
    tag = "issues",
    operation_id = "get_notification_channel",
    summary = "Get a notification channel",
    params(("id" = ChannelId, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "The channel", body = ChannelOut),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn get_channel(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let channel = channels::get(&state, &caller.0, ChannelId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(ChannelOut::of(channel, &caller.0)))
}

/// `PATCH /api/v1/notification-channels/{id}`
#[utoipa::path(
    patch,
    path = "/api/v1/notification-channels/{id}",
    tag = "issues",
    operation_id = "edit_notification_channel",
    summary = "Edit a notification channel",
    description = "Its name, its address or URL, or its kinds; its kind stays. Developers and above.",
    params(("id" = ChannelId, Path, description = "The channel's id")),
    request_body = ChannelEdit,
    responses(
        (status = 200, description = "The channel", body = ChannelOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn edit_channel(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
    input: web::Json<ChannelEdit>,
) -> Result<HttpResponse, ApiError> {
    let channel = channels::edit(&state, &caller.0, ChannelId(id.into_inner()), &input).await?;
    Ok(HttpResponse::Ok().json(ChannelOut::of(channel, &caller.0)))
}

/// `DELETE /api/v1/notification-channels/{id}`
#[utoipa::path(
    delete,
    path = "/api/v1/notification-channels/{id}",
    tag = "issues",
    operation_id = "delete_notification_channel",
    summary = "Remove a notification channel",
    description = "Messages still waiting for it are dropped. Developers and above.",
    params(("id" = ChannelId, Path, description = "The channel's id")),
    responses(
        (status = 204, description = "The channel is gone"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn delete_channel(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    channels::delete(&state, &caller.0, ChannelId(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/notification-channels/{id}/test`
#[utoipa::path(
    post,
    path = "/api/v1/notification-channels/{id}/test",
    tag = "issues",
    operation_id = "test_notification_channel",
    summary = "Send a test message to a notification channel",
    description = "Sends a made-up `issue.opened` message now (its data says `\"test\": true`), and answers whether it went. Developers and above.",
    params(("id" = ChannelId, Path, description = "The channel's id")),
    responses(
        (status = 200, description = "Whether the message went, and if not why", body = TestSent),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn test_channel(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let outcome = channels::send_test(&state, &caller.0, ChannelId(id.into_inner())).await?;
    Ok(HttpResponse::Ok().json(TestSent {
        sent: outcome.is_ok(),
        error: outcome.err(),
    }))
}
