//! Figure 2: the downtime of a restore, from PostgreSQL refusing connections until it serves
//! again paused at the target on its port, as a client polling every 50 ms (`SELECT 1` over a
//! new connection, [`barkeep_testkit::Poller`]) sees it. For each pgbench scale (7 ≈ 0.1 GB,
//! 70 ≈ 1 GB; BENCH_SCALES), one sandbox, one backup, one target, four ways one after the
//! other:
//! (a) the seed's manual sequence, scripted literally: stop, `cp -r` of the data directory as
//!     the safety copy, `find -delete`, `barman recover --target-time .. --target-action pause`,
//!     start, until paused;
//! (c) the floor: stop, the data directory renamed aside (no copy), `barman recover`, start,
//!     until paused: what any restore with Barman costs;
//! (b) barkeep in place (`Engine::start_restore`), then rolled back;
//! (b') barkeep's preview beside production, then the swap (`Engine::accept`).
//! Each way ends with production's original data back, for the next.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use barkeep_testkit::{Poller, Sandbox, SandboxOptions, SERVER};
use engine::restore::{ModeChoice, RestoreStatus, Step};
use engine::target::TargetTime;

use crate::table::Table;
use crate::{ms, ratio, run_ok, secs};

/// One size's results.
struct Size {
    scale: u32,
    size: String,
    manual: Duration,
    floor: Duration,
    in_place: Duration,
    preview: Duration,
}

pub fn run(scales: &[u32]) -> anyhow::Result<()> {
    let mut sizes = Vec::new();
    for &scale in scales {
        eprintln!("[bench] figure 2: restores of pgbench scale {scale}");
        sizes.push(one_size(scale)?);
    }
    let mut t = Table::new(
        "Figure 2. Restore downtime, all sizes: (a) manual, (c) the floor, (b) barkeep in place, \
         (b') barkeep preview + swap",
        &[
            "database",
            "(a) manual",
            "(c) floor",
            "(b) in place",
            "(b') preview",
            "(b)/(a)",
            "(b)/(c)",
            "(b')/(a)",
        ],
    );
    for s in &sizes {
        t.row([
            format!("{} (pgbench -s {})", s.size, s.scale),
            secs(s.manual),
            secs(s.floor),
            secs(s.in_place),
            secs(s.preview),
            ratio(s.in_place, s.manual),
            ratio(s.in_place, s.floor),
            ratio(s.preview, s.manual),
        ]);
    }
    t.note(
        "Down: from the first refused poll to the first served one (paused at the target, \
         read-only until the person accepts). In place, PostgreSQL stays read-only and paused \
         until the person has verified; with the preview, production serves until the swap.",
    );
    t.print();
    Ok(())
}

fn one_size(scale: u32) -> anyhow::Result<Size> {
    let (sb, engine, rt, size) = crate::pgbench_stack(SandboxOptions::default(), scale)?;
    sb.barman_ok(&["backup", "--immediate-checkpoint", "--wait", SERVER]);
    sb.psql("UPDATE pgbench_branches SET bbalance = 1");
    std::thread::sleep(Duration::from_millis(1100));
    let target = TargetTime::new(chrono::Utc::now());
    std::thread::sleep(Duration::from_millis(1100));
    sb.psql("DELETE FROM pgbench_history; UPDATE pgbench_branches SET bbalance = 2");
    let at_target = || -> anyhow::Result<()> {
        let b = sb.psql("SELECT max(bbalance) FROM pgbench_branches");
        anyhow::ensure!(b.trim() == "1", "restored the wrong data: bbalance {b}");
        Ok(())
    };
    let plan = rt.block_on(engine.plan(target, None))?;
    let backup_id = plan.backup_id.clone();
    let poller = sb.poller();

    // (a) The manual sequence.
    let manual = by_hand(&sb, &backup_id, &target, &poller, true)?;
    // (c) The floor.
    let floor = by_hand(&sb, &backup_id, &target, &poller, false)?;

    // (b) barkeep in place, rolled back after.
    poller.reset();
    let t = Instant::now();
    let in_place = rt.block_on(engine.start_restore(target, None))?;
    let in_place_total = t.elapsed();
    let in_place_down = poller.longest_outage();
    at_target()?;
    rt.block_on(engine.rollback())?;

    // (b') barkeep's preview, then the swap.
    poller.reset();
    let preview = rt.block_on(engine.start_restore_in(
        target,
        None,
        ModeChoice::Preview { hold_writes: false },
    ))?;
    let during_preview = poller.longest_outage();
    poller.reset();
    let accepted = rt.block_on(engine.accept())?;
    let swap_down = poller.longest_outage();
    at_target()?;
    drop(poller);

    let mut t = Table::new(
        format!(
            "Figure 2, {} (pgbench -s {scale}): downtime, one run, a client polling every 50 ms",
            size.trim()
        ),
        &[
            "way",
            "down (poller)",
            "vs (a) manual",
            "vs (c) floor",
            "detail",
        ],
    )
    .text_column(4);
    let row = |t: &mut Table, way: &str, d: Duration, detail: String| {
        t.row([
            way.to_owned(),
            secs(d),
            ratio(d, manual.down),
            ratio(d, floor.down),
            detail,
        ]);
    };
    row(
        &mut t,
        "(a) manual: stop, cp -r, find -delete, recover, start",
        manual.down,
        format!(
            "stop {}, cp -r {}, find -delete {}, recover {}, start until paused {}",
            ms(manual.stop),
            ms(manual.copy),
            ms(manual.wipe),
            ms(manual.recover),
            ms(manual.start)
        ),
    );
    row(
        &mut t,
        "(c) floor: stop, rename aside, recover, start",
        floor.down,
        format!(
            "stop {}, recover {}, start until paused {}",
            ms(floor.stop),
            ms(floor.recover),
            ms(floor.start)
        ),
    );
    row(
        &mut t,
        "(b) barkeep in place",
        in_place_down,
        format!(
            "journal: stop .. paused {}",
            ms(journal_span(&in_place, Step::Stop))
        ),
    );
    row(
        &mut t,
        "(b') barkeep preview, then swap",
        swap_down,
        format!(
            "journal: {}; the copy was recovered and started in {} while production served \
             (down {})",
            accepted
                .steps
                .iter()
                .find(|s| s.step == Step::Swap)
                .and_then(|s| s.detail.clone())
                .and_then(|d| d.split(':').next().map(str::to_owned))
                .unwrap_or_default(),
            ms(journal_span(&preview, Step::Recover)),
            ms(during_preview)
        ),
    );
    t.print();

    // Where barkeep's time goes beyond the floor, step by step.
    let step = |s: Step| step_time(&in_place, s);
    let mut t = Table::new(
        format!(
            "Figure 2, {} (pgbench -s {scale}): where barkeep in place spends its downtime, \
             against the floor",
            size.trim()
        ),
        &["step", "barkeep (journal)", "floor", "beyond the floor"],
    );
    let pairs = [
        (
            "stop (start blocked, fast stop, proven stopped)",
            step(Step::Stop),
            floor.stop,
        ),
        (
            "set aside (rename + fsync; floor: rename)",
            step(Step::SetAside),
            Duration::ZERO,
        ),
        (
            "recover (barman recover)",
            step(Step::Recover),
            floor.recover,
        ),
        (
            "start paused (start, wait, prove)",
            step(Step::StartPaused),
            floor.start,
        ),
    ];
    let (mut bk_sum, mut floor_sum) = (Duration::ZERO, Duration::ZERO);
    for (what, bk, fl) in pairs {
        bk_sum += bk;
        floor_sum += fl;
        t.row([what.to_owned(), ms(bk), ms(fl), signed_ms(bk, fl)]);
    }
    t.row([
        "in the downtime".to_owned(),
        ms(bk_sum),
        ms(floor_sum),
        signed_ms(bk_sum, floor_sum),
    ]);
    let before_stop = in_place_total.saturating_sub(journal_span(&in_place, Step::Stop));
    t.row([
        "before the stop, outside the downtime: checks + plan (barman check, keep) + archive \
         (barman switch-wal --archive)"
            .to_owned(),
        ms(before_stop),
        "—".into(),
        "—".into(),
    ]);
    t.note(format!(
        "barman's own calls before the stop: plan {} (barman keep), archive {} (barman switch-wal \
         --archive); barman check runs before the journal opens. None of them is in the downtime \
         any more: only barman recover is.",
        ms(step(Step::Plan)),
        ms(step(Step::Archive))
    ));
    t.print();

    Ok(Size {
        scale,
        size: size.trim().to_owned(),
        manual: manual.down,
        floor: floor.down,
        in_place: in_place_down,
        preview: swap_down,
    })
}

/// A restore by hand, measured step by step.
struct ByHand {
    down: Duration,
    stop: Duration,
    copy: Duration,
    wipe: Duration,
    recover: Duration,
    start: Duration,
}

/// The manual sequence (`copy`: the seed's `cp -r` + `find -delete`) or the floor (a rename
/// aside); then the original back (stop, swap the directories back, start) for the next way.
fn by_hand(
    sb: &Sandbox,
    backup_id: &str,
    target: &TargetTime,
    poller: &Poller,
    copy: bool,
) -> anyhow::Result<ByHand> {
    let data = sb.data_dir();
    let aside = sb.dir().join("bench-aside");
    let pg = |action: &str| {
        let mut c = Command::new(sb.pg_bin_dir().join("pg_ctl"));
        c.arg("-D").arg(&data).arg("-l").arg(sb.pg_log());
        c.args(["-w", "-m", "fast", action]);
        c
    };
    poller.reset();
    let t = Instant::now();
    run_ok(&mut pg("stop"))?;
    let stop = t.elapsed();
    let (mut copy_time, mut wipe) = (Duration::ZERO, Duration::ZERO);
    if copy {
        let t = Instant::now();
        run_ok(Command::new("cp").arg("-r").arg(&data).arg(&aside))?;
        copy_time = t.elapsed();
        let t = Instant::now();
        run_ok(
            Command::new("find")
                .arg(&data)
                .args(["-mindepth", "1", "-delete"]),
        )?;
        wipe = t.elapsed();
    } else {
        std::fs::rename(&data, &aside)?;
    }
    let t = Instant::now();
    sb.barman_ok(&[
        "recover",
        "--target-time",
        &target.for_barman(),
        "--target-action",
        "pause",
        SERVER,
        backup_id,
        path_str(&data)?,
    ]);
    let recover = t.elapsed();
    let t = Instant::now();
    run_ok(&mut pg("start"))?;
    let deadline = Instant::now() + Duration::from_secs(900);
    while sb
        .try_psql_db("postgres", "SELECT pg_get_wal_replay_pause_state()")
        .map_or(true, |s| s.trim() != "paused")
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the restore by hand never paused"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = t.elapsed();
    let down = poller.longest_outage();
    // The original back.
    run_ok(&mut pg("stop"))?;
    std::fs::remove_dir_all(&data)?;
    std::fs::rename(&aside, &data)?;
    run_ok(&mut pg("start"))?;
    Ok(ByHand {
        down,
        stop,
        copy: copy_time,
        wipe,
        recover,
        start,
    })
}

/// A finished step's wall time as journaled.
fn step_time(status: &RestoreStatus, step: Step) -> Duration {
    status
        .steps
        .iter()
        .find(|s| s.step == step)
        .and_then(|s| Some((s.finished? - s.started).to_std().unwrap_or_default()))
        .unwrap_or_default()
}

/// From the start of `from` to the end of start_paused, as journaled.
fn journal_span(status: &RestoreStatus, from: Step) -> Duration {
    let from = status.steps.iter().find(|s| s.step == from);
    let paused = status
        .steps
        .iter()
        .rev()
        .find(|s| s.step == Step::StartPaused)
        .and_then(|s| s.finished);
    match (from, paused) {
        (Some(from), Some(paused)) => (paused - from.started).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

/// `a - b` in milliseconds with its sign.
fn signed_ms(a: Duration, b: Duration) -> String {
    let d = a.as_secs_f64() * 1000.0 - b.as_secs_f64() * 1000.0;
    format!("{d:+.0} ms")
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .ok_or_else(|| anyhow::anyhow!("not UTF-8: {}", p.display()))
}
