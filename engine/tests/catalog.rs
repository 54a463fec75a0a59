//! The catalog read from Barman's files must agree with Barman itself (`barman -f json
//! list-backups` / `show-backup`) on the same catalog, and the probe with PostgreSQL.

mod common;

use barkeep_engine::probe;
use barkeep_engine::wal::WalSegment;
use barkeep_engine::window::recovery_window;
use barkeep_testkit::SandboxOptions;
use common::*;

#[test]
fn catalog_agrees_with_barman_and_the_window_ends_at_the_last_commit() {
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    sb.psql("CREATE TABLE t (id int)");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    // The commit of this INSERT is at or after its transaction's now().
    let inserted_at = sb.psql("INSERT INTO t VALUES (1) RETURNING to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')");
    let inserted_at =
        chrono::NaiveDateTime::parse_from_str(inserted_at.trim(), "%Y-%m-%d %H:%M:%S%.f")
            .expect("a time")
            .and_utc();
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);

    let catalog = engine.catalog().expect("catalog");
    let listed = sb.barman_json(&["-f", "json", "list-backups", "pg"]);
    let listed = listed["pg"].as_array().expect("a list");
    assert_eq!(catalog.backups.len(), listed.len());
    assert_eq!(catalog.backups.len(), 2);
    for entry in listed {
        let id = entry["backup_id"].as_str().expect("id");
        let ours = catalog
            .backup(id)
            .expect("barkeep sees every backup barman lists");
        assert_eq!(
            ours.status.as_str(),
            entry["status"].as_str().expect("status")
        );
        let end_ts = entry["end_time_timestamp"]
            .as_str()
            .expect("end_time_timestamp");
        let end_ts: f64 = end_ts.parse().expect("epoch");
        let ours_end = ours.end_time.expect("end").timestamp();
        assert!(
            (ours_end as f64 - end_ts).abs() < 1.0,
            "{id}: end {ours_end} vs barman {end_ts}"
        );

        let show = sb.barman_json(&["-f", "json", "show-backup", "pg", id]);
        let info = &show["pg"]["base_backup_information"];
        assert_eq!(
            ours.begin_wal.as_deref(),
            info["begin_wal"].as_str(),
            "{id}: begin_wal"
        );
        assert_eq!(
            ours.end_wal.as_deref(),
            info["end_wal"].as_str(),
            "{id}: end_wal"
        );
        assert_eq!(
            ours.begin_xlog.as_deref(),
            info["begin_lsn"].as_str(),
            "{id}: begin_lsn"
        );
        assert_eq!(
            ours.end_xlog.as_deref(),
            info["end_lsn"].as_str(),
            "{id}: end_lsn"
        );
        assert_eq!(
            ours.timeline.map(i64::from),
            info["timeline"].as_i64(),
            "{id}: timeline"
        );
        assert_eq!(
            ours.size.map(|s| s as i64),
            info["disk_usage_bytes"].as_i64(),
            "{id}: size"
        );
        let begin_ts: i64 = info["begin_time_timestamp"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("begin ts");
        assert_eq!(
            ours.begin_time.map(|t| t.timestamp()),
            Some(begin_ts),
            "{id}: begin_time"
        );
        assert_eq!(
            ours.version.map(i64::from),
            show["pg"]["postgresql_version"].as_i64(),
            "{id}: version"
        );
        assert_eq!(
            ours.status.as_str(),
            show["pg"]["status"].as_str().expect("status")
        );
        assert!(catalog.wal_gaps(ours).is_empty(), "{id}: no WAL gaps");
    }
    assert!(catalog
        .identity
        .as_ref()
        .and_then(|i| i.systemid.as_deref())
        .is_some());

    // Archived WAL: every segment Barman has, with a time; the newest one is the one Barman
    // names as the last available for the latest backup.
    let newest = catalog.newest_segment().expect("a segment");
    let latest_id = &catalog.backups.last().expect("a backup").id;
    let show = sb.barman_json(&["-f", "json", "show-backup", "pg", latest_id]);
    assert_eq!(
        show["pg"]["wal_information"]["last_available"].as_str(),
        Some(newest.to_string().as_str())
    );
    assert!(sb.archived_wal().contains(&newest.to_string()));
    assert!(WalSegment::parse(&newest.to_string()).is_some());
    let age = chrono::Utc::now() - catalog.last_wal_time().expect("a WAL time");
    assert!(age.num_seconds() < 120, "WAL age {age}");

    // The window: from the end of the oldest backup to the last commit (the INSERT above).
    let window = rt
        .block_on(recovery_window(&catalog, &engine.config().postgres.bin_dir))
        .expect("window");
    assert_eq!(window.earliest, catalog.earliest_recoverable());
    let latest = window.latest.expect("a last commit");
    assert!(latest > window.earliest.expect("earliest"));
    assert!(
        latest >= inserted_at,
        "the last commit {latest} is not before the INSERT at {inserted_at}"
    );
    assert!(latest <= chrono::Utc::now());

    // The probe, against the live server.
    let s = rt
        .block_on(probe::status(&engine.config().postgres))
        .expect("probe");
    assert!(s.version.starts_with("14."), "{}", s.version);
    assert_eq!(s.version_num / 10000, 14);
    assert!(!s.in_recovery);
    assert_eq!(s.pause_state, None);
    assert_eq!(s.timeline, 1);
    assert!(s.archiver.archived_count > 0);
    assert_eq!(s.archiver.failed_count, 0);
    assert_eq!(s.archive_command, sb.archive_command());
    assert_eq!(s.archive_timeout_secs, 900);
}

/// pg_ctl service control against the real server: stop is proven from the data directory,
/// start waits until connections are accepted.
#[test]
fn pg_ctl_service_control_stops_provably_and_starts() {
    use barkeep_engine::service::{Postmaster, ServiceControl};
    let (sb, engine) = stack(SandboxOptions::default());
    let rt = runtime();
    let service = engine.service();
    assert!(matches!(service.postmaster(), Postmaster::Running { .. }));
    assert!(rt.block_on(service.is_active()).expect("status"));
    rt.block_on(service.stop()).expect("stop");
    assert_eq!(service.postmaster(), Postmaster::Stopped);
    assert!(!sb.data_dir().join("postmaster.pid").exists());
    assert!(!rt.block_on(service.is_active()).expect("status"));
    // Stopping a stopped server is not an error.
    rt.block_on(service.stop()).expect("stop again");
    rt.block_on(service.start()).expect("start");
    assert!(matches!(service.postmaster(), Postmaster::Running { .. }));
    assert_eq!(sb.psql("SELECT 1").trim(), "1");
}
