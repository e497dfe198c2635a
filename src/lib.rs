//! Triggers API: durable event ingestion with push and pull delivery.
//!
//! `run` starts whatever the configured role asks for on a listener the
//! caller bound, so `main` and the integration tests start the same system.

pub mod archive;
pub mod auth;
pub mod config;
pub mod domain;
pub mod http;
pub mod metrics;
pub mod queue;
pub mod ratelimit;
pub mod redis;
pub mod shutdown;
pub mod store;
pub mod telemetry;

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    archive::Archiver,
    auth::Authenticator,
    config::Config,
    http::AppState,
    queue::{Consumer, Queue},
    ratelimit::RateLimiter,
    redis::Keys,
    store::Store,
};

/// Runs the service on `listener` until `shutdown` is cancelled, then drains:
/// the server stops accepting and finishes in-flight requests, workers finish
/// the batch in hand and acknowledge it.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let store = Store::connect(&config.database.database_url, config.db_pool_size)
        .await
        .context("cannot connect to Postgres (DATABASE_URL)")?;
    if config.migrate {
        store.migrate().await?;
    }
    let pool = redis::connect_pool(&config.redis_url, config.redis_pool_size)
        .await
        .context("cannot connect to Redis (REDIS_URL)")?;
    redis::check_eviction_policy(&pool).await?;

    let keys = Keys::new(&config.redis_prefix, config.stream_shards);
    let queue = Queue::new(pool.clone(), keys.clone());
    let auth = Authenticator::new(
        store.clone(),
        pool.clone(),
        keys.clone(),
        config.key_cache_ttl,
    );
    let tasks = TaskTracker::new();

    if config.role.runs_api() {
        let subscriber = redis::connect_subscriber(&config.redis_url).await?;
        auth.listen_for_revocations(subscriber, shutdown.clone())
            .await?;
    }
    if config.role.runs_workers() {
        let reader = redis::connect_client(&config.redis_url).await?;
        let consumer = Consumer::join(
            reader,
            pool.clone(),
            keys.clone(),
            archive::GROUP,
            &config.consumer_name(),
        )
        .await?;
        let archiver = Archiver::new(
            store.clone(),
            queue.clone(),
            consumer,
            config.archive_batch,
            config.visibility_timeout,
        );
        tasks.spawn(archiver.run(shutdown.clone()));
    }
    tasks.close();

    let state = AppState {
        config: Arc::clone(&config),
        store,
        queue,
        limiter: RateLimiter::new(pool.clone(), keys),
        auth,
        metrics: metrics::handle(),
    };
    let address = listener.local_addr()?;
    tracing::info!(%address, role = ?config.role, "listening");
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;

    if tokio::time::timeout(config.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("workers did not stop in time; their entries stay pending for others");
    }
    let _ = fred::interfaces::ClientLike::quit(&pool).await;
    tracing::info!("stopped");
    Ok(())
}
