//! Writing down what a source's check refused, and when it last answered a handshake, for the
//! source's page. A refusal is written before it is answered, so one provider's requests are
//! listed in the order they came; a handshake is noted after it is answered, so the provider
//! never waits on it. A flood of refused requests cannot flood the database: at most
//! [`AT_ONCE`] writes are under way per process, and a refusal that finds them all busy is
//! counted in the metrics but not written down.

use std::sync::Arc;

use slog::{Logger, warn};
use tokio::sync::Semaphore;

use super::body;
use super::routes::{Refusal, Route};
use crate::db::Database;
use crate::db::models::rejected_request::{self, NewRejected};
use crate::db::models::source;
use crate::domain::SourceId;
use crate::signing::incoming::Incoming;

/// How many writes may be under way at once, per process.
const AT_ONCE: usize = 4;
/// How much of a refused request's body is kept.
const BODY_SAMPLE_BYTES: usize = 1024;
/// What a credential in the query is shown as.
const MASKED: &str = "masked";

/// Writes refusals and handshakes down, a bounded number at once.
pub struct Refusals {
    writing: Arc<Semaphore>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            writing: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }
}

impl Refusals {
    /// Writes down a request refused by `route`'s check; `target` is the path after the token.
    pub async fn write_down(
        &self,
        db: &Database,
        route: &Route,
        request: &Incoming<'_>,
        target: &str,
        refusal: Refusal,
        log: &Logger,
    ) {
        let Ok(_permit) = self.writing.try_acquire() else {
            return;
        };
        let query = match &route.credential_query {
            Some(name) => body::without_param(request.query, name, Some(MASKED)),
            None => request.query.to_owned(),
        };
        let path = if query.is_empty() {
            target.to_owned()
        } else {
            format!("{target}?{query}")
        };
        let rejected = NewRejected {
            source_id: route.source_id,
            reason: refusal.rejection.reason(),
            handshake: refusal.handshake,
            method: request.method.as_str(),
            path: &path,
            headers: body::masked_headers(request.headers, route.credential_header.as_deref()),
            body_sample: &request.body[..request.body.len().min(BODY_SAMPLE_BYTES)],
            body_bytes: i32::try_from(request.body.len()).unwrap_or(i32::MAX),
        };
        let written = db
            .run(async |conn| {
                rejected_request::record(conn, &rejected).await?;
                if rejected.handshake {
                    source::record_handshake(conn, rejected.source_id, rejected.reason).await?;
                }
                Ok(())
            })
            .await;
        if let Err(error) = written {
            warn!(log, "a refused request was not written down"; "error" => %error);
        }
    }

    /// Notes on the source, in the background, that its provider's handshake was answered.
    pub fn note_handshake(&self, db: &Database, source_id: SourceId, log: &Logger) {
        let Ok(permit) = self.writing.clone().try_acquire_owned() else {
            return;
        };
        let (db, log) = (db.clone(), log.clone());
        actix_web::rt::spawn(async move {
            let noted = db
                .run(async |conn| source::record_handshake(conn, source_id, source::ANSWERED).await)
                .await;
            if let Err(error) = noted {
                warn!(log, "an answered handshake was not noted"; "error" => %error);
            }
            drop(permit);
        });
    }
}
