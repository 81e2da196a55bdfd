//! Workspaces and their people: members and their roles, invitations, and the audit log. The
//! rules: admins manage members and invitations, only owners make or unmake owners, a member may
//! always leave, and a workspace always keeps an owner.

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use slog::warn;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{Actor, Permission, ServiceError};
use crate::db::DbError;
use crate::db::models::audit::{self, Entry, Query};
use crate::db::models::invitation::{self, Invitation, NewInvitation, Opened};
use crate::db::models::user::{self, NewUser, User};
use crate::db::models::workspace::{self, Member, MembershipOf};
use crate::domain::{
    EmailAddress, InvitationId, Role, UserId, WorkspaceId, is_token_shaped, random_token,
};
use crate::live::Notice;
use crate::state::AppState;

/// How long an invitation link works.
pub const INVITATION_LIFETIME: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// An invitation to send.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationIn {
    /// Who is invited: only a person signed in with this address, or signing up with it, can
    /// use the link.
    pub email: String,
    /// Their role once they join.
    pub role: Role,
}

/// A member's new role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleIn {
    pub role: Role,
}

/// An invitation just made, with the link that is shown this once.
#[derive(Debug)]
pub struct Invited {
    pub id: InvitationId,
    pub url: String,
    pub expires_at: DateTime<Utc>,
    /// Whether the link was mailed to the invitee: false when no SMTP server is configured, or
    /// it refused or did not answer (the link is still there to copy).
    pub emailed: bool,
}

/// An invitation link's secret: only its hash is stored.
fn link_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn role_of(stored: &str) -> Result<Role, ServiceError> {
    stored
        .parse()
        .map_err(|_| ServiceError::Unexpected(anyhow::anyhow!("a stored role is unknown")))
}

/// The members of the actor's workspace, owners first.
pub async fn members(state: &AppState, actor: &Actor) -> Result<Vec<Member>, ServiceError> {
    actor.require(Permission::Read)?;
    Ok(state
        .db
        .run(async |conn| workspace::members(conn, actor.workspace).await)
        .await?)
}

/// Invites `input.email` to the actor's workspace with `input.role`: a single-use link, valid
/// for [`INVITATION_LIFETIME`]. Only an owner invites an owner.
pub async fn invite(
    state: &AppState,
    actor: &Actor,
    input: &InvitationIn,
) -> Result<Invited, ServiceError> {
    actor.require(Permission::Administer)?;
    if input.role == Role::Owner {
        actor.require(Permission::Own)?;
    }
    let email = EmailAddress::parse(&input.email)
        .map_err(|error| ServiceError::invalid("email", error.to_string()))?;
    let token = random_token();
    let hash = link_hash(&token);
    let expires_at = Utc::now() + INVITATION_LIFETIME;
    let new = NewInvitation {
        id: InvitationId(Uuid::new_v4()),
        workspace_id: actor.workspace,
        email: email.as_str(),
        role: input.role.as_str(),
        token_hash: &hash,
        invited_by: actor.user(),
        expires_at,
    };
    let line = actor
        .audit("member.invited", "invitation", new.id)
        .detail(format!("{email} as {}", input.role));
    let workspace_name = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                if workspace::has_member_with_email(conn, actor.workspace, email.as_str()).await? {
                    return Ok(Err(ServiceError::invalid(
                        "email",
                        "someone with this address is a member already",
                    )));
                }
                invitation::insert(conn, &new).await?;
                audit::append(conn, &[line]).await?;
                workspace::name(conn, actor.workspace).await.map(Ok)
            })
            .await
        })
        .await??;
    let url = format!("{}/invitations/{token}", state.public_base);
    let emailed = match &state.mailer {
        Some(mailer) => {
            let (subject, body) =
                invitation_mail(actor, &workspace_name, input.role, &url, expires_at);
            match mailer.send(email.as_str(), &subject, body).await {
                Ok(()) => true,
                Err(error) => {
                    warn!(state.log, "an invitation could not be mailed; its link is shown instead";
                        "invitation_id" => %new.id, "error" => format!("{error:#}"));
                    false
                }
            }
        }
        None => false,
    };
    Ok(Invited {
        id: new.id,
        url,
        expires_at,
        emailed,
    })
}

/// The subject and text of the mail that carries an invitation.
fn invitation_mail(
    actor: &Actor,
    workspace: &str,
    role: Role,
    url: &str,
    expires_at: DateTime<Utc>,
) -> (String, String) {
    let inviter = match &actor.who {
        super::Principal::User { email, .. } => email.clone(),
        super::Principal::Key { name, .. } => format!("An API key ({name})"),
    };
    let subject = format!("{inviter} invited you to {workspace} on Spenza");
    let body = format!(
        "{inviter} invited you to join the workspace {workspace} on Spenza, the webhook relay, \
         as {article} {role}.\n\n\
         Open this link to join (you can create your account there if you have none):\n\n\
         {url}\n\n\
         The link works once, for this address only, until {expires}.\n",
        article = if role == Role::Admin || role == Role::Owner {
            "an"
        } else {
            "a"
        },
        expires = expires_at.format("%Y-%m-%d %H:%M UTC"),
    );
    (subject, body)
}

/// The actor's workspace's open invitations, newest first.
pub async fn invitations(state: &AppState, actor: &Actor) -> Result<Vec<Invitation>, ServiceError> {
    actor.require(Permission::Administer)?;
    Ok(state
        .db
        .run(async |conn| invitation::open_in_workspace(conn, actor.workspace).await)
        .await?)
}

/// Revokes an open invitation: its link stops working.
pub async fn revoke_invitation(
    state: &AppState,
    actor: &Actor,
    id: InvitationId,
) -> Result<(), ServiceError> {
    actor.require(Permission::Administer)?;
    let revoked = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let Some(email) = invitation::revoke(conn, actor.workspace, id).await? else {
                    return Ok(false);
                };
                let line = actor
                    .audit("invitation.revoked", "invitation", id)
                    .detail(email);
                audit::append(conn, &[line]).await?;
                Ok(true)
            })
            .await
        })
        .await?;
    if revoked {
        Ok(())
    } else {
        Err(ServiceError::NotFound("invitation"))
    }
}

/// Why a member may not be changed as asked, if they may not: admins manage everyone but
/// owners, and a workspace keeps at least one owner.
async fn check_change(
    conn: &mut AsyncPgConnection,
    actor: &Actor,
    target: &Member,
    new_role: Option<Role>,
) -> diesel::QueryResult<Result<Role, ServiceError>> {
    let Ok(current) = target.role.parse::<Role>() else {
        return Ok(Err(ServiceError::Unexpected(anyhow::anyhow!(
            "a stored role is unknown"
        ))));
    };
    let leaving = new_role.is_none() && actor.user() == Some(target.user_id);
    let touches_owner = current == Role::Owner || new_role == Some(Role::Owner);
    if !leaving {
        let needed = if touches_owner {
            Permission::Own
        } else {
            Permission::Administer
        };
        if let Err(refused) = actor.require(needed) {
            return Ok(Err(refused));
        }
    }
    if current == Role::Owner
        && new_role != Some(Role::Owner)
        && workspace::owners(conn, actor.workspace).await? <= 1
    {
        return Ok(Err(ServiceError::Conflict(
            "a workspace keeps at least one owner: make someone else an owner first".to_owned(),
        )));
    }
    Ok(Ok(current))
}

/// Tells the member's live pages in the workspace that their access changed.
fn access_changed(state: &AppState, workspace: WorkspaceId, user: UserId) {
    state.live.notify(Notice::Access { workspace, user });
}

/// Gives a member another role. Only an owner makes or unmakes an owner; the last owner stays
/// one.
pub async fn set_role(
    state: &AppState,
    actor: &Actor,
    user: UserId,
    role: Role,
) -> Result<Member, ServiceError> {
    actor.require(Permission::Administer)?;
    let changed = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                workspace::lock(conn, actor.workspace).await?;
                let Some(target) = workspace::member(conn, actor.workspace, user).await? else {
                    return Ok(Err(ServiceError::NotFound("member")));
                };
                let current = match check_change(conn, actor, &target, Some(role)).await? {
                    Ok(current) => current,
                    Err(refused) => return Ok(Err(refused)),
                };
                if current != role {
                    workspace::set_role(conn, actor.workspace, user, role.as_str()).await?;
                    let line = actor
                        .audit("member.role_changed", "member", user)
                        .detail(format!("{}: {current} → {role}", target.email));
                    audit::append(conn, &[line]).await?;
                }
                Ok(Ok(Member {
                    role: role.as_str().to_owned(),
                    ..target
                }))
            })
            .await
        })
        .await??;
    access_changed(state, actor.workspace, user);
    Ok(changed)
}

/// Removes a member (or lets a member leave): their sessions lose the workspace at once, and
/// their live pages there close. The last owner stays.
pub async fn remove(state: &AppState, actor: &Actor, user: UserId) -> Result<(), ServiceError> {
    if actor.user() != Some(user) {
        actor.require(Permission::Administer)?;
    }
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                workspace::lock(conn, actor.workspace).await?;
                let Some(target) = workspace::member(conn, actor.workspace, user).await? else {
                    return Ok(Err(ServiceError::NotFound("member")));
                };
                if let Err(refused) = check_change(conn, actor, &target, None).await? {
                    return Ok(Err(refused));
                }
                workspace::remove_member(conn, actor.workspace, user).await?;
                let action = if actor.user() == Some(user) {
                    "member.left"
                } else {
                    "member.removed"
                };
                let line = actor.audit(action, "member", user).detail(target.email);
                audit::append(conn, &[line]).await?;
                Ok(Ok(()))
            })
            .await
        })
        .await??;
    access_changed(state, actor.workspace, user);
    Ok(())
}

/// An invitation found by its link, if the link is one.
pub async fn open_invitation(
    state: &AppState,
    token: &str,
) -> Result<Option<Opened>, ServiceError> {
    if !is_token_shaped(token) {
        return Ok(None);
    }
    let hash = link_hash(token);
    Ok(state
        .db
        .run(async |conn| invitation::find_by_token(conn, &hash).await)
        .await?)
}

/// Why an invitation cannot be used now, if it cannot.
pub fn unusable(invitation: &Invitation) -> Option<&'static str> {
    if invitation.revoked_at.is_some() {
        Some("this invitation was revoked: ask for a new one")
    } else if invitation.accepted_at.is_some() {
        Some("this invitation has been used: each link works once")
    } else if invitation.expires_at <= Utc::now() {
        Some("this invitation has expired: ask for a new one")
    } else {
        None
    }
}

async fn join(
    conn: &mut AsyncPgConnection,
    opened: &Opened,
    user: &User,
    ip: Option<String>,
) -> diesel::QueryResult<Result<(), ServiceError>> {
    let invitation = &opened.invitation;
    if workspace::member(conn, invitation.workspace_id, user.id)
        .await?
        .is_some()
    {
        return Ok(Err(ServiceError::Conflict(format!(
            "you are already a member of {}",
            opened.workspace_name
        ))));
    }
    if !invitation::accept(conn, invitation.id, user.id).await? {
        return Ok(Err(ServiceError::Conflict(
            "this invitation is no longer valid: ask for a new one".to_owned(),
        )));
    }
    if !workspace::add_member(conn, invitation.workspace_id, user.id, &invitation.role).await? {
        // They joined through another invitation meanwhile: this one stays unused.
        return Err(diesel::result::Error::RollbackTransaction);
    }
    let joined = Actor {
        workspace: invitation.workspace_id,
        role: role_of(&invitation.role).unwrap_or(Role::Viewer),
        who: super::Principal::User {
            id: user.id,
            email: user.email.clone(),
        },
        ip,
    };
    let line = joined
        .audit("member.joined", "member", user.id)
        .detail(format!(
            "as {} (invitation {})",
            invitation.role, invitation.id
        ));
    audit::append(conn, &[line]).await?;
    Ok(Ok(()))
}

fn for_this_address(opened: &Opened, email: &str) -> Result<(), ServiceError> {
    if opened.invitation.email.eq_ignore_ascii_case(email) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(
            "this invitation is for another address: sign in with the invited one",
        ))
    }
}

/// The signed-in `user` accepts the invitation behind `token`: they join its workspace with its
/// role. The link works once, before it expires, and only for the invited address.
pub async fn accept(
    state: &AppState,
    token: &str,
    user: UserId,
    ip: Option<String>,
) -> Result<Opened, ServiceError> {
    let opened = open_invitation(state, token)
        .await?
        .ok_or(ServiceError::NotFound("invitation"))?;
    if let Some(why) = unusable(&opened.invitation) {
        return Err(ServiceError::Conflict(why.to_owned()));
    }
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let Some(found) = user::find(conn, user).await? else {
                    return Ok(Err(ServiceError::NotFound("user")));
                };
                if let Err(refused) = for_this_address(&opened, &found.email) {
                    return Ok(Err(refused));
                }
                join(conn, &opened, &found, ip).await
            })
            .await
        })
        .await
        .map_err(raced)??;
    Ok(opened)
}

/// What a join that lost a race (the same person joining twice at once, or signing up twice)
/// answers: the transaction was rolled back, and nothing changed.
fn raced(error: DbError) -> ServiceError {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        DbError::Query(
            Error::RollbackTransaction
            | Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _),
        ) => ServiceError::Conflict(
            "you joined, or signed up, at the same moment elsewhere: reload the page".to_owned(),
        ),
        other => other.into(),
    }
}

/// A new person signs up through the invitation behind `token`, with its address and
/// `password_hash`: their account is made and joins the workspace in one transaction, whatever
/// the sign-up policy (the invitation is the permission). They get no workspace of their own.
pub async fn sign_up_and_accept(
    state: &AppState,
    token: &str,
    password_hash: &str,
    ip: Option<String>,
) -> Result<(Opened, UserId), ServiceError> {
    let opened = open_invitation(state, token)
        .await?
        .ok_or(ServiceError::NotFound("invitation"))?;
    if let Some(why) = unusable(&opened.invitation) {
        return Err(ServiceError::Conflict(why.to_owned()));
    }
    let new = NewUser {
        id: UserId(Uuid::new_v4()),
        email: &opened.invitation.email,
        password_hash,
    };
    let user = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let email = EmailAddress::parse(new.email).ok();
                if let Some(email) = email
                    && user::find_by_email(conn, &email).await?.is_some()
                {
                    return Ok(Err(ServiceError::Conflict(
                        "an account with this address exists: log in to accept the invitation"
                            .to_owned(),
                    )));
                }
                let created = user::insert(conn, &new).await?;
                Ok(join(conn, &opened, &created, ip)
                    .await?
                    .map(|()| created.id))
            })
            .await
        })
        .await
        .map_err(raced)??;
    Ok((opened, user))
}

/// The workspaces a user belongs to, oldest membership first.
pub async fn workspaces_of(
    state: &AppState,
    user: UserId,
) -> Result<Vec<MembershipOf>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| workspace::memberships_of(conn, user).await)
        .await?)
}

fn valid_workspace_name(name: &str) -> Result<&str, ServiceError> {
    let name = name.trim();
    match name.chars().count() {
        1..=100 => Ok(name),
        0 => Err(ServiceError::invalid("name", "a workspace needs a name")),
        _ => Err(ServiceError::invalid(
            "name",
            "a workspace name has at most 100 characters",
        )),
    }
}

/// Creates a workspace that `user` owns.
pub async fn create_workspace(
    state: &AppState,
    user: UserId,
    email: &str,
    name: &str,
    ip: Option<String>,
) -> Result<WorkspaceId, ServiceError> {
    let name = valid_workspace_name(name)?;
    let id = WorkspaceId(Uuid::new_v4());
    let founder = Actor {
        workspace: id,
        role: Role::Owner,
        who: super::Principal::User {
            id: user,
            email: email.to_owned(),
        },
        ip,
    };
    let line = founder
        .audit("workspace.created", "workspace", id)
        .detail(name);
    state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                workspace::create(conn, id, name, user).await?;
                audit::append(conn, &[line]).await
            })
            .await
        })
        .await?;
    Ok(id)
}

/// Renames the actor's workspace.
pub async fn rename_workspace(
    state: &AppState,
    actor: &Actor,
    name: &str,
) -> Result<(), ServiceError> {
    actor.require(Permission::Administer)?;
    let name = valid_workspace_name(name)?;
    let line = actor
        .audit("workspace.renamed", "workspace", actor.workspace)
        .detail(name);
    Ok(state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                workspace::rename(conn, actor.workspace, name).await?;
                audit::append(conn, &[line]).await
            })
            .await
        })
        .await?)
}

/// Deletes the actor's workspace with everything in it: its sources (and so their ingest
/// URLs), subscriptions, events, keys and invitations. Its audit log stays until retention,
/// with who deleted it. Owners only.
pub async fn delete_workspace(state: &AppState, actor: &Actor) -> Result<(), ServiceError> {
    actor.require(Permission::Own)?;
    let members = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                workspace::lock(conn, actor.workspace).await?;
                let members = workspace::members(conn, actor.workspace).await?;
                let name = workspace::name(conn, actor.workspace).await?;
                let line = actor
                    .audit("workspace.deleted", "workspace", actor.workspace)
                    .detail(name);
                audit::append(conn, &[line]).await?;
                workspace::delete(conn, actor.workspace).await?;
                Ok(members)
            })
            .await
        })
        .await?;
    for member in members {
        access_changed(state, actor.workspace, member.user_id);
    }
    Ok(())
}

/// The actor's workspace's audit log, newest first, as `query` filters it.
pub async fn audit_log(
    state: &AppState,
    actor: &Actor,
    query: &Query,
) -> Result<Vec<Entry>, ServiceError> {
    actor.require(Permission::Administer)?;
    Ok(state
        .db
        .run(async |conn| audit::list(conn, actor.workspace, query).await)
        .await?)
}
