//! Writes delivery outcomes to Postgres in batches, then acknowledges their
//! stream entries: an entry is acknowledged only once its outcome is stored,
//! so a crash in between means a repeated attempt, never a forgotten one.

use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    store::{AttemptRow, EventOutcome, Store, StoreError},
    streams::{Consumer, Received},
};

/// Most outcomes written in one transaction.
const BATCH: usize = 500;
/// How long a first outcome waits for company before it is written.
const LINGER: Duration = Duration::from_millis(20);
/// Longest pause between retries while Postgres is unreachable, unless set.
const RETRY_MAX: Duration = Duration::from_secs(1);

/// What a delivery task hands over when it is done with an entry.
#[derive(Debug)]
pub struct Finished {
    pub received: Received,
    pub attempt: Option<AttemptRow>,
    pub outcome: Option<EventOutcome>,
    /// Set when the endpoint answered 410: the reason its webhook is disabled.
    pub disable_webhook: Option<(Uuid, String)>,
}

impl Finished {
    /// Nothing to record (e.g. the organization has no webhook): just acknowledge.
    pub fn ack_only(received: Received) -> Self {
        Self {
            received,
            attempt: None,
            outcome: None,
            disable_webhook: None,
        }
    }
}

pub struct Recorder {
    store: Store,
    consumer: Consumer,
    rx: mpsc::Receiver<Finished>,
    retry_max: Duration,
}

impl Recorder {
    pub fn new(store: Store, consumer: Consumer, rx: mpsc::Receiver<Finished>) -> Self {
        Self {
            store,
            consumer,
            rx,
            retry_max: RETRY_MAX,
        }
    }

    /// Caps the pause between retries while Postgres is unreachable: how
    /// late outcomes are stored after it returns.
    pub fn retrying_within(self, retry_max: Duration) -> Self {
        Self { retry_max, ..self }
    }

    /// Runs until every sender is gone and everything received is stored.
    pub async fn run(mut self) {
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = self.rx.recv().await {
            batch.push(first);
            let deadline = tokio::time::sleep(LINGER);
            tokio::pin!(deadline);
            while batch.len() < BATCH {
                tokio::select! {
                    () = &mut deadline => break,
                    next = self.rx.recv() => match next {
                        Some(next) => batch.push(next),
                        None => break,
                    },
                }
            }
            self.flush(&mut batch).await;
        }
    }

    /// Stores a batch, then acknowledges its entries. Unreachable Postgres
    /// is waited out: dropping the batch would lose outcomes. A batch
    /// Postgres refuses is stored item by item, and a refused item is left
    /// unacknowledged (claimed and attempted again later) instead of
    /// blocking every other outcome behind it.
    async fn flush(&self, batch: &mut Vec<Finished>) {
        // Before the outcomes: whoever sees an event dead-lettered by a 410
        // must also see its webhook disabled.
        for (organization_id, reason) in batch.iter().filter_map(|f| f.disable_webhook.clone()) {
            match self.store.disable_webhook(organization_id, &reason).await {
                Ok(()) => tracing::warn!(%organization_id, reason, "webhook disabled"),
                Err(err) => {
                    tracing::error!(%organization_id, error = %err, "cannot disable webhook")
                }
            }
        }
        let all: Vec<&Finished> = batch.iter().collect();
        let stored: Vec<&Finished> = match self.store_retrying(&all).await {
            Ok(()) => all,
            Err(err) => {
                tracing::warn!(error = %err, "outcome batch refused; storing one by one");
                let mut stored = Vec::with_capacity(all.len());
                for item in all {
                    match self.store_retrying(&[item]).await {
                        Ok(()) => stored.push(item),
                        Err(err) => tracing::error!(
                            event_id = %item.received.entry.event.id,
                            error = %err,
                            "Postgres refuses this delivery outcome; its entry stays pending"
                        ),
                    }
                }
                stored
            }
        };
        let handled: Vec<Received> = stored.iter().map(|f| f.received.clone()).collect();
        if let Err(err) = self.consumer.ack(&handled).await {
            // Unacknowledged entries are claimed again later: attempted twice, not lost.
            tracing::error!(error = %err, "cannot acknowledge delivered entries");
        }
        batch.clear();
    }

    /// Writes the items' attempts and outcomes, waiting out connectivity
    /// errors; returns the error when Postgres refuses the data itself.
    async fn store_retrying(&self, items: &[&Finished]) -> Result<(), StoreError> {
        let attempts: Vec<AttemptRow> = items.iter().filter_map(|f| f.attempt.clone()).collect();
        // One row per event: the latest outcome wins within a batch.
        let mut outcomes: Vec<EventOutcome> = Vec::new();
        for outcome in items.iter().filter_map(|f| f.outcome.clone()) {
            match outcomes.iter_mut().find(|o| o.event.id == outcome.event.id) {
                Some(existing) if existing.attempts <= outcome.attempts => *existing = outcome,
                Some(_) => {}
                None => outcomes.push(outcome),
            }
        }
        // Entries of pull consumers (no webhook) have nothing to record.
        if attempts.is_empty() && outcomes.is_empty() {
            return Ok(());
        }
        let mut backoff = Duration::from_millis(50).min(self.retry_max);
        loop {
            match self.store.record_deliveries(&attempts, &outcomes).await {
                Ok(()) => return Ok(()),
                Err(err @ StoreError::Unavailable(_)) => {
                    tracing::error!(error = %err, "cannot record delivery outcomes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.retry_max);
                }
                Err(err) => return Err(err),
            }
        }
    }
}
