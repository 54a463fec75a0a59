//! Figure 5: the off-site copy (docs/offsite.md) against a real Garage on loopback. For each
//! pgbench scale (BENCH_SCALES), one sandbox with replication configured (`--offsite`):
//! 1. the replication run that copies the scale's backup (the run before it copied the
//!    sandbox's first backup and the WAL of the load, so this one is the backup and a few WAL
//!    files);
//! 2. a restore from the local catalog (`Engine::start_restore`) to paused, then rolled back;
//! 3. a restore from the bucket (`Engine::start_restore_from_bucket`) over the same running
//!    production, to paused, then rolled back: the two side by side, same target;
//! 4. the disaster restore: PostgreSQL stopped, its data directory, Barman's home and barkeep's
//!    state removed, rebuilt from the bucket alone to paused, then accepted.
//!
//! Every restore is checked to land on the data at the target.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{SandboxOptions, SERVER};
use engine::restore::{RestoreStatus, Step};
use engine::target::TargetTime;
use engine::{Config, Engine};

use crate::table::Table;
use crate::{ms, ratio, secs};

pub fn run(scales: &[u32]) -> anyhow::Result<()> {
    for &scale in scales {
        eprintln!("[bench] figure 5: off-site copy of pgbench scale {scale}");
        one_size(scale)?;
    }
    Ok(())
}

fn one_size(scale: u32) -> anyhow::Result<()> {
    let (sb, engine, rt, size) =
        crate::pgbench_stack(SandboxOptions::default().with_offsite(), scale)?;
    // The first backup and the load's WAL go first (archived by Barman: a switch-wal --archive
    // waits for its segment, so for every one before it), so that the measured run is the
    // backup and its own WAL.
    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
    let first = rt.block_on(engine.offsite_replicate())?;
    anyhow::ensure!(first.in_sync(), "the first run left a lag: {first:?}");
    sb.barman_ok(&["backup", "--immediate-checkpoint", "--wait", SERVER]);
    let t = Instant::now();
    let copied = rt.block_on(engine.offsite_replicate())?;
    let replicate = t.elapsed();
    anyhow::ensure!(copied.in_sync(), "the run left a lag: {copied:?}");
    anyhow::ensure!(
        copied.copied_backups.len() == 1,
        "the run copied {:?}, not the one new backup",
        copied.copied_backups
    );
    let backup_bytes = engine
        .catalog()?
        .backup(&copied.copied_backups[0])
        .and_then(|b| b.size);

    sb.psql("UPDATE pgbench_branches SET bbalance = 1");
    std::thread::sleep(Duration::from_millis(1100));
    let target = TargetTime::new(chrono::Utc::now());
    std::thread::sleep(Duration::from_millis(1100));
    sb.psql("DELETE FROM pgbench_history; UPDATE pgbench_branches SET bbalance = 2");
    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
    let wal_run = rt.block_on(engine.offsite_replicate())?;
    anyhow::ensure!(wal_run.in_sync(), "the WAL run left a lag: {wal_run:?}");
    let at_target = || -> anyhow::Result<()> {
        let b = sb.psql("SELECT max(bbalance) FROM pgbench_branches");
        anyhow::ensure!(b.trim() == "1", "restored the wrong data: bbalance {b}");
        Ok(())
    };
    let poller = sb.poller();

    // 2. From the local catalog.
    poller.reset();
    let t = Instant::now();
    let local = rt.block_on(engine.start_restore(target, None))?;
    let local_total = t.elapsed();
    let local_down = poller.longest_outage();
    at_target()?;
    rt.block_on(engine.rollback())?;

    // 3. From the bucket, production present.
    poller.reset();
    let t = Instant::now();
    let bucket = rt.block_on(engine.start_restore_from_bucket(target, None))?;
    let bucket_total = t.elapsed();
    let bucket_down = poller.longest_outage();
    at_target()?;
    rt.block_on(engine.rollback())?;
    drop(poller);

    // 4. The disaster: nothing local is left but barkeep.toml and the credentials.
    let out = Command::new(sb.pg_bin_dir().join("pg_ctl"))
        .arg("-D")
        .arg(sb.data_dir())
        .args(["-m", "fast", "-w", "stop"])
        .output()?;
    anyhow::ensure!(out.status.success(), "pg_ctl stop: {out:?}");
    for dir in [sb.data_dir(), sb.barman_home(), sb.state_dir()] {
        std::fs::remove_dir_all(&dir)?;
    }
    let rebuilt = Engine::new(Arc::new(Config::load(&sb.config_path())?))?;
    let t = Instant::now();
    let disaster = rt.block_on(rebuilt.start_restore_from_bucket(target, None))?;
    let disaster_total = t.elapsed();
    at_target()?;
    let t = Instant::now();
    rt.block_on(rebuilt.accept())?;
    let accept = t.elapsed();
    at_target()?;

    let mut t = Table::new(
        format!(
            "Figure 5, {} (pgbench -s {scale}): the off-site copy on Garage over loopback",
            size.trim()
        ),
        &["what", "time", "vs local restore", "detail"],
    )
    .text_column(3);
    t.row([
        "replication run copying the backup".to_owned(),
        secs(replicate),
        "—".into(),
        format!(
            "backup of {} and {} WAL file(s)",
            backup_bytes.map_or("?".into(), |b| format!("{:.2} GB", b as f64 / 1e9)),
            copied.copied_wals
        ),
    ]);
    t.row([
        "restore from the local catalog, to paused".to_owned(),
        secs(local_total),
        ratio(local_total, local_total),
        format!(
            "down {}; recover {}",
            secs(local_down),
            step_ms(&local, Step::Recover)
        ),
    ]);
    t.row([
        "restore from the bucket, production set aside, to paused".to_owned(),
        secs(bucket_total),
        ratio(bucket_total, local_total),
        format!(
            "down {}; recover: {}",
            secs(bucket_down),
            step_detail(&bucket, Step::Recover)
        ),
    ]);
    t.row([
        "disaster: data dir, Barman home and state gone, from the bucket to paused".to_owned(),
        secs(disaster_total),
        ratio(disaster_total, local_total),
        format!(
            "recover: {}; then accept {}",
            step_detail(&disaster, Step::Recover),
            secs(accept)
        ),
    ]);
    t.note(
        "Time: the call, from the plan to PostgreSQL paused at the target (the same target for \
         every restore, each checked to hold the data at the target). Down: a client polling \
         every 50 ms. Restores from the bucket fetch the backup and every WAL file after it \
         before PostgreSQL starts.",
    );
    t.print();
    Ok(())
}

fn step_ms(status: &RestoreStatus, step: Step) -> String {
    status
        .steps
        .iter()
        .rev()
        .find(|s| s.step == step)
        .and_then(|s| (s.finished? - s.started).to_std().ok())
        .map_or("?".into(), ms)
}

/// The step's journaled detail (which ends with its time), else its time.
fn step_detail(status: &RestoreStatus, step: Step) -> String {
    status
        .steps
        .iter()
        .rev()
        .find(|s| s.step == step)
        .and_then(|s| s.detail.clone())
        .unwrap_or_else(|| step_ms(status, step))
}
