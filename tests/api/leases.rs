//! Leases for pull consumers: lease, ack, release, expiry, quarantine, and
//! no event in two leases at once across processes and replicas.

use std::{collections::HashSet, time::Duration};

use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, db, eventually, spawn, spawn_app, test_config, unique_prefix},
    process::start_with,
};

async fn lease(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/inbox/lease"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .expect("lease")
}

async fn leased(app: &TestApp, key: &str, body: Value) -> Value {
    let response = lease(app, key, body).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("lease JSON")
}

async fn act(app: &TestApp, key: &str, action: &str, body: Value) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/api/inbox/{action}")))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .expect("ack or release");
    assert_eq!(response.status(), 200, "{action}");
    response.json().await.expect("JSON")
}

fn ids(lease: &Value) -> Vec<String> {
    lease["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Sends `n` events and waits until all are archived (leasable).
async fn send_archived(app: &TestApp, key: &str, event_type: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::with_capacity(n);
    for i in 0..n {
        sent.push(app.send(key, event_type, json!({ "n": i })).await);
    }
    let db = db().await;
    let uuids: Vec<uuid::Uuid> = sent.iter().map(|id| id.parse().expect("uuid")).collect();
    eventually(Duration::from_secs(20), || async {
        let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id = ANY($1)")
            .bind(&uuids)
            .fetch_one(&db)
            .await
            .expect("count");
        archived == n as i64
    })
    .await;
    sent
}

#[tokio::test]
async fn a_lease_holds_its_events_until_they_are_acknowledged_or_released() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let sent = send_archived(&app, &org.key, "order.created", 5).await;

    let first = leased(&app, &org.key, json!({ "limit": 3, "lease_seconds": 300 })).await;
    assert_eq!(ids(&first), sent[..3], "oldest first");
    assert!(first["leased_until"].is_string());
    assert_eq!(first["events"][0]["lease_count"], 1);
    let second = leased(&app, &org.key, json!({ "limit": 10 })).await;
    assert_eq!(ids(&second), sent[3..], "only what no lease holds");
    let empty = leased(&app, &org.key, json!({})).await;
    assert_eq!(ids(&empty), Vec::<String>::new());

    // Ack two of the first lease's events; name one it does not hold.
    let acked = act(
        &app,
        &org.key,
        "ack",
        json!({ "lease_id": first["lease_id"], "event_ids": [sent[0], sent[1], sent[4]] }),
    )
    .await;
    assert_eq!(acked["acknowledged"].as_array().map(Vec::len), Some(2));
    assert_eq!(acked["not_held"], json!([sent[4]]));
    assert_eq!(
        app.event(&org.key, &sent[0]).await["status"],
        "acknowledged"
    );

    // Release the rest of the first lease: available again at once.
    let released = act(
        &app,
        &org.key,
        "release",
        json!({ "lease_id": first["lease_id"] }),
    )
    .await;
    assert_eq!(released["released"], json!([sent[2]]));
    let again = leased(&app, &org.key, json!({})).await;
    assert_eq!(ids(&again), vec![sent[2].clone()]);
    assert_eq!(again["events"][0]["lease_count"], 2, "a release counts");

    // The second lease acks all it holds without naming them.
    let all = act(
        &app,
        &org.key,
        "ack",
        json!({ "lease_id": second["lease_id"] }),
    )
    .await;
    assert_eq!(all["acknowledged"].as_array().map(Vec::len), Some(2));
    app.stop().await;
}

#[tokio::test]
async fn an_expired_lease_gives_its_events_back_and_a_type_narrows_a_lease() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let orders = send_archived(&app, &org.key, "order.created", 2).await;
    let refunds = send_archived(&app, &org.key, "refund.created", 1).await;

    let only_refunds = leased(
        &app,
        &org.key,
        json!({ "type": "refund.created", "lease_seconds": 1 }),
    )
    .await;
    assert_eq!(ids(&only_refunds), refunds);
    let short = leased(&app, &org.key, json!({ "lease_seconds": 1 })).await;
    assert_eq!(ids(&short), orders);

    // Each lease gives its events back when it expires, not before.
    let mut expected = [orders, refunds].concat();
    expected.sort();
    let mut back = Vec::new();
    for _ in 0..500 {
        let next = leased(&app, &org.key, json!({ "lease_seconds": 300 })).await;
        back.extend(ids(&next));
        if back.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    back.sort();
    assert_eq!(back, expected);
    // The expired lease still acks what nobody has leased since: nothing.
    let late = act(
        &app,
        &org.key,
        "ack",
        json!({ "lease_id": short["lease_id"] }),
    )
    .await;
    assert_eq!(late["acknowledged"], json!([]));
    app.stop().await;
}

#[tokio::test]
async fn an_event_leased_too_often_is_quarantined_until_replayed() {
    let mut config = test_config(&unique_prefix());
    config.api.max_leases = 2;
    let app = spawn(config).await;
    let org = app.create_org("pro").await;
    let poison = send_archived(&app, &org.key, "poison", 1).await.remove(0);

    for round in 1..=2 {
        let held = leased(&app, &org.key, json!({})).await;
        assert_eq!(ids(&held), vec![poison.clone()], "lease {round}");
        act(
            &app,
            &org.key,
            "release",
            json!({ "lease_id": held["lease_id"] }),
        )
        .await;
    }
    // A third lease would exceed the limit: quarantined instead.
    let third = leased(&app, &org.key, json!({})).await;
    assert_eq!(ids(&third), Vec::<String>::new());
    assert_eq!(app.event(&org.key, &poison).await["status"], "quarantined");
    let listed: Value = app
        .get(&org.key, "/api/inbox?status=quarantined")
        .await
        .json()
        .await
        .expect("inbox");
    assert_eq!(listed["events"][0]["id"], poison.as_str());
    let default_view: Value = app
        .get(&org.key, "/api/inbox")
        .await
        .json()
        .await
        .expect("inbox");
    assert_eq!(default_view["events"][0]["status"], "quarantined");

    // Replay returns it to the inbox with a clean count (no webhook needed).
    let replayed = app
        .post(&org.key, &format!("/api/events/{poison}/replay"))
        .await;
    assert_eq!(replayed.status(), 202);
    let back = leased(&app, &org.key, json!({})).await;
    assert_eq!(ids(&back), vec![poison.clone()]);
    assert_eq!(back["events"][0]["lease_count"], 1);
    app.stop().await;
}

#[tokio::test]
async fn lease_requests_out_of_bounds_are_refused_with_422() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    for body in [
        json!({ "limit": 0 }),
        json!({ "limit": 101 }),
        json!({ "lease_seconds": 0 }),
        json!({ "lease_seconds": 3601 }),
        json!({ "limit": 1.5 }),
        json!({ "type": "" }),
    ] {
        let response = lease(&app, &org.key, body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
    }
    assert_eq!(
        leased(&app, &org.key, json!({ "limit": 2.0 })).await["events"],
        json!([])
    );
    for body in [
        json!({ "lease_id": "not-a-uuid" }),
        json!({ "lease_id": uuid::Uuid::now_v7(), "event_ids": [] }),
        json!({}),
    ] {
        let response = app
            .client
            .post(app.url("/api/inbox/ack"))
            .header("x-api-key", &org.key)
            .json(&body)
            .send()
            .await
            .expect("ack");
        assert_eq!(response.status(), 422, "{body}");
    }
    let malformed = app
        .client
        .post(app.url("/api/inbox/release"))
        .header("x-api-key", &org.key)
        .body("{")
        .send()
        .await
        .expect("release");
    assert_eq!(malformed.status(), 400);
    app.stop().await;
}

/// Leases, then acks, until the inbox is drained; returns every id leased.
async fn consume(client: reqwest::Client, base: String, key: String) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..500 {
        let response = client
            .post(format!("{base}/api/inbox/lease"))
            .header("x-api-key", &key)
            .json(&json!({ "limit": 7, "lease_seconds": 300 }))
            .send()
            .await
            .expect("lease");
        assert_eq!(response.status(), 200);
        let lease: Value = response.json().await.expect("lease JSON");
        let got = ids(&lease);
        if got.is_empty() {
            return seen;
        }
        let acked: Value = client
            .post(format!("{base}/api/inbox/ack"))
            .header("x-api-key", &key)
            .json(&json!({ "lease_id": lease["lease_id"] }))
            .send()
            .await
            .expect("ack")
            .json()
            .await
            .expect("ack JSON");
        assert_eq!(
            acked["acknowledged"].as_array().map(Vec::len),
            Some(got.len()),
            "a lease acks everything it holds"
        );
        seen.extend(got);
    }
    panic!("the inbox did not drain within 500 leases");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_consumers_on_several_processes_never_share_an_event() {
    let app = spawn_app().await;
    let prefix = app.config.shared.redis_prefix.clone();
    let replica = app.replica(triggers_api::config::Role::Api).await;
    let api = [("TRIGGERS_ROLE", "api")];
    let first = start_with(&prefix, "lease-a", &api).await;
    let second = start_with(&prefix, "lease-b", &api).await;
    let org = app.create_org("enterprise").await;
    let sent = send_archived(&app, &org.key, "job", 300).await;

    let bases = [
        app.base.clone(),
        replica.base.clone(),
        first.base.clone(),
        second.base.clone(),
    ];
    let consumers: Vec<_> = bases
        .iter()
        .cycle()
        .take(8)
        .map(|base| tokio::spawn(consume(app.client.clone(), base.clone(), org.key.clone())))
        .collect();
    let mut all = Vec::new();
    for consumer in consumers {
        all.extend(consumer.await.expect("consumer"));
    }
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(
        unique.len(),
        all.len(),
        "an event was in two leases at once"
    );
    assert_eq!(unique, sent.iter().collect::<HashSet<_>>());

    for process in [&first, &second] {
        let _ = std::fs::remove_file(&process.log);
    }
    replica.stop().await;
    app.stop().await;
}

/// An ack or release with `lease_id`: its status and body.
async fn try_act(app: &TestApp, key: &str, action: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(&format!("/api/inbox/{action}")))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .expect("ack or release");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_lease_id_never_issued_to_the_organization_is_404() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let other = app.create_org("pro").await;
    let sent = send_archived(&app, &other.key, "order.created", 1).await;
    let theirs = leased(&app, &other.key, json!({ "lease_seconds": 300 })).await;
    assert_eq!(ids(&theirs), sent);
    // An empty lease is issued all the same.
    let empty = leased(&app, &org.key, json!({})).await;

    for action in ["ack", "release"] {
        let unknown = uuid::Uuid::now_v7();
        let (status, body) = try_act(&app, &org.key, action, json!({ "lease_id": unknown })).await;
        assert_eq!(status, 404, "{action} of an unknown lease: {body}");
        assert_eq!(body["code"], "not_found");
        // Named events change nothing either.
        let (status, body) = try_act(
            &app,
            &org.key,
            action,
            json!({ "lease_id": theirs["lease_id"], "event_ids": sent }),
        )
        .await;
        assert_eq!(
            status, 404,
            "{action} of another organization's lease: {body}"
        );
        assert_eq!(body["code"], "not_found");
        let (status, body) = try_act(
            &app,
            &org.key,
            action,
            json!({ "lease_id": empty["lease_id"] }),
        )
        .await;
        assert_eq!(status, 200, "{action} of an empty lease of its own: {body}");
    }
    // The other organization's lease still holds its event.
    let acked = act(
        &app,
        &other.key,
        "ack",
        json!({ "lease_id": theirs["lease_id"] }),
    )
    .await;
    assert_eq!(acked["acknowledged"], json!(sent));
    app.stop().await;
}

#[tokio::test]
async fn an_expired_or_finished_lease_of_its_own_says_what_it_no_longer_holds() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let sent = send_archived(&app, &org.key, "order.created", 2).await;
    let short = leased(&app, &org.key, json!({ "lease_seconds": 1 })).await;
    assert_eq!(ids(&short), sent);
    // Expired, and leased again by another consumer.
    let next = eventually(Duration::from_secs(10), || async {
        let next = leased(&app, &org.key, json!({ "lease_seconds": 300 })).await;
        (!ids(&next).is_empty()).then_some(next)
    })
    .await;
    assert_eq!(ids(&next), sent);
    for action in ["ack", "release"] {
        let (status, body) = try_act(
            &app,
            &org.key,
            action,
            json!({ "lease_id": short["lease_id"], "event_ids": sent }),
        )
        .await;
        assert_eq!(status, 200, "{action} of an expired lease: {body}");
        assert_eq!(body["not_held"], json!(sent), "{action}");
    }
    // Finished: everything acknowledged, then named again.
    let done = act(
        &app,
        &org.key,
        "ack",
        json!({ "lease_id": next["lease_id"] }),
    )
    .await;
    assert_eq!(done["acknowledged"].as_array().map(Vec::len), Some(2));
    let (status, body) = try_act(
        &app,
        &org.key,
        "ack",
        json!({ "lease_id": next["lease_id"], "event_ids": sent }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acknowledged"], json!([]));
    assert_eq!(body["not_held"], json!(sent));
    app.stop().await;
}
