//! What an unauthenticated or hostile client can make the service do:
//! key guessing, slow and oversized clients, and what a database dump shows.

use std::time::{Duration, Instant};

use rand::{Rng, distributions::Alphanumeric};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    helpers::{db, eventually, spawn, test_config, unique_prefix},
    process::start_with,
};

/// The value of a counter or gauge series in a Prometheus scrape (0 if absent).
fn series(scrape: &str, prefix: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn random_secret() -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(43)
        .map(char::from)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_flood_is_bounded_and_the_keys_owner_is_still_served() {
    const THREADS: u64 = 2;
    const PER_PREFIX: u64 = 5;
    let prefix = unique_prefix();
    let env = [
        ("TRIGGERS_KEY_HASH_THREADS", "2"),
        ("TRIGGERS_KEY_HASH_QUEUE", "2"),
        ("TRIGGERS_AUTH_FAILURES_PER_PREFIX", "5"),
        ("TRIGGERS_AUTH_FAILURES_PER_ADDRESS", "100000"),
        ("RUST_LOG", "info"),
    ];
    let process = start_with(&prefix, "flood", &env).await;
    let pid = process.child.id().expect("running");
    let client = reqwest::Client::new();
    let base = process.base.clone();
    let created: Value = client
        .post(format!("{base}/api/keys/generate"))
        .json(&json!({ "organization_name": "flooded", "tier": "enterprise" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["api_key"].as_str().unwrap().to_owned();
    let lookup = created["key_prefix"].as_str().unwrap().to_owned();
    let post = {
        let (client, base) = (client.clone(), base.clone());
        move |key: String| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                client
                    .post(format!("{base}/api/events"))
                    .header("x-api-key", key)
                    .json(&json!({ "type": "flood", "payload": {} }))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        }
    };
    // The owner has used the key: it is cached from now on.
    assert_eq!(post(key.clone()).await.unwrap(), 202);
    let before = rss_kib(pid);

    // 32 connections, 25 guesses each, all against the owner's prefix.
    let attackers: Vec<_> = (0..32)
        .map(|_| {
            let post = post.clone();
            let guess_prefix = lookup.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for _ in 0..25 {
                    let guess = format!("{guess_prefix}_{}", random_secret());
                    statuses.push(post(guess).await.unwrap_or(0));
                }
                statuses
            })
        })
        .collect();
    let mut honest = Vec::new();
    let mut peak = before;
    for _ in 0..20 {
        let started = Instant::now();
        honest.push((post(key.clone()).await.unwrap(), started.elapsed()));
        peak = peak.max(rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut answered = std::collections::BTreeMap::new();
    for attacker in attackers {
        for status in attacker.await.unwrap() {
            *answered.entry(status).or_insert(0u32) += 1;
        }
    }
    let after = rss_kib(pid);
    let scrape = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hashes = series(
        &scrape,
        "triggers_auth_key_hashes_total{purpose=\"verify\"}",
    );
    eprintln!(
        "flood: answers {answered:?}; argon2 verifications {hashes}; RSS {before} KiB before, \
         {peak} KiB peak, {after} KiB after; honest {:?}",
        honest
            .iter()
            .map(|(_, t)| t.as_millis())
            .collect::<Vec<_>>()
    );

    // Every guess was answered, none let in, none left hanging.
    assert!(
        answered.keys().all(|s| [401, 429, 503].contains(s)),
        "{answered:?}"
    );
    assert_eq!(answered.values().sum::<u32>(), 32 * 25);
    assert!(
        answered.get(&429).copied().unwrap_or(0) >= 700,
        "{answered:?}"
    );
    // argon2 ran for the owner's first request and for at most the limit
    // of guesses, whatever their concurrency.
    assert!(hashes as u64 <= PER_PREFIX + 1, "{hashes} verifications");
    // The owner was never refused.
    assert!(honest.iter().all(|(s, _)| *s == 202), "{honest:?}");
    // Memory: at most a hashing buffer (7 MiB) per thread on top.
    let bound = before + THREADS * 8 * 1024 + 64 * 1024;
    assert!(
        peak < bound && after < bound,
        "RSS {before} -> {peak} -> {after} KiB"
    );
    let _ = std::fs::remove_file(&process.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_guesses_are_not_counted_as_database_lookups() {
    const LIMIT: u32 = 3;
    const GUESSES: u32 = 20;
    let prefix = unique_prefix();
    // A process of its own: its metrics count this test's requests only.
    let env = [
        ("TRIGGERS_AUTH_FAILURES_PER_PREFIX", "3"),
        ("TRIGGERS_AUTH_FAILURES_PER_ADDRESS", "100000"),
    ];
    let process = start_with(&prefix, "lookups", &env).await;
    let client = reqwest::Client::new();
    let key = crate::process::create_key(&client, &process.base).await;
    let lookup = triggers_api::auth::keys::lookup_of(&key).expect("a well-formed key");
    let mut refused = 0;
    for _ in 0..GUESSES {
        let status = client
            .get(format!("{}/api/keys", process.base))
            .header("x-api-key", format!("trg_{lookup}_{}", random_secret()))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status == 401 || status == 429, "{status}");
        refused += u32::from(status == 429);
    }
    assert_eq!(refused, GUESSES - LIMIT);
    let scrape = client
        .get(format!("{}/metrics", process.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let database = series(&scrape, "triggers_auth_lookups_total{source=\"database\"}");
    let refusals = series(
        &scrape,
        "triggers_auth_refused_total{reason=\"prefix_failures\"}",
    );
    // Postgres saw the guesses the limiter let through, nothing more.
    assert_eq!(database, f64::from(LIMIT), "database lookups");
    assert_eq!(refusals, f64::from(GUESSES - LIMIT));
    let _ = std::fs::remove_file(&process.log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_guessing_many_prefixes_is_refused_unhashed() {
    let mut config = test_config(&unique_prefix());
    config.auth_limits.failures_per_address = 5;
    let app = spawn(config).await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let guess = format!("trg_{:016x}_{}", rand::random::<u64>(), random_secret());
        statuses.push(
            app.post_event(&guess, &json!({ "type": "x", "payload": {} }))
                .await,
        );
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&codes[..5], &[401; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|&c| c == 429), "{codes:?}");
    let refused = statuses.last().unwrap();
    assert!(refused.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_is_closed_unless_opened_or_given_the_token() {
    let mut config = test_config(&unique_prefix());
    config.security.allow_open_signup = false;
    let app = spawn(config).await;
    let refused = app
        .client
        .post(app.url("/api/keys/generate"))
        .json(&json!({ "organization_name": "nobody", "tier": "free" }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    app.stop().await;
}

/// A service with short client timeouts, for the slow-client tests.
async fn strict_app(max_connections: u32, header_timeout: Duration) -> crate::helpers::TestApp {
    let mut config = test_config(&unique_prefix());
    config.http_limits.header_timeout = header_timeout;
    config.http_limits.body_timeout = Duration::from_secs(1);
    config.http_limits.max_header_bytes = 16 * 1024;
    config.http_limits.max_connections = max_connections;
    spawn(config).await
}

fn address(app: &crate::helpers::TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Whether the server closes `stream` within `limit` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slowloris_and_kept_alive_connections_are_closed() {
    let app = strict_app(1000, Duration::from_secs(1)).await;
    let addr = address(&app);
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(b"POST /api/events HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // Slowloris: a header byte every 200 ms, never finishing the head.
    let trickle = tokio::spawn(async move {
        let mut closed = 0;
        for stream in &mut slow {
            let _ = stream.write_all(b"X-A: ").await;
        }
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for stream in &mut slow {
                let _ = stream.write_all(b"a").await;
            }
        }
        for stream in &mut slow {
            if closed_within(stream, Duration::from_millis(100)).await {
                closed += 1;
            }
        }
        closed
    });
    let mut closed_idle = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_secs(3)).await {
            closed_idle += 1;
        }
    }
    assert_eq!(closed_idle, 20, "idle connections left open");
    assert_eq!(trickle.await.unwrap(), 5, "slowloris connections left open");

    // A kept-alive connection, idle after its request, is closed too.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431_and_slow_bodies_408() {
    let app = strict_app(1000, Duration::from_secs(5)).await;
    let org = app.create_org("pro").await;
    let big = app
        .client
        .post(app.url("/api/events"))
        .header("x-api-key", &org.key)
        .header("x-padding", "a".repeat(20 * 1024))
        .json(&json!({ "type": "big", "payload": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 431);

    // 100 KB announced, 1 KiB sent every 100 ms: too slow for the 1 s limit.
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = format!(
        "POST /api/events HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
        org.key
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let writer = tokio::spawn(async move {
        let (mut reader, mut writer) = stream.into_split();
        let sending = async {
            for _ in 0..50 {
                if writer.write_all(&[b' '; 1024]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let mut answer = Vec::new();
        let reading = async {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        };
        tokio::select! { () = sending => {}, () = reading => {} }
        String::from_utf8_lossy(&answer).into_owned()
    });
    let answer = tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .expect("answered before the body was complete")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    // Five slots: the test client's pooled connection from start-up holds one.
    let app = strict_app(5, Duration::from_secs(30)).await;
    let addr = address(&app);
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // Let the server take all four before the fifth knocks.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await);
    drop(held.pop());
    let served = eventually(Duration::from_secs(5), || async {
        let mut stream = TcpStream::connect(&addr).await.ok()?;
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head)
    })
    .await;
    assert_eq!(&served, b"HTTP/1.1 200");
    drop(held);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_secrets_are_sealed_at_rest_and_survive_a_key_rotation() {
    use triggers_api::sealing::Sealer;

    use crate::receiver::Receiver;

    let old_key = Sealer::new_key_spec("old");
    let prefix = unique_prefix();
    let sealed_config = |keys: String| {
        let mut config = test_config(&prefix);
        config.webhooks.allow_private_webhooks = true;
        config.security.environment = triggers_api::config::Environment::Production;
        config.security.secret_keys = Some(keys.into());
        config
    };
    let app = spawn(sealed_config(old_key.clone())).await;
    let receiver = Receiver::start().await;
    let org = app.create_org("pro").await;
    let configured: Value = app
        .client
        .post(app.url("/api/webhook/config"))
        .header("x-api-key", &org.key)
        .json(&json!({ "webhook_url": receiver.url }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let secret = configured["secret"].as_str().unwrap().to_owned();
    let db = db().await;
    let org_id: uuid::Uuid = org.id.parse().unwrap();
    let stored = || async {
        sqlx::query_scalar::<_, String>("SELECT webhook_secret FROM organizations WHERE id = $1")
            .bind(org_id)
            .fetch_one(&db)
            .await
            .unwrap()
    };
    let column = stored().await;
    assert!(column.starts_with("sealed:v1:old:"), "{column}");
    let raw_secret = secret.trim_start_matches("whsec_");
    assert!(
        !column.contains(raw_secret),
        "the secret is readable in the column"
    );
    app.stop().await;

    // A row from before encryption, in plaintext, and a new key first in line.
    sqlx::query("UPDATE organizations SET webhook_secret = $2 WHERE id = $1")
        .bind(org_id)
        .bind(&secret)
        .execute(&db)
        .await
        .unwrap();
    let new_key = Sealer::new_key_spec("new");
    let app = spawn(sealed_config(format!("{new_key},{old_key}"))).await;
    let column = stored().await;
    assert!(
        column.starts_with("sealed:v1:new:"),
        "not resealed at start: {column}"
    );
    app.stop().await;

    // The old key is gone; deliveries are still signed with the same secret.
    let app = spawn(sealed_config(new_key)).await;
    let id = app
        .send(&org.key, "sealed.delivery", json!({ "n": 1 }))
        .await;
    eventually(Duration::from_secs(20), || async { receiver.count() >= 1 }).await;
    let request = receiver.received().remove(0);
    assert_eq!(request.headers["webhook-id"], id.as_str());
    standardwebhooks::Webhook::new(&secret)
        .unwrap()
        .verify(&request.body, &request.headers)
        .expect("signed with the secret the organization was given");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_to_start_without_an_encryption_key() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_triggers-api"))
        .arg("serve")
        .env("TRIGGERS_LISTEN", "127.0.0.1:0")
        .env_remove("TRIGGERS_ENV")
        .env_remove("TRIGGERS_SECRET_KEYS")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("triggers-api new-secret-key"), "{said}");
}
