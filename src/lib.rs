//! Triggers API: durable event ingestion with push and pull delivery.
//!
//! `run` starts whatever the configured role asks for on a listener the
//! caller bound, so `main` and the integration tests start the same system.

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod leases;
pub mod metrics;
pub mod partitions;
pub mod ratelimit;
pub mod redis;
pub mod retention;
pub mod routing;
pub mod sealing;
pub mod shutdown;
mod startup;
pub mod store;
pub mod streams;
pub mod telemetry;
pub mod webhook;
pub mod workers;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{config::Config, workers::Backends};

/// Runs the service on `listener` until `shutdown` is cancelled, then drains:
/// the server stops accepting and finishes in-flight requests, workers finish
/// the batch in hand and acknowledge it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let sealer = Arc::new(config.security.sealer()?);
    config.sign_up().announce();
    let store = startup::store(&config, sealer).await?;
    let pool = startup::redis_pool(&config).await?;
    let keys = config.shared.keys();
    let auth = startup::authenticator(
        &config.auth_limits,
        &config.key_caches,
        &store,
        &pool,
        &keys,
    )?;
    let role = config.process.role;
    if role.runs_api() {
        let subscriber = redis::connect_subscriber(&config.shared.redis_url).await?;
        auth.listen_for_revocations(subscriber, shutdown.clone())
            .await?;
    }
    let tasks = TaskTracker::new();
    if role.runs_workers() {
        let backends = Backends {
            store: store.clone(),
            pool: pool.clone(),
            keys: keys.clone(),
            redis_url: config.shared.redis_url.clone(),
        };
        startup::spawn_workers(&config, &backends, &tasks, &shutdown).await?;
    }
    tasks.close();

    let state = startup::app_state(&config, store, &pool, keys, auth);
    let address = listener.local_addr()?;
    tracing::info!(%address, ?role, "listening");
    let drain = config.process.shutdown_timeout;
    let app = http::router(state);
    http::server::serve(listener, app, &config.http_limits, shutdown, drain).await;

    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!("workers did not stop in time; their entries stay pending for others");
    }
    let _ = fred::interfaces::ClientLike::quit(&pool).await;
    tracing::info!("stopped");
    Ok(())
}
