//! Preview restores (issue 13) against the real PostgreSQL 14 + Barman 3.3.0: the restored copy
//! is recovered and paused beside production, verified there while production keeps serving,
//! then swapped in; or cancelled with production never touched.

mod common;

use std::time::{Duration, Instant};

use barkeep_engine::restore::{ModeChoice, Outcome, Phase, RestoreError, Step};
use barkeep_testkit::{Sandbox, SandboxOptions};
use common::*;

const PREVIEW: ModeChoice = ModeChoice::Preview { hold_writes: false };
const PREVIEW_HOLDING: ModeChoice = ModeChoice::Preview { hold_writes: true };

/// When production's postmaster started: a restart changes it.
fn postmaster_start(sb: &Sandbox) -> String {
    sb.psql("SELECT pg_postmaster_start_time()")
}

fn ledger(sb: &Sandbox) {
    sb.psql("CREATE TABLE ledger (id serial PRIMARY KEY, note text NOT NULL)");
    sb.psql("ALTER TABLE ledger OWNER TO app");
    sb.psql("INSERT INTO ledger (note) SELECT 'before backup ' || g FROM generate_series(1, 50) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("INSERT INTO ledger (note) SELECT 'after backup ' || g FROM generate_series(1, 25) g");
}

#[test]
fn a_preview_is_verified_while_production_serves_then_swapped_in() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    ledger(&sb);
    let target = mark_time();
    sb.psql("DELETE FROM ledger WHERE id % 2 = 0");
    sb.psql("INSERT INTO ledger (note) VALUES ('written after the harm')");
    let harmed = checksum(&sb, "ledger");
    let started = postmaster_start(&sb);

    let poller = sb.poller();
    let began = Instant::now();
    let status = rt
        .block_on(engine.start_restore_in(target, None, PREVIEW))
        .expect("a preview paused at the target");
    assert_eq!(status.state, Phase::Paused);
    let steps: Vec<Step> = status.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [Step::Plan, Step::Archive, Step::Recover, Step::StartPaused],
        "production is neither stopped nor set aside for a preview"
    );
    let preview = status.plan.mode.preview().expect("a preview").clone();
    assert!(preview.data_dir.starts_with(sb.state_dir()));

    // Production serves on, untouched, with what it had.
    assert!(!in_recovery(&sb));
    assert_eq!(postmaster_start(&sb), started, "production never restarted");
    assert_eq!(checksum(&sb, "ledger"), harmed);
    // The side copy holds exactly the rows at the target, read as the verify role.
    let q = rt
        .block_on(engine.query("SELECT count(*) AS n FROM ledger", 10))
        .expect("verify query on the side copy");
    assert_eq!(q.rows, vec![vec![Some("75".to_owned())]]);
    let q = rt
        .block_on(engine.query(
            "SELECT count(*) FROM ledger WHERE note LIKE 'written after%'",
            10,
        ))
        .expect("verify");
    assert_eq!(q.rows, vec![vec![Some("0".to_owned())]]);
    assert!(rt.block_on(engine.query("DELETE FROM ledger", 10)).is_err());

    // Production takes writes meanwhile; the person is told the swap will discard them.
    sb.psql(
        "INSERT INTO ledger (note) SELECT 'during the preview ' || g FROM generate_series(1, 7) g",
    );
    let writes = wait_for_rows_written(&rt, &engine, 7);
    assert!(!writes.held);
    let swap_began = Instant::now();
    let served_during_preview = poller.count();
    assert!(served_during_preview > 5, "the poller ran");
    assert_eq!(
        poller.refused_between(began, swap_began),
        0,
        "production served every poll during the preview"
    );

    let accepted = rt.block_on(engine.accept()).expect("swap and accept");
    let accept_done = Instant::now();
    // A few polls after the accept: the last outage has its end.
    std::thread::sleep(Duration::from_millis(300));
    let Some(Outcome::Accepted { timeline }) = accepted.outcome else {
        panic!("not accepted: {:?}", accepted.outcome)
    };
    assert_eq!(timeline, 2);
    let swap = accepted
        .steps
        .iter()
        .find(|s| s.step == Step::Swap)
        .expect("a swap step");
    let detail = swap.detail.clone().unwrap_or_default();
    assert!(detail.contains("production was down"), "{detail}");
    let outage = poller.longest_outage();
    eprintln!(
        "preview swap: {detail}; the 50 ms poller saw production down {} ms at most \
         (accept took {} ms in all)",
        outage.as_millis(),
        (accept_done - swap_began).as_millis()
    );

    // The restored state is production now, on its port, archiving on a new timeline.
    assert!(!in_recovery(&sb));
    assert_eq!(count(&sb, "ledger"), 75);
    assert_eq!(sb.psql("SHOW archive_command").trim(), sb.archive_command());
    assert!(
        !preview.data_dir.exists(),
        "the side directory was swapped in"
    );
    // Production's own directory is kept, with what it had (the writes of the preview too).
    let kept = engine.pre_restore_dirs();
    assert_eq!(kept.len(), 1);
    assert_eq!(count_in_copy(&sb, &kept[0].path, "ledger"), 39 + 7);
}

/// Waits until pg_stat_database shows at least `n` rows written since the preview began
/// (statistics reach it within a second).
fn wait_for_rows_written(
    rt: &tokio::runtime::Runtime,
    engine: &barkeep_engine::Engine,
    n: i64,
) -> barkeep_engine::restore::ProductionWrites {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let w = rt
            .block_on(engine.production_writes())
            .expect("production's writes")
            .expect("an open preview");
        if w.rows_written.unwrap_or(0) >= n || Instant::now() > deadline {
            assert!(w.rows_written.unwrap_or(0) >= n, "{w:?}");
            return w;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_cancelled_preview_leaves_production_untouched_and_a_retried_one_swaps_in() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    ledger(&sb);
    let early = mark_time();
    sb.psql("INSERT INTO ledger (note) SELECT 'second batch ' || g FROM generate_series(1, 10) g");
    let late = mark_time();
    sb.psql("DELETE FROM ledger WHERE id <= 20");
    let before = checksum(&sb, "ledger");
    let started = postmaster_start(&sb);

    // Cancel, with writes held: refused during the preview, allowed after.
    let status = rt
        .block_on(engine.start_restore_in(late, None, PREVIEW_HOLDING))
        .expect("a preview holding writes");
    assert_eq!(status.state, Phase::Paused);
    let refused = sb
        .try_psql_db("app", "INSERT INTO ledger (note) VALUES ('refused')")
        .expect_err("writes are held");
    assert!(
        refused.contains("read-only transaction"),
        "a clear refusal: {refused}"
    );
    assert_eq!(count(&sb, "ledger"), 65, "reads are served");
    let w = rt
        .block_on(engine.production_writes())
        .expect("writes")
        .expect("open");
    assert!(w.held);
    // A second restore at once is refused while the preview is open.
    assert!(matches!(
        rt.block_on(engine.start_restore_in(early, None, PREVIEW)),
        Err(RestoreError::InProgress { .. })
    ));
    let side = status
        .plan
        .mode
        .preview()
        .expect("preview")
        .data_dir
        .clone();
    let rolled = rt.block_on(engine.rollback()).expect("cancel");
    assert!(matches!(rolled.outcome, Some(Outcome::RolledBack { .. })));
    assert_eq!(checksum(&sb, "ledger"), before, "byte for byte as before");
    assert_eq!(postmaster_start(&sb), started, "production never restarted");
    assert!(!side.exists(), "the side copy is discarded");
    assert!(
        engine.pre_restore_dirs().is_empty(),
        "nothing was set aside"
    );
    sb.psql("INSERT INTO ledger (note) VALUES ('allowed again')");
    sb.psql("DELETE FROM ledger WHERE note = 'allowed again'");

    // Retry at another target in preview, then accept: the retried target is live.
    let status = rt
        .block_on(engine.start_restore_in(late, None, PREVIEW_HOLDING))
        .expect("preview");
    assert_eq!(status.state, Phase::Paused);
    let q = rt
        .block_on(engine.query("SELECT count(*) FROM ledger", 10))
        .expect("verify");
    assert_eq!(q.rows, vec![vec![Some("85".to_owned())]]);
    let status = rt.block_on(engine.retry(early, None)).expect("retry");
    assert_eq!(status.state, Phase::Paused);
    let q = rt
        .block_on(engine.query("SELECT count(*) FROM ledger", 10))
        .expect("verify");
    assert_eq!(q.rows, vec![vec![Some("75".to_owned())]]);
    assert!(!in_recovery(&sb));
    assert_eq!(
        checksum(&sb, "ledger"),
        before,
        "production untouched by the retry"
    );
    assert_eq!(postmaster_start(&sb), started);

    let accepted = rt.block_on(engine.accept()).expect("accept");
    assert!(matches!(accepted.outcome, Some(Outcome::Accepted { .. })));
    assert_eq!(count(&sb, "ledger"), 75);
    // The hold ended with the preview: the restored database takes writes.
    sb.psql("INSERT INTO ledger (note) VALUES ('after the swap')");
    assert_eq!(count(&sb, "ledger"), 76);
    // Production's directory, set aside by the swap, does not carry the hold.
    let kept = engine.pre_restore_dirs();
    assert_eq!(kept.len(), 1);
    let auto = std::fs::read_to_string(kept[0].path.join("postgresql.auto.conf")).expect("auto");
    assert!(!auto.contains("default_transaction_read_only"), "{auto}");
}
