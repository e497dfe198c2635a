//! What the Redis streams hold and who reads them.

use std::collections::HashMap;

use fred::prelude::*;
use serde::Serialize;

use crate::redis::{Keys, RedisError};

#[derive(Debug, Serialize)]
pub struct ConsumerInfo {
    pub name: String,
    pub pending: i64,
    pub idle_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct GroupInfo {
    pub name: String,
    pub pending: i64,
    /// Entries added but not yet read by the group; `None` when Redis cannot
    /// tell (after deletions).
    pub lag: Option<i64>,
    pub last_delivered_id: String,
    pub consumers: Vec<ConsumerInfo>,
}

#[derive(Debug, Serialize)]
pub struct StreamInfo {
    pub stream: String,
    pub length: i64,
    pub groups: Vec<GroupInfo>,
}

fn int(map: &HashMap<String, Value>, field: &str) -> Option<i64> {
    map.get(field).and_then(Value::as_i64)
}

fn text(map: &HashMap<String, Value>, field: &str) -> String {
    map.get(field)
        .and_then(Value::as_string)
        .unwrap_or_default()
}

/// Every stream of every shard: events, redeliveries and dead letters.
pub async fn info(client: &Client, keys: &Keys) -> Result<Vec<StreamInfo>, RedisError> {
    let mut streams = Vec::new();
    for shard in 0..keys.shards() {
        for stream in [
            keys.stream(shard),
            keys.redeliver(shard),
            keys.dead_letters(shard),
        ] {
            let length: i64 = client.xlen(&stream).await?;
            let exists: i64 = client.exists(&stream).await?;
            let raw_groups: Vec<HashMap<String, Value>> = if exists == 1 {
                client.xinfo_groups(&stream).await?
            } else {
                Vec::new()
            };
            let mut groups = Vec::with_capacity(raw_groups.len());
            for group in raw_groups {
                let name = text(&group, "name");
                let raw_consumers: Vec<HashMap<String, Value>> =
                    client.xinfo_consumers(&stream, name.as_str()).await?;
                groups.push(GroupInfo {
                    pending: int(&group, "pending").unwrap_or(0),
                    lag: int(&group, "lag"),
                    last_delivered_id: text(&group, "last-delivered-id"),
                    consumers: raw_consumers
                        .iter()
                        .map(|c| ConsumerInfo {
                            name: text(c, "name"),
                            pending: int(c, "pending").unwrap_or(0),
                            idle_ms: int(c, "idle").unwrap_or(0),
                        })
                        .collect(),
                    name,
                });
            }
            streams.push(StreamInfo {
                stream,
                length,
                groups,
            });
        }
    }
    Ok(streams)
}
