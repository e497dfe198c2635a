//! The command line's root: the subcommands and what each takes.

use clap::{Parser, Subcommand};

use crate::{
    admin::AdminArgs,
    config::{Config, DatabaseArgs},
};

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
    Admin(Box<AdminArgs>),
}

fn default_key_id() -> String {
    format!("k{}", chrono::Utc::now().format("%Y%m%d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Environment;

    const SECRETS: [&str; 4] = [
        "db-pass-1",
        "redis-pass-2",
        "admin-token-3",
        "c2VjcmV0LWtleS00",
    ];

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
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("postgres://app:redacted@db/app"), "{shown}");
    }

    #[test]
    fn debug_of_an_admin_command_never_shows_a_secret() {
        let admin = Cli::try_parse_from([
            "triggers-api",
            "admin",
            "--database-url",
            "postgres://app:db-pass-1@db/app",
            "--redis-url",
            "redis://:redis-pass-2@cache:6379",
            "--secret-keys",
            "k1:c2VjcmV0LWtleS00",
            "streams",
            "info",
        ])
        .expect("parses");
        let shown = format!("{admin:?}");
        for secret in SECRETS {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("redis://:redacted@cache:6379"), "{shown}");
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
