use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Store, StoreError};
use crate::domain::{OrgContext, Tier};

pub struct NewOrganization<'a> {
    pub name: &'a str,
    pub tier: Tier,
    pub key_lookup_prefix: &'a str,
    pub key_hash: &'a str,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrganizationRow {
    pub id: Uuid,
    pub name: String,
    pub tier: Tier,
    pub rate_limit_per_minute: i32,
    pub webhook_url: Option<String>,
    pub webhook_enabled: bool,
    pub webhook_disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: Uuid,
    pub lookup_prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What is needed to verify a presented key: its hash and whom it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct KeyCredentials {
    pub key_id: Uuid,
    pub key_hash: String,
    pub organization_id: Uuid,
    pub tier: Tier,
    pub rate_limit_per_minute: i32,
}

impl KeyCredentials {
    pub fn context(&self) -> OrgContext {
        OrgContext {
            organization_id: self.organization_id,
            key_id: self.key_id,
            tier: self.tier,
            rate_limit_per_minute: u32::try_from(self.rate_limit_per_minute).unwrap_or(0),
        }
    }
}

/// The columns of [`OrganizationRow`].
pub(super) const ORGANIZATION_COLUMNS: &str = "id, name, tier, rate_limit_per_minute, webhook_url, \
                                    webhook_enabled, webhook_disabled_reason, created_at";
/// The columns of [`ApiKeyRow`].
const API_KEY_COLUMNS: &str = "id, lookup_prefix, created_at, revoked_at";

impl Store {
    /// Creates an organization together with its first key, atomically.
    pub async fn create_organization(
        &self,
        new: NewOrganization<'_>,
    ) -> Result<(OrganizationRow, ApiKeyRow), StoreError> {
        let mut tx = self.pool.begin().await?;
        let org: OrganizationRow = sqlx::query_as(&format!(
            "INSERT INTO organizations (id, name, tier, rate_limit_per_minute)
             VALUES ($1, $2, $3, $4)
             RETURNING {ORGANIZATION_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(new.name)
        .bind(new.tier)
        .bind(i32::try_from(new.tier.requests_per_minute()).unwrap_or(i32::MAX))
        .fetch_one(&mut *tx)
        .await?;
        let key = insert_key(&mut tx, org.id, new.key_lookup_prefix, new.key_hash).await?;
        tx.commit().await?;
        Ok((org, key))
    }

    /// The live (not revoked) key with this lookup prefix, if any.
    pub async fn key_credentials(
        &self,
        lookup_prefix: &str,
    ) -> Result<Option<KeyCredentials>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT k.id AS key_id, k.key_hash, o.id AS organization_id, o.tier, o.rate_limit_per_minute
             FROM api_keys k JOIN organizations o ON o.id = k.organization_id
             WHERE k.lookup_prefix = $1 AND k.revoked_at IS NULL",
        )
        .bind(lookup_prefix)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn organization(&self, id: Uuid) -> Result<Option<OrganizationRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {ORGANIZATION_COLUMNS} FROM organizations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn api_keys(&self, organization_id: Uuid) -> Result<Vec<ApiKeyRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys
             WHERE organization_id = $1 ORDER BY created_at DESC, id DESC"
        ))
        .bind(organization_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Revokes `old_key` and adds a new key in one transaction. Returns `None`
    /// when `old_key` was already revoked (a concurrent rotation won).
    pub async fn rotate_key(
        &self,
        organization_id: Uuid,
        old_key: Uuid,
        lookup_prefix: &str,
        key_hash: &str,
    ) -> Result<Option<ApiKeyRow>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let revoked = sqlx::query(
            "UPDATE api_keys SET revoked_at = now()
             WHERE id = $1 AND organization_id = $2 AND revoked_at IS NULL",
        )
        .bind(old_key)
        .bind(organization_id)
        .execute(&mut *tx)
        .await?;
        if revoked.rows_affected() == 0 {
            return Ok(None);
        }
        let key = insert_key(&mut tx, organization_id, lookup_prefix, key_hash).await?;
        tx.commit().await?;
        Ok(Some(key))
    }
}

async fn insert_key(
    tx: &mut sqlx::PgConnection,
    organization_id: Uuid,
    lookup_prefix: &str,
    key_hash: &str,
) -> Result<ApiKeyRow, StoreError> {
    Ok(sqlx::query_as(&format!(
        "INSERT INTO api_keys (id, organization_id, lookup_prefix, key_hash)
         VALUES ($1, $2, $3, $4)
         RETURNING {API_KEY_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(organization_id)
    .bind(lookup_prefix)
    .bind(key_hash)
    .fetch_one(tx)
    .await?)
}
