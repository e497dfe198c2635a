//! Making the API replicas forget cached keys after an operator's change.
//!
//! Verified keys are cached in Redis under the SHA-256 of the key, which the
//! operator does not have; so the cache is scanned for entries of the key or
//! organization concerned. Each entry found is overwritten with a rejection
//! (anything that is not an organization context is one) or deleted, and its
//! digest is announced so every replica drops it from memory too.

use fred::prelude::*;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::{
    domain::OrgContext,
    redis::{Keys, RedisError},
};

/// What to do with the cached entries that match.
pub enum Forget {
    /// This key was revoked: refuse it everywhere.
    Key(Uuid),
    /// This organization changed (e.g. its tier): look it up again.
    Organization(Uuid),
}

/// How long a rejection stays cached: at least as long as the entry it replaces.
const REJECTION_TTL_SECS: i64 = 300;
/// Most cached keys looked at; the cache holds recently used keys only.
const MAX_SCANNED: usize = 1_000_000;

pub async fn forget(client: &Client, keys: &Keys, what: Forget) -> Result<usize, RedisError> {
    let pattern = keys.api_key("*");
    let mut found = if client.is_clustered() {
        client
            .scan_cluster_buffered(pattern, Some(500), None)
            .boxed()
    } else {
        client.scan_buffered(pattern, Some(500), None).boxed()
    };
    let prefix_len = keys.api_key("").len();
    let mut forgotten = 0;
    let mut scanned = 0;
    while let Some(key) = found.next().await {
        scanned += 1;
        if scanned > MAX_SCANNED {
            break;
        }
        let key = key?;
        let cached: Option<String> = client.get(&key).await?;
        let Some(org) = cached.and_then(|c| serde_json::from_str::<OrgContext>(&c).ok()) else {
            continue;
        };
        let matches = match what {
            Forget::Key(id) => org.key_id == id,
            Forget::Organization(id) => org.organization_id == id,
        };
        if !matches {
            continue;
        }
        match what {
            Forget::Key(_) => {
                let _: () = client
                    .set(
                        &key,
                        "revoked",
                        Some(Expiration::EX(REJECTION_TTL_SECS)),
                        None,
                        false,
                    )
                    .await?;
            }
            Forget::Organization(_) => {
                let _: i64 = client.del(&key).await?;
            }
        }
        let digest = key
            .as_str()
            .and_then(|k| k.get(prefix_len..))
            .unwrap_or_default()
            .to_owned();
        let _: i64 = client.publish(keys.api_key_channel(), digest).await?;
        forgotten += 1;
    }
    Ok(forgotten)
}
