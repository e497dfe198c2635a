//! Writes delivery outcomes to Postgres in batches, then acknowledges their
//! stream entries: an entry is acknowledged only once its outcome is stored,
//! so a crash in between means a repeated attempt, never a forgotten one.

use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    queue::{Consumer, Delivery},
    store::{AttemptRow, EventOutcome, Store},
};

/// Most outcomes written in one transaction.
const BATCH: usize = 500;
/// How long a first outcome waits for company before it is written.
const LINGER: Duration = Duration::from_millis(20);

/// What a delivery task hands over when it is done with an entry.
#[derive(Debug)]
pub struct Finished {
    pub delivery: Delivery,
    pub attempt: Option<AttemptRow>,
    pub outcome: Option<EventOutcome>,
    /// Set when the endpoint answered 410: the reason its webhook is disabled.
    pub disable_webhook: Option<(Uuid, String)>,
}

impl Finished {
    /// Nothing to record (e.g. the organization has no webhook): just acknowledge.
    pub fn ack_only(delivery: Delivery) -> Self {
        Self {
            delivery,
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
}

impl Recorder {
    pub fn new(store: Store, consumer: Consumer, rx: mpsc::Receiver<Finished>) -> Self {
        Self {
            store,
            consumer,
            rx,
        }
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

    /// Stores a batch, retrying until it is stored: dropping it would lose
    /// outcomes whose entries are already out of the stream's way.
    async fn flush(&self, batch: &mut Vec<Finished>) {
        let attempts: Vec<AttemptRow> = batch.iter().filter_map(|f| f.attempt.clone()).collect();
        // One row per event: the latest outcome wins within a batch.
        let mut outcomes: Vec<EventOutcome> = Vec::new();
        for outcome in batch.iter().filter_map(|f| f.outcome.clone()) {
            match outcomes.iter_mut().find(|o| o.event.id == outcome.event.id) {
                Some(existing) if existing.attempts <= outcome.attempts => *existing = outcome,
                Some(_) => {}
                None => outcomes.push(outcome),
            }
        }
        // Entries of pull consumers (no webhook) have nothing to record.
        if !(attempts.is_empty() && outcomes.is_empty()) {
            let mut backoff = Duration::from_millis(100);
            while let Err(err) = self.store.record_deliveries(&attempts, &outcomes).await {
                tracing::error!(error = %err, "cannot record delivery outcomes; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        for (organization_id, reason) in batch.iter().filter_map(|f| f.disable_webhook.clone()) {
            match self.store.disable_webhook(organization_id, &reason).await {
                Ok(()) => tracing::warn!(%organization_id, reason, "webhook disabled"),
                Err(err) => {
                    tracing::error!(%organization_id, error = %err, "cannot disable webhook")
                }
            }
        }
        let deliveries: Vec<Delivery> = batch.drain(..).map(|f| f.delivery).collect();
        if let Err(err) = self.consumer.ack(&deliveries).await {
            // Unacknowledged entries are claimed again later: attempted twice, not lost.
            tracing::error!(error = %err, "cannot acknowledge delivered entries");
        }
    }
}
