//! Who is calling: API key verification behind two caches.
//!
//! A presented key is looked up by its SHA-256 digest, first in this
//! process's memory (a second), then in Redis (a day by default), and only
//! then in Postgres, where the argon2id hash is checked. So argon2 runs once
//! per key per Redis lifetime, never per request. Rotating a key overwrites
//! its Redis entry with a rejection and announces the digest on a pub/sub
//! channel ([`revocation`]); every replica drops it from memory at once, and
//! drops everything after a reconnect, since it may have missed
//! announcements meanwhile. The memory TTL (a second) bounds the rest.
//!
//! The Redis lifetime is long because nothing but rotation makes a verified
//! key invalid, and rotation is explicit: a short lifetime would only buy
//! more argon2 (a core per ~20 re-verifications a second) and, during a
//! flood against a prefix, lock the real owner out once the entry expired.
//!
//! What reaches argon2 is bounded: a few hashing threads with a short queue
//! ([`hasher`]), and a count of failed verifications per key prefix and
//! per client address ([`failures`]) past which a miss is refused unhashed.

pub mod failures;
pub mod hasher;
pub mod keys;
pub mod revocation;

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use fred::{clients::SubscriberClient, prelude::*};
use moka::future::Cache;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use self::{
    failures::{Exceeded, Failures},
    hasher::{HashError, Hasher},
    revocation::Revocation,
};
use crate::{
    domain::OrgContext,
    metrics::labels::{AuthRefused, CounterLabel, LookupSource},
    redis::{Keys, RedisError},
    store::{Store, StoreError},
};

/// How long a key that failed verification is remembered, so a client
/// retrying with a revoked key cannot make us run argon2 on every request.
const REJECTED_TTL: Duration = Duration::from_secs(60);
const REJECTED: &str = "rejected";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    /// Too many failed verifications of this prefix or from this address.
    #[error("too many failed key verifications ({})", .0.as_str())]
    TooManyFailures(Exceeded, Duration),
    #[error("every key hashing thread is busy")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error("key verification failed: {0}")]
    Internal(String),
    /// A failure of a lookup that several requests were waiting on.
    #[error(transparent)]
    Shared(Arc<AuthError>),
}

#[derive(Clone)]
enum Cached {
    Valid(Arc<OrgContext>),
    Rejected,
}

/// What guards argon2, and how long a verdict is shared.
#[derive(Clone)]
pub struct Guards {
    pub hasher: Hasher,
    pub failures: Failures,
    /// How long Redis remembers a verified key.
    pub verified_ttl: Duration,
}

#[derive(Clone)]
pub struct Authenticator {
    store: Store,
    pool: Pool,
    keys: Keys,
    local: Cache<[u8; 32], Cached>,
    guards: Guards,
    revocation: Revocation,
}

impl Authenticator {
    pub fn new(store: Store, pool: Pool, keys: Keys, local_ttl: Duration, guards: Guards) -> Self {
        let local = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(local_ttl)
            .build();
        let revocation = Revocation::new(guards.verified_ttl, local_ttl);
        Self {
            store,
            pool,
            keys,
            local,
            guards,
            revocation,
        }
    }

    /// Hashes a new key on the bounded hashing threads.
    pub async fn new_key(&self) -> Result<keys::NewKey, AuthError> {
        self.guards
            .hasher
            .generate()
            .await
            .map_err(|err| match err {
                HashError::Busy => {
                    AuthRefused::Busy.count();
                    AuthError::Busy
                }
                other => AuthError::Internal(other.to_string()),
            })
    }

    /// The organization `presented` belongs to, or `AuthError::Invalid`.
    /// Concurrent first requests with the same key share one lookup, so a
    /// burst of them runs argon2 once, not once each. `client` is the
    /// caller's address, for counting its failures.
    pub async fn authenticate(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Arc<OrgContext>, AuthError> {
        let digest = keys::digest(presented);
        let loaded = AtomicBool::new(false);
        let cached = self
            .local
            .try_get_with(digest, async {
                loaded.store(true, Ordering::Relaxed);
                self.load(digest, presented, client).await
            })
            .await
            .map_err(AuthError::Shared)?;
        if !loaded.load(Ordering::Relaxed) {
            LookupSource::Memory.count();
        }
        match cached {
            Cached::Valid(org) => Ok(org),
            Cached::Rejected => Err(AuthError::Invalid),
        }
    }

    /// Redis, then Postgres and argon2; the outcome is shared through Redis.
    async fn load(
        &self,
        digest: [u8; 32],
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Cached, AuthError> {
        let redis_key = self.keys.api_key(&hex::encode(digest));
        let shared: Option<String> = self.pool.get(&redis_key).await.map_err(RedisError::from)?;
        if let Some(shared) = shared {
            LookupSource::Redis.count();
            return Ok(match serde_json::from_str::<OrgContext>(&shared) {
                Ok(org) => Cached::Valid(Arc::new(org)),
                Err(_) => Cached::Rejected,
            });
        }
        let (value, ttl, cached) = match self.verify_in_store(presented, client).await? {
            Some(org) => (
                serde_json::to_string(&org).map_err(|e| AuthError::Internal(e.to_string()))?,
                self.guards.verified_ttl,
                Cached::Valid(org),
            ),
            None => (REJECTED.to_owned(), REJECTED_TTL, Cached::Rejected),
        };
        // NX: a rotation that landed while we were verifying has written
        // its verdict already, and that verdict wins over ours.
        let written: Option<String> = self
            .pool
            .set(
                &redis_key,
                value,
                Some(Expiration::EX(ttl.as_secs().max(1) as i64)),
                Some(SetOptions::NX),
                false,
            )
            .await
            .map_err(RedisError::from)?;
        if written.is_some() {
            return Ok(cached);
        }
        let current: Option<String> = self.pool.get(&redis_key).await.map_err(RedisError::from)?;
        Ok(
            match current.map(|c| serde_json::from_str::<OrgContext>(&c)) {
                Some(Ok(org)) => Cached::Valid(Arc::new(org)),
                Some(Err(_)) => Cached::Rejected,
                None => cached,
            },
        )
    }

    /// Checks the key against Postgres and argon2, unless its prefix or
    /// the client has failed too often lately; a failure is counted.
    async fn verify_in_store(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Option<Arc<OrgContext>>, AuthError> {
        // Malformed keys cost nothing to refuse, so they are not counted.
        let Some(lookup) = keys::lookup_of(presented) else {
            return Ok(None);
        };
        let failures = &self.guards.failures;
        if let Some(exceeded) = failures.admit(lookup, client).await? {
            AuthRefused::from(exceeded).count();
            return Err(AuthError::TooManyFailures(exceeded, failures.window()));
        }
        // Counted here rather than on a cache miss: a malformed or refused
        // key queries nothing (refusals have their own counter).
        LookupSource::Database.count();
        let verified = match self.store.key_credentials(lookup).await? {
            Some(credentials) => {
                let matches = self
                    .guards
                    .hasher
                    .verify(presented, &credentials.key_hash)
                    .await
                    .map_err(|err| match err {
                        HashError::Busy => {
                            AuthRefused::Busy.count();
                            AuthError::Busy
                        }
                        other => AuthError::Internal(other.to_string()),
                    })?;
                matches.then(|| Arc::new(credentials.context()))
            }
            None => None,
        };
        if verified.is_some() {
            failures.forgive(lookup, client).await?;
        }
        Ok(verified)
    }

    /// Makes `presented` fail on every replica, this one at once.
    pub async fn forget(&self, presented: &str) -> Result<(), AuthError> {
        let digest = keys::digest(presented);
        self.revocation
            .revoke_digest(self.pool.next(), &self.keys, &hex::encode(digest))
            .await?;
        self.local.invalidate(&digest).await;
        Ok(())
    }

    /// Listens for revocations announced by any replica until `shutdown`.
    pub async fn listen_for_revocations(
        &self,
        subscriber: SubscriberClient,
        shutdown: CancellationToken,
    ) -> Result<(), RedisError> {
        let mut messages = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        let resubscriber = subscriber.manage_subscriptions();
        subscriber.subscribe(self.keys.api_key_channel()).await?;
        let local = self.local.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    message = messages.recv() => match message {
                        Ok(message) => {
                            let digest = message
                                .value
                                .as_string()
                                .and_then(|h| hex::decode(h).ok())
                                .and_then(|b| <[u8; 32]>::try_from(b).ok());
                            match digest {
                                Some(digest) => local.invalidate(&digest).await,
                                None => local.invalidate_all(),
                            }
                        }
                        // Lagged behind: what was missed is unknown.
                        Err(RecvError::Lagged(_)) => local.invalidate_all(),
                        Err(RecvError::Closed) => break,
                    },
                    _ = reconnects.recv() => local.invalidate_all(),
                }
            }
            resubscriber.abort();
            let _ = subscriber.quit().await;
        });
        Ok(())
    }
}
