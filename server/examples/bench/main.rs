//! barkeep's benchmarks against the real stack (PostgreSQL 14, Barman 3.3.0, barkeep), one table
//! per figure, each figure's ways measured side by side in ONE run and given as a ratio: these
//! machines are noisy, and an absolute time alone means little. Nothing here is asserted as a
//! speed; a figure fails only when what it measures went wrong (a restore that lands on the
//! wrong data, a catalog that did not grow). Run it with `scripts/bench` (README, "Benchmarks").
//!
//! 1. `catalog`: the dashboard's data, [`engine::Engine::overview`] against the Barman CLI doing
//!    the same job, on a catalog grown to 30 backups and 50,000 WAL segments.
//! 2. `restore`: downtime of a restore, barkeep against the manual sequence and the floor
//!    (`barman recover` + start alone), on 0.1 GB and ~1 GB.
//! 3. `web`: the dashboard and its live feed under 200 signed-in clients for 30 s.
//! 4. `footprint`: the browser bundle, the server's memory, and the transaction list of 10,000
//!    transactions (find the mistake), cold and cached.
//! 5. `offsite`: the off-site copy on a real Garage: replicating a backup, and restores from the
//!    bucket (production present, and the disaster with nothing local left) beside the local
//!    one. Not part of `all` (it needs `scripts/sandbox install --offsite`).
//!
//! Sizes come from the environment (scripts/bench sets them): BENCH_BACKUPS, BENCH_SEGMENTS,
//! BENCH_SAMPLES (figure 1), BENCH_SCALES (figure 2, pgbench scales, e.g. "7 70 350"),
//! BENCH_CLIENTS, BENCH_SECONDS (figure 3), BENCH_TRANSACTIONS (figure 4); BARKEEP_BIN chooses
//! the served binary of figures 3 and 4.

mod catalog;
mod footprint;
mod offsite;
mod restore;
mod table;
mod web;

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut figures: Vec<String> = std::env::args().skip(1).collect();
    if figures.is_empty() || figures.iter().any(|f| f == "all") {
        figures = ["catalog", "restore", "web", "footprint"]
            .map(String::from)
            .to_vec();
    }
    if let Some(bad) = figures
        .iter()
        .find(|f| !["catalog", "restore", "web", "footprint", "offsite"].contains(&f.as_str()))
    {
        anyhow::bail!("no figure {bad:?}: choose catalog, restore, web, footprint, offsite or all");
    }
    println!("{}", machine());
    let mut web_run = None;
    for figure in &figures {
        match figure.as_str() {
            "catalog" => catalog::run(&catalog::Sizes::from_env())?,
            "restore" => restore::run(&env_list("BENCH_SCALES", &[7, 70]))?,
            "offsite" => offsite::run(&env_list("BENCH_SCALES", &[7, 70]))?,
            "web" => web_run = Some(web::run(&web::Load::from_env())?),
            "footprint" => {
                // The server's memory under load is figure 3's: run it when it was not asked.
                let load = match web_run.take() {
                    Some(w) => w,
                    None => web::run(&web::Load::from_env())?,
                };
                footprint::run(&load, env_num("BENCH_TRANSACTIONS", 10_000))?;
            }
            _ => unreachable!("checked above"),
        }
    }
    Ok(())
}

/// The machine the figures were measured on, for the reader of a pasted output.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(|| "?".into(), |kib| format!("{} GiB", kib / 1024 / 1024));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    format!(
        "barkeep bench on {cpu}, {cores} cores, {memory} RAM, Linux {kernel}, {}",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// A list of numbers separated by spaces or commas.
fn env_list(name: &str, default: &[u32]) -> Vec<u32> {
    std::env::var(name)
        .ok()
        .map(|v| {
            v.split([' ', ','])
                .filter_map(|s| s.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_vec())
}

/// Samples of one measurement, sorted.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Self(v)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The `p`-quantile as a table cell, a dash when nothing was measured.
    pub fn cell(&self, p: f64) -> String {
        if self.is_empty() {
            "—".into()
        } else {
            ms(self.quantile(p))
        }
    }
    /// The `p`-quantile (nearest rank), zero when empty.
    pub fn quantile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[i]
    }
    pub fn median(&self) -> Duration {
        self.quantile(0.5)
    }
    pub fn p95(&self) -> Duration {
        self.quantile(0.95)
    }
}

/// `d` in milliseconds for a table cell.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// `d` in seconds for a table cell.
pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// `a / b` as a table cell, e.g. `0.12x`.
pub fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "—".into();
    }
    let r = a.as_secs_f64() / b.as_secs_f64();
    if r < 0.1 {
        format!("{r:.3}x")
    } else {
        format!("{r:.2}x")
    }
}

/// A sandbox with the pgbench tables at `scale` in `app`, an engine on it, a runtime, and the
/// database's size in words.
pub fn pgbench_stack(
    opts: barkeep_testkit::SandboxOptions,
    scale: u32,
) -> anyhow::Result<(
    barkeep_testkit::Sandbox,
    engine::Engine,
    tokio::runtime::Runtime,
    String,
)> {
    let sb = barkeep_testkit::Sandbox::up(opts);
    let config = engine::Config::load(&sb.config_path())?;
    let engine = engine::Engine::new(std::sync::Arc::new(config))?;
    let rt = tokio::runtime::Runtime::new()?;
    run_ok(
        std::process::Command::new(sb.pg_bin_dir().join("pgbench"))
            .args(["-i", "-q", "-s", &scale.to_string(), "-h"])
            .arg(sb.socket_dir())
            .args(["-p", &sb.pg_port().to_string(), "-U", "postgres", "app"]),
    )?;
    let size = sb.psql("SELECT pg_size_pretty(pg_database_size('app'))");
    Ok((sb, engine, rt, size))
}

/// Runs a command to its end; its output in the error when it fails.
pub fn run_ok(c: &mut std::process::Command) -> anyhow::Result<()> {
    let out = c.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{c:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
