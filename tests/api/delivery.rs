//! Webhook delivery against real receivers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use triggers_api::config::{Config, RetrySchedule, Role};

use crate::{
    helpers::{TestApp, eventually, never, spawn, test_config, unique_prefix},
    receiver::{Receiver, slow, status},
};

fn ms(list: &[u64]) -> RetrySchedule {
    RetrySchedule(list.iter().map(|&m| Duration::from_millis(m)).collect())
}

/// A deployment that may call webhooks on loopback (the receivers here).
pub(crate) fn webhook_config(schedule: &[u64]) -> Config {
    let mut config = test_config(&unique_prefix());
    config.webhooks.allow_private_webhooks = true;
    config.delivery.retry_schedule = ms(schedule);
    config.webhooks.webhook_timeout = Duration::from_secs(5);
    config
}

pub(crate) async fn configure(app: &TestApp, key: &str, url: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/webhook/config"))
        .header("x-api-key", key)
        .json(&json!({ "webhook_url": url }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["enabled"], true);
    let secret = body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    secret
}

async fn attempts(app: &TestApp, key: &str, id: &str) -> Vec<Value> {
    let body: Value = app
        .get(key, &format!("/api/events/{id}/attempts"))
        .await
        .json()
        .await
        .unwrap();
    body["attempts"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivered_event_is_signed_so_standard_webhooks_verifies_it() {
    let app = spawn(webhook_config(&[200])).await;
    let receiver = Receiver::start().await;
    let org = app.create_org("pro").await;
    let secret = configure(&app, &org.key, &receiver.url).await;

    let id = app
        .send(
            &org.key,
            "invoice.paid",
            json!({ "invoice": 7, "lines": [1, 2] }),
        )
        .await;
    let delivered = app.wait_status(&org.key, &id, "delivered").await;
    assert_eq!(delivered["attempts"], 1);
    assert!(delivered["delivered_at"].is_string());

    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let request = &got[0];
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    verifier
        .verify(&request.body, &request.headers)
        .expect("signature verifies with the Standard Webhooks library");
    // The check can fail: a tampered body does not verify.
    let mut tampered = request.body.to_vec();
    tampered[5] ^= 1;
    assert!(verifier.verify(&tampered, &request.headers).is_err());

    assert_eq!(request.headers["webhook-id"], id.as_str());
    assert_eq!(request.headers["content-type"], "application/json");
    assert!(
        request.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("triggers-api/")
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["type"], "invoice.paid");
    assert_eq!(body["data"], json!({ "invoice": 7, "lines": [1, 2] }));
    assert_eq!(body["timestamp"], delivered["created_at"]);

    let recorded = attempts(&app, &org.key, &id).await;
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0]["response_status"], 200);
    assert_eq!(recorded[0]["attempt"], 1);

    let metrics = app.metrics().await;
    for name in [
        r#"triggers_deliveries_total{outcome="delivered"}"#,
        "triggers_delivery_duration_seconds_bucket",
        "triggers_delivery_end_to_end_seconds_bucket",
        "triggers_deliveries_in_flight",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // After a secret rotation both secrets verify, so receivers can switch at leisure.
    let rotated: Value = app
        .post(&org.key, "/api/webhook/config/rotate-secret")
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    let second = app
        .send(&org.key, "invoice.paid", json!({ "invoice": 8 }))
        .await;
    app.wait_status(&org.key, &second, "delivered").await;
    let got = receiver.received();
    let request = got.last().unwrap();
    for key in [&secret, &new_secret] {
        standardwebhooks::Webhook::new(key)
            .unwrap()
            .verify(&request.body, &request.headers)
            .expect("both secrets verify during the grace period");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_twice_then_succeeding_gets_exactly_three_attempts() {
    let app = spawn(webhook_config(&[200, 200, 200, 200])).await;
    let receiver = Receiver::start().await;
    receiver.script(&[status(500), status(400)]);
    let org = app.create_org("pro").await;
    configure(&app, &org.key, &receiver.url).await;

    let id = app.send(&org.key, "flaky", json!({})).await;
    let delivered = app.wait_status(&org.key, &id, "delivered").await;
    assert_eq!(delivered["attempts"], 3);
    // Nothing more comes once delivered.
    never(8, Duration::from_millis(100), || async {
        receiver.count() > 3
    })
    .await;
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    assert!(got.iter().all(|r| r.headers["webhook-id"] == id.as_str()));
    let recorded = attempts(&app, &org.key, &id).await;
    let statuses: Vec<&Value> = recorded.iter().map(|a| &a["response_status"]).collect();
    assert_eq!(statuses, [&json!(500), &json!(400), &json!(200)]);
    assert!(recorded[0]["next_retry_at"].is_string());
    assert!(recorded[2]["error"].is_null());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_times_out_and_is_retried() {
    let mut config = webhook_config(&[100, 100]);
    config.webhooks.webhook_timeout = Duration::from_secs(1);
    let app = spawn(config).await;
    let receiver = Receiver::start().await;
    receiver.script(&[slow(200, Duration::from_secs(10))]);
    let org = app.create_org("pro").await;
    configure(&app, &org.key, &receiver.url).await;

    let started = Instant::now();
    let id = app.send(&org.key, "slow", json!({})).await;
    let delivered = app.wait_status(&org.key, &id, "delivered").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "did not wait out the slow answer"
    );
    assert_eq!(delivered["attempts"], 2);
    let recorded = attempts(&app, &org.key, &id).await;
    assert!(recorded[0]["response_status"].is_null());
    assert!(
        recorded[0]["error"].as_str().unwrap().contains("timed out"),
        "{}",
        recorded[0]
    );
    assert_eq!(recorded[1]["response_status"], 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_endpoint_is_dead_lettered_then_delivered_after_replay() {
    let app = spawn(webhook_config(&[100, 100])).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(status(503));
    let org = app.create_org("pro").await;
    configure(&app, &org.key, &receiver.url).await;

    let id = app.send(&org.key, "doomed", json!({ "n": 1 })).await;
    let dead = app.wait_status(&org.key, &id, "dead_letter").await;
    assert_eq!(dead["attempts"], 3, "the first attempt and two retries");
    assert!(dead["last_error"].as_str().unwrap().contains("503"));
    never(5, Duration::from_millis(100), || async {
        receiver.count() > 3
    })
    .await;
    assert_eq!(receiver.count(), 3, "no attempt after the last");
    let listed: Value = app
        .get(&org.key, "/api/inbox?status=dead_letter")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["events"][0]["id"], id.as_str());

    // The endpoint recovers; the dead letters are replayed.
    receiver.otherwise(status(204));
    let replayed = app
        .client
        .post(app.url("/api/dlq/replay"))
        .header("x-api-key", &org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 202);
    assert_eq!(replayed.json::<Value>().await.unwrap()["replayed"], 1);
    let delivered = app.wait_status(&org.key, &id, "delivered").await;
    assert_eq!(delivered["attempts"], 4);
    let listed: Value = app
        .get(&org.key, "/api/inbox?status=dead_letter")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["events"].as_array().unwrap().len(), 0);

    // A single event can be sent again too, as a new attempt.
    let again = app
        .post(&org.key, &format!("/api/events/{id}/replay"))
        .await;
    assert_eq!(again.status(), 202);
    eventually(Duration::from_secs(10), || async { receiver.count() == 5 }).await;
    let redelivered = app.wait_status(&org.key, &id, "delivered").await;
    assert_eq!(redelivered["attempts"], 5);
    // Another organization cannot replay it, and a queued event has nothing to replay.
    let other = app.create_org("pro").await;
    configure(&app, &other.key, &receiver.url).await;
    let path = format!("/api/events/{id}/replay");
    assert_eq!(other_status(&app, &other.key, &path).await, 404);
    receiver.otherwise(slow(200, Duration::from_secs(5)));
    let pending = app.send(&org.key, "pending", json!({})).await;
    crate::helpers::wait_archived(&crate::helpers::db().await, &pending).await;
    let path = format!("/api/events/{pending}/replay");
    assert_eq!(other_status(&app, &org.key, &path).await, 409);
    // A pull consumer (no webhook) has nowhere to replay to.
    let pull = app.create_org("pro").await;
    let pulled = app.send(&pull.key, "pull", json!({})).await;
    let path = format!("/api/events/{pulled}/replay");
    assert_eq!(other_status(&app, &pull.key, &path).await, 409);
    assert_eq!(other_status(&app, &pull.key, "/api/dlq/replay").await, 409);
    app.stop().await;
}

async fn other_status(app: &TestApp, key: &str, path: &str) -> u16 {
    app.post(key, path).await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_webhook_instead_of_retrying() {
    let app = spawn(webhook_config(&[100, 100, 100])).await;
    let receiver = Receiver::start().await;
    receiver.otherwise(status(410));
    let org = app.create_org("pro").await;
    configure(&app, &org.key, &receiver.url).await;

    let id = app.send(&org.key, "gone", json!({})).await;
    let dead = app.wait_status(&org.key, &id, "dead_letter").await;
    assert_eq!(dead["attempts"], 1);
    let info: Value = app.get(&org.key, "/api/keys").await.json().await.unwrap();
    assert_eq!(info["webhook"]["enabled"], false);
    assert!(
        info["webhook"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );

    // New events are no longer pushed: they wait in the inbox.
    let later = app.send(&org.key, "later", json!({})).await;
    never(10, Duration::from_millis(100), || async {
        receiver.count() > 1
    })
    .await;
    assert_eq!(receiver.count(), 1);
    assert_eq!(app.event(&org.key, &later).await["status"], "queued");

    // Configuring the webhook again turns pushing back on.
    receiver.otherwise(status(200));
    configure(&app, &org.key, &receiver.url).await;
    let after = app.send(&org.key, "after", json!({})).await;
    app.wait_status(&org.key, &after, "delivered").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_organization_does_not_delay_another() {
    let mut config = webhook_config(&[1000]);
    config.delivery.delivery_per_org = 2;
    config.delivery.delivery_concurrency = 16;
    let app = spawn(config).await;
    let stuck = Receiver::start().await;
    stuck.otherwise(slow(200, Duration::from_secs(3)));
    let healthy = Receiver::start().await;
    let slow_org = app.create_org("pro").await;
    let fast_org = app.create_org("pro").await;
    configure(&app, &slow_org.key, &stuck.url).await;
    configure(&app, &fast_org.key, &healthy.url).await;

    for n in 0..40 {
        app.send(&slow_org.key, "backlog", json!({ "n": n })).await;
    }
    eventually(Duration::from_secs(5), || async { stuck.count() >= 2 }).await;
    let sent = Instant::now();
    let id = app.send(&fast_org.key, "urgent", json!({})).await;
    eventually(Duration::from_secs(10), || async { healthy.count() == 1 }).await;
    let latency = healthy.received()[0].at - sent;
    println!("delivery latency behind a stuck organization: {latency:?}");
    assert!(latency < Duration::from_millis(1500), "took {latency:?}");
    assert_eq!(healthy.received()[0].headers["webhook-id"], id.as_str());
    // The stuck organization never had more than its share in flight.
    assert!(
        stuck.count() <= 4,
        "{} requests reached the slow endpoint",
        stuck.count()
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_targets_are_refused_when_configured_and_when_delivering() {
    // A deployment with the default policy.
    let prefix = unique_prefix();
    let mut strict = test_config(&prefix);
    strict.process.role = Role::Api;
    let api = spawn(strict).await;
    let org = api.create_org("pro").await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:8080/hook",
        "http://[::1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/",
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "not a url",
    ] {
        let response = api
            .client
            .post(api.url("/api/webhook/config"))
            .header("x-api-key", &org.key)
            .json(&json!({ "webhook_url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "invalid", "{url}");
    }
    let missing = api
        .client
        .post(api.url("/api/webhook/config"))
        .header("x-api-key", &org.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 422);

    // A URL accepted under a permissive policy is still refused at delivery
    // by a worker with the strict one: the request never leaves.
    let mut permissive = test_config(&prefix);
    permissive.process.role = Role::Api;
    permissive.webhooks.allow_private_webhooks = true;
    let lenient = spawn(permissive).await;
    let receiver = Receiver::start().await;
    configure(&lenient, &org.key, &receiver.url).await;
    let mut worker_config = test_config(&prefix);
    worker_config.process.role = Role::Worker;
    worker_config.delivery.retry_schedule = ms(&[]);
    let worker = spawn(worker_config).await;
    let id = api.send(&org.key, "blocked", json!({})).await;
    let dead = api.wait_status(&org.key, &id, "dead_letter").await;
    assert!(
        dead["last_error"].as_str().unwrap().contains("internal"),
        "{dead}"
    );
    assert_eq!(receiver.count(), 0);
    worker.stop().await;
    lenient.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_postgres_refuses_does_not_block_the_others() {
    let mut config = webhook_config(&[100]);
    config.shared.stream_shards = 1;
    let prefix = config.shared.redis_prefix.clone();
    let app = spawn(config).await;
    let receiver = Receiver::start().await;
    let org = app.create_org("pro").await;
    configure(&app, &org.key, &receiver.url).await;

    // An entry the API would refuse (NUL in the payload) reaches the stream
    // anyway, e.g. from an older release: it can be pushed, not stored.
    let pool = crate::helpers::redis().await;
    let keys = triggers_api::redis::Keys::new(&prefix, 1);
    crate::helpers::inject_unstorable_entry(&pool, &prefix, &org.id).await;
    let good = app.send(&org.key, "good", json!({})).await;
    app.wait_status(&org.key, &good, "delivered").await;
    let later = app.send(&org.key, "later", json!({})).await;
    app.wait_status(&org.key, &later, "delivered").await;
    // The refused outcome's entry stays pending in the delivery group.
    let pending: Vec<fred::prelude::Value> =
        fred::prelude::StreamsInterface::xpending(&pool, keys.stream(0), "delivery", ())
            .await
            .unwrap();
    assert_eq!(pending[0].as_u64(), Some(1));
    app.stop().await;
}
