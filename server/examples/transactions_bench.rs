//! Finding the mistake among many transactions: BENCH_TRANSACTIONS (10,000) small transactions
//! from pgbench (a mix of INSERT, UPDATE and DELETE of one row) with one harmful DELETE among
//! them, then the list of the last hour read from Barman's WAL: cold (a fresh engine: every
//! segment decoded) and cached (the same engine again), and the time to turn the harmful one
//! into a restore target. Prints a table; asserts only that the harm is found. Run it with
//! `scripts/bench transactions`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions};
use engine::target::Side;
use engine::transactions::TransactionList;
use engine::{Config, Engine};

fn main() -> anyhow::Result<()> {
    let n: u32 = std::env::var("BENCH_TRANSACTIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let sb = Sandbox::up(SandboxOptions::default());
    let rt = tokio::runtime::Runtime::new()?;
    sb.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, note text NOT NULL)");
    sb.psql("INSERT INTO ledger (note) SELECT 'seed ' || g FROM generate_series(1, 20000) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);

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
    let (cached, cached_time) = list(&engine)?;
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

    println!();
    println!(
        "Finding the mistake: {} transactions in the last hour ({} of them suspicious), {} WAL \
         files archived; writing them took {:.1} s",
        cold.transactions.len(),
        cold.transactions.iter().filter(|t| t.suspicious).count(),
        segments,
        writing.as_secs_f64()
    );
    println!("The harmful one: {}", harm.line);
    println!("| {:<58} | {:>10} | {:>9} |", "what", "ms", "decoded");
    println!("|{}|{}|{}|", "-".repeat(60), "-".repeat(12), "-".repeat(11));
    for (what, d, decoded) in [
        (
            "list the last hour, cold (a fresh engine)",
            cold_time,
            Some(cold.decoded),
        ),
        (
            "list the last hour again, cached",
            cached_time,
            Some(cached.decoded),
        ),
        (
            "the harmful one as a restore target (cached)",
            targeting,
            None,
        ),
        (
            "the harmful one as a restore target (a fresh engine)",
            targeting_cold,
            None,
        ),
    ] {
        println!(
            "| {:<58} | {:>10.1} | {:>9} |",
            what,
            d.as_secs_f64() * 1000.0,
            decoded.map_or_else(|| "-".to_owned(), |n: usize| n.to_string())
        );
    }
    println!(
        "pg_waldump runs: {} (first engine), {} (second engine)",
        engine.transaction_log().waldump_runs(),
        engine2.transaction_log().waldump_runs()
    );
    Ok(())
}
