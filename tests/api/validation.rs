//! Bad input: a JSON error with the right status, never a 500, and nothing
//! already accepted is lost.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, db, spawn, spawn_app, test_config, unique_prefix, wait_archived};

/// Sends a request and checks its status and that the body is our JSON error.
async fn expect_error(
    app: &TestApp,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<Vec<u8>>,
    status: u16,
) -> Value {
    let mut request = app.client.request(method.clone(), app.url(path));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), status, "{method} {path}");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "{method} {path}"
    );
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    assert!(body["code"].is_string(), "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_event_gets_its_status_and_a_json_error() {
    let app = spawn_app().await;
    let org = app.create_org("enterprise").await;
    let kept = app.send(&org.key, "kept", json!({ "k": 1 })).await;
    let long = "x".repeat(256);

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{\"type\": ".to_vec(), 400, "malformed_json"),
        (b"not json".to_vec(), 400, "malformed_json"),
        (b"".to_vec(), 400, "malformed_json"),
        (b"[1,2]".to_vec(), 422, "invalid"),
        (b"{\"payload\":{}}".to_vec(), 422, "invalid"),
        (b"{\"type\":7,\"payload\":{}}".to_vec(), 422, "invalid"),
        (b"{\"type\":\"\",\"payload\":{}}".to_vec(), 422, "invalid"),
        (
            b"{\"type\":\"   \",\"payload\":{}}".to_vec(),
            422,
            "invalid",
        ),
        (
            json!({ "type": long, "payload": {} })
                .to_string()
                .into_bytes(),
            422,
            "invalid",
        ),
        (b"{\"type\":\"t\"}".to_vec(), 422, "invalid"),
        // Postgres cannot store it: accepted, it could never be archived.
        (
            b"{\"type\":\"t\",\"payload\":{\"n\":1e200000}}".to_vec(),
            422,
            "invalid",
        ),
        (b"{\"type\":\"t\",\"payload\":[1]}".to_vec(), 422, "invalid"),
        (
            b"{\"type\":\"t\",\"payload\":\"s\"}".to_vec(),
            422,
            "invalid",
        ),
        (
            b"{\"type\":\"t\",\"payload\":null}".to_vec(),
            422,
            "invalid",
        ),
        (
            b"{\"type\":\"t\",\"payload\":{},\"dedup_id\":5}".to_vec(),
            422,
            "invalid",
        ),
        (
            b"{\"type\":\"t\",\"payload\":{},\"dedup_id\":\"\"}".to_vec(),
            422,
            "invalid",
        ),
        (
            json!({ "type": "t", "payload": {}, "dedup_id": long })
                .to_string()
                .into_bytes(),
            422,
            "invalid",
        ),
        // Postgres cannot store U+0000: refused before it is accepted.
        (
            br#"{"type":"t","payload":{"a":{"b":"x\u0000"}}}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            br#"{"type":"t\u0000","payload":{}}"#.to_vec(),
            422,
            "invalid",
        ),
        (
            br#"{"type":"t","payload":{},"dedup_id":"\u0000"}"#.to_vec(),
            422,
            "invalid",
        ),
    ];
    for (body, status, code) in cases {
        let shown = String::from_utf8_lossy(&body)
            .chars()
            .take(60)
            .collect::<String>();
        let error = expect_error(
            &app,
            Method::POST,
            "/api/events",
            Some(&org.key),
            Some(body),
            status,
        )
        .await;
        assert_eq!(error["code"], code, "{shown}");
    }

    // Just over 256 KiB.
    let huge = json!({ "type": "big", "payload": { "blob": "x".repeat(256 * 1024) } });
    let error = expect_error(
        &app,
        Method::POST,
        "/api/events",
        Some(&org.key),
        Some(huge.to_string().into_bytes()),
        413,
    )
    .await;
    assert_eq!(error["code"], "payload_too_large");
    // Just under it is fine.
    let fits = json!({ "type": "big", "payload": { "blob": "x".repeat(255 * 1024) } });
    assert_eq!(app.post_event(&org.key, &fits).await.status(), 202);

    // Invalid requests still count against the limit and say so.
    let response = app
        .client
        .post(app.url("/api/events"))
        .header("x-api-key", &org.key)
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(response.headers()["x-ratelimit-limit"], "100000");

    // Text that merely looks like the escape is fine, and archives.
    let lookalike = app
        .post_event(
            &org.key,
            &serde_json::from_str(r#"{"type":"t","payload":{"a":"\\u0000"}}"#).unwrap(),
        )
        .await;
    assert_eq!(lookalike.status(), 202);
    let lookalike: Value = lookalike.json().await.unwrap();
    wait_archived(&db().await, lookalike["id"].as_str().unwrap()).await;

    // Nothing accepted before was lost.
    wait_archived(&db().await, &kept).await;
    let event = app.get(&org.key, &format!("/api/events/{kept}")).await;
    assert_eq!(event.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_routes_and_queries_get_json_errors() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let event = Some(br#"{"type":"t","payload":{}}"#.to_vec());

    // Keys.
    expect_error(&app, Method::POST, "/api/events", None, event.clone(), 401).await;
    expect_error(
        &app,
        Method::POST,
        "/api/events",
        Some("nonsense"),
        event.clone(),
        401,
    )
    .await;
    let forged = format!("{}A", &org.key[..org.key.len() - 1]);
    let forged = if forged == org.key {
        format!("{}B", &org.key[..org.key.len() - 1])
    } else {
        forged
    };
    expect_error(
        &app,
        Method::POST,
        "/api/events",
        Some(&forged),
        event.clone(),
        401,
    )
    .await;
    expect_error(&app, Method::GET, "/api/inbox", Some(""), None, 401).await;
    expect_error(
        &app,
        Method::GET,
        "/api/keys",
        Some("trg_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        None,
        401,
    )
    .await;
    // Bearer works like X-API-Key.
    let response = app
        .client
        .get(app.url("/api/keys"))
        .bearer_auth(&org.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // Routes and methods.
    expect_error(
        &app,
        Method::GET,
        "/api/nothing-here",
        Some(&org.key),
        None,
        404,
    )
    .await;
    expect_error(
        &app,
        Method::DELETE,
        "/api/events",
        Some(&org.key),
        None,
        405,
    )
    .await;
    expect_error(
        &app,
        Method::GET,
        "/api/ack/whatever",
        Some(&org.key),
        None,
        405,
    )
    .await;

    // Ids.
    expect_error(
        &app,
        Method::GET,
        "/api/events/not-a-uuid",
        Some(&org.key),
        None,
        404,
    )
    .await;
    let unknown = uuid::Uuid::now_v7();
    expect_error(
        &app,
        Method::GET,
        &format!("/api/events/{unknown}"),
        Some(&org.key),
        None,
        404,
    )
    .await;
    expect_error(
        &app,
        Method::POST,
        &format!("/api/ack/{unknown}"),
        Some(&org.key),
        None,
        404,
    )
    .await;

    // Inbox parameters.
    for query in [
        "limit=0",
        "limit=1001",
        "limit=abc",
        "limit=-1",
        "status=bogus",
        "status=queued,nope",
    ] {
        expect_error(
            &app,
            Method::GET,
            &format!("/api/inbox?{query}"),
            Some(&org.key),
            None,
            422,
        )
        .await;
    }
    expect_error(
        &app,
        Method::GET,
        "/api/inbox?cursor=%%%",
        Some(&org.key),
        None,
        400,
    )
    .await;
    expect_error(
        &app,
        Method::GET,
        "/api/inbox?cursor=AAAA",
        Some(&org.key),
        None,
        400,
    )
    .await;
    let ok = app
        .get(&org.key, "/api/inbox?limit=1000&status=queued,dead_letter")
        .await;
    assert_eq!(ok.status(), 200);

    // Organization creation.
    for (body, status) in [
        (json!({ "tier": "free" }), 422),
        (json!({ "organization_name": "", "tier": "free" }), 422),
        (json!({ "organization_name": "x".repeat(256) }), 422),
        (json!({ "organization_name": "a", "tier": "platinum" }), 422),
        (json!({ "organization_name": 5 }), 422),
        (json!({ "organization_name": "nul\u{0}" }), 422),
    ] {
        expect_error(
            &app,
            Method::POST,
            "/api/keys/generate",
            None,
            Some(body.to_string().into_bytes()),
            status,
        )
        .await;
    }
    expect_error(
        &app,
        Method::POST,
        "/api/keys/generate",
        None,
        Some(b"{".to_vec()),
        400,
    )
    .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_token_guards_organization_creation() {
    let mut config = test_config(&unique_prefix());
    config.api.admin_token = Some("s3cret-admin".into());
    let app = spawn(config).await;
    let body = json!({ "organization_name": "guarded", "tier": "free" });
    for (token, status) in [
        (None, 401),
        (Some("s3cret-admiN"), 401),
        (Some("s3cret-admin"), 201),
    ] {
        let mut request = app.client.post(app.url("/api/keys/generate")).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        assert_eq!(request.send().await.unwrap().status(), status, "{token:?}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_name_is_refused_naming_its_field() {
    let app = spawn_app().await;
    let org = app.create_org("pro").await;
    let long = "x".repeat(256);
    let bad_names = ["", "   ", "nul\u{0}", long.as_str()];
    for name in bad_names {
        let routes = [
            (
                "/api/events",
                json!({ "type": name, "payload": {} }),
                "`type`",
            ),
            (
                "/api/events/batch",
                json!({ "events": [{ "type": name, "payload": {} }] }),
                "`type`",
            ),
            ("/api/inbox/lease", json!({ "type": name }), "`type`"),
            (
                "/api/keys/generate",
                json!({ "organization_name": name }),
                "`organization_name`",
            ),
        ];
        for (path, body, field) in routes {
            let response = app
                .client
                .post(app.url(path))
                .header("x-api-key", &org.key)
                .json(&body)
                .send()
                .await
                .expect("request");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON");
            // The batch answers per event; everything else refuses the request.
            let error = if path == "/api/events/batch" {
                assert_eq!(status, 200, "{path} {name:?}");
                body["results"][0].clone()
            } else {
                assert_eq!(status, 422, "{path} {name:?}: {body}");
                body
            };
            assert_eq!(error["code"], "invalid", "{path} {name:?}: {error}");
            let message = error["error"].as_str().expect("message");
            assert!(message.contains(field), "{path} {name:?}: {message}");
            assert!(message.contains("not blank"), "{path} {name:?}: {message}");
        }
    }
    app.stop().await;
}
