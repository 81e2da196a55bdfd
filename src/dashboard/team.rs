//! The team pages: workspaces (switch, create, rename, delete), members and invitations, joining
//! through an invitation link, and the audit log.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::Utc;
use serde::Deserialize;
use uuid::Uuid;

use super::accounts::signed_in_response;
use super::error::DashboardError;
use super::session::{Session, Visitor};
use super::view::{
    Flash, FormErrors, Layout, Moment, Nav, WorkspaceBadge, pages, redirect, render, render_with,
};
use crate::auth::{self, AccountError, SignedIn};
use crate::db::models::audit::Query;
use crate::db::models::invitation::Opened;
use crate::domain::{InvitationId, Role, UserId, WorkspaceId};
use crate::service::members::{self, InvitationIn};
use crate::service::{Permission, ServiceError};
use crate::state::AppState;

/// Where a member lands in a workspace.
const HOME: &str = "/sources";

fn ip_of(request: &HttpRequest) -> Option<String> {
    request.peer_addr().map(|address| address.ip().to_string())
}

/// The signed-in user of a page outside any one workspace, or log-in first.
fn signed_in(visitor: &Visitor, request: &HttpRequest) -> Result<SignedIn, DashboardError> {
    visitor
        .user
        .clone()
        .ok_or_else(|| DashboardError::LoginRequired {
            next: request.path().to_owned(),
            htmx: super::view::is_htmx(request),
        })
}

fn layout_of(user: &SignedIn, visitor: &Visitor, nav: Nav) -> Layout {
    Layout {
        user_email: Some(user.email.clone()),
        csrf_token: user.token.csrf_token(),
        flash: visitor.flash.clone(),
        nav: Some(nav),
        workspace: user.workspace.as_ref().map(WorkspaceBadge::of),
    }
}

/// One of the user's workspaces, as the workspaces page lists it.
pub struct WorkspaceRow {
    pub id: WorkspaceId,
    pub name: String,
    pub role: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "workspaces.html")]
struct WorkspacesPage {
    layout: Layout,
    workspaces: Vec<WorkspaceRow>,
    /// The current workspace's name, to rename it (admins).
    current_name: String,
    errors: FormErrors,
}

/// A workspace's name.
#[derive(Debug, Deserialize)]
pub struct NameForm {
    #[serde(default)]
    name: String,
}

async fn workspaces_page(
    state: &AppState,
    user: &SignedIn,
    layout: Layout,
    status: StatusCode,
    errors: FormErrors,
) -> Result<HttpResponse, DashboardError> {
    let current = user.workspace.as_ref().map(|workspace| workspace.id);
    let workspaces = members::workspaces_of(state, user.user_id)
        .await?
        .into_iter()
        .map(|membership| WorkspaceRow {
            current: Some(membership.workspace_id) == current,
            id: membership.workspace_id,
            name: membership.name,
            role: membership.role,
        })
        .collect();
    render_with(
        status,
        &WorkspacesPage {
            current_name: layout.workspace_name().to_owned(),
            layout,
            workspaces,
            errors,
        },
    )
}

/// `GET /workspaces`: the user's workspaces, to switch between, and a new one to create.
pub async fn workspaces(
    request: HttpRequest,
    visitor: Visitor,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    let user = signed_in(&visitor, &request)?;
    let layout = layout_of(&user, &visitor, Nav::Workspaces);
    workspaces_page(&state, &user, layout, StatusCode::OK, FormErrors::default()).await
}

/// `POST /workspaces`: a new workspace the user owns, which the session switches to.
pub async fn create_workspace(
    request: HttpRequest,
    visitor: Visitor,
    state: web::Data<AppState>,
    form: web::Form<NameForm>,
) -> Result<HttpResponse, DashboardError> {
    let user = signed_in(&visitor, &request)?;
    match members::create_workspace(
        &state,
        user.user_id,
        &user.email,
        &form.name,
        ip_of(&request),
    )
    .await
    {
        Ok(id) => {
            auth::switch_workspace(&state.db, &user.token, id).await?;
            Ok(redirect(
                &request,
                HOME,
                Some(Flash::success(format!(
                    "Workspace {} created: you are its owner.",
                    form.name.trim()
                ))),
            ))
        }
        Err(ServiceError::Invalid(fields)) => {
            let layout = layout_of(&user, &visitor, Nav::Workspaces);
            workspaces_page(
                &state,
                &user,
                layout,
                StatusCode::UNPROCESSABLE_ENTITY,
                FormErrors::new(fields),
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /workspaces/{id}/switch`: the session looks at another of the user's workspaces.
pub async fn switch(
    request: HttpRequest,
    visitor: Visitor,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let user = signed_in(&visitor, &request)?;
    let id = WorkspaceId(id.into_inner());
    let Some(membership) = members::workspaces_of(&state, user.user_id)
        .await?
        .into_iter()
        .find(|membership| membership.workspace_id == id)
    else {
        return Err(DashboardError::NotFound);
    };
    auth::switch_workspace(&state.db, &user.token, id).await?;
    Ok(redirect(
        &request,
        HOME,
        Some(Flash::success(format!(
            "You are in {} now, as {}.",
            membership.name, membership.role
        ))),
    ))
}

/// `POST /workspace/rename` (admins)
pub async fn rename(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    form: web::Form<NameForm>,
) -> Result<HttpResponse, DashboardError> {
    match members::rename_workspace(&state, session.actor(), &form.name).await {
        Ok(()) => Ok(redirect(
            &request,
            "/workspaces",
            Some(Flash::success("Workspace renamed.")),
        )),
        Err(ServiceError::Invalid(fields)) => {
            workspaces_page(
                &state,
                &session.user,
                session.layout(Nav::Workspaces),
                StatusCode::UNPROCESSABLE_ENTITY,
                FormErrors::new(fields),
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// `POST /workspace/delete` (owners): the workspace and everything in it.
pub async fn delete(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    members::delete_workspace(&state, session.actor()).await?;
    Ok(redirect(
        &request,
        "/workspaces",
        Some(Flash::success(format!(
            "Workspace {} deleted, with its sources, subscriptions, events and keys.",
            session.workspace.name
        ))),
    ))
}

/// A member as the members page lists them.
pub struct MemberRow {
    pub user_id: UserId,
    pub email: String,
    pub role: String,
    pub joined: Moment,
    pub is_you: bool,
}

/// An open invitation as the members page lists it.
pub struct InvitationRow {
    pub id: InvitationId,
    pub email: String,
    pub role: String,
    pub expires: Moment,
    pub invited_by: Option<String>,
}

#[derive(Template)]
#[template(path = "members.html")]
struct MembersPage {
    layout: Layout,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    /// An invitation just made: its address, its link (shown this once) and whether it was
    /// mailed.
    invited: Option<(String, String, bool)>,
    /// The roles the member may hand out.
    roles: Vec<Role>,
    email: String,
    errors: FormErrors,
}

pages!(WorkspacesPage, MembersPage);

async fn members_page(
    session: &Session,
    state: &AppState,
    status: StatusCode,
    invited: Option<(String, String, bool)>,
    email: String,
    errors: FormErrors,
) -> Result<HttpResponse, DashboardError> {
    let actor = session.actor();
    let now = Utc::now();
    let members = members::members(state, actor)
        .await?
        .into_iter()
        .map(|member| MemberRow {
            is_you: member.user_id == session.user_id(),
            user_id: member.user_id,
            email: member.email,
            role: member.role,
            joined: Moment::of(member.joined_at, now),
        })
        .collect();
    let invitations = if actor.may(Permission::Administer) {
        members::invitations(state, actor)
            .await?
            .into_iter()
            .map(|invitation| InvitationRow {
                id: invitation.id,
                email: invitation.email,
                role: invitation.role,
                expires: Moment::of(invitation.expires_at, now),
                invited_by: invitation.invited_by,
            })
            .collect()
    } else {
        Vec::new()
    };
    let roles = Role::ALL
        .into_iter()
        .filter(|role| *role != Role::Owner || actor.may(Permission::Own))
        .collect();
    render_with(
        status,
        &MembersPage {
            layout: session.layout(Nav::Members),
            members,
            invitations,
            invited,
            roles,
            email,
            errors,
        },
    )
}

/// `GET /members`
pub async fn list(
    session: Session,
    state: web::Data<AppState>,
) -> Result<HttpResponse, DashboardError> {
    members_page(
        &session,
        &state,
        StatusCode::OK,
        None,
        String::new(),
        FormErrors::default(),
    )
    .await
}

/// The invitation form.
#[derive(Debug, Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

/// `POST /members/invite`: answers with the page showing the new link, once.
pub async fn invite(
    session: Session,
    state: web::Data<AppState>,
    form: web::Form<InviteForm>,
) -> Result<HttpResponse, DashboardError> {
    let form = form.into_inner();
    let role = form
        .role
        .parse::<Role>()
        .map_err(|error| ServiceError::invalid("role", error.to_string()));
    let invited = match role {
        Ok(role) => {
            let input = InvitationIn {
                email: form.email.clone(),
                role,
            };
            members::invite(&state, session.actor(), &input).await
        }
        Err(refused) => Err(refused),
    };
    match invited {
        Ok(invited) => {
            let shown = Some((form.email.trim().to_owned(), invited.url, invited.emailed));
            members_page(
                &session,
                &state,
                StatusCode::OK,
                shown,
                String::new(),
                FormErrors::default(),
            )
            .await
        }
        Err(ServiceError::Invalid(fields)) => {
            members_page(
                &session,
                &state,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                form.email,
                FormErrors::new(fields),
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}

/// A member's new role.
#[derive(Debug, Deserialize)]
pub struct RoleForm {
    role: String,
}

/// `POST /members/{user_id}/role`
pub async fn change_role(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    user: web::Path<Uuid>,
    form: web::Form<RoleForm>,
) -> Result<HttpResponse, DashboardError> {
    let role = form
        .role
        .parse::<Role>()
        .map_err(|error| DashboardError::BadRequest(error.to_string()))?;
    let member =
        members::set_role(&state, session.actor(), UserId(user.into_inner()), role).await?;
    Ok(redirect(
        &request,
        "/members",
        Some(Flash::success(format!(
            "{} is {} now.",
            member.email, member.role
        ))),
    ))
}

/// `POST /members/{user_id}/remove`: removes a member, or lets the member leave.
pub async fn remove(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    user: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    let user = UserId(user.into_inner());
    members::remove(&state, session.actor(), user).await?;
    if user == session.user_id() {
        return Ok(redirect(
            &request,
            "/workspaces",
            Some(Flash::success(format!(
                "You left {}.",
                session.workspace.name
            ))),
        ));
    }
    Ok(redirect(
        &request,
        "/members",
        Some(Flash::success(
            "Member removed: their sessions lost this workspace at once.",
        )),
    ))
}

/// `POST /invitations/{id}/revoke`
pub async fn revoke_invitation(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, DashboardError> {
    members::revoke_invitation(&state, session.actor(), InvitationId(id.into_inner())).await?;
    Ok(redirect(
        &request,
        "/members",
        Some(Flash::success(
            "Invitation revoked: its link no longer works.",
        )),
    ))
}

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    layout: Layout,
    token: String,
    workspace: String,
    email: String,
    role: String,
    invited_by: Option<String>,
    /// Why it cannot be used, when it cannot.
    problem: Option<String>,
    /// Who is signed in, if anyone.
    signed_in_as: Option<String>,
    errors: FormErrors,
}

pages!(InvitationPage);

fn invitation_page(
    visitor: &Visitor,
    token: String,
    opened: &Opened,
    problem: Option<String>,
    errors: FormErrors,
) -> InvitationPage {
    let layout = match &visitor.user {
        Some(user) => Layout {
            nav: None,
            ..layout_of(user, visitor, Nav::Workspaces)
        },
        None => visitor.layout(),
    };
    InvitationPage {
        layout,
        token,
        workspace: opened.workspace_name.clone(),
        email: opened.invitation.email.clone(),
        role: opened.invitation.role.clone(),
        invited_by: opened.invitation.invited_by.clone(),
        problem,
        signed_in_as: visitor.user.as_ref().map(|user| user.email.clone()),
        errors,
    }
}

/// `GET /invitations/{token}`: what the link invites to, and the button (or the sign-up form)
/// that accepts it.
pub async fn invitation(
    visitor: Visitor,
    state: web::Data<AppState>,
    token: web::Path<String>,
) -> Result<HttpResponse, DashboardError> {
    let token = token.into_inner();
    let opened = members::open_invitation(&state, &token)
        .await?
        .ok_or(DashboardError::NotFound)?;
    let problem = members::unusable(&opened.invitation).map(str::to_owned);
    let status = if problem.is_some() {
        StatusCode::GONE
    } else {
        StatusCode::OK
    };
    render_with(
        status,
        &invitation_page(&visitor, token, &opened, problem, FormErrors::default()),
    )
}

/// The sign-up form of an invitation. No `Debug`: it holds a password.
#[derive(Deserialize)]
pub struct JoinForm {
    #[serde(default)]
    password: String,
}

/// `POST /invitations/{token}`: a signed-in user joins; a new person signs up with the invited
/// address and joins, whatever the sign-up policy.
pub async fn accept(
    request: HttpRequest,
    visitor: Visitor,
    state: web::Data<AppState>,
    token: web::Path<String>,
    form: web::Form<JoinForm>,
) -> Result<HttpResponse, DashboardError> {
    let token = token.into_inner();
    let refused = |opened: &Opened, problem: String, errors: FormErrors, status| {
        render_with(
            status,
            &invitation_page(&visitor, token.clone(), opened, Some(problem), errors),
        )
    };
    if let Some(user) = &visitor.user {
        return match members::accept(&state, &token, user.user_id, ip_of(&request)).await {
            Ok(opened) => {
                auth::switch_workspace(&state.db, &user.token, opened.invitation.workspace_id)
                    .await?;
                Ok(redirect(
                    &request,
                    HOME,
                    Some(Flash::success(format!(
                        "Welcome to {}: you joined as {}.",
                        opened.workspace_name, opened.invitation.role
                    ))),
                ))
            }
            Err(ServiceError::Conflict(why)) => {
                let opened = members::open_invitation(&state, &token)
                    .await?
                    .ok_or(DashboardError::NotFound)?;
                refused(&opened, why, FormErrors::default(), StatusCode::CONFLICT)
            }
            Err(other) => Err(other.into()),
        };
    }
    let opened = members::open_invitation(&state, &token)
        .await?
        .ok_or(DashboardError::NotFound)?;
    let password_hash = match auth::new_credentials(&opened.invitation.email, &form.password).await
    {
        Ok((_, hash)) => hash,
        Err(AccountError::Invalid(fields)) => {
            return render_with(
                StatusCode::UNPROCESSABLE_ENTITY,
                &invitation_page(&visitor, token, &opened, None, FormErrors::new(fields)),
            );
        }
        Err(AccountError::Database(error)) => return Err(error.into()),
        Err(other) => return Err(DashboardError::Unexpected(other.into())),
    };
    match members::sign_up_and_accept(&state, &token, &password_hash, ip_of(&request)).await {
        Ok((opened, user)) => {
            let welcome = Flash::success(format!(
                "Welcome to {}: you joined as {}.",
                opened.workspace_name, opened.invitation.role
            ));
            signed_in_response(&request, &state, user, HOME, Some(welcome)).await
        }
        Err(ServiceError::Conflict(why)) => {
            refused(&opened, why, FormErrors::default(), StatusCode::CONFLICT)
        }
        Err(other) => Err(other.into()),
    }
}

/// One line of the audit log as its page shows it.
pub struct AuditRow {
    pub at: Moment,
    pub actor: String,
    pub actor_type: String,
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    pub ip: String,
    pub detail: String,
}

impl AuditRow {
    /// The page of the object, for those that have one.
    pub fn page(&self) -> Option<String> {
        let section = match self.object_type.as_str() {
            "source" => "sources",
            "subscription" => "subscriptions",
            "event" => "events",
            _ => return None,
        };
        Some(format!("/{section}/{}", self.object_id))
    }
}

/// The audit log's filters, as typed.
#[derive(Debug, Default, Deserialize)]
pub struct AuditFilter {
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub object_type: String,
    #[serde(default)]
    pub object_id: String,
    pub before: Option<i64>,
}

#[derive(Template)]
#[template(path = "audit_log.html")]
struct AuditPage {
    layout: Layout,
    filter: AuditFilter,
    rows: Vec<AuditRow>,
    /// The next page's link, if there is one.
    older: Option<String>,
}

pages!(AuditPage);

/// Lines a page of the audit log shows.
const AUDIT_PAGE: i64 = 100;

/// `GET /audit-log` (admins and owners)
pub async fn audit_log(
    request: HttpRequest,
    session: Session,
    state: web::Data<AppState>,
    filter: web::Query<AuditFilter>,
) -> Result<HttpResponse, DashboardError> {
    let filter = filter.into_inner();
    let given = |text: &str| Some(text.trim().to_owned()).filter(|text| !text.is_empty());
    let query = Query {
        actor: given(&filter.actor),
        object_type: given(&filter.object_type),
        object_id: given(&filter.object_id),
        before: filter.before,
        limit: AUDIT_PAGE,
        ..Query::default()
    };
    let lines = members::audit_log(&state, session.actor(), &query).await?;
    let now = Utc::now();
    let older = (i64::try_from(lines.len()).unwrap_or(i64::MAX) >= AUDIT_PAGE)
        .then(|| lines.last().map(|line| line.id))
        .flatten()
        .map(|before| {
            let mut url = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in [
                ("actor", &filter.actor),
                ("object_type", &filter.object_type),
                ("object_id", &filter.object_id),
            ] {
                if !value.is_empty() {
                    url.append_pair(name, value);
                }
            }
            url.append_pair("before", &before.to_string());
            format!("{}?{}", request.path(), url.finish())
        });
    let rows = lines
        .into_iter()
        .map(|line| AuditRow {
            at: Moment::of(line.at, now),
            actor: line.actor,
            actor_type: line.actor_type,
            action: line.action,
            object_type: line.object_type,
            object_id: line.object_id.unwrap_or_default(),
            ip: line.ip.unwrap_or_default(),
            detail: line.detail.unwrap_or_default(),
        })
        .collect();
    render(&AuditPage {
        layout: session.layout(Nav::AuditLog),
        filter,
        rows,
        older,
    })
}
