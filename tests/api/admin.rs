//! `triggers-api admin`: the real binary against the service's Postgres and
//! Redis, as an operator would run it.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{TestApp, eventually, spawn_app};

/// Runs `triggers-api admin <args>` in the app's world; (exit ok, stdout, stderr).
async fn admin(app: &TestApp, args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_triggers-api"))
        .arg("admin")
        .args(args)
        // The test service seals secrets with the development key.
        .env("TRIGGERS_ENV", "development")
        .env("TRIGGERS_REDIS_PREFIX", &app.config.shared.redis_prefix)
        .env(
            "TRIGGERS_STREAM_SHARDS",
            app.config.shared.stream_shards.to_string(),
        )
        .output()
        .await
        .expect("run triggers-api admin");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn admin_json(app: &TestApp, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let (ok, stdout, stderr) = admin(app, &with_json).await;
    assert!(ok, "admin {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("admin {args:?}: {e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_organizations_keys_events_and_streams() {
    let app = spawn_app().await;

    let created = admin_json(
        &app,
        &["orgs", "create", "--name", "ops-made", "--tier", "pro"],
    )
    .await;
    let org = created["organization_id"].as_str().expect("id").to_owned();
    let key = created["api_key"].as_str().expect("key").to_owned();
    assert_eq!(created["retention_days"], 30);
    let id = app
        .send(&key, "admin.test", serde_json::json!({ "n": 1 }))
        .await;

    // The shared test database holds every earlier run's organizations, oldest first.
    let listed = admin_json(&app, &["orgs", "list", "--limit", "1000000"]).await;
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .any(|o| o["organization_id"] == org.as_str())
    );

    // A tier change reaches the running service (its key cache is told).
    let moved = admin_json(&app, &["orgs", "set-tier", &org, "business"]).await;
    assert_eq!(moved[0]["tier"], "business");
    eventually(Duration::from_secs(10), || async {
        let info: Value = app.get(&key, "/api/keys").await.json().await.expect("info");
        info["rate_limit_per_minute"] == 10_000 && info["retention_days"] == 90
    })
    .await;

    let event = eventually(Duration::from_secs(15), || async {
        let (ok, stdout, _) = admin(&app, &["events", "get", &id, "--json"]).await;
        ok.then(|| serde_json::from_str::<Value>(&stdout).expect("event JSON"))
    })
    .await;
    assert_eq!(event["organization_id"], org.as_str());
    assert_eq!(event["payload"]["n"], 1);

    let streams = admin_json(&app, &["streams", "info"]).await;
    let groups: Vec<&str> = streams
        .as_array()
        .expect("streams")
        .iter()
        .flat_map(|s| s["groups"].as_array().into_iter().flatten())
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert!(
        groups.contains(&"archive") && groups.contains(&"delivery"),
        "{groups:?}"
    );

    let stats = admin_json(&app, &["dlq", "stats"]).await;
    assert!(stats.is_array());
    let replayed = admin(&app, &["dlq", "replay", "--org", &org]).await;
    assert!(!replayed.0, "replaying needs a webhook");
    assert!(replayed.2.contains("webhook"), "{}", replayed.2);

    // Revoking by prefix stops the key on the running service.
    let keys = admin_json(&app, &["keys", "list", "--org", &org]).await;
    let prefix = keys[0]["key_prefix"].as_str().expect("prefix").to_owned();
    assert!(key.starts_with(&prefix));
    let revoked = admin_json(&app, &["keys", "revoke", &prefix]).await;
    assert!(revoked["revoked_at"].is_string());
    eventually(Duration::from_secs(5), || async {
        app.get(&key, "/api/keys").await.status() == 401
    })
    .await;

    // Errors are one clear line and a failing exit status.
    let (ok, _, stderr) = admin(&app, &["events", "get", &uuid::Uuid::now_v7().to_string()]).await;
    assert!(!ok);
    assert!(stderr.contains("no archived event"), "{stderr}");
    let (ok, _, stderr) = admin(&app, &["orgs", "set-tier", &org, "gold"]).await;
    assert!(!ok);
    assert!(
        stderr.contains("use free, pro, business or enterprise"),
        "{stderr}"
    );
    let (ok, stdout, _) = admin(&app, &["orgs", "list"]).await;
    assert!(ok && stdout.contains("ops-made"), "a table by default");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orgs_create_refuses_the_names_the_api_refuses() {
    let app = spawn_app().await;
    // A NUL cannot reach a command through its arguments (they are C
    // strings); the rule it shares with the API is `Name::parse`'s.
    let long = "x".repeat(256);
    for name in ["", "   ", long.as_str()] {
        let (ok, stdout, stderr) = admin(&app, &["orgs", "create", "--name", name]).await;
        assert!(!ok, "{name:?} was accepted: {stdout}");
        assert!(stderr.contains("not blank"), "{name:?}: {stderr}");
        assert!(stderr.contains("NUL"), "{name:?}: {stderr}");
    }
    app.stop().await;
}

/// The marker a revoked key's cache entry holds, and its seconds to live.
async fn revocation_marker(app: &TestApp, key: &str) -> (Option<String>, i64) {
    use fred::prelude::*;
    let redis = crate::helpers::redis().await;
    let cache_key = triggers_api::redis::Keys::new(&app.config.shared.redis_prefix, 1)
        .api_key(&hex::encode(triggers_api::auth::keys::digest(key)));
    let value: Option<String> = redis.get(&cache_key).await.expect("GET");
    let ttl: i64 = redis.ttl(&cache_key).await.expect("TTL");
    (value, ttl)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_by_the_operator_is_refused_as_long_as_a_rotated_one() {
    let app = spawn_app().await;
    let rotated = app.create_org("pro").await;
    let revoked = app.create_org("pro").await;
    // Both keys in use, so both are cached as valid in Redis.
    for org in [&rotated, &revoked] {
        assert_eq!(app.get(&org.key, "/api/keys").await.status(), 200);
    }

    assert_eq!(
        app.post(&rotated.key, "/api/keys/rotate").await.status(),
        200
    );
    let lookup = triggers_api::auth::keys::lookup_of(&revoked.key).expect("a well-formed key");
    let (ok, _, stderr) = admin(&app, &["keys", "revoke", &format!("trg_{lookup}")]).await;
    assert!(ok, "{stderr}");
    eventually(Duration::from_secs(1), || async {
        app.get(&revoked.key, "/api/keys").await.status() == 401
    })
    .await;

    let (api_value, api_ttl) = revocation_marker(&app, &rotated.key).await;
    let (admin_value, admin_ttl) = revocation_marker(&app, &revoked.key).await;
    assert!(api_value.is_some(), "the rotation left no marker");
    assert_eq!(admin_value, api_value);
    // Written seconds apart, for the same lifetime: at least as long as a
    // verified key is cached (a day by default).
    let verified = app.config.key_caches.verified_ttl.as_secs() as i64;
    assert!(
        (api_ttl - admin_ttl).abs() <= 60,
        "rotation {api_ttl} s, admin {admin_ttl} s"
    );
    assert!(
        admin_ttl > verified - 60,
        "admin {admin_ttl} s < {verified} s"
    );
    app.stop().await;
}
