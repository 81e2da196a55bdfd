//! `subscriptions`: an ingest URL, the endpoint it relays to, and how deliveries are signed.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::subscriptions;
use crate::domain::{EventId, SubscriptionId, UserId};

/// A subscription as stored. `Debug` leaves out its token and secrets.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = subscriptions)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub user_id: UserId,
    pub name: String,
    pub target_url: String,
    pub ingest_token: String,
    pub signing_secret: String,
    pub previous_signing_secret: Option<String>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// The provider whose signatures ingest checks, secret included (never shown).
    pub provider: Option<serde_json::Value>,
    pub is_active: bool,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A subscription to create. No `Debug`: it holds the token and secrets.
#[derive(Insertable)]
#[diesel(table_name = subscriptions)]
pub struct NewSubscription<'a> {
    pub id: SubscriptionId,
    pub user_id: UserId,
    pub name: &'a str,
    pub target_url: &'a str,
    pub ingest_token: &'a str,
    pub signing_secret: &'a str,
    pub provider: Option<serde_json::Value>,
}

/// The fields an edit may change; `None` leaves a field as it is. No `Debug`: a provider holds
/// its secret.
#[derive(Default, AsChangeset)]
#[diesel(table_name = subscriptions)]
pub struct SubscriptionChanges<'a> {
    pub name: Option<&'a str>,
    pub target_url: Option<&'a str>,
    pub is_active: Option<bool>,
    pub disabled_reason: Option<Option<&'a str>>,
    pub consecutive_failures: Option<i32>,
    pub provider: Option<Option<serde_json::Value>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
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
        .returning(Subscription::as_returning())
        .get_result(conn)
        .await
}

/// A user's subscriptions, oldest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
) -> QueryResult<Vec<Subscription>> {
    subscriptions::table
        .filter(subscriptions::user_id.eq(user))
        .order(subscriptions::created_at.asc())
        .select(Subscription::as_select())
        .load(conn)
        .await
}

/// One of a user's subscriptions; someone else's is `None`, exactly like a missing one.
pub async fn find_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: SubscriptionId,
) -> QueryResult<Option<Subscription>> {
    subscriptions::table
        .filter(subscriptions::id.eq(id))
        .filter(subscriptions::user_id.eq(user))
        .select(Subscription::as_select())
        .first(conn)
        .await
        .optional()
}

/// Applies an edit to one of a user's subscriptions; `None` when it is not theirs.
pub async fn update_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: SubscriptionId,
    changes: &SubscriptionChanges<'_>,
) -> QueryResult<Option<Subscription>> {
    diesel::update(
        subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(subscriptions::user_id.eq(user)),
    )
    .set((changes, subscriptions::updated_at.eq(diesel::dsl::now)))
    .returning(Subscription::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Deletes one of a user's subscriptions and, with it, its events; whether it existed.
pub async fn delete_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: SubscriptionId,
) -> QueryResult<bool> {
    diesel::delete(
        subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(subscriptions::user_id.eq(user)),
    )
    .execute(conn)
    .await
    .map(|deleted| deleted > 0)
}

/// Gives one of a user's subscriptions a new signing secret; the old one keeps signing
/// deliveries too until `previous_until`, so receivers can switch without dropping any.
pub async fn rotate_secret(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: SubscriptionId,
    new_secret: &str,
    previous_until: DateTime<Utc>,
) -> QueryResult<Option<Subscription>> {
    diesel::update(
        subscriptions::table
            .filter(subscriptions::id.eq(id))
            .filter(subscriptions::user_id.eq(user)),
    )
    .set((
        subscriptions::previous_signing_secret.eq(subscriptions::signing_secret.nullable()),
        subscriptions::previous_secret_expires_at.eq(previous_until),
        subscriptions::signing_secret.eq(new_secret),
        subscriptions::updated_at.eq(diesel::dsl::now),
    ))
    .returning(Subscription::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// How a subscription has done over a recent window.
#[derive(Debug, Clone, QueryableByName)]
pub struct SubscriptionStats {
    #[diesel(sql_type = SqlUuid)]
    pub subscription_id: SubscriptionId,
    /// Events received in the window.
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

/// Each of a user's subscriptions' events received since `since`, and the attempts made since
/// then. Both walk the `(subscription_id, id)` index from an id bound rather than scanning by
/// time (event ids are v7 uuids, ordered by arrival); attempts are looked for on events received
/// up to a day earlier than `since`, which covers the default retry schedule (its last retry
/// comes about 11 hours after an event arrives) but not a replay of an older event.
pub async fn stats_for_user(
    conn: &mut AsyncPgConnection,
    user: UserId,
    since: DateTime<Utc>,
) -> QueryResult<Vec<SubscriptionStats>> {
    diesel::sql_query(
        "SELECT s.id AS subscription_id, \
             (SELECT count(*) FROM events e WHERE e.subscription_id = s.id AND e.id >= $2) \
                 AS events, \
             a.attempts, a.successes, a.last_attempt_at \
         FROM subscriptions s \
         CROSS JOIN LATERAL ( \
             SELECT count(*) AS attempts, \
                 count(*) FILTER (WHERE d.status_code BETWEEN 200 AND 299) AS successes, \
                 max(d.started_at) AS last_attempt_at \
             FROM events e JOIN delivery_attempts d ON d.event_id = e.id \
             WHERE e.subscription_id = s.id AND e.id >= $3 AND d.started_at >= $4) a \
         WHERE s.user_id = $1",
    )
    .bind::<SqlUuid, _>(user)
    .bind::<SqlUuid, _>(EventId::first_at(since))
    .bind::<SqlUuid, _>(EventId::first_at(since - chrono::TimeDelta::days(1)))
    .bind::<Timestamptz, _>(since)
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
            user_id: UserId(uuid::Uuid::new_v4()),
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
