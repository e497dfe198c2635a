//! Queries of the operator's command line: across organizations, by id.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    ApiKeyRow, EventRow, OrganizationRow, Store, StoreError, events::EVENT_COLUMNS,
    organizations::ORGANIZATION_COLUMNS,
};
use crate::domain::Tier;

/// An organization's dead letters.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct DeadLetterStats {
    pub organization_id: Uuid,
    pub organization_name: String,
    pub dead_letters: i64,
    pub oldest: Option<DateTime<Utc>>,
    pub newest: Option<DateTime<Utc>>,
}

/// A key, revoked or not, and whose it is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyOwner {
    pub key_id: Uuid,
    pub organization_id: Uuid,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Organizations, oldest first.
    pub async fn organizations(&self, limit: i64) -> Result<Vec<OrganizationRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations ORDER BY created_at, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Moves an organization to another tier, with that tier's rate limit.
    pub async fn set_tier(
        &self,
        organization_id: Uuid,
        tier: Tier,
    ) -> Result<Option<OrganizationRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE organizations SET tier = $2, rate_limit_per_minute = $3 WHERE id = $1
             RETURNING {ORGANIZATION_COLUMNS}"
        ))
        .bind(organization_id)
        .bind(tier)
        .bind(i32::try_from(tier.requests_per_minute()).unwrap_or(i32::MAX))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Revokes the key with this lookup prefix (idempotent); `None` when
    /// there is no such key.
    pub async fn revoke_key(&self, lookup_prefix: &str) -> Result<Option<KeyOwner>, StoreError> {
        Ok(sqlx::query_as(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE lookup_prefix = $1
             RETURNING id AS key_id, organization_id, revoked_at",
        )
        .bind(lookup_prefix)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Keys of every organization, or of one.
    pub async fn keys_of(
        &self,
        organization_id: Option<Uuid>,
    ) -> Result<Vec<(Uuid, ApiKeyRow)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            organization_id: Uuid,
            #[sqlx(flatten)]
            key: ApiKeyRow,
        }
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT organization_id, id, lookup_prefix, created_at, revoked_at FROM api_keys
             WHERE $1::uuid IS NULL OR organization_id = $1
             ORDER BY organization_id, created_at DESC",
        )
        .bind(organization_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.organization_id, r.key))
            .collect())
    }

    /// An event of any organization.
    pub async fn event_by_id(&self, id: Uuid) -> Result<Option<EventRow>, StoreError> {
        Ok(
            sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Dead letters per organization, most first.
    pub async fn dead_letter_stats(&self) -> Result<Vec<DeadLetterStats>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT e.organization_id, o.name AS organization_name, count(*) AS dead_letters,
                    min(e.updated_at) AS oldest, max(e.updated_at) AS newest
             FROM events e JOIN organizations o ON o.id = e.organization_id
             WHERE e.status = 'dead_letter'
             GROUP BY e.organization_id, o.name ORDER BY dead_letters DESC, e.organization_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}
