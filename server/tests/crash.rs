//! Crash safety of the restore, with real processes: for each step, the `barkeep` CLI kills
//! itself with SIGKILL right after that step's journal entry (BARKEEP_FAULT_KILL_AFTER), then
//! `barkeep restore resume` must resume or roll back with nothing lost. Real PostgreSQL 14 and
//! Barman 3.3.0 from the sandbox.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::time::Duration;

use barkeep_testkit::{Sandbox, SandboxOptions};

fn barkeep(sb: &Sandbox, args: &[&str], fault: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_barkeep"));
    c.arg("--config").arg(sb.config_path()).args(args);
    c.env("RUST_LOG", "warn");
    match fault {
        Some(f) => c.env("BARKEEP_FAULT_KILL_AFTER", f),
        None => c.env_remove("BARKEEP_FAULT_KILL_AFTER"),
    };
    c.output().expect("run barkeep")
}

fn ok(out: Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "barkeep failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

fn killed(out: &Output, point: &str) {
    assert_eq!(
        out.status.signal(),
        Some(9),
        "expected SIGKILL after {point}; status {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `barkeep <args>` with the fault point set and checks that it died there.
fn crash_at(sb: &Sandbox, args: &[&str], point: &str) {
    killed(&barkeep(sb, args, Some(point)), point);
    assert!(
        sb.state_dir().join("restore.journal").exists(),
        "{point}: the journal of the interrupted restore is left for resume"
    );
}

fn checksum(sb: &Sandbox) -> String {
    sb.psql("SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM t")
}

fn in_recovery(sb: &Sandbox) -> bool {
    sb.psql("SELECT pg_is_in_recovery()").trim() == "t"
}

fn now_utc() -> String {
    std::thread::sleep(Duration::from_millis(1100));
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S.%N+00:00"])
        .output()
        .expect("date");
    std::thread::sleep(Duration::from_millis(1100));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn assert_rolled_back(sb: &Sandbox, before: &str, point: &str) {
    assert!(!in_recovery(sb), "{point}: the server is out of recovery");
    assert_eq!(
        checksum(sb),
        before,
        "{point}: the data is the pre-restore data"
    );
    assert!(
        !sb.state_dir().join("restore.journal").exists(),
        "{point}: no restore left in progress"
    );
    let pre = sb.state_dir().join("pre-restore");
    let left = std::fs::read_dir(&pre).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "{point}: the original went back in place");
}

#[test]
fn a_crash_after_any_step_is_resumed_or_rolled_back_with_nothing_lost() {
    let sb = Sandbox::up(SandboxOptions::default());
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    sb.psql("INSERT INTO t SELECT g, 'kept ' || g FROM generate_series(1, 40) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let target = now_utc();
    sb.psql("INSERT INTO t SELECT g, 'later ' || g FROM generate_series(41, 60) g");
    let before = checksum(&sb);

    // Crashes on the way to the paused state: resume rolls back.
    for step in ["plan", "archive", "stop", "set_aside", "recover"] {
        for when in ["started", "finished"] {
            let point = format!("{step}:{when}");
            crash_at(&sb, &["restore", "start", "--target-time", &target], &point);
            let s = ok(barkeep(&sb, &["restore", "resume"], None));
            assert_eq!(s["outcome"]["outcome"], "rolled_back", "{point}: {s}");
            assert_rolled_back(&sb, &before, &point);
        }
    }
    let point = "start_paused:started";
    crash_at(&sb, &["restore", "start", "--target-time", &target], point);
    ok(barkeep(&sb, &["restore", "resume"], None));
    assert_rolled_back(&sb, &before, point);

    // Paused at the target when the crash came: resume brings it back paused.
    let point = "start_paused:finished";
    crash_at(&sb, &["restore", "start", "--target-time", &target], point);
    let s = ok(barkeep(&sb, &["restore", "resume"], None));
    assert_eq!(s["state"], "paused", "{point}: {s}");
    assert!(in_recovery(&sb));
    assert_eq!(sb.psql("SELECT count(*) FROM t").trim(), "40");

    // A crash during retry or roll back: resume rolls back.
    let point = "retry:started";
    crash_at(&sb, &["restore", "retry", "--target-time", &target], point);
    ok(barkeep(&sb, &["restore", "resume"], None));
    assert_rolled_back(&sb, &before, point);
    ok(barkeep(
        &sb,
        &["restore", "start", "--target-time", &target],
        None,
    ));
    let point = "rollback:started";
    crash_at(&sb, &["restore", "rollback"], point);
    ok(barkeep(&sb, &["restore", "resume"], None));
    assert_rolled_back(&sb, &before, point);

    // A crash during accept: resume finishes the accept.
    for point in ["accept:started", "accept:finished"] {
        let s = ok(barkeep(
            &sb,
            &["restore", "start", "--target-time", &target],
            None,
        ));
        assert_eq!(s["state"], "paused");
        crash_at(&sb, &["restore", "accept"], point);
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        assert_eq!(s["outcome"]["outcome"], "accepted", "{point}: {s}");
        assert!(!in_recovery(&sb));
        assert_eq!(sb.psql("SELECT count(*) FROM t").trim(), "40", "{point}");
        assert!(!sb.state_dir().join("restore.journal").exists());
    }
}

#[test]
fn bad_input_on_the_command_line_gets_a_clear_error_and_touches_nothing() {
    let sb = Sandbox::up(SandboxOptions::default());
    let cases: [(&[&str], &str); 5] = [
        (
            &["restore", "start", "--target-time", "2026-11-26 09:30:00"],
            "has no time zone",
        ),
        (
            &["restore", "start", "--target-time", "yesterday"],
            "not a time barkeep understands",
        ),
        (
            &[
                "restore",
                "start",
                "--target-time",
                "2000-01-01 00:00:00+00:00",
            ],
            "before the end of the oldest backup",
        ),
        (
            &[
                "restore",
                "plan",
                "--target-time",
                "2000-01-01 00:00:00+00:00",
                "--backup-id",
                "20990101T000000",
            ],
            "no backup with id",
        ),
        (&["restore", "accept"], "no restore in progress"),
    ];
    for (args, want) in cases {
        let out = barkeep(&sb, args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
    }
    assert!(!sb.state_dir().join("restore.journal").exists());
    assert!(!in_recovery(&sb));
}
