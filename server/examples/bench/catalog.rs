//! Figure 1: the dashboard's data. [`Engine::overview`] (backups, recovery window, WAL age,
//! PostgreSQL's state, in one call) against the Barman CLI doing the same job (`barman -f json
//! list-backups` + `barman -f json status`), on a catalog grown to BENCH_BACKUPS (30) backups
//! and BENCH_SEGMENTS (50,000) WAL segments in xlog.db.
//!
//! The catalog grows as a long-lived server's does. The sandbox's first backup is real; the
//! cluster is then moved BENCH_SEGMENTS segments forward (`pg_resetwal -l`, as if that much WAL
//! had been written since), a few more real backups are taken there, and the history between is
//! written in Barman's own formats: one xlog.db line per segment (name, size, time, gzip) and a
//! `.backup` line and a `base/<id>/backup.info` per backup in between, made from the real
//! backup.info. xlog.db is rewritten under Barman's own xlogdb lock. Only the files the two
//! readers open are written: no WAL file of the history is on disk, and neither reader opens one
//! (the recovery window decodes the newest segments, which are real).
//!
//! Cold: a WAL segment was just archived (the window must be computed again) and barkeep starts
//! from a fresh engine; Barman's CLI keeps nothing between runs, so its cold and warm differ only
//! by that new segment. Warm: the same again with nothing changed. The OS page cache is warm in
//! both (dropping it needs root; the bench runs as the unprivileged user).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions, SERVER};
use engine::wal::WalSegment;
use engine::{Config, Engine};

use crate::table::Table;
use crate::{env_num, ms, ratio, run_ok, Samples};

pub struct Sizes {
    backups: usize,
    segments: u64,
    samples: usize,
    /// Real backups taken after the move forward (besides the sandbox's first).
    real_after: usize,
}

impl Sizes {
    pub fn from_env() -> Self {
        let backups = env_num("BENCH_BACKUPS", 30).max(2);
        Self {
            backups,
            segments: env_num("BENCH_SEGMENTS", 50_000).max(10) as u64,
            samples: env_num("BENCH_SAMPLES", 15).max(1),
            real_after: 4.min(backups - 1),
        }
    }
}

pub fn run(sizes: &Sizes) -> anyhow::Result<()> {
    eprintln!(
        "[bench] figure 1: growing a catalog to {} backups, {} WAL segments",
        sizes.backups, sizes.segments
    );
    let sb = Sandbox::up(SandboxOptions::default());
    let rt = tokio::runtime::Runtime::new()?;
    let grown = grow(&sb, sizes)?;
    let config = Arc::new(Config::load(&sb.config_path())?);

    // The same job done both ways, checked once.
    let engine = Engine::new(Arc::clone(&config))?;
    let overview = rt.block_on(engine.overview());
    let barman = overview
        .barman
        .as_ref()
        .map_err(|e| anyhow::anyhow!("barkeep cannot read the grown catalog: {e}"))?;
    anyhow::ensure!(
        barman.backups.len() == sizes.backups,
        "barkeep sees {} backups, not {}",
        barman.backups.len(),
        sizes.backups
    );
    if let Err(e) = &barman.window {
        anyhow::bail!("barkeep has no recovery window on the grown catalog: {e}");
    }
    let listed = sb.barman_json(&["list-backups", SERVER]);
    let listed = listed
        .get(SERVER)
        .and_then(|v| v.as_array())
        .map_or(0, Vec::len);
    anyhow::ensure!(
        listed == sizes.backups,
        "barman lists {listed} backups, not {}",
        sizes.backups
    );

    let barman_cli = || -> anyhow::Result<(Duration, Duration)> {
        let t = Instant::now();
        let out = sb.barman(&["-f", "json", "list-backups", SERVER]);
        anyhow::ensure!(out.status.success(), "barman list-backups failed");
        let list = t.elapsed();
        let t = Instant::now();
        let out = sb.barman(&["-f", "json", "status", SERVER]);
        anyhow::ensure!(out.status.success(), "barman status failed");
        serde_json::from_slice::<serde_json::Value>(&out.stdout)?;
        Ok((list, t.elapsed()))
    };
    let overview_of = |engine: &Engine| -> anyhow::Result<Duration> {
        let t = Instant::now();
        let o = rt.block_on(engine.overview());
        let d = t.elapsed();
        let b = o
            .barman
            .map_err(|e| anyhow::anyhow!("barkeep cannot read the catalog: {e}"))?;
        anyhow::ensure!(b.window.is_ok(), "barkeep lost its recovery window");
        Ok(d)
    };

    // Side by side, interleaved: barkeep, then barman, sample after sample.
    let (mut cold_bk, mut cold_bm) = (Vec::new(), Vec::new());
    let (mut warm_bk, mut warm_bm, mut warm_list, mut warm_status) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..sizes.samples {
        // A new segment with a commit in it: what the window depends on changed.
        sb.psql(&format!("INSERT INTO bench_catalog VALUES ({i})"));
        sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
        let t = Instant::now();
        let fresh = Engine::new(Arc::clone(&config))?;
        cold_bk.push(t.elapsed() + overview_of(&fresh)?);
        let (l, s) = barman_cli()?;
        cold_bm.push(l + s);
    }
    let engine = Engine::new(Arc::clone(&config))?;
    overview_of(&engine)?;
    for _ in 0..sizes.samples {
        warm_bk.push(overview_of(&engine)?);
        let (l, s) = barman_cli()?;
        warm_bm.push(l + s);
        warm_list.push(l);
        warm_status.push(s);
    }
    let (cold_bk, cold_bm) = (Samples::new(cold_bk), Samples::new(cold_bm));
    let (warm_bk, warm_bm) = (Samples::new(warm_bk), Samples::new(warm_bm));
    let (warm_list, warm_status) = (Samples::new(warm_list), Samples::new(warm_status));

    let mut t = Table::new(
        format!(
            "Figure 1. The dashboard's data: barkeep's Engine::overview() vs barman -f json \
             list-backups + status, {} backups ({} real), {} lines in xlog.db, {} samples each",
            sizes.backups, grown.real_backups, grown.xlog_lines, sizes.samples
        ),
        &[
            "",
            "barkeep median",
            "barkeep p95",
            "barman CLI median",
            "barman CLI p95",
            "barman CLI / barkeep (median)",
        ],
    );
    for (what, bk, bm) in [
        ("cold (new WAL segment; fresh engine)", &cold_bk, &cold_bm),
        ("warm (nothing changed)", &warm_bk, &warm_bm),
    ] {
        t.row([
            what.to_owned(),
            ms(bk.median()),
            ms(bk.p95()),
            ms(bm.median()),
            ms(bm.p95()),
            ratio(bm.median(), bk.median()),
        ]);
    }
    t.note(format!(
        "barman's warm time splits into list-backups {} and status {} (medians); each is a new \
         Python process reading xlog.db and every backup.info. The OS page cache is warm in both \
         columns.",
        ms(warm_list.median()),
        ms(warm_status.median())
    ));
    t.note(format!(
        "Growing the catalog took {:.0} s: {} real backups, history written in Barman's formats.",
        grown.took.as_secs_f64(),
        grown.real_backups
    ));
    t.print();
    Ok(())
}

struct Grown {
    real_backups: usize,
    xlog_lines: usize,
    took: Duration,
}

/// Grows the sandbox's catalog (see the module's documentation).
fn grow(sb: &Sandbox, sizes: &Sizes) -> anyhow::Result<Grown> {
    let started = Instant::now();
    let server_home = sb.barman_home().join(SERVER);
    let xlog_db = server_home.join("wals/xlog.db");
    let base = server_home.join("base");
    // Barman's cron must keep every backup: retention past the grown count.
    let conf = sb.dir().join(format!("barman/barman.d/{SERVER}.conf"));
    let text = std::fs::read_to_string(&conf)?;
    anyhow::ensure!(
        text.contains("retention_policy = REDUNDANCY"),
        "no retention line in {}",
        conf.display()
    );
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("retention_policy") {
                format!("retention_policy = REDUNDANCY {}", sizes.backups + 10)
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&conf, text + "\n")?;

    let first = only_backup(&base)?;
    let template = std::fs::read_to_string(base.join(&first).join("backup.info"))?;

    // As if `segments` segments had been written since: the cluster moved forward. Whatever
    // it archived before the stop is in xlog.db first (archive-wal), so that no segment of
    // the history is archived later for real.
    let pg_ctl = sb.pg_bin_dir().join("pg_ctl");
    let data = sb.data_dir();
    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
    run_ok(
        std::process::Command::new(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .args(["-w", "-m", "fast", "stop"]),
    )?;
    sb.barman_ok(&["archive-wal", SERVER]);
    let moved = Instant::now();
    let before = newest_segment(&xlog_db)?;
    let after = before + 1 + sizes.segments;
    run_ok(
        std::process::Command::new(sb.pg_bin_dir().join("pg_resetwal"))
            .arg("-l")
            .arg(WalSegment::from_index(1, after).to_string())
            .arg(&data),
    )?;
    run_ok(
        std::process::Command::new(&pg_ctl)
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(sb.pg_log())
            .args(["-w", "start"]),
    )?;
    sb.psql("CREATE TABLE bench_catalog (i int)");
    // Backup ids are seconds: the history's backups need more than a second each between the
    // last thing archived before the move and the first real backup after it.
    std::thread::sleep(
        Duration::from_secs(sizes.backups as u64 + 3).saturating_sub(moved.elapsed()),
    );
    for i in 0..sizes.real_after {
        sb.psql(&format!("INSERT INTO bench_catalog VALUES (-{i})"));
        sb.barman_ok(&["backup", "--immediate-checkpoint", "--wait", SERVER]);
    }
    sb.psql("INSERT INTO bench_catalog VALUES (0)");
    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
    let first_after = std::fs::read_dir(&base)?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_str() != Some(first.as_str()))
        .filter_map(|e| std::fs::read_to_string(e.path().join("backup.info")).ok())
        .filter_map(|info| info_time(&info, "begin_time").ok())
        .min()
        .ok_or_else(|| anyhow::anyhow!("no real backup after the move"))?;

    // The history between, written under Barman's lock on xlog.db.
    let lock = std::fs::File::options()
        .create(true)
        .append(true)
        .open(sb.barman_home().join(format!(".{SERVER}-xlogdb.lock")))?;
    lock.lock()?;
    let lines: Vec<String> = std::fs::read_to_string(&xlog_db)?
        .lines()
        .map(str::to_owned)
        .collect();
    let segno = |line: &str| {
        line.get(..24)
            .and_then(WalSegment::parse)
            .map(|s| s.index())
    };
    let (old, new): (Vec<String>, Vec<String>) = lines
        .into_iter()
        .partition(|l| segno(l).is_some_and(|n| n <= before));
    let epoch = |l: &str| -> Option<f64> { l.split('\t').nth(2)?.parse().ok() };
    let t0 = old.iter().rev().find_map(|l| epoch(l)).unwrap_or_default() + 1.0;
    let t1 = first_after.timestamp() as f64 - 1.0;
    anyhow::ensure!(
        t1 > t0 + sizes.backups as f64,
        "no room for the history between the real backups ({t0} .. {t1})"
    );
    let span = (after - before) as f64;
    let time_of = |n: u64| t0 + (t1 - t0) * ((n - before) as f64 / span);
    let history = sizes.backups - 1 - sizes.real_after;
    let mut backup_at = std::collections::BTreeMap::new();
    for j in 0..history {
        let n = before + 1 + (j as u64 + 1) * (after - before - 1) / (history as u64 + 1);
        backup_at.insert(n, j);
    }
    let mut out = Vec::with_capacity(old.len() + new.len() + sizes.segments as usize + history);
    out.extend(old);
    for n in before + 1..after {
        let name = WalSegment::from_index(1, n).to_string();
        out.push(format!("{name}\t16462\t{:.6}\tgzip", time_of(n)));
        if backup_at.contains_key(&n) {
            let at = time_of(n) + 0.5;
            out.push(format!("{name}.00000028.backup\t203\t{at:.6}\tgzip"));
            write_backup_info(&base, &template, n, at)?;
        }
    }
    out.extend(new);
    let tmp = xlog_db.with_extension("db.bench");
    {
        let mut f = std::fs::File::create(&tmp)?;
        for l in &out {
            writeln!(f, "{l}")?;
        }
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &xlog_db)?;
    lock.unlock()?;
    Ok(Grown {
        real_backups: 1 + sizes.real_after,
        xlog_lines: out.len(),
        took: started.elapsed(),
    })
}

/// A backup of one segment `n` in Barman's backup.info format, made from a real one.
fn write_backup_info(base: &Path, template: &str, n: u64, at: f64) -> anyhow::Result<()> {
    let begin = chrono::DateTime::from_timestamp(at as i64, ((at.fract()) * 1e9) as u32)
        .ok_or_else(|| anyhow::anyhow!("bad time {at}"))?;
    let end = begin + chrono::Duration::milliseconds(700);
    let id = begin.format("%Y%m%dT%H%M%S").to_string();
    let seg = WalSegment::from_index(1, n);
    let lsn = |offset: u32| format!("{:X}/{:X}", seg.log, (seg.seg << 24) | offset);
    let time =
        |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string();
    let mut info = String::new();
    for line in template.lines() {
        let key = line.split('=').next().unwrap_or_default();
        let value = match key {
            "backup_label" => format!(
                "'START WAL LOCATION: {} (file {seg})\\nCHECKPOINT LOCATION: {}\\nBACKUP METHOD: \
                 streamed\\nBACKUP FROM: primary\\nSTART TIME: {}\\nLABEL: Barman backup {SERVER} \
                 {id}\\nSTART TIMELINE: 1\\n'",
                lsn(0x28),
                lsn(0x60),
                begin.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            "begin_offset" => "40".into(),
            "end_offset" => "256".into(),
            "begin_time" => time(begin),
            "end_time" => time(end),
            "begin_wal" | "end_wal" => seg.to_string(),
            "begin_xlog" => lsn(0x28),
            "end_xlog" => lsn(0x100),
            _ => {
                info.push_str(line);
                info.push('\n');
                continue;
            }
        };
        info.push_str(&format!("{key}={value}\n"));
    }
    let dir = base.join(&id);
    anyhow::ensure!(!dir.exists(), "backup {id} exists already");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("backup.info"), info)?;
    Ok(())
}

fn only_backup(base: &Path) -> anyhow::Result<String> {
    let ids: Vec<String> = std::fs::read_dir(base)?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    anyhow::ensure!(
        ids.len() == 1,
        "the sandbox should have one backup, it has {ids:?}"
    );
    Ok(ids[0].clone())
}

/// The newest timeline-1 segment in xlog.db, as its index.
fn newest_segment(xlog_db: &Path) -> anyhow::Result<u64> {
    std::fs::read_to_string(xlog_db)?
        .lines()
        .filter_map(|l| l.get(..24).and_then(WalSegment::parse))
        .filter(|s| s.timeline == 1)
        .map(|s| s.index())
        .max()
        .ok_or_else(|| anyhow::anyhow!("no WAL segment in {}", xlog_db.display()))
}

fn info_time(info: &str, key: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    let value = info
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| anyhow::anyhow!("backup.info has no {key}"))?;
    Ok(chrono::DateTime::parse_from_str(value, "%Y-%m-%d %H:%M:%S%.f%:z")?.to_utc())
}
