//! Figure 4: footprint. The browser bundle a first visit downloads (raw and gzip -9); the
//! server's memory idle, at its peak under figure 3's clients, and after; and finding the
//! mistake among BENCH_TRANSACTIONS (10,000) transactions: pgbench's small transactions (a mix
//! of INSERT, UPDATE and DELETE of one row) with one harmful DELETE among them, the list of the
//! last hour read from Barman's WAL cold (a fresh engine: every segment decoded) and cached (the
//! same engine again), and the time to turn the harmful one into a restore target.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions, SERVER};
use engine::target::Side;
use engine::transactions::TransactionList;
use engine::{Config, Engine};

use crate::table::Table;
use crate::web::WebRun;
use crate::{ms, ratio};

pub fn run(web: &WebRun, n: usize) -> anyhow::Result<()> {
    eprintln!("[bench] figure 4: the bundle, memory, {n} transactions");
    let mut sizes = Table::new("Figure 4. Footprint", &["what", "raw", "gzip -9"]);
    let pkg = barkeep_testkit::repo_root().join("target/site/pkg");
    let (mut raw_sum, mut gz_sum) = (0, 0);
    let mut files: Vec<_> = std::fs::read_dir(&pkg)
        .map_err(|e| {
            anyhow::anyhow!(
                "no bundle in {} ({e}): cargo leptos build --release",
                pkg.display()
            )
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        // What a browser downloads; the TypeScript declarations are for editors.
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "wasm" || x == "js" || x == "css")
        })
        .collect();
    files.sort();
    for f in files {
        let raw = std::fs::metadata(&f)?.len();
        let out = Command::new("gzip").args(["-9", "-c"]).arg(&f).output()?;
        anyhow::ensure!(out.status.success(), "gzip {}", f.display());
        let gz = out.stdout.len() as u64;
        raw_sum += raw;
        gz_sum += gz;
        sizes.row([
            format!(
                "bundle: {}",
                f.file_name().and_then(|n| n.to_str()).unwrap_or("?")
            ),
            bytes(raw),
            bytes(gz),
        ]);
    }
    sizes.row([
        "bundle: all of it (a first visit)".to_owned(),
        bytes(raw_sum),
        bytes(gz_sum),
    ]);
    let mib =
        |k: Option<u64>| k.map_or_else(|| "?".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    sizes.row([
        "server RSS, idle".to_owned(),
        mib(web.rss_idle_kib),
        "".into(),
    ]);
    sizes.row([
        format!("server RSS, peak under {} clients (VmHWM)", web.clients),
        mib(web.rss_peak_kib),
        "".into(),
    ]);
    sizes.row([
        "server RSS, after the clients left".to_owned(),
        mib(web.rss_after_kib),
        "".into(),
    ]);

    let sb = Sandbox::up(SandboxOptions::default());
    let rt = tokio::runtime::Runtime::new()?;
    sb.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text NOT NULL)");
    sb.psql("INSERT INTO ledger (note) SELECT 'seed ' || g FROM generate_series(1, 20000) g");
    sb.barman_ok(&["backup", "--immediate-checkpoint", "--wait", SERVER]);

    // n transactions, a third each: insert a row, update one, delete one (each writes: a
    // transaction that changes nothing has no commit record in the WAL).
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(
        script.path(),
        "\\set k random(1, 3)\n\
         \\if :k = 1\n\
         INSERT INTO ledger (note) VALUES ('bench');\n\
         \\elif :k = 2\n\
         UPDATE ledger SET note = 'updated' WHERE id = (SELECT max(id) FROM ledger);\n\
         \\else\n\
         DELETE FROM ledger WHERE id = (SELECT max(id) FROM ledger);\n\
         \\endif\n",
    )?;
    let t = Instant::now();
    let half = (n / 2).to_string();
    let pgbench = |count: &str| -> anyhow::Result<()> {
        let out = std::process::Command::new(sb.pg_bin_dir().join("pgbench"))
            .args(["-n", "-c", "1", "-t", count, "-f"])
            .arg(script.path())
            .arg("-h")
            .arg(sb.socket_dir())
            .args(["-p", &sb.pg_port().to_string(), "-U", "postgres", "app"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "pgbench: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    pgbench(&half)?;
    let harmed = sb.psql(
        "WITH d AS (DELETE FROM ledger WHERE id BETWEEN 1000 AND 5999 RETURNING 1) \
         SELECT count(*) FROM d",
    );
    pgbench(&half)?;
    let writing = t.elapsed();
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    let segments = sb.archived_wal().len();

    let now = chrono::Utc::now();
    let hour = chrono::Duration::hours(1);
    let list = |engine: &Engine| -> anyhow::Result<(TransactionList, Duration)> {
        let t = Instant::now();
        let l = rt.block_on(engine.transactions(now - hour, now))?;
        Ok((l, t.elapsed()))
    };
    let fresh = || -> anyhow::Result<Engine> {
        Ok(Engine::new(Arc::new(Config::load(&sb.config_path())?))?)
    };
    let engine = fresh()?;
    let (cold, cold_time) = list(&engine)?;
    let runs_cold = engine.transaction_log().waldump_runs();
    let (cached, cached_time) = list(&engine)?;
    let runs_cached = engine.transaction_log().waldump_runs();
    let harm = cold
        .transactions
        .iter()
        .find(|t| t.rows_deleted.to_string() == harmed)
        .ok_or_else(|| anyhow::anyhow!("the harmful DELETE of {harmed} rows was not listed"))?;
    anyhow::ensure!(harm.suspicious, "the harmful DELETE is not suspicious");
    let t = Instant::now();
    rt.block_on(engine.transaction_target(harm.xid, Side::Before))?;
    let targeting = t.elapsed();
    let engine2 = fresh()?;
    let t = Instant::now();
    rt.block_on(engine2.transaction_target(harm.xid, Side::Before))?;
    let targeting_cold = t.elapsed();

    let mut w = Table::new(
        format!(
            "Figure 4, finding the mistake: {} transactions in the last hour ({} suspicious), {} \
             WAL files archived (writing them took {:.1} s); the harmful one: {}",
            cold.transactions.len(),
            cold.transactions.iter().filter(|t| t.suspicious).count(),
            segments,
            writing.as_secs_f64(),
            harm.line
        ),
        &["what", "time", "segments decoded", "pg_waldump runs"],
    );
    w.row([
        "the list of the last hour, cold (a fresh engine)".to_owned(),
        ms(cold_time),
        cold.decoded.to_string(),
        runs_cold.to_string(),
    ]);
    w.row([
        "the same list again, cached".to_owned(),
        ms(cached_time),
        cached.decoded.to_string(),
        (runs_cached - runs_cold).to_string(),
    ]);
    w.row([
        "cached / cold".to_owned(),
        ratio(cached_time, cold_time),
        "".into(),
        "".into(),
    ]);
    w.row([
        "the harmful one as a restore target (cached)".to_owned(),
        ms(targeting),
        "".into(),
        "".into(),
    ]);
    w.row([
        "the harmful one as a restore target (a fresh engine)".to_owned(),
        ms(targeting_cold),
        "".into(),
        engine2.transaction_log().waldump_runs().to_string(),
    ]);
    sizes.print();
    w.print();
    Ok(())
}

fn bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}
