//! A test's world goes when the test ends, however it ends: its apps and
//! processes stop, its Redis keys and its organizations are deleted.

use std::time::Duration;

use fred::prelude::Pool;
use futures_util::TryStreamExt;
use serde_json::json;

use crate::{
    helpers::{FreshDatabase, db, eventually, redis, spawn, test_config, unique_prefix},
    process::start_with,
};

async fn keys_under(pool: &Pool, prefix: &str) -> usize {
    pool.next()
        .scan_buffered(format!("{prefix}:*"), Some(1000), None)
        .try_collect::<Vec<_>>()
        .await
        .expect("scan")
        .len()
}

async fn organizations_with_id(db: &sqlx::PgPool, id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM organizations WHERE id = $1")
        .bind(id.parse::<uuid::Uuid>().expect("organization id"))
        .fetch_one(db)
        .await
        .expect("count organizations")
}

async fn answers(base: &str) -> bool {
    reqwest::Client::new()
        .get(format!("{base}/health"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_that_panics_leaves_no_service_keys_or_organizations_behind() {
    let (started, world) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let prefix = unique_prefix();
        let app = spawn(test_config(&prefix)).await;
        let process = start_with(&prefix, "doomed", &[]).await;
        let org = app.create_org("pro").await;
        app.send(&org.key, "left.behind", json!({})).await;
        let pool = redis().await;
        assert!(keys_under(&pool, &prefix).await > 0);
        let _ = started.send((
            prefix.to_string(),
            app.base.clone(),
            process.base.clone(),
            org.id.clone(),
        ));
        panic!("a test failing with its service running");
    })
    .await;
    assert!(failed.expect_err("the test panicked").is_panic());
    let (prefix, app_base, process_base, org_id) = world.await.expect("the test got going");

    let pool = redis().await;
    let db = db().await;
    eventually(Duration::from_secs(10), || async {
        keys_under(&pool, &prefix).await == 0
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        organizations_with_id(&db, &org_id).await == 0
    })
    .await;
    eventually(Duration::from_secs(10), || async {
        !answers(&app_base).await && !answers(&process_base).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_stopped_mid_test_keeps_its_world_until_the_test_lets_go() {
    let prefix = unique_prefix();
    let app = spawn(test_config(&prefix)).await;
    let org = app.create_org("pro").await;
    app.send(&org.key, "kept", json!({})).await;
    app.stop().await;

    // What a restarted app would find is still there.
    let pool = redis().await;
    let db = db().await;
    assert!(keys_under(&pool, &prefix).await > 0);
    assert_eq!(organizations_with_id(&db, &org.id).await, 1);
    let name = prefix.to_string();
    drop(prefix);
    assert_eq!(keys_under(&pool, &name).await, 0);
    assert_eq!(organizations_with_id(&db, &org.id).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_database_goes_with_the_test_that_panicked() {
    let (created, url) = tokio::sync::oneshot::channel();
    let failed = tokio::spawn(async move {
        let database = FreshDatabase::create().await;
        let _ = created.send(database.url.clone());
        panic!("a test failing before it dropped its database");
    })
    .await;
    assert!(failed.expect_err("the test panicked").is_panic());
    let url = url.await.expect("the database was created");
    let (_, name) = url.rsplit_once('/').expect("a database name");

    let db = db().await;
    eventually(Duration::from_secs(10), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&db)
            .await
            .expect("count databases");
        left == 0
    })
    .await;
}
