//! Events: listing and replaying.

use super::ServiceError;
use crate::db::models::event::{self, Event, EventPage, EventSummary};
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

/// A page of a user's events, newest first: of one subscription, or of all of them. Asking for
/// another user's subscription finds nothing.
pub async fn list(
    state: &AppState,
    user: UserId,
    subscription: Option<SubscriptionId>,
    page: EventPage,
) -> Result<Vec<EventSummary>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| event::list_for_user(conn, user, subscription, page).await)
        .await?)
}
