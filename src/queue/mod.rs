//! Event streams: how an accepted event is stored, and how workers read it.
//!
//! # Layout
//!
//! Organizations are spread over `TRIGGERS_STREAM_SHARDS` shards. Each shard
//! has one stream (`<prefix>:{<shard>}:events`) holding the events accepted
//! for its organizations, and one hash (`<prefix>:{<shard>}:unarchived`)
//! mapping the id of each event not yet in Postgres to its stream entry, so
//! `GET /api/events/{id}` can answer before the archiver has run.
//!
//! # Accepting
//!
//! `ingest.lua` runs the rate limit, the 24 h dedup check, `XADD` and the
//! index update as one script: either all happen or the event is refused.
//! The API answers 202 only after the script returned, i.e. once Redis holds
//! the entry (with AOF on, it survives a Redis restart too).
//!
//! # Consuming
//!
//! Every kind of worker has its own consumer group on every shard stream
//! (`archive` for the Postgres archiver), and each process its own consumer
//! name (`<host or pod>-<pid>`) so `XPENDING` shows who holds what. Entries
//! are read with `XREADGROUP`, acknowledged with `XACK` only after their work
//! is durable, and entries idle longer than the visibility timeout in the
//! pending list of a consumer that died are taken over with `XAUTOCLAIM`.
//! Streams are trimmed (`XTRIM MINID`) only below the oldest entry some group
//! has not acknowledged, so no group ever misses an entry.

mod consumer;
pub(crate) mod entry;

use fred::{prelude::*, types::scripts::Script};
use uuid::Uuid;

pub use consumer::{Consumer, Delivery, StreamKind};

use crate::{
    domain::{DEDUP_WINDOW_SECS, EventRecord, OrgContext},
    ratelimit::{GCRA_LUA, PERIOD, RateLimit},
    redis::{Keys, RedisError},
};

/// What Redis decided about an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Accepted,
    /// The `dedup_id` was used by this event within the dedup window.
    Duplicate {
        original_id: String,
    },
    RateLimited,
}

#[derive(Clone)]
pub struct Queue {
    pool: Pool,
    keys: Keys,
    ingest: Script,
}

impl Queue {
    pub fn new(pool: Pool, keys: Keys) -> Self {
        let ingest = Script::from_lua(format!("{GCRA_LUA}\n{}", include_str!("ingest.lua")));
        Self { pool, keys, ingest }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Rate-limits, dedups and enqueues one event in a single round trip.
    pub async fn enqueue(
        &self,
        org: &OrgContext,
        event: &EventRecord,
    ) -> Result<(Admission, RateLimit), RedisError> {
        let shard = self.keys.shard_of(org.organization_id);
        let rate_key = self.keys.rate_limit(org.organization_id);
        let dedup_key = match &event.dedup_id {
            Some(dedup) => self.keys.dedup(org.organization_id, dedup),
            None => rate_key.clone(),
        };
        let keys = vec![
            rate_key,
            dedup_key,
            self.keys.stream(shard),
            self.keys.pending_index(shard),
        ];
        let mut args: Vec<Value> = vec![
            i64::from(org.rate_limit_per_minute.max(1)).into(),
            (PERIOD.as_millis() as i64).into(),
            (DEDUP_WINDOW_SECS as i64).into(),
            if event.dedup_id.is_some() { "1" } else { "0" }.into(),
            event.id.to_string().into(),
        ];
        args.extend(entry::to_fields(event));

        let reply: Vec<Value> = self
            .ingest
            .evalsha_with_reload(self.pool.next(), keys, args)
            .await?;
        let outcome = reply.first().and_then(Value::as_i64);
        let rest = reply.get(1..).unwrap_or(&[]);
        let limit = RateLimit::from_reply(org.rate_limit_per_minute, outcome != Some(0), rest)?;
        let admission = match outcome {
            Some(1) => Admission::Accepted,
            Some(2) => Admission::Duplicate {
                original_id: rest
                    .get(3)
                    .and_then(Value::as_string)
                    .ok_or_else(|| RedisError::Reply("duplicate without original id".into()))?,
            },
            Some(0) => Admission::RateLimited,
            other => return Err(RedisError::Reply(format!("ingest outcome {other:?}"))),
        };
        Ok((admission, limit))
    }

    /// An event of `organization_id` that is in its stream but not archived yet.
    pub async fn unarchived(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EventRecord>, RedisError> {
        let shard = self.keys.shard_of(organization_id);
        let entry_id: Option<String> = self
            .pool
            .hget(self.keys.pending_index(shard), id.to_string())
            .await?;
        let Some(entry_id) = entry_id else {
            return Ok(None);
        };
        let entries: Vec<(String, std::collections::HashMap<String, String>)> = self
            .pool
            .xrange(
                self.keys.stream(shard),
                entry_id.as_str(),
                entry_id.as_str(),
                Some(1),
            )
            .await?;
        let Some((_, fields)) = entries.into_iter().next() else {
            return Ok(None);
        };
        let event = entry::from_fields(&fields)?;
        // Never let one organization read another's event, even by id.
        Ok((event.organization_id == organization_id).then_some(event))
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let _: String = self.pool.ping(None).await?;
        Ok(())
    }
}

impl Queue {
    /// Drops archived events from the index of unarchived ones.
    pub async fn forget_unarchived(&self, deliveries: &[Delivery]) -> Result<(), RedisError> {
        for (shard, ids) in consumer::group_by(deliveries, |d| d.shard, |d| d.event.id.to_string())
        {
            let _: i64 = self.pool.hdel(self.keys.pending_index(shard), ids).await?;
        }
        Ok(())
    }
}
