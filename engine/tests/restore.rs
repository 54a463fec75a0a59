//! The restore state machine against the real PostgreSQL 14 + Barman 3.3.0 (nothing mocked).

mod common;

use barkeep_engine::restore::{Outcome, Phase, RestoreError, Step};
use barkeep_testkit::SandboxOptions;
use common::*;

/// The seed scenario, then a second restore on the new timeline before any new backup exists
/// (docs/barman.md).
#[test]
fn seed_scenario_then_a_second_restore_on_the_new_timeline() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE ledger (id serial PRIMARY KEY, note text NOT NULL)");
    // The application's tables belong to the application's role (verify reads as its member).
    sb.psql("ALTER TABLE ledger OWNER TO app");
    sb.psql("INSERT INTO ledger (note) SELECT 'before backup ' || g FROM generate_series(1, 50) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("INSERT INTO ledger (note) SELECT 'after backup ' || g FROM generate_series(1, 25) g");
    let target = mark_time();
    sb.psql("DELETE FROM ledger WHERE id % 2 = 0");
    sb.psql("INSERT INTO ledger (note) VALUES ('written after the harm')");
    let pre_restore_rows = count(&sb, "ledger");

    let plan = rt.block_on(engine.plan(target, None)).expect("plan");
    assert!(plan.backup_end <= target.utc());

    let status = rt
        .block_on(engine.start_restore(target, None))
        .expect("restore to the paused state");
    assert_eq!(status.state, Phase::Paused);
    assert!(in_recovery(&sb), "paused at the target, still in recovery");
    assert_eq!(count(&sb, "ledger"), 75, "exactly the rows at the target");
    assert_eq!(
        sb.psql("SELECT count(*) FROM ledger WHERE note LIKE 'written after%'")
            .trim(),
        "0"
    );
    let q = rt
        .block_on(engine.query("SELECT count(*) AS n FROM ledger", 10))
        .expect("verify query");
    assert_eq!(q.columns, vec!["n".to_owned()]);
    assert_eq!(q.rows, vec![vec![Some("75".to_owned())]]);
    assert!(
        rt.block_on(engine.query("DELETE FROM ledger", 10)).is_err(),
        "verify is read-only"
    );
    assert!(
        rt.block_on(engine.query("SELECT 1; SELECT 2", 10)).is_err(),
        "one statement"
    );

    let accepted = rt.block_on(engine.accept()).expect("accept");
    assert_eq!(accepted.state, Phase::Closed);
    let Some(Outcome::Accepted { timeline }) = accepted.outcome else {
        panic!("not accepted: {:?}", accepted.outcome)
    };
    assert_eq!(timeline, 2);
    assert!(!in_recovery(&sb));
    assert_eq!(count(&sb, "ledger"), 75);
    // Archiving is back, Barman's settings and .origin files are gone.
    assert_eq!(sb.psql("SHOW archive_command").trim(), sb.archive_command());
    let auto =
        std::fs::read_to_string(sb.data_dir().join("postgresql.auto.conf")).expect("auto.conf");
    for s in ["restore_command", "recovery_target", "recovery_end_command"] {
        assert!(
            !auto.contains(s),
            "{s} left in postgresql.auto.conf:\n{auto}"
        );
    }
    assert!(!sb.data_dir().join("postgresql.conf.origin").exists());
    assert!(!sb.data_dir().join("postgresql.auto.conf.origin").exists());
    assert!(sb
        .archived_wal()
        .iter()
        .any(|w| w.starts_with("00000002") && w.len() == 24));
    // The original data directory is kept until the person discards it.
    assert_eq!(engine.pre_restore_dirs().len(), 1);
    let kept = engine.pre_restore_dirs()[0].clone();
    assert!(kept.path.join("PG_VERSION").exists());
    assert!(kept.bytes > 0, "its size is shown");
    // And it holds exactly what the database held before the restore: nothing was lost.
    assert_eq!(
        count_in_copy(&sb, &kept.path, "ledger"),
        pre_restore_rows,
        "the kept pre-restore directory has the pre-restore rows"
    );

    // Second restore on timeline 2, before any new backup.
    sb.psql("INSERT INTO ledger (note) SELECT 'timeline 2 ' || g FROM generate_series(1, 10) g");
    let target2 = mark_time();
    sb.psql("TRUNCATE ledger");
    let status = rt
        .block_on(engine.start_restore(target2, None))
        .expect("second restore");
    assert_eq!(status.state, Phase::Paused);
    // Replay paused before the TRUNCATE's commit still holds its lock: verify says so clearly
    // instead of hanging.
    let e = rt
        .block_on(engine.query("SELECT count(*) FROM ledger", 10))
        .expect_err("the table is locked while paused");
    assert!(
        e.to_string()
            .contains("released when the restore is accepted"),
        "{e}"
    );
    let accepted = rt.block_on(engine.accept()).expect("second accept");
    assert_eq!(
        count(&sb, "ledger"),
        85,
        "75 restored + 10 written on timeline 2"
    );
    assert!(
        matches!(accepted.outcome, Some(Outcome::Accepted { timeline: 3 })),
        "{:?}",
        accepted.outcome
    );

    // A new backup of the restored cluster works.
    sb.barman_ok(&["backup", "--wait", "pg"]);
}

/// Retry with another target, then roll back: byte-for-byte the pre-restore table contents.
#[test]
fn retry_then_roll_back_gives_back_exactly_the_pre_restore_state() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE items (id int PRIMARY KEY, v text)");
    sb.psql("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 100) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let t1 = mark_time();
    sb.psql("INSERT INTO items SELECT g, md5(g::text) FROM generate_series(101, 150) g");
    let t2 = mark_time();
    sb.psql("UPDATE items SET v = 'damaged' WHERE id <= 120");
    let before = checksum(&sb, "items");
    let customers_before = checksum(&sb, "customers");

    rt.block_on(engine.start_restore(t1, None))
        .expect("restore to t1");
    assert_eq!(count(&sb, "items"), 100);
    let s = rt.block_on(engine.retry(t2, None)).expect("retry at t2");
    assert_eq!(s.state, Phase::Paused);
    assert_eq!(count(&sb, "items"), 150);
    assert_eq!(
        sb.psql("SELECT count(*) FROM items WHERE v = 'damaged'")
            .trim(),
        "0"
    );

    let s = rt.block_on(engine.rollback()).expect("roll back");
    assert!(matches!(s.outcome, Some(Outcome::RolledBack { .. })));
    assert!(!in_recovery(&sb));
    assert_eq!(checksum(&sb, "items"), before);
    assert_eq!(checksum(&sb, "customers"), customers_before);
    assert!(
        engine.pre_restore_dirs().is_empty(),
        "the original went back in place"
    );
    // Nothing to accept any more.
    assert!(matches!(
        rt.block_on(engine.accept()),
        Err(RestoreError::NoRestore)
    ));
}

/// Bad input is refused before anything is touched; failures inside the restore roll back.
#[test]
fn failures_are_refused_or_rolled_back_and_nothing_is_lost() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE t (id int)");
    sb.psql("INSERT INTO t SELECT generate_series(1, 10)");
    let backups = sb.barman_json(&["-f", "json", "list-backups", "pg"]);
    let first_id = backups["pg"][0]["backup_id"]
        .as_str()
        .expect("a backup id")
        .to_owned();
    let first_end = engine
        .catalog()
        .expect("catalog")
        .backup(&first_id)
        .and_then(|b| b.end_time)
        .expect("end");
    let before = checksum(&sb, "t");

    // Before the oldest backup's end.
    let early = barkeep_engine::target::TargetTime::new(first_end - chrono::Duration::seconds(30));
    let e = rt.block_on(engine.start_restore(early, None)).unwrap_err();
    assert!(matches!(e, RestoreError::OutsideWindow { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("before the end of the oldest backup"),
        "{e}"
    );
    // In the future.
    let future =
        barkeep_engine::target::TargetTime::new(chrono::Utc::now() + chrono::Duration::hours(1));
    assert!(matches!(
        rt.block_on(engine.plan(future, None)),
        Err(RestoreError::OutsideWindow { .. })
    ));
    // Unknown and malformed backup ids.
    let t = mark_time();
    assert!(matches!(
        rt.block_on(engine.start_restore(t, Some("20990101T000000"))),
        Err(RestoreError::UnknownBackup(_))
    ));
    assert!(matches!(
        rt.block_on(engine.start_restore(t, Some("--help"))),
        Err(RestoreError::UnknownBackup(_))
    ));
    assert!(
        engine.status().expect("status").is_none(),
        "nothing was started"
    );
    assert_eq!(checksum(&sb, "t"), before);

    // barman recover exits 1 (the backup's files unreadable): rolled back by itself.
    let data = sb
        .barman_home()
        .join("pg/base")
        .join(&first_id)
        .join("data");
    set_mode(&data, 0o000);
    let e = rt.block_on(engine.start_restore(t, None)).unwrap_err();
    set_mode(&data, 0o700);
    assert!(
        matches!(
            e,
            RestoreError::RolledBack {
                step: Step::Recover,
                ..
            }
        ),
        "{e}"
    );
    assert!(!in_recovery(&sb));
    assert_eq!(checksum(&sb, "t"), before);

    // PostgreSQL fails to start after recover: a broken setting that only the backup has.
    sb.psql("ALTER SYSTEM SET shared_preload_libraries = 'no_such_library'");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("ALTER SYSTEM RESET shared_preload_libraries");
    sb.psql("INSERT INTO t VALUES (11)");
    let t = mark_time();
    let before = checksum(&sb, "t");
    let e = rt.block_on(engine.start_restore(t, None)).unwrap_err();
    assert!(
        matches!(
            e,
            RestoreError::RolledBack {
                step: Step::StartPaused,
                ..
            }
        ),
        "{e}"
    );
    assert!(!in_recovery(&sb));
    assert_eq!(checksum(&sb, "t"), before);
    assert!(engine
        .status()
        .expect("status")
        .is_some_and(|s| s.state == Phase::Closed));
}

/// One restore at a time, host-wide.
#[test]
fn a_second_restore_is_refused_while_one_is_in_progress() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE t (id int)");
    let t = mark_time();
    sb.psql("INSERT INTO t VALUES (1)");
    rt.block_on(engine.start_restore(t, None))
        .expect("first restore");
    let e = rt.block_on(engine.start_restore(t, None)).unwrap_err();
    assert!(matches!(e, RestoreError::InProgress { .. }), "{e}");
    assert!(e
        .to_string()
        .contains("accept, retry or roll it back first"));
    // Another engine (as another process would be) is refused too.
    let other =
        barkeep_engine::Engine::new(std::sync::Arc::new(engine.config().clone())).expect("engine");
    assert!(matches!(
        rt.block_on(other.start_restore(t, None)),
        Err(RestoreError::InProgress { .. })
    ));
    rt.block_on(engine.rollback()).expect("roll back");
    assert_eq!(count(&sb, "t"), 1);
}

fn set_mode(p: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
