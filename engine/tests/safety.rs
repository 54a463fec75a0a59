//! The restore's safety rails on the real PostgreSQL 14 + Barman 3.3.0: verify queries cannot
//! move a paused restore or reach the server's files and programs; a restore that left
//! recovery is never deleted; barkeep refuses to run as another user than the cluster's owner.

mod common;

use std::sync::Arc;

use barkeep_engine::restore::{Phase, RestoreError};
use barkeep_engine::Config;
use barkeep_engine::Engine;
use barkeep_testkit::SandboxOptions;
use common::*;

/// A paused restore of a small table owned by the application role.
fn paused(
    opts: SandboxOptions,
) -> (
    barkeep_testkit::Sandbox,
    Engine,
    tokio::runtime::Runtime,
    barkeep_engine::target::TargetTime,
) {
    let (sb, engine) = stack(opts);
    let rt = runtime();
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    sb.psql("ALTER TABLE t OWNER TO app");
    sb.psql("INSERT INTO t SELECT g, 'kept ' || g FROM generate_series(1, 30) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let target = mark_time();
    sb.psql("DELETE FROM t WHERE id > 10");
    let s = rt
        .block_on(engine.start_restore(target, None))
        .expect("paused");
    assert_eq!(s.state, Phase::Paused);
    (sb, engine, rt, target)
}

fn still_paused_at_target(sb: &barkeep_testkit::Sandbox, what: &str) {
    assert_eq!(
        sb.psql("SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state()"),
        "t|paused",
        "{what}: the server must still be paused at the target"
    );
    assert_eq!(
        count(sb, "t"),
        30,
        "{what}: still exactly the target's rows"
    );
}

#[test]
fn verify_queries_cannot_move_the_restore_or_reach_files_and_programs() {
    let (sb, engine, rt, _) = paused(SandboxOptions::default());
    let marker = sb.dir().join("verify-was-here");

    // What a superuser could do inside BEGIN READ ONLY on a paused server: each refused or
    // failing without effect.
    let hostile = [
        "SELECT pg_wal_replay_resume()".to_owned(),
        "SELECT pg_promote()".to_owned(),
        format!("COPY (SELECT 1) TO PROGRAM 'touch {}'", marker.display()),
        format!("COPY (SELECT 1) TO '{}'", marker.display()),
        "SELECT pg_read_file('postgresql.conf')".to_owned(),
        "SELECT pg_read_file('/etc/passwd')".to_owned(),
        "SELECT pg_ls_dir('.')".to_owned(),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()"
            .to_owned(),
        "LOAD 'auto_explain'".to_owned(),
        "CHECKPOINT".to_owned(),
        "SET ROLE postgres".to_owned(),
        "SELECT set_config('role', 'postgres', false)".to_owned(),
        "SELECT query_to_xml('SELECT 1' || chr(59) || ' SELECT pg_wal_replay_resume()', true, true, '')".to_owned(),
        "SELECT query_to_xml('SELECT pg_promote()', true, true, '')".to_owned(),
        "SELECT * FROM pg_authid".to_owned(),
        "SELECT 1; SELECT pg_wal_replay_resume()".to_owned(),
        "DELETE FROM t".to_owned(),
        "CREATE TABLE x (i int)".to_owned(),
    ];
    for sql in &hostile {
        let r = rt.block_on(engine.query(sql, 10));
        match &r {
            // pg_terminate_backend answers false for every process it may not signal.
            Ok(q) if sql.contains("pg_terminate_backend") => assert!(
                q.rows.iter().flatten().all(|v| v.as_deref() == Some("f")),
                "{sql}: terminated something: {q:?}"
            ),
            _ => assert!(r.is_err(), "{sql}: must be refused, got {r:?}"),
        }
        still_paused_at_target(&sb, sql);
    }
    assert!(!marker.exists(), "no file was written and no program run");
    // Nothing of the above terminated barkeep's own sessions or others.
    assert_eq!(
        sb.psql("SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'startup'"),
        "t"
    );

    // The role itself, not only barkeep's checks, is the barrier: straight through psql as it.
    let direct = std::process::Command::new(sb.pg_bin_dir().join("psql"))
        .args(["-XAtq", "-h"])
        .arg(sb.socket_dir())
        .args([
            "-p",
            &sb.pg_port().to_string(),
            "-U",
            "barkeep_verify",
            "-d",
            "app",
            "-c",
        ])
        .arg(format!(
            "COPY (SELECT 1) TO PROGRAM 'touch {}'",
            marker.display()
        ))
        .output()
        .expect("psql");
    assert!(
        !direct.status.success(),
        "COPY TO PROGRAM refused to the verify role"
    );
    assert!(!marker.exists());

    // Reads what the application reads, and the rows stream up to the cap.
    let q = rt
        .block_on(engine.query("SELECT id FROM t ORDER BY id", 7))
        .expect("a plain select");
    assert_eq!(q.rows.len(), 7);
    assert!(q.truncated);
    let q = rt
        .block_on(engine.query("SELECT current_user, count(*) FROM t GROUP BY 1", 10))
        .expect("count");
    assert_eq!(
        q.rows,
        vec![vec![Some("barkeep_verify".into()), Some("30".into())]]
    );

    // No backup while a restore is open: Barman would back up the restored copy.
    let e = rt.block_on(engine.backup_now()).expect_err("refused");
    assert!(matches!(e, RestoreError::DuringRestore { .. }), "{e}");
    still_paused_at_target(&sb, "backup refused");

    // After the restore: no query at all, on the live primary.
    rt.block_on(engine.rollback()).expect("roll back");
    let e = rt
        .block_on(engine.query("SELECT 1", 1))
        .expect_err("no paused restore");
    assert!(matches!(e, RestoreError::NoRestore), "{e}");
}

#[test]
fn a_restore_that_left_recovery_is_never_rolled_back_or_retried() {
    let (sb, engine, rt, target) = paused(SandboxOptions::default());
    // Promoted behind barkeep's back, and written to.
    sb.psql("SELECT pg_promote()");
    for _ in 0..100 {
        if !in_recovery(&sb) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!in_recovery(&sb));
    sb.psql("INSERT INTO t VALUES (1000, 'written after the promotion')");

    let e = rt.block_on(engine.rollback()).expect_err("refused");
    assert!(matches!(e, RestoreError::Promoted { .. }), "{e}");
    assert!(e.to_string().contains("accept"), "{e}");
    let e = rt
        .block_on(engine.retry(target, None))
        .expect_err("refused");
    assert!(matches!(e, RestoreError::Promoted { .. }), "{e}");
    // Nothing lost, still serving.
    assert_eq!(count(&sb, "t"), 31);
    assert!(!in_recovery(&sb));

    // resume does not call it "paused again": it finishes the restore.
    let s = rt
        .block_on(engine.resume())
        .expect("resume")
        .expect("a restore");
    assert_eq!(s.state, Phase::Closed, "{s:?}");
    assert!(
        matches!(
            s.outcome,
            Some(barkeep_engine::restore::Outcome::Accepted { .. })
        ),
        "{:?}",
        s.outcome
    );
    assert_eq!(count(&sb, "t"), 31);
    assert_eq!(sb.psql("SHOW archive_command"), sb.archive_command());
}

#[test]
fn barkeep_refuses_another_os_user_before_writing_anything() {
    let sb_dir = tempfile::tempdir().expect("tempdir");
    // A data directory owned by someone else than the user running this test.
    let data = if rustix::process::geteuid().is_root() {
        let d = sb_dir.path().join("data");
        std::fs::create_dir(&d).expect("mkdir");
        rustix::fs::chown(
            &d,
            Some(rustix::process::Uid::from_raw(65534)),
            Some(rustix::process::Gid::from_raw(65534)),
        )
        .expect("chown");
        d
    } else {
        std::path::PathBuf::from("/")
    };
    let state = sb_dir.path().join("state");
    let toml = format!(
        r#"
state_dir = "{state}"
[postgres]
data_dir = "{data}"
bin_dir = "/usr/bin"
host = "/tmp"
port = 5432
user = "postgres"
database = "app"
archive_command = "true"
[barman]
bin = "/usr/bin/barman"
config = "/etc/barman.conf"
server = "pg"
home = "/var/lib/barman"
[service]
kind = "pg_ctl"
log_file = "/tmp/pg.log"
"#,
        state = state.display(),
        data = data.display()
    );
    let config = Config::parse(std::path::Path::new("t.toml"), &toml).expect("config");
    let e = Engine::new(Arc::new(config))
        .err()
        .expect("refused: another user owns the data directory");
    assert!(matches!(e, RestoreError::WrongUser { .. }), "{e}");
    assert!(e.to_string().contains("must run as the OS user"), "{e}");
    assert!(
        !state.exists(),
        "nothing was written: not even the state dir"
    );
}
