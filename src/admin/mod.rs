//! `triggers-api admin`: the operator's command line, talking to Postgres
//! and Redis as the service does. Tables by default, `--json` for scripts;
//! one module per command group, each result printed through [`Report`].

mod args;
mod dlq;
mod events;
mod keys;
mod orgs;
mod output;
mod retention;
mod streams;

pub use self::args::{
    AdminArgs, AdminCommand, DlqCommand, EventsCommand, KeysCommand, OrgsCommand, RetentionCommand,
    StreamsCommand,
};
use self::output::Report;
use crate::{
    auth::revocation::Revocation,
    config::ConnectionUrl,
    events::EventsError,
    redis::{self, Keys, RedisError},
    retention::RetentionPolicy,
    store::{Store, StoreError},
};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot connect to Postgres (DATABASE_URL): {0}")]
    Postgres(StoreError),
    #[error("cannot connect to Redis (REDIS_URL): {0}")]
    RedisConnect(RedisError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot print: {0}")]
    Output(#[from] std::io::Error),
    #[error("{0}")]
    SecretKeys(String),
}

/// What every command works with.
struct Admin {
    store: Store,
    keys: Keys,
    redis_url: ConnectionUrl,
    retention: RetentionPolicy,
    revocation: Revocation,
    json: bool,
}

pub async fn run(args: AdminArgs) -> Result<(), AdminError> {
    let sealer = args
        .security
        .sealer()
        .map_err(|e| AdminError::SecretKeys(format!("{e:#}")))?;
    let store = Store::connect(&args.database.database_url, 2)
        .await
        .map_err(AdminError::Postgres)?
        .with_sealer(std::sync::Arc::new(sealer));
    let admin = Admin {
        store,
        keys: args.shared.keys(),
        redis_url: args.shared.redis_url,
        retention: args.shared.retention,
        revocation: Revocation::new(args.key_caches.verified_ttl, args.key_caches.key_cache_ttl),
        json: args.json,
    };
    match args.command {
        AdminCommand::Orgs(command) => orgs::run(&admin, command).await,
        AdminCommand::Keys(command) => keys::run(&admin, command).await,
        AdminCommand::Events(command) => events::run(&admin, command).await,
        AdminCommand::Dlq(command) => dlq::run(&admin, command).await,
        AdminCommand::Streams(command) => streams::run(&admin, command).await,
        AdminCommand::Retention(command) => retention::run(&admin, command).await,
    }
}

impl Admin {
    async fn redis(&self) -> Result<fred::prelude::Client, AdminError> {
        redis::connect_client(&self.redis_url)
            .await
            .map_err(AdminError::RedisConnect)
    }

    /// Prints a command's result as the operator asked (table or JSON).
    fn print<R: Report>(&self, report: &R) -> Result<(), AdminError> {
        Ok(output::print(report, self.json)?)
    }
}
