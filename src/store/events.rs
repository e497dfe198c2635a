use chrono::{DateTime, Utc};
use sqlx::{Postgres, postgres::PgArguments, query::Query};
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
    /// The payload as Postgres prints it: JSON, passed through as is, since
    /// its numbers may exceed what an f64 holds.
    pub payload: String,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// How many times a lease has handed the event out.
    pub lease_count: i32,
}

impl EventRow {
    /// An accepted event not archived yet, as the archive will show it.
    pub fn queued(event: EventRecord) -> Self {
        Self {
            id: event.id,
            organization_id: event.organization_id,
            payload: event.payload,
            event_type: event.event_type,
            dedup_id: event.dedup_id,
            status: EventStatus::Queued,
            attempts: 0,
            last_error: None,
            created_at: event.created_at,
            delivered_at: None,
            acknowledged_at: None,
            lease_count: 0,
        }
    }

    /// The event as it was accepted, e.g. to send it again.
    pub fn record(&self) -> EventRecord {
        EventRecord {
            id: self.id,
            organization_id: self.organization_id,
            event_type: self.event_type.clone(),
            dedup_id: self.dedup_id.clone(),
            payload: self.payload.clone(),
            created_at: self.created_at,
        }
    }
}

/// The columns of [`EventRow`], as every query returns them.
pub(super) const EVENT_COLUMNS: &str = "id, organization_id, type, dedup_id, \
                                        payload::text AS payload, status, \
                                        attempts, last_error, created_at, delivered_at, \
                                        acknowledged_at, lease_count";

/// What an accepted event brings to its row, as parallel arrays bound to
/// `$1`…`$6` and unnested: inserting a batch costs one statement.
/// `NEW_EVENT_*` are the SQL around them, so every insert of events names
/// the same columns in the same order.
pub(super) struct NewEvents<'a> {
    ids: Vec<Uuid>,
    organizations: Vec<Uuid>,
    types: Vec<&'a str>,
    dedups: Vec<Option<&'a str>>,
    payloads: Vec<&'a str>,
    created: Vec<DateTime<Utc>>,
}

/// The columns [`NewEvents`] fills.
pub(super) const NEW_EVENT_COLUMNS: &str =
    "id, organization_id, type, dedup_id, payload, created_at";
/// The arrays of [`NewEvents`], unnested; continue with `$7` and name the
/// result `u(NEW_EVENT_FIELDS, ...)`.
pub(super) const NEW_EVENT_ARRAYS: &str =
    "$1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[]";
pub(super) const NEW_EVENT_FIELDS: &str = "id, org, t, d, p, c";
/// The row values of [`NEW_EVENT_COLUMNS`] from the unnested fields.
pub(super) const NEW_EVENT_VALUES: &str = "id, org, t, d, p::jsonb, c";

impl<'a> NewEvents<'a> {
    pub(super) fn of(events: impl ExactSizeIterator<Item = &'a EventRecord>) -> Self {
        let n = events.len();
        let mut arrays = Self {
            ids: Vec::with_capacity(n),
            organizations: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            dedups: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
        };
        for e in events {
            arrays.ids.push(e.id);
            arrays.organizations.push(e.organization_id);
            arrays.types.push(e.event_type.as_str());
            arrays.dedups.push(e.dedup_id.as_deref());
            arrays.payloads.push(e.payload.as_str());
            arrays.created.push(e.created_at);
        }
        arrays
    }

    pub(super) fn bind(
        self,
        query: Query<'a, Postgres, PgArguments>,
    ) -> Query<'a, Postgres, PgArguments> {
        query
            .bind(self.ids)
            .bind(self.organizations)
            .bind(self.types)
            .bind(self.dedups)
            .bind(self.payloads)
            .bind(self.created)
    }
}

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
    /// (a batch replayed after a crash, or rows the delivery recorder wrote
    /// first) are left as they are.
    pub async fn insert_events(&self, events: &[&EventRecord]) -> Result<u64, StoreError> {
        self.insert_events_with(events, "ON CONFLICT (id) DO NOTHING")
            .await
    }

    /// Archives a batch none of whose events should be in the table yet:
    /// [`StoreError::is_conflict`] when one is, and then nothing is written.
    /// Postgres spends less per row on it than on [`Store::insert_events`],
    /// which checks every row for a conflict.
    pub async fn insert_new_events(&self, events: &[&EventRecord]) -> Result<u64, StoreError> {
        self.insert_events_with(events, "").await
    }

    async fn insert_events_with(
        &self,
        events: &[&EventRecord],
        on_conflict: &str,
    ) -> Result<u64, StoreError> {
        if events.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "INSERT INTO events ({NEW_EVENT_COLUMNS})
             SELECT {NEW_EVENT_VALUES} FROM UNNEST({NEW_EVENT_ARRAYS}) AS u({NEW_EVENT_FIELDS})
             {on_conflict}"
        );
        let done = NewEvents::of(events.iter().copied())
            .bind(sqlx::query(&sql))
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
        let mut events: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events
             WHERE organization_id = $1 AND status = ANY($2) AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(query.organization_id)
        .bind(query.statuses)
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
            "UPDATE events SET status = $3,
                    acknowledged_at = COALESCE(acknowledged_at, now()), updated_at = now(),
                    lease_id = NULL, leased_until = NULL
             WHERE id = $1 AND organization_id = $2
             RETURNING {EVENT_COLUMNS}"
        ))
        .bind(id)
        .bind(organization_id)
        .bind(EventStatus::Acknowledged)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Acknowledges an event the archiver has not written yet by writing it
    /// now, then acknowledging it; the archiver's later insert does nothing.
    pub async fn archive_acknowledged(&self, event: &EventRecord) -> Result<EventRow, StoreError> {
        self.insert_events(&[event]).await?;
        self.acknowledge(event.organization_id, event.id)
            .await?
            .ok_or_else(|| StoreError::Query(sqlx::Error::RowNotFound))
    }
}
