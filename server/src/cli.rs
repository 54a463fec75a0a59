//! `barkeep restore ...`: the restore state machine from a terminal (and from the NixOS VM
//! tests). Every command prints JSON on stdout; errors go to stderr in words, exit code 1.

use clap::Subcommand;
use engine::target::TargetTime;
use engine::Engine;

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// The dry run: validate the target, choose the backup, preflight. Touches nothing.
    Plan {
        /// The moment to restore to, with an explicit zone: "2026-11-26 09:30:00+00:00".
        #[arg(long)]
        target_time: String,
        #[arg(long)]
        backup_id: Option<String>,
    },
    /// Run a restore up to PostgreSQL paused at the target (rolls back by itself on failure).
    Start {
        #[arg(long)]
        target_time: String,
        #[arg(long)]
        backup_id: Option<String>,
    },
    /// The restore in progress, or the last one.
    Status,
    /// A read-only query against the paused server.
    Query {
        sql: String,
        #[arg(long, default_value_t = 200)]
        max_rows: usize,
    },
    /// Recover again to another target (from the paused state).
    Retry {
        #[arg(long)]
        target_time: String,
        #[arg(long)]
        backup_id: Option<String>,
    },
    /// Make the restored state live: archiving on, promote, clean up, archive the new timeline.
    Accept {
        /// Then take a new base backup of the restored cluster.
        #[arg(long)]
        backup: bool,
    },
    /// A new base backup now (`barman backup --wait`).
    Backup,
    /// Put the pre-restore data directory back and start it.
    Rollback,
    /// Finish or undo a restore that a crash interrupted (the server does this on start-up).
    Resume,
    /// The pre-restore data directories kept from earlier restores, with their size.
    Kept,
    /// Remove a kept pre-restore data directory.
    Discard { restore_id: String },
}

fn target(s: &str) -> anyhow::Result<TargetTime> {
    Ok(s.parse::<TargetTime>()?)
}

fn print<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(engine: Engine, command: RestoreCommand) -> anyhow::Result<()> {
    match command {
        RestoreCommand::Plan {
            target_time,
            backup_id,
        } => print(
            &engine
                .plan(target(&target_time)?, backup_id.as_deref())
                .await?,
        ),
        RestoreCommand::Start {
            target_time,
            backup_id,
        } => print(
            &engine
                .start_restore(target(&target_time)?, backup_id.as_deref())
                .await?,
        ),
        RestoreCommand::Status => print(&engine.status()?),
        RestoreCommand::Query { sql, max_rows } => print(&engine.query(&sql, max_rows).await?),
        RestoreCommand::Retry {
            target_time,
            backup_id,
        } => print(
            &engine
                .retry(target(&target_time)?, backup_id.as_deref())
                .await?,
        ),
        RestoreCommand::Accept { backup } => {
            let status = engine.accept().await?;
            if backup {
                let out = engine.backup_now().await?;
                eprintln!("new base backup taken in {} ms", out.elapsed_ms);
            }
            print(&status)
        }
        RestoreCommand::Backup => {
            let out = engine.backup_now().await?;
            print(
                &serde_json::json!({ "backup": "done", "elapsed_ms": out.elapsed_ms, "output": out.stdout }),
            )
        }
        RestoreCommand::Rollback => print(&engine.rollback().await?),
        RestoreCommand::Resume => print(&engine.resume().await?),
        RestoreCommand::Kept => print(&engine.pre_restore_dirs()),
        RestoreCommand::Discard { restore_id } => {
            engine.discard_pre_restore(&restore_id).await?;
            print(&serde_json::json!({ "discarded": restore_id }))
        }
    }
}
