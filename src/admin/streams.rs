//! `admin streams`: what the Redis streams hold and who reads them.

use std::collections::HashMap;

use fred::prelude::*;
use serde::Serialize;

use super::{
    Admin, AdminError, StreamsCommand,
    output::{Report, cell},
};
use crate::redis::{Keys, RedisError};

pub(super) async fn run(admin: &Admin, command: StreamsCommand) -> Result<(), AdminError> {
    match command {
        StreamsCommand::Info => {
            let streams = info(&admin.redis().await?, &admin.keys).await?;
            admin.print(&streams)
        }
    }
}

#[derive(Debug, Serialize)]
struct ConsumerInfo {
    name: String,
    pending: i64,
    idle_ms: i64,
}

#[derive(Debug, Serialize)]
struct GroupInfo {
    name: String,
    pending: i64,
    /// Entries added but not yet read by the group; `None` when Redis cannot
    /// tell (after deletions).
    lag: Option<i64>,
    last_delivered_id: String,
    consumers: Vec<ConsumerInfo>,
}

#[derive(Debug, Serialize)]
struct StreamInfo {
    stream: String,
    length: i64,
    groups: Vec<GroupInfo>,
}

/// A row per consumer group, or one for a stream no group reads.
impl Report for StreamInfo {
    const HEADERS: &'static [&'static str] =
        &["stream", "length", "group", "lag", "pending", "consumers"];

    fn rows(&self) -> Vec<Vec<String>> {
        if self.groups.is_empty() {
            let mut row = vec![self.stream.clone(), self.length.to_string()];
            row.extend(std::iter::repeat_n("-".to_owned(), 4));
            return vec![row];
        }
        self.groups
            .iter()
            .map(|group| {
                let consumers = group
                    .consumers
                    .iter()
                    .map(|c| format!("{}: {} pending, idle {} ms", c.name, c.pending, c.idle_ms))
                    .collect::<Vec<_>>()
                    .join("\n");
                vec![
                    self.stream.clone(),
                    self.length.to_string(),
                    group.name.clone(),
                    cell(group.lag),
                    group.pending.to_string(),
                    if consumers.is_empty() {
                        "-".into()
                    } else {
                        consumers
                    },
                ]
            })
            .collect()
    }
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
async fn info(client: &Client, keys: &Keys) -> Result<Vec<StreamInfo>, RedisError> {
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
