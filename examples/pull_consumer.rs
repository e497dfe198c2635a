//! A pull consumer: leases events from the inbox, processes them, and
//! acknowledges them, in a loop. Events it fails to process are released,
//! so they come back at once; one that keeps failing is quarantined by the
//! service after `TRIGGERS_MAX_LEASES` leases instead of coming back forever.
//! While the inbox is empty, or the service is unavailable or rate limits
//! it, the consumer backs off (honouring `Retry-After`).
//!
//! ```sh
//! TRIGGERS_URL=http://127.0.0.1:8080 TRIGGERS_API_KEY=trg_... cargo run --example pull_consumer
//! ```
//!
//! Several copies may run at once, on any machines: a lease hands each event
//! to one of them at a time.

use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Waits between empty or failed polls: doubling from the first to the last.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

pub struct PullConsumer {
    pub client: reqwest::Client,
    /// e.g. `http://127.0.0.1:8080`
    pub base_url: String,
    pub api_key: String,
    /// Events per lease (1–100).
    pub batch: u32,
    /// How long a lease holds: longer than processing a batch takes.
    pub lease_seconds: u32,
}

/// What one poll came to.
enum Poll {
    Worked,
    Empty,
    /// The service asked us to wait (429, 503), or could not be reached.
    Wait(Option<Duration>),
}

impl PullConsumer {
    /// Leases, processes and acknowledges until `stop` is cancelled.
    /// `process` returns `Err` for an event it could not handle.
    pub async fn run<F>(&self, mut process: F, stop: CancellationToken)
    where
        F: FnMut(&Value) -> Result<(), String>,
    {
        let mut backoff = BACKOFF_MIN;
        while !stop.is_cancelled() {
            let wait = match self.poll(&mut process).await {
                Poll::Worked => {
                    backoff = BACKOFF_MIN;
                    continue;
                }
                Poll::Empty => backoff,
                Poll::Wait(retry_after) => retry_after.unwrap_or(backoff),
            };
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Poll> {
        let response = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("x-api-key", &self.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|err| {
                eprintln!("pull_consumer: {path}: {err}");
                Poll::Wait(None)
            })?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|_| Poll::Wait(None));
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        eprintln!("pull_consumer: {path}: {status}");
        Err(Poll::Wait(retry_after))
    }

    async fn poll<F>(&self, process: &mut F) -> Poll
    where
        F: FnMut(&Value) -> Result<(), String>,
    {
        let lease = match self
            .post(
                "/api/inbox/lease",
                json!({ "limit": self.batch, "lease_seconds": self.lease_seconds }),
            )
            .await
        {
            Ok(lease) => lease,
            Err(wait) => return wait,
        };
        let events = lease["events"].as_array().cloned().unwrap_or_default();
        if events.is_empty() {
            return Poll::Empty;
        }
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for event in &events {
            match process(event) {
                Ok(()) => done.push(event["id"].clone()),
                Err(err) => {
                    eprintln!("pull_consumer: event {} failed: {err}", event["id"]);
                    failed.push(event["id"].clone());
                }
            }
        }
        // Ack what was processed; release the rest so it comes back now
        // rather than when the lease expires. If either call is lost, the
        // lease expires and the events come back: processing is at least
        // once, so `process` must tolerate seeing an event twice.
        for (action, ids) in [("ack", done), ("release", failed)] {
            if ids.is_empty() {
                continue;
            }
            let body = json!({ "lease_id": lease["lease_id"], "event_ids": ids });
            if let Err(wait) = self.post(&format!("/api/inbox/{action}"), body).await {
                return wait;
            }
        }
        Poll::Worked
    }
}

#[allow(dead_code)] // run by `cargo run --example`; the tests call `PullConsumer::run`
#[tokio::main]
async fn main() {
    let base_url =
        std::env::var("TRIGGERS_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let Ok(api_key) = std::env::var("TRIGGERS_API_KEY") else {
        eprintln!("set TRIGGERS_API_KEY to an organization's API key");
        std::process::exit(2);
    };
    let consumer = PullConsumer {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client"),
        base_url,
        api_key,
        batch: 10,
        lease_seconds: 60,
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    consumer
        .run(
            |event| {
                println!("{} {} {}", event["id"], event["type"], event["payload"]);
                Ok(())
            },
            stop,
        )
        .await;
}
