//! Off-site copies (issue 15) against the real PostgreSQL 14 + Barman 3.3.0 and a real Garage on
//! 127.0.0.1 (`scripts/sandbox up --offsite`): what the replication run copies, what an outage
//! of the bucket does to the local archive (nothing) and to the lag (it grows, then drains), and
//! the error each bad configuration gives.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use barkeep_engine::catalog::BackupStatus;
use barkeep_engine::offsite::OffsiteError;
use barkeep_engine::target::TargetTime;
use barkeep_engine::{Config, Engine};
use barkeep_testkit::{Sandbox, SandboxOptions};
use common::*;

/// A few WAL switches with a commit in each, archived by Barman.
fn write_and_archive(sb: &Sandbox, n: usize) {
    for i in 0..n {
        sb.psql(&format!("INSERT INTO offsite_t VALUES ({i})"));
        sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    }
}

fn local_done_backups(engine: &Engine) -> BTreeSet<String> {
    engine
        .catalog()
        .expect("catalog")
        .backups
        .into_iter()
        .filter(|b| b.status == BackupStatus::Done)
        .map(|b| b.id)
        .collect()
}

#[test]
fn the_bucket_gets_every_backup_and_wal_file_of_the_catalog_and_the_lag_reaches_zero() {
    let (sb, engine) = stack(SandboxOptions::default().with_offsite());
    let rt = runtime();
    sb.psql("CREATE TABLE offsite_t (i int)");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    write_and_archive(&sb, 3);

    let status = rt
        .block_on(engine.offsite_replicate())
        .expect("a replication run");
    assert!(status.in_sync(), "{status:#?}");
    let lag = status.lag.as_ref().expect("a lag");
    assert_eq!(lag.seconds, 0);
    assert_eq!(lag.newest_offsite_wal, lag.newest_local_wal);
    assert_eq!(
        engine.offsite_status().as_ref(),
        Some(&status),
        "kept on disk"
    );

    // What the bucket holds, listed again, is the local catalog.
    let bucket = rt.block_on(engine.offsite_listing()).expect("listing");
    let remote = bucket.wal_names();
    let local: BTreeSet<String> = sb.archived_wal().into_iter().collect();
    assert_eq!(remote, local, "every archived WAL file, and nothing else");
    assert_eq!(status.copied_wals, local.len());
    let remote_backups = bucket.done_backups();
    assert_eq!(remote_backups, local_done_backups(&engine));
    assert_eq!(status.copied_backups.len(), remote_backups.len());

    // A second run has nothing to do.
    let again = rt.block_on(engine.offsite_replicate()).expect("again");
    assert!(again.in_sync());
    assert_eq!((again.copied_wals, again.copied_backups.len()), (0, 0));
}

#[test]
fn an_outage_of_the_bucket_never_stops_local_archiving_and_its_lag_drains_after() {
    let (sb, engine) = stack(SandboxOptions::default().with_offsite());
    let rt = runtime();
    sb.psql("CREATE TABLE offsite_t (i int)");
    write_and_archive(&sb, 1);
    assert!(rt
        .block_on(engine.offsite_replicate())
        .expect("in sync first")
        .in_sync());

    sb.garage_stop();
    let before = sb.archived_wal().len();
    write_and_archive(&sb, 3);
    assert!(
        sb.archived_wal().len() >= before + 3,
        "Barman archives on while the bucket is down"
    );
    let err = rt
        .block_on(engine.offsite_replicate())
        .expect_err("the bucket is down");
    assert!(
        matches!(err, OffsiteError::Unreachable { .. }),
        "{err:?}: {err}"
    );
    let status = engine.offsite_status().expect("a failed run is recorded");
    let error = status.error.clone().expect("with its error");
    assert!(error.contains("cannot reach"), "{error}");
    let lag = status.lag.expect("the lag grows while the bucket is down");
    assert!(lag.missing_segments >= 3, "{lag:?}");
    assert!(lag.seconds > 0, "{lag:?}");

    sb.garage_start();
    let status = rt
        .block_on(engine.offsite_replicate())
        .expect("the bucket is back");
    assert!(status.in_sync(), "{status:#?}");
    assert!(status.copied_wals >= 3);
    let remote = rt
        .block_on(engine.offsite_listing())
        .expect("listing")
        .wal_names();
    let local: BTreeSet<String> = sb.archived_wal().into_iter().collect();
    assert_eq!(remote, local, "no hole left in the bucket");
}

#[test]
fn bad_configurations_say_what_is_wrong_and_lose_nothing_locally() {
    let (sb, engine) = stack(SandboxOptions::default().with_offsite());
    let rt = runtime();
    let good = Config::load(&sb.config_path()).expect("config");
    let with = |change: &dyn Fn(&mut barkeep_engine::config::OffsiteConfig)| {
        let mut c = good.clone();
        change(c.offsite.as_mut().expect("an [offsite] section"));
        Engine::new(Arc::new(c)).expect("engine")
    };
    let archived = sb.archived_wal();

    // Wrong credentials: the store refuses them.
    let wrong = sb.dir().join("wrong-credentials");
    std::fs::write(
        &wrong,
        "[default]\naws_access_key_id = GK000000000000000000000000\n\
         aws_secret_access_key = 0000000000000000000000000000000000000000000000000000000000000000\n",
    )
    .expect("write");
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let err = rt
        .block_on(with(&|o| o.credentials_file = wrong.clone()).offsite_replicate())
        .expect_err("refused");
    assert!(
        matches!(err, OffsiteError::Credentials { .. }),
        "{err:?}: {err}"
    );
    // ... and barkeep's check (the dashboard's) says so beside Barman's own lines.
    let report = rt.block_on(engine.barman_check());
    let failing: Vec<String> = report
        .failing()
        .iter()
        .map(|i| format!("{}: {}", i.name, i.hint))
        .collect();
    assert!(
        failing
            .iter()
            .any(|l| l.starts_with("off-site copy") && l.contains("refused the credentials")),
        "{failing:?}"
    );

    // A credentials file others can read is refused before it is used.
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .expect("chmod");
    let err = rt
        .block_on(with(&|o| o.credentials_file = wrong.clone()).offsite_replicate())
        .expect_err("refused");
    assert!(err.to_string().contains("chmod 600"), "{err}");

    // An unknown bucket: named, and not created behind the person's back.
    let engine = with(&|o| o.bucket_url = "s3://no-such-bucket/x".into());
    let err = rt
        .block_on(engine.offsite_replicate())
        .expect_err("no bucket");
    assert!(
        matches!(err, OffsiteError::NoBucket { .. }),
        "{err:?}: {err}"
    );
    assert!(matches!(
        rt.block_on(engine.offsite_listing()),
        Err(OffsiteError::NoBucket { .. })
    ));

    // An endpoint nobody listens on.
    let err = rt
        .block_on(with(&|o| o.endpoint_url = "http://127.0.0.1:9".into()).offsite_replicate())
        .expect_err("unreachable");
    assert!(
        matches!(err, OffsiteError::Unreachable { .. }),
        "{err:?}: {err}"
    );

    // Nothing of the local side changed, and archiving goes on.
    sb.psql("CREATE TABLE offsite_t (i int)");
    write_and_archive(&sb, 1);
    let now = sb.archived_wal();
    assert_eq!(&now[..archived.len()], &archived[..]);
    assert!(now.len() > archived.len());
}

/// PostgreSQL stopped as a dying host would leave it (fast shutdown), for the disaster below.
fn stop_postgres(sb: &Sandbox) {
    let out = std::process::Command::new(sb.pg_bin_dir().join("pg_ctl"))
        .arg("-D")
        .arg(sb.data_dir())
        .args(["-m", "fast", "-w", "stop"])
        .output()
        .expect("pg_ctl runs");
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn the_bucket_alone_rebuilds_the_database_at_the_target_after_a_disaster() {
    let (sb, engine) = stack(SandboxOptions::default().with_offsite());
    let rt = runtime();
    sb.psql("CREATE TABLE disaster_t (i int)");
    sb.psql("INSERT INTO disaster_t SELECT generate_series(1, 100)");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("INSERT INTO disaster_t SELECT generate_series(101, 150)");
    let target = mark_time();
    let at_target = checksum(&sb, "disaster_t");
    // The harm after the target, and a commit after it that reaches the bucket.
    sb.psql("DELETE FROM disaster_t WHERE i > 10");
    sb.psql("INSERT INTO disaster_t VALUES (-1)");
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    let status = rt.block_on(engine.offsite_replicate()).expect("replicated");
    assert!(status.in_sync(), "{status:#?}");
    let after_harm = checksum(&sb, "disaster_t");

    // With the host still whole: a restore from the bucket sets production aside like any
    // restore, and a rollback puts it back as it was.
    let paused = rt
        .block_on(engine.start_restore_from_bucket(target, None))
        .expect("paused at the target");
    assert_eq!(paused.state.name(), "paused", "{paused:#?}");
    assert_eq!(checksum(&sb, "disaster_t"), at_target);
    let second = rt.block_on(engine.start_restore_from_bucket(target, None));
    assert!(
        matches!(
            second,
            Err(barkeep_engine::restore::RestoreError::InProgress { .. })
        ),
        "{second:?}"
    );
    rt.block_on(engine.rollback()).expect("rolled back");
    assert_eq!(
        checksum(&sb, "disaster_t"),
        after_harm,
        "production is back"
    );
    assert!(!in_recovery(&sb));

    // The disaster: PostgreSQL gone with its data directory, Barman's whole home and
    // barkeep's state with it. What is left is barkeep.toml and the credentials file.
    stop_postgres(&sb);
    for dir in [sb.data_dir(), sb.barman_home(), sb.state_dir()] {
        std::fs::remove_dir_all(&dir).expect("removed");
    }
    let config = Config::load(&sb.config_path()).expect("config");
    let engine = Engine::new(Arc::new(config)).expect("an engine on the rebuilt host");

    // Bad input first: refused with words, nothing made.
    let unknown = rt.block_on(engine.plan_from_bucket(target, Some("20200101T000000")));
    assert!(
        matches!(
            unknown,
            Err(barkeep_engine::restore::RestoreError::UnknownOffsiteBackup(
                _
            ))
        ),
        "{unknown:?}"
    );
    let too_early = TargetTime::new(chrono::Utc::now() - chrono::Duration::days(365));
    let err = rt
        .block_on(engine.plan_from_bucket(too_early, None))
        .expect_err("before every backup");
    assert!(
        err.to_string().contains("oldest backup in the bucket"),
        "{err}"
    );
    assert!(!sb.data_dir().exists());

    let plan = rt
        .block_on(engine.plan_from_bucket(target, None))
        .expect("a plan from the bucket");
    assert!(!plan.source.has_original(), "{plan:#?}");
    let t0 = std::time::Instant::now();
    let paused = rt
        .block_on(engine.start_restore_from_bucket(target, None))
        .expect("rebuilt and paused at the target");
    eprintln!(
        "disaster restore to paused: {} ms",
        t0.elapsed().as_millis()
    );
    assert_eq!(paused.state.name(), "paused", "{paused:#?}");
    assert!(in_recovery(&sb));
    assert_eq!(
        checksum(&sb, "disaster_t"),
        at_target,
        "exactly the rows at the target"
    );

    let accepted = rt.block_on(engine.accept()).expect("accepted");
    assert_eq!(accepted.state.name(), "closed", "{accepted:#?}");
    assert!(!in_recovery(&sb));
    assert_eq!(checksum(&sb, "disaster_t"), at_target);
    let auto = std::fs::read_to_string(sb.data_dir().join("postgresql.auto.conf")).expect("read");
    assert!(!auto.contains("restore_command"), "{auto}");
    assert!(!sb.data_dir().join("barman_wal").exists());
    // Archiving runs again, into the rebuilt Barman, on a new timeline.
    sb.psql("INSERT INTO disaster_t VALUES (-2)");
    sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    let timelines: BTreeSet<u32> = sb
        .archived_wal()
        .iter()
        .filter_map(|w| u32::from_str_radix(w.get(..8)?, 16).ok())
        .collect();
    assert!(timelines.iter().any(|t| *t >= 2), "{timelines:?}");
}
