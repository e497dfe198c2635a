use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use triggers_api::{
    cli::{Cli, Command},
    config::{Config, DatabaseArgs, reference},
    sealing::Sealer,
    shutdown,
    store::Store,
    telemetry,
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let role = match &cli.command {
        Command::Serve(config) => config.process.role.as_str(),
        Command::Migrate(_) => "migrate",
        // Before telemetry: stdout must hold the key and nothing else.
        Command::NewSecretKey { id } => {
            println!("{}", Sealer::new_key_spec(id));
            return ExitCode::SUCCESS;
        }
        Command::ConfigReference => {
            print!("{}", reference::markdown(&Cli::command()));
            return ExitCode::SUCCESS;
        }
        // Its stdout is a table or JSON for a script: no log lines there.
        Command::Admin(_) => "admin",
    };
    let telemetry = (role != "admin").then(|| telemetry::init(role));
    let outcome = match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Migrate(database) => migrate(database).await,
        Command::NewSecretKey { .. } | Command::ConfigReference => Ok(()),
        Command::Admin(args) => triggers_api::admin::run(*args).await.map_err(Into::into),
    };
    if let Some(telemetry) = telemetry {
        telemetry.shutdown().await;
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("triggers-api: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listen = config.process.listen;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    triggers_api::run(config, listener, token).await
}

async fn migrate(database: DatabaseArgs) -> anyhow::Result<()> {
    let store = Store::connect(&database.database_url, 2)
        .await
        .context("cannot connect to Postgres (DATABASE_URL)")?;
    store.migrate().await?;
    triggers_api::partitions::ensure_ahead(&store, chrono::Utc::now()).await?;
    tracing::info!("migrations applied");
    Ok(())
}
