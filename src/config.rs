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
    /// Print a new key for TRIGGERS_SECRET_KEYS (`<id>:<base64 of 32 random bytes>`).
    NewSecretKey {
        /// The key's id, stored next to every secret it encrypts.
        #[arg(long, default_value_t = default_key_id())]
        id: String,
    },
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
    pub database_url: ConnectionUrl,
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
    pub redis_url: ConnectionUrl,

    /// Address the HTTP server listens on, for every role.
    #[arg(long, env = "TRIGGERS_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// What this process runs.
    #[arg(long, env = "TRIGGERS_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,

    /// When set, `POST /api/keys/generate` requires `Authorization: Bearer <token>`.
    #[arg(long, env = "TRIGGERS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

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

    /// Archivers in this process, each its own consumer of the streams and
    /// its own Postgres connection. One waits for each insert before reading
    /// again; a second reads and inserts while the first waits, which is
    /// where most of the archive's speed comes from.
    #[arg(long, env = "TRIGGERS_ARCHIVERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub archivers: u16,

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

    #[command(flatten)]
    pub security: SecuritySettings,

    #[command(flatten)]
    pub http_limits: HttpLimits,

    #[command(flatten)]
    pub auth_limits: AuthLimits,

    #[command(flatten)]
    pub outages: OutageSettings,
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

/// Limits on what a client connection may hold or take.
#[derive(Debug, Clone, Args)]
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

    /// How long Redis remembers a verified key for every replica. Revocation
    /// is pushed explicitly, so this only bounds how often argon2 reruns.
    #[arg(long, env = "TRIGGERS_KEY_VERIFIED_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub verified_ttl: Duration,
}

/// How long the service waits for a dependency that is away.
#[derive(Debug, Clone, Args)]
pub struct OutageSettings {
    /// Longest time a Redis command may take before the request fails
    /// with 503 (blocking stream reads get this on top of their wait).
    #[arg(long, env = "TRIGGERS_REDIS_COMMAND_TIMEOUT", default_value = "1s", value_parser = humantime::parse_duration)]
    pub redis_command_timeout: Duration,

    /// Longest pause between retries of an archive or outcome write while
    /// Postgres is unreachable: the catch-up delay after it returns.
    #[arg(long, env = "TRIGGERS_STORE_RETRY_MAX", default_value = "1s", value_parser = humantime::parse_duration)]
    pub store_retry_max: Duration,
}

/// A secret setting: usable, but never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// A connection string whose password `Debug` hides.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionUrl(String);

impl ConnectionUrl {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
}

impl std::ops::Deref for ConnectionUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    let _ = parsed.set_password(Some("redacted"));
                }
                write!(f, "{:?}", parsed.as_str())
            }
            // Unparseable: it may hold anything, so show nothing.
            Err(_) => f.write_str("\"[unparseable URL]\""),
        }
    }
}

impl From<&str> for ConnectionUrl {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for ConnectionUrl {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::str::FromStr for ConnectionUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

fn default_key_id() -> String {
    format!("k{}", chrono::Utc::now().format("%Y%m%d"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let config = Cli::try_parse_from([
            "triggers-api",
            "serve",
            "--database-url",
            "postgres://app:db-pass-1@db/app",
            "--redis-url",
            "redis://:redis-pass-2@cache:6379",
            "--admin-token",
            "admin-token-3",
            "--secret-keys",
            "k1:c2VjcmV0LWtleS00",
        ])
        .expect("parses");
        let shown = format!("{config:?}");
        for secret in [
            "db-pass-1",
            "redis-pass-2",
            "admin-token-3",
            "c2VjcmV0LWtleS00",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://app:redacted@db/app"), "{shown}");
    }

    #[test]
    fn production_and_closed_sign_up_are_the_defaults() {
        let config = Cli::try_parse_from(["triggers-api", "serve"]).expect("parses");
        let Command::Serve(config) = config.command else {
            panic!("not serve");
        };
        assert_eq!(config.security.environment, Environment::Production);
        assert!(!config.security.allow_open_signup);
    }
}
