//! One line of `pg_waldump` (PostgreSQL 14) as a record: its LSN, its transaction, and what it
//! did where that matters for finding a mistake: rows written to a relation (Heap, Heap2),
//! relation files created (Storage), and the end of a transaction (Transaction: COMMIT or
//! ABORT, its time, the files it dropped). Every other record is `Other`: pg_waldump knows more
//! record types than barkeep reads, and none of them is an error.
//!
//! The line format (src/bin/pg_waldump/pg_waldump.c, `XLogDumpDisplayRecord`):
//! `rmgr: Heap        len (rec/tot):     54/    54, tx:        745, lsn: 0/05012345, prev
//! 0/05012310, desc: DELETE off 4 flags 0x00 KEYS_UPDATED , blkref #0: rel 1663/16385/24576 blk 0`

use std::fmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

/// A position in the WAL (`0/05012345`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `X/Y` as PostgreSQL writes it (hexadecimal halves).
    pub fn parse(s: &str) -> Option<Self> {
        let (hi, lo) = s.split_once('/')?;
        let hi = u32::from_str_radix(hi, 16).ok()?;
        let lo = u32::from_str_radix(lo, 16).ok()?;
        Some(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

/// As PostgreSQL's `pg_lsn` prints it (`0/5012345`; pg_waldump pads the low half to 8 digits).
impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// A relation's files: tablespace, database, relfilenode (`rel 1663/16385/24576`). Serialised
/// as that text, so that it can key a JSON map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RelFile {
    pub tablespace: u32,
    pub database: u32,
    pub relfilenode: u32,
}

/// The default tablespace's OID (`base/`).
const PG_DEFAULT_TABLESPACE: u32 = 1663;
/// The shared tablespace's OID (`global/`).
const PG_GLOBAL_TABLESPACE: u32 = 1664;
/// Objects below this OID are the system's own (catalogs): their writes mean DDL.
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
/// pg_class's relfilenode in a cluster whose pg_class was never rewritten (VACUUM FULL).
pub const PG_CLASS: u32 = 1259;

impl RelFile {
    /// `1663/16385/24576`.
    fn parse_triple(s: &str) -> Option<Self> {
        let mut it = s.split('/').map(|p| p.parse::<u32>().ok());
        let (Some(Some(tablespace)), Some(Some(database)), Some(Some(relfilenode)), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return None;
        };
        Some(RelFile {
            tablespace,
            database,
            relfilenode,
        })
    }

    /// A path as Storage and Transaction records print it: `base/16385/24576`,
    /// `global/1262`, `pg_tblspc/16400/PG_14_202107181/16385/24576`.
    fn parse_path(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        let num = |p: &str| p.parse::<u32>().ok();
        match parts.as_slice() {
            ["base", db, rel] => Some(RelFile {
                tablespace: PG_DEFAULT_TABLESPACE,
                database: num(db)?,
                relfilenode: num(rel)?,
            }),
            ["global", rel] => Some(RelFile {
                tablespace: PG_GLOBAL_TABLESPACE,
                database: 0,
                relfilenode: num(rel)?,
            }),
            ["pg_tblspc", spc, _version, db, rel] => Some(RelFile {
                tablespace: num(spc)?,
                database: num(db)?,
                relfilenode: num(rel)?,
            }),
            _ => None,
        }
    }

    /// A system catalog's file (DDL writes there).
    pub fn is_catalog(&self) -> bool {
        self.relfilenode < FIRST_NORMAL_OBJECT_ID
    }
}

impl fmt::Display for RelFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.tablespace, self.database, self.relfilenode
        )
    }
}

impl From<RelFile> for String {
    fn from(r: RelFile) -> String {
        r.to_string()
    }
}

impl TryFrom<String> for RelFile {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        RelFile::parse_triple(&s)
            .ok_or_else(|| format!("{s:?} is not tablespace/database/relfilenode"))
    }
}

/// What a heap record did to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowChange {
    /// `INSERT`, `INSERT+INIT`: one row; `MULTI_INSERT n tuples` (COPY, CREATE TABLE AS): n.
    Inserted(u64),
    /// `UPDATE`, `HOT_UPDATE`.
    Updated,
    /// `DELETE`.
    Deleted,
    /// `TRUNCATE` (a Heap record only with wal_level=logical; otherwise a truncate shows as
    /// new files and the old ones dropped at commit).
    Truncated,
}

/// What one record means here.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordKind {
    /// Rows changed in a relation.
    Rows { change: RowChange, rel: RelFile },
    /// A relation file created (`Storage CREATE`): a new table, index, or a truncate's new file.
    FileCreated(RelFile),
    /// The transaction ended.
    End {
        committed: bool,
        at: DateTime<Utc>,
        /// `rels:` the files it drops at commit (DROP, TRUNCATE, a rewrite).
        dropped: Vec<RelFile>,
        /// `subxacts:` its subtransactions (savepoints): their records carry their own xid.
        subxacts: Vec<u32>,
    },
    /// The transaction took an ACCESS EXCLUSIVE lock on a relation (`Standby LOCK`): DROP,
    /// TRUNCATE, most ALTER TABLE. A server paused while it is in flight keeps the table
    /// locked against every reader.
    Locked,
    /// Anything else (btree, vacuum, checkpoint, ...).
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WalRecord {
    pub lsn: Lsn,
    /// 0 for records outside any transaction.
    pub xid: u32,
    pub kind: RecordKind,
}

/// One line of pg_waldump's output; `None` for a line that is not a record (pg_waldump's own
/// messages, e.g. the error at the end of a partly filled segment).
pub fn parse_record(line: &str) -> Option<WalRecord> {
    let rest = line.strip_prefix("rmgr: ")?;
    let (rmgr, rest) = rest.split_once(' ')?;
    let xid = field(rest, "tx:")?.parse().ok()?;
    let lsn = Lsn::parse(field(rest, "lsn:")?)?;
    let desc = rest.split_once("desc: ")?.1;
    let kind = match rmgr {
        "Heap" | "Heap2" => rows(desc).unwrap_or(RecordKind::Other),
        "Storage" => desc
            .strip_prefix("CREATE ")
            .and_then(|p| RelFile::parse_path(p.trim()))
            .map_or(RecordKind::Other, RecordKind::FileCreated),
        "Transaction" => end(desc).unwrap_or(RecordKind::Other),
        "Standby" if desc.starts_with("LOCK ") => RecordKind::Locked,
        _ => RecordKind::Other,
    };
    Some(WalRecord { lsn, xid, kind })
}

/// The value after `name` up to the next comma: `tx:        745,` gives `745`.
fn field<'a>(s: &'a str, name: &str) -> Option<&'a str> {
    let after = s.split_once(name)?.1;
    Some(after.split(',').next()?.trim())
}

fn rows(desc: &str) -> Option<RecordKind> {
    let op = desc.split_whitespace().next()?;
    let change = match op {
        "INSERT" | "INSERT+INIT" => RowChange::Inserted(1),
        "MULTI_INSERT" | "MULTI_INSERT+INIT" => {
            let n = desc.split_whitespace().nth(1)?.parse().ok()?;
            RowChange::Inserted(n)
        }
        "UPDATE" | "UPDATE+INIT" | "HOT_UPDATE" | "HOT_UPDATE+INIT" => RowChange::Updated,
        "DELETE" => RowChange::Deleted,
        "TRUNCATE" => RowChange::Truncated,
        _ => return None,
    };
    // The block reference names the relation: `blkref #0: rel 1663/16385/24576 blk 0`.
    // A logical TRUNCATE record has none (it names relation OIDs instead): kept as Other.
    let rel = desc
        .split_once("blkref #0: rel ")?
        .1
        .split_whitespace()
        .next()?;
    Some(RecordKind::Rows {
        change,
        rel: RelFile::parse_triple(rel)?,
    })
}

/// `COMMIT 2026-11-28 05:25:40.039362 UTC; rels: base/16385/24587 base/16385/24586; inval ...`
/// (also ABORT, COMMIT_PREPARED n: ..., ABORT_PREPARED n: ...).
fn end(desc: &str) -> Option<RecordKind> {
    let (committed, rest) = [
        ("COMMIT_PREPARED ", true),
        ("ABORT_PREPARED ", false),
        ("COMMIT ", true),
        ("ABORT ", false),
    ]
    .iter()
    .find_map(|(k, c)| desc.strip_prefix(k).map(|r| (*c, r)))?;
    let rest = match rest.split_once(": ") {
        Some((gid, tail)) if gid.bytes().all(|b| b.is_ascii_digit()) => tail,
        _ => rest,
    };
    let stamp = rest.get(..rest.find(" UTC")?)?;
    let at = NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f")
        .ok()?
        .and_utc();
    let dropped = rest
        .split("; ")
        .find_map(|part| part.strip_prefix("rels: "))
        .map(|rels| {
            rels.split_whitespace()
                .filter_map(RelFile::parse_path)
                .collect()
        })
        .unwrap_or_default();
    let subxacts = rest
        .split("; ")
        .find_map(|part| part.strip_prefix("subxacts: "))
        .map(|xids| {
            xids.split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    Some(RecordKind::End {
        committed,
        at,
        dropped,
        subxacts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "rmgr: Heap        len (rec/tot):     54/    54, tx:        745, lsn: \
                        0/05012345, prev 0/05012310, desc: DELETE off 4 flags 0x00 KEYS_UPDATED , \
                        blkref #0: rel 1663/16385/24576 blk 0";

    #[test]
    fn a_heap_delete_names_its_transaction_position_and_relation() {
        let r = parse_record(LINE).expect("a record");
        assert_eq!(r.xid, 745);
        assert_eq!(r.lsn, Lsn(0x0501_2345));
        assert_eq!(r.lsn.to_string(), "0/5012345");
        assert_eq!(
            r.kind,
            RecordKind::Rows {
                change: RowChange::Deleted,
                rel: RelFile {
                    tablespace: 1663,
                    database: 16385,
                    relfilenode: 24576
                }
            }
        );
    }

    #[test]
    fn lsns_read_and_print_as_postgresql_writes_them() {
        assert_eq!(Lsn::parse("1A/0000FF00"), Some(Lsn(0x1A_0000_FF00)));
        assert_eq!(Lsn(0x1A_0000_FF00).to_string(), "1A/FF00");
        assert_eq!(Lsn::parse("1A/FF00"), Some(Lsn(0x1A_0000_FF00)));
        assert_eq!(Lsn::parse("nope"), None);
    }

    #[test]
    fn commit_records_carry_time_and_dropped_files() {
        let line = "rmgr: Transaction len (rec/tot):    266/   266, tx:        749, lsn: \
                    0/05020000, prev 0/0501FF00, desc: COMMIT 2026-11-28 05:25:40.039362 UTC; \
                    rels: base/16385/24587 global/1262 pg_tblspc/16400/PG_14_202107181/16385/24583; \
                    inval msgs: catcache 51";
        let r = parse_record(line).expect("a record");
        let RecordKind::End {
            committed,
            at,
            dropped,
            subxacts,
        } = r.kind
        else {
            panic!("not an end: {:?}", r.kind)
        };
        assert!(committed);
        assert!(subxacts.is_empty());
        assert_eq!(at.to_rfc3339(), "2026-11-28T05:25:40.039362+00:00");
        assert_eq!(
            dropped.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["1663/16385/24587", "1664/0/1262", "16400/16385/24583"]
        );
        let abort = "rmgr: Transaction len (rec/tot):     34/    34, tx:        746, lsn: \
                     0/05000100, prev 0/050000C0, desc: ABORT 2026-11-28 05:25:40.007765 UTC";
        assert!(matches!(
            parse_record(abort).map(|r| r.kind),
            Some(RecordKind::End {
                committed: false,
                ..
            })
        ));
        let prepared = "rmgr: Transaction len (rec/tot):     34/    34, tx:        750, lsn: \
                        0/05000200, prev 0/05000100, desc: COMMIT_PREPARED 751: \
                        2026-11-28 05:25:41.000001 UTC";
        assert!(matches!(
            parse_record(prepared).map(|r| r.kind),
            Some(RecordKind::End {
                committed: true,
                ..
            })
        ));
    }

    #[test]
    fn unknown_records_are_other_and_noise_is_not_a_record() {
        let btree = "rmgr: Btree       len (rec/tot):     64/    64, tx:        743, lsn: \
                     0/05000300, prev 0/05000200, desc: INSERT_LEAF off 1, blkref #0: rel \
                     1663/16385/24579 blk 1";
        assert_eq!(parse_record(btree).map(|r| r.kind), Some(RecordKind::Other));
        let future = "rmgr: Heap        len (rec/tot):     64/    64, tx:        743, lsn: \
                      0/05000300, prev 0/05000200, desc: SOMETHING_NEW off 1";
        assert_eq!(
            parse_record(future).map(|r| r.kind),
            Some(RecordKind::Other)
        );
        assert_eq!(
            parse_record(
                "pg_waldump: error: error in WAL record at 0/5024360: invalid record length"
            ),
            None
        );
    }
}
