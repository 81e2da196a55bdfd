//! `users`: people who sign in and own subscriptions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::workspace;
use crate::db::schema::users;
use crate::domain::{EmailAddress, UserId, WorkspaceId};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// A user as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// A user to create.
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub id: UserId,
    pub email: &'a str,
    pub password_hash: &'a str,
}

/// Inserts a user; a taken email is a unique violation.
pub async fn insert(conn: &mut AsyncPgConnection, user: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(user)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Inserts a user with a workspace of their own, named after their address, which they own;
/// a taken email is a unique violation.
pub async fn insert_with_workspace(
    conn: &mut AsyncPgConnection,
    user: &NewUser<'_>,
) -> QueryResult<User> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        let created = insert(conn, user).await?;
        let id = WorkspaceId(created.id.0);
        workspace::create(conn, id, &created.email, created.id).await?;
        let line = super::audit::NewEntry {
            workspace_id: Some(id),
            object_type: "workspace",
            object_id: Some(id.to_string()),
            ..super::audit::NewEntry::about_account(
                "workspace.created",
                &created.email,
                Some(created.id),
                None,
            )
        }
        .detail("with the account");
        super::audit::append(conn, &[line]).await?;
        Ok(created)
    })
    .await
}

/// Whether any user exists: a fresh install has none.
pub async fn any_exist(conn: &mut AsyncPgConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(users::table.select(users::id)))
        .get_result(conn)
        .await
}

/// Inserts a user, with a workspace of their own, only while no user exists, so that of two
/// people claiming a fresh install at once only one succeeds; `None` when someone was first. The
/// advisory lock serialises the check and the insert (two transactions could each see an empty
/// table otherwise).
pub async fn insert_first(
    conn: &mut AsyncPgConnection,
    user: &NewUser<'_>,
) -> QueryResult<Option<User>> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext('spenza.first_user'))")
            .execute(conn)
            .await?;
        if any_exist(conn).await? {
            return Ok(None);
        }
        insert_with_workspace(conn, user).await.map(Some)
    })
    .await
}

/// Finds a user by email, whatever its case.
pub async fn find_by_email(
    conn: &mut AsyncPgConnection,
    email: &EmailAddress,
) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::email).eq(email.as_str()))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// Finds a user by id.
pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}
