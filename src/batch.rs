//! Natural batching: work that arrives while earlier work is being written waits for it and is
//! written together, in one statement and one commit. At low rates a batch is the one item that
//! arrived, sent at once, never held back waiting for company; under load batches grow by
//! themselves to what arrives during one round trip, up to a limit. Work nobody waits for may
//! linger instead: its batch waits a moment for company, so that at moderate rates items a few
//! milliseconds apart share a statement and a commit.

use std::sync::Arc;
use std::time::Duration;

use slog::{Logger, warn};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::db::DbError;

/// Takes what arrives on `items` in batches of at most `max` and hands each to `start` with one
/// of `slots` permits, which `start` keeps until the batch is written: while every slot is
/// taken, what arrives waits in the channel and becomes the next batch. A batch lingers: once
/// its first item is in, it takes what else arrives for up to `linger` (zero: nothing) before
/// it starts, unless it is full first. Ends when every sender is gone and the channel is empty.
pub async fn pump<T>(
    mut items: mpsc::Receiver<T>,
    slots: usize,
    max: usize,
    linger: Duration,
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
        let until = tokio::time::Instant::now() + linger;
        while batch.len() < max && !linger.is_zero() {
            let room = max - batch.len();
            match tokio::time::timeout_at(until, items.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
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
        let pumping = tokio::spawn(pump(
            items,
            1,
            50,
            Duration::ZERO,
            move |batch: Vec<u32>, slot| {
                let batches_tx = batches_tx.clone();
                let mut release = release.clone();
                tokio::spawn(async move {
                    batches_tx.send(batch).unwrap();
                    let _ = release.wait_for(|released| *released).await;
                    drop(slot);
                });
            },
        ));
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

    #[tokio::test]
    async fn a_lingering_batch_takes_what_arrives_within_its_linger_and_starts_once_full() {
        let linger = Duration::from_secs(1);
        let (sender, items) = mpsc::channel(100);
        let (batches_tx, mut batches) = mpsc::unbounded_channel();
        let pumping = tokio::spawn(pump(items, 1, 3, linger, move |batch: Vec<u32>, slot| {
            batches_tx.send((batch, std::time::Instant::now())).unwrap();
            drop(slot);
        }));
        let sent = std::time::Instant::now();
        sender.send(0).await.unwrap();
        sender.send(1).await.unwrap();
        let (batch, started) = batches.recv().await.unwrap();
        assert_eq!(batch, vec![0, 1], "what arrived within the linger");
        assert!(started - sent >= linger, "held back for the linger");
        let sent = std::time::Instant::now();
        for item in 2..=4 {
            sender.send(item).await.unwrap();
        }
        let (batch, started) = batches.recv().await.unwrap();
        assert_eq!(batch, vec![2, 3, 4]);
        assert!(started - sent < linger, "full, so started at once");
        drop(sender);
        pumping.await.unwrap();
    }
}
