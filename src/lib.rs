//! Triggers API: durable event ingestion with push and pull delivery.
//!
//! `run` starts whatever the configured role asks for on a listener the
//! caller bound, so `main` and the integration tests start the same system.

pub mod admin;
pub mod auth;
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
pub mod store;
pub mod streams;
pub mod telemetry;
pub mod webhook;
pub mod workers;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    auth::{
        Authenticator, Guards,
        failures::{FailureLimits, Failures},
        hasher::Hasher,
    },
    config::{Config, Environment, SecuritySettings},
    events::Events,
    http::{AppState, Services},
    leases::Leases,
    ratelimit::RateLimiter,
    redis::Keys,
    retention::{DELETE_BATCH, RetentionSweeper},
    store::Store,
    streams::{Consumer, Intake, RetryQueue, StreamKind, Unarchived},
    workers::{
        Settings,
        archiver::{self, Archiver},
        delivery::{self, DeliveryWorker, Limits, RetryPolicy, Sender},
    },
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
    let sealer = Arc::new(sealer(&config.security)?);
    announce_sign_up(&config);
    let store = Store::connect(&config.database.database_url, config.db_pool_size)
        .await
        .context("cannot connect to Postgres (DATABASE_URL)")?
        .with_sealer(sealer);
    store.prepare(config.migrate).await?;
    // Workers do it again on every retention pass; a failure here (e.g. a
    // database role without DDL rights) must not keep the API from serving.
    if let Err(err) = partitions::ensure_ahead(&store, chrono::Utc::now()).await {
        tracing::warn!(error = %err, "cannot create archive partitions ahead");
    }
    let pool = redis::connect_pool_bounded(
        &config.redis_url,
        config.redis_pool_size,
        config.outages.redis_command_timeout,
    )
    .await
    .context("cannot connect to Redis (REDIS_URL)")?;
    redis::check_eviction_policy(&pool).await?;

    let keys = Keys::new(&config.redis_prefix, config.stream_shards);
    let unarchived = Unarchived::new(pool.clone(), keys.clone());
    let retries = RetryQueue::new(pool.clone(), keys.clone());
    let limits = &config.auth_limits;
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
        verified_ttl: limits.verified_ttl,
    };
    let auth = Authenticator::new(
        store.clone(),
        pool.clone(),
        keys.clone(),
        config.key_cache_ttl,
        guards,
    );
    let tasks = TaskTracker::new();

    if config.role.runs_api() {
        let subscriber = redis::connect_subscriber(&config.redis_url).await?;
        auth.listen_for_revocations(subscriber, shutdown.clone())
            .await?;
    }
    if config.role.runs_workers() {
        let sender = Sender::new(
            config.webhook_connect_timeout,
            config.webhook_timeout,
            config.allow_private_webhooks,
        )
        .context("cannot build the webhook HTTP client")?
        .with_traceparent(config.webhook_traceparent);
        let name = config.consumer_name();
        // Both groups exist before either worker trims a stream, so neither
        // can trim away an entry the other has not consumed.
        let delivery_consumer = Consumer::join(
            redis::connect_client(&config.redis_url).await?,
            pool.clone(),
            &keys,
            &[StreamKind::Events, StreamKind::Redeliver],
            delivery::GROUP,
            &name,
        )
        .await?;
        // The first archiver takes what arrives; the others stand by and
        // join in while a backlog lasts (see `Settings::standby`).
        const ARCHIVER_STANDBY: Duration = Duration::from_millis(250);
        for n in 0..config.archivers {
            // The first keeps the process's name, so entries it held before
            // a restart are its own again at once.
            let consumer_name = match n {
                0 => name.clone(),
                n => format!("{name}-archiver-{n}"),
            };
            let consumer = Consumer::join(
                redis::connect_client(&config.redis_url).await?,
                pool.clone(),
                &keys,
                &[StreamKind::Events],
                archiver::GROUP,
                &consumer_name,
            )
            .await?;
            let archiver = Archiver::new(
                store.clone(),
                unarchived.clone(),
                consumer,
                Settings {
                    batch: config.archive_batch.max(1),
                    claim_after: config.visibility_timeout,
                    store_retry_max: config.outages.store_retry_max,
                    standby: (n > 0).then_some(ARCHIVER_STANDBY),
                },
            );
            tasks.spawn(archiver.run(shutdown.clone()));
        }
        let limits = Limits {
            total: config.delivery_concurrency,
            per_org: config.delivery_per_org,
            claim_after: config
                .visibility_timeout
                .max(config.webhook_timeout + Duration::from_secs(5)),
            store_retry_max: config.outages.store_retry_max,
        };
        let worker = DeliveryWorker::new(
            store.clone(),
            delivery_consumer,
            sender,
            RetryPolicy::new(config.retry_schedule.0.clone()),
            retries.clone(),
            limits,
        );
        tasks.spawn(worker.run(shutdown.clone()));
        let sweeper = RetentionSweeper::new(store.clone(), config.retention.clone(), DELETE_BATCH);
        tasks.spawn(sweeper.run(config.retention_interval, shutdown.clone()));
    }
    tasks.close();

    let state = AppState::new(Services {
        config: Arc::clone(&config),
        events: Events::new(store.clone(), unarchived, retries),
        leases: Leases::new(store.clone(), config.max_leases),
        store,
        redis: pool.clone(),
        intake: Intake::new(pool.clone(), keys.clone()),
        limiter: RateLimiter::new(pool.clone(), keys),
        auth,
        metrics: metrics::handle(),
    });
    let address = listener.local_addr()?;
    tracing::info!(%address, role = ?config.role, "listening");
    http::server::serve(
        listener,
        http::router(state),
        &config.http_limits,
        shutdown.clone(),
        config.shutdown_timeout,
    )
    .await;

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

/// The keys sealing webhook secrets, for `serve` and `admin` alike.
/// Production refuses to start without one; development falls back to a
/// publicly known key, loudly.
pub fn sealer(security: &SecuritySettings) -> anyhow::Result<sealing::Sealer> {
    // Empty counts as unset: compose files pass `${VAR:-}` through.
    let spec = security
        .secret_keys
        .as_ref()
        .filter(|s| !s.expose().trim().is_empty());
    match (spec, security.environment) {
        (Some(spec), _) => {
            sealing::Sealer::from_spec(spec.expose()).context("TRIGGERS_SECRET_KEYS is invalid")
        }
        (None, Environment::Development) => {
            tracing::warn!(
                "no TRIGGERS_SECRET_KEYS: webhook secrets are sealed with the public development \
                 key (acceptable only because TRIGGERS_ENV=development)"
            );
            Ok(sealing::Sealer::development())
        }
        (None, Environment::Production) => anyhow::bail!(
            "TRIGGERS_SECRET_KEYS is required in production: it encrypts webhook signing secrets \
             at rest. Make a key with `triggers-api new-secret-key` and pass the line it prints \
             as TRIGGERS_SECRET_KEYS (from a secret store), or set TRIGGERS_ENV=development on a \
             machine of your own"
        ),
    }
}

/// Says at startup who may create organizations.
fn announce_sign_up(config: &Config) {
    match (&config.admin_token, config.security.allow_open_signup) {
        (Some(_), _) => tracing::info!("sign-up: creating organizations requires the admin token"),
        (None, true) => tracing::warn!(
            "sign-up: OPEN, anyone can create organizations (TRIGGERS_ALLOW_OPEN_SIGNUP=true)"
        ),
        (None, false) => tracing::info!(
            "sign-up: closed (set TRIGGERS_ADMIN_TOKEN to create organizations with a token, \
             or TRIGGERS_ALLOW_OPEN_SIGNUP=true to let anyone)"
        ),
    }
}
