//! The recovery window: from the end of the oldest recoverable backup to the last COMMIT in
//! archived WAL (docs/barman.md: not "now", not a segment's mtime). The last commit
//! is read with pg_waldump (run with TZ=UTC) on the newest segments, walking back until one
//! holds a commit: forced switches and backups leave segments without any.
//!
//! Decoding a segment costs a file read, a gunzip, a 16 MiB temporary file and a pg_waldump run,
//! so the engine reads the window through one [`WindowCache`]:
//! - the answer is kept per [`WindowKey`] (the earliest recoverable backup and the newest
//!   segment file), and computed ONCE for all concurrent callers (one computation at a time;
//!   whoever waited finds the answer ready);
//! - what each segment holds is memoised per [`SegmentKey`], so a segment is decoded at most once:
//!   an archived segment never changes (Barman never rewrites one), a file still in incoming/ is
//!   known by its size and mtime (archive_command may still be copying it);
//! - all file I/O runs on tokio's blocking threads, never on the async ones.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, CatalogError};
use crate::wal::WalSegment;
use crate::waldump::{decode, Decoded};

mod cache;
pub use cache::{SegmentKey, WindowCache, WindowKey};

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("cannot read the archived WAL segment {path}: {source}")]
    Segment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Waldump(#[from] crate::process::ProcessError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A blocking task panicked or was cancelled (a bug, or the runtime shutting down).
    #[error("reading {what} stopped unexpectedly: {message}")]
    Task { what: &'static str, message: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryWindow {
    /// End of the oldest recoverable backup.
    pub earliest: Option<DateTime<Utc>>,
    /// Last transaction (commit or abort) in archived WAL; a target must lie before it.
    pub latest: Option<DateTime<Utc>>,
    /// The segment that holds it.
    pub latest_segment: Option<String>,
}

/// How far back to look for a segment with a transaction in it.
const MAX_SEGMENTS_BACK: usize = 32;

/// Where a candidate segment file lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Location {
    /// In Barman's `wals/` (gzip), with the compressed size xlog.db records.
    Archived { size: u64 },
    /// In `incoming/`, copied there by archive_command and not yet processed by `barman cron`.
    Incoming,
}

/// A segment file that may hold the last transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub segment: WalSegment,
    pub path: PathBuf,
    pub location: Location,
}

/// Every segment file Barman holds, archived ones (in xlog.db order) before those still in
/// incoming/, each with when it reached Barman. The one place that knows where they lie.
pub fn segment_files(catalog: &Catalog) -> Vec<(Candidate, DateTime<Utc>)> {
    catalog
        .archived
        .iter()
        .filter_map(|w| {
            w.segment().map(|segment| {
                let c = Candidate {
                    segment,
                    path: catalog.segment_path(&segment),
                    location: Location::Archived { size: w.size },
                };
                (c, w.time)
            })
        })
        .chain(catalog.incoming.iter().filter_map(|p| {
            WalSegment::parse(&p.name).map(|segment| {
                let c = Candidate {
                    segment,
                    path: catalog.server_home.join("incoming").join(&p.name),
                    location: Location::Incoming,
                };
                (c, p.time)
            })
        }))
        .collect()
}

/// The segments to look at, newest first (by position; the highest timeline wins a tie; an
/// archived copy wins over one still in incoming/), at most [`MAX_SEGMENTS_BACK`] of them.
pub fn candidates(catalog: &Catalog) -> Vec<Candidate> {
    let mut all: Vec<Candidate> = segment_files(catalog).into_iter().map(|(c, _)| c).collect();
    // Stable: for equal segments the archived entry (listed first) stays first.
    all.sort_by_key(|c| std::cmp::Reverse((c.segment.index(), c.segment.timeline)));
    all.dedup_by_key(|c| c.segment);
    all.truncate(MAX_SEGMENTS_BACK);
    all
}

/// The recovery window of `catalog`, computed now without any cache (each call decodes the
/// segments it walks). The engine's [`WindowCache`] gives the same answer.
pub async fn recovery_window(
    catalog: &Catalog,
    pg_bin_dir: &Path,
) -> Result<RecoveryWindow, WindowError> {
    let earliest = catalog.earliest_recoverable();
    for c in candidates(catalog) {
        if let Decoded::Ran(Some(t)) = decode(c.segment, &c.path, pg_bin_dir, None).await? {
            return Ok(RecoveryWindow {
                earliest,
                latest: Some(t),
                latest_segment: Some(c.segment.to_string()),
            });
        }
    }
    Ok(RecoveryWindow {
        earliest,
        latest: None,
        latest_segment: None,
    })
}

/// Runs blocking work on tokio's blocking threads.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, WindowError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| task_error(what, e))
}

pub(crate) fn task_error(what: &'static str, e: tokio::task::JoinError) -> WindowError {
    WindowError::Task {
        what,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{ArchivedWal, PendingWal};

    pub(super) fn archived(name: &str, size: u64) -> ArchivedWal {
        ArchivedWal {
            name: name.into(),
            size,
            time: Utc::now(),
            compression: Some("gzip".into()),
        }
    }

    pub(super) fn catalog(archived: Vec<ArchivedWal>, incoming: &[&str]) -> Catalog {
        Catalog {
            server_home: PathBuf::from("/barman/pg"),
            backups: vec![],
            unreadable_backups: vec![],
            archived,
            incoming: incoming
                .iter()
                .map(|n| PendingWal {
                    name: (*n).into(),
                    time: Utc::now(),
                })
                .collect(),
            errors: vec![],
            identity: None,
        }
    }

    pub(super) fn seg(name: &str) -> WalSegment {
        WalSegment::parse(name).expect("a segment name")
    }

    #[test]
    fn candidates_are_newest_first_archived_before_incoming_and_bounded() {
        let mut wals: Vec<ArchivedWal> = (1..=40u32)
            .map(|i| archived(&format!("0000000100000000{i:08X}"), 100 + u64::from(i)))
            .collect();
        wals.push(archived("00000001.history", 1));
        wals.push(archived("000000010000000000000002.00000028.backup", 1));
        let c = catalog(
            wals,
            &["000000010000000000000029", "000000010000000000000028"],
        );
        let list = candidates(&c);
        assert_eq!(list.len(), MAX_SEGMENTS_BACK);
        // 0x29 only in incoming: first, from incoming/.
        assert_eq!(list[0].segment, seg("000000010000000000000029"));
        assert_eq!(list[0].location, Location::Incoming);
        assert_eq!(
            list[0].path,
            PathBuf::from("/barman/pg/incoming/000000010000000000000029")
        );
        // 0x28 both archived and in incoming/: the archived copy.
        assert_eq!(list[1].segment, seg("000000010000000000000028"));
        assert_eq!(list[1].location, Location::Archived { size: 140 });
        assert_eq!(
            list[1].path,
            PathBuf::from("/barman/pg/wals/0000000100000000/000000010000000000000028")
        );
        assert!(list
            .windows(2)
            .all(|w| w[0].segment.index() > w[1].segment.index()));
    }

    #[test]
    fn a_higher_timeline_wins_at_the_same_position() {
        let c = catalog(
            vec![
                archived("000000010000000000000005", 1),
                archived("000000020000000000000005", 2),
            ],
            &[],
        );
        assert_eq!(candidates(&c)[0].segment, seg("000000020000000000000005"));
    }
}
