//! Natural batching: work that arrives while earlier work is being written waits for it and is
//! written together, in one statement and one commit. At low rates a batch is the one item that
//! arrived, sent at once, never held back waiting for company; under load batches grow by
//! themselves to what arrives during one round trip, up to a limit.

use std::sync::Arc;

use slog::{Logger, warn};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::db::DbError;

/// Takes what arrives on `items` in batches of at most `max` and hands each to `start` with one
/// of `slots` permits, which `start` keeps until the batch is written: while every slot is
/// taken, what arrives waits in the channel and becomes the next batch. Ends when every sender
/// is gone and the channel is empty.
pub async fn pump<T>(
    mut items: mpsc::Receiver<T>,
    slots: usize,
    max: usize,
    mut start: impl FnMut(Vec<T>, OwnedSemaphorePermit),
) {
    let slots = Arc::new(Semaphore::new(slots.max(1)));
    let max = max.max(1);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut batch = Vec::new();
        if items.recv_many(&mut batch, max).await == 0 {
            return;
        }
        start(batch, slot);
    }
}

/// How a batch was written.
pub enum Written<R> {
    /// In one statement.
    Together(R),
    /// One item at a time, after the statement for all of them failed: each item's outcome.
    Alone(Vec<Result<R, DbError>>),
}

/// Writes `items` in one call of `write`. Should that fail for a reason other than the
/// database being unavailable (one item at fault, a deadlock), each item is written again
/// alone, so one bad item never fails its neighbours; once the database is found unavailable,
/// the items not yet written fail at once rather than each wait out its own timeout. `Err`: the
/// batch as a whole could not be written.
pub async fn write_together_or_alone<'a, T, R, F>(
    items: &'a [T],
    log: &Logger,
    what: &'static str,
    mut write: impl FnMut(&'a [T]) -> F,
) -> Result<Written<R>, DbError>
where
    F: Future<Output = Result<R, DbError>>,
{
    match write(items).await {
        Ok(written) => Ok(Written::Together(written)),
        Err(DbError::Query(error)) if items.len() > 1 => {
            warn!(log, "a batch failed; writing its items one by one";
                "batch" => what, "items" => items.len(), "error" => %error);
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items.chunks(1) {
                let outcome = match outcomes.last() {
                    Some(Err(DbError::Unavailable(reason))) => {
                        Err(DbError::Unavailable(reason.clone()))
                    }
                    _ => write(item).await,
                };
                outcomes.push(outcome);
            }
            Ok(Written::Alone(outcomes))
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn what_arrives_while_every_slot_is_busy_becomes_one_batch() {
        let (sender, items) = mpsc::channel(100);
        let (batches_tx, mut batches) = mpsc::unbounded_channel();
        let (release_tx, release) = tokio::sync::watch::channel(false);
        let pumping = tokio::spawn(pump(items, 1, 50, move |batch: Vec<u32>, slot| {
            let batches_tx = batches_tx.clone();
            let mut release = release.clone();
            tokio::spawn(async move {
                batches_tx.send(batch).unwrap();
                let _ = release.wait_for(|released| *released).await;
                drop(slot);
            });
        }));
        sender.send(0).await.unwrap();
        assert_eq!(
            batches.recv().await.unwrap(),
            vec![0],
            "alone, sent at once"
        );
        for item in 1..=60 {
            sender.send(item).await.unwrap();
        }
        release_tx.send(true).unwrap();
        assert_eq!(batches.recv().await.unwrap(), (1..=50).collect::<Vec<_>>());
        assert_eq!(batches.recv().await.unwrap(), (51..=60).collect::<Vec<_>>());
        drop(sender);
        pumping.await.unwrap();
    }
}
