//! Events in a stream that the archiver has not written to Postgres yet.
//!
//! The intake script records each accepted event's stream entry id in its
//! shard's index (`<prefix>:{<shard>}:unarchived`), so an event can be read
//! by id before it is archived; the archiver removes it once Postgres has it.

use std::collections::HashMap;

use fred::prelude::*;
use uuid::Uuid;

use super::{Received, StreamEntry, consumer::group_by};
use crate::{
    domain::EventRecord,
    redis::{Keys, RedisError},
};

#[derive(Clone)]
pub struct Unarchived {
    pool: Pool,
    keys: Keys,
}

impl Unarchived {
    pub fn new(pool: Pool, keys: Keys) -> Self {
        Self { pool, keys }
    }

    /// An event of `organization_id` that is in its stream but not archived yet.
    pub async fn get(
        &self,
        organization_id: Uuid,
        id: Uuid,
    ) -> Result<Option<EventRecord>, RedisError> {
        let shard = self.keys.shard_of(organization_id);
        let entry_id: Option<String> = self
            .pool
            .hget(self.keys.unarchived_index(shard), id.to_string())
            .await?;
        let Some(entry_id) = entry_id else {
            return Ok(None);
        };
        let entries: Vec<(String, HashMap<String, String>)> = self
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
        let event = StreamEntry::decode(&fields)?.event;
        // Never let one organization read another's event, even by id.
        Ok((event.organization_id == organization_id).then_some(event))
    }

    /// Drops archived events from their shards' indexes.
    pub async fn forget(&self, archived: &[Received]) -> Result<(), RedisError> {
        for (shard, ids) in group_by(archived, |r| r.shard, |r| r.entry.event.id.to_string()) {
            let _: i64 = self
                .pool
                .hdel(self.keys.unarchived_index(shard), ids)
                .await?;
        }
        Ok(())
    }
}
