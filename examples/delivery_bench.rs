//! Delivery benchmark: events in through the API, out to a local receiver
//! that answers 200, and the end-to-end latency from acceptance to arrival.
//!
//! Needs Redis and Postgres (`source scripts/dev-deps.sh`); run with
//! `bench/delivery.sh` or
//! `cargo run --release --example delivery_bench -- [events] [organizations] [senders]`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use axum::{Router, body::Bytes, extract::State, http::StatusCode, routing::post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use triggers_api::config::{Config, Environment, Role};

#[derive(Default)]
struct Arrivals {
    /// End-to-end latency of each delivery, in ms.
    latencies: Vec<f64>,
    first: Option<Instant>,
    last: Option<Instant>,
}

async fn receive(State(arrivals): State<Arc<Mutex<Arrivals>>>, body: Bytes) -> StatusCode {
    let now = Utc::now();
    let at = Instant::now();
    let created = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["timestamp"].as_str().map(str::to_owned))
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
    let mut arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(created) = created {
        let ms = (now - created.with_timezone(&Utc))
            .num_microseconds()
            .unwrap_or(0) as f64
            / 1000.0;
        arrivals.latencies.push(ms);
    }
    arrivals.first.get_or_insert(at);
    arrivals.last = Some(at);
    StatusCode::OK
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| {
            a.parse()
                .context("arguments are numbers: events organizations senders")
        })
        .collect::<Result<_, _>>()?;
    let events = args.first().copied().unwrap_or(20_000);
    let orgs = args.get(1).copied().unwrap_or(10).max(1);
    let senders = args.get(2).copied().unwrap_or(32).max(1);

    // The receiver.
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let receiver = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let hook = format!("http://{}/hook", receiver.local_addr()?);
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&arrivals));
    tokio::spawn(async move { axum::serve(receiver, app).await });

    // The service, one process doing everything, on its own key prefix.
    let mut config = Config::from_env()?;
    config.process.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    config.process.role = Role::All;
    config.webhooks.allow_private_webhooks = true;
    // A local benchmark: no encryption key to manage, organizations made freely.
    config.security.environment = Environment::Development;
    config.security.allow_open_signup = true;
    config.shared.redis_prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let listener = TcpListener::bind(config.process.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    let service = tokio::spawn(triggers_api::run(config, listener, shutdown.clone()));

    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !client
        .get(format!("{base}/ready"))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
    {
        if Instant::now() > deadline {
            bail!("the service did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut keys = Vec::new();
    for n in 0..orgs {
        let created: Value = client
            .post(format!("{base}/api/keys/generate"))
            .json(&json!({ "organization_name": format!("bench-{n}"), "tier": "enterprise" }))
            .send()
            .await?
            .json()
            .await?;
        let key = created["api_key"]
            .as_str()
            .context("no api_key")?
            .to_owned();
        let configured = client
            .post(format!("{base}/api/webhook/config"))
            .header("x-api-key", &key)
            .json(&json!({ "webhook_url": hook }))
            .send()
            .await?;
        if !configured.status().is_success() {
            bail!("webhook configuration failed: {}", configured.status());
        }
        keys.push(key);
    }

    println!("sending {events} events from {senders} senders over {orgs} organizations to {hook}");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in 0..senders {
        let (client, base, keys) = (client.clone(), base.clone(), keys.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0usize;
            for n in (sender..events).step_by(senders) {
                let accepted = client
                    .post(format!("{base}/api/events"))
                    .header("x-api-key", &keys[n % keys.len()])
                    .json(&json!({ "type": "bench.delivery", "payload": { "n": n } }))
                    .send()
                    .await
                    .map(|r| r.status() == StatusCode::ACCEPTED)
                    .unwrap_or(false);
                failed += usize::from(!accepted);
            }
            failed
        }));
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await?;
    }
    let sent_in = started.elapsed();
    let expected = events - failed;
    let wait_until = Instant::now() + Duration::from_secs(120);
    loop {
        let delivered = arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latencies
            .len();
        if delivered >= expected || Instant::now() > wait_until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = started.elapsed();
    shutdown.cancel();
    let _ = service.await;

    let arrivals = arrivals.lock().unwrap_or_else(|p| p.into_inner());
    let mut latencies = arrivals.latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let window = match (arrivals.first, arrivals.last) {
        (Some(first), Some(last)) if last > first => (last - first).as_secs_f64(),
        _ => total.as_secs_f64(),
    };
    println!(
        "accepted {expected} of {events} in {:.2}s ({:.0}/s); delivered {} in {:.2}s",
        sent_in.as_secs_f64(),
        expected as f64 / sent_in.as_secs_f64(),
        latencies.len(),
        total.as_secs_f64()
    );
    println!(
        "deliveries/s {:.0}   end-to-end ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        latencies.len() as f64 / window,
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    if latencies.len() < expected {
        bail!(
            "only {} of {expected} accepted events were delivered",
            latencies.len()
        );
    }
    Ok(())
}
