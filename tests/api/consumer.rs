//! A consumer reads no more than it was asked for, from every shard in turn.

use std::{collections::HashSet, time::Duration};

use fred::prelude::{KeysInterface, Pool, StreamsInterface};
use triggers_api::{
    config::Config,
    domain::{EventRecord, mint_event_id},
    redis::{Keys, connect_client, connect_pool},
    streams::{Consumer, Received, StreamEntry, StreamKind},
};
use uuid::Uuid;

use crate::helpers::unique_prefix;

const SHARDS: u16 = 8;
const PER_STREAM: usize = 12;
const KINDS: [StreamKind; 2] = [StreamKind::Events, StreamKind::Redeliver];

fn stream_of(keys: &Keys, kind: StreamKind, shard: u16) -> String {
    match kind {
        StreamKind::Events => keys.stream(shard),
        StreamKind::Redeliver => keys.redeliver(shard),
    }
}

fn single_node() -> String {
    Config::from_env()
        .expect("configuration")
        .shared
        .redis_url
        .to_string()
}

/// The 3-node cluster `scripts/test.sh` starts.
fn cluster() -> String {
    std::env::var("REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis-cluster://127.0.0.1:47001".to_owned())
}

/// A member of group `g` on both kinds of stream of `keys`' shards.
async fn join(url: &str, pool: &Pool, keys: &Keys, name: &str) -> Consumer {
    let reader = connect_client(url).await.expect("reader");
    Consumer::join(reader, pool.clone(), keys, &KINDS, "g", name)
        .await
        .expect("join")
}

/// 8 shards whose every stream holds `PER_STREAM` entries, a consumer of
/// them, and the names of the streams.
async fn filled(url: &str) -> (Consumer, Pool, Keys, Vec<String>) {
    let pool = connect_pool(url, 1).await.expect("pool");
    let keys = Keys::new(&unique_prefix(), SHARDS);
    let consumer = join(url, &pool, &keys, "first").await;
    let mut streams = Vec::new();
    for kind in KINDS {
        for shard in 0..SHARDS {
            let stream = stream_of(&keys, kind, shard);
            for _ in 0..PER_STREAM {
                let (id, created_at) = mint_event_id();
                let entry = StreamEntry::new(EventRecord {
                    id,
                    organization_id: Uuid::now_v7(),
                    event_type: "fill".into(),
                    dedup_id: None,
                    payload: "{}".into(),
                    created_at,
                });
                let _: String = pool
                    .xadd(&stream, false, None, "*", entry.fields())
                    .await
                    .expect("xadd");
            }
            streams.push(stream);
        }
    }
    (consumer, pool, keys, streams)
}

fn streams_of(batch: &[Received]) -> HashSet<String> {
    batch.iter().map(|r| r.stream.clone()).collect()
}

/// One key at a time: on Cluster the streams live in different slots.
async fn clean_up(pool: &Pool, streams: Vec<String>) {
    for stream in streams {
        let _: i64 = pool.del(stream).await.expect("del");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_returns_at_most_count_and_every_shard_takes_its_turn() {
    reads_are_bounded_and_fair(&single_node()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_redis_cluster_too_a_read_returns_at_most_count_from_every_shard() {
    reads_are_bounded_and_fair(&cluster()).await;
}

async fn reads_are_bounded_and_fair(url: &str) {
    // Less room than streams, a share for each, and more than one stream holds.
    for count in [3u64, 20, 40] {
        let (reader, pool, _, streams) = filled(url).await;
        let total = streams.len() * PER_STREAM;
        let mut seen = HashSet::new();
        let mut read = 0;
        let mut reads = 0;
        while read < total {
            reads += 1;
            assert!(reads <= total, "{count}: stuck after {read} of {total}");
            let batch = reader
                .read_new(count, Duration::from_millis(100))
                .await
                .expect("read");
            assert!(
                batch.len() as u64 <= count,
                "asked for {count}, got {}",
                batch.len()
            );
            read += batch.len();
            seen.extend(streams_of(&batch));
            // Every stream has been read from as soon as there were turns
            // enough for all: no stream waits for another to drain.
            if reads == streams.len().div_ceil(count as usize) {
                assert_eq!(seen.len(), streams.len(), "{count}: {seen:?}");
            }
        }
        assert_eq!(read, total);
        clean_up(&pool, streams).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claiming_stale_entries_takes_at_most_count_from_every_shard_in_turn() {
    let url = single_node();
    let (first, pool, keys, streams) = filled(&url).await;
    let total = streams.len() * PER_STREAM;
    // The first consumer reads everything, then dies holding it.
    let mut held = 0;
    while held < total {
        held += first
            .read_new(total as u64, Duration::from_millis(100))
            .await
            .expect("read")
            .len();
    }
    let second = join(&url, &pool, &keys, "second").await;
    let count = 5u64;
    let mut seen = HashSet::new();
    let mut claimed = 0;
    for claims in 1..=total {
        let batch = second
            .claim_stale(Duration::ZERO, count)
            .await
            .expect("claim");
        assert!(batch.len() as u64 <= count, "got {}", batch.len());
        claimed += batch.len();
        seen.extend(streams_of(&batch));
        // Handled: acknowledged, as a worker does.
        second.ack(&batch).await.expect("ack");
        if claims == streams.len() {
            assert_eq!(seen.len(), streams.len(), "{seen:?}");
        }
        if claimed == total {
            break;
        }
    }
    assert_eq!(claimed, total);
    clean_up(&pool, streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_busy_shard_alone_still_fills_a_read() {
    let url = single_node();
    let (consumer, pool, _, streams) = filled(&url).await;
    // Drain all but one stream's entries, by reading everything once...
    let total = (streams.len() * PER_STREAM) as u64;
    let mut read = 0;
    while read < total {
        read += consumer
            .read_new(total, Duration::from_millis(100))
            .await
            .expect("read")
            .len() as u64;
    }
    // ...then one stream gets a backlog of its own.
    let busy = &streams[5];
    for n in 0..60 {
        let (id, created_at) = mint_event_id();
        let entry = StreamEntry::new(EventRecord {
            id,
            organization_id: Uuid::now_v7(),
            event_type: format!("busy-{n}"),
            dedup_id: None,
            payload: "{}".into(),
            created_at,
        });
        let _: String = pool
            .xadd(busy, false, None, "*", entry.fields())
            .await
            .expect("xadd");
    }
    let batch = consumer
        .read_new(40, Duration::from_millis(100))
        .await
        .expect("read");
    assert_eq!(batch.len(), 40, "a share of 40 / 16 streams is 2");
    assert!(batch.iter().all(|r| &r.stream == busy));
    clean_up(&pool, streams).await;
}
