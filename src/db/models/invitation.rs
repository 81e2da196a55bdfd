//! `invitations`: single-use links to join a workspace. Only a hash of each link's token is
//! stored.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{invitations, users, workspaces};
use crate::domain::{InvitationId, UserId, WorkspaceId};

/// An invitation as its workspace lists it.
#[derive(Debug, Clone, Queryable)]
pub struct Invitation {
    pub id: InvitationId,
    pub workspace_id: WorkspaceId,
    pub email: String,
    pub role: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who sent it; null once they are deleted.
    pub invited_by: Option<String>,
}

/// An invitation found by its link, with its workspace's name.
#[derive(Debug, Clone)]
pub struct Opened {
    pub invitation: Invitation,
    pub workspace_name: String,
}

/// An invitation to store.
#[derive(Debug, Insertable)]
#[diesel(table_name = invitations)]
pub struct NewInvitation<'a> {
    pub id: InvitationId,
    pub workspace_id: WorkspaceId,
    pub email: &'a str,
    pub role: &'a str,
    pub token_hash: &'a [u8],
    pub invited_by: Option<UserId>,
    pub expires_at: DateTime<Utc>,
}

type Columns = (
    invitations::id,
    invitations::workspace_id,
    invitations::email,
    invitations::role,
    invitations::created_at,
    invitations::expires_at,
    invitations::accepted_at,
    invitations::revoked_at,
    diesel::dsl::Nullable<users::email>,
);

fn columns() -> Columns {
    (
        invitations::id,
        invitations::workspace_id,
        invitations::email,
        invitations::role,
        invitations::created_at,
        invitations::expires_at,
        invitations::accepted_at,
        invitations::revoked_at,
        users::email.nullable(),
    )
}

/// Stores an invitation.
pub async fn insert(conn: &mut AsyncPgConnection, new: &NewInvitation<'_>) -> QueryResult<()> {
    diesel::insert_into(invitations::table)
        .values(new)
        .execute(conn)
        .await
        .map(drop)
}

/// A workspace's invitations still open (neither accepted, revoked nor expired), newest first.
pub async fn open_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
) -> QueryResult<Vec<Invitation>> {
    invitations::table
        .left_join(users::table.on(users::id.nullable().eq(invitations::invited_by)))
        .filter(invitations::workspace_id.eq(workspace))
        .filter(invitations::accepted_at.is_null())
        .filter(invitations::revoked_at.is_null())
        .filter(invitations::expires_at.gt(diesel::dsl::now))
        .order(invitations::created_at.desc())
        .select(columns())
        .load(conn)
        .await
}

/// The invitation whose link has this token hash, whatever its state.
pub async fn find_by_token(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<Opened>> {
    let found: Option<(Invitation, String)> = invitations::table
        .left_join(users::table.on(users::id.nullable().eq(invitations::invited_by)))
        .inner_join(workspaces::table)
        .filter(invitations::token_hash.eq(token_hash))
        .select((columns(), workspaces::name))
        .first(conn)
        .await
        .optional()?;
    Ok(found.map(|(invitation, workspace_name)| Opened {
        invitation,
        workspace_name,
    }))
}

/// Marks an open invitation accepted by `user`, and locks it; false when it was no longer open
/// (accepted meanwhile, revoked, or expired).
pub async fn accept(
    conn: &mut AsyncPgConnection,
    id: InvitationId,
    user: UserId,
) -> QueryResult<bool> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null())
            .filter(invitations::expires_at.gt(diesel::dsl::now)),
    )
    .set((
        invitations::accepted_at.eq(diesel::dsl::now),
        invitations::accepted_by.eq(user),
    ))
    .execute(conn)
    .await
    .map(|updated| updated > 0)
}

/// Revokes one of a workspace's open invitations; its address when there was one.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: InvitationId,
) -> QueryResult<Option<String>> {
    diesel::update(
        invitations::table
            .find(id)
            .filter(invitations::workspace_id.eq(workspace))
            .filter(invitations::accepted_at.is_null())
            .filter(invitations::revoked_at.is_null()),
    )
    .set(invitations::revoked_at.eq(diesel::dsl::now))
    .returning(invitations::email)
    .get_result(conn)
    .await
    .optional()
}
