//! The archiver: moves accepted events from the streams into Postgres.
//!
//! Each pass reads up to a batch of new entries (waiting at most a second),
//! writes them with one `INSERT … ON CONFLICT DO NOTHING`, drops them from
//! the index of unarchived events, and only then acknowledges them. A crash
//! anywhere in between leaves the entries pending; they are claimed again
//! after the visibility timeout and archived once, since the insert is
//! idempotent on the event id.

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{ARCHIVE_ERRORS, ARCHIVE_LAG, EVENTS_ARCHIVED},
    queue::{Consumer, Delivery, Queue},
    redis::RedisError,
    store::{Store, StoreError},
};

/// The consumer group of the archivers.
pub const GROUP: &str = "archive";
const READ_BLOCK: Duration = Duration::from_secs(1);
// Frequent trims keep each one small, so none stalls Redis noticeably.
const TRIM_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

pub struct Archiver {
    store: Store,
    queue: Queue,
    consumer: Consumer,
    batch: u64,
    visibility_timeout: Duration,
}

impl Archiver {
    pub fn new(
        store: Store,
        queue: Queue,
        consumer: Consumer,
        batch: u64,
        visibility_timeout: Duration,
    ) -> Self {
        Self {
            store,
            queue,
            consumer,
            batch: batch.max(1),
            visibility_timeout,
        }
    }

    /// Archives new entries as they arrive, until `shutdown`. The batch in
    /// hand is always finished (or left pending for another archiver), never
    /// dropped half-done.
    pub async fn run(self, shutdown: CancellationToken) {
        let claim_every = (self.visibility_timeout / 2).max(Duration::from_secs(1));
        let mut last_claim: Option<Instant> = None;
        let mut last_trim = Instant::now();
        let mut failures = 0u32;
        tracing::info!(consumer = self.consumer.name(), "archiver started");
        while !shutdown.is_cancelled() {
            let mut outcome = Ok(0);
            if last_claim.is_none_or(|t| t.elapsed() >= claim_every) {
                last_claim = Some(Instant::now());
                outcome = self.archive_stale().await;
            }
            if outcome.is_ok() {
                outcome = self.archive_new(READ_BLOCK).await;
            }
            if last_trim.elapsed() >= TRIM_EVERY {
                last_trim = Instant::now();
                if let Err(err) = self.consumer.trim().await {
                    tracing::warn!(error = %err, "stream trim failed");
                }
            }
            match outcome {
                Ok(_) => failures = 0,
                Err(err) => {
                    failures = failures.saturating_add(1);
                    metrics::counter!(ARCHIVE_ERRORS).increment(1);
                    tracing::error!(error = %err, "archive pass failed; entries stay pending");
                    let backoff = Duration::from_millis(200 * 2u64.pow(failures.min(5)));
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
            }
        }
        tracing::info!(consumer = self.consumer.name(), "archiver stopped");
    }

    /// One pass over new entries; returns how many were archived.
    pub async fn archive_new(&self, block: Duration) -> Result<usize, ArchiveError> {
        let deliveries = self.consumer.read_new(self.batch, block).await?;
        self.archive(&deliveries).await
    }

    /// Archives entries a dead archiver left pending past the visibility timeout.
    pub async fn archive_stale(&self) -> Result<usize, ArchiveError> {
        let deliveries = self
            .consumer
            .claim_stale(self.visibility_timeout, self.batch)
            .await?;
        if !deliveries.is_empty() {
            tracing::info!(
                count = deliveries.len(),
                "reclaimed entries of a dead consumer"
            );
        }
        self.archive(&deliveries).await
    }

    async fn archive(&self, deliveries: &[Delivery]) -> Result<usize, ArchiveError> {
        if deliveries.is_empty() {
            return Ok(0);
        }
        let records: Vec<_> = deliveries.iter().map(|d| d.event.clone()).collect();
        let archived = match self.store.insert_events(&records).await {
            Ok(_) => deliveries.to_vec(),
            // One row Postgres refuses fails the whole statement: archive
            // the others one by one rather than let it hold them all back.
            Err(StoreError::Query(err)) => {
                tracing::warn!(error = %err, "batch refused; archiving its events one by one");
                self.archive_singly(deliveries).await?
            }
            Err(err) => return Err(err.into()),
        };
        self.queue.forget_unarchived(&archived).await?;
        self.consumer.ack(&archived).await?;
        let now = Utc::now();
        for delivery in &archived {
            let lag = (now - delivery.event.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!(ARCHIVE_LAG).record(lag);
        }
        metrics::counter!(EVENTS_ARCHIVED).increment(archived.len() as u64);
        Ok(archived.len())
    }

    /// The entries Postgres accepts, inserted one at a time. A refused entry
    /// is left pending, never acknowledged: it stays in its stream, visible
    /// in `XPENDING` and the error log, instead of being dropped.
    async fn archive_singly(&self, deliveries: &[Delivery]) -> Result<Vec<Delivery>, ArchiveError> {
        let mut archived = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match self
                .store
                .insert_events(std::slice::from_ref(&delivery.event))
                .await
            {
                Ok(_) => archived.push(delivery.clone()),
                Err(StoreError::Query(err)) => {
                    metrics::counter!(ARCHIVE_ERRORS).increment(1);
                    tracing::error!(
                        event_id = %delivery.event.id,
                        entry_id = delivery.entry_id,
                        error = %err,
                        "Postgres refuses this event; it stays pending in its stream"
                    );
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(archived)
    }
}
