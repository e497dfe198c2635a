//! Command line and environment configuration.
//!
//! Every setting can come from a flag or from the environment variable named
//! next to it, so the same binary is configured the same way by a developer's
//! shell, docker-compose and a Kubernetes Deployment.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "triggers-api",
    version,
    about = "Durable event ingestion and delivery API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, the background workers, or both.
    Serve(Box<Config>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Operate the service: organizations, keys, events, dead letters, streams.
    Admin(Box<crate::admin::AdminArgs>),
}

/// Which parts of the system a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Public HTTP API only (ingestion, inbox, keys).
    Api,
    /// Stream consumers only (archiver and webhook delivery); still serves
    /// /health, /ready and /metrics.
    Worker,
    /// Both, so that one process is a complete system for development.
    All,
}

impl Role {
    pub fn runs_api(self) -> bool {
        matches!(self, Role::Api | Role::All)
    }

    pub fn runs_workers(self) -> bool {
        matches!(self, Role::Worker | Role::All)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Api => "api",
            Role::Worker => "worker",
            Role::All => "all",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection string.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://triggers:triggers@127.0.0.1:5432/triggers",
        hide_env_values = true
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Redis connection string (redis:// or rediss://).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Address the HTTP server listens on, for every role.
    #[arg(long, env = "TRIGGERS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// What this process runs.
    #[arg(long, env = "TRIGGERS_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// When set, `POST /api/keys/generate` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "TRIGGERS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Apply database migrations at start (safe with many replicas: they take a lock).
    #[arg(long, env = "TRIGGERS_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "TRIGGERS_REDIS_PREFIX", default_value = "triggers")]
    pub redis_prefix: String,

    /// Number of event streams organizations are spread over. Changing it
    /// moves organizations to other shards: set it once per deployment.
    #[arg(long, env = "TRIGGERS_STREAM_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub stream_shards: u16,

    /// Name of this process's stream consumer; defaults to `<host or pod>-<pid>`.
    #[arg(long, env = "TRIGGERS_CONSUMER_NAME")]
    pub consumer_name: Option<String>,

    /// How long an entry read by a consumer may stay unacknowledged before
    /// another consumer claims it (a consumer that died holding it).
    #[arg(long, env = "TRIGGERS_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,

    /// Most events archived to Postgres in one statement.
    #[arg(long, env = "TRIGGERS_ARCHIVE_BATCH", default_value_t = 500)]
    pub archive_batch: u64,

    /// How long a verified API key stays in this process's memory. Rotation
    /// is pushed to every replica at once; this bounds a push that was
    /// missed or raced with a lookup, so keep it at most a second.
    #[arg(long, env = "TRIGGERS_KEY_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub key_cache_ttl: Duration,

    /// Postgres connections per process.
    #[arg(long, env = "TRIGGERS_DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: u32,

    /// Redis connections per process (commands are pipelined over them).
    #[arg(long, env = "TRIGGERS_REDIS_POOL_SIZE", default_value_t = 8)]
    pub redis_pool_size: usize,

    /// Longest time one HTTP request may take before it is answered 503.
    #[arg(long, env = "TRIGGERS_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Allow webhooks to loopback, private and link-local addresses (for
    /// development and tests; never on a multi-tenant deployment).
    #[arg(long, env = "TRIGGERS_ALLOW_PRIVATE_WEBHOOKS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_webhooks: bool,

    /// Time allowed to connect to a webhook endpoint.
    #[arg(long, env = "TRIGGERS_WEBHOOK_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub webhook_connect_timeout: Duration,

    /// Time allowed for a whole webhook request, response included.
    #[arg(long, env = "TRIGGERS_WEBHOOK_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub webhook_timeout: Duration,

    /// Delays before each retry of a failed delivery, after the immediate
    /// first attempt; the event is dead-lettered after the last one.
    #[arg(long, env = "TRIGGERS_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = parse_schedule)]
    pub retry_schedule: RetrySchedule,

    /// Most deliveries in flight or waiting for a slot in this process.
    #[arg(long, env = "TRIGGERS_DELIVERY_CONCURRENCY", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub delivery_concurrency: u32,

    /// Most webhook requests in flight for one organization in this process,
    /// so one slow endpoint cannot take every delivery slot.
    #[arg(long, env = "TRIGGERS_DELIVERY_PER_ORG", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub delivery_per_org: u32,

    /// Send each webhook request's trace context (`traceparent`,
    /// `tracestate`) to the endpoint. Off by default: it shows receivers
    /// internal trace ids.
    #[arg(long, env = "TRIGGERS_WEBHOOK_TRACEPARENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_traceparent: bool,

    /// An event leased this many times without being acknowledged is
    /// quarantined instead of being leased again.
    #[arg(long, env = "TRIGGERS_MAX_LEASES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_leases: u32,

    /// How long each tier keeps delivered and acknowledged events and
    /// their delivery attempts, e.g. `free=7d,pro=30d,business=90d,enterprise=365d`.
    #[arg(long, env = "TRIGGERS_RETENTION", default_value = crate::retention::DEFAULT_RETENTION, value_parser = crate::retention::RetentionPolicy::parse)]
    pub retention: crate::retention::RetentionPolicy,

    /// How often a worker removes events past their retention.
    #[arg(long, env = "TRIGGERS_RETENTION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,

    /// Longest time a graceful shutdown waits for in-flight work.
    #[arg(long, env = "TRIGGERS_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Delays between delivery attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(pub Vec<Duration>);

fn parse_schedule(raw: &str) -> Result<RetrySchedule, String> {
    let delays = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RetrySchedule(delays))
}

impl Config {
    /// The configuration a process would get from its environment alone.
    pub fn from_env() -> Result<Self, clap::Error> {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            config: Config,
        }
        Only::try_parse_from(["triggers-api"]).map(|only| only.config)
    }

    pub fn consumer_name(&self) -> String {
        if let Some(name) = &self.consumer_name {
            return name.clone();
        }
        let host = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_owned())
            })
            .unwrap_or_else(|| "triggers".to_owned());
        format!("{host}-{}", std::process::id())
    }
}
