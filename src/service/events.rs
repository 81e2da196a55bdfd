//! Events and their deliveries: reading, listing and replaying.

use std::sync::Arc;

use diesel_async::AsyncConnection;
use slog::warn;

use super::{Actor, Permission, ServiceError};
use crate::db::models::audit;
use crate::db::models::delivery::{self, DeliverySummary, EventPage, ReplayFilter};
use crate::db::models::delivery_attempt::{self, DeliveryAttempt, LastAttempt};
use crate::db::models::event::{self, Event};
use crate::db::models::subscription;
use crate::delivery::publish_due;
use crate::domain::{DeliveryId, EventId, EventStatus, SubscriptionId};
use crate::state::AppState;

/// An event, body included, with its deliveries (none when no subscription took it).
#[derive(Debug, Clone)]
pub struct EventDetail {
    pub event: Event,
    pub deliveries: Vec<DeliverySummary>,
}

impl EventDetail {
    /// Its status: its deliveries' rolled up.
    pub fn status(&self) -> EventStatus {
        EventStatus::roll_up(self.deliveries.iter().map(|delivery| delivery.status))
    }
}

async fn detail(
    conn: &mut diesel_async::AsyncPgConnection,
    actor: &Actor,
    id: EventId,
) -> diesel::QueryResult<Option<EventDetail>> {
    let Some(event) = event::find_in_workspace(conn, actor.workspace, id).await? else {
        return Ok(None);
    };
    let deliveries = delivery::of_event(conn, id).await?;
    Ok(Some(EventDetail { event, deliveries }))
}

/// Delivers an event again wherever its delivery has ended (delivered or failed): the same
/// bytes and `webhook-id`, a fresh retry budget. An event none of whose deliveries has ended
/// is a conflict: replaying it would start a second attempt chain beside the first.
pub async fn replay(
    state: &AppState,
    actor: &Actor,
    id: EventId,
) -> Result<EventDetail, ServiceError> {
    actor.require(Permission::Change)?;
    let (due, found) = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let due = delivery::replay_event_in_workspace(conn, actor.workspace, id).await?;
                if !due.is_empty() {
                    audit::append(conn, &[actor.audit("event.replayed", "event", id)]).await?;
                }
                Ok((due, detail(conn, actor, id).await?))
            })
            .await
        })
        .await?;
    let found = found.ok_or(ServiceError::NotFound("event"))?;
    if due.is_empty() {
        return Err(ServiceError::Conflict(match found.status() {
            EventStatus::Unrouted => "the event was routed to no subscription: there is nothing \
                                      to replay"
                .to_owned(),
            status => {
                format!("the event is {status}: only completed or failed events can be replayed")
            }
        }));
    }
    publish_due(&state.publisher, &due).await;
    super::subscriptions::notify_replayed(state, actor.workspace, &due);
    Ok(found)
}

/// Makes one delivery again, if it has ended (delivered or failed): the same bytes and
/// `webhook-id`, a fresh retry budget. One still being made is a conflict.
pub async fn replay_delivery(
    state: &AppState,
    actor: &Actor,
    id: DeliveryId,
) -> Result<(DeliverySummary, Vec<DeliveryAttempt>), ServiceError> {
    make_due(state, actor, id, Again::Replay).await
}

/// Attempts now a delivery that waits for its next retry (after its endpoint was fixed, say):
/// the attempt takes the retry's place in its chain, and the retry's own message is dropped
/// when it comes, so two clicks, or a click racing the retry, still make one attempt. One that
/// does not wait for a retry is a conflict.
pub async fn retry_delivery(
    state: &AppState,
    actor: &Actor,
    id: DeliveryId,
) -> Result<(DeliverySummary, Vec<DeliveryAttempt>), ServiceError> {
    make_due(state, actor, id, Again::RetryNow).await
}

/// How one delivery is made again.
#[derive(Debug, Clone, Copy)]
enum Again {
    /// An ended one, with a fresh retry budget.
    Replay,
    /// One waiting for its next retry, now, at the step it is at.
    RetryNow,
}

impl Again {
    fn action(self) -> &'static str {
        match self {
            Again::Replay => "delivery.replayed",
            Again::RetryNow => "delivery.retried",
        }
    }

    /// Why a delivery of this status was not made again.
    fn refusal(self, status: EventStatus) -> String {
        match (self, status) {
            (Again::Replay, status) => format!(
                "the delivery is {status}: only completed or failed deliveries can be replayed"
            ),
            (Again::RetryNow, EventStatus::Retrying) => "the delivery is being attempted right \
                 now, or its subscription is paused or disabled: resume it first"
                .to_owned(),
            (Again::RetryNow, status) => format!(
                "the delivery is {status}: only one waiting for its next retry can be retried now"
            ),
        }
    }
}

/// Makes one delivery due `how`, with its audit line, publishes it and tells the live pages;
/// answers it with its attempts.
async fn make_due(
    state: &AppState,
    actor: &Actor,
    id: DeliveryId,
    how: Again,
) -> Result<(DeliverySummary, Vec<DeliveryAttempt>), ServiceError> {
    actor.require(Permission::Change)?;
    let due = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let due = match how {
                    Again::Replay => {
                        delivery::replay_in_workspace(conn, actor.workspace, id).await?
                    }
                    Again::RetryNow => {
                        delivery::retry_now_in_workspace(conn, actor.workspace, id).await?
                    }
                };
                if let Some(due) = &due {
                    let line = actor
                        .audit(how.action(), "delivery", id)
                        .detail(format!("event {}", due.event_id));
                    audit::append(conn, &[line]).await?;
                }
                Ok(due)
            })
            .await
        })
        .await?;
    let (found, attempts) = get_delivery(state, actor, id).await?;
    let Some(due) = due else {
        return Err(ServiceError::Conflict(how.refusal(found.status)));
    };
    let due = std::slice::from_ref(&due);
    publish_due(&state.publisher, due).await;
    super::subscriptions::notify_replayed(state, actor.workspace, due);
    Ok((found, attempts))
}

/// One of the workspace's deliveries, with its attempts.
pub async fn get_delivery(
    state: &AppState,
    actor: &Actor,
    id: DeliveryId,
) -> Result<(DeliverySummary, Vec<DeliveryAttempt>), ServiceError> {
    state
        .db
        .run(async |conn| {
            let Some(found) = delivery::find_in_workspace(conn, actor.workspace, id).await? else {
                return Ok(None);
            };
            let attempts = delivery_attempt::list_for_delivery(conn, id).await?;
            Ok(Some((found, attempts)))
        })
        .await?
        .ok_or(ServiceError::NotFound("delivery"))
}

/// How many deliveries one bulk-replay transaction replays: bounded, so that replaying the
/// whole graveyard never holds many rows locked or floods the broker at once.
const REPLAY_BATCH: i64 = 500;

/// Replays those of `ids` that are the workspace's and failed; answers how many.
pub async fn replay_selected(
    state: &AppState,
    actor: &Actor,
    ids: &[DeliveryId],
) -> Result<usize, ServiceError> {
    actor.require(Permission::Change)?;
    let due = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let due = delivery::replay_failed_in_workspace(conn, actor.workspace, ids).await?;
                if !due.is_empty() {
                    let line = actor
                        .audit("event.bulk_replayed", "workspace", actor.workspace)
                        .detail(format!("{} selected failed deliveries", due.len()));
                    audit::append(conn, &[line]).await?;
                }
                Ok(due)
            })
            .await
        })
        .await?;
    publish_due(&state.publisher, &due).await;
    super::subscriptions::notify_replayed(state, actor.workspace, &due);
    Ok(due.len())
}

/// Replays every delivery of the workspace's the filter takes, of events received before now, in
/// the background in batches of [`REPLAY_BATCH`] (each its own transaction, published before
/// the next is taken, walking the range by id so none is taken twice): the caller answers at
/// once with how many there are, and a million of them hold neither a request nor more than a
/// batch in memory. The work lives in this process: should it stop half-way, what is left
/// keeps its status, to be replayed again.
///
/// Its audit line is written with the count, when it is asked for.
pub async fn replay_in_background(
    state: Arc<AppState>,
    actor: &Actor,
    mut filter: ReplayFilter,
) -> Result<i64, ServiceError> {
    actor.require(Permission::Change)?;
    // Events that arrive from now on are not part of it.
    let now = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1);
    filter.until = Some(filter.until.map_or(now, |until| until.min(now)));
    let workspace = actor.workspace;
    let line = match filter.subscription {
        Some(id) => actor.audit("event.bulk_replayed", "subscription", id),
        None => actor.audit("event.bulk_replayed", "workspace", workspace),
    };
    let matching = state
        .db
        .run(async |conn| {
            conn.transaction(async |conn| {
                let matching = delivery::count_replayable(conn, workspace, &filter).await?;
                let line = line.detail(format!("{matching} {} deliveries", filter.status));
                audit::append(conn, &[line]).await?;
                Ok(matching)
            })
            .await
        })
        .await?;
    tokio::spawn(async move {
        let mut after = None;
        loop {
            let due = match state
                .db
                .run(async |conn| {
                    delivery::replay_batch(conn, workspace, &filter, after, REPLAY_BATCH).await
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
            after = due.iter().map(|delivery| delivery.id).max();
            publish_due(&state.publisher, &due).await;
            super::subscriptions::notify_replayed(&state, workspace, &due);
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

/// One of the workspace's events, body included, with its deliveries.
pub async fn get(
    state: &AppState,
    actor: &Actor,
    id: EventId,
) -> Result<EventDetail, ServiceError> {
    state
        .db
        .run(async |conn| detail(conn, actor, id).await)
        .await?
        .ok_or(ServiceError::NotFound("event"))
}

/// One of the workspace's events, body included, with its deliveries and their attempts, read
/// together.
pub async fn get_with_attempts(
    state: &AppState,
    actor: &Actor,
    id: EventId,
) -> Result<(EventDetail, Vec<DeliveryAttempt>), ServiceError> {
    state
        .db
        .run(async |conn| {
            let Some(found) = detail(conn, actor, id).await? else {
                return Ok(None);
            };
            let attempts = delivery_attempt::of_event(conn, id).await?;
            Ok(Some((found, attempts)))
        })
        .await?
        .ok_or(ServiceError::NotFound("event"))
}

/// The delivery attempts made for one of the workspace's events, by each of its deliveries.
pub async fn attempts(
    state: &AppState,
    actor: &Actor,
    id: EventId,
) -> Result<Vec<DeliveryAttempt>, ServiceError> {
    state
        .db
        .run(async |conn| delivery_attempt::list_for_event(conn, actor.workspace, id).await)
        .await?
        .ok_or(ServiceError::NotFound("event"))
}

/// A page of a workspace's deliveries, newest first: of one of their subscriptions (another workspace's
/// is not found), or of all of them.
pub async fn list(
    state: &AppState,
    actor: &Actor,
    subscription: Option<SubscriptionId>,
    page: &EventPage,
) -> Result<Vec<DeliverySummary>, ServiceError> {
    Ok(log(state, actor, subscription, page, false)
        .await?
        .into_iter()
        .map(|(delivery, _)| delivery)
        .collect())
}

/// The deliveries of these of a workspace's events (others' are left out), newest first, each with
/// how its latest attempt ended.
pub async fn lines(
    state: &AppState,
    actor: &Actor,
    ids: &[EventId],
) -> Result<Vec<(DeliverySummary, Option<LastAttempt>)>, ServiceError> {
    Ok(state
        .db
        .run(async |conn| {
            let deliveries = delivery::summaries_in_workspace(conn, actor.workspace, ids).await?;
            with_last_attempts(conn, deliveries).await
        })
        .await?)
}

async fn with_last_attempts(
    conn: &mut diesel_async::AsyncPgConnection,
    deliveries: Vec<DeliverySummary>,
) -> diesel::QueryResult<Vec<(DeliverySummary, Option<LastAttempt>)>> {
    let ids: Vec<DeliveryId> = deliveries.iter().map(|d| d.id).collect();
    let mut last = delivery_attempt::latest_of(conn, &ids).await?;
    Ok(deliveries
        .into_iter()
        .map(|delivery| {
            let found = last.iter().position(|a| a.delivery_id == delivery.id);
            (delivery, found.map(|at| last.swap_remove(at)))
        })
        .collect())
}

/// [`list`], each delivery with how its latest attempt ended (when `with_last_attempt`).
pub async fn log(
    state: &AppState,
    actor: &Actor,
    subscription: Option<SubscriptionId>,
    page: &EventPage,
    with_last_attempt: bool,
) -> Result<Vec<(DeliverySummary, Option<LastAttempt>)>, ServiceError> {
    state
        .db
        .run(async |conn| {
            if let Some(id) = subscription
                && subscription::find_in_workspace(conn, actor.workspace, id)
                    .await?
                    .is_none()
            {
                return Ok(None);
            }
            let deliveries =
                delivery::list_in_workspace(conn, actor.workspace, subscription, page).await?;
            if with_last_attempt {
                with_last_attempts(conn, deliveries).await.map(Some)
            } else {
                Ok(Some(deliveries.into_iter().map(|d| (d, None)).collect()))
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
