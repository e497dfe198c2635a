//! Command line and environment configuration.
//!
//! Every setting can come from a flag or from the environment variable named
//! next to it, so the same binary is configured the same way by a developer's
//! shell, docker-compose and a Kubernetes Deployment.
//!
//! `serve`'s settings come in sections, one per part of the system that
//! reads them (see `sections`), and each part is built from its own section.
//! The groups here are the ones other commands flatten too: `migrate` and
//! `admin` take [`DatabaseArgs`], `admin` takes [`SharedArgs`],
//! [`SecuritySettings`] and [`KeyCaches`], so they read the same variables
//! as the service.
//!
//! The doc comments here are the user's documentation: docs/configuration.md
//! is generated from them (see [`reference`]), and `--help` shows them.

pub mod reference;
mod secret;
mod sections;

use std::time::Duration;

use clap::{Args, Parser, ValueEnum};

pub use self::{
    secret::{ConnectionUrl, Secret},
    sections::{
        ApiSettings, ArchiveSettings, AuthLimits, ConsumerSettings, DeliverySettings, Environment,
        HttpLimits, OutageSettings, PoolSettings, ProcessSettings, RetrySchedule, SecuritySettings,
        SignUp, WebhookSettings,
    },
};
use crate::{
    redis::Keys,
    retention::{DEFAULT_RETENTION, RetentionPolicy},
};

/// Everything `serve` reads, by section.
#[derive(Debug, Clone, Args)]
pub struct Config {
    #[command(flatten)]
    pub process: ProcessSettings,

    #[command(flatten)]
    pub database: DatabaseArgs,

    #[command(flatten)]
    pub shared: SharedArgs,

    #[command(flatten)]
    pub pools: PoolSettings,

    #[command(flatten)]
    pub consumers: ConsumerSettings,

    #[command(flatten)]
    pub archive: ArchiveSettings,

    #[command(flatten)]
    pub delivery: DeliverySettings,

    #[command(flatten)]
    pub webhooks: WebhookSettings,

    #[command(flatten)]
    pub api: ApiSettings,

    #[command(flatten)]
    pub security: SecuritySettings,

    #[command(flatten)]
    pub http_limits: HttpLimits,

    #[command(flatten)]
    pub auth_limits: AuthLimits,

    #[command(flatten)]
    pub key_caches: KeyCaches,

    #[command(flatten)]
    pub outages: OutageSettings,
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

    /// Who may create organizations.
    pub fn sign_up(&self) -> SignUp {
        SignUp {
            admin_token: self.api.admin_token.clone(),
            open: self.security.allow_open_signup,
        }
    }
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
#[command(next_help_heading = "Postgres")]
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

/// What `serve` and `admin` must read alike: the Redis holding the streams,
/// how its keys are laid out, and how long each tier keeps its events.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Redis, streams and retention")]
pub struct SharedArgs {
    /// Redis connection string (redis:// or rediss://).
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        hide_env_values = true
    )]
    pub redis_url: ConnectionUrl,

    /// Prefix of every Redis key, so several deployments can share one Redis.
    #[arg(long, env = "TRIGGERS_REDIS_PREFIX", default_value = "triggers")]
    pub redis_prefix: String,

    /// Number of event streams organizations are spread over. Changing it
    /// moves organizations to other shards: set it once per deployment.
    #[arg(long, env = "TRIGGERS_STREAM_SHARDS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub stream_shards: u16,

    /// How long each tier keeps delivered and acknowledged events and
    /// their delivery attempts, e.g. `free=7d,pro=30d,business=90d,enterprise=365d`.
    #[arg(long, env = "TRIGGERS_RETENTION", default_value = DEFAULT_RETENTION, value_parser = RetentionPolicy::parse)]
    pub retention: RetentionPolicy,
}

impl SharedArgs {
    /// The names of this deployment's Redis keys.
    pub fn keys(&self) -> Keys {
        Keys::new(&self.redis_prefix, self.stream_shards)
    }
}

/// How long a verified API key is remembered: the API reads it, and
/// `admin keys revoke` too (a revoked key stays refused at least that long).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "API key caches")]
pub struct KeyCaches {
    /// How long a verified API key stays in this process's memory. Rotation
    /// is pushed to every replica at once; this bounds a push that was
    /// missed or raced with a lookup, so keep it at most a second.
    #[arg(long, env = "TRIGGERS_KEY_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub key_cache_ttl: Duration,

    /// How long Redis remembers a verified key for every replica. Revocation
    /// is pushed explicitly, so this only bounds how often argon2 reruns.
    #[arg(long, env = "TRIGGERS_KEY_VERIFIED_TTL", default_value = "24h", value_parser = humantime::parse_duration)]
    pub verified_ttl: Duration,
}
