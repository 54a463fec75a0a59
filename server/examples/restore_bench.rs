//! The restore, step by step, on a database of real size (pgbench -i -s 70 ≈ 1 GB by default;
//! BENCH_SCALE to change it), against the real stack. Prints a table of wall times next to
//! barman's own `recover` into a scratch directory. Run it with `scripts/bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions};
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

    let t = Instant::now();
    let status = rt.block_on(engine.start_restore(target, None))?;
    let to_paused = t.elapsed();
    for s in &status.steps {
        if let Some(end) = s.finished {
            let ms = (end - s.started).num_milliseconds().max(0) as u64;
            let what = match s.step.name() {
                "plan" => "step plan (journaled part; the checks ran before it)".to_owned(),
                name => format!("step {name}"),
            };
            rows.push((what, Duration::from_millis(ms)));
        }
    }
    rows.push(("start_restore total (plan .. paused)".into(), to_paused));
    let t = Instant::now();
    let accepted = rt.block_on(engine.accept())?;
    rows.push((
        "step accept (archiving on, promote, clean, switch)".into(),
        t.elapsed(),
    ));
    anyhow::ensure!(
        sb.psql("SELECT max(bbalance) FROM pgbench_branches").trim() == "1",
        "wrong data"
    );
    let _ = accepted;

    // Barman alone, for comparison: the same backup into a scratch directory.
    let scratch = sb.dir().join("bench-scratch");
    let backup_id = status.plan.backup_id.clone();
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
    Ok(())
}
