//! Two replicas sharing one Redis behave as one service.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use triggers_api::config::Role;

use crate::helpers::{eventually, never, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_exact_across_replicas() {
    let a = spawn_app().await;
    let b = a.replica(Role::Api).await;
    let org = a.create_org("free").await; // 100 a minute
    // Both replicas know the key before the clock starts.
    assert_eq!(a.get(&org.key, "/api/keys").await.status(), 200);
    assert_eq!(b.get(&org.key, "/api/keys").await.status(), 200);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..10 {
        let (client, base, key) = (
            a.client.clone(),
            if worker % 2 == 0 {
                a.base.clone()
            } else {
                b.base.clone()
            },
            org.key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in 0..15 {
                let response = client
                    .post(format!("{base}/api/events"))
                    .header("x-api-key", &key)
                    .json(&json!({ "type": "burst", "payload": { "worker": worker, "n": n } }))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
                let remaining = response.headers()["x-ratelimit-remaining"]
                    .to_str()
                    .unwrap()
                    .to_owned();
                outcomes.push((status, retry_after, remaining));
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    // The two key checks above drew 2 from the same allowance.
    let accepted = outcomes.iter().filter(|(s, ..)| *s == 202).count();
    let limited = outcomes.iter().filter(|(s, ..)| *s == 429).count();
    assert_eq!(accepted + limited, 150, "only 202 or 429: {outcomes:?}");
    // One token comes back every 600 ms.
    let refill = (elapsed.as_millis() / 600) as usize + 1;
    assert!(accepted >= 98, "accepted {accepted}");
    assert!(
        accepted <= 98 + refill,
        "accepted {accepted} in {elapsed:?}: more than one allowance"
    );
    for (status, retry_after, remaining) in &outcomes {
        if *status == 429 {
            assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
            assert_eq!(remaining, "0");
        }
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_sent_to_the_other_replica_is_rejected() {
    let a = spawn_app().await;
    let b = a.replica(Role::Api).await;
    let org = a.create_org("pro").await;
    let body = json!({ "type": "payment", "dedup_id": "pay-42", "payload": { "amount": 10 } });

    let first = a.post_event(&org.key, &body).await;
    assert_eq!(first.status(), 202);
    let original: Value = first.json().await.unwrap();

    let second = b.post_event(&org.key, &body).await;
    assert_eq!(second.status(), 409);
    assert!(second.headers().contains_key("x-ratelimit-remaining"));
    let conflict: Value = second.json().await.unwrap();
    assert_eq!(conflict["code"], "duplicate");
    assert_eq!(conflict["original_id"], original["id"]);

    // Another dedup_id is another event.
    let other = json!({ "type": "payment", "dedup_id": "pay-43", "payload": { "amount": 10 } });
    assert_eq!(b.post_event(&org.key, &other).await.status(), 202);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_fails_on_the_other_replica_within_a_second() {
    let a = spawn_app().await;
    let b = a.replica(Role::Api).await;
    let org = a.create_org("pro").await;
    // Each replica has the key cached in memory.
    assert_eq!(a.get(&org.key, "/api/keys").await.status(), 200);
    assert_eq!(b.get(&org.key, "/api/keys").await.status(), 200);

    let rotated = a.post(&org.key, "/api/keys/rotate").await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.unwrap();
    let new_key = rotated["api_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, org.key);
    // The old key fails on the other replica within a second.
    eventually(Duration::from_secs(1), || async {
        b.get(&org.key, "/api/keys").await.status() == 401
    })
    .await;
    assert_eq!(a.get(&org.key, "/api/keys").await.status(), 401);
    // It stays rejected, and the new key works everywhere.
    never(4, Duration::from_millis(50), || async {
        b.get(&org.key, "/api/keys").await.status() != 401
    })
    .await;
    assert_eq!(b.get(&org.key, "/api/keys").await.status(), 401);
    for replica in [&a, &b] {
        let info = replica.get(&new_key, "/api/keys").await;
        assert_eq!(info.status(), 200);
        let info: Value = info.json().await.unwrap();
        let keys = info["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.iter().filter(|k| k["revoked_at"].is_null()).count(), 1);
        assert!(
            !info.to_string().contains(&new_key),
            "info must never show a key"
        );
    }
    // The old key cannot rotate again.
    assert_eq!(b.post(&org.key, "/api/keys/rotate").await.status(), 401);
    b.stop().await;
    a.stop().await;
}
