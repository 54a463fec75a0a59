//! The restore, step by step, on a database of real size (pgbench -i -s 70 ≈ 1 GB by default;
//! BENCH_SCALE to change it), against the real stack. Prints a table of wall times next to
//! barman's own `recover` into a scratch directory, then the downtime of three ways to restore
//! the same target, in one run: the seed's manual sequence (stop, cp -r, find -delete, barman
//! recover, start), barkeep in place, and barkeep's preview then swap. Downtime is measured
//! from outside by a client polling every 50 ms (`SELECT 1` over a new connection), from
//! production's stop until PostgreSQL serves again paused at the target on its port; both
//! in-place ways then stay read-only until the person accepts. Run it with `scripts/bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions};
use engine::restore::{ModeChoice, RestoreStatus, Step};
use engine::target::TargetTime;
use engine::Config;
use engine::Engine;

fn main() -> anyhow::Result<()> {
    let scale: u32 = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(70);
    let sb = Sandbox::up(SandboxOptions::default());
    let config = Config::load(&sb.config_path())?;
    let engine = Engine::new(Arc::new(config))?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut rows: Vec<(String, Duration)> = Vec::new();

    let t = Instant::now();
    let out = std::process::Command::new(sb.pg_bin_dir().join("pgbench"))
        .args(["-i", "-q", "-s", &scale.to_string(), "-h"])
        .arg(sb.socket_dir())
        .args(["-p", &sb.pg_port().to_string(), "-U", "postgres", "app"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rows.push((format!("pgbench -i -s {scale} (setup)"), t.elapsed()));
    let size = sb.psql("SELECT pg_size_pretty(pg_database_size('app'))");

    let t = Instant::now();
    sb.barman_ok(&["backup", "--wait", "pg"]);
    rows.push(("barman backup --wait (setup)".into(), t.elapsed()));
    sb.psql("UPDATE pgbench_branches SET bbalance = 1");
    std::thread::sleep(Duration::from_millis(1100));
    let target = TargetTime::new(chrono::Utc::now());
    std::thread::sleep(Duration::from_millis(1100));
    sb.psql("DELETE FROM pgbench_history; UPDATE pgbench_branches SET bbalance = 2");

    let t = Instant::now();
    let plan = rt.block_on(engine.plan(target, None))?;
    rows.push((
        format!("plan alone (dry run), chose backup {}", plan.backup_id),
        t.elapsed(),
    ));

    // Downtime, three ways, one target: rows of (way, down as the poller saw it, detail).
    let mut downtime: Vec<(String, Duration, String)> = Vec::new();
    let poller = sb.poller();

    // 1. The seed's manual sequence.
    let (down, detail) = manual_sequence(&sb, &plan.backup_id, &target)?;
    downtime.push((
        "manual: stop, cp -r, find -delete, recover, start".into(),
        poller_outage(&poller, down),
        detail,
    ));

    // 2. barkeep in place, rolled back after (the original back, for the next way).
    poller.reset();
    let t = Instant::now();
    let status = rt.block_on(engine.start_restore(target, None))?;
    let to_paused = t.elapsed();
    let outage = poller.longest_outage();
    step_rows(&mut rows, &status, "in place");
    rows.push((
        "in place: start_restore total (plan .. paused)".into(),
        to_paused,
    ));
    downtime.push((
        "barkeep in place: stop .. paused".into(),
        outage,
        format!("journal: stop to paused {} ms", journal_downtime(&status)),
    ));
    let t = Instant::now();
    rt.block_on(engine.rollback())?;
    rows.push(("in place: rollback (the original back)".into(), t.elapsed()));
    let backup_id = status.plan.backup_id.clone();

    // 3. barkeep preview, then swap and accept.
    poller.reset();
    let t = Instant::now();
    let status = rt.block_on(engine.start_restore_in(
        target,
        None,
        ModeChoice::Preview { hold_writes: false },
    ))?;
    let to_paused = t.elapsed();
    let during_preview = poller.longest_outage();
    step_rows(&mut rows, &status, "preview");
    rows.push((
        "preview: start_restore total (plan .. paused beside)".into(),
        to_paused,
    ));
    poller.reset();
    let t = Instant::now();
    let accepted = rt.block_on(engine.accept())?;
    rows.push(("preview: accept (swap, then accept)".into(), t.elapsed()));
    let swap = accepted
        .steps
        .iter()
        .find(|s| s.step == Step::Swap)
        .and_then(|s| s.detail.clone())
        .unwrap_or_default();
    downtime.push((
        "barkeep preview, then swap".into(),
        poller.longest_outage(),
        format!(
            "{}; during the preview production was down {} ms",
            swap.split(':').next().unwrap_or_default(),
            during_preview.as_millis()
        ),
    ));
    anyhow::ensure!(
        sb.psql("SELECT max(bbalance) FROM pgbench_branches").trim() == "1",
        "wrong data"
    );
    drop(poller);

    // Barman alone, for comparison: the same backup into a scratch directory.
    let scratch = sb.dir().join("bench-scratch");
    let t = Instant::now();
    sb.barman_ok(&[
        "recover",
        "pg",
        &backup_id,
        scratch.to_str().unwrap_or_default(),
    ]);
    rows.push((
        "barman recover alone (same backup, scratch dir)".into(),
        t.elapsed(),
    ));
    std::fs::remove_dir_all(&scratch)?;

    println!();
    println!(
        "restore of a {} database (pgbench scale {scale}), 2 cores",
        size.trim()
    );
    println!("| {:<62} | {:>10} |", "what", "wall time");
    println!("|{:-<64}|{:->12}|", "", "");
    for (what, d) in rows {
        println!("| {:<62} | {:>8.2} s |", what, d.as_secs_f64());
    }
    println!();
    println!(
        "downtime to paused at the target on production's port, one run, a client polling every 50 ms"
    );
    println!("| {:<52} | {:>9} | {:<60} |", "way", "down", "detail");
    println!("|{:-<54}|{:->11}|{:-<62}|", "", "", "");
    for (way, d, detail) in downtime {
        println!(
            "| {:<52} | {:>7.2} s | {:<60} |",
            way,
            d.as_secs_f64(),
            detail
        );
    }
    Ok(())
}

/// The journal's own rows: each finished step's wall time.
fn step_rows(rows: &mut Vec<(String, Duration)>, status: &RestoreStatus, mode: &str) {
    for s in &status.steps {
        if let Some(end) = s.finished {
            let ms = (end - s.started).num_milliseconds().max(0) as u64;
            let what = match s.step.name() {
                "plan" => format!("{mode}: step plan (journaled part; checks ran before it)"),
                name => format!("{mode}: step {name}"),
            };
            rows.push((what, Duration::from_millis(ms)));
        }
    }
}

/// From the start of the stop step to the end of start_paused, as journaled.
fn journal_downtime(status: &RestoreStatus) -> i64 {
    let stop = status.steps.iter().find(|s| s.step == Step::Stop);
    let paused = status
        .steps
        .iter()
        .rev()
        .find(|s| s.step == Step::StartPaused)
        .and_then(|s| s.finished);
    match (stop, paused) {
        (Some(stop), Some(paused)) => (paused - stop.started).num_milliseconds(),
        _ => -1,
    }
}

/// The poller's outage, or what the sequence measured itself when the poller saw none.
fn poller_outage(poller: &barkeep_testkit::Poller, measured: Duration) -> Duration {
    let seen = poller.longest_outage();
    if seen.is_zero() {
        measured
    } else {
        seen
    }
}

/// The seed's sequence by hand, as its README did it: stop, copy the data directory aside
/// (cp -r), wipe it (find -delete), barman recover with the target and `--target-action pause`,
/// start, wait until paused. Then the original back (stop, swap the directories back, start),
/// for the next way. Returns its own stop-to-paused time and a detail.
fn manual_sequence(
    sb: &Sandbox,
    backup_id: &str,
    target: &TargetTime,
) -> anyhow::Result<(Duration, String)> {
    let pg_ctl = sb.pg_bin_dir().join("pg_ctl");
    let data = sb.data_dir();
    let copy = sb.dir().join("manual-copy");
    let run = |c: &mut std::process::Command| -> anyhow::Result<()> {
        let out = c.output()?;
        anyhow::ensure!(
            out.status.success(),
            "{c:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    let pg = |action: &str| {
        let mut c = std::process::Command::new(&pg_ctl);
        c.arg("-D").arg(&data).arg("-l").arg(sb.pg_log());
        c.args(["-w", "-m", "fast", action]);
        c
    };
    let down = Instant::now();
    run(&mut pg("stop"))?;
    let t = Instant::now();
    run(std::process::Command::new("cp")
        .arg("-r")
        .arg(&data)
        .arg(&copy))?;
    let cp = t.elapsed();
    run(std::process::Command::new("find")
        .arg(&data)
        .args(["-mindepth", "1", "-delete"]))?;
    let t = Instant::now();
    sb.barman_ok(&[
        "recover",
        "--target-time",
        &target.for_barman(),
        "--target-action",
        "pause",
        "pg",
        backup_id,
        data.to_str().unwrap_or_default(),
    ]);
    let recover = t.elapsed();
    run(&mut pg("start"))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while sb.psql("SELECT pg_get_wal_replay_pause_state()").trim() != "paused" {
        anyhow::ensure!(Instant::now() < deadline, "the manual restore never paused");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopped_to_paused = down.elapsed();
    // The original back.
    run(&mut pg("stop"))?;
    std::fs::remove_dir_all(&data)?;
    std::fs::rename(&copy, &data)?;
    run(&mut pg("start"))?;
    Ok((
        stopped_to_paused,
        format!(
            "cp -r {} ms, recover {} ms",
            cp.as_millis(),
            recover.as_millis()
        ),
    ))
}
