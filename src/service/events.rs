//! Events: listing and replaying.

use super::ServiceError;
use crate::db::models::delivery_attempt::{self, DeliveryAttempt, LastAttempt};
use std::sync::Arc;

use slog::warn;

use crate::db::models::event::{self, Event, EventPage, EventSummary, ReplayFilter};
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
            let due = std::slice::from_ref(&due);
            publish_due(&state.publisher, due).await;
            super::subscriptions::notify_replayed(state, user, due);
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

/// How many events one bulk-replay transaction replays: bounded, so that replaying the whole
/// graveyard never holds many rows locked or floods the broker at once.
const REPLAY_BATCH: i64 = 500;

/// Replays those of `ids` that are the user's and failed; answers how many.
pub async fn replay_selected(
    state: &AppState,
    user: UserId,
    ids: &[EventId],
) -> Result<usize, ServiceError> {
    let due = state
        .db
        .run(async |conn| event::replay_failed_for_user(conn, user, ids).await)
        .await?;
    publish_due(&state.publisher, &due).await;
    super::subscriptions::notify_replayed(state, user, &due);
    Ok(due.len())
}

/// Replays every event of the user's the filter takes, received before now, in the background
/// in batches of [`REPLAY_BATCH`] (each its own transaction, published before the next is
/// taken, walking the range by id so no event is taken twice): the caller answers at once with
/// how many there are, and a million of them hold neither a request nor more than a batch in
/// memory. The work lives in this process: should it stop half-way, what is left keeps its
/// status, to be replayed again.
pub async fn replay_in_background(
    state: Arc<AppState>,
    user: UserId,
    mut filter: ReplayFilter,
) -> Result<i64, ServiceError> {
    // Events that arrive from now on are not part of it.
    let now = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1);
    filter.until = Some(filter.until.map_or(now, |until| until.min(now)));
    let matching = state
        .db
        .run(async |conn| event::count_replayable(conn, user, &filter).await)
        .await?;
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let due = match state
                .db
                .run(async |conn| {
                    event::replay_batch(conn, user, &filter, after, REPLAY_BATCH).await
                })
                .await
            {
                Ok(due) if !due.is_empty() => due,
                Ok(_) => return,
                Err(error) => {
                    warn!(state.log, "a bulk replay stopped"; "error" => %error,
                        "after" => ?after);
                    return;
                }
            };
            after = due.iter().map(|event| event.id).max();
            publish_due(&state.publisher, &due).await;
            super::subscriptions::notify_replayed(&state, user, &due);
        }
    });
    Ok(matching)
}

/// The payload filter of the event log, as typed: a JSON object or array the payload must
/// contain (`{"type": "invoice.paid"}`); blank for none.
pub fn payload_filter(raw: &str) -> Result<Option<serde_json::Value>, ServiceError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(document @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
            Ok(Some(document))
        }
        Ok(_) => Err(ServiceError::invalid(
            "payload",
            "write a JSON object the payload contains, such as {\"type\": \"invoice.paid\"}",
        )),
        Err(error) => Err(ServiceError::invalid(
            "payload",
            format!("not JSON ({error}): write an object such as {{\"type\": \"invoice.paid\"}}"),
        )),
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
    page: &EventPage,
) -> Result<Vec<EventSummary>, ServiceError> {
    Ok(log(state, user, subscription, page, false)
        .await?
        .into_iter()
        .map(|(event, _)| event)
        .collect())
}

/// These of a user's events (others' are left out), newest first, each with how its latest
/// attempt ended.
pub async fn lines(
    state: &AppState,
    user: UserId,
    ids: &[EventId],
) -> Result<Vec<(EventSummary, Option<LastAttempt>)>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| {
            let events = event::summaries_for_user(conn, user, ids).await?;
            with_last_attempts(conn, events).await
        })
        .await?)
}

async fn with_last_attempts(
    conn: &mut diesel_async::AsyncPgConnection,
    events: Vec<EventSummary>,
) -> diesel::QueryResult<Vec<(EventSummary, Option<LastAttempt>)>> {
    let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
    let mut last = delivery_attempt::latest_of(conn, &ids).await?;
    Ok(events
        .into_iter()
        .map(|event| {
            let found = last.iter().position(|a| a.event_id == event.id);
            (event, found.map(|at| last.swap_remove(at)))
        })
        .collect())
}

/// [`list`], each event with how its latest attempt ended (when `with_last_attempt`).
pub async fn log(
    state: &AppState,
    user: UserId,
    subscription: Option<SubscriptionId>,
    page: &EventPage,
    with_last_attempt: bool,
) -> Result<Vec<(EventSummary, Option<LastAttempt>)>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if let Some(id) = subscription
                && subscription::find_for_user(conn, user, id).await?.is_none()
            {
                return Ok(None);
            }
            let events = event::list_for_user(conn, user, subscription, page).await?;
            if with_last_attempt {
                with_last_attempts(conn, events).await.map(Some)
            } else {
                Ok(Some(events.into_iter().map(|e| (e, None)).collect()))
            }
        })
        .await?
        .ok_or(ServiceError::NotFound("subscription"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_filter_is_a_json_object_or_array_or_nothing() {
        assert_eq!(payload_filter("  ").unwrap(), None);
        assert_eq!(
            payload_filter(r#"{"type": "invoice.paid"}"#).unwrap(),
            Some(serde_json::json!({"type": "invoice.paid"}))
        );
        assert!(payload_filter("[1]").unwrap().is_some());
        assert!(matches!(
            payload_filter("42"),
            Err(ServiceError::Invalid(_))
        ));
        assert!(matches!(
            payload_filter("{type:"),
            Err(ServiceError::Invalid(_))
        ));
    }
}
