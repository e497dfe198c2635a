//! Dependencies going away under the service and coming back: it answers
//! quickly and truthfully meanwhile, and catches up without a restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{
    helpers::{eventually, spawn, test_config, unique_prefix},
    private_deps::{PrivatePostgres, PrivateRedis},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_requests_fail_fast_with_503_and_recover_by_themselves() {
    let mut redis = PrivateRedis::start().await;
    let mut config = test_config(&unique_prefix());
    config.shared.redis_url = redis.url().into();
    config.outages.redis_command_timeout = Duration::from_millis(500);
    let app = spawn(config).await;
    let org = app.create_org("pro").await;
    app.send(&org.key, "before", json!({})).await;

    redis.stop();
    let event = json!({ "type": "during", "dedup_id": "outage-1", "payload": {} });
    for _ in 0..3 {
        let started = Instant::now();
        let response = app.post_event(&org.key, &event).await;
        let took = started.elapsed();
        eprintln!("answered {} in {took:?} with Redis down", response.status());
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unavailable");
        // Two Redis commands at most on this path (key cache, enqueue).
        assert!(
            took < Duration::from_millis(2_500),
            "answered after {took:?}"
        );
    }

    redis.resume().await;
    // The same dedup_id is accepted, not a duplicate: nothing was stored.
    let accepted = eventually(Duration::from_secs(20), || async {
        let response = app.post_event(&org.key, &event).await;
        (response.status() == 202).then_some(())
    })
    .await;
    let () = accepted;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_postgres_outage_the_backlog_is_archived_within_seconds() {
    let postgres = PrivatePostgres::start().await;
    let mut config = test_config(&unique_prefix());
    config.database.database_url = postgres.url().into();
    // Long enough that catching up cannot be the reclaim of stale entries.
    config.consumers.visibility_timeout = Duration::from_secs(30);
    config.outages.store_retry_max = Duration::from_millis(250);
    let app = spawn(config).await;
    let org = app.create_org("enterprise").await;
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&postgres.url())
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(app.send(&org.key, "before", json!({ "n": n })).await);
    }

    postgres.stop();
    let outage = Instant::now();
    // Ingestion goes on: 20 events a second for 6 seconds.
    let mut n = 0;
    while outage.elapsed() < Duration::from_secs(6) && n < 200 {
        ids.push(app.send(&org.key, "during", json!({ "n": n })).await);
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    postgres.resume().await;
    let back = Instant::now();
    let org_id: uuid::Uuid = org.id.parse().unwrap();
    let expected = ids.len() as i64;
    eventually(Duration::from_secs(20), || async {
        let archived: Option<i64> =
            sqlx::query_scalar("SELECT count(*) FROM events WHERE organization_id = $1")
                .bind(org_id)
                .fetch_one(&db)
                .await
                .ok();
        archived == Some(expected)
    })
    .await;
    let caught_up = back.elapsed();
    eprintln!("{expected} events archived {caught_up:?} after Postgres returned");
    assert!(
        caught_up < Duration::from_secs(5),
        "caught up after {caught_up:?}"
    );
    let ids: Vec<uuid::Uuid> = ids.iter().map(|i| i.parse().unwrap()).collect();
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT id) FROM events WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(distinct, expected, "an accepted event is missing");
    db.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_error_that_is_no_outage_is_a_500_not_a_503() {
    let config = test_config(&unique_prefix());
    let keys =
        triggers_api::redis::Keys::new(&config.shared.redis_prefix, config.shared.stream_shards);
    let app = spawn(config).await;
    let org = app.create_org("pro").await;
    // The organization's rate-limit state under its name, but a hash (as a
    // release with another layout might have left it): every script that
    // reads it fails with WRONGTYPE, however long the client waits.
    let pool = crate::helpers::redis().await;
    let organization_id: uuid::Uuid = org.id.parse().unwrap();
    let _: i64 = fred::prelude::HashesInterface::hset(
        &pool,
        keys.rate_limit(organization_id),
        ("layout", "other"),
    )
    .await
    .unwrap();

    let event = json!({ "type": "misread", "payload": {} });
    let response = app.post_event(&org.key, &event).await;
    assert_eq!(response.status(), 500);
    assert!(response.headers().get("retry-after").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "internal");
    assert_eq!(
        body["error"], "internal error",
        "no detail reaches the client"
    );
    let _: i64 = fred::prelude::KeysInterface::del(&pool, keys.rate_limit(organization_id))
        .await
        .unwrap();
    app.stop().await;
}
