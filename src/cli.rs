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
    /// Print the configuration reference (docs/configuration.md) as Markdown.
    #[command(hide = true)]
    ConfigReference,
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

    /// The variables of a subcommand, sorted.
    fn variables(subcommand: &str) -> Vec<String> {
        let cli = <Cli as clap::CommandFactory>::command();
        let command = cli.find_subcommand(subcommand).expect("subcommand");
        let mut names: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn serve_and_admin_read_the_documented_variables() {
        let serve = "DATABASE_URL REDIS_URL TRIGGERS_ADMIN_TOKEN TRIGGERS_ALLOW_OPEN_SIGNUP \
            TRIGGERS_ALLOW_PRIVATE_WEBHOOKS TRIGGERS_ARCHIVERS TRIGGERS_ARCHIVE_BATCH \
            TRIGGERS_AUTH_FAILURES_PER_ADDRESS TRIGGERS_AUTH_FAILURES_PER_PREFIX \
            TRIGGERS_AUTH_FAILURE_WINDOW TRIGGERS_CLIENT_IP_HEADER TRIGGERS_CONSUMER_NAME \
            TRIGGERS_DB_POOL_SIZE TRIGGERS_DELIVERY_CONCURRENCY TRIGGERS_DELIVERY_PER_ORG \
            TRIGGERS_ENV TRIGGERS_HTTP_BODY_TIMEOUT TRIGGERS_HTTP_HEADER_TIMEOUT \
            TRIGGERS_HTTP_MAX_CONNECTIONS TRIGGERS_HTTP_MAX_HEADER_BYTES TRIGGERS_KEY_CACHE_TTL \
            TRIGGERS_KEY_HASH_QUEUE TRIGGERS_KEY_HASH_THREADS TRIGGERS_KEY_VERIFIED_TTL \
            TRIGGERS_LISTEN TRIGGERS_MAX_LEASES TRIGGERS_MIGRATE TRIGGERS_REDIS_COMMAND_TIMEOUT \
            TRIGGERS_REDIS_POOL_SIZE TRIGGERS_REDIS_PREFIX TRIGGERS_REQUEST_TIMEOUT \
            TRIGGERS_RETENTION TRIGGERS_RETENTION_INTERVAL TRIGGERS_RETRY_SCHEDULE TRIGGERS_ROLE \
            TRIGGERS_SECRET_KEYS TRIGGERS_SHUTDOWN_TIMEOUT TRIGGERS_STORE_RETRY_MAX \
            TRIGGERS_STREAM_SHARDS TRIGGERS_VISIBILITY_TIMEOUT TRIGGERS_WEBHOOK_CONNECT_TIMEOUT \
            TRIGGERS_WEBHOOK_TIMEOUT TRIGGERS_WEBHOOK_TRACEPARENT";
        assert_eq!(
            variables("serve"),
            serve.split_whitespace().collect::<Vec<_>>()
        );
        let admin = "DATABASE_URL REDIS_URL TRIGGERS_ALLOW_OPEN_SIGNUP TRIGGERS_ENV \
            TRIGGERS_KEY_CACHE_TTL TRIGGERS_KEY_VERIFIED_TTL TRIGGERS_REDIS_PREFIX \
            TRIGGERS_RETENTION TRIGGERS_SECRET_KEYS TRIGGERS_STREAM_SHARDS";
        assert_eq!(
            variables("admin"),
            admin.split_whitespace().collect::<Vec<_>>()
        );
    }

    #[test]
    fn sizes_of_nothing_are_refused_when_parsed_not_clamped_later() {
        for flag in ["--archive-batch", "--db-pool-size", "--redis-pool-size"] {
            let parsed = Cli::try_parse_from(["triggers-api", "serve", flag, "0"]);
            assert!(parsed.is_err(), "{flag} 0 was accepted");
            let parsed = Cli::try_parse_from(["triggers-api", "serve", flag, "1"]);
            assert!(parsed.is_ok(), "{flag} 1 was refused");
        }
    }

    #[test]
    fn the_configuration_reference_is_a_hidden_command() {
        let parsed = Cli::try_parse_from(["triggers-api", "config-reference"]).expect("parses");
        assert!(matches!(parsed.command, Command::ConfigReference));
        let help = <Cli as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        assert!(help.contains("new-secret-key"), "{help}");
        assert!(!help.contains("config-reference"), "{help}");
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
