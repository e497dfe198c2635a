//! Per-organization request limits, exact across replicas.
//!
//! The state is one GCRA timestamp per organization in Redis, updated by a
//! script against Redis's clock, so replicas never disagree and a burst is
//! bounded by one period's allowance however many replicas it is spread over.
//! Ingestion runs the same GCRA inside its own script (see `queue`), so an
//! event costs one round trip.

use std::time::Duration;

use fred::{prelude::*, types::scripts::Script};

use crate::{
    domain::OrgContext,
    redis::{Keys, RedisError},
};

/// The period limits are expressed over.
pub const PERIOD: Duration = Duration::from_secs(60);

pub const GCRA_LUA: &str = include_str!("gcra.lua");

/// An organization's allowance after one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub limit: u32,
    pub remaining: u32,
    /// Until the allowance is whole again.
    pub reset_after: Duration,
    /// Set when the request was refused: when the next one will be admitted.
    pub retry_after: Option<Duration>,
}

impl RateLimit {
    /// Reads the `remaining, reset_ms, retry_after_ms` triple the scripts return.
    pub(crate) fn from_reply(
        limit: u32,
        allowed: bool,
        fields: &[Value],
    ) -> Result<Self, RedisError> {
        let int = |i: usize| {
            fields
                .get(i)
                .and_then(Value::as_i64)
                .map(|v| u64::try_from(v).unwrap_or(0))
                .ok_or_else(|| RedisError::Reply(format!("rate-limit field {i} missing")))
        };
        Ok(Self {
            limit,
            remaining: u32::try_from(int(0)?).unwrap_or(u32::MAX),
            reset_after: Duration::from_millis(int(1)?),
            retry_after: (!allowed).then(|| Duration::from_millis(int(2).unwrap_or(0).max(1))),
        })
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    pool: Pool,
    keys: Keys,
    script: Script,
}

impl RateLimiter {
    pub fn new(pool: Pool, keys: Keys) -> Self {
        let script = Script::from_lua(format!("{GCRA_LUA}\n{}", include_str!("limit.lua")));
        Self { pool, keys, script }
    }

    /// Counts one request of `org`.
    pub async fn check(&self, org: &OrgContext) -> Result<RateLimit, RedisError> {
        let reply: Vec<Value> = self
            .script
            .evalsha_with_reload(
                self.pool.next(),
                vec![self.keys.rate_limit(org.organization_id)],
                vec![
                    Value::from(i64::from(org.rate_limit_per_minute.max(1))),
                    Value::from(PERIOD.as_millis() as i64),
                ],
            )
            .await?;
        let allowed = reply.first().and_then(Value::as_i64) == Some(1);
        RateLimit::from_reply(
            org.rate_limit_per_minute,
            allowed,
            reply.get(1..).unwrap_or(&[]),
        )
    }
}
