//! Bringing stored webhook signing secrets under the current key.

use uuid::Uuid;

use super::StoreError;
use crate::sealing::{Sealer, SealingError};

/// Rows looked at per round, so a large table is resealed in bounded steps.
const CHUNK: i64 = 500;

/// Seals every secret still in plaintext (rows from before encryption) or
/// sealed with a key other than the current one (after a key rotation).
pub(super) async fn reseal_all(
    conn: &mut sqlx::PgConnection,
    sealer: &Sealer,
) -> Result<u64, StoreError> {
    let mut resealed = 0u64;
    let mut unreadable = 0u64;
    let mut after = Uuid::nil();
    let current = sealer.current_prefix();
    loop {
        // Only rows needing work come back, so a start with nothing to do
        // costs one query. (`left` rather than LIKE: `_` in a key id is a
        // LIKE wildcard.)
        let rows: Vec<(Uuid, Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT id, webhook_secret, webhook_secret_previous FROM organizations
             WHERE id > $1
               AND (left(webhook_secret, length($3)) <> $3
                    OR left(webhook_secret_previous, length($3)) <> $3)
             ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(CHUNK)
        .bind(&current)
        .fetch_all(&mut *conn)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        for (id, current, previous) in rows {
            let stale = |v: &Option<String>| v.as_deref().is_some_and(|v| !sealer.is_current(v));
            if !stale(&current) && !stale(&previous) {
                continue;
            }
            let row = id.as_bytes();
            let reseal = |v: Option<String>| -> Result<Option<String>, SealingError> {
                v.map(|v| sealer.seal(&sealer.open(&v, row)?, row))
                    .transpose()
            };
            // A row no configured key opens stays as it is: its webhook
            // cannot be signed until the key is configured again, but every
            // other organization is served.
            let (new_current, new_previous) = match (
                reseal(current.clone()),
                reseal(previous.clone()),
            ) {
                (Ok(c), Ok(p)) => (c, p),
                (Err(err), _) | (_, Err(err)) => {
                    tracing::error!(organization_id = %id, error = %err, "cannot reseal a webhook secret");
                    unreadable += 1;
                    continue;
                }
            };
            // Only if unchanged since read: a concurrent rotation wins.
            sqlx::query(
                "UPDATE organizations SET webhook_secret = $2, webhook_secret_previous = $3
                 WHERE id = $1 AND webhook_secret IS NOT DISTINCT FROM $4
                       AND webhook_secret_previous IS NOT DISTINCT FROM $5",
            )
            .bind(id)
            .bind(new_current)
            .bind(new_previous)
            .bind(current)
            .bind(previous)
            .execute(&mut *conn)
            .await?;
            resealed += 1;
        }
    }
    if resealed > 0 || unreadable > 0 {
        tracing::info!(
            resealed,
            unreadable,
            "webhook signing secrets sealed with the current key"
        );
    }
    Ok(resealed)
}
