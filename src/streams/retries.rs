//! Where deliveries wait to be tried again: a sorted set per shard scored by
//! due time (not a sleeping task, so nothing is lost when a worker
//! restarts), moved to the shard's redelivery stream when due; and the
//! dead-letter stream of deliveries given up on.
//!
//! When to retry is the delivery worker's decision (its retry policy); this
//! type only stores it. Every method derives the shard from the event.

use std::time::Duration;

use fred::{prelude::*, types::scripts::Script};

use super::{StreamEntry, entry};
use crate::{
    domain::EventRecord,
    redis::{Keys, RedisError},
};

/// Most entries of dead-letter streams kept in Redis; Postgres keeps them all.
const DEAD_LETTER_MAXLEN: i64 = 100_000;

/// What waits in one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSizes {
    pub shard: u16,
    /// Retries in the retry set, not due yet.
    pub scheduled: u64,
    /// Entries of the dead-letter stream.
    pub dead_letters: u64,
}

#[derive(Clone)]
pub struct RetryQueue {
    pool: Pool,
    keys: Keys,
    script: Script,
}

impl RetryQueue {
    pub fn new(pool: Pool, keys: Keys) -> Self {
        Self {
            pool,
            keys,
            script: Script::from_lua(include_str!("retries.lua")),
        }
    }

    fn keys_of(&self, shard: u16) -> Vec<String> {
        vec![
            self.keys.retry_set(shard),
            self.keys.retry_data(shard),
            self.keys.redeliver(shard),
        ]
    }

    fn shard_of(&self, event: &EventRecord) -> u16 {
        self.keys.shard_of(event.organization_id)
    }

    /// Queues `entry` for delivery after `delay`. A later schedule of the
    /// same event replaces an earlier one.
    pub async fn schedule(&self, entry: &StreamEntry, delay: Duration) -> Result<(), RedisError> {
        let _: i64 = self
            .script
            .evalsha_with_reload(
                self.pool.next(),
                self.keys_of(self.shard_of(&entry.event)),
                vec![
                    "schedule".to_owned(),
                    (delay.as_millis() as u64).to_string(),
                    entry.event.id.to_string(),
                    as_json(entry)?,
                ],
            )
            .await?;
        Ok(())
    }

    /// Queues `entry` for delivery now, cancelling a scheduled retry of its
    /// event (a replay).
    pub async fn queue_now(&self, entry: &StreamEntry) -> Result<(), RedisError> {
        let _: i64 = self
            .script
            .evalsha_with_reload(
                self.pool.next(),
                self.keys_of(self.shard_of(&entry.event)),
                vec![
                    "now".to_owned(),
                    entry.event.id.to_string(),
                    as_json(entry)?,
                ],
            )
            .await?;
        Ok(())
    }

    /// Moves due retries of every shard to the redelivery streams.
    pub async fn move_due(&self, limit: u32) -> Result<u64, RedisError> {
        let mut moved = 0;
        for shard in 0..self.keys.shards() {
            let n: i64 = self
                .script
                .evalsha_with_reload(
                    self.pool.next(),
                    self.keys_of(shard),
                    vec!["move".to_owned(), limit.to_string()],
                )
                .await?;
            moved += n.max(0) as u64;
        }
        Ok(moved)
    }

    /// Per shard: scheduled retries and dead-letter entries, for metrics.
    pub async fn sizes(&self) -> Result<Vec<ShardSizes>, RedisError> {
        let mut sizes = Vec::with_capacity(usize::from(self.keys.shards()));
        for shard in 0..self.keys.shards() {
            let scheduled: u64 = self.pool.zcard(self.keys.retry_set(shard)).await?;
            let dead_letters: u64 = self.pool.xlen(self.keys.dead_letters(shard)).await?;
            sizes.push(ShardSizes {
                shard,
                scheduled,
                dead_letters,
            });
        }
        Ok(sizes)
    }

    /// Records a delivery given up on in its shard's dead-letter stream,
    /// with the trace it belongs to.
    pub async fn dead_letter(&self, given_up: &StreamEntry, error: &str) -> Result<(), RedisError> {
        let event = &given_up.event;
        let entry = StreamEntry {
            error: Some(error.to_owned()),
            trace: given_up.trace.clone(),
            ..StreamEntry::new(event.clone())
        };
        let _: String = self
            .pool
            .xadd(
                self.keys.dead_letters(self.shard_of(event)),
                false,
                ("MAXLEN", "~", DEAD_LETTER_MAXLEN),
                "*",
                entry.fields(),
            )
            .await?;
        Ok(())
    }
}

/// The entry as the JSON array of fields the script stores and unpacks.
fn as_json(entry: &StreamEntry) -> Result<String, RedisError> {
    serde_json::to_string(&entry::flatten(entry.fields()))
        .map_err(|e| RedisError::Reply(e.to_string()))
}
