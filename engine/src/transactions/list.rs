//! Listing the transactions of a time range from the WAL Barman holds (archived and still in
//! incoming/), each with what it did and the names of the tables it touched.
//!
//! Which segments: at each WAL position the highest timeline's copy (the history the running
//! cluster follows after a restore), from the last segment that reached Barman before the
//! range began (it holds the range's first records) to the first one that reached it after the
//! range ended. A transaction that began before that first segment is listed, but rows it wrote
//! earlier are not counted (the listing says so in `partial_before`).
//!
//! Every segment is summarised once ([`TransactionLog`]): an archived segment by its name and
//! size, one still in incoming/ by its size and mtime. Summaries are kept in memory (bounded),
//! so listing the same hour again, or a wider range around it, reads no segment twice.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::names::{self, Names, RelationName};
use super::segment::{summarise, EndRecord, SegmentSummary};
use super::{suspicious, Collector, Effect, RelFile, RowCounts, Transaction};
use crate::catalog::Catalog;
use crate::restore::RestoreError;
use crate::target::{RestoreTarget, Side, TargetTime, TransactionTarget};
use crate::wal::WalSegment;
use crate::window::{blocking, Candidate, Location, SegmentKey, WindowError};
use crate::Engine;

/// How many summaries the log keeps (a day of WAL at one segment a minute is 1,440).
const MEMO_LIMIT: usize = 2048;
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
    /// The first segment read began after `from`'s transactions may have begun: rows written
    /// before it by a transaction still open then are not counted.
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
    memo: tokio::sync::Mutex<HashMap<SegmentKey, Arc<SegmentSummary>>>,
    runs: AtomicU64,
}

impl TransactionLog {
    /// How many times pg_waldump ran for listings (for tests and the bench).
    pub fn waldump_runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }

    /// The end record of transaction `xid` in the segments summarised so far: on the highest
    /// timeline where it ends on several (a restore to after it replays it again).
    pub async fn find_end(&self, xid: u32) -> Option<EndRecord> {
        let memo = self.inner.memo.lock().await;
        memo.iter()
            .flat_map(|(k, s)| {
                s.ends
                    .iter()
                    .filter(|e| e.xid == xid)
                    .map(move |e| (k.segment().timeline, e))
            })
            .max_by_key(|(tli, e)| (*tli, e.lsn))
            .map(|(_, e)| e.clone())
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
        let chosen = in_range(&arrivals(catalog), from, to);
        let partial_before = chosen.first().map(|c| c.segment.to_string());
        let keys = blocking("WAL segment files", {
            let chosen = chosen.clone();
            move || {
                chosen
                    .iter()
                    .map(|c| SegmentKey::of(c, file_identity(c)).map(|k| (k, c.path.clone())))
                    .collect::<Vec<_>>()
            }
        })
        .await?;
        let mut memo = self.inner.memo.lock().await;
        let before = self.waldump_runs();
        let mut collector = Collector::default();
        let mut ended = Vec::new();
        let mut segments = 0;
        for (key, path) in keys.into_iter().flatten() {
            let summary = match memo.get(&key) {
                Some(s) => s.clone(),
                None => {
                    let Some(s) =
                        summarise(key.segment(), &path, pg_bin_dir, &self.inner.runs).await?
                    else {
                        continue;
                    };
                    let s = Arc::new(s);
                    remember(&mut memo, key.clone(), s.clone());
                    s
                }
            };
            segments += 1;
            ended.extend(
                collector
                    .absorb(&summary)
                    .into_iter()
                    .filter(|t| t.ended_at >= from && t.ended_at <= to),
            );
        }
        let decoded = (self.waldump_runs() - before) as usize;
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

/// Keeps `summary`, forgetting the lowest positions beyond [`MEMO_LIMIT`].
fn remember(
    memo: &mut HashMap<SegmentKey, Arc<SegmentSummary>>,
    key: SegmentKey,
    summary: Arc<SegmentSummary>,
) {
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
    let mut all: Vec<Arrived> = catalog
        .archived
        .iter()
        .filter_map(|w| {
            w.segment().map(|segment| Arrived {
                candidate: Candidate {
                    segment,
                    path: catalog.segment_path(&segment),
                    location: Location::Archived { size: w.size },
                },
                at: w.time,
            })
        })
        .chain(catalog.incoming.iter().filter_map(|p| {
            WalSegment::parse(&p.name).map(|segment| Arrived {
                candidate: Candidate {
                    segment,
                    path: catalog.server_home.join("incoming").join(&p.name),
                    location: Location::Incoming,
                },
                at: p.time,
            })
        }))
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
                line: t.describe(|r| {
                    let n = names.of(r);
                    n.name.is_some().then(|| n.label())
                }),
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
        let target = |end: &EndRecord| {
            RestoreTarget::Transaction(TransactionTarget {
                xid,
                side,
                ended_at: TargetTime::new(end.at),
                end_lsn: end.lsn,
            })
        };
        if let Some(end) = self.transaction_log().find_end(xid).await {
            return Ok(target(&end));
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
        match self.transaction_log().find_end(xid).await {
            Some(end) => Ok(target(&end)),
            None => Err(RestoreError::UnknownTransaction { xid, from, to: now }),
        }
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
