//! `audit_log`: who changed what, appended in the transaction of the change, never updated.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::db::schema::{audit_log, memberships};
use crate::domain::{UserId, WorkspaceId};

/// A line to append.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_log)]
pub struct NewEntry {
    pub workspace_id: Option<WorkspaceId>,
    pub actor_type: &'static str,
    pub actor_id: Option<Uuid>,
    pub actor: String,
    pub action: &'static str,
    pub object_type: &'static str,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

impl NewEntry {
    /// A line about a user's own account (a sign-in, a failed one), by them or, for an address
    /// with no account, by whoever tried it. It belongs to no workspace: each shows its
    /// members'.
    pub fn about_account(
        action: &'static str,
        email: &str,
        user: Option<UserId>,
        ip: Option<String>,
    ) -> Self {
        NewEntry {
            workspace_id: None,
            actor_type: if user.is_some() { "user" } else { "anonymous" },
            actor_id: user.map(|id| id.0),
            actor: email.to_owned(),
            action,
            object_type: "user",
            object_id: user.map(|id| id.to_string()),
            ip,
            detail: None,
        }
    }

    /// The line, with a few words more (never a secret).
    pub fn detail(self, detail: impl Into<String>) -> Self {
        NewEntry {
            detail: Some(detail.into()),
            ..self
        }
    }
}

/// A line as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_log)]
pub struct Entry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: Option<Uuid>,
    pub actor: String,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub detail: Option<String>,
}

/// Which lines to read: all filters optional; `before` pages back by id.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// The actor's address or key name, or its id.
    pub actor: Option<String>,
    /// The object's type, such as `subscription`.
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: i64,
}

/// Appends lines.
pub async fn append(conn: &mut AsyncPgConnection, entries: &[NewEntry]) -> QueryResult<()> {
    if entries.is_empty() {
        return Ok(());
    }
    diesel::insert_into(audit_log::table)
        .values(entries)
        .execute(conn)
        .await
        .map(drop)
}

/// A workspace's lines, newest first: its own, and its members' sign-ins (which belong to no
/// workspace).
pub async fn list(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    query: &Query,
) -> QueryResult<Vec<Entry>> {
    let members = memberships::table
        .filter(memberships::workspace_id.eq(workspace))
        .select(memberships::user_id.nullable());
    let mut lines = audit_log::table
        .filter(
            audit_log::workspace_id
                .eq(workspace)
                .or(audit_log::workspace_id
                    .is_null()
                    .and(audit_log::actor_id.eq_any(members))),
        )
        .order(audit_log::id.desc())
        .limit(query.limit)
        .select(Entry::as_select())
        .into_boxed();
    if let Some(actor) = &query.actor {
        lines = match Uuid::parse_str(actor) {
            Ok(id) => lines.filter(audit_log::actor_id.eq(id)),
            Err(_) => lines.filter(audit_log::actor.eq(actor.clone())),
        };
    }
    if let Some(object_type) = &query.object_type {
        lines = lines.filter(audit_log::object_type.eq(object_type.clone()));
    }
    if let Some(object_id) = &query.object_id {
        lines = lines.filter(audit_log::object_id.eq(object_id.clone()));
    }
    if let Some(since) = query.since {
        lines = lines.filter(audit_log::at.ge(since));
    }
    if let Some(until) = query.until {
        lines = lines.filter(audit_log::at.lt(until));
    }
    if let Some(before) = query.before {
        lines = lines.filter(audit_log::id.lt(before));
    }
    lines.load(conn).await
}

/// Deletes up to `batch` lines older than `cutoff`; how many it deleted.
pub async fn delete_older_than(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    batch: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
    .bind::<diesel::sql_types::BigInt, _>(batch)
    .execute(conn)
    .await
}
