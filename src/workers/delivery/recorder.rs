//! Writes delivery outcomes to Postgres in batches, then acknowledges their
//! stream entries: an entry is acknowledged only once its outcome is stored,
//! so a crash in between means a repeated attempt, never a forgotten one.

use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use crate::{
    store::{AttemptRow, EventOutcome, Store, StoreError},
    streams::{Consumer, Received},
    workers::outage::WaitOut,
};

/// Most outcomes written in one transaction.
const BATCH: usize = 500;
/// How long a first outcome waits for company before it is written.
const LINGER: Duration = Duration::from_millis(20);

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
    /// How an unreachable Postgres is waited out: until shutdown, after
    /// which what is not stored stays pending and is attempted again.
    wait_out: WaitOut,
}

impl Recorder {
    pub fn new(
        store: Store,
        consumer: Consumer,
        rx: mpsc::Receiver<Finished>,
        wait_out: WaitOut,
    ) -> Self {
        Self {
            store,
            consumer,
            rx,
            wait_out,
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

    /// Stores a batch, then acknowledges the entries whose outcomes are
    /// stored. A batch Postgres refuses is stored item by item, and a
    /// refused item is left unacknowledged (claimed and attempted again
    /// later) instead of blocking every other outcome behind it.
    async fn flush(&self, batch: &mut Vec<Finished>) {
        let all: Vec<&Finished> = batch.iter().collect();
        let stored: Vec<&Finished> = match self.store_retrying(&all).await {
            Ok(()) => all,
            Err(err) if err.is_outage() => {
                tracing::error!(error = %err, "Postgres is away at shutdown; outcomes stay pending");
                Vec::new()
            }
            Err(err) => {
                tracing::warn!(error = %err, "outcome batch refused; storing one by one");
                self.store_singly(all).await
            }
        };
        let handled: Vec<Received> = stored.iter().map(|f| f.received.clone()).collect();
        if let Err(err) = self.consumer.ack(&handled).await {
            // Unacknowledged entries are claimed again later: attempted twice, not lost.
            tracing::error!(error = %err, "cannot acknowledge delivered entries");
        }
        batch.clear();
    }

    /// The items Postgres accepts, stored one at a time.
    async fn store_singly<'a>(&self, items: Vec<&'a Finished>) -> Vec<&'a Finished> {
        let mut stored = Vec::with_capacity(items.len());
        for item in items {
            match self.store_retrying(&[item]).await {
                Ok(()) => stored.push(item),
                Err(err) if err.is_outage() => break,
                Err(err) => tracing::error!(
                    event_id = %item.received.entry.event.id,
                    error = %err,
                    "Postgres refuses this delivery outcome; its entry stays pending"
                ),
            }
        }
        stored
    }

    /// Writes the items' attempts, outcomes and webhook disables in one
    /// transaction, waiting out an unreachable Postgres; returns the error
    /// when Postgres refuses the data itself, or is still away at shutdown.
    async fn store_retrying(&self, items: &[&Finished]) -> Result<(), StoreError> {
        let Some(record) = Record::of(items) else {
            return Ok(());
        };
        self.wait_out
            .run("recording delivery outcomes", StoreError::is_outage, || {
                self.store.record_deliveries_and_disable(
                    &record.attempts,
                    &record.outcomes,
                    &record.disable,
                )
            })
            .await?;
        for (organization_id, reason) in &record.disable {
            tracing::warn!(%organization_id, reason, "webhook disabled");
        }
        Ok(())
    }
}

/// What one transaction writes for a set of finished entries.
#[derive(Debug, Default)]
struct Record {
    attempts: Vec<AttemptRow>,
    /// One row per event: the latest outcome wins within a batch.
    outcomes: Vec<EventOutcome>,
    /// One row per organization.
    disable: Vec<(Uuid, String)>,
}

impl Record {
    /// `None` when there is nothing to write (entries of pull consumers).
    fn of(items: &[&Finished]) -> Option<Self> {
        let mut record = Record {
            attempts: items.iter().filter_map(|f| f.attempt.clone()).collect(),
            ..Record::default()
        };
        for outcome in items.iter().filter_map(|f| f.outcome.clone()) {
            match record
                .outcomes
                .iter_mut()
                .find(|o| o.event.id == outcome.event.id)
            {
                Some(existing) if existing.attempts <= outcome.attempts => *existing = outcome,
                Some(_) => {}
                None => record.outcomes.push(outcome),
            }
        }
        for (organization_id, reason) in items.iter().filter_map(|f| f.disable_webhook.clone()) {
            if !record.disable.iter().any(|(id, _)| *id == organization_id) {
                record.disable.push((organization_id, reason));
            }
        }
        let empty =
            record.attempts.is_empty() && record.outcomes.is_empty() && record.disable.is_empty();
        (!empty).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        domain::{EventRecord, EventStatus, mint_event_id},
        streams::{StreamEntry, StreamKind},
    };

    fn finished(organization_id: Uuid, attempt: i32, gone: bool) -> Finished {
        let (id, created_at) = mint_event_id();
        let event = EventRecord {
            id,
            organization_id,
            event_type: "t".into(),
            dedup_id: None,
            payload: "{}".into(),
            created_at,
        };
        let outcome = EventOutcome {
            event: event.clone(),
            status: EventStatus::DeadLetter,
            attempts: attempt,
            last_error: Some("HTTP 410".into()),
            delivered_at: None,
            next_retry_at: None,
        };
        Finished {
            received: Received {
                shard: 0,
                stream: "s".into(),
                kind: StreamKind::Events,
                entry_id: "1-0".into(),
                entry: StreamEntry::new(event),
            },
            attempt: None,
            outcome: Some(outcome),
            disable_webhook: gone.then(|| (organization_id, "HTTP 410".to_owned())),
        }
    }

    #[test]
    fn a_disable_is_written_with_its_outcome_once_per_organization() {
        let org = Uuid::now_v7();
        let items = [finished(org, 1, true), finished(org, 1, true)];
        let record = Record::of(&items.iter().collect::<Vec<_>>()).expect("something to write");
        assert_eq!(record.outcomes.len(), 2);
        assert_eq!(record.disable, [(org, "HTTP 410".to_owned())]);

        let alone = finished(org, 1, true);
        let record = Record::of(&[&alone]).expect("something to write");
        assert_eq!(record.disable.len(), 1, "stored one by one, still together");
        assert_eq!(record.outcomes.len(), 1);
    }

    #[test]
    fn the_latest_outcome_of_an_event_wins_and_pull_entries_write_nothing() {
        let org = Uuid::now_v7();
        let first = finished(org, 1, false);
        let mut later = finished(org, 2, false);
        later.received.entry.event = first.received.entry.event.clone();
        if let Some(outcome) = later.outcome.as_mut() {
            outcome.event = first.received.entry.event.clone();
        }
        let record = Record::of(&[&later, &first]).expect("something to write");
        assert_eq!(record.outcomes.len(), 1);
        assert_eq!(record.outcomes[0].attempts, 2);

        let pull = Finished::ack_only(first.received.clone());
        assert!(Record::of(&[&pull]).is_none());
    }
}
