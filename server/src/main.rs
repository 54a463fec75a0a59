//! `barkeep`: the web app's server and the command line over the engine.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod auth;
mod cli;
mod live;
mod metrics;
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
    /// barkeep.toml: print an example, or check a file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Point-in-time restore from the command line.
    #[command(subcommand)]
    Restore(cli::RestoreCommand),
    /// Off-site copies of the backups and the WAL (the `[offsite]` section).
    #[command(subcommand)]
    Offsite(cli::OffsiteCommand),
    /// The people who may sign in to the web app.
    #[command(subcommand)]
    User(UserCommand),
    /// Every path the web server answers (pages, server functions, forms), as JSON: what the
    /// access tests walk, so that a new one cannot be left out.
    Routes,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user, or give an existing one a new role and password. The password is read from
    /// a prompt (twice) at a terminal, else from the first line of stdin; never from argv.
    Add {
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum RoleArg {
    /// The dashboard and the history.
    Viewer,
    /// Also restores and actions.
    Operator,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a complete barkeep.toml: the NixOS module's defaults, with `--set` applied. The
    /// sandbox writes its barkeep.toml this way.
    Example {
        /// How PostgreSQL is started and stopped.
        #[arg(long, value_enum, default_value_t = ServiceArg::Systemd)]
        service: ServiceArg,
        /// A setting, `key=value`; a dotted key names a table (`postgres.port=54329`).
        #[arg(long = "set", value_name = "KEY=VALUE", value_parser = setting)]
        settings: Vec<(String, String)>,
    },
    /// Check the configuration file (`--config`) and print it as barkeep reads it.
    Check,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ServiceArg {
    Systemd,
    PgCtl,
}

fn setting(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
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
    match cli.command {
        Command::Config(ConfigCommand::Example { service, settings }) => {
            let kind = match service {
                ServiceArg::Systemd => engine::config::ServiceKind::Systemd,
                ServiceArg::PgCtl => engine::config::ServiceKind::PgCtl,
            };
            let config = engine::Config::example(kind).with_settings(&settings)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            let config = engine::Config::load(&cli.config)?;
            print!("{}", config.to_toml());
            Ok(())
        }
        Command::User(UserCommand::Add { name, role }) => {
            let config = engine::Config::load(&cli.config)?;
            let role = match role {
                RoleArg::Viewer => engine::users::Role::Viewer,
                RoleArg::Operator => engine::users::Role::Operator,
            };
            let password = read_password()?;
            let path = config.users_file();
            engine::users::Users::add(&path, &name, role, &password)?;
            eprintln!(
                "{name} ({}) can sign in; users file {}",
                role.name(),
                path.display()
            );
            Ok(())
        }
        Command::Routes => {
            let table = runtime()?.block_on(async { web::route_table() });
            println!("{}", serde_json::to_string_pretty(&table)?);
            Ok(())
        }
        Command::Serve => {
            let engine = engine::Engine::new(Arc::new(engine::Config::load(&cli.config)?))?;
            runtime()?.block_on(web::serve(engine))
        }
        Command::Restore(command) => {
            let engine = engine::Engine::new(Arc::new(engine::Config::load(&cli.config)?))?;
            runtime()?.block_on(cli::run(engine, command))
        }
        Command::Offsite(command) => {
            let engine = engine::Engine::new(Arc::new(engine::Config::load(&cli.config)?))?;
            runtime()?.block_on(cli::run_offsite(engine, command))
        }
    }
}

/// A password from a prompt (asked twice) at a terminal, else the first line of stdin.
fn read_password() -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(
            first == again,
            "the two passwords differ; nothing was changed"
        );
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        Ok(line.trim_end_matches(['\n', '\r']).to_owned())
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
