//! The admin command line's arguments: what each subcommand takes.

use clap::{Args, Subcommand};
use uuid::Uuid;

use crate::{
    config::{DatabaseArgs, KeyCaches, SecuritySettings, SharedArgs},
    domain::Tier,
};

#[derive(Debug, Args)]
pub struct AdminArgs {
    // First: every flattened section below sets the help heading of what
    // follows it, and this is the command's own option.
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// The service's Redis, key layout and retention (`orgs list` shows it).
    #[command(flatten)]
    pub shared: SharedArgs,

    /// The same key settings as the service's, to open sealed webhook
    /// secrets (dead-letter replays look the webhook up).
    #[command(flatten)]
    pub security: SecuritySettings,

    /// The service's key cache lifetimes: a key revoked here stays
    /// refused at least that long.
    #[command(flatten)]
    pub key_caches: KeyCaches,

    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Organizations.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    /// API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Events.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Redis streams.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// Retention.
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Remove finished events past their retention now (workers also do
    /// it every TRIGGERS_RETENTION_INTERVAL).
    Sweep {
        /// Events deleted per statement.
        #[arg(long, default_value_t = crate::retention::DELETE_BATCH, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organization and its first key (shown once).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free", value_parser = parse_tier)]
        tier: Tier,
    },
    /// List organizations, oldest first.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
    /// Move an organization to another tier (and its rate limit).
    SetTier {
        organization_id: Uuid,
        #[arg(value_parser = parse_tier)]
        tier: Tier,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// List keys, of one organization or all.
    List {
        #[arg(long)]
        org: Option<Uuid>,
    },
    /// Revoke a key by its prefix (`trg_…`, as `keys list` shows it).
    Revoke { key_prefix: String },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// One archived event, of any organization.
    Get { event_id: Uuid },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters per organization.
    Stats,
    /// Send an organization's dead letters out again.
    Replay {
        #[arg(long)]
        org: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum StreamsCommand {
    /// Length, consumer groups, lag and pending entries per consumer.
    Info,
}

fn parse_tier(raw: &str) -> Result<Tier, String> {
    raw.parse()
        .map_err(|err: crate::domain::UnknownTier| err.to_string())
}
