//! Listing the transactions of a time range from the WAL Barman holds (archived and still in
//! incoming/), each with what it did and the names of the tables it touched.
//!
//! Which segments: at each WAL position the highest timeline's copy (the history the running
//! cluster follows after a restore), from the last segment that reached Barman before the
//! range began (it holds the range's first records) to the first one that reached it after the
//! range ended. A transaction that began before that first segment is listed, but rows it wrote
//! earlier are not counted (`partial_before` names that first segment).
//!
//! Every segment is summarised once ([`TransactionLog`]): an archived segment by its name and
//! size, one still in incoming/ by its size and mtime. Segments nobody has read yet are read in
//! runs of consecutive ones, one pg_waldump pass each (see `segment::summarise_run`); a summary
//! made without the next segment is read once more when that segment arrives. Summaries are
//! kept in memory (bounded), so listing the same hour again, or a wider range around it, reads
//! no segment again.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{self, Names, RelationName};
use super::segment::{summarise_run, SegmentSummary};
use super::{suspicious, Collector, Effect, RelFile, RowCounts, Transaction};
use crate::catalog::Catalog;
use crate::restore::RestoreError;
use crate::target::{RestoreTarget, Side, TargetTime, TransactionTarget};
use crate::wal::WalSegment;
use crate::window::{blocking, segment_files, Candidate, SegmentKey, WindowError};
use crate::Engine;

/// How many summaries the log keeps (a day of WAL at one segment a minute is 1,440).
const MEMO_LIMIT: usize = 2048;
/// The most segments one pg_waldump pass reads (each is staged uncompressed: 16 MiB).
const MAX_RUN: usize = 8;
/// How many of the largest deletes count as suspicious.
pub const LARGEST_DELETES: usize = 20;

/// One transaction, as the wizard and the CLI show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionView {
    pub xid: u32,
    pub committed: bool,
    /// Commit (or abort) time, UTC.
    pub ended_at: DateTime<Utc>,
    /// LSN of the commit (or abort) record.
    pub end_lsn: String,
    /// LSN of its first record in the WAL read.
    pub begin_lsn: Option<String>,
    /// It took an ACCESS EXCLUSIVE lock (DROP, TRUNCATE, ALTER TABLE, ...).
    pub locked: bool,
    /// One line a person reads: `14:03:07 UTC, xid 1234: DELETE 5,000 rows from orders`.
    pub line: String,
    pub effects: Vec<EffectView>,
    pub rows_deleted: u64,
    /// Among the drops, truncates and largest deletes of the range.
    pub suspicious: bool,
}

/// What a transaction did to relations, with their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EffectView {
    Rows {
        relation: RelationName,
        counts: RowCounts,
    },
    TruncateOrRewrite {
        relations: Vec<RelationName>,
    },
    Drop {
        relations: Vec<RelationName>,
    },
    Ddl,
}

/// The transactions that ended in `[from, to]`, in the order they ended (WAL order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionList {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub transactions: Vec<TransactionView>,
    /// Segments read for the range, and how many of them pg_waldump had to decode now (the
    /// rest came from the log's memory).
    pub segments: usize,
    pub decoded: usize,
    /// The first segment read: rows written before it by a transaction still open at its start
    /// are not counted.
    pub partial_before: Option<String>,
    /// The last transaction end in the WAL Barman holds (later ones are still in PostgreSQL's
    /// pg_wal, not archived yet: `switch-wal` sends them).
    pub last_archived_end: Option<DateTime<Utc>>,
}

impl TransactionList {
    pub fn find(&self, xid: u32) -> Option<&TransactionView> {
        self.transactions.iter().find(|t| t.xid == xid)
    }
}

/// The per-segment memory of summaries (see the module documentation). Cheap to clone.
#[derive(Clone, Default)]
pub struct TransactionLog {
    inner: Arc<LogInner>,
}

#[derive(Default)]
struct LogInner {
    /// One listing at a time: two people listing the same hour decode it once.
    memo: tokio::sync::Mutex<HashMap<SegmentKey, Memo>>,
    runs: AtomicU64,
}

impl TransactionLog {
    /// How many times pg_waldump ran for listings (for tests and the bench).
    pub fn waldump_runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }

    /// Transaction `xid` in the segments summarised so far, as a target on `side`: its end
    /// record (on the highest timeline where it ends on several: a restore to after it replays
    /// it again), its first record and whether it locked tables, and the transactions that
    /// committed while it ran.
    async fn find(&self, xid: u32, side: Side) -> Option<(TransactionTarget, Vec<u32>)> {
        let memo = self.inner.memo.lock().await;
        let (tli, end) = memo
            .iter()
            .flat_map(|(k, m)| {
                m.summary
                    .ends
                    .iter()
                    .filter(|e| e.xid == xid)
                    .map(move |e| (k.segment().timeline, e))
            })
            .max_by_key(|(tli, e)| (*tli, e.lsn))
            .map(|(t, e)| (t, e.clone()))?;
        // Where it began and whether it locked, from its own and its subtransactions' records.
        let (mut first, mut locked) = (None::<super::Lsn>, false);
        for (_, m) in memo.iter().filter(|(k, _)| k.segment().timeline == tli) {
            for f in std::iter::once(&xid)
                .chain(&end.subxacts)
                .filter_map(|x| m.summary.fragments.get(x))
            {
                first = match (first, f.first_lsn) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                locked |= f.locked;
            }
        }
        let begin = first.filter(|b| *b < end.lsn);
        let during: Vec<u32> = match begin {
            Some(b) => {
                let mut v: Vec<u32> = memo
                    .iter()
                    .filter(|(k, _)| k.segment().timeline == tli)
                    .flat_map(|(_, m)| m.summary.ends.iter())
                    .filter(|e| e.committed && e.lsn > b && e.lsn < end.lsn)
                    .map(|e| e.xid)
                    .collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            None => Vec::new(),
        };
        Some((
            TransactionTarget {
                xid,
                side,
                ended_at: TargetTime::new(end.at),
                end_lsn: end.lsn,
                begin_lsn: begin,
                locked,
            },
            during,
        ))
    }

    /// The transactions that ended in `[from, to]`, named with `names`.
    pub async fn list(
        &self,
        catalog: &Catalog,
        pg_bin_dir: &Path,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        names: &Names,
    ) -> Result<TransactionList, WindowError> {
        let all = arrivals(catalog);
        let chosen = in_range(&all, from, to);
        let partial_before = chosen.first().map(|c| c.segment.to_string());
        // The segment after one, where Barman has it: a record may cross into it.
        let successor = |c: &Candidate| {
            all.iter()
                .map(|a| &a.candidate)
                .find(|n| follows(&c.segment, &n.segment))
                .map(|n| (n.segment, n.path.clone()))
        };
        let keyed: Vec<(SegmentKey, Candidate)> = blocking("WAL segment files", {
            let chosen = chosen.clone();
            move || {
                chosen
                    .into_iter()
                    // An incoming file gone meanwhile (moved by `barman cron`) is skipped.
                    .filter_map(|c| SegmentKey::of(&c, file_identity(&c)).map(|k| (k, c)))
                    .collect::<Vec<_>>()
            }
        })
        .await?;
        let mut memo = self.inner.memo.lock().await;
        // A summary cut at its end is read again once the next segment is there.
        let known = |memo: &HashMap<SegmentKey, Memo>, (k, c): &(SegmentKey, Candidate)| {
            memo.get(k)
                .filter(|m| !(m.cut_at_end && successor(c).is_some()))
                .map(|m| m.summary.clone())
        };
        let mut collector = Collector::default();
        let mut ended = Vec::new();
        let (mut segments, mut decoded) = (0, 0);
        let mut i = 0;
        while i < keyed.len() {
            let mut batch: Vec<Option<Arc<SegmentSummary>>> = Vec::new();
            if let Some(summary) = known(&memo, &keyed[i]) {
                batch.push(Some(summary));
            } else {
                // Consecutive segments nobody has read yet: one pg_waldump pass.
                let mut j = i + 1;
                while j < keyed.len()
                    && j - i < MAX_RUN
                    && follows(&keyed[j - 1].1.segment, &keyed[j].1.segment)
                    && known(&memo, &keyed[j]).is_none()
                {
                    j += 1;
                }
                let run: Vec<(WalSegment, std::path::PathBuf)> = keyed[i..j]
                    .iter()
                    .map(|(_, c)| (c.segment, c.path.clone()))
                    .collect();
                let next = successor(&keyed[j - 1].1);
                let out = summarise_run(&run, next, pg_bin_dir, &self.inner.runs).await?;
                let last = out.summaries.len().saturating_sub(1);
                for (n, ((_, summary), (key, _))) in
                    out.summaries.into_iter().zip(&keyed[i..j]).enumerate()
                {
                    // A file gone meanwhile (retention) has nothing to say.
                    let summary = summary.map(Arc::new);
                    if let Some(s) = &summary {
                        decoded += 1;
                        remember(
                            &mut memo,
                            key.clone(),
                            Memo {
                                summary: s.clone(),
                                cut_at_end: n == last && out.cut_at_end,
                            },
                        );
                    }
                    batch.push(summary);
                }
            }
            i += batch.len().max(1);
            for summary in batch.into_iter().flatten() {
                segments += 1;
                ended.extend(
                    collector
                        .absorb(&summary)
                        .into_iter()
                        .filter(|t| t.ended_at >= from && t.ended_at <= to),
                );
            }
        }
        Ok(TransactionList {
            from,
            to,
            transactions: views(&ended, names),
            segments,
            decoded,
            partial_before,
            last_archived_end: None,
        })
    }
}

/// `next` is the segment right after `segment` on its timeline.
fn follows(segment: &WalSegment, next: &WalSegment) -> bool {
    next.timeline == segment.timeline && next.index() == segment.index() + 1
}

/// One segment's summary as the log keeps it.
#[derive(Clone)]
struct Memo {
    summary: Arc<SegmentSummary>,
    /// Its last record went on into a segment that was not there yet (see `summarise_run`).
    cut_at_end: bool,
}

/// Keeps `summary`, forgetting the lowest positions beyond [`MEMO_LIMIT`].
fn remember(memo: &mut HashMap<SegmentKey, Memo>, key: SegmentKey, summary: Memo) {
    memo.insert(key, summary);
    if memo.len() > MEMO_LIMIT {
        let mut keys: Vec<SegmentKey> = memo.keys().cloned().collect();
        keys.sort_by_key(|k| (k.segment().index(), k.segment().timeline));
        for k in keys.iter().take(memo.len() - MEMO_LIMIT) {
            memo.remove(k);
        }
    }
}

/// Size and mtime of a file in incoming/ (archived segments are known by name and size).
fn file_identity(c: &Candidate) -> Option<(u64, std::time::SystemTime)> {
    let meta = std::fs::metadata(&c.path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// A segment with when it reached Barman.
#[derive(Debug, Clone)]
struct Arrived {
    candidate: Candidate,
    at: DateTime<Utc>,
}

/// Every segment Barman holds, by position, the highest timeline at each; an archived copy
/// before one still in incoming/.
fn arrivals(catalog: &Catalog) -> Vec<Arrived> {
    let mut all: Vec<Arrived> = segment_files(catalog)
        .into_iter()
        .map(|(candidate, at)| Arrived { candidate, at })
        .collect();
    // Stable: at equal positions the highest timeline first, the archived copy before incoming.
    all.sort_by_key(|a| {
        (
            a.candidate.segment.index(),
            std::cmp::Reverse(a.candidate.segment.timeline),
        )
    });
    all.dedup_by_key(|a| a.candidate.segment.index());
    all
}

/// The segments whose records may end in `[from, to]`: from the last to reach Barman before
/// `from` to the first to reach it after `to`.
fn in_range(all: &[Arrived], from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Candidate> {
    let first = all.iter().rposition(|a| a.at < from).unwrap_or(0);
    let last = all
        .iter()
        .position(|a| a.at > to)
        .unwrap_or(all.len().saturating_sub(1));
    all.get(first..=last.max(first))
        .unwrap_or_default()
        .iter()
        .map(|a| a.candidate.clone())
        .collect()
}

fn views(ended: &[Transaction], names: &Names) -> Vec<TransactionView> {
    let picked: std::collections::HashSet<(u32, super::Lsn)> = suspicious(ended, LARGEST_DELETES)
        .iter()
        .map(|t| (t.xid, t.end_lsn))
        .collect();
    ended
        .iter()
        .map(|t| {
            let effects = t
                .effects()
                .into_iter()
                .map(|e| match e {
                    Effect::Rows { rel, counts } => EffectView::Rows {
                        relation: names.of(&rel),
                        counts,
                    },
                    Effect::TruncateOrRewrite { dropped } => EffectView::TruncateOrRewrite {
                        relations: user_names(&dropped, names),
                    },
                    Effect::Drop { dropped } => EffectView::Drop {
                        relations: user_names(&dropped, names),
                    },
                    Effect::Ddl => EffectView::Ddl,
                })
                .collect();
            TransactionView {
                xid: t.xid,
                committed: t.committed,
                ended_at: t.ended_at,
                end_lsn: t.end_lsn.to_string(),
                begin_lsn: t.begin_lsn.map(|l| l.to_string()),
                locked: t.locked,
                line: t.describe(|r| names.of(r)),
                effects,
                rows_deleted: t.rows_deleted(),
                suspicious: picked.contains(&(t.xid, t.end_lsn)),
            }
        })
        .collect()
}

/// The names of the user relations among `rels` (a DROP also drops its indexes and TOAST
/// files: the ones with a name come first).
fn user_names(rels: &[RelFile], names: &Names) -> Vec<RelationName> {
    let mut out: Vec<RelationName> = rels
        .iter()
        .filter(|r| !r.is_catalog())
        .map(|r| names.of(r))
        .collect();
    out.sort_by_key(|n| n.name.is_none());
    out
}

impl Engine {
    /// Reads the names of the tables from the running server into the name book.
    pub async fn remember_relation_names(&self) {
        names::read(&self.config().postgres, &self.state_dir().relation_names()).await;
    }

    /// Transaction `xid` as a restore target on `side`, as the WAL Barman holds tells it: from
    /// the segments already summarised (a listing the person just looked at), else from the
    /// whole recovery window.
    pub async fn transaction_target(
        &self,
        xid: u32,
        side: Side,
    ) -> Result<RestoreTarget, RestoreError> {
        Ok(RestoreTarget::Transaction(
            self.transaction_and_concurrent(xid, side).await?.0,
        ))
    }

    /// [`Engine::transaction_target`], with the transactions that committed while it ran (a
    /// "before" stop at its first record leaves them out).
    pub async fn transaction_and_concurrent(
        &self,
        xid: u32,
        side: Side,
    ) -> Result<(TransactionTarget, Vec<u32>), RestoreError> {
        if let Some(found) = self.transaction_log().find(xid, side).await {
            return Ok(found);
        }
        let now = Utc::now();
        let catalog = self.catalog()?;
        let window = self.recovery_window_of(&catalog).await?;
        let from = window.earliest.unwrap_or(now) - chrono::Duration::minutes(1);
        self.transaction_log()
            .list(
                &catalog,
                &self.config().postgres.bin_dir,
                from,
                now,
                &Names::default(),
            )
            .await?;
        self.transaction_log()
            .find(xid, side)
            .await
            .ok_or(RestoreError::UnknownTransaction { xid, from, to: now })
    }

    /// The transactions that ended in `[from, to]` in the WAL Barman holds, named from the
    /// running server's catalog and barkeep's name book.
    pub async fn transactions(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<TransactionList, WindowError> {
        let catalog = self.catalog()?;
        let names = names::read(&self.config().postgres, &self.state_dir().relation_names()).await;
        let mut list = self
            .transaction_log()
            .list(&catalog, &self.config().postgres.bin_dir, from, to, &names)
            .await?;
        list.last_archived_end = self.recovery_window_of(&catalog).await?.latest;
        Ok(list)
    }
}
