use serde_json::{Value, json};
use triggers_api::config::Role;

use crate::helpers::{db, spawn, spawn_app, test_config, unique_prefix, wait_archived};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_goes_from_202_to_the_inbox_and_is_acknowledged() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;

    let response = app
        .post_event(
            &org.key,
            &json!({ "type": "order.created", "dedup_id": "order-1", "payload": { "order": 1, "items": ["a"] } }),
        )
        .await;
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["type"], "order.created");
    assert_eq!(accepted["organization_id"], org.id.as_str());
    assert_eq!(accepted["status"], "queued");
    assert!(accepted["created_at"].as_str().unwrap().ends_with('Z'));

    // The id the client got is the stored event's id.
    let event: Value = app.event(&org.key, &id).await;
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["payload"], json!({ "order": 1, "items": ["a"] }));
    assert_eq!(event["dedup_id"], "order-1");

    let db = db().await;
    wait_archived(&db, &id).await;
    let inbox: Value = app.get(&org.key, "/api/inbox").await.json().await.unwrap();
    let events = inbox["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["id"], id.as_str());
    assert_eq!(events[0]["status"], "queued");
    assert_eq!(inbox["has_more"], false);
    assert_eq!(inbox["next_cursor"], Value::Null);

    let ack = app.post(&org.key, &format!("/api/ack/{id}")).await;
    assert_eq!(ack.status(), 200);
    let acked: Value = ack.json().await.unwrap();
    assert_eq!(acked["status"], "acknowledged");
    let first_ack_time = acked["acknowledged_at"].clone();
    assert!(first_ack_time.is_string());

    // Idempotent: a second ack changes nothing.
    let again: Value = app
        .post(&org.key, &format!("/api/ack/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "acknowledged");
    assert_eq!(again["acknowledged_at"], first_ack_time);

    // Acknowledged events leave the default inbox, and stay listed by status.
    let inbox: Value = app.get(&org.key, "/api/inbox").await.json().await.unwrap();
    assert_eq!(inbox["events"].as_array().unwrap().len(), 0);
    let acked_list: Value = app
        .get(&org.key, "/api/inbox?status=acknowledged")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(acked_list["events"][0]["id"], id.as_str());
    let event: Value = app.event(&org.key, &id).await;
    assert_eq!(event["status"], "acknowledged");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_readable_and_acknowledgeable_before_it_is_archived() {
    // An API-only deployment with no worker running: nothing archives.
    let mut config = test_config(&unique_prefix());
    config.process.role = Role::Api;
    let api = spawn(config).await;
    let org = api.create_org("free").await;
    let id = api
        .send(&org.key, "user.signup", json!({ "user": "ada" }))
        .await;
    let second = api
        .send(&org.key, "user.signup", json!({ "user": "bob" }))
        .await;

    let response = api.get(&org.key, &format!("/api/events/{id}")).await;
    assert_eq!(response.status(), 200);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["status"], "queued");
    assert_eq!(event["payload"]["user"], "ada");
    let db = db().await;
    assert_eq!(crate::helpers::archived_count(&db, &id).await, 0);

    let ack = api.post(&org.key, &format!("/api/ack/{id}")).await;
    assert_eq!(ack.status(), 200);
    assert_eq!(ack.json::<Value>().await.unwrap()["status"], "acknowledged");

    // The worker archives later; the acknowledgement is not undone and the
    // other event arrives as queued.
    let worker = api.replica(Role::Worker).await;
    wait_archived(&db, &second).await;
    let event: Value = api.event(&org.key, &id).await;
    assert_eq!(event["status"], "acknowledged");
    let event: Value = api.event(&org.key, &second).await;
    assert_eq!(event["status"], "queued");
    worker.stop().await;
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_walks_every_event_exactly_once_newest_first() {
    let app = spawn_app().await;
    let org = app.create_org("enterprise").await;
    let mut sent = Vec::new();
    for n in 0..230 {
        sent.push(app.send(&org.key, "tick", json!({ "n": n })).await);
    }
    let db = db().await;
    for id in &sent {
        wait_archived(&db, id).await;
    }

    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/inbox?limit=37&cursor={c}"),
            None => "/api/inbox?limit=37".to_owned(),
        };
        let page: Value = app.get(&org.key, &path).await.json().await.unwrap();
        pages += 1;
        for event in page["events"].as_array().unwrap() {
            seen.push(event["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
        assert!(pages < 20, "pagination does not end");
    }
    assert_eq!(pages, 7); // 6 full pages of 37 and one of 8
    let mut expected = sent.clone();
    expected.reverse();
    assert_eq!(seen, expected, "every event once, newest first");
    app.stop().await;
}
