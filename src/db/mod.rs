//! PostgreSQL: the pool, the embedded migrations, the generated schema and the query functions.

pub mod migrations;
pub mod models;
pub mod schema;

use std::time::Duration;

use anyhow::Context;
use deadpool::Runtime;
use diesel::ConnectionError;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::FutureExt;

use crate::config::DatabaseSettings;

/// The connection pool every component shares.
pub type DbPool = Pool<AsyncPgConnection>;
/// A connection checked out of the pool.
pub type DbConn = Object<AsyncPgConnection>;

/// Builds the pool. Connections are opened lazily, on first use.
///
/// Each connection's driver task is spawned on the runtime that calls this function: actix runs
/// every HTTP worker on its own single-threaded runtime, and a connection opened there would die
/// with that worker during shutdown while the delivery pool still uses it.
pub fn build_pool(settings: &DatabaseSettings) -> anyhow::Result<DbPool> {
    let runtime = tokio::runtime::Handle::try_current()
        .context("the database pool must be built inside the main tokio runtime")?;
    let mut config = ManagerConfig::default();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        let connect = runtime.spawn(async move { AsyncPgConnection::establish(&url).await });
        async move {
            connect
                .await
                .map_err(|e| ConnectionError::BadConnection(format!("connect task failed: {e}")))?
        }
        .boxed()
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(&settings.url, config);
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(settings.timeout))
        .create_timeout(Some(settings.timeout))
        .recycle_timeout(Some(Duration::from_secs(2).min(settings.timeout)))
        .build()
        .context("building the database pool")
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
