//! Removing events past their retention, in bounded batches.

use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::Tier;

impl Store {
    /// A page of organizations and their tiers, by id.
    pub async fn organization_tiers(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<(Uuid, Tier)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, tier FROM organizations WHERE ($1::uuid IS NULL OR id > $1)
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Deletes up to `batch` of the organization's delivered or
    /// acknowledged events with ids below `before`, with their attempts, in
    /// one short statement. Returns (events, attempts) deleted.
    pub async fn delete_finished_before(
        &self,
        organization_id: Uuid,
        before: Uuid,
        batch: u32,
    ) -> Result<(u64, u64), StoreError> {
        // Statuses are literals so the planner can see which rows qualify;
        // rows another sweeper is deleting are skipped, not waited for.
        let (events, attempts): (i64, i64) = sqlx::query_as(
            "WITH doomed AS (
                 SELECT id FROM events
                 WHERE organization_id = $1 AND id < $2
                       AND status IN ('delivered', 'acknowledged')
                 ORDER BY id LIMIT $3
                 FOR UPDATE SKIP LOCKED
             ), gone_attempts AS (
                 DELETE FROM delivery_attempts WHERE event_id IN (SELECT id FROM doomed)
                 RETURNING 1
             ), gone_events AS (
                 DELETE FROM events WHERE id IN (SELECT id FROM doomed)
                 RETURNING 1
             )
             SELECT (SELECT count(*) FROM gone_events), (SELECT count(*) FROM gone_attempts)",
        )
        .bind(organization_id)
        .bind(before)
        .bind(i64::from(batch))
        .fetch_one(&self.pool)
        .await?;
        Ok((events as u64, attempts as u64))
    }
}
