//! Background workers: the archiver and the delivery worker, each a
//! [`Handler`] of entries driven by the one consume loop below.
//!
//! The loop owns everything the two have in common: take over entries a
//! dead consumer left pending, read new entries (no more than the handler
//! has room for), trim the streams now and then, and back off while Redis or
//! Postgres is away. A handler only says what to do with a batch.

pub mod archiver;
mod backends;
pub mod delivery;
mod outage;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

pub use self::backends::Backends;
use crate::{
    redis::RedisError,
    store::StoreError,
    streams::{Consumer, Received},
};

/// How long one read waits for new entries.
const READ_BLOCK: Duration = Duration::from_secs(1);
// Frequent trims keep each one small, so none stalls Redis noticeably.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(2);
const MAX_BACKOFF_STEPS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// What a worker does with the entries the loop reads.
pub trait Handler: Sync {
    /// How many entries it can take now, waiting while it has no room at
    /// all; `None` once `shutdown` is cancelled during the wait.
    fn room(&self, _shutdown: &CancellationToken) -> impl Future<Output = Option<usize>> + Send {
        async { Some(usize::MAX) }
    }

    /// Handles a batch; entries it does not acknowledge stay pending.
    fn handle(&self, batch: Vec<Received>) -> impl Future<Output = Result<(), WorkerError>> + Send;

    /// Runs after each trim, for periodic work of the handler's own.
    fn housekeeping(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The loop's settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most entries read at once.
    pub batch: u64,
    /// How long an entry may stay unacknowledged before it is taken over.
    pub claim_after: Duration,
    /// Set for a standby consumer: after a read that found less than a full
    /// batch, it waits this long before reading again. At steady load the
    /// first consumer then takes nearly everything, in batches that grow
    /// with the time it spends writing them (fewer statements and reads per
    /// entry), and a standby only joins in while a backlog lasts.
    pub standby: Option<Duration>,
}

/// Reads and handles entries until `shutdown`. The batch in hand is always
/// handed over whole, never dropped half-read.
pub async fn consume<H: Handler>(
    consumer: &Consumer,
    handler: &H,
    settings: Settings,
    shutdown: &CancellationToken,
) {
    let claim_every = (settings.claim_after / 2).max(Duration::from_secs(1));
    let mut last_claim: Option<Instant> = None;
    let mut last_housekeeping = Instant::now();
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let Some(room) = handler.room(shutdown).await else {
            break;
        };
        let count = settings.batch.min(room as u64).max(1);
        let claim = last_claim.is_none_or(|t| t.elapsed() >= claim_every);
        let outcome = if claim {
            last_claim = Some(Instant::now());
            take_over_stale(consumer, handler, settings.claim_after, count).await
        } else {
            match consumer.read_new(count, READ_BLOCK).await {
                Ok(batch) => {
                    let no_backlog = (batch.len() as u64) < count;
                    let handled = handler.handle(batch).await;
                    if let (true, Some(pause)) = (no_backlog, settings.standby) {
                        tokio::select! {
                            () = shutdown.cancelled() => {}
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                    handled
                }
                Err(err) => Err(err.into()),
            }
        };
        if last_housekeeping.elapsed() >= HOUSEKEEPING_EVERY {
            last_housekeeping = Instant::now();
            if let Err(err) = consumer.trim().await {
                tracing::warn!(error = %err, "stream trim failed");
            }
            handler.housekeeping().await;
        }
        match outcome {
            Ok(()) => failures = 0,
            Err(err) => {
                failures = failures.saturating_add(1);
                tracing::error!(
                    consumer = consumer.name(),
                    error = %err,
                    "worker pass failed; its entries stay pending"
                );
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}

async fn take_over_stale<H: Handler>(
    consumer: &Consumer,
    handler: &H,
    claim_after: Duration,
    count: u64,
) -> Result<(), WorkerError> {
    let stale = consumer.claim_stale(claim_after, count).await?;
    if stale.is_empty() {
        return Ok(());
    }
    tracing::info!(
        consumer = consumer.name(),
        count = stale.len(),
        "took over entries of a dead consumer"
    );
    handler.handle(stale).await
}

/// The wait after the `failures`-th failure in a row: 400 ms doubling to 6.4 s.
fn backoff(failures: u32) -> Duration {
    Duration::from_millis(200 * 2u64.pow(failures.clamp(1, MAX_BACKOFF_STEPS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(400));
        assert_eq!(backoff(2), Duration::from_millis(800));
        assert_eq!(backoff(5), Duration::from_millis(6_400));
        assert_eq!(backoff(50), Duration::from_millis(6_400));
    }
}
