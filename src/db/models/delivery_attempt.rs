//! `delivery_attempts`: every request made to an endpoint, in order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::schema::{delivery_attempts, events, subscriptions};
use crate::domain::{EventId, UserId};

/// One attempt as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = delivery_attempts)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

/// The attempts made for one of a user's events, first first; `None` when the event is not theirs.
pub async fn list_for_event(
    conn: &mut AsyncPgConnection,
    user: UserId,
    event: EventId,
) -> QueryResult<Option<Vec<DeliveryAttempt>>> {
    let owned: Option<EventId> = events::table
        .inner_join(subscriptions::table)
        .filter(events::id.eq(event))
        .filter(subscriptions::user_id.eq(user))
        .select(events::id)
        .first(conn)
        .await
        .optional()?;
    if owned.is_none() {
        return Ok(None);
    }
    delivery_attempts::table
        .filter(delivery_attempts::event_id.eq(event))
        .order(delivery_attempts::attempt.asc())
        .select(DeliveryAttempt::as_select())
        .load(conn)
        .await
        .map(Some)
}

/// How an event's latest attempt ended.
#[derive(Debug, Clone, Queryable)]
pub struct LastAttempt {
    pub event_id: EventId,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// The latest attempt of each of these events that has one (looked up by primary key).
pub async fn latest_of(
    conn: &mut AsyncPgConnection,
    events: &[EventId],
) -> QueryResult<Vec<LastAttempt>> {
    delivery_attempts::table
        .filter(delivery_attempts::event_id.eq_any(events))
        .distinct_on(delivery_attempts::event_id)
        .order((
            delivery_attempts::event_id,
            delivery_attempts::attempt.desc(),
        ))
        .select((
            delivery_attempts::event_id,
            delivery_attempts::status_code,
            delivery_attempts::error,
        ))
        .load(conn)
        .await
}
