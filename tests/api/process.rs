//! The real binary: killed hard it loses nothing, stopped with SIGTERM it
//! exits cleanly, and its logs never contain a key.

use std::{process::Stdio, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{
    helpers::{db, eventually, unique_prefix, wait_archived},
    receiver::{Receiver, slow},
    world::World,
};

/// The binary running as a child process; dropped, it is killed.
pub struct Process {
    pub child: Child,
    pub base: String,
    pub log: std::path::PathBuf,
    /// Held so the world outlives the process.
    _world: Arc<World>,
}

impl Drop for Process {
    /// Kills the process and waits (bounded) until it is gone, so it writes
    /// no key after its world is cleaned up. Runs on every exit, panics
    /// included; a process already ended is left as it is.
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        for _ in 0..500 {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Ok(Some(_)) | Err(_) => break,
            }
        }
    }
}

async fn start(prefix: &str, name: &str) -> Process {
    start_with(prefix, name, &[]).await
}

pub async fn start_with(prefix: &str, name: &str, env: &[(&str, &str)]) -> Process {
    let world = World::join(prefix);
    let redis_url = match env.iter().find(|(name, _)| *name == "REDIS_URL") {
        Some((_, url)) => (*url).to_owned(),
        None => String::from(
            &*triggers_api::config::Config::from_env()
                .expect("configuration from the environment")
                .shared
                .redis_url,
        ),
    };
    world.uses_redis(&redis_url);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let log = std::env::temp_dir().join(format!("{prefix}-{name}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_triggers-api"))
        .arg("serve")
        .env("TRIGGERS_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRIGGERS_REDIS_PREFIX", prefix)
        .env("TRIGGERS_STREAM_SHARDS", "2")
        .env("TRIGGERS_VISIBILITY_TIMEOUT", "1s")
        .env("TRIGGERS_CONSUMER_NAME", format!("{prefix}-{name}"))
        .env("TRIGGERS_DB_POOL_SIZE", "4")
        .env("RUST_LOG", "debug")
        .env("TRIGGERS_ENV", "development")
        .env("TRIGGERS_ALLOW_OPEN_SIGNUP", "true")
        .envs(env.iter().copied())
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .expect("start triggers-api");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let process = Process {
        child,
        base,
        log,
        _world: world,
    };
    eventually(Duration::from_secs(30), || async {
        client
            .get(format!("{}/ready", process.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    process
}

/// A new organization on the process at `base`; returns its key.
pub async fn create_key(client: &reqwest::Client, base: &str) -> String {
    let created: Value = client
        .post(format!("{base}/api/keys/generate"))
        .json(&json!({ "organization_name": "process-test", "tier": "pro" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["api_key"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_accepted_event_and_sigterm_stops_cleanly() {
    let prefix = unique_prefix();
    let client = reqwest::Client::new();
    let mut first = start(&prefix, "first").await;

    let key = create_key(&client, &first.base).await;
    let mut ids = Vec::new();
    for n in 0..50 {
        let response = client
            .post(format!("{}/api/events", first.base))
            .header("x-api-key", &key)
            .json(&json!({ "type": "before.kill", "payload": { "n": n } }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        ids.push(
            response.json::<Value>().await.unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // SIGKILL: no chance to finish anything.
    first.child.kill().await.unwrap();

    let mut second = start(&prefix, "second").await;
    let db = db().await;
    for id in &ids {
        wait_archived(&db, id).await;
    }
    let rotated = client
        .post(format!("{}/api/keys/rotate", second.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), 200);
    let new_key = rotated.json::<Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_owned();

    let pid = second.child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(20), second.child.wait())
        .await
        .expect("stops within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    for process in [&first, &second] {
        let log = std::fs::read_to_string(&process.log).unwrap();
        assert!(!log.is_empty());
        assert!(!log.contains(&key), "an API key is in {:?}", process.log);
        assert!(
            !log.contains(&new_key),
            "an API key is in {:?}",
            process.log
        );
        let _ = std::fs::remove_file(&process.log);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_still_delivers_the_event() {
    let prefix = unique_prefix();
    let client = reqwest::Client::new();
    let env = [
        ("TRIGGERS_ALLOW_PRIVATE_WEBHOOKS", "true"),
        ("TRIGGERS_WEBHOOK_TIMEOUT", "1s"),
        ("TRIGGERS_RETRY_SCHEDULE", "30s"),
    ];
    let mut first = start_with(&prefix, "first", &env).await;
    let receiver = Receiver::start().await;
    // The first request hangs: the worker is killed while it waits.
    receiver.script(&[slow(200, Duration::from_secs(60))]);

    let key = create_key(&client, &first.base).await;
    let configured = client
        .post(format!("{}/api/webhook/config", first.base))
        .header("x-api-key", &key)
        .json(&json!({ "webhook_url": receiver.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(configured.status(), 200);
    let accepted: Value = client
        .post(format!("{}/api/events", first.base))
        .header("x-api-key", &key)
        .json(&json!({ "type": "mid.flight", "payload": { "x": 1 } }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), || async { receiver.count() == 1 }).await;
    first.child.kill().await.unwrap();

    // Another worker takes the entry over (after the request timeout has
    // surely passed) and delivers it; the receiver sees the same webhook-id.
    let _second = start_with(&prefix, "second", &env).await;
    eventually(Duration::from_secs(30), || async { receiver.count() == 2 }).await;
    let got = receiver.received();
    assert_eq!(got[0].headers["webhook-id"], id.as_str());
    assert_eq!(got[1].headers["webhook-id"], id.as_str());
    let db = db().await;
    eventually(Duration::from_secs(10), || async {
        let status: Option<String> = sqlx::query_scalar("SELECT status FROM events WHERE id = $1")
            .bind(id.parse::<uuid::Uuid>().unwrap())
            .fetch_optional(&db)
            .await
            .unwrap();
        status.as_deref() == Some("delivered")
    })
    .await;
    for process in [&first, &_second] {
        let _ = std::fs::remove_file(&process.log);
    }
}
