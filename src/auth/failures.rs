//! Failed key verifications counted in Redis, per key prefix and per
//! client address, so every replica refuses a guesser after the same
//! number of misses, without hashing anything more for it.
//!
//! Only requests that missed both caches are counted or refused: a key its
//! owner has used recently is answered from the cache and never reaches
//! this check, so a flood against its prefix does not lock the owner out.

use std::{net::IpAddr, time::Duration};

use fred::{prelude::*, types::scripts::Script};

use crate::redis::{Keys, RedisError};

/// Increments a fixed-window counter, starting its window on the first miss.
const COUNT_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
";

/// Which limit a refused attempt hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Prefix,
    Address,
}

impl Exceeded {
    pub fn as_str(self) -> &'static str {
        match self {
            Exceeded::Prefix => "prefix_failures",
            Exceeded::Address => "address_failures",
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
    script: Script,
}

impl Failures {
    pub fn new(pool: Pool, keys: Keys, limits: FailureLimits) -> Self {
        Self {
            pool,
            keys,
            limits,
            script: Script::from_lua(COUNT_LUA),
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

    /// Which limit, if any, this prefix or address has used up.
    pub async fn exceeded(
        &self,
        lookup: &str,
        address: Option<IpAddr>,
    ) -> Result<Option<Exceeded>, RedisError> {
        // One key at a time: the keys live in different Redis Cluster slots.
        for (key, limit, which) in self.counters(lookup, address) {
            let count: Option<u64> = self.pool.get(key).await?;
            if count.is_some_and(|c| c >= u64::from(limit)) {
                return Ok(Some(which));
            }
        }
        Ok(None)
    }

    /// Counts one failed verification against the prefix and the address.
    pub async fn record(&self, lookup: &str, address: Option<IpAddr>) -> Result<(), RedisError> {
        let window = Value::from(self.limits.window.as_millis().max(1) as i64);
        for (key, _, _) in self.counters(lookup, address) {
            let _: i64 = self
                .script
                .evalsha_with_reload(self.pool.next(), vec![key], vec![window.clone()])
                .await?;
        }
        Ok(())
    }
}
