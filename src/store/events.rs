use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::{EventRecord, EventStatus};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EventRow {
    pub id: Uuid,
    pub organization_id: Uuid,
    #[sqlx(rename = "type")]
    pub event_type: String,
    pub dedup_id: Option<String>,
    pub payload: Value,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

pub(super) const EVENT_COLUMNS: &str = "id, organization_id, type, dedup_id, payload, status, attempts, \
                             last_error, created_at, delivered_at, acknowledged_at";

pub struct InboxQuery<'a> {
    pub organization_id: Uuid,
    pub statuses: &'a [EventStatus],
    /// Only events older than this one (the last event of the previous page).
    pub before: Option<Uuid>,
    pub limit: u32,
}

pub struct InboxPage {
    pub events: Vec<EventRow>,
    pub has_more: bool,
}

impl Store {
    /// Archives a batch of events in one statement. Events already archived
    /// (a batch replayed after a crash) are left as they are.
    pub async fn insert_events(&self, events: &[EventRecord]) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(events.len());
        let mut orgs = Vec::with_capacity(events.len());
        let mut types = Vec::with_capacity(events.len());
        let mut dedups = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        let mut created = Vec::with_capacity(events.len());
        for e in events {
            ids.push(e.id);
            orgs.push(e.organization_id);
            types.push(e.event_type.as_str());
            dedups.push(e.dedup_id.as_deref());
            payloads.push(e.payload.as_str());
            created.push(e.created_at);
        }
        let done = sqlx::query(
            "INSERT INTO events (id, organization_id, type, dedup_id, payload, created_at)
             SELECT id, org, t, d, p::jsonb, c
             FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
                  AS u(id, org, t, d, p, c)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&ids)
        .bind(&orgs)
        .bind(&types)
        .bind(&dedups)
        .bind(&payloads)
        .bind(&created)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn event(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EventRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1 AND organization_id = $2"
        ))
        .bind(id)
        .bind(organization_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn inbox(&self, query: InboxQuery<'_>) -> Result<InboxPage, StoreError> {
        let statuses: Vec<&str> = query.statuses.iter().map(|s| s.as_str()).collect();
        let mut events: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE organization_id = $1 AND status = ANY($2) AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(query.organization_id)
        .bind(&statuses)
        .bind(query.before)
        .bind(i64::from(query.limit) + 1)
        .fetch_all(&self.pool)
        .await?;
        let has_more = events.len() > query.limit as usize;
        events.truncate(query.limit as usize);
        Ok(InboxPage { events, has_more })
    }

    /// Marks an archived event acknowledged; `None` when the organization has
    /// no archived event with this id. Acknowledging twice changes nothing.
    pub async fn acknowledge(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EventRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE events SET status = 'acknowledged',
                    acknowledged_at = COALESCE(acknowledged_at, now()), updated_at = now()
             WHERE id = $1 AND organization_id = $2
             RETURNING {EVENT_COLUMNS}"
        ))
        .bind(id)
        .bind(organization_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Acknowledges an event the archiver has not written yet by writing it
    /// now, already acknowledged; the archiver's later insert then does nothing.
    pub async fn archive_acknowledged(&self, event: &EventRecord) -> Result<EventRow, StoreError> {
        Ok(sqlx::query_as(&format!(
            "INSERT INTO events (id, organization_id, type, dedup_id, payload, created_at,
                                 status, acknowledged_at)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6, 'acknowledged', now())
             ON CONFLICT (id) DO UPDATE SET status = 'acknowledged',
                    acknowledged_at = COALESCE(events.acknowledged_at, now()), updated_at = now()
             RETURNING {EVENT_COLUMNS}"
        ))
        .bind(event.id)
        .bind(event.organization_id)
        .bind(&event.event_type)
        .bind(&event.dedup_id)
        .bind(&event.payload)
        .bind(event.created_at)
        .fetch_one(&self.pool)
        .await?)
    }
}
