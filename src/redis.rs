//! Redis connections, the key layout, and Redis's error type.
//!
//! Every key of one organization carries the hash tag of the stream shard the
//! organization belongs to (`<prefix>:{<shard>}:...`), so a script touching
//! an organization's rate limit, dedup key and stream works unchanged on
//! Redis Cluster.

use std::time::Duration;

use fred::prelude::*;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    // The cause is part of the message rather than a `source`, so a report
    // printing the whole chain does not repeat it.
    #[error("Redis command failed: {0}")]
    Command(fred::error::Error),
    #[error("unexpected Redis reply: {0}")]
    Reply(String),
    #[error(
        "Redis maxmemory-policy is `{0}`: it may evict keys, and an evicted stream entry is a lost \
         event; set it to noeviction (or a volatile-* policy)"
    )]
    EvictionPolicy(String),
}

impl RedisError {
    /// Redis is unreachable, or not serving for now (loading its data, a
    /// failover, a busy script, out of memory): worth waiting out, and a
    /// 503 for a client. Everything else (a script error, `WRONGTYPE`, a
    /// reply that does not parse, a bad configuration) is a bug that a
    /// retry would only repeat.
    pub fn is_outage(&self) -> bool {
        let RedisError::Command(err) = self else {
            return false;
        };
        use fred::error::ErrorKind as Kind;
        match err.kind() {
            Kind::IO
            | Kind::Timeout
            | Kind::Canceled
            | Kind::Cluster
            | Kind::Routing
            | Kind::Backpressure
            | Kind::Sentinel => true,
            // The server's own error replies: fred classifies few of them,
            // so the states that pass are recognised by their code.
            Kind::Unknown => {
                let code = err.details().split_whitespace().next().unwrap_or_default();
                SERVER_UNAVAILABLE.contains(&code)
            }
            _ => false,
        }
    }
}

/// Error codes of a Redis that is there but cannot serve until a state
/// passes.
const SERVER_UNAVAILABLE: &[&str] = &[
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "TRYAGAIN",
    "READONLY",
    "CLUSTERDOWN",
    "OOM",
];

impl From<fred::error::Error> for RedisError {
    fn from(err: fred::error::Error) -> Self {
        RedisError::Command(err)
    }
}

/// Builds an unconnected client configuration from a URL.
fn builder(url: &str) -> Result<Builder, RedisError> {
    builder_with_timeout(url, Duration::from_secs(10))
}

/// Like [`builder`], failing each command that has not been answered
/// within `command_timeout` (queued during a reconnect included).
fn builder_with_timeout(url: &str, command_timeout: Duration) -> Result<Builder, RedisError> {
    let config = Config::from_url(url)?;
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(5);
            c.internal_command_timeout = Duration::from_secs(5);
        })
        .with_performance_config(|p| {
            p.default_command_timeout = command_timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2));
    Ok(builder)
}

/// A pool for request-path commands; fails at once when Redis is unreachable.
pub async fn connect_pool(url: &str, size: usize) -> Result<Pool, RedisError> {
    let pool = builder(url)?.build_pool(size)?;
    pool.init().await?;
    Ok(pool)
}

/// A pool for the request path whose commands fail after `command_timeout`
/// while Redis is unreachable, so a client gets a prompt 503 instead of a
/// request held until Redis returns.
pub async fn connect_pool_bounded(
    url: &str,
    size: usize,
    command_timeout: Duration,
) -> Result<Pool, RedisError> {
    let pool = builder_with_timeout(url, command_timeout)?.build_pool(size)?;
    pool.init().await?;
    Ok(pool)
}

/// A dedicated connection, for blocking reads that must not stall the pool.
pub async fn connect_client(url: &str) -> Result<Client, RedisError> {
    let client = builder(url)?.build()?;
    client.init().await?;
    Ok(client)
}

/// A connection for pub/sub, resubscribed automatically after reconnects.
pub async fn connect_subscriber(url: &str) -> Result<fred::clients::SubscriberClient, RedisError> {
    let client = builder(url)?.build_subscriber_client()?;
    client.init().await?;
    Ok(client)
}

/// Whether Redis answers.
pub async fn ping(pool: &Pool) -> Result<(), RedisError> {
    let _: String = pool.ping(None).await?;
    Ok(())
}

/// Refuses a Redis that may evict keys. Managed Redis services that hide
/// `CONFIG` are let through with a warning: their policy is the operator's.
pub async fn check_eviction_policy(client: &Pool) -> Result<(), RedisError> {
    let reply: Result<Vec<String>, _> = client.config_get("maxmemory-policy").await;
    match reply {
        Ok(pair) => {
            let policy = pair.get(1).cloned().unwrap_or_default();
            if policy == "noeviction" || policy.starts_with("volatile-") {
                Ok(())
            } else {
                Err(RedisError::EvictionPolicy(policy))
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot read Redis maxmemory-policy; make sure it is noeviction");
            Ok(())
        }
    }
}

/// Names of every Redis key the service uses.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
    shards: u16,
}

impl Keys {
    pub fn new(prefix: &str, shards: u16) -> Self {
        Self {
            prefix: prefix.to_owned(),
            shards: shards.max(1),
        }
    }

    pub fn shards(&self) -> u16 {
        self.shards
    }

    /// The shard an organization's events and state live on. The low bits of
    /// a UUIDv7 are random, so organizations spread evenly.
    pub fn shard_of(&self, organization_id: Uuid) -> u16 {
        let low = organization_id.as_u64_pair().1;
        (low % u64::from(self.shards)) as u16
    }

    fn tagged(&self, shard: u16, rest: &str) -> String {
        format!("{}:{{{shard}}}:{rest}", self.prefix)
    }

    /// The stream of events accepted on a shard.
    pub fn stream(&self, shard: u16) -> String {
        self.tagged(shard, "events")
    }

    /// Event id -> stream entry id, for events not archived yet.
    pub fn unarchived_index(&self, shard: u16) -> String {
        self.tagged(shard, "unarchived")
    }

    /// Deliveries to (re)try now: due retries and replays.
    pub fn redeliver(&self, shard: u16) -> String {
        self.tagged(shard, "redeliver")
    }

    /// Scheduled retries: event id scored by when it is due (ms).
    pub fn retry_set(&self, shard: u16) -> String {
        self.tagged(shard, "retry")
    }

    /// What each scheduled retry will send: event id -> stream entry fields.
    pub fn retry_data(&self, shard: u16) -> String {
        self.tagged(shard, "retry-data")
    }

    /// Events whose every delivery attempt failed.
    pub fn dead_letters(&self, shard: u16) -> String {
        self.tagged(shard, "dead")
    }

    pub fn rate_limit(&self, organization_id: Uuid) -> String {
        self.tagged(
            self.shard_of(organization_id),
            &format!("rl:{organization_id}"),
        )
    }

    pub fn dedup(&self, organization_id: Uuid, dedup_id: &str) -> String {
        self.tagged(
            self.shard_of(organization_id),
            &format!("dedup:{organization_id}:{dedup_id}"),
        )
    }

    /// A verified API key, by the SHA-256 digest of the key.
    pub fn api_key(&self, digest_hex: &str) -> String {
        format!("{}:apikey:{digest_hex}", self.prefix)
    }

    /// Failed key verifications of one key prefix or client address.
    pub fn auth_failures(&self, kind: &str, subject: &str) -> String {
        format!("{}:authfail:{kind}:{subject}", self.prefix)
    }

    /// Channel on which key revocations are announced to every replica.
    pub fn api_key_channel(&self) -> String {
        format!("{}:apikey:revoked", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organizations_keys_share_one_hash_tag() {
        let keys = Keys::new("t", 16);
        let org = Uuid::now_v7();
        let tag = format!("{{{}}}", keys.shard_of(org));
        let stream = keys.stream(keys.shard_of(org));
        for key in [keys.rate_limit(org), keys.dedup(org, "x{y}"), stream] {
            assert_eq!(key.split(':').nth(1), Some(tag.as_str()), "{key}");
        }
    }

    #[test]
    fn only_an_unreachable_or_unready_redis_is_an_outage() {
        use fred::error::{Error, ErrorKind};
        let command = |kind, details: &'static str| RedisError::Command(Error::new(kind, details));
        for outage in [
            command(ErrorKind::IO, "connection refused"),
            command(ErrorKind::Timeout, "request timed out"),
            command(ErrorKind::Canceled, "canceled"),
            command(ErrorKind::Cluster, "CLUSTERDOWN The cluster is down"),
            command(ErrorKind::Backpressure, "max in flight"),
            command(ErrorKind::Unknown, "LOADING Redis is loading the dataset"),
            command(
                ErrorKind::Unknown,
                "READONLY You can't write against a replica",
            ),
        ] {
            assert!(outage.is_outage(), "{outage}");
        }
        for bug in [
            command(
                ErrorKind::InvalidArgument,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            ),
            command(
                ErrorKind::Unknown,
                "ERR Error running script: attempt to call nil",
            ),
            command(ErrorKind::Parse, "could not parse integer"),
            command(ErrorKind::Protocol, "unexpected frame"),
            command(ErrorKind::Auth, "WRONGPASS invalid username-password pair"),
            command(ErrorKind::NotFound, "nil"),
            RedisError::Reply("malformed".into()),
            RedisError::EvictionPolicy("allkeys-lru".into()),
        ] {
            assert!(!bug.is_outage(), "{bug}");
        }
    }

    #[test]
    fn organizations_spread_over_shards() {
        let keys = Keys::new("t", 4);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[usize::from(keys.shard_of(Uuid::now_v7()))] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
    }
}
