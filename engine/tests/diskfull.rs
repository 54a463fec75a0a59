//! A full disk on a small loop-mounted ext4 filesystem that holds the whole stack (data
//! directory, state directory, Barman's catalog): the plan refuses up front when it can tell;
//! when the disk fills after the plan passed, the recover fails, the rollback still runs (the
//! half-recovered copy goes first, the journal has its reserved space) and PostgreSQL comes
//! back with its rows. scripts/test (as root) mounts the filesystem and names it in
//! BARKEEP_SMALLFS; without it this test fails: it is a prerequisite, not an option.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use barkeep_engine::restore::journal::{self, Record};
use barkeep_engine::restore::{Phase, RestoreError, Step};
use barkeep_testkit::SandboxOptions;
use common::*;

fn smallfs() -> PathBuf {
    let dir = std::env::var_os("BARKEEP_SMALLFS")
        .map(PathBuf::from)
        .expect(
            "BARKEEP_SMALLFS is not set: run the tests through scripts/test, which mounts a small \
         loop filesystem for this test",
        );
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    dir
}

fn free(dir: &Path) -> u64 {
    let s = rustix::fs::statvfs(dir).expect("statvfs");
    s.f_bavail * s.f_frsize
}

/// A file that takes the disk; removed when dropped (also when an assertion fails).
struct Filler(PathBuf);

impl Drop for Filler {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Takes all but `leave` bytes of the filesystem holding `dir` with one allocated file.
fn fill(dir: &Path, leave: u64) -> Filler {
    let path = dir.join("filler");
    let f = std::fs::File::create(&path).expect("filler");
    let mut len = free(dir).saturating_sub(leave);
    loop {
        match rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => break,
            Err(rustix::io::Errno::NOSPC) if len > (1 << 20) => len -= 1 << 20,
            Err(e) => panic!("fallocate {len}: {e}"),
        }
    }
    Filler(path)
}

#[test]
fn a_full_disk_is_refused_up_front_or_rolled_back_with_nothing_lost() {
    let parent = smallfs().join(format!("t{}", std::process::id()));
    std::fs::create_dir_all(&parent).expect("mkdir");
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (sb, engine) = stack(SandboxOptions {
        parent: Some(parent.clone()),
        ..SandboxOptions::default()
    });
    let rt = runtime();
    sb.psql("CREATE TABLE t (id int PRIMARY KEY, v text)");
    sb.psql("INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    let target = mark_time();
    sb.psql("DELETE FROM t WHERE id % 2 = 0");
    let before = checksum(&sb, "t");
    // What can be read on a full disk (no sort spilling to a temp file).
    let light = "SELECT count(*), sum(id), max(v) FROM t";
    let before_light = sb.psql(light);

    // 1. The plan can tell: refused before anything is stopped, in words that name the disk.
    let plan = rt.block_on(engine.plan(target, None)).expect("plan");
    let filler = fill(&parent, plan.needed_bytes / 2);
    let e = rt
        .block_on(engine.start_restore(target, None))
        .expect_err("not enough space");
    assert!(matches!(e, RestoreError::DiskFull { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.starts_with("the disk holding "), "{msg}");
    assert!(
        msg.contains(" is full: ") && msg.contains("needed"),
        "{msg}"
    );
    assert!(!sb.state_dir().join("restore.journal").exists());
    assert!(!in_recovery(&sb));
    assert_eq!(checksum(&sb, "t"), before);
    drop(filler);

    // 2. The plan passes, then something fills the disk while barman recover runs.
    // Watches the journal (what barkeep writes before and after each step) for the end of
    // set-aside, and fills the disk then, while barman recover starts.
    let journal_path = sb.state_dir().join("restore.journal");
    let fill_dir = parent.clone();
    let filler_thread = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let set_aside = journal::read(&journal_path)
                .ok()
                .flatten()
                .is_some_and(|entries| {
                    entries.iter().any(|e| {
                        matches!(
                            e.record,
                            Record::StepFinished {
                                step: Step::SetAside,
                                ..
                            }
                        )
                    })
                });
            if set_aside {
                return Some(fill(&fill_dir, 0));
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        None
    });
    let e = rt
        .block_on(engine.start_restore(target, None))
        .expect_err("the recover meets a full disk");
    let filler = filler_thread
        .join()
        .expect("filler thread")
        .expect("filled after set aside");
    match &e {
        RestoreError::RolledBack { step, message } => {
            assert_eq!(*step, Step::Recover, "{e}");
            assert!(message.contains("the disk holding"), "{e}");
        }
        other => panic!("expected an automatic rollback, got: {other}"),
    }
    // Rolled back with the disk still full: PostgreSQL is up with every row.
    assert!(!in_recovery(&sb));
    assert_eq!(sb.psql(light), before_light, "nothing lost");
    let status = engine.status().expect("status").expect("a restore");
    assert_eq!(status.state, Phase::Closed);
    assert!(!sb.state_dir().join("restore.journal").exists());
    drop(filler);
    assert_eq!(checksum(&sb, "t"), before, "nothing lost, byte for byte");

    // Not asserted here: a restore right after this one. Barman's home shares this small
    // filesystem, and barman recover runs archive-wal before it copies: on the full disk that
    // step may leave Barman's own WAL archive short, and the next restore then failed at start
    // (seen once here, not yet diagnosed; a follow-up, see the closing note of issue 8).
}
