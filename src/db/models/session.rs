//! `sessions`: dashboard log-ins. Only a hash of each session's token is stored.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bytea, Interval, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::pg_interval;
use crate::db::schema::sessions;
use crate::domain::{UserId, WorkspaceId};

/// The user a live session belongs to, and the workspace it is looking at, with their role
/// there: the one it chose while they are still a member, their first otherwise; none when they
/// belong to none.
#[derive(Debug, Clone, QueryableByName)]
pub struct SessionOwner {
    #[diesel(sql_type = SqlUuid)]
    pub user_id: UserId,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Nullable<SqlUuid>)]
    pub workspace_id: Option<WorkspaceId>,
    #[diesel(sql_type = Nullable<Text>)]
    pub workspace_name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub role: Option<String>,
    /// The workspace's open issues, acknowledged ones aside (the navigation's count).
    #[diesel(sql_type = BigInt)]
    pub open_issues: i64,
}

/// Stores a new session for `user` ending at `expires_at` at the latest, signed in from `ip`,
/// with its line in the audit log, and drops every session that has ended (absolutely or for
/// idleness), so the table does not grow forever.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user: UserId,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
    idle: Duration,
    ip: Option<String>,
) -> QueryResult<()> {
    use diesel_async::AsyncConnection;
    conn.transaction(async |conn| {
        sweep_and_insert(conn, user, token_hash, expires_at, idle).await?;
        let email: String = crate::db::schema::users::table
            .find(user)
            .select(crate::db::schema::users::email)
            .first(conn)
            .await?;
        let line = super::audit::NewEntry::about_account("user.signed_in", &email, Some(user), ip);
        super::audit::append(conn, &[line]).await
    })
    .await
}

async fn sweep_and_insert(
    conn: &mut AsyncPgConnection,
    user: UserId,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
    idle: Duration,
) -> QueryResult<()> {
    diesel::sql_query(
        "DELETE FROM sessions WHERE expires_at <= now() OR last_seen_at <= now() - $1",
    )
    .bind::<Interval, _>(pg_interval(idle))
    .execute(conn)
    .await?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::id.eq(Uuid::new_v4()),
            sessions::user_id.eq(user),
            sessions::token_hash.eq(token_hash),
            sessions::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// The owner of the session with this token hash, if it has neither expired nor been idle for
/// `idle`. Using it resets its idle clock, written at most once a minute so that browsing is
/// not a write per page (the idle limit is kept to within that minute).
pub async fn touch(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    idle: Duration,
) -> QueryResult<Option<SessionOwner>> {
    diesel::sql_query(
        "WITH live AS ( \
             SELECT sessions.id, sessions.last_seen_at, sessions.workspace_id, \
                    users.id AS user_id, users.email \
             FROM sessions JOIN users ON users.id = sessions.user_id \
             WHERE sessions.token_hash = $1 AND sessions.expires_at > now() \
             AND sessions.last_seen_at > now() - $2), \
         touched AS ( \
             UPDATE sessions SET last_seen_at = now() FROM live \
             WHERE sessions.id = live.id AND live.last_seen_at < now() - interval '1 minute') \
         SELECT live.user_id, live.email, m.workspace_id, w.name AS workspace_name, m.role, \
             (SELECT count(*) FROM issues WHERE issues.workspace_id = m.workspace_id \
                 AND issues.state = 'open') AS open_issues \
         FROM live LEFT JOIN LATERAL ( \
             SELECT workspace_id, role FROM memberships \
             WHERE memberships.user_id = live.user_id \
             ORDER BY memberships.workspace_id IS NOT DISTINCT FROM live.workspace_id DESC, \
                      created_at, workspace_id LIMIT 1) m ON true \
         LEFT JOIN workspaces w ON w.id = m.workspace_id",
    )
    .bind::<Bytea, _>(token_hash)
    .bind::<Interval, _>(pg_interval(idle))
    .get_result(conn)
    .await
    .optional()
}

/// Ends the session with this token hash.
pub async fn delete(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::token_hash.eq(token_hash)))
        .execute(conn)
        .await
        .map(drop)
}

/// Points the session with this token hash at another workspace.
pub async fn switch(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
    workspace: WorkspaceId,
) -> QueryResult<()> {
    diesel::update(sessions::table.filter(sessions::token_hash.eq(token_hash)))
        .set(sessions::workspace_id.eq(workspace))
        .execute(conn)
        .await
        .map(drop)
}
