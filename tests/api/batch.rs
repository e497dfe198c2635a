//! Batch ingestion: each event admitted or refused on its own, in order,
//! counted against the limit, and stored like a single event.

use serde_json::{Value, json};

use crate::helpers::{TestApp, db, spawn_app, wait_archived};

async fn post_batch(app: &TestApp, key: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    app.client
        .post(app.url("/api/events/batch"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post batch")
}

fn batch(events: Vec<Value>) -> String {
    json!({ "events": events }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_event_of_a_batch_gets_its_own_answer_in_order() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let body = batch(vec![
        json!({ "type": "a", "dedup_id": "same", "payload": { "n": 1 } }),
        json!({ "type": "b", "payload": "not an object" }),
        json!({ "type": "c", "dedup_id": "same", "payload": { "n": 3 } }),
        json!({ "type": 5, "payload": {} }),
        json!({ "type": "e", "payload": { "s": "nul \u{0000}" } }),
        json!({ "type": "f", "payload": { "n": 6 } }),
    ]);
    let response = post_batch(&app, &org.key, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-ratelimit-limit"], "1000");
    let answer: Value = response.json().await.unwrap();
    let statuses: Vec<u64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [202, 422, 409, 422, 422, 202]);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["refused"], 4);
    let results = answer["results"].as_array().unwrap();
    let first = results[0]["id"].as_str().unwrap();
    // The duplicate names the event accepted earlier in the same batch.
    assert_eq!(results[2]["original_id"], first);
    assert_eq!(results[2]["code"], "duplicate");
    assert_eq!(results[1]["code"], "invalid");

    // Accepted events are stored like single ones, with what was sent.
    let db = db().await;
    let last = results[5]["id"].as_str().unwrap();
    for id in [first, last] {
        wait_archived(&db, id).await;
    }
    let event = app.event(&org.key, last).await;
    assert_eq!(event["type"], "f");
    assert_eq!(event["payload"], json!({ "n": 6 }));
    // The dedup id stays taken for single posts too.
    let again = app
        .post_event(
            &org.key,
            &json!({ "type": "a", "dedup_id": "same", "payload": {} }),
        )
        .await;
    assert_eq!(again.status(), 409);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_of_a_batch_counts_against_the_limit() {
    let app = spawn_app().await;
    let org = app.create_org("free").await; // 100 a minute
    // 60 invalid events, then 60 valid ones: the invalid ones use 60 of the
    // allowance, so 40 valid ones go through and 20 are refused.
    let mut events: Vec<Value> = (0..60)
        .map(|_| json!({ "type": "" , "payload": {} }))
        .collect();
    events.extend((0..60).map(|n| json!({ "type": "ok", "payload": { "n": n } })));
    let answer: Value = post_batch(&app, &org.key, batch(events))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["accepted"], 40);
    let results = answer["results"].as_array().unwrap();
    assert!(results[..60].iter().all(|r| r["status"] == 422));
    assert!(results[60..100].iter().all(|r| r["status"] == 202));
    assert!(results[100..].iter().all(|r| r["status"] == 429));

    // Nothing is left: a batch refused whole is a 429 with Retry-After.
    let refused = post_batch(
        &app,
        &org.key,
        batch(vec![json!({ "type": "late", "payload": {} })]),
    )
    .await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
    let single = app
        .post_event(&org.key, &json!({ "type": "late", "payload": {} }))
        .await;
    assert_eq!(single.status(), 429);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_is_told_the_batch_limit() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let body = batch(vec![
        json!({ "type": "t", "payload": { "p": "x".repeat(1100 * 1024) } }),
    ]);
    let response = post_batch(&app, &org.key, body).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["code"], "payload_too_large");
    let message = error["error"].as_str().expect("message");
    assert!(message.contains("1 MiB"), "{message}");
    // A single event's limit is its own.
    let single = json!({ "type": "big", "payload": { "blob": "x".repeat(256 * 1024) } });
    let response = app.post_event(&org.key, &single).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    let message = error["error"].as_str().expect("message");
    assert!(message.contains("256 KiB"), "{message}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_is_refused_whole_with_a_json_error() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let cases: Vec<(String, u16)> = vec![
        ("{not json".into(), 400),
        (r#"{"events": "nope"}"#.into(), 422),
        (batch(vec![]), 422),
        (
            batch(
                (0..1001)
                    .map(|_| json!({ "type": "t", "payload": {} }))
                    .collect(),
            ),
            422,
        ),
        // Over the 1 MiB batch limit.
        (
            batch(vec![
                json!({ "type": "t", "payload": { "p": "x".repeat(1100 * 1024) } }),
            ]),
            413,
        ),
    ];
    for (body, status) in cases {
        let response = post_batch(&app, &org.key, body).await;
        assert_eq!(response.status(), status);
        let error: Value = response.json().await.unwrap();
        assert!(error["error"].is_string(), "{error}");
    }
    // Bigger than a single event may be, but within the batch limit.
    let big = batch(
        (0..4)
            .map(|n| json!({ "type": "t", "payload": { "n": n, "p": "y".repeat(200 * 1024) } }))
            .collect(),
    );
    let response = post_batch(&app, &org.key, big).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 4);
    // Without a key, nothing is looked at.
    let anonymous = app
        .client
        .post(app.url("/api/events/batch"))
        .body(batch(vec![json!({ "type": "t", "payload": {} })]))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    app.stop().await;
}
