//! The archiver: moves accepted events from the streams into Postgres.
//!
//! Each batch is written with one `INSERT … ON CONFLICT DO NOTHING`, dropped
//! from the index of unarchived events, and only then acknowledged. A crash
//! anywhere in between leaves the entries pending; they are taken over
//! after the visibility timeout and archived once, since the insert is
//! idempotent on the event id. While Postgres is unreachable the archiver
//! keeps the batch in hand and retries it with a short back-off, so the
//! backlog moves as soon as Postgres answers, not a visibility timeout later.
//!
//! A batch is first written as new rows, which costs Postgres less than an
//! insert that checks each row for a conflict (28 against 33 µs of CPU a
//! row in `bench/archive_ceiling.sh`). Events
//! are already archived only after a crash, or when the delivery recorder
//! wrote an event's row first; a batch that meets one is written again with
//! the conflict check, which the next batches keep for [`CONFLICTS_LAST`],
//! since such rows come in runs (a busy webhook's outcomes).

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span, field::Empty};

use super::{Backends, Handler, Settings, WorkerError, consume, outage::WaitOut};
use crate::{
    config::{ArchiveSettings, ConsumerSettings, OutageSettings},
    domain::EventRecord,
    metrics::{ARCHIVE_ERRORS, ARCHIVE_LAG, EVENTS_ARCHIVED},
    partitions,
    redis::RedisError,
    store::{Store, StoreError},
    streams::{Consumer, Received, StreamKind, Unarchived},
};

/// The consumer group of the archivers.
pub const GROUP: &str = "archive";

pub struct Archiver {
    store: Store,
    unarchived: Unarchived,
    consumer: Consumer,
    settings: Settings,
    /// Longest pause between retries of a write while Postgres is away.
    store_retry_max: Duration,
    /// How an unreachable Postgres is waited out (until shutdown).
    wait_out: WaitOut,
    /// When a batch last met an archived event.
    last_conflict: Mutex<Option<Instant>>,
}

/// How long batches are written with the conflict check after one met an
/// archived event.
const CONFLICTS_LAST: Duration = Duration::from_secs(10);

/// How long a standby archiver waits after a read that found no backlog
/// (see `Settings::standby`).
const STANDBY: Duration = Duration::from_millis(250);

impl Archiver {
    /// Archiver `n` (from 0) of this process. The first takes what
    /// arrives; the others stand by and join in while a backlog lasts.
    pub async fn join(
        n: u16,
        backends: &Backends,
        archive: &ArchiveSettings,
        consumers: &ConsumerSettings,
        outages: &OutageSettings,
    ) -> Result<Self, RedisError> {
        // The first keeps the process's name, so entries it held before a
        // restart are its own again at once.
        let name = match n {
            0 => consumers.name(),
            n => format!("{}-archiver-{n}", consumers.name()),
        };
        let consumer = backends.join(&[StreamKind::Events], GROUP, &name).await?;
        Ok(Self {
            store: backends.store.clone(),
            unarchived: Unarchived::new(backends.pool.clone(), backends.keys.clone()),
            consumer,
            settings: Settings {
                batch: archive.archive_batch,
                claim_after: consumers.visibility_timeout,
                standby: (n > 0).then_some(STANDBY),
            },
            store_retry_max: outages.store_retry_max,
            wait_out: WaitOut::new(outages.store_retry_max, CancellationToken::new()),
            last_conflict: Mutex::new(None),
        })
    }

    /// Archives entries as they arrive, until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.wait_out = WaitOut::new(self.store_retry_max, shutdown.clone());
        tracing::info!(consumer = self.consumer.name(), "archiver started");
        consume(&self.consumer, &self, self.settings, &shutdown).await;
        tracing::info!(consumer = self.consumer.name(), "archiver stopped");
    }

    async fn archive(&self, batch: Vec<Received>) -> Result<(), WorkerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let events: Vec<&EventRecord> = batch.iter().map(|r| &r.entry.event).collect();
        let mut inserted = self.insert_retrying(&events).await;
        if inserted
            .as_ref()
            .is_err_and(StoreError::is_missing_partition)
        {
            // A month without its partition (a clock far ahead, maintenance
            // failing for months): create it, then try once more.
            let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.id).collect();
            match partitions::cover(&self.store, &ids).await {
                Ok(created) => {
                    if created > 0 {
                        tracing::warn!(created, "archive partitions created for a refused batch");
                    }
                    inserted = self.insert_retrying(&events).await;
                }
                Err(err) => tracing::warn!(error = %err, "cannot create archive partitions"),
            }
        }
        let archived = match inserted {
            Ok(_) => batch,
            // One row Postgres refuses fails the whole statement: archive
            // the others one by one rather than let it hold them all back.
            Err(StoreError::Query(err)) => {
                tracing::warn!(error = %err, "batch refused; archiving its events one by one");
                self.archive_singly(batch).await?
            }
            Err(err) => return Err(err.into()),
        };
        self.unarchived.forget(&archived).await?;
        self.consumer.ack(&archived).await?;
        let now = Utc::now();
        for received in &archived {
            let lag = (now - received.entry.event.created_at)
                .num_milliseconds()
                .max(0) as f64
                / 1000.0;
            metrics::histogram!(ARCHIVE_LAG).record(lag);
        }
        metrics::counter!(EVENTS_ARCHIVED).increment(archived.len() as u64);
        Ok(())
    }

    /// Inserts `events`, waiting out an unreachable Postgres (until
    /// shutdown) with a back-off capped at `store_retry_max`.
    async fn insert_retrying(&self, events: &[&EventRecord]) -> Result<(), StoreError> {
        self.wait_out
            .run("archiving a batch", StoreError::is_outage, || async {
                let inserted = self.insert(events).await;
                if inserted.as_ref().is_err_and(StoreError::is_outage) {
                    metrics::counter!(ARCHIVE_ERRORS).increment(1);
                }
                inserted
            })
            .await
    }

    /// Inserts `events` as new rows unless a batch met an archived event
    /// lately; with the conflict check otherwise, or when they meet one.
    async fn insert(&self, events: &[&EventRecord]) -> Result<(), StoreError> {
        let lately = |at: &Option<Instant>| at.is_some_and(|t| t.elapsed() < CONFLICTS_LAST);
        let checked = lately(&self.last_conflict.lock().unwrap_or_else(|p| p.into_inner()));
        if !checked {
            match self.store.insert_new_events(events).await {
                Err(err) if err.is_conflict() => {
                    *self.last_conflict.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Instant::now());
                }
                other => return other.map(drop),
            }
        }
        self.store.insert_events(events).await.map(drop)
    }

    /// The entries Postgres accepts, inserted one at a time. A refused entry
    /// is left pending, never acknowledged: it stays in its stream, visible
    /// in `XPENDING` and the error log, instead of being dropped.
    async fn archive_singly(&self, batch: Vec<Received>) -> Result<Vec<Received>, WorkerError> {
        let mut archived = Vec::with_capacity(batch.len());
        for received in batch {
            match self.store.insert_events(&[&received.entry.event]).await {
                Ok(_) => archived.push(received),
                Err(StoreError::Query(err)) => {
                    metrics::counter!(ARCHIVE_ERRORS).increment(1);
                    tracing::error!(
                        event_id = %received.entry.event.id,
                        entry_id = received.entry_id,
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

impl Handler for Archiver {
    async fn handle(&self, batch: Vec<Received>) -> Result<(), WorkerError> {
        if batch.is_empty() {
            return Ok(());
        }
        let span = span_of(&batch);
        let archived = self.archive(batch).instrument(span.clone()).await;
        if archived.is_err() {
            metrics::counter!(ARCHIVE_ERRORS).increment(1);
            span.record("otel.status_code", "ERROR");
        }
        archived
    }
}

/// One span per batch, in a trace of its own (a batch mixes many requests'
/// events), linked to the request that accepted each event.
fn span_of(batch: &[Received]) -> Span {
    let span = tracing::info_span!(
        "archive batch",
        otel.kind = "consumer",
        otel.status_code = Empty,
        messaging.batch.message_count = batch.len(),
    );
    for received in batch {
        if let Some(trace) = &received.entry.trace {
            trace.link(&span);
        }
    }
    span
}
