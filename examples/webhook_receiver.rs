//! A webhook receiver that verifies every request with the official
//! Standard Webhooks library before trusting it, deduplicates on
//! `webhook-id` (delivery is at least once) and answers 2xx quickly.
//!
//! ```sh
//! WEBHOOK_SECRET=whsec_... LISTEN=127.0.0.1:9000 cargo run --example webhook_receiver
//! ```

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::Value;
use standardwebhooks::Webhook;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the receiver has accepted: each event once, in arrival order.
#[derive(Default)]
pub struct Received {
    seen: HashSet<String>,
    pub events: Vec<Value>,
}

#[derive(Clone)]
struct Receiver {
    webhook: Arc<Webhook>,
    received: Arc<Mutex<Received>>,
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    // Checks the signature against the secret (any of several during a
    // rotation) and that the timestamp is recent, refusing replays.
    if receiver.webhook.verify(&body, &headers).is_err() {
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(mut received) = receiver.received.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    if received.seen.insert(id) {
        received.events.push(event);
    }
    StatusCode::NO_CONTENT
}

/// Serves `POST /` on `listener` until `stop`; what it accepted is in `received`.
pub async fn serve(
    listener: TcpListener,
    secret: String,
    received: Arc<Mutex<Received>>,
    stop: CancellationToken,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let receiver = Receiver {
        webhook: Arc::new(Webhook::new(&secret)?),
        received,
    };
    let app = Router::new().route("/", post(receive)).with_state(receiver);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await?;
    Ok(())
}

#[allow(dead_code)] // run by `cargo run --example`; the tests call `serve`
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let secret = std::env::var("WEBHOOK_SECRET")
        .map_err(|_| "set WEBHOOK_SECRET to the whsec_… secret of POST /api/webhook/config")?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:9000".to_owned());
    let listener = TcpListener::bind(&listen).await?;
    println!("listening on {listen}");
    let received = Arc::new(Mutex::new(Received::default()));
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        on_signal.cancel();
    });
    let printer = received.clone();
    tokio::spawn(async move {
        let mut printed = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let Ok(received) = printer.lock() else { return };
            for event in &received.events[printed..] {
                println!("{event}");
            }
            printed = received.events.len();
        }
    });
    serve(listener, secret, received, stop).await
}
