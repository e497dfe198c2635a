//! The programs in `examples/`, run against the real service.

#[path = "../../examples/pull_consumer.rs"]
mod pull_consumer;
#[path = "../../examples/webhook_receiver.rs"]
mod webhook_receiver;

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::helpers::{eventually, spawn, spawn_app, test_config, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pull_consumer_example_drains_the_inbox_and_poison_is_quarantined() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let mut good = HashSet::new();
    for n in 0..12 {
        good.insert(app.send(&org.key, "job", json!({ "n": n })).await);
    }
    let poison = app.send(&org.key, "job", json!({ "poison": true })).await;

    let processed = Arc::new(Mutex::new(HashSet::new()));
    let seen = processed.clone();
    let consumer = pull_consumer::PullConsumer {
        client: app.client.clone(),
        base_url: app.base.clone(),
        api_key: org.key.clone(),
        batch: 5,
        lease_seconds: 30,
    };
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let stop = stop.clone();
        async move {
            consumer
                .run(
                    move |event: &Value| {
                        if event["payload"]["poison"] == true {
                            return Err("cannot process this one".into());
                        }
                        let id = event["id"].as_str().unwrap_or_default().to_owned();
                        seen.lock().expect("lock").insert(id);
                        Ok(())
                    },
                    stop,
                )
                .await;
        }
    });

    eventually(Duration::from_secs(30), || async {
        app.event(&org.key, &poison).await["status"] == "quarantined"
    })
    .await;
    for id in &good {
        app.wait_status(&org.key, id, "acknowledged").await;
    }
    assert_eq!(*processed.lock().expect("lock"), good);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the consumer stops")
        .expect("consumer task");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receiver_example_verifies_and_takes_each_event_once() {
    let mut config = test_config(&unique_prefix());
    config.webhooks.allow_private_webhooks = true;
    let app = spawn(config).await;
    let org = app.create_org("pro").await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let configured: Value = app
        .client
        .post(app.url("/api/webhook/config"))
        .header("x-api-key", &org.key)
        .json(&json!({ "webhook_url": url }))
        .send()
        .await
        .expect("configure")
        .json()
        .await
        .expect("JSON");
    let secret = configured["secret"].as_str().expect("secret").to_owned();
    let received = Arc::new(Mutex::new(webhook_receiver::Received::default()));
    let stop = CancellationToken::new();
    let serving = tokio::spawn(webhook_receiver::serve(
        listener,
        secret,
        received.clone(),
        stop.clone(),
    ));

    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(app.send(&org.key, "order.created", json!({ "n": n })).await);
    }
    eventually(Duration::from_secs(20), || async {
        received.lock().expect("lock").events.len() == 3
    })
    .await;
    let mut got: Vec<String> = received
        .lock()
        .expect("lock")
        .events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);

    // A forged request is refused and not taken.
    let forged = app
        .client
        .post(&url)
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,aGVsbG8=")
        .body(r#"{"id":"forged"}"#)
        .send()
        .await
        .expect("forged request");
    assert_eq!(forged.status(), 401);
    assert_eq!(received.lock().expect("lock").events.len(), 3);

    stop.cancel();
    serving.await.expect("receiver task").expect("receiver ran");
    app.stop().await;
}
