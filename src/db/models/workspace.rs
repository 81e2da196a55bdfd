//! `workspaces` and `memberships`: what owns sources, subscriptions and keys, and who may use it
//! with which role.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{memberships, users, workspaces};
use crate::domain::{UserId, WorkspaceId};

/// A workspace a user belongs to, with their role in it.
#[derive(Debug, Clone, Queryable)]
pub struct MembershipOf {
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub role: String,
}

/// A member of a workspace.
#[derive(Debug, Clone, Queryable)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: String,
    pub joined_at: DateTime<Utc>,
}

/// Creates a workspace named `name` with `owner` as its owner.
pub async fn create(
    conn: &mut AsyncPgConnection,
    id: WorkspaceId,
    name: &str,
    owner: UserId,
) -> QueryResult<()> {
    diesel::insert_into(workspaces::table)
        .values((workspaces::id.eq(id), workspaces::name.eq(name)))
        .execute(conn)
        .await?;
    add_member(conn, id, owner, "owner").await.map(drop)
}

/// A workspace's name.
pub async fn name(conn: &mut AsyncPgConnection, id: WorkspaceId) -> QueryResult<String> {
    workspaces::table
        .find(id)
        .select(workspaces::name)
        .first(conn)
        .await
}

/// Renames a workspace.
pub async fn rename(conn: &mut AsyncPgConnection, id: WorkspaceId, name: &str) -> QueryResult<()> {
    diesel::update(workspaces::table.find(id))
        .set(workspaces::name.eq(name))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes a workspace with everything it owns.
pub async fn delete(conn: &mut AsyncPgConnection, id: WorkspaceId) -> QueryResult<()> {
    diesel::delete(workspaces::table.find(id))
        .execute(conn)
        .await
        .map(drop)
}

/// Takes the workspace's row lock for the rest of the transaction: changes to its members
/// (and the count of its owners) are made one at a time.
pub async fn lock(conn: &mut AsyncPgConnection, id: WorkspaceId) -> QueryResult<()> {
    workspaces::table
        .find(id)
        .select(workspaces::id)
        .for_update()
        .first::<WorkspaceId>(conn)
        .await
        .map(drop)
}

/// Makes `user` a member with `role`; false when they already were one.
pub async fn add_member(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    user: UserId,
    role: &str,
) -> QueryResult<bool> {
    diesel::insert_into(memberships::table)
        .values((
            memberships::workspace_id.eq(workspace),
            memberships::user_id.eq(user),
            memberships::role.eq(role),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await
        .map(|added| added > 0)
}

/// The workspaces `user` belongs to, the oldest membership first.
pub async fn memberships_of(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<MembershipOf>> {
    memberships::table
        .inner_join(workspaces::table)
        .filter(memberships::user_id.eq(user))
        .order((memberships::created_at, memberships::workspace_id))
        .select((workspaces::id, workspaces::name, memberships::role))
        .load(conn)
        .await
}

/// A workspace's members, owners first, then by when they joined.
pub async fn members(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
) -> QueryResult<Vec<Member>> {
    let mut found: Vec<Member> = memberships::table
        .inner_join(users::table)
        .filter(memberships::workspace_id.eq(workspace))
        .order(memberships::created_at)
        .select((
            users::id,
            users::email,
            memberships::role,
            memberships::created_at,
        ))
        .load(conn)
        .await?;
    found.sort_by_key(|member| member.role != "owner");
    Ok(found)
}

/// One member of a workspace.
pub async fn member(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    user: UserId,
) -> QueryResult<Option<Member>> {
    memberships::table
        .inner_join(users::table)
        .filter(memberships::workspace_id.eq(workspace))
        .filter(memberships::user_id.eq(user))
        .select((
            users::id,
            users::email,
            memberships::role,
            memberships::created_at,
        ))
        .first(conn)
        .await
        .optional()
}

/// Whether someone with this address (lower-cased) is a member of the workspace.
pub async fn has_member_with_email(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    email: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        memberships::table
            .inner_join(users::table)
            .filter(memberships::workspace_id.eq(workspace))
            .filter(super::user::lower(users::email).eq(email)),
    ))
    .get_result(conn)
    .await
}

/// How many owners a workspace has.
pub async fn owners(conn: &mut AsyncPgConnection, workspace: WorkspaceId) -> QueryResult<i64> {
    memberships::table
        .filter(memberships::workspace_id.eq(workspace))
        .filter(memberships::role.eq("owner"))
        .count()
        .get_result(conn)
        .await
}

/// Gives a member another role.
pub async fn set_role(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    user: UserId,
    role: &str,
) -> QueryResult<()> {
    diesel::update(memberships::table.find((workspace, user)))
        .set(memberships::role.eq(role))
        .execute(conn)
        .await
        .map(drop)
}

/// Removes a member.
pub async fn remove_member(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    user: UserId,
) -> QueryResult<()> {
    diesel::delete(memberships::table.find((workspace, user)))
        .execute(conn)
        .await
        .map(drop)
}
