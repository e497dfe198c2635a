//! A consumer group member reading the shard streams.

mod reply;
mod share;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use fred::{
    prelude::*,
    types::streams::{XCap, XID},
};

use self::{
    reply::{parse_autoclaim, parse_entries, parse_id, push_parsed},
    share::{Round, TOP_UPS, group_streams},
};
use super::StreamEntry;
use crate::{
    metrics::{STREAM_LAG, STREAM_LENGTH, STREAM_OLDEST_PENDING, STREAM_PENDING},
    redis::{Keys, RedisError},
};

/// How long a read that could not block waits after a round that found nothing.
const IDLE_WAIT: Duration = Duration::from_millis(50);

/// An entry a consumer read, to be acknowledged once its work is durable.
#[derive(Debug, Clone)]
pub struct Received {
    pub shard: u16,
    /// The stream it was read from, and which kind of stream that is.
    pub stream: String,
    pub kind: StreamKind,
    pub entry_id: String,
    pub entry: StreamEntry,
}

/// The streams of a shard a group can consume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Accepted events.
    Events,
    /// Due delivery retries and replays.
    Redeliver,
}

impl StreamKind {
    fn key(self, keys: &Keys, shard: u16) -> String {
        match self {
            StreamKind::Events => keys.stream(shard),
            StreamKind::Redeliver => keys.redeliver(shard),
        }
    }
}

#[derive(Clone)]
pub struct Consumer {
    /// Blocking reads stall their connection, so they get one of their own.
    reader: Client,
    pool: Pool,
    /// Every stream read, with its shard and kind.
    streams: Vec<(u16, StreamKind, String)>,
    group: String,
    name: String,
    /// Where the next read and the next claim start, so every stream
    /// takes its turn first.
    read_turn: Arc<AtomicUsize>,
    claim_turn: Arc<AtomicUsize>,
}

impl Consumer {
    /// Joins `group` on every shard stream, creating streams and group as
    /// needed. A new group starts at the beginning of the stream, so events
    /// accepted before any worker ran are consumed too.
    pub async fn join(
        reader: Client,
        pool: Pool,
        keys: &Keys,
        kinds: &[StreamKind],
        group: &str,
        name: &str,
    ) -> Result<Self, RedisError> {
        let streams: Vec<(u16, StreamKind, String)> = kinds
            .iter()
            .flat_map(|&kind| {
                (0..keys.shards()).map(move |shard| (shard, kind, kind.key(keys, shard)))
            })
            .collect();
        for (_, _, stream) in &streams {
            let created: Result<(), _> = pool
                .xgroup_create(stream.as_str(), group, XID::Manual("0".into()), true)
                .await;
            match created {
                Ok(()) => {}
                Err(err) if err.details().starts_with("BUSYGROUP") => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(Self {
            reader,
            pool,
            streams,
            group: group.to_owned(),
            name: name.to_owned(),
            read_turn: Arc::default(),
            claim_turn: Arc::default(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// At most `count` new entries from any shard, waiting up to `block`
    /// for some to arrive; every stream gets a share (see [`share`]).
    ///
    /// One node serves a round over every stream with one blocking
    /// `XREADGROUP`. On Redis Cluster the shards live in different slots,
    /// which one command cannot span, so each shard's streams are read
    /// without blocking, and an idle round waits a moment before the next;
    /// so does a round over only some streams (less room than streams).
    pub async fn read_new(&self, count: u64, block: Duration) -> Result<Vec<Received>, RedisError> {
        let count = count.max(1);
        let streams = self.streams.len();
        let step = usize::try_from(count).unwrap_or(usize::MAX).min(streams);
        let mut round = Round::first(
            count,
            streams,
            self.read_turn.fetch_add(step, Ordering::Relaxed),
        );
        let blocking = !self.reader.is_clustered() && round.streams.len() == streams;
        let mut out = Vec::new();
        for top_up in 0..=TOP_UPS {
            let wait = (blocking && top_up == 0).then_some(block);
            let got = self.read_round(&round, wait).await?;
            let full: Vec<usize> = round
                .streams
                .iter()
                .copied()
                .filter(|&i| {
                    got.iter().filter(|r| r.stream == self.streams[i].2).count() as u64
                        >= round.each
                })
                .collect();
            out.extend(got);
            match Round::top_up(count.saturating_sub(out.len() as u64), &full) {
                Some(next) => round = next,
                None => break,
            }
        }
        if out.is_empty() && !blocking {
            tokio::time::sleep(block.min(IDLE_WAIT)).await;
        }
        Ok(out)
    }

    /// One round: a single command on one node, one per shard on Cluster.
    async fn read_round(
        &self,
        round: &Round,
        block: Option<Duration>,
    ) -> Result<Vec<Received>, RedisError> {
        let chosen = round.streams.iter().map(|&i| &self.streams[i]);
        if !self.reader.is_clustered() {
            let all: Vec<&str> = chosen.map(|(_, _, s)| s.as_str()).collect();
            return self.read_group(&all, round.each, block).await;
        }
        let mut out = Vec::new();
        for (_, streams) in group_streams(chosen) {
            out.extend(self.read_group(&streams, round.each, None).await?);
        }
        Ok(out)
    }

    /// One `XREADGROUP` over `streams`, blocking for `block` when given.
    async fn read_group(
        &self,
        streams: &[&str],
        count: u64,
        block: Option<Duration>,
    ) -> Result<Vec<Received>, RedisError> {
        let keys: Vec<String> = streams.iter().map(|s| (*s).to_owned()).collect();
        let ids: Vec<XID> = keys.iter().map(|_| XID::NewInGroup).collect();
        let reply: Value = self
            .reader
            .xreadgroup(
                self.group.as_str(),
                self.name.as_str(),
                Some(count),
                block.map(|b| b.as_millis() as u64),
                false,
                keys,
                ids,
            )
            .await?;
        let mut out = Vec::new();
        // Nil when nothing came; otherwise `[[stream, [entry, ...]], ...]`.
        if reply.is_null() {
            return Ok(out);
        }
        for per_stream in reply.into_array() {
            let mut pair = per_stream.into_array().into_iter();
            let (Some(stream), Some(entries)) =
                (pair.next().and_then(|v| v.as_string()), pair.next())
            else {
                continue;
            };
            let Some((shard, kind, stream)) = self.streams.iter().find(|(_, _, s)| *s == stream)
            else {
                continue;
            };
            for (entry_id, fields) in parse_entries(entries) {
                push_parsed(&mut out, (*shard, *kind, stream), &entry_id, &fields);
            }
        }
        Ok(out)
    }

    /// Takes over at most `count` entries that another consumer of the
    /// group read more than `min_idle` ago and never acknowledged: that
    /// consumer has died. Each call starts at the next stream, so a long
    /// backlog in one stream does not hold up the others'.
    pub async fn claim_stale(
        &self,
        min_idle: Duration,
        count: u64,
    ) -> Result<Vec<Received>, RedisError> {
        let count = count.max(1);
        let streams = self.streams.len();
        let start = self.claim_turn.fetch_add(1, Ordering::Relaxed);
        let mut out = Vec::new();
        for i in 0..streams {
            let (shard, kind, stream) = &self.streams[(start + i) % streams];
            let mut cursor = "0-0".to_owned();
            // Bounded: one pass over the pending list, what is left a call.
            for _ in 0..100 {
                let left = count.saturating_sub(out.len() as u64);
                if left == 0 {
                    return Ok(out);
                }
                let reply: Value = self
                    .pool
                    .xautoclaim(
                        stream.as_str(),
                        self.group.as_str(),
                        self.name.as_str(),
                        min_idle.as_millis() as u64,
                        cursor.as_str(),
                        Some(left),
                        false,
                    )
                    .await?;
                let (next, entries) = parse_autoclaim(reply)?;
                for (entry_id, fields) in &entries {
                    push_parsed(&mut out, (*shard, *kind, stream), entry_id, fields);
                }
                if next == "0-0" {
                    break;
                }
                cursor = next;
            }
        }
        Ok(out)
    }

    /// Acknowledges handled entries, stream by stream.
    pub async fn ack(&self, received: &[Received]) -> Result<(), RedisError> {
        for (stream, ids) in group_by(received, |d| d.stream.clone(), |d| d.entry_id.clone()) {
            let _: i64 = self.pool.xack(stream, self.group.as_str(), ids).await?;
        }
        Ok(())
    }

    /// Trims every stream below the oldest entry some group still needs,
    /// and reports each stream's length and this group's backlog as metrics.
    pub async fn trim(&self) -> Result<(), RedisError> {
        for (_, _, stream) in &self.streams {
            let groups: Vec<HashMap<String, Value>> = self.pool.xinfo_groups(stream).await?;
            let mut keep_from: Option<(u64, u64)> = None;
            let mut here = Backlog::default();
            for group in &groups {
                let name = group
                    .get("name")
                    .and_then(Value::as_string)
                    .unwrap_or_default();
                let pending = group.get("pending").and_then(Value::as_u64).unwrap_or(0);
                let last = group
                    .get("last-delivered-id")
                    .and_then(Value::as_string)
                    .and_then(|id| parse_id(&id))
                    .ok_or_else(|| RedisError::Reply("group without last-delivered-id".into()))?;
                let oldest = if pending > 0 {
                    self.oldest_pending(stream, &name).await?
                } else {
                    None
                };
                let needed = match (pending, oldest) {
                    (0, _) => (last.0, last.1.saturating_add(1)),
                    (_, oldest) => oldest.unwrap_or(last),
                };
                if name == self.group {
                    here = Backlog {
                        pending,
                        // Nil when Redis cannot count it (entries deleted
                        // inside the unread range); the gauge then keeps
                        // its last value.
                        lag: group.get("lag").and_then(Value::as_u64),
                        oldest_pending_ms: oldest.map(|(ms, _)| ms),
                    };
                }
                keep_from = Some(keep_from.map_or(needed, |k| k.min(needed)));
            }
            if let Some((ms, seq)) = keep_from {
                // Approximate trimming frees whole radix-tree nodes only: far
                // cheaper for Redis than exact trimming, and never removes
                // anything at or above the given id.
                let cap = XCap::try_from(("MINID", "~", format!("{ms}-{seq}")))?;
                let _: i64 = self.pool.xtrim(stream, cap).await?;
            }
            let length: u64 = self.pool.xlen(stream).await?;
            metrics::gauge!(STREAM_LENGTH, "stream" => stream.clone()).set(length as f64);
            here.report(stream, &self.group);
        }
        Ok(())
    }

    async fn oldest_pending(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Option<(u64, u64)>, RedisError> {
        let summary: Vec<Value> = self.pool.xpending(stream, group, ()).await?;
        Ok(summary
            .get(1)
            .and_then(Value::as_string)
            .and_then(|id| parse_id(&id)))
    }
}

/// A consumer group's backlog on one stream.
#[derive(Debug, Default)]
struct Backlog {
    pending: u64,
    lag: Option<u64>,
    /// When the oldest pending entry was added (its id's milliseconds).
    oldest_pending_ms: Option<u64>,
}

impl Backlog {
    fn report(&self, stream: &str, group: &str) {
        let labels = [("stream", stream.to_owned()), ("group", group.to_owned())];
        metrics::gauge!(STREAM_PENDING, &labels).set(self.pending as f64);
        if let Some(lag) = self.lag {
            metrics::gauge!(STREAM_LAG, &labels).set(lag as f64);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let age_ms = self
            .oldest_pending_ms
            .map_or(0, |added| now_ms.saturating_sub(added));
        metrics::gauge!(STREAM_OLDEST_PENDING, &labels).set(age_ms as f64 / 1000.0);
    }
}

/// Groups entries' values by a key (a shard, a stream), keeping order.
pub(crate) fn group_by<K: PartialEq, T>(
    received: &[Received],
    key: impl Fn(&Received) -> K,
    value: impl Fn(&Received) -> T,
) -> Vec<(K, Vec<T>)> {
    let mut groups: Vec<(K, Vec<T>)> = Vec::new();
    for d in received {
        let k = key(d);
        match groups.iter_mut().find(|(g, _)| *g == k) {
            Some((_, items)) => items.push(value(d)),
            None => groups.push((k, vec![value(d)])),
        }
    }
    groups
}
