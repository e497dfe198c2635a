use serde_json::{Value, json};

use crate::helpers::{db, spawn_app, wait_archived};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_organization_never_sees_or_touches_another_organizations_events() {
    let app = spawn_app().await;
    let alice = app.create_org("pro").await;
    let mallory = app.create_org("pro").await;
    let secret = app
        .send(&alice.key, "private", json!({ "secret": true }))
        .await;
    let own = app.send(&mallory.key, "mine", json!({})).await;

    // Before archiving (served from the stream) and after (from Postgres).
    for archived in [false, true] {
        if archived {
            let db = db().await;
            wait_archived(&db, &secret).await;
            wait_archived(&db, &own).await;
        }
        let read = app
            .get(&mallory.key, &format!("/api/events/{secret}"))
            .await;
        assert_eq!(read.status(), 404, "archived: {archived}");
        let inbox: Value = app
            .get(&mallory.key, "/api/inbox?status=all")
            .await
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = inbox["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap())
            .collect();
        assert!(!ids.contains(&secret.as_str()), "archived: {archived}");
    }
    let ack = app.post(&mallory.key, &format!("/api/ack/{secret}")).await;
    assert_eq!(ack.status(), 404);

    // Alice's event is untouched by the attempt.
    let event: Value = app.event(&alice.key, &secret).await;
    assert_eq!(event["status"], "queued");

    // Dedup ids are per organization.
    let body = json!({ "type": "t", "dedup_id": "shared-id", "payload": {} });
    assert_eq!(app.post_event(&alice.key, &body).await.status(), 202);
    assert_eq!(app.post_event(&mallory.key, &body).await.status(), 202);

    // And so is organization info.
    let info: Value = app
        .get(&mallory.key, "/api/keys")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["organization_id"], mallory.id.as_str());
    app.stop().await;
}
