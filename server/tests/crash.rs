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

/// No barman, rsync or pg_ctl of this sandbox is still running.
fn assert_no_children_left(sb: &Sandbox, point: &str) {
    let config = sb.config_path().display().to_string();
    let barman_conf = sb.barman_config().display().to_string();
    let data = sb.data_dir().display().to_string();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = cmdline.contains(&barman_conf)
            || cmdline.contains(&config)
            || (cmdline.contains("pg_ctl") && cmdline.contains(&data))
            || (cmdline.contains("rsync") && cmdline.contains(&data))
            || (cmdline.contains("barman-cloud") && cmdline.contains(&data))
            || cmdline.contains("barkeep: fetch the WAL");
        // barman cron runs every minute in the sandbox only with barkeep started; this
        // sandbox has none.
        assert!(!ours, "{point}: still running: {cmdline}");
    }
}

/// The original cluster carries none of what barman recover writes into a restored copy.
fn assert_original_untouched(sb: &Sandbox, point: &str) {
    let data = sb.data_dir();
    assert!(
        !data.join("recovery.signal").exists(),
        "{point}: recovery.signal in the original cluster"
    );
    assert!(!data.join("barman_wal").exists(), "{point}: barman_wal/");
    let conf = std::fs::read_to_string(data.join("postgresql.conf")).expect("postgresql.conf");
    assert!(
        !conf.contains("#BARMAN#"),
        "{point}: archive_command disabled by barman"
    );
    let auto =
        std::fs::read_to_string(data.join("postgresql.auto.conf")).expect("postgresql.auto.conf");
    assert!(
        !auto.contains("restore_command") && !auto.contains("recovery_target"),
        "{point}: recovery settings in the original: {auto}"
    );
    assert_eq!(
        sb.psql("SHOW archive_command").trim(),
        sb.archive_command(),
        "{point}"
    );
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
    assert_original_untouched(sb, point);
}

/// barkeep SIGKILLed while `barman recover` copies a backup big enough to take seconds: the
/// orphaned barman and its rsync must not go on writing into the original cluster once resume
/// has moved it back under the data directory's name.
#[test]
fn a_crash_while_barman_recover_copies_leaves_no_orphan_writing_into_the_original() {
    let sb = Sandbox::up(SandboxOptions::default());
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    // ~120 MB: barman recover takes seconds, not a blink.
    sb.psql("INSERT INTO t SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 1200000) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let target = now_utc();
    sb.psql("DELETE FROM t WHERE id % 3 = 0");
    let before = checksum(&sb);
    for attempt in 0..2 {
        let point = "recover:child";
        crash_at(&sb, &["restore", "start", "--target-time", &target], point);
        // resume at once, while the orphan would still be copying.
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        assert_eq!(s["outcome"]["outcome"], "rolled_back", "{attempt}: {s}");
        assert_no_children_left(&sb, point);
        // Give an orphan (had one survived) the time to write its recovery settings.
        std::thread::sleep(Duration::from_secs(3));
        assert_rolled_back(&sb, &before, point);
    }
}

/// Two restores started at the same moment by two processes: one runs, the other is refused
/// (the host-wide lock, or the journal of the first).
#[test]
fn two_processes_cannot_restore_at_once() {
    let sb = Sandbox::up(SandboxOptions::default());
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    sb.psql("INSERT INTO t SELECT g, 'kept ' || g FROM generate_series(1, 40) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let target = now_utc();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_barkeep"))
            .arg("--config")
            .arg(sb.config_path())
            .args(["restore", "start", "--target-time", &target])
            .env("RUST_LOG", "warn")
            .env_remove("BARKEEP_FAULT_KILL_AFTER")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn barkeep")
    };
    let (a, b) = (spawn(), spawn());
    let outs = [
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    ];
    let won: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    let lost: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(won.len(), 1, "exactly one restore runs: {outs:?}");
    let err = String::from_utf8_lossy(&lost[0].stderr);
    assert!(
        err.contains("another barkeep process is working on a restore")
            || err.contains("a restore is already in progress"),
        "{err}"
    );
    assert!(in_recovery(&sb), "the winner is paused at the target");
    ok(barkeep(&sb, &["restore", "rollback"], None));
    assert!(!in_recovery(&sb));
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

    // Killed while a long child runs (not at a journal boundary): pg_ctl stop, barman
    // recover, pg_ctl start. resume kills what is left and rolls back.
    for point in ["stop:child", "recover:child", "start_paused:child"] {
        crash_at(&sb, &["restore", "start", "--target-time", &target], point);
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        assert_eq!(s["outcome"]["outcome"], "rolled_back", "{point}: {s}");
        assert_rolled_back(&sb, &before, point);
        assert_no_children_left(&sb, point);
    }

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

    // A crash during accept (also while its switch-wal runs): resume finishes the accept.
    for point in ["accept:started", "accept:child", "accept:finished"] {
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
    // Each accepted restore kept the pre-restore directory; they are listed with their size
    // and can be discarded one by one.
    let kept = ok(barkeep(&sb, &["restore", "kept"], None));
    let kept = kept.as_array().expect("a list");
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(kept.iter().all(|k| k["bytes"].as_u64().unwrap_or(0) > 0));
    let id = kept[0]["restore_id"].as_str().expect("an id").to_owned();
    ok(barkeep(&sb, &["restore", "discard", &id], None));
    let kept = ok(barkeep(&sb, &["restore", "kept"], None));
    assert_eq!(kept.as_array().map(Vec::len), Some(2));
}

#[test]
fn bad_input_on_the_command_line_gets_a_clear_error_and_touches_nothing() {
    let sb = Sandbox::up(SandboxOptions::default());
    let long = "x".repeat(10_000);
    let cases: [(&[&str], &str); 11] = [
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
        (&["restore", "query", "SELECT 1"], "no restore in progress"),
        (
            &["restore", "discard", "../etc"],
            "no kept pre-restore data directory",
        ),
        (
            &["restore", "discard", "r20261127T000000000Z"],
            "no kept pre-restore data directory",
        ),
        (
            &[
                "restore",
                "plan",
                "--target-time",
                "2026-11-26 09:30:00+00:00",
                "--backup-id",
                "; rm -rf /",
            ],
            "no backup with id",
        ),
        (
            &[
                "restore",
                "plan",
                "--target-time",
                "2026-11-26 09:30:00+00:00",
                "--backup-id",
                &long,
            ],
            "no backup with id",
        ),
        (&["restore", "rollback"], "no restore in progress"),
    ];
    for (args, want) in cases {
        let out = barkeep(&sb, args, None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in {err}");
        assert!(
            !err.contains('\u{1b}'),
            "no colour codes when stderr is no terminal: {err}"
        );
    }
    assert!(!sb.state_dir().join("restore.journal").exists());
    assert!(!in_recovery(&sb));
}

/// A transaction target through the CLI (issue 12): `restore transactions` lists the harmful
/// DELETE (JSON), `restore start --before-xid` is killed mid-recover and resume rolls back, then
/// killed once paused and resume brings it back paused just before the DELETE; `--after-xid`
/// by retry; nothing lost at the end. An xid the WAL does not hold is refused in words.
#[test]
fn a_crash_with_a_transaction_target_is_resumed_or_rolled_back_like_a_time() {
    let sb = Sandbox::up(SandboxOptions::default());
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    sb.psql("INSERT INTO t SELECT g, 'kept ' || g FROM generate_series(1, 40) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("DELETE FROM t WHERE id > 30");
    sb.psql("INSERT INTO t VALUES (100, 'after the harm')");
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    let before = checksum(&sb);

    let list = ok(barkeep(
        &sb,
        &["restore", "transactions", "--suspicious"],
        None,
    ));
    let harm = list["transactions"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|t| {
            t["line"]
                .as_str()
                .unwrap_or("")
                .contains("DELETE 10 rows from t")
        })
        .unwrap_or_else(|| panic!("the DELETE is listed: {list}"));
    let xid = harm["xid"].as_u64().expect("an xid").to_string();

    let bad = barkeep(
        &sb,
        &["restore", "plan", "--before-xid", "4000000000"],
        None,
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("does not end in the WAL"));

    let point = "recover:child";
    crash_at(&sb, &["restore", "start", "--before-xid", &xid], point);
    let s = ok(barkeep(&sb, &["restore", "resume"], None));
    assert_eq!(s["outcome"]["outcome"], "rolled_back", "{point}: {s}");
    assert_rolled_back(&sb, &before, point);
    assert_no_children_left(&sb, point);

    let point = "start_paused:finished";
    crash_at(&sb, &["restore", "start", "--before-xid", &xid], point);
    let s = ok(barkeep(&sb, &["restore", "resume"], None));
    assert_eq!(s["state"], "paused", "{point}: {s}");
    assert_eq!(
        s["target"]["xid"].as_u64().map(|x| x.to_string()),
        Some(xid.clone())
    );
    assert_eq!(sb.psql("SELECT count(*) FROM t").trim(), "40");

    let s = ok(barkeep(
        &sb,
        &["restore", "retry", "--after-xid", &xid],
        None,
    ));
    assert_eq!(s["state"], "paused", "{s}");
    assert_eq!(sb.psql("SELECT count(*) FROM t").trim(), "30");
    ok(barkeep(&sb, &["restore", "rollback"], None));
    assert_eq!(checksum(&sb), before, "nothing lost");
}

fn postmaster_start(sb: &Sandbox) -> String {
    sb.psql("SELECT pg_postmaster_start_time()")
}

/// No side copy of a preview is left in the state directory (its logs may stay).
fn assert_no_side_copy(sb: &Sandbox, point: &str) {
    let dirs: Vec<_> = std::fs::read_dir(sb.state_dir().join("preview"))
        .map(|d| d.flatten().filter(|e| e.path().is_dir()).collect())
        .unwrap_or_default();
    assert!(dirs.is_empty(), "{point}: side copies left: {dirs:?}");
}

/// A preview (issue 13) killed at each of its steps and at each point of its swap: resume rolls
/// back with production serving its own data (never restarted when the crash came before the
/// swap), brings a paused preview back paused, and finishes a swap that finished.
#[test]
fn a_crash_at_any_step_of_a_preview_leaves_production_with_its_data() {
    let sb = Sandbox::up(SandboxOptions::default());
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    // Verify queries read as a member of the application's role.
    sb.psql("ALTER TABLE t OWNER TO app");
    sb.psql("INSERT INTO t SELECT g, 'kept ' || g FROM generate_series(1, 40) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let target = now_utc();
    sb.psql("INSERT INTO t SELECT g, 'later ' || g FROM generate_series(41, 60) g");
    let before = checksum(&sb);
    let start = ["restore", "start", "--preview", "--target-time", &target];

    // Before paused, production was never stopped: rolled back without a restart.
    for point in [
        "plan:started",
        "archive:finished",
        "recover:started",
        "recover:child",
        "recover:finished",
        "start_paused:started",
        "start_paused:child",
    ] {
        let started = postmaster_start(&sb);
        crash_at(&sb, &start, point);
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        assert_eq!(s["outcome"]["outcome"], "rolled_back", "{point}: {s}");
        assert_rolled_back(&sb, &before, point);
        assert_eq!(postmaster_start(&sb), started, "{point}: never restarted");
        assert_no_side_copy(&sb, point);
        assert_no_children_left(&sb, point);
    }

    // Paused beside production when the crash came: resume brings the preview back paused.
    let point = "start_paused:finished";
    crash_at(&sb, &start, point);
    let s = ok(barkeep(&sb, &["restore", "resume"], None));
    assert_eq!(s["state"], "paused", "{point}: {s}");
    assert!(!in_recovery(&sb), "production serves on");
    let q = ok(barkeep(
        &sb,
        &["restore", "query", "SELECT count(*) FROM t"],
        None,
    ));
    assert_eq!(q["rows"][0][0], "40", "{q}");

    // A retry cut short: rolled back.
    let point = "retry:started";
    crash_at(&sb, &["restore", "retry", "--target-time", &target], point);
    ok(barkeep(&sb, &["restore", "resume"], None));
    assert_rolled_back(&sb, &before, point);
    assert_no_side_copy(&sb, point);

    // A swap cut short, at its start, while it stops the servers, between its renames and
    // the start: production goes back in its place with its data.
    for point in ["swap:started", "swap:child", "swap:renamed"] {
        let s = ok(barkeep(&sb, &start, None));
        assert_eq!(s["state"], "paused", "{point}: {s}");
        crash_at(&sb, &["restore", "accept"], point);
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        assert_eq!(s["outcome"]["outcome"], "rolled_back", "{point}: {s}");
        assert_rolled_back(&sb, &before, point);
        assert_no_side_copy(&sb, point);
        assert_no_children_left(&sb, point);
    }

    // A swap that finished, or an accept begun after it: the accept is finished.
    for point in ["swap:finished", "accept:started"] {
        let s = ok(barkeep(&sb, &start, None));
        assert_eq!(s["state"], "paused", "{point}: {s}");
        crash_at(&sb, &["restore", "accept"], point);
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        assert_eq!(s["outcome"]["outcome"], "accepted", "{point}: {s}");
        assert!(!in_recovery(&sb));
        assert_eq!(sb.psql("SELECT count(*) FROM t").trim(), "40", "{point}");
        assert_no_side_copy(&sb, point);
        // Production's own directory, set aside by the swap, is kept.
        let kept = ok(barkeep(&sb, &["restore", "kept"], None));
        assert!(!kept.as_array().expect("a list").is_empty());
    }
}

/// A restore from the off-site bucket is the same journaled restore: killed at any point on the
/// way to paused (also while barman-cloud-restore writes into the data directory), resume rolls
/// it back to production with its data; paused when killed, it is paused again.
#[test]
fn a_crash_in_a_restore_from_the_bucket_is_resumed_or_rolled_back_like_a_local_one() {
    let sb = Sandbox::up(SandboxOptions::default().with_offsite());
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    // Restored from the sandbox's first backup and the WAL after it.
    sb.psql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 100000) g");
    let target = now_utc();
    sb.psql("DELETE FROM t WHERE id % 3 = 0");
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    let t0 = std::time::Instant::now();
    let s = ok(barkeep(&sb, &["offsite", "replicate"], None));
    eprintln!("replicated in {:?}", t0.elapsed());
    assert!(s["error"].is_null(), "{s}");
    let before = checksum(&sb);
    let restore = ["offsite", "restore", "--target-time", target.as_str()];

    // While barman-cloud-restore writes into the data directory, and between the recover and
    // the start (the step boundaries are the local restore's, tested at each point above).
    for point in ["recover:child", "recover:finished"] {
        let t0 = std::time::Instant::now();
        crash_at(&sb, &restore, point);
        eprintln!("{point}: killed after {:?}", t0.elapsed());
        let s = ok(barkeep(&sb, &["restore", "resume"], None));
        eprintln!("{point}: resumed after {:?}", t0.elapsed());
        assert_eq!(s["outcome"]["outcome"], "rolled_back", "{point}: {s}");
        assert_no_children_left(&sb, point);
        assert_rolled_back(&sb, &before, point);
    }
    let point = "start_paused:finished";
    crash_at(&sb, &restore, point);
    let s = ok(barkeep(&sb, &["restore", "resume"], None));
    assert_eq!(s["state"], "paused", "{point}: {s}");
    assert!(in_recovery(&sb));
    assert_eq!(sb.psql("SELECT count(*) FROM t").trim(), "100000");
    ok(barkeep(&sb, &["restore", "rollback"], None));
    assert_rolled_back(&sb, &before, "rollback after the resumed pause");
}
