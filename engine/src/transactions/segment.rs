//! One WAL segment, summarised: what each transaction did in it (rows per relation, files
//! created) and the transactions that ended in it, in WAL order. A summary is small (a few
//! numbers per transaction) and never changes for an archived segment, so it is what the
//! engine caches instead of the segment or pg_waldump's text (which can be larger than the
//! segment itself).
//!
//! A segment is decoded by `pg_waldump` (all resource managers, TZ=UTC) on a copy that keeps
//! the segment's name (see `waldump`), and its output is read line by line as it comes:
//! nothing holds the whole text.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::record::{RecordKind, RowChange, WalRecord};
use super::{parse_record, Lsn, RelFile, RowCounts};
use crate::process::Program;
use crate::wal::WalSegment;
use crate::waldump::{stage, Staged};
use crate::window::{blocking, WindowError};

/// How long pg_waldump may take over one whole segment.
const SEGMENT_TIMEOUT: Duration = Duration::from_secs(300);

/// What one transaction did inside one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub rows: BTreeMap<RelFile, RowCounts>,
    pub created: Vec<RelFile>,
}

impl Fragment {
    pub fn merge(&mut self, other: Fragment) {
        for (rel, c) in other.rows {
            *self.rows.entry(rel).or_default() += c;
        }
        self.created.extend(other.created);
    }
}

/// A transaction's end record (COMMIT or ABORT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndRecord {
    pub xid: u32,
    pub lsn: Lsn,
    pub committed: bool,
    pub at: DateTime<Utc>,
    pub dropped: Vec<RelFile>,
    pub subxacts: Vec<u32>,
}

/// A segment's transactions, summarised (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// Per transaction id, what it did in this segment (whether or not it ended here).
    pub fragments: BTreeMap<u32, Fragment>,
    /// The transactions that ended in this segment, in WAL order.
    pub ends: Vec<EndRecord>,
    /// Records read.
    pub records: u64,
}

impl SegmentSummary {
    /// Takes the segment's next record.
    pub fn push(&mut self, record: WalRecord) {
        self.records += 1;
        if record.xid == 0 {
            return;
        }
        match record.kind {
            RecordKind::Rows { change, rel } => {
                let c = self
                    .fragments
                    .entry(record.xid)
                    .or_default()
                    .rows
                    .entry(rel)
                    .or_default();
                match change {
                    RowChange::Inserted(n) => c.inserted += n,
                    RowChange::Updated => c.updated += 1,
                    RowChange::Deleted => c.deleted += 1,
                    // Logical-level TRUNCATE: the files tell it too (dropped at commit).
                    RowChange::Truncated => {}
                }
            }
            RecordKind::FileCreated(rel) => {
                self.fragments
                    .entry(record.xid)
                    .or_default()
                    .created
                    .push(rel);
            }
            RecordKind::End {
                committed,
                at,
                dropped,
                subxacts,
            } => self.ends.push(EndRecord {
                xid: record.xid,
                lsn: record.lsn,
                committed,
                at,
                dropped,
                subxacts,
            }),
            RecordKind::Other => {}
        }
    }
}

/// Summarises one segment file (gzip or plain); `None` when the file is gone (retention, or
/// `barman cron` moved it out of incoming/ meanwhile). `runs` counts pg_waldump runs.
pub async fn summarise(
    segment: WalSegment,
    path: &Path,
    pg_bin_dir: &Path,
    runs: &AtomicU64,
) -> Result<Option<SegmentSummary>, WindowError> {
    let source = path.to_owned();
    let staged = blocking("an archived WAL segment", move || stage(segment, &source)).await??;
    let Some(Staged { dir, file }) = staged else {
        return Ok(None);
    };
    runs.fetch_add(1, Ordering::Relaxed);
    let mut summary = SegmentSummary::default();
    let result = Program::new(pg_bin_dir.join("pg_waldump"), SEGMENT_TIMEOUT)
        .arg(&file)
        .env("TZ", "UTC")
        .run_lines(&mut |line| {
            if let Some(r) = parse_record(line) {
                summary.push(r);
            }
        })
        .await;
    if let Err(e) = tokio::task::spawn_blocking(move || dir.close()).await {
        tracing::warn!(error = %e, "removing a temporary WAL copy failed");
    }
    // pg_waldump exits 1 at the end of a partly filled segment: what it printed is still good.
    let out = result?;
    if summary.records == 0 && !out.stderr.is_empty() {
        tracing::warn!(segment = %segment, stderr = %out.stderr.trim(), "pg_waldump read no record");
    }
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::super::{from_waldump_text, Collector};
    use super::*;

    fn rec(xid: u32, lsn: u64, desc: &str) -> String {
        format!(
            "rmgr: {} len (rec/tot): 54/ 54, tx: {xid:>10}, lsn: 0/{lsn:08X}, prev 0/00000000, desc: {desc}",
            if desc.starts_with("COMMIT") || desc.starts_with("ABORT") {
                "Transaction"
            } else {
                "Heap       "
            }
        )
    }

    fn summary(lines: &[String]) -> SegmentSummary {
        let mut s = SegmentSummary::default();
        lines
            .iter()
            .filter_map(|l| parse_record(l))
            .for_each(|r| s.push(r));
        s
    }

    const DEL: &str = "DELETE off 1 flags 0x00 , blkref #0: rel 1663/5/30000 blk 0";

    #[test]
    fn a_transaction_spanning_segments_is_whole_when_it_ends() {
        // xid 900 deletes in three segments and commits in the third; 901 lives in the second.
        let first = summary(&[rec(900, 0x100, DEL), rec(900, 0x140, DEL)]);
        let second = summary(&[
            rec(900, 0x0100_0100, DEL),
            rec(901, 0x0100_0140, DEL),
            rec(901, 0x0100_0180, "COMMIT 2026-11-28 06:00:00.000001 UTC"),
        ]);
        let third = summary(&[
            rec(900, 0x0200_0100, DEL),
            rec(900, 0x0200_0140, "COMMIT 2026-11-28 06:00:01.5 UTC"),
        ]);
        let mut c = Collector::default();
        assert!(c.absorb(&first).is_empty());
        assert_eq!(c.still_open(), 1);
        let ended = c.absorb(&second);
        assert_eq!(ended.len(), 1);
        assert_eq!((ended[0].xid, ended[0].rows_deleted()), (901, 1));
        let ended = c.absorb(&third);
        assert_eq!((ended[0].xid, ended[0].rows_deleted()), (900, 4));
        assert_eq!(ended[0].end_lsn, Lsn(0x0200_0140));
        assert_eq!(c.still_open(), 0);
    }

    #[test]
    fn a_summary_is_the_same_whole_or_from_text() {
        let lines = [
            rec(900, 0x100, DEL),
            rec(900, 0x140, "COMMIT 2026-11-28 06:00:01.5 UTC"),
            rec(901, 0x180, "ABORT 2026-11-28 06:00:02 UTC"),
        ];
        let direct = Collector::default().absorb(&summary(&lines));
        assert_eq!(direct, from_waldump_text(&lines.join("\n")));
        assert_eq!(direct.len(), 2);
        assert!(!direct[1].committed);
        // A summary survives the cache's serialisation unchanged.
        let s = summary(&lines);
        let json = serde_json::to_string(&s).expect("serialises");
        assert_eq!(
            serde_json::from_str::<SegmentSummary>(&json).expect("reads back"),
            s
        );
    }
}
