//! `subscriptions`: a route from a source to an endpoint, and how its deliveries are signed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::delivery_attempt;
use crate::db::schema::{sources, subscriptions};
use crate::domain::{SourceId, SubscriptionId, SubscriptionKind, WorkspaceId};

/// A subscription as stored, with its source's ingest token and provider check (select it from
/// `subscriptions` joined to `sources`). `Debug` leaves out its token and secrets.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub workspace_id: WorkspaceId,
    pub source_id: SourceId,
    pub name: String,
    pub target_url: String,
    /// Its source's.
    #[diesel(select_expression = sources::ingest_token)]
    pub ingest_token: String,
    pub signing_secret: String,
    pub previous_signing_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Its source's provider check, secret included (never shown).
    #[diesel(select_expression = sources::provider)]
    pub provider: Option<serde_json::Value>,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Which of its source's events it receives (a filter document, checked when saved);
    /// `None`: every event.
    pub filter: Option<serde_json::Value>,
    /// Whether the path and query each event arrived with are appended to its target URL.
    pub forward_path: bool,
    /// Its delivery policy, as stored (see [`crate::domain::Policy`]): it holds secrets.
    pub policy: serde_json::Value,
    /// How it delivers: over HTTP, or to `spenza listen` sessions (then `target_url` only
    /// names it).
    pub kind: SubscriptionKind,
}

/// A subscription to create. No `Debug`: it holds the token and secrets.
#[derive(Insertable)]
#[diesel(table_name = subscriptions)]
pub struct NewSubscription<'a> {
    pub id: SubscriptionId,
    pub workspace_id: WorkspaceId,
    pub source_id: SourceId,
    pub name: &'a str,
    pub target_url: &'a str,
    pub signing_secret: &'a str,
    pub filter: Option<&'a serde_json::Value>,
    pub forward_path: bool,
    pub policy: serde_json::Value,
    pub kind: SubscriptionKind,
}

/// The fields an edit may change; `None` leaves a field as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = subscriptions)]
pub struct SubscriptionChanges<'a> {
    pub name: Option<&'a str>,
    pub target_url: Option<&'a str>,
    pub is_active: Option<bool>,
    pub disabled_reason: Option<Option<&'a str>>,
    pub consecutive_failures: Option<i32>,
    pub filter: Option<Option<&'a serde_json::Value>>,
    pub forward_path: Option<bool>,
    pub policy: Option<serde_json::Value>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("workspace_id", &self.workspace_id)
            .field("source_id", &self.source_id)
            .field("name", &self.name)
            // Its query may carry the endpoint's own token.
            .field(
                "target_url",
                &self.target_url.split('?').next().unwrap_or_default(),
            )
            .field(
                "provider",
                &self
                    .provider
                    .as_ref()
                    .and_then(|provider| provider.get("kind")),
            )
            .field("is_active", &self.is_active)
            .field("disabled_reason", &self.disabled_reason)
            .field("consecutive_failures", &self.consecutive_failures)
            .field("filter", &self.filter)
            .field("forward_path", &self.forward_path)
            .field("policy", &crate::domain::Policy::from_stored(&self.policy))
            .field("kind", &self.kind)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Stores a new subscription.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    subscription: &NewSubscription<'_>,
) -> QueryResult<Subscription> {
    diesel::insert_into(subscriptions::table)
        .values(subscription)
        .execute(conn)
        .await?;
    subscriptions::table
        .inner_join(sources::table)
        .filter(subscriptions::id.eq(subscription.id))
        .select(Subscription::as_select())
        .first(conn)
        .await
}

/// A workspace's subscriptions, oldest first.
pub async fn list_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
) -> QueryResult<Vec<Subscription>> {
    subscriptions::table
        .inner_join(sources::table)
        .filter(subscriptions::workspace_id.eq(workspace))
        .order(subscriptions::created_at.asc())
        .select(Subscription::as_select())
        .load(conn)
        .await
}

/// A source's subscriptions, oldest first.
pub async fn list_for_source(
    conn: &mut AsyncPgConnection,
    source: SourceId,
) -> QueryResult<Vec<Subscription>> {
    subscriptions::table
        .inner_join(sources::table)
        .filter(subscriptions::source_id.eq(source))
        .order(subscriptions::created_at.asc())
        .select(Subscription::as_select())
        .load(conn)
        .await
}

/// One of a workspace's subscriptions; someone else's is `None`, exactly like a missing one.
pub async fn find_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SubscriptionId,
) -> QueryResult<Option<Subscription>> {
    subscriptions::table
        .inner_join(sources::table)
        .filter(subscriptions::id.eq(id))
        .filter(subscriptions::workspace_id.eq(workspace))
        .select(Subscription::as_select())
        .first(conn)
        .await
        .optional()
}

/// Applies an edit to one of a workspace's subscriptions; `None` when it is not theirs.
pub async fn update_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SubscriptionId,
    changes: &SubscriptionChanges<'_>,
) -> QueryResult<Option<Subscription>> {
    let updated = diesel::update(
        subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(subscriptions::workspace_id.eq(workspace)),
    )
    .set((changes, subscriptions::updated_at.eq(diesel::dsl::now)))
    .execute(conn)
    .await?;
    if updated == 0 {
        return Ok(None);
    }
    find_in_workspace(conn, workspace, id).await
}

/// Deletes one of a workspace's subscriptions and, with it, its deliveries; the source it was on,
/// when it exists.
pub async fn delete_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SubscriptionId,
) -> QueryResult<Option<SourceId>> {
    diesel::delete(
        subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(subscriptions::workspace_id.eq(workspace)),
    )
    .returning(subscriptions::source_id)
    .get_result(conn)
    .await
    .optional()
}

/// Whether a subscription still exists.
pub async fn exists(conn: &mut AsyncPgConnection, id: SubscriptionId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(subscriptions::table.find(id)))
        .get_result(conn)
        .await
}

/// A source's `cli` subscription of this name, if it has one.
pub async fn find_listen(
    conn: &mut AsyncPgConnection,
    source: SourceId,
    name: &str,
) -> QueryResult<Option<Subscription>> {
    subscriptions::table
        .inner_join(sources::table)
        .filter(subscriptions::source_id.eq(source))
        .filter(subscriptions::kind.eq(SubscriptionKind::Cli))
        .filter(subscriptions::name.eq(name))
        .select(Subscription::as_select())
        .first(conn)
        .await
        .optional()
}

/// Gives one of a workspace's subscriptions a new signing secret; the old one keeps signing
/// deliveries too until `previous_until`, so receivers can switch without dropping any.
pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    id: SubscriptionId,
    new_secret: &str,
    previous_until: DateTime<Utc>,
) -> QueryResult<Option<Subscription>> {
    let updated = diesel::update(
        subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(subscriptions::workspace_id.eq(workspace)),
    )
    .set((
        subscriptions::previous_signing_secret.eq(subscriptions::signing_secret.nullable()),
        subscriptions::previous_secret_expires_at.eq(previous_until),
        subscriptions::signing_secret.eq(new_secret),
        subscriptions::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    if updated == 0 {
        return Ok(None);
    }
    find_in_workspace(conn, workspace, id).await
}

/// How a subscription has done over a recent window.
#[derive(Debug, Clone, QueryableByName)]
pub struct SubscriptionStats {
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    /// Deliveries made for events received in the window.
    #[diesel(sql_type = BigInt)]
    pub events: i64,
    /// Delivery attempts made in the window, and how many of them the endpoint took (2xx).
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = BigInt)]
    pub successes: i64,
    /// When the latest of those attempts started.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_attempt_at: Option<DateTime<Utc>>,
}

/// Each of a workspace's subscriptions' deliveries of events received since `since`, and the
/// attempts made since then (`since` and `settled` on the hour). The hours before `settled` are
/// read from their counts, made once (see [`delivery_attempt::settle_hours`]); only the rows
/// since `settled` are counted, so a list reads about an hour of a busy subscription's rows
/// rather than a day. The latest attempt is one step back along each partition's
/// `(subscription_id, started_at)` index.
pub async fn stats_in_workspace(
    conn: &mut AsyncPgConnection,
    workspace: WorkspaceId,
    since: DateTime<Utc>,
    settled: DateTime<Utc>,
) -> QueryResult<Vec<SubscriptionStats>> {
    let ids: Vec<SubscriptionId> = subscriptions::table
        .filter(subscriptions::workspace_id.eq(workspace))
        .select(subscriptions::id)
        .load(conn)
        .await?;
    delivery_attempt::settle_hours(conn, &ids, since, settled).await?;
    diesel::sql_query(
        "SELECT s.id AS subscription_id, \
             k.deliveries + (SELECT count(*) FROM deliveries d \
                 WHERE d.subscription_id = s.id AND d.id >= first_id_at($3)) AS events, \
             k.attempts + a.attempts AS attempts, k.successes + a.successes AS successes, \
             (SELECT max(started_at) FROM delivery_attempts l \
                 WHERE l.subscription_id = s.id AND l.started_at >= $2) AS last_attempt_at \
         FROM subscriptions s \
         CROSS JOIN LATERAL ( \
             SELECT coalesce(sum(deliveries), 0)::bigint AS deliveries, \
                 coalesce(sum(succeeded + refused + server_error + no_answer), 0)::bigint \
                     AS attempts, \
                 coalesce(sum(succeeded), 0)::bigint AS successes \
             FROM attempt_hours h \
             WHERE h.subscription_id = s.id AND h.hour >= $2 AND h.hour < $3) k \
         CROSS JOIN LATERAL ( \
             SELECT count(*) AS attempts, \
                 count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS successes \
             FROM delivery_attempts a \
             WHERE a.subscription_id = s.id AND a.started_at >= $3) a \
         WHERE s.workspace_id = $1",
    )
    .bind::<SqlUuid, _>(workspace)
    .bind::<Timestamptz, _>(since)
    .bind::<Timestamptz, _>(settled)
    .load(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_token_or_secret() {
        let subscription = Subscription {
            id: SubscriptionId(uuid::Uuid::new_v4()),
            workspace_id: WorkspaceId(uuid::Uuid::new_v4()),
            source_id: SourceId(uuid::Uuid::new_v4()),
            name: "shop".into(),
            target_url: "https://example.com/hook?token=endpoint-token".into(),
            ingest_token: "ingest-token-value".into(),
            signing_secret: "whsec_signing".into(),
            previous_signing_secret: Some("whsec_previous".into()),
            previous_secret_expires_at: None,
            provider: Some(serde_json::json!({"kind": "stripe", "secret": "whsec_provider"})),
            is_active: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            filter: None,
            forward_path: false,
            policy: serde_json::json!({"headers": {"Authorization": "Bearer endpoint-token"}}),
            kind: SubscriptionKind::Http,
        };
        let shown = format!("{subscription:?}");
        for secret in ["ingest-token-value", "whsec_", "endpoint-token"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(
            shown.contains("stripe"),
            "the provider's kind is shown: {shown}"
        );
    }
}
