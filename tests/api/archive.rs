//! The archiver under failure: nothing accepted is lost, nothing is archived
//! twice, and streams are trimmed only below what every group acknowledged.

use std::time::Duration;

use fred::prelude::*;
use serde_json::json;
use triggers_api::{
    config::Role,
    redis::{Keys, connect_client},
    streams::{Consumer, StreamKind},
};

use crate::helpers::{
    archived_count, db, eventually, inject_unstorable_entry, never, redis, spawn, test_config,
    unique_prefix, wait_archived,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_between_read_and_ack_loses_nothing() {
    let prefix = unique_prefix();
    let mut config = test_config(&prefix);
    config.process.role = Role::Api;
    let api = spawn(config.clone()).await;
    let org = api.create_org("pro").await;
    let ids = [
        api.send(&org.key, "doomed", json!({ "n": 1 })).await,
        api.send(&org.key, "doomed", json!({ "n": 2 })).await,
    ];

    // A worker reads the entries (XREADGROUP) and dies before XACK.
    let pool = redis().await;
    let keys = Keys::new(&prefix, config.shared.stream_shards);
    let reader = connect_client(&config.shared.redis_url).await.unwrap();
    let doomed = Consumer::join(
        reader,
        pool.clone(),
        &keys,
        &[StreamKind::Events],
        "archive",
        "doomed-worker",
    )
    .await
    .unwrap();
    let taken = doomed
        .read_new(100, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(taken.len(), 2);
    drop(doomed);
    let shard = taken[0].shard;
    let pending: Vec<Value> = pool
        .xpending(keys.stream(shard), "archive", ())
        .await
        .unwrap();
    assert_eq!(
        pending[0].as_u64(),
        Some(2),
        "the dead worker holds both entries"
    );

    // A live worker takes them over after the visibility timeout.
    let mut worker_config = test_config(&prefix);
    worker_config.process.role = Role::Worker;
    worker_config.consumers.visibility_timeout = Duration::from_secs(1);
    let worker = spawn(worker_config).await;
    let db = db().await;
    for id in &ids {
        wait_archived(&db, id).await;
    }
    eventually(Duration::from_secs(10), || async {
        let pending: Vec<Value> = pool
            .xpending(keys.stream(shard), "archive", ())
            .await
            .unwrap();
        pending[0].as_u64() == Some(0)
    })
    .await;
    // Archived once each, with what the client sent.
    for id in &ids {
        assert_eq!(archived_count(&db, id).await, 1);
    }
    let event: serde_json::Value = api
        .get(&org.key, &format!("/api/events/{}", ids[1]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(event["payload"], json!({ "n": 2 }));
    worker.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_trimmed_only_below_what_every_group_acknowledged() {
    let prefix = unique_prefix();
    let mut config = test_config(&prefix);
    config.shared.stream_shards = 1;
    let app = spawn(config.clone()).await;
    let keys = Keys::new(&prefix, 1);
    let pool = redis().await;
    // A second group (say, a delivery worker) that has read nothing yet.
    let reader = connect_client(&config.shared.redis_url).await.unwrap();
    let laggard = Consumer::join(
        reader,
        pool.clone(),
        &keys,
        &[StreamKind::Events],
        "laggard",
        "slow",
    )
    .await
    .unwrap();

    let org = app.create_org("pro").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(app.send(&org.key, "kept", json!({ "n": n })).await);
    }
    let db = db().await;
    for id in &ids {
        wait_archived(&db, id).await;
    }
    // The archiver trims every 2 s; the laggard still needs every entry.
    never(25, Duration::from_millis(200), || async {
        pool.xlen::<u64, _>(keys.stream(0)).await.unwrap() != 5
    })
    .await;
    let length: u64 = pool.xlen(keys.stream(0)).await.unwrap();
    assert_eq!(length, 5);
    // Operators see the same in /metrics.
    let metrics = app.metrics().await;
    let stream = keys.stream(0);
    assert!(
        metrics.contains(&format!(r#"triggers_stream_length{{stream="{stream}"}} 5"#)),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        r#"triggers_stream_pending{{stream="{stream}",group="archive"}} 0"#
    )));

    // Once the laggard has acknowledged them, they go.
    let read = laggard
        .read_new(100, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(read.len(), 5);
    laggard.ack(&read).await.unwrap();
    eventually(Duration::from_secs(10), || async {
        let length: u64 = pool.xlen(keys.stream(0)).await.unwrap();
        length == 0
    })
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_postgres_refuses_does_not_hold_back_the_others() {
    let prefix = unique_prefix();
    let mut config = test_config(&prefix);
    config.process.role = Role::Api;
    config.shared.stream_shards = 1;
    let api = spawn(config.clone()).await;
    let org = api.create_org("pro").await;
    let before = api.send(&org.key, "before", json!({ "n": 1 })).await;

    // An entry the API would never accept (NUL in the payload) lands in the
    // stream between good ones, e.g. written by an older release.
    let pool = redis().await;
    let keys = Keys::new(&prefix, 1);
    let poison = inject_unstorable_entry(&pool, &prefix, &org.id).await;
    let after = api.send(&org.key, "after", json!({ "n": 2 })).await;

    let mut worker_config = test_config(&prefix);
    worker_config.process.role = Role::Worker;
    worker_config.shared.stream_shards = 1;
    let worker = spawn(worker_config).await;
    let db = db().await;
    wait_archived(&db, &before).await;
    wait_archived(&db, &after).await;
    assert_eq!(archived_count(&db, &poison.to_string()).await, 0);
    // The refused entry is not dropped: it stays pending in the archive group.
    let pending: Vec<Value> = pool.xpending(keys.stream(0), "archive", ()).await.unwrap();
    assert_eq!(pending[0].as_u64(), Some(1));
    assert_eq!(pending[1].as_string(), pending[2].as_string());
    worker.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_meeting_an_archived_event_archives_the_rest_and_keeps_that_row() {
    let prefix = unique_prefix();
    let mut config = test_config(&prefix);
    config.process.role = Role::Api;
    config.shared.stream_shards = 1;
    let api = spawn(config.clone()).await;
    let org = api.create_org("pro").await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(api.send(&org.key, "mixed", json!({ "n": n })).await);
    }
    // The delivery recorder wrote one of them first, with its outcome.
    let db = db().await;
    sqlx::query(
        "INSERT INTO events (id, organization_id, type, payload, status, attempts, created_at)
         VALUES ($1::uuid, $2::uuid, 'mixed', '{\"n\": 2}', 'delivered', 1, now())",
    )
    .bind(&ids[2])
    .bind(&org.id)
    .execute(&db)
    .await
    .unwrap();

    let mut worker_config = test_config(&prefix);
    worker_config.process.role = Role::Worker;
    worker_config.shared.stream_shards = 1;
    let worker = spawn(worker_config).await;
    for id in &ids {
        wait_archived(&db, id).await;
    }
    let pool = redis().await;
    let keys = Keys::new(&prefix, 1);
    eventually(Duration::from_secs(10), || async {
        let pending: Vec<Value> = pool.xpending(keys.stream(0), "archive", ()).await.unwrap();
        pending[0].as_u64() == Some(0)
    })
    .await;
    for id in &ids {
        assert_eq!(archived_count(&db, id).await, 1);
    }
    let status: String = sqlx::query_scalar("SELECT status FROM events WHERE id = $1::uuid")
        .bind(&ids[2])
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "delivered", "the recorder's row is kept as it was");

    // Later batches, written with the conflict check for a while, archive too.
    let later = api.send(&org.key, "later", json!({ "n": 5 })).await;
    wait_archived(&db, &later).await;
    assert_eq!(archived_count(&db, &later).await, 1);
    worker.stop().await;
    api.stop().await;
}
