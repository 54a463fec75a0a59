//! `barkeep`: the web app's server and the command line over the engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cli;
mod web;

#[derive(Parser)]
#[command(
    name = "barkeep",
    version,
    about = "Point-in-time recovery for PostgreSQL, from a browser"
)]
struct Cli {
    /// barkeep's configuration file (TOML).
    #[arg(
        long,
        global = true,
        env = "BARKEEP_CONFIG",
        default_value = "/etc/barkeep/barkeep.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app.
    Serve,
    /// Check the configuration file and print it as barkeep understands it.
    CheckConfig,
    /// Point-in-time restore from the command line.
    #[command(subcommand)]
    Restore(cli::RestoreCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never in logs, journals or CI output.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    #[cfg(feature = "fault-injection")]
    tracing::warn!(
        "built with fault injection (BARKEEP_FAULT_KILL_AFTER): a test build, not for production"
    );
    let cli = Cli::parse();
    let config = engine::Config::load(&cli.config)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match cli.command {
        Command::Serve => {
            let engine = engine::restore::Engine::new(Arc::new(config))?;
            runtime.block_on(web::serve(engine))
        }
        Command::Restore(command) => {
            let engine = engine::restore::Engine::new(Arc::new(config))?;
            runtime.block_on(cli::run(engine, command))
        }
        Command::CheckConfig => {
            println!("{config:#?}");
            Ok(())
        }
    }
}
