//! `notification_channels`, where a workspace is told of its issues, and `notifications`, the
//! outbox of messages to them: written in the transaction of the issue's transition, claimed
//! and sent by whichever process gets there first, retried until they go.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Interval, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::issue::{Change, Transition};
use super::pg_interval;
use crate::db::schema::{notification_channels, notifications};
use crate::domain::{
    ChannelId, ChannelKind, IssueId, IssueKind, NotificationId, UserId, WorkspaceId,
};

/// A channel as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notification_channels)]
#[diesel(check_for_backend(Pg))]
pub struct Channel {
    pub id: ChannelId,
    pub workspace_id: WorkspaceId,
    pub kind: ChannelKind,
    pub name: String,
    /// The address (email) or the URL (slack, webhook).
    pub target: String,
    pub signing_secret: Option<String>,
    pub kinds: Vec<String>,
    pub created_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Channel {
    /// The issue kinds it is told of, in their usual order.
    pub fn issue_kinds(&self) -> Vec<IssueKind> {
        IssueKind::ALL
            .iter()
            .copied()
            .filter(|kind| self.kinds.iter().any(|k| k == kind.as_str()))
            .collect()
    }
}

/// A channel to add.
#[derive(Debug, Insertable)]
#[diesel(table_name = notification_channels)]
pub struct NewChannel<'a> {
    pub id: ChannelId,
    pub workspace_id: WorkspaceId,
    pub kind: ChannelKind,
    pub name: &'a str,
    pub target: &'a str,
    pub signing_secret: Option<&'a str>,
    pub kinds: Vec<&'static str>,
    pub created_by: Option<UserId>,
}

/// An edit of a channel: each field left `None` stays.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = notification_channels)]
pub struct ChannelChanges<'a> {
    pub name: Option<&'a str>,
    pub target: Option<&'a str>,
    pub kinds: Option<Vec<&'static str>>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewChannel<'_>) -> QueryResult<Channel> {
    diesel::insert_into(notification_channels::table)
        .values(new)
        .returning(Channel::as_returning())
        .get_result(conn)
        .await
}

/// A workspace's channels, oldest first.
pub async fn list_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
) -> QueryResult<Vec<Channel>> {
    notification_channels::table
        .filter(notification_channels::workspace_id.eq(workspace))
        .order((notification_channels::created_at, notification_channels::id))
        .select(Channel::as_select())
        .load(conn)
        .await
}

pub async fn find_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: ChannelId,
) -> QueryResult<Option<Channel>> {
    notification_channels::table
        .filter(notification_channels::workspace_id.eq(workspace))
        .filter(notification_channels::id.eq(id))
        .select(Channel::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn update_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: ChannelId,
    changes: &ChannelChanges<'_>,
) -> QueryResult<Option<Channel>> {
    diesel::update(
        notification_channels::table
            .filter(notification_channels::workspace_id.eq(workspace))
            .filter(notification_channels::id.eq(id)),
    )
    .set((
        changes,
        notification_channels::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Channel::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Deletes a channel and the messages still waiting for it; `false` when there is none.
pub async fn delete_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: ChannelId,
) -> QueryResult<bool> {
    diesel::delete(
        notification_channels::table
            .filter(notification_channels::workspace_id.eq(workspace))
            .filter(notification_channels::id.eq(id)),
    )
    .execute(conn)
    .await
    .map(|deleted| deleted > 0)
}

/// The event types a transition is told as: `issue.*`, and for the breaker's issues
/// `subscription.disabled` beside an opening or reopening, or `subscription.enabled` beside a
/// resolution the relay saw (the subscription enabled again and delivering), to webhook
/// channels only. A person resolving the issue by hand enables nothing.
pub fn event_types(transition: &Transition) -> &'static [&'static str] {
    match (transition.kind, transition.change()) {
        (IssueKind::SubscriptionDisabled, Change::Opened) => {
            &["issue.opened", "subscription.disabled"]
        }
        (IssueKind::SubscriptionDisabled, Change::Reopened) => {
            &["issue.reopened", "subscription.disabled"]
        }
        (IssueKind::SubscriptionDisabled, Change::Resolved) if !transition.by_person => {
            &["issue.resolved", "subscription.enabled"]
        }
        (_, Change::Opened) => &["issue.opened"],
        (_, Change::Reopened) => &["issue.reopened"],
        (_, Change::Resolved) => &["issue.resolved"],
    }
}

/// Writes the messages a transition makes, one per channel of its workspace that takes its
/// kind and per event type, in the caller's transaction:
/// - the newest message still waiting for the same issue on the same channel (and not being
///   sent) takes the transition in instead: one message saying where it ended and how many
///   transitions it tells of. One already tried gets a new id, as its content is new (a
///   receiver may have had the old one under the old id);
/// - a recurrence (a reopening) waits until `quiet` after the last message sent about the issue
///   to that channel, so that an issue that flaps cannot flood it. `subscription.disabled`
///   never waits: a consumer must not think a subscription enabled when it is not.
///
/// The unique index on (channel, issue, transition, event type) makes a transition written
/// twice a no-op.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    transition: &Transition,
    quiet: std::time::Duration,
) -> QueryResult<()> {
    for event_type in event_types(transition) {
        let recurrence =
            transition.change() == Change::Reopened && event_type.starts_with("issue.");
        diesel::sql_query(
            "WITH targets AS (SELECT c.id FROM notification_channels c \
                 WHERE c.workspace_id = $1 AND $2 = ANY (c.kinds) \
                   AND (c.kind = 'webhook' OR NOT starts_with($3, 'subscription.'))), \
             quiet AS (SELECT t.id AS channel_id, CASE WHEN $5 THEN \
                     (SELECT max(n.sent_at) FROM notifications n \
                      WHERE n.channel_id = t.id AND n.issue_id = $4) + $6 END AS until \
                 FROM targets t), \
             pending AS (SELECT DISTINCT ON (n.channel_id) n.id, n.channel_id, q.until \
                 FROM notifications n JOIN quiet q ON q.channel_id = n.channel_id \
                 WHERE n.issue_id = $4 AND n.sent_at IS NULL \
                   AND split_part(n.event_type, '.', 1) = split_part($3, '.', 1) \
                   AND (n.leased_until IS NULL OR n.leased_until < clock_timestamp()) \
                 ORDER BY n.channel_id, n.created_at DESC, n.id), \
             folded AS (UPDATE notifications n SET \
                     id = CASE WHEN n.attempts > 0 THEN gen_random_uuid() ELSE n.id END, \
                     attempts = 0, event_type = $3, transition = $7, \
                     transitions = n.transitions + 1, due_at = greatest(n.due_at, p.until) \
                 FROM pending p WHERE n.id = p.id \
                 RETURNING n.channel_id) \
             INSERT INTO notifications (id, channel_id, issue_id, event_type, transition, due_at) \
             SELECT gen_random_uuid(), q.channel_id, $4, $3, $7, greatest(now(), q.until) \
             FROM quiet q WHERE NOT EXISTS \
                 (SELECT 1 FROM folded f WHERE f.channel_id = q.channel_id) \
             ON CONFLICT DO NOTHING",
        )
        .bind::<SqlUuid, _>(transition.workspace)
        .bind::<Text, _>(transition.kind)
        .bind::<Text, _>(*event_type)
        .bind::<SqlUuid, _>(transition.issue)
        .bind::<Bool, _>(recurrence)
        .bind::<Interval, _>(pg_interval(quiet))
        .bind::<Integer, _>(transition.transition)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A message to send, claimed.
#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = notifications)]
#[diesel(check_for_backend(Pg))]
pub struct Notification {
    pub id: NotificationId,
    pub channel_id: ChannelId,
    pub issue_id: IssueId,
    pub event_type: String,
    pub transition: i32,
    pub transitions: i32,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Claims up to `limit` messages that are due, holding them for `lease`: another process
/// takes one only once its lease has run out (its sender died mid-send, say).
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease: std::time::Duration,
) -> QueryResult<Vec<Notification>> {
    diesel::sql_query(
        "UPDATE notifications SET leased_until = now() + $2, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM notifications \
             WHERE sent_at IS NULL AND due_at <= now() \
               AND (leased_until IS NULL OR leased_until < now()) \
             ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, channel_id, issue_id, event_type, transition, transitions, created_at, \
             attempts",
    )
    .bind::<BigInt, _>(limit)
    .bind::<Interval, _>(pg_interval(lease))
    .load(conn)
    .await
}

/// Marks a message sent.
pub async fn mark_sent(conn: &mut AsyncPgConnection, id: NotificationId) -> QueryResult<()> {
    diesel::update(notifications::table.filter(notifications::id.eq(id)))
        .set((
            notifications::sent_at.eq(diesel::dsl::now),
            notifications::leased_until.eq(None::<DateTime<Utc>>),
            notifications::last_error.eq(None::<String>),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Puts a message that could not be sent back, due again after `wait`.
pub async fn retry_later(
    conn: &mut AsyncPgConnection,
    id: NotificationId,
    error: &str,
    wait: std::time::Duration,
) -> QueryResult<()> {
    diesel::sql_query(
        "UPDATE notifications SET due_at = now() + $2, leased_until = NULL, last_error = $3 \
         WHERE id = $1",
    )
    .bind::<SqlUuid, _>(id)
    .bind::<Interval, _>(pg_interval(wait))
    .bind::<Text, _>(error)
    .execute(conn)
    .await
    .map(drop)
}

/// The messages about one issue, newest first (for its page).
#[derive(Debug, Clone, Queryable)]
pub struct Sent {
    pub channel: String,
    pub event_type: String,
    pub transitions: i32,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

pub async fn about_issue(conn: &mut AsyncPgConnection, issue: IssueId) -> QueryResult<Vec<Sent>> {
    notifications::table
        .inner_join(notification_channels::table)
        .filter(notifications::issue_id.eq(issue))
        .order(notifications::created_at.desc())
        .limit(20)
        .select((
            notification_channels::name,
            notifications::event_type,
            notifications::transitions,
            notifications::due_at,
            notifications::sent_at,
            notifications::attempts,
            notifications::last_error,
        ))
        .load(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{IssueId, WorkspaceId};

    fn transition(kind: IssueKind, change: &str, by_person: bool) -> Transition {
        Transition {
            issue: IssueId(uuid::Uuid::nil()),
            workspace: WorkspaceId(uuid::Uuid::nil()),
            kind,
            transition: 2,
            change: change.to_owned(),
            by_person,
        }
    }

    #[test]
    fn the_breakers_issues_tell_of_the_subscription_too_but_a_person_enables_nothing() {
        let breaker = IssueKind::SubscriptionDisabled;
        assert_eq!(
            event_types(&transition(breaker, "opened", false)),
            ["issue.opened", "subscription.disabled"]
        );
        assert_eq!(
            event_types(&transition(breaker, "resolved", false)),
            ["issue.resolved", "subscription.enabled"]
        );
        assert_eq!(
            event_types(&transition(breaker, "resolved", true)),
            ["issue.resolved"],
            "resolved by hand, the subscription may still be disabled"
        );
        assert_eq!(
            event_types(&transition(IssueKind::DeliveriesFailed, "reopened", false)),
            ["issue.reopened"]
        );
    }
}
