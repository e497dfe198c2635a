//! Webhook settings, delivery outcomes and attempts.

use std::collections::HashMap;

use chrono::{DateTime, Duration as Span, Utc};
use uuid::Uuid;

use super::{
    EventRow, Store, StoreError,
    events::{
        EVENT_COLUMNS, NEW_EVENT_ARRAYS, NEW_EVENT_COLUMNS, NEW_EVENT_FIELDS, NEW_EVENT_VALUES,
        NewEvents,
    },
};
use crate::{
    domain::{EventRecord, EventStatus},
    sealing::SealingError,
};

/// How long the previous signing secret still signs after a rotation.
pub const SECRET_ROTATION_GRACE_HOURS: i64 = 24;

/// Where and how to push an organization's events.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookTarget {
    pub organization_id: Uuid,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub webhook_secret_previous: Option<String>,
    pub webhook_secret_rotated_at: Option<DateTime<Utc>>,
}

impl WebhookTarget {
    /// The secrets to sign with: the current one, and the previous one
    /// during its grace period.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.webhook_secret.as_str()];
        if let (Some(previous), Some(rotated)) = (
            &self.webhook_secret_previous,
            self.webhook_secret_rotated_at,
        ) {
            if now - rotated < Span::hours(SECRET_ROTATION_GRACE_HOURS) {
                secrets.push(previous);
            }
        }
        secrets
    }
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub event_id: Uuid,
    pub attempt: i32,
    pub organization_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub response_status: Option<i32>,
    pub error: Option<String>,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// An event's delivery state after an attempt (or after giving up).
#[derive(Debug, Clone)]
pub struct EventOutcome {
    pub event: EventRecord,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Per organization with an enabled webhook: where to push its events, or
/// why its webhook cannot be used (a signing secret no configured key opens).
pub type WebhookTargets = HashMap<Uuid, Result<WebhookTarget, SealingError>>;

impl Store {
    /// The enabled webhooks of these organizations. One organization whose
    /// secret cannot be opened fails only its own entry, not the lookup.
    pub async fn webhook_targets(
        &self,
        organizations: &[Uuid],
    ) -> Result<WebhookTargets, StoreError> {
        let sealed: Vec<WebhookTarget> = sqlx::query_as(
            "SELECT id AS organization_id, webhook_url, webhook_secret, webhook_secret_previous,
                    webhook_secret_rotated_at
             FROM organizations
             WHERE id = ANY($1) AND webhook_enabled AND webhook_url IS NOT NULL
                   AND webhook_secret IS NOT NULL",
        )
        .bind(organizations)
        .fetch_all(&self.pool)
        .await?;
        let sealer = self.sealer.as_deref();
        Ok(sealed
            .into_iter()
            .map(|mut target| {
                let opened = sealer.ok_or(SealingError::NoKey).and_then(|sealer| {
                    let row = target.organization_id.as_bytes().to_vec();
                    target.webhook_secret = sealer.open(&target.webhook_secret, &row)?;
                    if let Some(previous) = &target.webhook_secret_previous {
                        target.webhook_secret_previous = Some(sealer.open(previous, &row)?);
                    }
                    Ok(())
                });
                (target.organization_id, opened.map(|()| target))
            })
            .collect())
    }

    /// Sets the webhook URL and (re-)enables it; creates the signing secret
    /// the first time. Returns the secret.
    pub async fn set_webhook(
        &self,
        organization_id: Uuid,
        url: &str,
        new_secret: &str,
    ) -> Result<String, StoreError> {
        let sealer = self.sealer()?;
        let row = organization_id.as_bytes();
        let stored: String = sqlx::query_scalar(
            "UPDATE organizations SET webhook_url = $2, webhook_enabled = TRUE,
                    webhook_secret = COALESCE(webhook_secret, $3),
                    webhook_disabled_reason = NULL, webhook_updated_at = now()
             WHERE id = $1 RETURNING webhook_secret",
        )
        .bind(organization_id)
        .bind(url)
        .bind(sealer.seal(new_secret, row)?)
        .fetch_one(&self.pool)
        .await?;
        Ok(sealer.open(&stored, row)?)
    }

    /// Replaces the signing secret, keeping the old one for the grace
    /// period. `None` when no webhook is configured.
    pub async fn rotate_webhook_secret(
        &self,
        organization_id: Uuid,
        new_secret: &str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let sealed = self
            .sealer()?
            .seal(new_secret, organization_id.as_bytes())?;
        Ok(sqlx::query_scalar(
            "UPDATE organizations SET webhook_secret_previous = webhook_secret,
                    webhook_secret = $2, webhook_secret_rotated_at = now(), webhook_updated_at = now()
             WHERE id = $1 AND webhook_secret IS NOT NULL
             RETURNING webhook_secret_rotated_at",
        )
        .bind(organization_id)
        .bind(sealed)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Writes a batch of attempts and the events' new states in one
    /// transaction. Events are upserted whole, since an outcome may arrive
    /// before the archiver has written the event; an older outcome never
    /// overwrites a newer one.
    pub async fn record_deliveries(
        &self,
        attempts: &[AttemptRow],
        outcomes: &[EventOutcome],
    ) -> Result<(), StoreError> {
        self.record_deliveries_and_disable(attempts, outcomes, &[])
            .await
    }

    /// [`Self::record_deliveries`], disabling the webhooks of `disable`
    /// (organization, reason) in the same transaction: whoever sees an event
    /// dead-lettered by a 410 also sees its webhook disabled, and an outcome
    /// is never stored (and its entry acknowledged) without the disable.
    pub async fn record_deliveries_and_disable(
        &self,
        attempts: &[AttemptRow],
        outcomes: &[EventOutcome],
        disable: &[(Uuid, String)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if !disable.is_empty() {
            disable_webhooks(&mut tx, disable).await?;
        }
        if !attempts.is_empty() {
            insert_attempts(&mut tx, attempts).await?;
        }
        if !outcomes.is_empty() {
            upsert_outcomes(&mut tx, outcomes).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn attempts(
        &self,
        organization_id: Uuid,
        event_id: Uuid,
    ) -> Result<Vec<AttemptRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT event_id, attempt, organization_id, attempted_at, duration_ms, response_status,
                    error, next_retry_at
             FROM delivery_attempts WHERE event_id = $1 AND organization_id = $2
             ORDER BY attempt",
        )
        .bind(event_id)
        .bind(organization_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Marks events queued again for a replay, returning those that were in
    /// a replayable state (delivered, failed or dead-lettered).
    pub async fn start_replay(
        &self,
        organization_id: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<EventRow>, StoreError> {
        Ok(sqlx::query_as(&format!(
            "UPDATE events SET status = $3, next_retry_at = NULL, updated_at = now()
             WHERE organization_id = $1 AND id = ANY($2) AND status = ANY($4)
             RETURNING {EVENT_COLUMNS}"
        ))
        .bind(organization_id)
        .bind(ids)
        .bind(EventStatus::Queued)
        .bind(&EventStatus::REPLAYABLE[..])
        .fetch_all(&self.pool)
        .await?)
    }

    /// Ids of an organization's dead-lettered events, oldest first. The
    /// status is spelt out, not bound: a generic plan could not match a
    /// parameter against the partial index `events_dead_letters`.
    pub async fn dead_letter_ids(
        &self,
        organization_id: Uuid,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<Uuid>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM events
             WHERE organization_id = $1 AND status = 'dead_letter'
                   AND ($2::timestamptz IS NULL OR updated_at >= $2)
             ORDER BY updated_at, id LIMIT $3",
        )
        .bind(organization_id)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

async fn disable_webhooks(tx: &mut Tx<'_>, disable: &[(Uuid, String)]) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE organizations SET webhook_enabled = FALSE, webhook_disabled_reason = d.reason,
                    webhook_updated_at = now()
             FROM UNNEST($1::uuid[], $2::text[]) AS d(id, reason)
             WHERE organizations.id = d.id",
    )
    .bind(disable.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(disable.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn insert_attempts(tx: &mut Tx<'_>, attempts: &[AttemptRow]) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO delivery_attempts (event_id, attempt, organization_id, attempted_at,
                    duration_ms, response_status, error, next_retry_at)
             SELECT * FROM UNNEST($1::uuid[], $2::int[], $3::uuid[], $4::timestamptz[],
                    $5::int[], $6::int[], $7::text[], $8::timestamptz[])
             ON CONFLICT (event_id, attempt) DO UPDATE SET
                    attempted_at = excluded.attempted_at, duration_ms = excluded.duration_ms,
                    response_status = excluded.response_status, error = excluded.error,
                    next_retry_at = excluded.next_retry_at",
    )
    .bind(attempts.iter().map(|a| a.event_id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.attempt).collect::<Vec<_>>())
    .bind(
        attempts
            .iter()
            .map(|a| a.organization_id)
            .collect::<Vec<_>>(),
    )
    .bind(attempts.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.duration_ms).collect::<Vec<_>>())
    .bind(
        attempts
            .iter()
            .map(|a| a.response_status)
            .collect::<Vec<_>>(),
    )
    .bind(attempts.iter().map(|a| a.error.clone()).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.next_retry_at).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Events are upserted whole, since an outcome may arrive before the
/// archiver has written the event; an older outcome never overwrites a
/// newer one.
async fn upsert_outcomes(tx: &mut Tx<'_>, outcomes: &[EventOutcome]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO events ({NEW_EVENT_COLUMNS}, status, attempts, last_error,
                    delivered_at, next_retry_at)
             SELECT {NEW_EVENT_VALUES}, s, a, e, da, nr
             FROM UNNEST({NEW_EVENT_ARRAYS}, $7::text[], $8::int[], $9::text[],
                    $10::timestamptz[], $11::timestamptz[])
                  AS u({NEW_EVENT_FIELDS}, s, a, e, da, nr)
             ON CONFLICT (id) DO UPDATE SET status = excluded.status,
                    attempts = excluded.attempts, last_error = excluded.last_error,
                    delivered_at = COALESCE(excluded.delivered_at, events.delivered_at),
                    next_retry_at = excluded.next_retry_at, updated_at = now()
             WHERE events.attempts <= excluded.attempts"
    );
    NewEvents::of(outcomes.iter().map(|o| &o.event))
        .bind(sqlx::query(&sql))
        .bind(outcomes.iter().map(|o| o.status).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.attempts).collect::<Vec<_>>())
        .bind(
            outcomes
                .iter()
                .map(|o| o.last_error.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(outcomes.iter().map(|o| o.delivered_at).collect::<Vec<_>>())
        .bind(outcomes.iter().map(|o| o.next_retry_at).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
