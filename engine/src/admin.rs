//! Every change barkeep makes in PostgreSQL, and the identity questions the restore asks before
//! it makes one. The read-only questions (is it up, in recovery, paused, how far archived) are
//! in `probe`; what `barman recover` wrote into the data directory is undone by
//! `restore::leftovers`.
//!
//! All of it runs as barkeep's own administrative role over the local socket. ALTER SYSTEM
//! writes postgresql.auto.conf, which works where postgresql.conf is a read-only link (NixOS).

use std::time::Duration;

use tokio_postgres::Client;

use crate::probe::{self, ProbeError};

/// How long promotion may take after `pg_wal_replay_resume()` (the end-of-recovery checkpoint).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error("archive_command could not be set back to {0:?}: PostgreSQL still reports another value after a reload")]
    ArchiveCommand(String),
    #[error("PostgreSQL did not take the setting {0} after a reload")]
    Setting(&'static str),
    #[error("PostgreSQL did not finish recovery within {0} s of pg_wal_replay_resume()")]
    PromoteTimeout(u64),
}

fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> ProbeError {
    move |source| ProbeError::Query { what, source }
}

/// The cluster's system identifier (`pg_control_system()`), to compare with Barman's.
pub async fn system_identifier(client: &Client) -> Result<String, ProbeError> {
    let row = client
        .query_one(
            "SELECT system_identifier::text FROM pg_control_system()",
            &[],
        )
        .await
        .map_err(query("system identifier"))?;
    Ok(row.get(0))
}

/// The timeline the server writes on now (from the current WAL file's name: the checkpoint's
/// timeline lags until the end-of-recovery checkpoint).
pub async fn current_timeline(client: &Client) -> Result<Option<i32>, ProbeError> {
    let row = client
        .query_one(
            "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
            &[],
        )
        .await
        .map_err(query("current timeline"))?;
    let hex: String = row.get(0);
    Ok(i32::from_str_radix(&hex, 16).ok())
}

/// A transaction of barkeep's own, committed now: recovery needs a commit after the target in
/// archived WAL to stop there (docs/barman.md).
pub async fn commit_sealing_transaction(client: &Client) -> Result<(), ProbeError> {
    client
        .batch_execute("SELECT pg_current_xact_id()")
        .await
        .map_err(query("sealing transaction"))
}

/// Sets `archive_command` in postgresql.auto.conf and reloads; the value goes through
/// `format(%L)`, never spliced into SQL.
pub async fn set_archive_command(client: &Client, command: &str) -> Result<(), ProbeError> {
    let q = query("set archive_command");
    let row = client
        .query_one(
            "SELECT format('ALTER SYSTEM SET archive_command = %L', $1::text)",
            &[&command],
        )
        .await
        .map_err(&q)?;
    let stmt: String = row.get(0);
    client.batch_execute(&stmt).await.map_err(&q)?;
    reload(client).await
}

/// Archiving back on, to exactly `command`: first by leaving it to postgresql.conf (where the
/// NixOS module and the sandbox put it) once Barman's `archive_command = false` is gone from
/// there, else by ALTER SYSTEM; proven by reading the setting back.
pub async fn enable_archiving(client: &Client, command: &str) -> Result<(), AdminError> {
    // One statement per call: ALTER SYSTEM refuses an implicit transaction block.
    client
        .batch_execute("ALTER SYSTEM RESET archive_command")
        .await
        .map_err(query("reset archive_command"))?;
    reload(client).await?;
    if wait_for_setting(client, "archive_command", command).await? {
        return Ok(());
    }
    set_archive_command(client, command).await?;
    if wait_for_setting(client, "archive_command", command).await? {
        return Ok(());
    }
    Err(AdminError::ArchiveCommand(command.to_owned()))
}

/// `ALTER SYSTEM RESET <name>` for each of `names`, then a reload. Only names barkeep knows
/// (plain identifiers) are accepted.
pub async fn reset_settings(client: &Client, names: &[&str]) -> Result<(), ProbeError> {
    for name in names {
        debug_assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        client
            .batch_execute(&format!("ALTER SYSTEM RESET {name}"))
            .await
            .map_err(query("reset a recovery setting"))?;
    }
    reload(client).await
}

/// The preview's write hold on production: `default_transaction_read_only` on through ALTER
/// SYSTEM and a reload, so every new transaction is refused a write ("cannot execute INSERT in a
/// read-only transaction"); proven by reading it back.
pub async fn hold_writes(client: &Client) -> Result<(), AdminError> {
    client
        .batch_execute("ALTER SYSTEM SET default_transaction_read_only = on")
        .await
        .map_err(query("hold writes"))?;
    reload(client).await?;
    if wait_for_setting(client, "default_transaction_read_only", "on").await? {
        return Ok(());
    }
    Err(AdminError::Setting("default_transaction_read_only = on"))
}

/// The write hold undone: `ALTER SYSTEM RESET default_transaction_read_only`, with a reload
/// (`reload`), or written only into postgresql.auto.conf for the next start (the swap: the
/// hold stays in force on the running production until it stops, and the data directory set
/// aside does not carry it).
pub async fn release_writes(client: &Client, reload_now: bool) -> Result<(), ProbeError> {
    // This session's own transactions must be allowed to write the setting back.
    client
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .map_err(query("release writes"))?;
    client
        .batch_execute("ALTER SYSTEM RESET default_transaction_read_only")
        .await
        .map_err(query("release writes"))?;
    if reload_now {
        reload(client).await?;
    }
    Ok(())
}

/// Cumulative counters of every database (`pg_stat_database`): transactions committed and rows
/// written (inserted, updated, deleted).
pub async fn write_counters(client: &Client) -> Result<(i64, i64), ProbeError> {
    let row = client
        .query_one(
            "SELECT coalesce(sum(xact_commit), 0)::bigint,
                    coalesce(sum(tup_inserted + tup_updated + tup_deleted), 0)::bigint
               FROM pg_stat_database",
            &[],
        )
        .await
        .map_err(query("write counters"))?;
    Ok((row.get(0), row.get(1)))
}

/// `CHECKPOINT`: on a server in recovery, a restartpoint, so that the next start replays from
/// here instead of from the backup's start.
pub async fn checkpoint(client: &Client) -> Result<(), ProbeError> {
    client
        .batch_execute("CHECKPOINT")
        .await
        .map_err(query("checkpoint"))
}

/// Ends a paused recovery: `pg_wal_replay_resume()` (with `--target-action pause` that is the
/// promotion), then waits until the server is out of recovery. Returns the new timeline.
pub async fn resume_replay_and_wait_promoted(client: &Client) -> Result<i32, AdminError> {
    if probe::status_of(client).await?.in_recovery {
        client
            .batch_execute("SELECT pg_wal_replay_resume()")
            .await
            .map_err(query("resume replay"))?;
    }
    let deadline = tokio::time::Instant::now() + PROMOTE_TIMEOUT;
    loop {
        let s = probe::status_of(client).await?;
        if !s.in_recovery {
            return Ok(current_timeline(client).await?.unwrap_or(s.timeline));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(AdminError::PromoteTimeout(PROMOTE_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn reload(client: &Client) -> Result<(), ProbeError> {
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(query("reload the configuration"))
}

/// pg_reload_conf() is asynchronous: wait until this session sees the value.
async fn wait_for_setting(client: &Client, name: &str, want: &str) -> Result<bool, ProbeError> {
    for _ in 0..40 {
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .map_err(query("read a setting"))?;
        let v: String = row.get(0);
        if v == want {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
