//! Trying a filter before saving it: on a source's recent events, evaluated by the same code
//! ingest uses, saying of each whether it matched and, when not, which part of the filter failed.

use chrono::{DateTime, Utc};

use super::{Actor, ServiceError};
use crate::db::models::{event, source};
use crate::domain::{EventId, Filter, FilterInput, SourceId, query_object};
use crate::state::AppState;

/// How many of the source's latest events a filter is tried on.
const TRIED: i64 = 5;

/// One event a filter was tried on, and what came of it.
#[derive(Debug, Clone)]
pub struct Trial {
    pub event_id: EventId,
    pub received_at: DateTime<Utc>,
    pub matched: bool,
    /// When it did not match: the part of the filter that failed, and why.
    pub mismatch: Option<String>,
}

/// Tries `filter` (a valid one: parse it first) on the latest events of one of the workspace's
/// sources, newest first; none when no event has arrived yet.
pub async fn try_on_source(
    state: &AppState,
    actor: &Actor,
    source: SourceId,
    filter: &Filter,
) -> Result<Vec<Trial>, ServiceError> {
    let events = state
        .db
        .run(async |conn| {
            if source::find_in_workspace(conn, actor.workspace, source)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            event::recent_for_source(conn, source, TRIED)
                .await
                .map(Some)
        })
        .await?
        .ok_or(ServiceError::NotFound("source"))?;
    Ok(events
        .iter()
        .map(|event| {
            let query = query_object(&event.query);
            let explained = filter.explain(&FilterInput {
                body: event.payload.as_ref(),
                headers: &event.headers,
                query: &query,
                path: &event.path,
            });
            Trial {
                event_id: event.id,
                received_at: event.received_at,
                matched: explained.matched,
                mismatch: explained.mismatch,
            }
        })
        .collect())
}
