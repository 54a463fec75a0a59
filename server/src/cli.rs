//! `barkeep restore ...`: the restore state machine from a terminal (and from the NixOS VM
//! tests). Every command prints JSON on stdout; errors go to stderr in words, exit code 1.

use clap::{Args, Subcommand};
use engine::restore::ModeChoice;
use engine::target::{RestoreTarget, Side, TargetTime};
use engine::Engine;

/// Where to stop: a time, or just before or after a transaction found in the WAL.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// The moment to restore to, with an explicit zone: "2026-11-26 09:30:00+00:00".
    #[arg(long)]
    target_time: Option<String>,
    /// Stop just before this transaction committed: everything that committed before it
    /// (`barkeep restore transactions` lists them).
    #[arg(long)]
    before_xid: Option<u32>,
    /// Stop just after this transaction committed.
    #[arg(long)]
    after_xid: Option<u32>,
}

impl TargetArgs {
    async fn resolve(&self, engine: &Engine) -> anyhow::Result<RestoreTarget> {
        Ok(match (&self.target_time, self.before_xid, self.after_xid) {
            (Some(t), _, _) => RestoreTarget::Time(t.parse::<TargetTime>()?),
            (_, Some(xid), _) => engine.transaction_target(xid, Side::Before).await?,
            (_, _, Some(xid)) => engine.transaction_target(xid, Side::After).await?,
            (None, None, None) => anyhow::bail!("give --target-time, --before-xid or --after-xid"),
        })
    }
}

/// In place, or a preview beside production.
#[derive(Args)]
pub struct ModeArgs {
    /// Restore beside production, which keeps serving while you verify; accept swaps the
    /// restored copy in (down for about a second). Without it: in place (down from the stop
    /// until you accept).
    #[arg(long)]
    preview: bool,
    /// With --preview: production refuses writes until the preview ends (the swap would
    /// discard them).
    #[arg(long, requires = "preview")]
    hold_writes: bool,
}

impl ModeArgs {
    fn choice(&self) -> ModeChoice {
        if self.preview {
            ModeChoice::Preview {
                hold_writes: self.hold_writes,
            }
        } else {
            ModeChoice::InPlace
        }
    }
}

#[derive(Subcommand)]
pub enum RestoreCommand {
    /// The dry run: validate the target, choose the backup, preflight. Touches nothing.
    Plan {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        backup_id: Option<String>,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// Run a restore up to PostgreSQL paused at the target (rolls back by itself on failure).
    Start {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long)]
        backup_id: Option<String>,
        #[command(flatten)]
        mode: ModeArgs,
    },
    /// Whether a preview can run beside production now, and why not.
    Preflight,
    /// What production did since the open preview began (the swap discards it).
    ProductionWrites,
    /// The transactions that ended in a time range, from the WAL Barman holds (JSON): what
    /// each did, per table; the suspicious ones (drops, truncates, largest deletes) marked.
    Transactions {
        /// Start of the range, with an explicit zone (default: an hour before --to).
        #[arg(long)]
        from: Option<String>,
        /// End of the range, with an explicit zone (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only the suspicious ones.
        #[arg(long)]
        suspicious: bool,
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
        #[command(flatten)]
        target: TargetArgs,
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

fn time(s: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(s.parse::<TargetTime>()?.utc())
}

/// `barkeep offsite ...`: the off-site copy (docs/offsite.md).
#[derive(Subcommand)]
pub enum OffsiteCommand {
    /// Copy to the bucket what the local catalog has and the bucket lacks, now; print the
    /// outcome (also kept for the dashboard).
    Replicate,
    /// What the last replication run found and did.
    Status,
    /// What the bucket holds now: its backups and WAL files.
    List,
    /// The dry run of a restore from the bucket alone: the backup it would use, what it
    /// would set aside. Touches nothing.
    RestorePlan {
        /// The moment to restore to, with an explicit zone: "2026-11-26 09:30:00+00:00".
        #[arg(long)]
        target_time: String,
        /// A backup in the bucket (default: the newest that ended before the target).
        #[arg(long)]
        backup_id: Option<String>,
    },
    /// The disaster restore: rebuild the data directory from the bucket alone (no Barman
    /// catalog needed) up to PostgreSQL paused at the target, setting aside whatever data
    /// directory is there. Then `barkeep restore query|accept|retry|rollback` as any restore.
    Restore {
        /// The moment to restore to, with an explicit zone: "2026-11-26 09:30:00+00:00".
        #[arg(long)]
        target_time: String,
        /// A backup in the bucket (default: the newest that ended before the target).
        #[arg(long)]
        backup_id: Option<String>,
    },
}

pub async fn run_offsite(engine: Engine, command: OffsiteCommand) -> anyhow::Result<()> {
    match command {
        OffsiteCommand::Replicate => print(&engine.offsite_replicate().await?),
        OffsiteCommand::Status => match engine.offsite_status() {
            Some(s) => print(&s),
            None => {
                anyhow::bail!("no off-site replication has run yet (barkeep offsite replicate)")
            }
        },
        OffsiteCommand::List => print(&engine.offsite_listing().await?),
        OffsiteCommand::RestorePlan {
            target_time,
            backup_id,
        } => print(
            &engine
                .plan_from_bucket(target_time.parse()?, backup_id.as_deref())
                .await?,
        ),
        OffsiteCommand::Restore {
            target_time,
            backup_id,
        } => print(
            &engine
                .start_restore_from_bucket(target_time.parse()?, backup_id.as_deref())
                .await?,
        ),
    }
}

fn print<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn run(engine: Engine, command: RestoreCommand) -> anyhow::Result<()> {
    match command {
        RestoreCommand::Plan {
            target,
            backup_id,
            mode,
        } => print(
            &engine
                .plan_in(
                    target.resolve(&engine).await?,
                    backup_id.as_deref(),
                    mode.choice(),
                )
                .await?,
        ),
        RestoreCommand::Start {
            target,
            backup_id,
            mode,
        } => print(
            &engine
                .start_restore_in(
                    target.resolve(&engine).await?,
                    backup_id.as_deref(),
                    mode.choice(),
                )
                .await?,
        ),
        RestoreCommand::Preflight => print(&engine.preview_preflight(None).await),
        RestoreCommand::ProductionWrites => print(&engine.production_writes().await?),
        RestoreCommand::Transactions {
            from,
            to,
            suspicious,
        } => {
            let to = match to {
                Some(t) => time(&t)?,
                None => chrono::Utc::now(),
            };
            let from = match from {
                Some(f) => time(&f)?,
                None => to - chrono::Duration::hours(1),
            };
            anyhow::ensure!(from <= to, "--from must not be after --to");
            let mut list = engine.transactions(from, to).await?;
            if suspicious {
                list.transactions.retain(|t| t.suspicious);
            }
            print(&list)
        }
        RestoreCommand::Status => print(&engine.status()?),
        RestoreCommand::Query { sql, max_rows } => print(&engine.query(&sql, max_rows).await?),
        RestoreCommand::Retry { target, backup_id } => print(
            &engine
                .retry(target.resolve(&engine).await?, backup_id.as_deref())
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
