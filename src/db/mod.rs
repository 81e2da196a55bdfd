//! PostgreSQL: the pool, the embedded migrations, the generated schema and the query functions.

pub mod migrations;
pub mod models;
pub mod schema;

use std::time::Duration;

use anyhow::Context;
use deadpool::Runtime;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::config::DatabaseSettings;

/// A connection pool.
pub type DbPool = Pool<AsyncPgConnection>;

/// How a pool's commits reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commits {
    /// On disk before the commit returns: what a `202` and every user's action rest on.
    Durable,
    /// Returned before they are flushed (`synchronous_commit = off`): for delivery's
    /// bookkeeping (claims, attempts, the reaper's pushes), which a PostgreSQL crash can roll
    /// back by a fraction of a second. What that loses is shown as a delivery made again or a
    /// republish, never as an event lost: the event itself was committed durably at ingest, and
    /// a rolled-back claim or record leaves it due, for the reaper.
    Asynchronous,
}

/// Builds a pool of at most `size` connections, opened lazily.
///
/// A connection's driver task runs on the runtime that opened it, so each pool serves one
/// runtime: every actix worker (a single-threaded runtime of its own) builds its own pool, and
/// the delivery pool lives on the main runtime. Queries then never hop threads, and no pool
/// holds connections that die with another runtime at shutdown.
pub fn build_pool(
    settings: &DatabaseSettings,
    size: usize,
    commits: Commits,
) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    // A broken connection is noticed by its driver task; a test query on every checkout would
    // add a round trip to each ingest for nothing.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            for setting in session_settings(commits) {
                diesel::sql_query(*setting)
                    .execute(&mut conn)
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            }
            Ok(conn)
        })
    });
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.expose(),
        config,
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(Duration::from_secs(2).min(settings.timeout)))
        .build()
        .context("building the database pool")
}

/// What each connection of a pool sets for its session.
///
/// `plan_cache_mode = force_custom_plan`: every statement is planned for the values it is run
/// with. Left to choose (`auto`), PostgreSQL may switch a connection's prepared statement to a
/// generic plan made once, and keep it for the connection's life. A generic plan made while
/// `events` was small scans the whole table, and with statistics not refreshed (autovacuum late,
/// or off) it is never made again: measured, a record batch planned on a new database went on
/// scanning every event, and delivery fell from 3,000/s to 600/s. The relay's batch statements
/// were planned anew on each run anyway; this makes it a rule instead of a cost estimate.
fn session_settings(commits: Commits) -> &'static [&'static str] {
    match commits {
        Commits::Durable => &["SET plan_cache_mode = force_custom_plan"],
        Commits::Asynchronous => &[
            "SET plan_cache_mode = force_custom_plan",
            "SET synchronous_commit = off",
        ],
    }
}

/// Why a database call produced no answer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// No connection could be had, or the call did not finish in time: PostgreSQL is down,
    /// unreachable or overloaded. Callers answer 503.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The query itself failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// The pool and the bound on how long any call through it may take.
#[derive(Clone)]
pub struct Database {
    pool: DbPool,
    timeout: Duration,
}

impl Database {
    /// Wraps a pool; every call through [`Database::run`] is bounded by `timeout`.
    pub fn new(pool: DbPool, timeout: Duration) -> Self {
        Database { pool, timeout }
    }

    /// Runs `work` on a pooled connection, bounded by the timeout. A broken connection is
    /// reported as [`DbError::Unavailable`], like a missing one.
    pub async fn run<T>(
        &self,
        work: impl AsyncFnOnce(&mut AsyncPgConnection) -> diesel::QueryResult<T>,
    ) -> Result<T, DbError> {
        let call = async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| DbError::Unavailable(e.to_string()))?;
            work(&mut *conn).await.map_err(classify)
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| DbError::Unavailable(format!("no answer within {:?}", self.timeout)))?
    }

    /// Closes the pool: connections in use close when they are returned.
    pub fn close(&self) {
        self.pool.close();
    }
}

fn classify(error: diesel::result::Error) -> DbError {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            info,
        ) => DbError::Unavailable(info.message().to_owned()),
        Error::BrokenTransactionManager => DbError::Unavailable("broken transaction".into()),
        other => DbError::Query(other),
    }
}
