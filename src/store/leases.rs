//! Leases of inbox events for pull consumers.
//!
//! A lease is no table of its own: the events it holds carry its id and
//! expiry. Handing events out is one `UPDATE` over rows picked with
//! `FOR UPDATE SKIP LOCKED`, so two consumers leasing at the same moment, on
//! any replicas, lock disjoint rows; a row another transaction has just
//! leased and committed is re-checked against its new expiry and dropped.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{EventRow, Store, StoreError, events::EVENT_COLUMNS};
use crate::domain::EventStatus;

/// What a lease asks for.
pub struct LeaseQuery<'a> {
    pub organization_id: Uuid,
    pub lease_id: Uuid,
    pub limit: u32,
    pub lease_seconds: u32,
    pub event_type: Option<&'a str>,
    /// An event already leased this many times is quarantined instead of
    /// being leased again.
    pub max_leases: u32,
}

/// The rows one lease statement touched.
pub struct LeasedRows {
    /// Handed out under the lease.
    pub leased: Vec<EventRow>,
    /// Quarantined instead: they had been leased too many times.
    pub quarantined: usize,
    /// When the lease ends (Postgres's clock, shared by every replica);
    /// `None` when nothing was leased.
    pub leased_until: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct LeasedRow {
    #[sqlx(flatten)]
    event: EventRow,
    leased_until: Option<DateTime<Utc>>,
}

/// `EventStatus::LEASABLE`, spelt out: a generic plan can only use the
/// partial index `events_leasable` when the statuses are literals.
const LEASABLE_SQL: &str = "('queued', 'failed', 'dead_letter')";

impl Store {
    /// Leases up to `limit` of the organization's leasable events, oldest
    /// first, quarantining instead those leased `max_leases` times already.
    pub async fn lease_events(&self, query: LeaseQuery<'_>) -> Result<LeasedRows, StoreError> {
        debug_assert_eq!(
            LEASABLE_SQL,
            format!(
                "({})",
                EventStatus::LEASABLE
                    .map(|s| format!("'{}'", s.as_str()))
                    .join(", ")
            )
        );
        let rows: Vec<LeasedRow> = sqlx::query_as(&format!(
            "WITH picked AS (
                 SELECT id AS picked_id, lease_count >= $5 AS spent FROM events
                 WHERE organization_id = $1 AND status IN {LEASABLE_SQL}
                       AND (leased_until IS NULL OR leased_until <= now())
                       AND ($2::text IS NULL OR type = $2)
                 ORDER BY id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE events SET
                 status = CASE WHEN spent THEN $7 ELSE status END,
                 lease_count = lease_count + CASE WHEN spent THEN 0 ELSE 1 END,
                 lease_id = CASE WHEN spent THEN NULL ELSE $4 END,
                 leased_until = CASE WHEN spent THEN NULL
                                     ELSE now() + make_interval(secs => $6) END,
                 updated_at = now()
             FROM picked WHERE id = picked_id
             RETURNING {EVENT_COLUMNS}, leased_until"
        ))
        .bind(query.organization_id)
        .bind(query.event_type)
        .bind(i64::from(query.limit))
        .bind(query.lease_id)
        .bind(i32::try_from(query.max_leases).unwrap_or(i32::MAX))
        .bind(f64::from(query.lease_seconds))
        .bind(EventStatus::Quarantined)
        .fetch_all(&self.pool)
        .await?;
        let mut leased = Vec::with_capacity(rows.len());
        let mut quarantined = 0;
        let mut leased_until = None;
        for row in rows {
            if row.event.status == EventStatus::Quarantined {
                quarantined += 1;
            } else {
                leased_until = leased_until.or(row.leased_until);
                leased.push(row.event);
            }
        }
        // UPDATE … RETURNING gives no order; consumers expect oldest first.
        leased.sort_by_key(|e| e.id);
        Ok(LeasedRows {
            leased,
            quarantined,
            leased_until,
        })
    }

    /// Acknowledges events the lease still holds (all of them, or those of
    /// `ids`); returns the ids acknowledged. An expired lease whose events
    /// nobody has leased since still holds them.
    pub async fn ack_leased(
        &self,
        organization_id: Uuid,
        lease_id: Uuid,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE events SET status = $4, acknowledged_at = COALESCE(acknowledged_at, now()),
                    lease_id = NULL, leased_until = NULL, updated_at = now()
             WHERE organization_id = $1 AND lease_id = $2 AND ($3::uuid[] IS NULL OR id = ANY($3))
             RETURNING id",
        )
        .bind(organization_id)
        .bind(lease_id)
        .bind(ids)
        .bind(EventStatus::Acknowledged)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ends the lease of events it still holds, making them available at
    /// once; the lease still counts towards quarantine. Returns their ids.
    pub async fn release_leased(
        &self,
        organization_id: Uuid,
        lease_id: Uuid,
        ids: Option<&[Uuid]>,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE events SET lease_id = NULL, leased_until = NULL, updated_at = now()
             WHERE organization_id = $1 AND lease_id = $2 AND ($3::uuid[] IS NULL OR id = ANY($3))
             RETURNING id",
        )
        .bind(organization_id)
        .bind(lease_id)
        .bind(ids)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Returns a quarantined event to the inbox with a clean lease count;
    /// `None` when the organization has no quarantined event with this id.
    pub async fn unquarantine(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EventRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE events SET status = $3, lease_count = 0, lease_id = NULL, leased_until = NULL,
                    updated_at = now()
             WHERE organization_id = $1 AND id = $2 AND status = $4
             RETURNING {EVENT_COLUMNS}"
        ))
        .bind(organization_id)
        .bind(id)
        .bind(EventStatus::Queued)
        .bind(EventStatus::Quarantined)
        .fetch_optional(&self.pool)
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spelt_out_statuses_are_the_leasable_ones() {
        let quoted = EventStatus::LEASABLE.map(|s| format!("'{}'", s.as_str()));
        assert_eq!(LEASABLE_SQL, format!("({})", quoted.join(", ")));
    }
}
