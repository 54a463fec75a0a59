//! The seed's procedure works against the sandbox: one DONE backup, WAL archived by
//! archive_command into Barman, `barman check` all OK, PostgreSQL 14.
//!
//! Needs `scripts/sandbox install` (root) first; run as the unprivileged user:
//! `runuser -u barkeep -- <this test binary>`.

use std::net::TcpStream;
use std::path::Path;

use barkeep_testkit::{Sandbox, SandboxOptions, SERVER};

#[test]
fn seed_procedure_works_against_the_sandbox() {
    let sb = Sandbox::up(SandboxOptions::default());

    // PostgreSQL 14.x, over the socket, with the sample data.
    let version = sb.psql("SHOW server_version");
    assert!(version.starts_with("14."), "server_version = {version:?}");
    let num: u32 = sb
        .psql("SHOW server_version_num")
        .parse()
        .expect("a number");
    assert!(
        (140000..150000).contains(&num),
        "server_version_num = {num}"
    );
    assert_eq!(sb.psql("SELECT count(*) FROM customers"), "300");
    assert_eq!(sb.psql("SELECT count(*) FROM orders"), "900");

    // The seed's settings are the running ones.
    assert_eq!(sb.psql("SHOW archive_mode"), "on");
    assert_eq!(sb.psql("SHOW wal_level"), "replica");
    assert_eq!(sb.psql("SHOW archive_timeout"), "15min");
    assert_eq!(sb.psql("SHOW archive_command"), sb.archive_command());
    assert_eq!(
        sb.psql("SELECT setting FROM pg_settings WHERE name = 'port'"),
        sb.pg_port().to_string()
    );
    // ... from postgresql.conf, not the command line (barman recover only rewrites the files).
    assert_eq!(
        sb.psql("SELECT sourcefile FROM pg_settings WHERE name = 'archive_command'"),
        sb.data_dir().join("postgresql.conf").display().to_string()
    );

    // One DONE backup.
    let list = sb.barman_json(&["list-backups", SERVER]);
    let backups = list[SERVER]
        .as_array()
        .unwrap_or_else(|| panic!("no {SERVER} in {list}"));
    assert_eq!(backups.len(), 1, "{list}");
    assert_eq!(backups[0]["status"], "DONE", "{list}");
    let id = backups[0]["backup_id"].as_str().expect("backup_id");
    let info = std::fs::read_to_string(
        sb.barman_home()
            .join(SERVER)
            .join("base")
            .join(id)
            .join("backup.info"),
    )
    .expect("backup.info on disk");
    assert!(info.lines().any(|l| l == "status=DONE"), "{info}");

    // WAL reaches Barman through archive_command.
    let before = sb.archived_wal();
    assert!(!before.is_empty(), "xlog.db is empty");
    sb.psql("INSERT INTO orders (customer_id, amount, status) VALUES (1, 12.34, 'new')");
    let segment = sb.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    assert_eq!(segment.len(), 24, "{segment:?}");
    assert!(
        !before.contains(&segment),
        "{segment} archived before the switch: {before:?}"
    );
    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
    let after = sb.archived_wal();
    assert!(
        after.contains(&segment),
        "{segment} not in xlog.db after switch-wal --archive: {after:?}"
    );
    let archiver = sb.psql("SELECT failed_count, last_archived_wal FROM pg_stat_archiver");
    assert!(archiver.starts_with("0|"), "pg_stat_archiver: {archiver}");

    // barman check: all OK.
    let check = sb.barman(&["check", SERVER]);
    assert!(
        check.status.success(),
        "barman check {SERVER} failed:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let check = String::from_utf8_lossy(&check.stdout);
    assert!(!check.contains("FAILED"), "{check}");

    // barkeep.toml matches what runs (the schema of engine/src/config.rs).
    let toml = std::fs::read_to_string(sb.config_path()).expect("barkeep.toml");
    let want = [
        format!("archive_command = \"{}\"", sb.archive_command()),
        format!("port = {}", sb.pg_port()),
        format!("host = \"{}\"", sb.socket_dir().display()),
        format!("data_dir = \"{}\"", sb.data_dir().display()),
        format!("bin_dir = \"{}\"", sb.pg_bin_dir().display()),
        format!("bin = \"{}\"", sb.barman_bin().display()),
        format!("config = \"{}\"", sb.barman_config().display()),
        format!("home = \"{}\"", sb.barman_home().display()),
        format!("state_dir = \"{}\"", sb.state_dir().display()),
        "kind = \"pg_ctl\"".to_owned(),
        "server = \"pg\"".to_owned(),
    ];
    for line in want {
        assert!(
            toml.lines().any(|l| l == line),
            "barkeep.toml lacks {line:?}:\n{toml}"
        );
    }

    // `up` again on a running sandbox only reports it.
    let again = sb.script("up", &["--no-barkeep"]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));
    assert_eq!(
        sb.barman_json(&["list-backups", SERVER])[SERVER]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[test]
fn pg_timezone_is_applied_and_drop_cleans_up() {
    let sb = Sandbox::up(SandboxOptions::default().pg_timezone("America/New_York"));
    assert_eq!(sb.psql("SHOW timezone"), "America/New_York");
    // barman runs in UTC whatever PostgreSQL's zone: the backup is there all the same.
    let list = sb.barman_json(&["list-backups", SERVER]);
    assert_eq!(list[SERVER][0]["status"], "DONE", "{list}");

    let dir = sb.dir().to_path_buf();
    let port = sb.pg_port();
    let status = sb.script("status", &[]);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("postgresql: up"));
    drop(sb);
    if std::env::var_os("BARKEEP_KEEP_SANDBOX").is_none() {
        assert!(!Path::new(&dir).exists(), "{} left behind", dir.display());
    }
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still listening on {port} after drop"
    );
}
