//! Events: listing and replaying.

use super::ServiceError;
use crate::db::models::delivery_attempt::{self, DeliveryAttempt};
use crate::db::models::event::{self, Event, EventPage, EventSummary};
use crate::db::models::subscription;
use crate::delivery::publish_due;
use crate::domain::{EventId, SubscriptionId, UserId};
use crate::state::AppState;

/// Delivers a completed or failed event again: the same bytes and `webhook-id`, a fresh retry
/// budget. An event still being delivered is a conflict: replaying it would start a second
/// attempt chain beside the first.
pub async fn replay(state: &AppState, user: UserId, id: EventId) -> Result<Event, ServiceError> {
    let outcome = state
        .db
        .run(async |conn| {
            if let Some(due) = event::replay_for_user(conn, user, id).await? {
                return Ok(Some(Ok(due)));
            }
            Ok(event::find_for_user(conn, user, id).await?.map(Err))
        })
        .await?
        .ok_or(ServiceError::NotFound("event"))?;
    match outcome {
        Ok(due) => {
            publish_due(&state.publisher, std::slice::from_ref(&due)).await;
            state
                .db
                .run(async |conn| event::find_for_user(conn, user, id).await)
                .await?
                .ok_or(ServiceError::NotFound("event"))
        }
        Err(busy) => Err(ServiceError::Conflict(format!(
            "the event is {}: only completed or failed events can be replayed",
            busy.status
        ))),
    }
}

/// One of a user's events, body included.
pub async fn get(state: &AppState, user: UserId, id: EventId) -> Result<Event, ServiceError> {
    state
        .db
        .run(async |conn| event::find_for_user(conn, user, id).await)
        .await?
        .ok_or(ServiceError::NotFound("event"))
}

/// The delivery attempts made for one of a user's events, first first.
pub async fn attempts(
    state: &AppState,
    user: UserId,
    id: EventId,
) -> Result<Vec<DeliveryAttempt>, ServiceError> {
    state
        .db
        .run(async |conn| delivery_attempt::list_for_event(conn, user, id).await)
        .await?
        .ok_or(ServiceError::NotFound("event"))
}

/// A page of a user's events, newest first: of one of their subscriptions (another user's is
/// not found), or of all of them.
pub async fn list(
    state: &AppState,
    user: UserId,
    subscription: Option<SubscriptionId>,
    page: EventPage,
) -> Result<Vec<EventSummary>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if let Some(id) = subscription
                && subscription::find_for_user(conn, user, id).await?.is_none()
            {
                return Ok(None);
            }
            event::list_for_user(conn, user, subscription, page)
                .await
                .map(Some)
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}
