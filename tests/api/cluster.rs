//! The service on a Redis Cluster: every script, stream read, retry and
//! pub/sub message must respect hash slots. `scripts/test.sh` starts a
//! 3-node cluster and exports `REDIS_CLUSTER_URL`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use triggers_api::config::{Config, RetrySchedule};

use crate::{
    helpers::{db, eventually, spawn, test_config, unique_prefix, wait_archived},
    receiver::{Receiver, status},
};

fn cluster_config(prefix: &str) -> Config {
    let mut config = test_config(prefix);
    config.shared.redis_url = std::env::var("REDIS_CLUSTER_URL")
        .unwrap_or_else(|_| "redis-cluster://127.0.0.1:47001".to_owned())
        .into();
    // Enough shards that their hash slots land on every node.
    config.shared.stream_shards = 6;
    config.webhooks.allow_private_webhooks = true;
    config.delivery.retry_schedule = RetrySchedule(vec![Duration::from_millis(200)]);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_service_runs_on_redis_cluster() {
    let prefix = unique_prefix();
    let a = spawn(cluster_config(&prefix)).await;
    let b = spawn(cluster_config(&prefix)).await;
    let db = db().await;

    // Ingestion, dedup across replicas and archiving, over several shards.
    let mut orgs = Vec::new();
    let mut ids = Vec::new();
    for n in 0..6 {
        let org = a.create_org("pro").await;
        let body =
            json!({ "type": "clustered", "dedup_id": format!("d-{n}"), "payload": { "n": n } });
        let first = a.post_event(&org.key, &body).await;
        assert_eq!(first.status(), 202);
        let id = first.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let again = b.post_event(&org.key, &body).await;
        assert_eq!(again.status(), 409);
        assert_eq!(
            again.json::<Value>().await.unwrap()["original_id"],
            id.as_str()
        );
        assert_eq!(b.event(&org.key, &id).await["id"], id.as_str());
        ids.push(id);
        orgs.push(org);
    }
    for id in &ids {
        wait_archived(&db, id).await;
    }
    let inbox: Value = b
        .get(&orgs[0].key, "/api/inbox")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["events"][0]["id"], ids[0].as_str());

    // A batch, with a dedup id already taken on the other replica.
    let batch: Value = b
        .client
        .post(b.url("/api/events/batch"))
        .header("x-api-key", &orgs[3].key)
        .json(&json!({ "events": [
            { "type": "batched", "payload": {} },
            { "type": "clustered", "dedup_id": "d-3", "payload": {} },
        ] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["results"][0]["status"], 202);
    assert_eq!(batch["results"][1]["original_id"], ids[3].as_str());
    wait_archived(&db, batch["results"][0]["id"].as_str().unwrap()).await;

    // The rate limit stays exact across replicas.
    let limited = a.create_org("free").await;
    let mut accepted = 0;
    let started = Instant::now();
    for n in 0..110 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let response = replica
            .post_event(&limited.key, &json!({ "type": "t", "payload": {} }))
            .await;
        accepted += usize::from(response.status() == 202);
    }
    let refill = (started.elapsed().as_millis() / 600) as usize + 1;
    assert!(
        (100..=100 + refill).contains(&accepted),
        "accepted {accepted}"
    );

    // Webhook delivery with a retry (retry set, mover script, redelivery stream).
    let receiver = Receiver::start().await;
    receiver.script(&[status(500)]);
    let hooked = &orgs[1];
    let configured = a
        .client
        .post(a.url("/api/webhook/config"))
        .header("x-api-key", &hooked.key)
        .json(&json!({ "webhook_url": receiver.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(configured.status(), 200);
    let pushed = a.send(&hooked.key, "pushed", json!({ "x": 1 })).await;
    let event = a.wait_status(&hooked.key, &pushed, "delivered").await;
    assert_eq!(event["attempts"], 2);
    assert_eq!(receiver.count(), 2);

    // Key rotation reaches the other replica through cluster pub/sub.
    assert_eq!(b.get(&orgs[2].key, "/api/keys").await.status(), 200);
    let rotated = a.post(&orgs[2].key, "/api/keys/rotate").await;
    assert_eq!(rotated.status(), 200);
    // The old key fails on the other replica within a second.
    eventually(Duration::from_secs(1), || async {
        b.get(&orgs[2].key, "/api/keys").await.status() == 401
    })
    .await;
    b.stop().await;
    a.stop().await;
}
