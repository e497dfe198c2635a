use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use triggers_api::config::Role;

use crate::{
    helpers::{eventually, spawn, spawn_app, test_config, unique_prefix},
    process::start_with,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_request_ids() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let ready: Value = app
        .client
        .get(app.url("/ready"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({ "status": "ready", "postgres": "ok", "redis": "ok" })
    );

    let org = app.create_org("free").await;
    app.send(&org.key, "metered", json!({})).await;
    let metrics = app.metrics().await;
    for name in [
        "triggers_http_requests_total",
        "triggers_http_request_duration_seconds_bucket",
        "triggers_events_accepted_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    assert!(metrics.contains(r#"route="/api/events""#));
    assert!(!metrics.contains(&org.key), "a key leaked into metrics");
    // Every metric in the scrape explains itself.
    for line in metrics.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split_whitespace().nth(2).unwrap();
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
    }

    // A caller's request id is kept; otherwise one is minted.
    let echoed = app
        .client
        .get(app.url("/health"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "req-123");
    let minted = app.client.get(app.url("/health")).send().await.unwrap();
    assert!(!minted.headers()["x-request-id"].is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_only_process_serves_probes_but_not_the_api() {
    let mut config = test_config(&unique_prefix());
    config.process.role = Role::Worker;
    let worker = spawn(config).await;
    for path in ["/health", "/ready", "/metrics"] {
        let response = worker.client.get(worker.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let api = worker
        .client
        .post(worker.url("/api/keys/generate"))
        .json(&json!({ "organization_name": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::NOT_FOUND);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_dependencies_are_a_clear_error_not_a_panic() {
    let mut config = test_config(&unique_prefix());
    config.shared.redis_url = "redis://127.0.0.1:1".into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = triggers_api::run(config, listener, Default::default())
        .await
        .expect_err("Redis is unreachable");
    assert!(
        format!("{err:#}").contains("cannot connect to Redis"),
        "{err:#}"
    );
}

/// The lines of `name`'s samples in the scrape at `base`.
async fn samples_of(client: &reqwest::Client, base: &str, name: &str) -> Vec<String> {
    let scrape = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("scrape")
        .text()
        .await
        .expect("scrape body");
    scrape
        .lines()
        .filter(|line| line.split([' ', '{']).next() == Some(name))
        .map(str::to_owned)
        .collect()
}

/// Only processes that run retention passes know how many months of
/// partitions exist ahead; an api replica reporting 0 would fire
/// TriggersArchivePartitionsRunningOut forever. Real processes, because
/// the metrics recorder is process-wide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_worker_reports_the_archive_partitions_ahead() {
    const GAUGE: &str = "triggers_archive_partitions_ahead";
    let prefix = unique_prefix();
    let client = reqwest::Client::new();
    let worker = start_with(&prefix, "partitions-worker", &[("TRIGGERS_ROLE", "worker")]).await;
    let api = start_with(&prefix, "partitions-api", &[("TRIGGERS_ROLE", "api")]).await;

    // The worker's first retention pass counts them.
    let reported = eventually(Duration::from_secs(30), || async {
        let lines = samples_of(&client, &worker.base, GAUGE).await;
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    let months: f64 = reported[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("a numeric sample");
    assert!(months >= 1.0, "the worker reports {reported:?}");

    // The api replica never does, however often it is scraped.
    for _ in 0..10 {
        let lines = samples_of(&client, &api.base, GAUGE).await;
        assert!(lines.is_empty(), "an api replica reports {lines:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for process in [worker, api] {
        let _ = std::fs::remove_file(&process.log);
    }
}
