//! Events: replaying one.

use super::ServiceError;
use crate::db::models::event::{self, Event};
use crate::delivery::publish_due;
use crate::domain::{EventId, UserId};
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
