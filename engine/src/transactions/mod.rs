//! The transactions in archived WAL, for finding a mistake: what each one did (rows inserted,
//! updated, deleted per relation; tables truncated or dropped; catalog changes, i.e. DDL),
//! when it committed or aborted, and the LSN of that record, which a restore can stop just
//! before or just after.
//!
//! Built from pg_waldump's text ([`record`]) by a streaming [`Collector`]: records are fed one
//! at a time and a transaction comes out when its COMMIT or ABORT record does; nothing holds
//! more than the transactions still open.
//!
//! What PostgreSQL 14's WAL says, and so what this can tell (measured with pg_waldump 14.23,
//! `pg14-dml-ddl.waldump`):
//! - a row change is a Heap/Heap2 record naming the relation's file (relfilenode), not its name:
//!   names come from the catalog of the running server, mapped by the caller;
//! - TRUNCATE writes no row records (with wal_level=replica): it creates new files, updates
//!   pg_class, and its COMMIT record lists the old files as dropped. A table rewrite
//!   (VACUUM FULL, CLUSTER, some ALTER TABLE) looks the same, so both are reported as
//!   "TRUNCATE or rewrite";
//! - DROP TABLE deletes pg_class rows and its COMMIT record lists the table's files as dropped;
//! - any other write to a system catalog (relfilenode below 16384) is DDL.

pub mod list;
pub mod names;
pub mod record;
pub mod segment;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use list::{TransactionList, TransactionView};
pub use names::RelationName;
use record::PG_CLASS;
pub use record::{parse_record, Lsn, RelFile, RowChange, WalRecord};
use segment::Fragment;
pub use segment::SegmentSummary;

/// Rows one transaction changed in one relation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowCounts {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

impl std::ops::AddAssign for RowCounts {
    fn add_assign(&mut self, other: Self) {
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.deleted += other.deleted;
    }
}

/// One transaction as the WAL tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    pub xid: u32,
    pub committed: bool,
    /// The commit (or abort) time PostgreSQL wrote in the record, UTC.
    pub ended_at: DateTime<Utc>,
    /// The LSN of the commit (or abort) record.
    pub end_lsn: Lsn,
    /// Rows changed, per relation file (catalogs included).
    pub rows: BTreeMap<RelFile, RowCounts>,
    /// Relation files its commit drops (DROP, TRUNCATE, rewrites).
    pub dropped: Vec<RelFile>,
    /// Its first record in the WAL read (None: only its end record was read).
    pub begin_lsn: Option<Lsn>,
    /// It took an ACCESS EXCLUSIVE lock (DROP, TRUNCATE, ALTER TABLE, ...).
    pub locked: bool,
}

/// What a transaction did, in the terms a person looks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    /// Rows changed in a user relation.
    Rows { rel: RelFile, counts: RowCounts },
    /// Files replaced: TRUNCATE, or a rewrite (VACUUM FULL, CLUSTER, ALTER TABLE).
    TruncateOrRewrite { dropped: Vec<RelFile> },
    /// Relations dropped (DROP TABLE, DROP INDEX, ...).
    Drop { dropped: Vec<RelFile> },
    /// Other catalog changes: CREATE, ALTER, GRANT, ...
    Ddl,
}

impl Transaction {
    fn catalog_rows(&self) -> RowCounts {
        let mut sum = RowCounts::default();
        for (_, c) in self.rows.iter().filter(|(rel, _)| rel.is_catalog()) {
            sum += *c;
        }
        sum
    }

    fn pg_class(&self) -> RowCounts {
        self.rows
            .iter()
            .filter(|(rel, _)| rel.relfilenode == PG_CLASS)
            .map(|(_, c)| *c)
            .next()
            .unwrap_or_default()
    }

    /// What it did, user relations' rows first (by relation), then files and DDL.
    pub fn effects(&self) -> Vec<Effect> {
        let mut effects: Vec<Effect> = self
            .rows
            .iter()
            .filter(|(rel, _)| !rel.is_catalog())
            .map(|(rel, counts)| Effect::Rows {
                rel: *rel,
                counts: *counts,
            })
            .collect();
        let pg_class = self.pg_class();
        if !self.dropped.is_empty() {
            let dropped = self.dropped.clone();
            effects.push(if pg_class.deleted > 0 {
                Effect::Drop { dropped }
            } else {
                Effect::TruncateOrRewrite { dropped }
            });
        } else if self.catalog_rows() != RowCounts::default() {
            effects.push(Effect::Ddl);
        }
        effects
    }

    /// Rows it deleted from user relations.
    pub fn rows_deleted(&self) -> u64 {
        self.rows
            .iter()
            .filter(|(rel, _)| !rel.is_catalog())
            .map(|(_, c)| c.deleted)
            .sum()
    }

    /// It dropped or truncated something.
    pub fn destroys_relations(&self) -> bool {
        self.effects()
            .iter()
            .any(|e| matches!(e, Effect::Drop { .. } | Effect::TruncateOrRewrite { .. }))
    }

    /// One line a person reads: `05:25:40 UTC, xid 745: DELETE 2 rows from orders`. `name`
    /// says what is known of a relation file (rows written to one gone from the catalog read
    /// `orders (since dropped or truncated)`: [`RelationName::label`]).
    pub fn describe(&self, name: impl Fn(&RelFile) -> RelationName) -> String {
        // A drop or truncate also drops indexes and TOAST files: the named ones first, the
        // others counted.
        let rels = |v: &[RelFile]| {
            let v: Vec<RelationName> = v.iter().filter(|r| !r.is_catalog()).map(&name).collect();
            let named: Vec<&str> = v.iter().filter_map(|n| n.name.as_deref()).collect();
            if named.is_empty() {
                return v
                    .iter()
                    .map(RelationName::label)
                    .collect::<Vec<_>>()
                    .join(", ");
            }
            match v.len() - named.len() {
                0 => named.join(", "),
                1 => format!("{} (and 1 other file)", named.join(", ")),
                n => format!("{} (and {n} other files)", named.join(", ")),
            }
        };
        let rows = |n: u64| {
            if n == 1 {
                "1 row".to_owned()
            } else {
                format!("{} rows", thousands(n))
            }
        };
        let parts: Vec<String> = self
            .effects()
            .iter()
            .flat_map(|e| match e {
                Effect::Rows { rel: r, counts } => [
                    (counts.deleted, "DELETE", "from"),
                    (counts.updated, "UPDATE", "in"),
                    (counts.inserted, "INSERT", "into"),
                ]
                .into_iter()
                .filter(|(n, _, _)| *n > 0)
                .map(|(n, what, prep)| format!("{what} {} {prep} {}", rows(n), name(r).label()))
                .collect::<Vec<_>>(),
                Effect::TruncateOrRewrite { dropped } => {
                    vec![format!("TRUNCATE or rewrite of {}", rels(dropped))]
                }
                Effect::Drop { dropped } => vec![format!("DROP of {}", rels(dropped))],
                Effect::Ddl => vec!["DDL (catalog changes)".to_owned()],
            })
            .collect();
        format!(
            "{} UTC, xid {}{}: {}",
            self.ended_at.format("%H:%M:%S"),
            self.xid,
            if self.committed { "" } else { " (aborted)" },
            if parts.is_empty() {
                "no row or catalog change".to_owned()
            } else {
                parts.join("; ")
            }
        )
    }
}

/// `5000` as `5,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The transactions a person looks at first: every committed one that dropped or truncated
/// something, and the `largest` committed ones by rows deleted, in the order they committed.
pub fn suspicious(all: &[Transaction], largest: usize) -> Vec<&Transaction> {
    let mut deletes: Vec<&Transaction> = all
        .iter()
        .filter(|t| t.committed && t.rows_deleted() > 0)
        .collect();
    deletes.sort_by_key(|t| std::cmp::Reverse(t.rows_deleted()));
    deletes.truncate(largest);
    let mut picked: Vec<&Transaction> = all
        .iter()
        .filter(|t| t.committed && t.destroys_relations())
        .chain(deletes)
        .collect();
    picked.sort_by_key(|t| (t.end_lsn, t.xid));
    picked.dedup_by_key(|t| t.xid);
    picked
}

/// Turns the segments' summaries, fed in WAL order, into transactions as they end. What a
/// transaction did in earlier segments is carried until its end record comes: a transaction
/// may span any number of segments.
#[derive(Default)]
pub struct Collector {
    open: HashMap<u32, Fragment>,
}

impl Collector {
    /// Takes the next segment's summary; returns the transactions that ended in it, in WAL
    /// order.
    pub fn absorb(&mut self, summary: &SegmentSummary) -> Vec<Transaction> {
        for (xid, f) in &summary.fragments {
            self.open.entry(*xid).or_default().merge(f.clone());
        }
        summary
            .ends
            .iter()
            .map(|end| {
                let mut done = self.open.remove(&end.xid).unwrap_or_default();
                // A subtransaction's records carry its own xid; they belong to this one.
                for sub in &end.subxacts {
                    if let Some(s) = self.open.remove(sub) {
                        done.merge(s);
                    }
                }
                Transaction {
                    xid: end.xid,
                    committed: end.committed,
                    ended_at: end.at,
                    end_lsn: end.lsn,
                    rows: done.rows,
                    dropped: end.dropped.clone(),
                    begin_lsn: done.first_lsn,
                    locked: done.locked,
                }
            })
            .collect()
    }

    /// Transactions still open (begun in the WAL read, not ended in it).
    pub fn still_open(&self) -> usize {
        self.open.len()
    }
}

/// Every transaction that ends in `text` (pg_waldump's output), in WAL order.
pub fn from_waldump_text(text: &str) -> Vec<Transaction> {
    let mut summary = SegmentSummary::default();
    text.lines()
        .filter_map(parse_record)
        .for_each(|r| summary.push(r));
    Collector::default().absorb(&summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pg_waldump 14.23's output for: CREATE TABLE fixture_t; INSERT 5 rows; UPDATE 1; DELETE
    /// 2; an INSERT rolled back; CREATE TABLE fixture_copy AS (3 rows); COPY 11 rows into
    /// fixture_t; TRUNCATE fixture_copy; DROP TABLE fixture_copy (xids 742 to 750).
    const FIXTURE: &str = include_str!("pg14-dml-ddl.waldump");
    const FIXTURE_T: u32 = 24576;
    const FIXTURE_COPY: u32 = 24583;

    fn by_xid(all: &[Transaction], xid: u32) -> &Transaction {
        all.iter()
            .find(|t| t.xid == xid)
            .unwrap_or_else(|| panic!("no xid {xid}"))
    }

    fn name(r: &RelFile) -> RelationName {
        let (name, gone) = match r.relfilenode {
            FIXTURE_T => (Some("fixture_t".into()), false),
            FIXTURE_COPY => (Some("fixture_copy".into()), true),
            _ => (None, true),
        };
        RelationName {
            relfilenode: r.relfilenode,
            name,
            gone,
        }
    }

    #[test]
    fn every_transaction_of_the_fixture_is_found_with_what_it_did() {
        let all = from_waldump_text(FIXTURE);
        assert_eq!(
            all.iter().map(|t| t.xid).collect::<Vec<_>>(),
            (742..=750).collect::<Vec<_>>()
        );
        assert!(all.windows(2).all(|w| w[0].end_lsn < w[1].end_lsn));
        let line = |xid| by_xid(&all, xid).describe(name);
        assert!(
            line(742).ends_with("xid 742: DDL (catalog changes)"),
            "{}",
            line(742)
        );
        assert!(
            line(743).ends_with("xid 743: INSERT 5 rows into fixture_t"),
            "{}",
            line(743)
        );
        assert!(
            line(744).ends_with("xid 744: UPDATE 1 row in fixture_t"),
            "{}",
            line(744)
        );
        assert!(
            line(745).ends_with("xid 745: DELETE 2 rows from fixture_t"),
            "{}",
            line(745)
        );
        assert!(
            line(746).contains("xid 746 (aborted): INSERT 1 row"),
            "{}",
            line(746)
        );
        assert!(
            line(747).contains("INSERT 3 rows into fixture_copy (since dropped or truncated); DDL"),
            "{}",
            line(747)
        );
        assert!(
            line(748).ends_with("INSERT 11 rows into fixture_t"),
            "{}",
            line(748)
        );
        assert!(
            line(749).contains("TRUNCATE or rewrite of ") && line(749).contains("fixture_copy"),
            "{}",
            line(749)
        );
        assert!(line(750).contains("DROP of "), "{}", line(750));
        // The DROP locked its table from its first record on; a DELETE locks no table.
        let drop = by_xid(&all, 750);
        assert!(drop.locked);
        assert_eq!(drop.begin_lsn, Lsn::parse("0/050237F0"));
        assert!(!by_xid(&all, 745).locked);
        assert!(by_xid(&all, 745).begin_lsn < Some(by_xid(&all, 745).end_lsn));
        assert_eq!(
            by_xid(&all, 745).ended_at.to_rfc3339(),
            "2026-11-28T05:25:40.004838+00:00"
        );
        assert!(line(745).starts_with("05:25:40 UTC"), "{}", line(745));
    }

    #[test]
    fn large_counts_read_with_thousands_separators() {
        assert_eq!(thousands(5), "5");
        assert_eq!(thousands(5000), "5,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(100_000), "100,000");
    }

    #[test]
    fn the_suspicious_ones_are_the_drops_truncates_and_largest_deletes_in_order() {
        let all = from_waldump_text(FIXTURE);
        let picked: Vec<u32> = suspicious(&all, 5).iter().map(|t| t.xid).collect();
        assert_eq!(picked, [745, 749, 750]);
        // The aborted transaction never counts, whatever it did.
        assert!(!suspicious(&all, 100).iter().any(|t| !t.committed));
    }

    #[test]
    fn a_subtransactions_rows_belong_to_its_top_transaction() {
        let rec = |xid, lsn, desc: &str| {
            format!(
                "rmgr: {} len (rec/tot): 54/ 54, tx: {xid:>10}, lsn: 0/{lsn:08X}, prev 0/00000000, desc: {desc}",
                if desc.starts_with("COMMIT") { "Transaction" } else { "Heap       " }
            )
        };
        let text = [
            rec(
                800,
                0x100,
                "DELETE off 1 flags 0x00 , blkref #0: rel 1663/5/30000 blk 0",
            ),
            rec(
                801,
                0x140,
                "DELETE off 2 flags 0x00 , blkref #0: rel 1663/5/30000 blk 0",
            ),
            rec(
                800,
                0x180,
                "COMMIT 2026-11-28 06:00:00.000001 UTC; subxacts: 801",
            ),
        ]
        .join("\n");
        let all = from_waldump_text(&text);
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].rows_deleted(), 2);
        assert_eq!(all[0].end_lsn, Lsn(0x180));
    }
}
