//! Failed key verifications counted in Redis, per key prefix and per
//! client address, so every replica refuses a guesser after the same
//! number of misses, without hashing anything more for it.
//!
//! An attempt is counted before it is hashed and forgiven when the key
//! turns out valid: checking first and counting after would let every
//! request that passed the check before the first miss was counted hash
//! too, which under a flood is many more than the limit.
//!
//! Only requests that missed both caches are counted or refused: a key its
//! owner has used recently is answered from the cache and never reaches
//! this check, so a flood against its prefix does not lock the owner out.

use std::{net::IpAddr, time::Duration};

use fred::{prelude::*, types::scripts::Script};

use crate::{
    metrics::labels::{AuthRefused, CounterLabel},
    redis::{Keys, RedisError},
};

/// Increments a fixed-window counter, starting its window on the first miss.
const COUNT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// Takes one back, unless the window has ended meanwhile (a DECR then
/// would create a counter without an expiry).
const FORGIVE_LUA: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end
return 0
";

/// Which limit a refused attempt hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Prefix,
    Address,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        AuthRefused::from(self).as_str()
    }
}

impl From<Exceeded> for AuthRefused {
    fn from(exceeded: Exceeded) -> Self {
        match exceeded {
            Exceeded::Prefix => AuthRefused::PrefixFailures,
            Exceeded::Address => AuthRefused::AddressFailures,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct FailureLimits {
    pub per_prefix: u32,
    pub per_address: u32,
    pub window: Duration,
}

#[derive(Clone)]
pub struct Failures {
    pool: Pool,
    keys: Keys,
    limits: FailureLimits,
    count: Script,
    forgive: Script,
}

impl Failures {
    pub fn new(pool: Pool, keys: Keys, limits: FailureLimits) -> Self {
        Self {
            pool,
            keys,
            limits,
            count: Script::from_lua(COUNT_LUA),
            forgive: Script::from_lua(FORGIVE_LUA),
        }
    }

    pub fn window(&self) -> Duration {
        self.limits.window
    }

    fn counters(&self, lookup: &str, address: Option<IpAddr>) -> Vec<(String, u32, Exceeded)> {
        let mut counters = vec![(
            self.keys.auth_failures("prefix", lookup),
            self.limits.per_prefix,
            Exceeded::Prefix,
        )];
        if let Some(address) = address {
            counters.push((
                self.keys.auth_failures("address", &address.to_string()),
                self.limits.per_address,
                Exceeded::Address,
            ));
        }
        counters
    }

    /// Counts an attempt against the prefix and the address; says which
    /// limit, if any, it goes beyond (the attempt must then not be hashed).
    pub async fn admit(
        &self,
        lookup: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Exceeded>, RedisError> {
        let window = Value::from(self.limits.window.as_millis().max(1) as i64);
        // One key at a time: the keys live in different Redis Cluster slots.
        for (key, limit, which) in self.counters(lookup, address) {
            let count: i64 = self
                .count
                .evalsha_with_reload(self.pool.next(), vec![key], vec![window.clone()])
                .await?;
            if count > i64::from(limit) {
                return Ok(Some(which));
            }
        }
        Ok(None)
    }

    /// Takes back an admitted attempt whose key was valid: using one's own
    /// key is never a failure.
    pub async fn forgive(&self, lookup: &str, address: Option<IpAddr>) -> Result<(), RedisError> {
        for (key, _, _) in self.counters(lookup, address) {
            let _: i64 = self
                .forgive
                .evalsha_with_reload(self.pool.next(), vec![key], Vec::<Value>::new())
                .await?;
        }
        Ok(())
    }
}
