//! What `run` assembles, each part from its own sections of the
//! configuration.

use std::sync::Arc;

use anyhow::Context;
use fred::prelude::Pool;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{
        Authenticator, Guards,
        failures::{FailureLimits, Failures},
        hasher::Hasher,
    },
    config::{AuthLimits, Config, KeyCaches},
    events::Events,
    http::{AppState, Services, Serving},
    leases::Leases,
    metrics, partitions,
    ratelimit::RateLimiter,
    redis::{self, Keys},
    retention::{DELETE_BATCH, RetentionSweeper},
    sealing::Sealer,
    store::Store,
    streams::{Intake, RetryQueue, Unarchived},
    workers::{
        Backends,
        archiver::Archiver,
        delivery::{DeliveryWorker, Sender},
    },
};

/// Connects to Postgres, migrating it if asked to.
pub(crate) async fn store(config: &Config, sealer: Arc<Sealer>) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database.database_url, config.pools.db_pool_size)
        .await
        .context("cannot connect to Postgres (DATABASE_URL)")?
        .with_sealer(sealer);
    store.prepare(config.process.migrate).await?;
    // Workers do it again on every retention pass; a failure here (e.g. a
    // database role without DDL rights) must not keep the API from serving.
    if let Err(err) = partitions::ensure_ahead(&store, chrono::Utc::now()).await {
        tracing::warn!(error = %err, "cannot create archive partitions ahead");
    }
    Ok(store)
}

/// Connects to Redis, refusing one that may evict the streams.
pub(crate) async fn redis_pool(config: &Config) -> anyhow::Result<Pool> {
    let pool = redis::connect_pool_bounded(
        &config.shared.redis_url,
        config.pools.redis_pool_size,
        config.outages.redis_command_timeout,
    )
    .await
    .context("cannot connect to Redis (REDIS_URL)")?;
    redis::check_eviction_policy(&pool).await?;
    Ok(pool)
}

pub(crate) fn authenticator(
    limits: &AuthLimits,
    caches: &KeyCaches,
    store: &Store,
    pool: &Pool,
    keys: &Keys,
) -> anyhow::Result<Authenticator> {
    let guards = Guards {
        hasher: Hasher::start(limits.hash_threads, limits.hash_queue)
            .context("cannot start the key hashing threads")?,
        failures: Failures::new(
            pool.clone(),
            keys.clone(),
            FailureLimits {
                per_prefix: limits.failures_per_prefix,
                per_address: limits.failures_per_address,
                window: limits.failure_window,
            },
        ),
        verified_ttl: caches.verified_ttl,
    };
    Ok(Authenticator::new(
        store.clone(),
        pool.clone(),
        keys.clone(),
        caches.key_cache_ttl,
        guards,
    ))
}

/// Starts the archivers, the delivery worker and the retention sweeper.
pub(crate) async fn spawn_workers(
    config: &Config,
    backends: &Backends,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let sender = Sender::new(&config.webhooks).context("cannot build the webhook HTTP client")?;
    // Joins before any archiver runs (see `DeliveryWorker::join`).
    let (delivery, consumers, outages) = (&config.delivery, &config.consumers, &config.outages);
    let worker = DeliveryWorker::join(backends, sender, delivery, consumers, outages).await?;
    for n in 0..config.archive.archivers {
        let archiver = Archiver::join(n, backends, &config.archive, consumers, outages).await?;
        tasks.spawn(archiver.run(shutdown.clone()));
    }
    tasks.spawn(worker.run(shutdown.clone()));
    let retention = config.shared.retention.clone();
    let sweeper = RetentionSweeper::new(backends.store.clone(), retention, DELETE_BATCH);
    tasks.spawn(sweeper.run(config.archive.retention_interval, shutdown.clone()));
    Ok(())
}

/// What the HTTP handlers are given: their services and the few settings
/// they read.
pub(crate) fn app_state(
    config: &Config,
    store: Store,
    pool: &Pool,
    keys: Keys,
    auth: Authenticator,
) -> AppState {
    let unarchived = Unarchived::new(pool.clone(), keys.clone());
    let retries = RetryQueue::new(pool.clone(), keys.clone());
    AppState::new(Services {
        serving: Serving {
            api: config.process.role.runs_api(),
            request_timeout: config.api.request_timeout,
        },
        sign_up: config.sign_up(),
        retention: config.shared.retention.clone(),
        allow_private_webhooks: config.webhooks.allow_private_webhooks,
        client_ip_header: config.http_limits.client_ip_header.clone(),
        events: Events::new(store.clone(), unarchived, retries),
        leases: Leases::new(store.clone(), config.api.max_leases),
        store,
        redis: pool.clone(),
        intake: Intake::new(pool.clone(), keys.clone()),
        limiter: RateLimiter::new(pool.clone(), keys),
        auth,
        metrics: metrics::handle(),
    })
}
