//! PostgreSQL: the pool, the embedded migrations, the generated schema and the query functions.

pub mod migrations;
pub mod models;
pub mod partitions;
pub mod schema;

use std::time::Duration;

use anyhow::Context;
use deadpool::Runtime;
use deadpool::managed::{Hook, HookError};
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

/// How a pool's statements are planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plans {
    /// Each run of a statement is planned for its values (`force_custom_plan`). For the
    /// dashboard, the API and the background scans: statements run now and then, whose best
    /// plan depends on their values and on how big the tables have grown.
    Custom,
    /// Each statement is planned once per connection, for any values (`force_generic_plan`).
    /// For the batch statements of ingest and delivery, which run thousands of times a second
    /// and reach events and deliveries only through their keys: planning them cost several
    /// times their running. `tests/api/plans.rs` checks that their plans reach those tables
    /// by key alone, planned on a new, empty database and on one analysed with rows in it.
    Generic,
}

/// Builds a pool of at most `size` connections, opened lazily.
///
/// A connection's driver task runs on the runtime that opened it, so each pool serves one
/// runtime: every actix worker (a single-threaded runtime of its own) builds its own pools, and
/// the background's live on the main runtime. Queries then never hop threads, and no pool
/// holds connections that die with another runtime at shutdown.
pub fn build_pool(
    settings: &DatabaseSettings,
    size: usize,
    commits: Commits,
    plans: Plans,
) -> anyhow::Result<DbPool> {
    let mut config = ManagerConfig::default();
    // A broken connection is noticed by its driver task; a test query on every checkout would
    // add a round trip to each ingest for nothing.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |url| {
        Box::pin(async move {
            let mut conn = AsyncPgConnection::establish(url).await?;
            for setting in session_settings(commits, plans) {
                diesel::sql_query(setting)
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
    let mut builder = Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(Duration::from_secs(2).min(settings.timeout)));
    if plans == Plans::Generic {
        // A plan made once lasts as long as its connection. One made while PostgreSQL's
        // statistics said a table was tiny (analysed then, and not since: autovacuum off) may
        // walk a whole index; a new connection plans for the table's size as it is now.
        let lifetime = settings.replan_after;
        builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
            if metrics.age() < lifetime {
                Ok(())
            } else {
                Err(HookError::message("its plans are due to be made again"))
            }
        }));
    }
    builder.build().context("building the database pool")
}

/// What each connection of a pool sets for its session.
///
/// Custom plans, `force_custom_plan`: left to choose (`auto`), PostgreSQL may switch a
/// connection's prepared statement to a generic plan made once, and keep it for the
/// connection's life. A generic plan made while `events` was small scans the whole table, and
/// with statistics not refreshed (autovacuum late, or off) it is never made again: measured, a
/// record batch planned on a new database went on scanning every event, and delivery fell from
/// 3,000/s to 600/s.
///
/// Generic plans, `force_generic_plan`: only for statements that name the keys of every row
/// of a growing table they touch (`id = ANY($1)`), so that every plan reaches those rows
/// through an index searched for the keys (see [`Plans::Generic`]). One choice is left that
/// keys do not settle: on a table analysed while empty, a sequential scan costs nothing to the
/// planner, and a plan made then would keep scanning as the table grows. `enable_seqscan = off`
/// takes it out of the running (no statement of these pools has a reason to scan a table).
///
/// No JIT, on every pool: PostgreSQL compiles a statement whose estimated cost passes
/// `jit_above_cost`, and compiling takes a quarter to half a second on these machines. The
/// planner's estimates for a loop over partitions run high, while the relay's statements read
/// few rows each: measured, the dashboard's check for hours left to count found none in 0.1 ms
/// and spent 565 ms compiling first.
fn session_settings(commits: Commits, plans: Plans) -> Vec<&'static str> {
    let mut settings = match plans {
        Plans::Custom => vec!["SET plan_cache_mode = force_custom_plan"],
        Plans::Generic => vec![
            "SET plan_cache_mode = force_generic_plan",
            "SET enable_seqscan = off",
        ],
    };
    settings.push("SET jit = off");
    if commits == Commits::Asynchronous {
        settings.push("SET synchronous_commit = off");
    }
    settings
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

    /// The same pool, with calls bounded by `timeout` instead: for the few that take long.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        Database {
            pool: self.pool.clone(),
            timeout,
        }
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
