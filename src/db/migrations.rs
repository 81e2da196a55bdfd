//! Embedded migrations, applied under an advisory lock so that replicas starting together take
//! turns.

use anyhow::Context;
use diesel::RunQueryDsl;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
/// Arbitrary, fixed: the key of the advisory lock all replicas agree on ("spenza" in ASCII).
const MIGRATION_LOCK: i64 = 0x7370_656e_7a61;

/// Applies every pending migration; returns how many were applied.
///
/// Runs on a plain thread of its own: the synchronous migration harness blocks, which would
/// stall (or, on a current-thread runtime, panic) an async executor.
pub async fn run(database_url: &str) -> anyhow::Result<usize> {
    let url = database_url.to_owned();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spenza-migrate".into())
        .spawn(move || {
            let _ = done_tx.send(run_blocking(&url));
        })
        .context("spawning the migration thread")?;
    done_rx.await.context("the migration thread died")?
}

fn run_blocking(url: &str) -> anyhow::Result<usize> {
    let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::establish(url)
        .context("connecting to PostgreSQL to migrate")?;
    diesel::sql_query("SELECT pg_advisory_lock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .context("taking the migration lock")?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map(|versions| versions.len())
        .map_err(|e| anyhow::anyhow!("applying migrations: {e}"));
    diesel::sql_query("SELECT pg_advisory_unlock($1)")
        .bind::<BigInt, _>(MIGRATION_LOCK)
        .execute(&mut conn)
        .context("releasing the migration lock")?;
    applied
}
