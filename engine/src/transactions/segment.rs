//! One WAL segment, summarised: what each transaction did in it (rows per relation, its first
//! record, its locks) and the transactions that ended in it, in WAL order. A summary is small (a few
//! numbers per transaction) and never changes for an archived segment, so it is what the
//! engine caches instead of the segment or pg_waldump's text (which can be larger than the
//! segment itself).
//!
//! Segments are decoded by `pg_waldump` (all resource managers, TZ=UTC), several consecutive
//! ones in one pass, on uncompressed copies that keep their names (see `waldump`), with the next
//! segment staged too so that a record crossing a boundary is read whole. Its output is read
//! line by line as it comes: nothing holds the whole text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::record::{RecordKind, RowChange, WalRecord};
use super::{parse_record, Lsn, RelFile, RowCounts};
use crate::process::Program;
use crate::wal::WalSegment;
use crate::waldump::stage_into;
use crate::window::{blocking, WindowError};

/// How long one pg_waldump run (a few segments) may take.
const SEGMENT_TIMEOUT: Duration = Duration::from_secs(600);

/// What one transaction did inside one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub rows: BTreeMap<RelFile, RowCounts>,
    /// Its first record here.
    pub first_lsn: Option<Lsn>,
    /// It took an ACCESS EXCLUSIVE lock here.
    pub locked: bool,
}

impl Fragment {
    pub fn merge(&mut self, other: Fragment) {
        for (rel, c) in other.rows {
            *self.rows.entry(rel).or_default() += c;
        }
        self.first_lsn = match (self.first_lsn, other.first_lsn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.locked |= other.locked;
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
        if !matches!(record.kind, RecordKind::End { .. }) {
            let f = self.fragments.entry(record.xid).or_default();
            f.first_lsn = Some(f.first_lsn.map_or(record.lsn, |l| l.min(record.lsn)));
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
            // Files created say nothing a person looks for that rows and the catalog do not.
            RecordKind::FileCreated(_) => {}
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
            RecordKind::Locked => {
                self.fragments.entry(record.xid).or_default().locked = true;
            }
            RecordKind::Other => {}
        }
    }
}

/// The size of a WAL segment (PostgreSQL's default, which barkeep assumes everywhere).
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// The segment a record starts in.
fn index_of(lsn: Lsn) -> u64 {
    lsn.0 / SEGMENT_BYTES
}

/// What one pg_waldump run over consecutive segments found.
#[derive(Debug)]
pub struct RunSummaries {
    /// Per segment of the run, in order: its summary, `None` when its file was gone (the run
    /// stops before it; the caller tries the rest again).
    pub summaries: Vec<(WalSegment, Option<SegmentSummary>)>,
    /// The next segment was not there: the last segment's last record may continue into it,
    /// so its summary may miss that record until it is read again with the next segment.
    pub cut_at_end: bool,
}

/// Summarises consecutive segments of one timeline (`run`, each with its file, gzip or plain)
/// in ONE pg_waldump pass, with `next` (the segment after the last, when Barman has it) staged
/// too: a record that crosses from one segment into the next is read whole and counted in the
/// segment it starts in. (pg_waldump on a single segment loses such a record: it cannot finish
/// it at the end, and skips its continuation at the start of the next.) `runs` counts
/// pg_waldump runs.
pub async fn summarise_run(
    run: &[(WalSegment, PathBuf)],
    next: Option<(WalSegment, PathBuf)>,
    pg_bin_dir: &Path,
    runs: &AtomicU64,
) -> Result<RunSummaries, WindowError> {
    let Some((first, _)) = run.first().cloned() else {
        return Ok(RunSummaries {
            summaries: Vec::new(),
            cut_at_end: false,
        });
    };
    let files: Vec<(WalSegment, PathBuf)> = run.iter().cloned().chain(next).collect();
    let (dir, staged) = blocking("archived WAL segments", move || {
        let dir = tempfile::tempdir().map_err(|source| WindowError::Segment {
            path: std::env::temp_dir(),
            source,
        })?;
        // Up to the first file that is gone: pg_waldump reads on while the names follow.
        let mut staged = Vec::new();
        for (segment, path) in &files {
            if stage_into(dir.path(), *segment, path)?.is_none() {
                break;
            }
            staged.push(*segment);
        }
        Ok::<_, WindowError>((dir, staged))
    })
    .await??;
    let in_run = |s: &WalSegment| run.iter().any(|(r, _)| r == s);
    let decoded: Vec<WalSegment> = staged.iter().copied().filter(in_run).collect();
    let mut summaries: Vec<(WalSegment, Option<SegmentSummary>)> = run
        .iter()
        .map(|(s, _)| (*s, decoded.contains(s).then(SegmentSummary::default)))
        .collect();
    if decoded.is_empty() {
        close(dir).await;
        return Ok(RunSummaries {
            summaries,
            cut_at_end: false,
        });
    }
    runs.fetch_add(1, Ordering::Relaxed);
    let first_index = first.index();
    // STARTSEG and ENDSEG: without ENDSEG pg_waldump stops at the end of STARTSEG.
    let last_staged = staged.last().copied().unwrap_or(first);
    let result = Program::new(pg_bin_dir.join("pg_waldump"), SEGMENT_TIMEOUT)
        .arg(dir.path().join(first.to_string()))
        .arg(dir.path().join(last_staged.to_string()))
        .env("TZ", "UTC")
        .run_lines(&mut |line| {
            let Some(r) = parse_record(line) else { return };
            let Some(at) = index_of(r.lsn).checked_sub(first_index) else {
                return;
            };
            // Records of the staged next segment are that segment's, read on its own turn.
            if let Some((_, Some(summary))) = summaries.get_mut(at as usize) {
                summary.push(r);
            }
        })
        .await;
    close(dir).await;
    // pg_waldump exits 1 at the end of the WAL it has: what it printed is still good.
    result?;
    // Without the next segment, the last record may go on into it: read again once it is there.
    let cut_at_end = staged.last() == decoded.last();
    Ok(RunSummaries {
        summaries,
        cut_at_end,
    })
}

/// Removes a staging directory (16 MiB a segment) off the async threads.
async fn close(dir: tempfile::TempDir) {
    if let Err(e) = tokio::task::spawn_blocking(move || dir.close()).await {
        tracing::warn!(error = %e, "removing temporary WAL copies failed");
    }
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
