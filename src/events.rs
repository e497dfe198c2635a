//! An organization's events, wherever they are: the operations behind the
//! event routes, free of HTTP.
//!
//! An accepted event is in its stream until the archiver writes it to
//! Postgres, and in Postgres after; reads and acknowledgements look in both,
//! so a client never sees the difference.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{
    domain::EventStatus,
    redis::RedisError,
    store::{AttemptRow, EventRow, InboxPage, InboxQuery, Store, StoreError},
    streams::{RetryQueue, StreamEntry, Unarchived},
    telemetry::TraceContext,
};

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("event not found")]
    NotFound,
    #[error("no enabled webhook: configure one with POST /api/webhook/config first")]
    NoWebhook,
    #[error("an event with status `{0}` has no delivery to replay yet")]
    NotReplayable(EventStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// Dead letters replayed by one call, and whether more are left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayedBatch {
    pub replayed: usize,
    pub has_more: bool,
}

#[derive(Clone)]
pub struct Events {
    store: Store,
    unarchived: Unarchived,
    retries: RetryQueue,
}

impl Events {
    pub fn new(store: Store, unarchived: Unarchived, retries: RetryQueue) -> Self {
        Self {
            store,
            unarchived,
            retries,
        }
    }

    /// One of the organization's events: from the archive, or from its
    /// stream when the archiver has not written it yet.
    pub async fn find(&self, organization_id: Uuid, id: Uuid) -> Result<EventRow, EventsError> {
        if let Some(row) = self.store.event(organization_id, id).await? {
            return Ok(row);
        }
        if let Some(event) = self.unarchived.get(organization_id, id).await? {
            return Ok(EventRow::queued(event));
        }
        // Archived between the two looks.
        self.store
            .event(organization_id, id)
            .await?
            .ok_or(EventsError::NotFound)
    }

    pub async fn inbox(&self, query: InboxQuery<'_>) -> Result<InboxPage, EventsError> {
        Ok(self.store.inbox(query).await?)
    }

    /// Marks the event consumed. Idempotent; an event not archived yet is
    /// archived now, already acknowledged.
    pub async fn acknowledge(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<EventRow, EventsError> {
        if let Some(row) = self.store.acknowledge(organization_id, id).await? {
            return Ok(row);
        }
        if let Some(event) = self.unarchived.get(organization_id, id).await? {
            return Ok(self.store.archive_acknowledged(&event).await?);
        }
        // Archived between the two looks.
        self.store
            .acknowledge(organization_id, id)
            .await?
            .ok_or(EventsError::NotFound)
    }

    /// Every delivery attempt of the event, oldest first.
    pub async fn attempts(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Vec<AttemptRow>, EventsError> {
        let attempts = self.store.attempts(organization_id, id).await?;
        if attempts.is_empty() {
            // No attempts yet, or no such event: tell the two apart.
            self.find(organization_id, id).await?;
        }
        Ok(attempts)
    }

    /// Sends a delivered, failed or dead-lettered event out again, as a new
    /// series of attempts; returns a quarantined event to the inbox.
    pub async fn replay(&self, organization_id: Uuid, id: Uuid) -> Result<(), EventsError> {
        // A quarantined event goes back to the inbox: it came from a pull
        // consumer, and needs no webhook.
        if self
            .store
            .unquarantine(organization_id, id)
            .await?
            .is_some()
        {
            return Ok(());
        }
        self.require_webhook(organization_id).await?;
        let rows = self.store.start_replay(organization_id, &[id]).await?;
        if rows.is_empty() {
            return Err(match self.store.event(organization_id, id).await? {
                Some(row) => EventsError::NotReplayable(row.status),
                None => EventsError::NotFound,
            });
        }
        self.queue_replays(&rows).await
    }

    /// Replays up to `batch` of the organization's dead letters (those
    /// dead-lettered at or after `since`, if given), oldest first.
    pub async fn replay_dead_letters(
        &self,
        organization_id: Uuid,
        since: Option<DateTime<Utc>>,
        batch: usize,
    ) -> Result<ReplayedBatch, EventsError> {
        self.require_webhook(organization_id).await?;
        let limit = i64::try_from(batch).unwrap_or(i64::MAX).saturating_add(1);
        let ids = self
            .store
            .dead_letter_ids(organization_id, since, limit)
            .await?;
        let has_more = ids.len() > batch;
        let ids = &ids[..ids.len().min(batch)];
        let rows = self.store.start_replay(organization_id, ids).await?;
        self.queue_replays(&rows).await?;
        Ok(ReplayedBatch {
            replayed: rows.len(),
            has_more,
        })
    }

    /// Replays need somewhere to go.
    async fn require_webhook(&self, organization_id: Uuid) -> Result<(), EventsError> {
        if self
            .store
            .webhook_targets(&[organization_id])
            .await?
            .is_empty()
        {
            return Err(EventsError::NoWebhook);
        }
        Ok(())
    }

    /// Queues the events for delivery now; their attempts belong to the
    /// trace of the replay request, not to the one that accepted them.
    async fn queue_replays(&self, rows: &[EventRow]) -> Result<(), EventsError> {
        let trace = TraceContext::current();
        for row in rows {
            let entry = StreamEntry {
                // Attempt numbers continue over every series.
                attempt: u32::try_from(row.attempts).unwrap_or(0) + 1,
                trace: trace.clone(),
                ..StreamEntry::new(row.record())
            };
            self.retries.queue_now(&entry).await?;
        }
        Ok(())
    }
}
