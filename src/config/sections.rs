//! `serve`'s sections: each holds what one part of the system reads, and
//! that part is built from it.

use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::{Role, Secret};
use crate::sealing::Sealer;

/// What this process is and how it starts and stops.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Process")]
pub struct ProcessSettings {
    /// Address the HTTP server listens on, for every role.
    #[arg(long, env = "TRIGGERS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// What this process runs.
    #[arg(long, env = "TRIGGERS_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// Apply database migrations at start (safe with many replicas: they take a lock).
    #[arg(long, env = "TRIGGERS_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Longest time a graceful shutdown waits for in-flight work.
    #[arg(long, env = "TRIGGERS_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Connections this process holds.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connection pools")]
pub struct PoolSettings {
    /// Postgres connections per process.
    #[arg(long, env = "TRIGGERS_DB_POOL_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub db_pool_size: u32,

    /// Redis connections per process (commands are pipelined over them).
    #[arg(long, env = "TRIGGERS_REDIS_POOL_SIZE", default_value_t = 8, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub redis_pool_size: usize,
}

/// How this process's workers consume the streams.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Stream consumers")]
pub struct ConsumerSettings {
    /// Name of this process's stream consumer; defaults to `<host or pod>-<pid>`.
    #[arg(long, env = "TRIGGERS_CONSUMER_NAME")]
    pub consumer_name: Option<String>,

    /// How long an entry read by a consumer may stay unacknowledged before
    /// another consumer claims it (a consumer that died holding it).
    #[arg(long, env = "TRIGGERS_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub visibility_timeout: Duration,
}

impl ConsumerSettings {
    /// The process's consumer name: the configured one, or `<host or pod>-<pid>`.
    pub fn name(&self) -> String {
        if let Some(name) = &self.consumer_name {
            return name.clone();
        }
        let host = std::env::var("POD_NAME")
            .ok()
            .filter(|h| !h.is_empty())
            .or_else(crate::telemetry::export::host_name)
            .unwrap_or_else(|| "triggers".to_owned());
        format!("{host}-{}", std::process::id())
    }
}

/// How events get into the archive, and how often those past their
/// retention are taken out.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Archive and retention sweeps")]
pub struct ArchiveSettings {
    /// Most events archived to Postgres in one statement.
    #[arg(long, env = "TRIGGERS_ARCHIVE_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub archive_batch: u64,

    /// Archivers in this process, each its own consumer of the streams and
    /// its own Postgres connection. One waits for each insert before reading
    /// again; a second reads and inserts while the first waits, which is
    /// where most of the archive's speed comes from.
    #[arg(long, env = "TRIGGERS_ARCHIVERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub archivers: u16,

    /// How often a worker removes events past their retention.
    #[arg(long, env = "TRIGGERS_RETENTION_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub retention_interval: Duration,
}

/// Webhook delivery: how often it is retried and how much runs at once.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Webhook delivery")]
pub struct DeliverySettings {
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

/// Webhook requests: where they may go and how long they may take.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Webhook requests")]
pub struct WebhookSettings {
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

    /// Send each webhook request's trace context (`traceparent`,
    /// `tracestate`) to the endpoint. Off by default: it shows receivers
    /// internal trace ids.
    #[arg(long, env = "TRIGGERS_WEBHOOK_TRACEPARENT", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_traceparent: bool,
}

/// The public API's own settings.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Public API")]
pub struct ApiSettings {
    /// When set, `POST /api/keys/generate` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "TRIGGERS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Longest time one HTTP request may take before it is answered 503.
    #[arg(long, env = "TRIGGERS_REQUEST_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// An event leased this many times without being acknowledged is
    /// quarantined instead of being leased again.
    #[arg(long, env = "TRIGGERS_MAX_LEASES", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_leases: u32,
}

/// What kind of deployment this is. Production is the default, so a
/// forgotten setting fails closed rather than open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    /// Requires an encryption key for webhook secrets.
    Production,
    /// Runs without an encryption key (a fixed, publicly known one is used
    /// and a warning logged): for laptops and test suites only.
    Development,
}

/// Who may create organizations, and how secrets are kept at rest.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Sign-up and secrets at rest")]
pub struct SecuritySettings {
    /// `production` (default) or `development`.
    #[arg(long = "env", env = "TRIGGERS_ENV", value_enum, default_value_t = Environment::Production)]
    pub environment: Environment,

    /// Lets anyone create an organization when no admin token is set.
    /// Off by default: without a token, sign-up is closed.
    #[arg(long, env = "TRIGGERS_ALLOW_OPEN_SIGNUP", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_open_signup: bool,

    /// Keys that encrypt webhook signing secrets at rest, comma-separated
    /// `<id>:<base64 of 32 bytes>`; the first encrypts, every one decrypts.
    /// Make one with `triggers-api new-secret-key`.
    #[arg(long, env = "TRIGGERS_SECRET_KEYS", hide_env_values = true)]
    pub secret_keys: Option<Secret>,
}

impl SecuritySettings {
    /// The keys sealing webhook secrets, for `serve` and `admin` alike.
    /// Production refuses to start without one; development falls back to
    /// a publicly known key, loudly.
    pub fn sealer(&self) -> anyhow::Result<Sealer> {
        // Empty counts as unset: compose files pass `${VAR:-}` through.
        let spec = self
            .secret_keys
            .as_ref()
            .filter(|s| !s.expose().trim().is_empty());
        match (spec, self.environment) {
            (Some(spec), _) => {
                Sealer::from_spec(spec.expose()).context("TRIGGERS_SECRET_KEYS is invalid")
            }
            (None, Environment::Development) => {
                tracing::warn!(
                    "no TRIGGERS_SECRET_KEYS: webhook secrets are sealed with the public \
                     development key (acceptable only because TRIGGERS_ENV=development)"
                );
                Ok(Sealer::development())
            }
            (None, Environment::Production) => anyhow::bail!(
                "TRIGGERS_SECRET_KEYS is required in production: it encrypts webhook signing \
                 secrets at rest. Make a key with `triggers-api new-secret-key` and pass the line \
                 it prints as TRIGGERS_SECRET_KEYS (from a secret store), or set \
                 TRIGGERS_ENV=development on a machine of your own"
            ),
        }
    }
}

/// Who may create organizations: the admin token and the open sign-up
/// switch, which only decide it together.
#[derive(Debug, Clone)]
pub struct SignUp {
    pub admin_token: Option<Secret>,
    pub open: bool,
}

impl SignUp {
    /// Says at startup who may create organizations.
    pub fn announce(&self) {
        match (&self.admin_token, self.open) {
            (Some(_), _) => {
                tracing::info!("sign-up: creating organizations requires the admin token")
            }
            (None, true) => tracing::warn!(
                "sign-up: OPEN, anyone can create organizations (TRIGGERS_ALLOW_OPEN_SIGNUP=true)"
            ),
            (None, false) => tracing::info!(
                "sign-up: closed (set TRIGGERS_ADMIN_TOKEN to create organizations with a token, \
                 or TRIGGERS_ALLOW_OPEN_SIGNUP=true to let anyone)"
            ),
        }
    }
}
/// Limits on what a client connection may hold or take.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Client connections")]
pub struct HttpLimits {
    /// Time a connection has to send a complete request head, counted from
    /// when it opens or finished its previous request: this closes
    /// slowloris and idle keep-alive connections alike.
    #[arg(long, env = "TRIGGERS_HTTP_HEADER_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,

    /// Largest request head (request line and headers); larger gets 431.
    #[arg(long, env = "TRIGGERS_HTTP_MAX_HEADER_BYTES", default_value_t = 32 * 1024, value_parser = clap::value_parser!(u32).range(8192..=1_048_576))]
    pub max_header_bytes: u32,

    /// Time a client has to send the whole request body; slower gets 408.
    #[arg(long, env = "TRIGGERS_HTTP_BODY_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// Most open client connections per process; beyond it a new connection
    /// is closed as soon as it is accepted.
    #[arg(long, env = "TRIGGERS_HTTP_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Header whose last address is the client's, as appended by a trusted
    /// reverse proxy (e.g. `x-forwarded-for`). Unset: the peer address.
    #[arg(long, env = "TRIGGERS_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
}

/// Bounds on API key hashing, the work an unauthenticated client can cause.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "API key verification")]
pub struct AuthLimits {
    /// Threads that hash API keys; 0 means one per CPU core.
    #[arg(long, env = "TRIGGERS_KEY_HASH_THREADS", default_value_t = 0)]
    pub hash_threads: usize,

    /// Hashing jobs that may wait for a thread; beyond them: 503 at once.
    #[arg(long, env = "TRIGGERS_KEY_HASH_QUEUE", default_value_t = 8)]
    pub hash_queue: usize,

    /// Failed verifications of one key prefix, or from one client address,
    /// within the window, after which further attempts get 429 unhashed.
    #[arg(long, env = "TRIGGERS_AUTH_FAILURES_PER_PREFIX", default_value_t = 10)]
    pub failures_per_prefix: u32,

    /// Like the prefix limit, per client address (higher: many clients may
    /// share one address behind a NAT).
    #[arg(long, env = "TRIGGERS_AUTH_FAILURES_PER_ADDRESS", default_value_t = 50)]
    pub failures_per_address: u32,

    /// The window failed verifications are counted over.
    #[arg(long, env = "TRIGGERS_AUTH_FAILURE_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub failure_window: Duration,
}

/// How long the service waits for a dependency that is away.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Dependency outages")]
pub struct OutageSettings {
    /// Longest time a Redis command may take before the request fails
    /// with 503 (blocking stream reads get this on top of their wait).
    #[arg(long, env = "TRIGGERS_REDIS_COMMAND_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub redis_command_timeout: Duration,

    /// Longest pause between retries of an archive or outcome write, or of
    /// a webhook lookup, while Postgres is unreachable: the catch-up delay
    /// after it returns.
    #[arg(long, env = "TRIGGERS_STORE_RETRY_MAX", default_value = "1s", value_parser = humantime::parse_duration)]
    pub store_retry_max: Duration,
}
