//! Restore targets. A target time is parsed strictly (an explicit zone is required), kept in
//! UTC, and handed to Barman as `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (docs/barman.md). A
//! transaction target stops just before or just after one transaction found in the WAL
//! (`--target-xid`, with `--exclusive` for "before").

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use crate::transactions::Lsn;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetTimeError {
    #[error("the target time is empty")]
    Empty,
    #[error(
        "{0:?} has no time zone: write it with an explicit offset, e.g. \
         2026-11-26 09:30:00+00:00 or 2026-11-26T10:30:00+01:00"
    )]
    NoZone(String),
    #[error("{0:?} is not a time barkeep understands: use YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM")]
    Unparseable(String),
}

/// A moment to restore to, always in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetTime(DateTime<Utc>);

impl TargetTime {
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(t)
    }
    pub fn utc(&self) -> DateTime<Utc> {
        self.0
    }
    /// The exact string given to `barman recover --target-time` (and so to PostgreSQL's
    /// `recovery_target_time`): UTC, microseconds, explicit `+00:00`.
    pub fn for_barman(&self) -> String {
        self.0.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
    }
}

impl fmt::Display for TargetTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.f UTC"))
    }
}

impl FromStr for TargetTime {
    type Err = TargetTimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetTimeError::Empty);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Self(t.with_timezone(&Utc)));
        }
        let (body, utc_word) = match s.strip_suffix(" UTC").or_else(|| s.strip_suffix("Z")) {
            Some(b) => (b.trim_end(), true),
            None => (s, false),
        };
        if utc_word {
            for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                if let Ok(n) = chrono::NaiveDateTime::parse_from_str(body, fmt) {
                    return Ok(Self(n.and_utc()));
                }
            }
            return Err(TargetTimeError::Unparseable(s.to_owned()));
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S%.f%:z",
            "%Y-%m-%d %H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M:%S%.f%#z",
        ] {
            if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(s, fmt) {
                return Ok(Self(t.with_timezone(&Utc)));
            }
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ] {
            if chrono::NaiveDateTime::parse_from_str(s, fmt).is_ok() {
                return Err(TargetTimeError::NoZone(s.to_owned()));
            }
        }
        Err(TargetTimeError::Unparseable(s.to_owned()))
    }
}

/// Which side of a transaction a restore stops on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Everything that committed before it, not it (`--target-xid X --exclusive`).
    Before,
    /// Everything up to and including it (`--target-xid X`).
    After,
}

/// One transaction to stop at, as the WAL showed it when the restore was planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TransactionTarget {
    pub xid: u32,
    pub side: Side,
    /// Its commit (or abort) time: which backups can reach it, and what the person sees.
    pub ended_at: TargetTime,
    /// The LSN of its commit (or abort) record, for the check of where replay paused.
    pub end_lsn: Lsn,
    /// The LSN of its first record, where Barman's WAL holds it.
    #[serde(default)]
    pub begin_lsn: Option<Lsn>,
    /// It took an ACCESS EXCLUSIVE lock (DROP, TRUNCATE, ALTER TABLE, ...).
    #[serde(default)]
    pub locked: bool,
}

impl TransactionTarget {
    /// Where "just before" a transaction that locked tables stops: before its FIRST record, so
    /// that the paused server holds none of its locks and the tables can be read (stopped at
    /// its commit, replay would hold its ACCESS EXCLUSIVE locks for as long as it is paused).
    /// `None`: the stop is at its end record (`--target-xid`).
    pub fn stop_before_first_record(&self) -> Option<Lsn> {
        match self.side {
            Side::Before if self.locked => self.begin_lsn,
            _ => None,
        }
    }
}

/// Where a restore stops: at a moment, or at one transaction. Journals written before
/// transaction targets existed hold a bare time, which still reads as [`RestoreTarget::Time`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RestoreTarget {
    Time(TargetTime),
    Transaction(TransactionTarget),
}

impl RestoreTarget {
    /// The moment of the target: the time itself, or the transaction's end time.
    pub fn time(&self) -> TargetTime {
        match self {
            Self::Time(t) => *t,
            Self::Transaction(t) => t.ended_at,
        }
    }

    pub fn transaction(&self) -> Option<&TransactionTarget> {
        match self {
            Self::Time(_) => None,
            Self::Transaction(t) => Some(t),
        }
    }

    /// The `barman recover` arguments that name it.
    pub fn barman_args(&self) -> Vec<String> {
        match self {
            Self::Time(t) => vec!["--target-time".into(), t.for_barman()],
            Self::Transaction(t) => {
                let mut args = match t.stop_before_first_record() {
                    Some(lsn) => vec!["--target-lsn".into(), lsn.to_string()],
                    None => vec!["--target-xid".into(), t.xid.to_string()],
                };
                if t.side == Side::Before {
                    args.push("--exclusive".into());
                }
                args
            }
        }
    }
}

impl From<TargetTime> for RestoreTarget {
    fn from(t: TargetTime) -> Self {
        Self::Time(t)
    }
}

impl fmt::Display for RestoreTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Time(t) => t.fmt(f),
            Self::Transaction(t) => write!(
                f,
                "just {} transaction {}{} (ended {})",
                match t.side {
                    Side::Before => "before",
                    Side::After => "after",
                },
                t.xid,
                if t.stop_before_first_record().is_some() {
                    " began"
                } else {
                    ""
                },
                t.ended_at
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<String, TargetTimeError> {
        s.parse::<TargetTime>().map(|t| t.for_barman())
    }

    #[test]
    fn explicit_zones_become_utc_with_an_explicit_offset() {
        assert_eq!(
            p("2026-11-26 09:30:00+00:00").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
        assert_eq!(
            p("2026-11-26T10:30:00.25+01:00").as_deref(),
            Ok("2026-11-26 09:30:00.250000+00:00")
        );
        assert_eq!(
            p("2026-11-26 04:30:00-05:00").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
        assert_eq!(
            p("2026-11-26 09:30:00.123456 UTC").as_deref(),
            Ok("2026-11-26 09:30:00.123456+00:00")
        );
        assert_eq!(
            p("2026-11-26T09:30:00Z").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
        assert_eq!(
            p("2026-11-26 11:30:00+0200").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
    }

    #[test]
    fn zone_less_and_malformed_times_are_refused_with_a_reason() {
        assert!(matches!(
            p("2026-11-26 09:30:00"),
            Err(TargetTimeError::NoZone(_))
        ));
        assert!(matches!(
            p("2026-11-26T09:30:00"),
            Err(TargetTimeError::NoZone(_))
        ));
        assert!(matches!(
            p("yesterday"),
            Err(TargetTimeError::Unparseable(_))
        ));
        assert!(matches!(
            p("2026-13-01 00:00:00+00:00"),
            Err(TargetTimeError::Unparseable(_))
        ));
        assert!(matches!(p("  "), Err(TargetTimeError::Empty)));
        let e = p("2026-11-26 09:30:00").unwrap_err().to_string();
        assert!(e.contains("has no time zone"), "{e}");
    }

    #[test]
    fn a_transaction_target_names_its_side_to_barman_and_old_journals_still_read() {
        let at = TargetTime::new("2026-11-28T05:25:40.004838Z".parse().expect("time"));
        let before = RestoreTarget::Transaction(TransactionTarget {
            xid: 745,
            side: Side::Before,
            ended_at: at,
            end_lsn: Lsn(0x0500_0100),
            begin_lsn: Some(Lsn(0x0500_0028)),
            locked: false,
        });
        assert_eq!(before.barman_args(), ["--target-xid", "745", "--exclusive"]);
        assert_eq!(
            before.to_string(),
            "just before transaction 745 (ended 2026-11-28 05:25:40.004838 UTC)"
        );
        let after = RestoreTarget::Transaction(TransactionTarget {
            side: Side::After,
            ..*before.transaction().expect("a transaction")
        });
        assert_eq!(after.barman_args(), ["--target-xid", "745"]);
        // A DROP holds its table locked until its commit: "before" it stops at its first
        // record, and says so.
        let drop = RestoreTarget::Transaction(TransactionTarget {
            locked: true,
            ..*before.transaction().expect("a transaction")
        });
        assert_eq!(
            drop.barman_args(),
            ["--target-lsn", "0/5000028", "--exclusive"]
        );
        assert!(drop
            .to_string()
            .starts_with("just before transaction 745 began"));
        let drop_after = RestoreTarget::Transaction(TransactionTarget {
            side: Side::After,
            ..*drop.transaction().expect("a transaction")
        });
        assert_eq!(drop_after.barman_args(), ["--target-xid", "745"]);
        assert_eq!(after.time(), at);
        assert_eq!(
            RestoreTarget::Time(at).barman_args(),
            ["--target-time", "2026-11-28 05:25:40.004838+00:00"]
        );
        // A journal of an earlier barkeep holds a bare time; new ones round-trip.
        let old: RestoreTarget =
            serde_json::from_str("\"2026-11-28T05:25:40.004838Z\"").expect("a bare time");
        assert_eq!(old, RestoreTarget::Time(at));
        for t in [before, after, RestoreTarget::Time(at)] {
            let json = serde_json::to_string(&t).expect("serialises");
            assert_eq!(
                serde_json::from_str::<RestoreTarget>(&json).expect("reads"),
                t
            );
        }
    }
}
