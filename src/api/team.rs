//! `/api/v1/members`, `/api/v1/invitations`, `/api/v1/api-keys` and `/api/v1/audit-log`: the
//! people of the key's workspace, its keys, and who changed what.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::responses::{
    BadRequest, Conflict, Forbidden, Invalid, NotFound, Unauthorized, Unavailable, Unexpected,
};
use super::{ApiCaller, ApiError};
use crate::db::models::audit::{Entry, Query};
use crate::db::models::workspace::Member;
use crate::domain::{ApiKeyId, InvitationId, Role, UserId};
use crate::service::api_keys::{self, ApiKeyIn};
use crate::service::members::{self, InvitationIn, RoleIn};
use crate::state::AppState;

/// A member of the workspace.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberOut {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

impl TryFrom<Member> for MemberOut {
    type Error = ApiError;

    fn try_from(member: Member) -> Result<Self, ApiError> {
        Ok(MemberOut {
            role: member
                .role
                .parse()
                .map_err(|_| ApiError::Unexpected(anyhow::anyhow!("a stored role is unknown")))?,
            user_id: member.user_id,
            email: member.email,
            joined_at: member.joined_at,
        })
    }
}

/// The workspace's members, owners first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberList {
    pub data: Vec<MemberOut>,
}

/// An invitation just made.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationOut {
    pub id: InvitationId,
    /// The single-use link the invitee opens in a browser to join; shown this once.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    /// Whether the link was mailed to the invitee (an SMTP server is configured, and took it).
    pub emailed: bool,
}

/// A key just made.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    /// The key: shown this once, never stored.
    pub key: String,
}

/// One line of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryOut {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The member's address or the key's name, as it was then.
    pub actor: String,
    /// `user`, `key`, or `anonymous` (a failed sign-in with an unknown address).
    pub actor_type: String,
    #[schema(required = true)]
    pub actor_id: Option<Uuid>,
    /// What was done, such as `subscription.created` or `member.invited`.
    pub action: String,
    /// What it was done to: `source`, `subscription`, `event`, `delivery`, `member`,
    /// `invitation`, `api_key`, `workspace` or `user`.
    pub object_type: String,
    #[schema(required = true)]
    pub object_id: Option<String>,
    /// The address the request came from.
    #[schema(required = true)]
    pub ip: Option<String>,
    /// A few words more, never a secret.
    #[schema(required = true)]
    pub detail: Option<String>,
}

impl From<Entry> for AuditEntryOut {
    fn from(entry: Entry) -> Self {
        AuditEntryOut {
            id: entry.id,
            at: entry.at,
            actor: entry.actor,
            actor_type: entry.actor_type,
            actor_id: entry.actor_id,
            action: entry.action,
            object_type: entry.object_type,
            object_id: entry.object_id,
            ip: entry.ip,
            detail: entry.detail,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    pub items: Vec<AuditEntryOut>,
    /// Pass as `before` for the next page; null on the last.
    #[schema(required = true)]
    pub next_before: Option<i64>,
}

/// Which lines of the audit log.
#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only lines by this actor: a member's address, a key's name, or either's id.
    #[garde(length(max = 320))]
    pub actor: Option<String>,
    /// Only lines about objects of this type, such as `subscription`.
    #[garde(length(max = 50))]
    pub object_type: Option<String>,
    /// Only lines about this object.
    #[garde(length(max = 100))]
    pub object_id: Option<String>,
    /// Only lines at or after this time (RFC 3339).
    #[garde(skip)]
    pub since: Option<DateTime<Utc>>,
    /// Only lines before this time (RFC 3339).
    #[garde(skip)]
    pub until: Option<DateTime<Utc>>,
    /// Only lines older than this one: the previous page's `next_before`.
    #[garde(skip)]
    pub before: Option<i64>,
    /// How many lines a page holds at most.
    #[garde(range(min = 1, max = 200))]
    #[param(minimum = 1, maximum = 200, default = 100)]
    pub limit: Option<i64>,
}

/// `GET /api/v1/members`
#[utoipa::path(
    get,
    path = "/api/v1/members",
    tag = "members",
    operation_id = "list_members",
    summary = "List the workspace's members",
    responses(
        (status = 200, description = "The members, owners first", body = MemberList),
        (status = 401, response = Unauthorized),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list_members(
    caller: ApiCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let data = members::members(&state, &caller.0)
        .await?
        .into_iter()
        .map(MemberOut::try_from)
        .collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(MemberList { data }))
}

/// `PATCH /api/v1/members/{user_id}`
#[utoipa::path(
    patch,
    path = "/api/v1/members/{user_id}",
    tag = "members",
    operation_id = "change_member_role",
    summary = "Give a member another role",
    description = "Admins and owners; only an owner makes or unmakes an owner, and the last owner stays one (409).",
    params(("user_id" = UserId, Path, description = "The member's user id")),
    request_body = RoleIn,
    responses(
        (status = 200, description = "The member with their new role", body = MemberOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn change_role(
    caller: ApiCaller,
    state: web::Data<AppState>,
    user: web::Path<Uuid>,
    input: web::Json<RoleIn>,
) -> Result<HttpResponse, ApiError> {
    let user = UserId(user.into_inner());
    let member = members::set_role(&state, &caller.0, user, input.role).await?;
    Ok(HttpResponse::Ok().json(MemberOut::try_from(member)?))
}

/// `DELETE /api/v1/members/{user_id}`
#[utoipa::path(
    delete,
    path = "/api/v1/members/{user_id}",
    tag = "members",
    operation_id = "remove_member",
    summary = "Remove a member",
    description = "Their sessions lose the workspace at once, and their live pages there close. Only an owner removes an owner, and the last owner stays (409).",
    params(("user_id" = UserId, Path, description = "The member's user id")),
    responses(
        (status = 204, description = "The member is removed"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn remove_member(
    caller: ApiCaller,
    state: web::Data<AppState>,
    user: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    members::remove(&state, &caller.0, UserId(user.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/invitations`
#[utoipa::path(
    post,
    path = "/api/v1/invitations",
    tag = "members",
    operation_id = "invite_member",
    summary = "Invite someone to the workspace",
    description = "Answers a single-use link, valid for 7 days, that the invitee opens in a browser to join (signing up if they have no account, even when sign-up is closed). Only a person with the invited address can use it. Admins and owners; only an owner invites an owner.",
    request_body = InvitationIn,
    responses(
        (status = 201, description = "The invitation and its link, shown this once", body = InvitationOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn invite(
    caller: ApiCaller,
    state: web::Data<AppState>,
    input: web::Json<InvitationIn>,
) -> Result<HttpResponse, ApiError> {
    let invited = members::invite(&state, &caller.0, &input).await?;
    Ok(HttpResponse::Created().json(InvitationOut {
        id: invited.id,
        url: invited.url,
        expires_at: invited.expires_at,
        emailed: invited.emailed,
    }))
}

/// `DELETE /api/v1/invitations/{id}`
#[utoipa::path(
    delete,
    path = "/api/v1/invitations/{id}",
    tag = "members",
    operation_id = "revoke_invitation",
    summary = "Revoke an invitation",
    params(("id" = InvitationId, Path, description = "The invitation's id")),
    responses(
        (status = 204, description = "The link no longer works"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn revoke_invitation(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    members::revoke_invitation(&state, &caller.0, InvitationId(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /api/v1/api-keys`
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "members",
    operation_id = "create_api_key",
    summary = "Create an API key",
    description = "The key acts in this workspace with its role, at most the creator's. It is answered this once and never stored. Admin and owner keys.",
    request_body = ApiKeyIn,
    responses(
        (status = 201, description = "The key, shown this once", body = ApiKeyOut),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn create_key(
    caller: ApiCaller,
    state: web::Data<AppState>,
    input: web::Json<ApiKeyIn>,
) -> Result<HttpResponse, ApiError> {
    let (id, key) = api_keys::create(&state.db, &caller.0, &input).await?;
    Ok(HttpResponse::Created().json(ApiKeyOut {
        id,
        name: input.name.trim().to_owned(),
        role: input.role,
        key: key.expose().to_owned(),
    }))
}

/// `DELETE /api/v1/api-keys/{id}`
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{id}",
    tag = "members",
    operation_id = "revoke_api_key",
    summary = "Revoke an API key",
    params(("id" = ApiKeyId, Path, description = "The key's id")),
    responses(
        (status = 204, description = "Requests with the key are refused from now on"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn revoke_key(
    caller: ApiCaller,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    api_keys::revoke(&state.db, &caller.0, ApiKeyId(id.into_inner())).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `GET /api/v1/audit-log`
#[utoipa::path(
    get,
    path = "/api/v1/audit-log",
    tag = "members",
    operation_id = "read_audit_log",
    summary = "Read the audit log",
    description = "Who changed what, newest first: every state change, secret reveal, replay, membership change, key and sign-in of the workspace's members. Admin and owner keys.",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of the audit log, newest first", body = AuditLog),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Invalid),
        (status = 500, response = Unexpected),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn audit_log(
    caller: ApiCaller,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    query.validate()?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(100);
    let lines = members::audit_log(
        &state,
        &caller.0,
        &Query {
            actor: query.actor,
            object_type: query.object_type,
            object_id: query.object_id,
            since: query.since,
            until: query.until,
            before: query.before,
            limit,
        },
    )
    .await?;
    let next_before = (i64::try_from(lines.len()).unwrap_or(i64::MAX) >= limit)
        .then(|| lines.last().map(|line| line.id))
        .flatten();
    Ok(HttpResponse::Ok().json(AuditLog {
        items: lines.into_iter().map(AuditEntryOut::from).collect(),
        next_before,
    }))
}
