//! Disk space and filesystems: what a restore needs next to the data directory, measured
//! before anything is stopped, and the words a person gets when a disk fills up anyway.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RestoreError;
use crate::catalog::{Backup, Catalog};
use crate::wal::WalSegment;

/// PostgreSQL 14's default WAL segment size: what one archived segment takes once Barman has
/// copied it, uncompressed, into the restored copy's `barman_wal/`.
const SEGMENT_BYTES: u64 = 16 << 20;
/// Room for PostgreSQL's own start-up, the journal and the logs.
const MARGIN_BYTES: u64 = 64 << 20;

/// The bytes a restore from `backup` writes next to the data directory: the backup's files,
/// every archived segment after its start (an upper bound of what `barman recover` copies
/// into `barman_wal/` for the replay), and a margin.
pub fn needed_bytes(catalog: &Catalog, backup: &Backup) -> u64 {
    let wal = backup
        .begin_wal
        .as_deref()
        .and_then(WalSegment::parse)
        .map(|begin| {
            catalog
                .archived
                .iter()
                .filter_map(|w| w.segment())
                .filter(|s| s.timeline >= begin.timeline && s.index() >= begin.index())
                .count() as u64
                + catalog.incoming.len() as u64
        })
        .unwrap_or(0);
    restore_bytes(backup.size.unwrap_or(0), wal)
}

/// What a restore writes: the backup's files, the WAL segments it may replay, a margin.
pub fn restore_bytes(backup_bytes: u64, segments: u64) -> u64 {
    backup_bytes
        .saturating_add(segments.saturating_mul(SEGMENT_BYTES))
        .saturating_add(MARGIN_BYTES)
}

/// Free bytes for an unprivileged user on the filesystem holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, RestoreError> {
    let stat = rustix::fs::statvfs(dir).map_err(|e| RestoreError::Io {
        what: format!("cannot read the free space of {}", dir.display()),
        source: e.into(),
    })?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// The plan's warning when this restore fits but a second one would not.
pub fn second_restore_warning(
    dir: &Path,
    free: u64,
    needed: u64,
    kept: &[PreRestoreDir],
) -> Option<String> {
    if free >= needed.saturating_mul(2) {
        return None;
    }
    let kept_words = if kept.is_empty() {
        String::new()
    } else {
        format!(
            "; {} kept pre-restore director{} take {}: discard what you no longer need",
            kept.len(),
            if kept.len() == 1 { "y" } else { "ies" },
            human(kept.iter().map(|p| p.bytes).sum())
        )
    };
    Some(format!(
        "after this restore the disk holding {} cannot hold another one ({} free, {} per restore){kept_words}",
        dir.display(),
        human(free),
        human(needed),
    ))
}

/// Refuses, before anything is stopped, a data directory that set-aside could not rename into
/// the state directory: a mount point, or on another filesystem than the state directory.
pub fn check_renamable(data_dir: &Path, state_dir: &Path) -> Result<(), RestoreError> {
    let meta = |p: &Path| {
        std::fs::metadata(p).map_err(|source| RestoreError::Io {
            what: format!("cannot read {}", p.display()),
            source,
        })
    };
    let data = meta(data_dir)?;
    let parent = data_dir.parent().unwrap_or(Path::new("/"));
    if meta(parent)?.dev() != data.dev() {
        return Err(RestoreError::NotRenamable {
            dir: data_dir.to_owned(),
            why:
                "it is a mount point; keep the data directory inside a filesystem, not at its root"
                    .into(),
        });
    }
    if meta(state_dir)?.dev() != data.dev() {
        return Err(RestoreError::NotRenamable {
            dir: data_dir.to_owned(),
            why: format!(
                "barkeep's state directory {} is on another filesystem; they must share one so \
                 that setting the data directory aside is a rename, not a copy",
                state_dir.display()
            ),
        });
    }
    Ok(())
}

/// A kept pre-restore data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreRestoreDir {
    pub restore_id: String,
    pub path: PathBuf,
    pub bytes: u64,
}

/// Bytes under `dir` (files as allocated on disk), not following symlinks.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Whether Barman's (or rsync's, or gzip's) output says the disk was full.
pub fn says_disk_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("ENOSPC")
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_a_person_reads_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(64 << 20), "64.0 MiB");
        assert_eq!(human(3 * (1 << 30) / 2), "1.5 GiB");
    }

    #[test]
    fn disk_full_is_recognised_in_barman_output() {
        assert!(says_disk_full("gzip: stdout: No space left on device"));
        assert!(says_disk_full(
            "rsync: [receiver] write failed on \"/x/base/1/1249\": No space left on device (28)"
        ));
        assert!(!says_disk_full(
            "ERROR: The requested target time is before"
        ));
    }

    #[test]
    fn a_mount_point_or_another_filesystem_cannot_be_renamed() {
        // /proc is a mount point on every Linux machine.
        let e = check_renamable(Path::new("/proc"), Path::new("/"));
        assert!(matches!(e, Err(RestoreError::NotRenamable { .. })), "{e:?}");
        let d = tempfile::tempdir().expect("tempdir");
        let data = d.path().join("data");
        std::fs::create_dir(&data).expect("mkdir");
        check_renamable(&data, d.path()).expect("same filesystem");
    }
}
