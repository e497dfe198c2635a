//! Making every replica refuse a revoked key, or look an organization's
//! keys up again: the one place the API's rotation and the operator's
//! command line change what the key caches hold.
//!
//! A verified key is cached in Redis under the SHA-256 of the key, and for
//! a moment in each replica's memory. A revoked key's Redis entry is
//! overwritten with a marker rather than deleted, so a replica verifying the
//! key at that very moment cannot write it back as valid (that write is
//! `NX`), and its digest is announced so every replica drops it from memory.
//!
//! The API's rotation holds the key, so it marks the key's digest directly.
//! The operator has only the key's id, so the command line scans the cache
//! for entries of that key. Both write the same marker for the same time.

use std::time::Duration;

use fred::prelude::*;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::{
    domain::OrgContext,
    redis::{Keys, RedisError},
};

/// What a revoked key's Redis entry holds. Anything that is not an
/// organization context is a rejection to the replicas reading it.
pub const REVOKED: &str = "revoked";

/// Floor of a marker's lifetime: a verification that read the key's row
/// before the revocation may still be hashing, and its verdict must find
/// the marker in place when it is written.
const IN_FLIGHT: Duration = Duration::from_secs(300);

/// Most cached keys looked at by a scan; the cache holds recently used keys only.
const MAX_SCANNED: usize = 1_000_000;

/// How a revoked key is marked: the one decision both revocation paths use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    ttl: Duration,
}

impl Revocation {
    /// A marker outliving every cache that may hold the key as valid:
    /// Redis's verified entries (`verified_ttl`) and each replica's memory
    /// (`in_memory_ttl`). A marker shorter than the verified lifetime would
    /// let a verdict written just after it expired keep the key for a day.
    pub fn new(verified_ttl: Duration, in_memory_ttl: Duration) -> Self {
        Self {
            ttl: verified_ttl.max(in_memory_ttl).max(IN_FLIGHT),
        }
    }

    /// How long the marker stays in Redis.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks the key cached under `digest_hex` revoked and tells every
    /// replica to drop it from memory.
    pub async fn revoke_digest(
        &self,
        client: &Client,
        keys: &Keys,
        digest_hex: &str,
    ) -> Result<(), RedisError> {
        let seconds = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let _: () = client
            .set(
                keys.api_key(digest_hex),
                REVOKED,
                Some(Expiration::EX(seconds.max(1))),
                None,
                false,
            )
            .await?;
        announce(client, keys, digest_hex).await
    }

    /// Revokes every cached entry of the key `key_id`; returns how many.
    pub async fn revoke_key_id(
        &self,
        client: &Client,
        keys: &Keys,
        key_id: Uuid,
    ) -> Result<usize, RedisError> {
        let mut revoked = 0;
        for digest in cached_digests(client, keys, |org| org.key_id == key_id).await? {
            self.revoke_digest(client, keys, &digest).await?;
            revoked += 1;
        }
        Ok(revoked)
    }
}

/// Drops every cached key of `organization_id` (e.g. after a tier change,
/// since entries carry the tier and limit), so the next request looks it
/// up again; returns how many.
pub async fn forget_organization(
    client: &Client,
    keys: &Keys,
    organization_id: Uuid,
) -> Result<usize, RedisError> {
    let digests =
        cached_digests(client, keys, |org| org.organization_id == organization_id).await?;
    for digest in &digests {
        let _: i64 = client.del(keys.api_key(digest)).await?;
        announce(client, keys, digest).await?;
    }
    Ok(digests.len())
}

async fn announce(client: &Client, keys: &Keys, digest_hex: &str) -> Result<(), RedisError> {
    let _: i64 = client.publish(keys.api_key_channel(), digest_hex).await?;
    Ok(())
}

/// Digests of the keys cached as valid whose organization context matches.
async fn cached_digests(
    client: &Client,
    keys: &Keys,
    matches: impl Fn(&OrgContext) -> bool,
) -> Result<Vec<String>, RedisError> {
    let pattern = keys.api_key("*");
    let mut found = if client.is_clustered() {
        client
            .scan_cluster_buffered(pattern, Some(500), None)
            .boxed()
    } else {
        client.scan_buffered(pattern, Some(500), None).boxed()
    };
    let prefix_len = keys.api_key("").len();
    let mut digests = Vec::new();
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
        if let (true, Some(digest)) = (
            matches(&org),
            key.as_str().and_then(|k| k.get(prefix_len..)),
        ) {
            digests.push(digest.to_owned());
        }
    }
    Ok(digests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_outlives_every_cache_of_the_key() {
        let day = Duration::from_secs(86_400);
        let second = Duration::from_secs(1);
        assert_eq!(Revocation::new(day, second).ttl(), day);
        // Short cache lifetimes still leave room for verifications in flight.
        assert_eq!(Revocation::new(second, second).ttl(), IN_FLIGHT);
        let long_memory = Duration::from_secs(3_600);
        assert_eq!(Revocation::new(second, long_memory).ttl(), long_memory);
    }
}
