//! One backup's `backup.info`, as Barman 3.3 writes it: `key=value` lines of Python `str()`s.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::CatalogError;

/// `status` of a backup.info. Only DONE and WAITING_FOR_WALS can be recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackupStatus {
    Empty,
    Started,
    WaitingForWals,
    Done,
    Syncing,
    Failed,
    Other(String),
}

impl BackupStatus {
    fn parse(s: &str) -> Self {
        match s {
            "EMPTY" => Self::Empty,
            "STARTED" => Self::Started,
            "WAITING_FOR_WALS" => Self::WaitingForWals,
            "DONE" => Self::Done,
            "SYNCING" => Self::Syncing,
            "FAILED" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Self::Empty => "EMPTY",
            Self::Started => "STARTED",
            Self::WaitingForWals => "WAITING_FOR_WALS",
            Self::Done => "DONE",
            Self::Syncing => "SYNCING",
            Self::Failed => "FAILED",
            Self::Other(s) => s,
        }
    }
    pub fn is_recoverable(&self) -> bool {
        matches!(self, Self::Done | Self::WaitingForWals)
    }
}

/// One base backup, as its backup.info describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backup {
    pub id: String,
    pub status: BackupStatus,
    pub begin_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub begin_wal: Option<String>,
    pub end_wal: Option<String>,
    pub begin_xlog: Option<String>,
    pub end_xlog: Option<String>,
    pub timeline: Option<u32>,
    /// Bytes of the copied data directory.
    pub size: Option<u64>,
    pub systemid: Option<String>,
    /// PostgreSQL version number, e.g. 140023.
    pub version: Option<u32>,
    pub mode: Option<String>,
    pub error: Option<String>,
    /// Every key as written, for anything not modelled above.
    pub raw: BTreeMap<String, Option<String>>,
}

impl Backup {
    pub fn is_recoverable(&self) -> bool {
        self.status.is_recoverable() && self.end_time.is_some()
    }
}

/// Parses Barman's `key=value` lines. Values are `str()` of the Python value; `None` is null;
/// `backup_label`, `copy_stats`, `tablespaces`, `included_files` are `repr()`s, kept raw
/// (nothing barkeep decides depends on them).
pub fn parse_backup_info(id: &str, text: &str, path: &Path) -> Result<Backup, CatalogError> {
    let mut raw = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| CatalogError::Malformed {
                path: path.to_owned(),
                line: n + 1,
                message: "expected key=value".into(),
            })?;
        let v = v.trim();
        raw.insert(k.trim().to_owned(), (v != "None").then(|| v.to_owned()));
    }
    let malformed = |message: String| CatalogError::Malformed {
        path: path.to_owned(),
        line: 0,
        message,
    };
    let get = |k: &str| raw.get(k).cloned().flatten();
    let time = |k: &str| -> Result<Option<DateTime<Utc>>, CatalogError> {
        get(k)
            .map(|v| {
                parse_barman_time(&v).ok_or_else(|| malformed(format!("{k}: not a time: {v}")))
            })
            .transpose()
    };
    let int = |k: &str| -> Result<Option<u64>, CatalogError> {
        get(k)
            .map(|v| {
                v.parse()
                    .map_err(|_| malformed(format!("{k}: not a number: {v}")))
            })
            .transpose()
    };
    Ok(Backup {
        id: id.to_owned(),
        status: BackupStatus::parse(get("status").as_deref().unwrap_or("EMPTY")),
        begin_time: time("begin_time")?,
        end_time: time("end_time")?,
        begin_wal: get("begin_wal"),
        end_wal: get("end_wal"),
        begin_xlog: get("begin_xlog"),
        end_xlog: get("end_xlog"),
        timeline: int("timeline")?.map(|t| t as u32),
        size: int("size")?,
        systemid: get("systemid"),
        version: int("version")?.map(|v| v as u32),
        mode: get("mode"),
        error: get("error"),
        raw,
    })
}

/// Times as Python's `str(datetime)` prints them: `2026-11-25 03:09:39.036863+00:00`, the
/// fraction optional. A zone-less time is read in this process's local zone, as Barman does.
pub fn parse_barman_time(s: &str) -> Option<DateTime<Utc>> {
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    chrono::Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::catalog) const INFO: &str = "backup_label='START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\\nLABEL: Barman backup pg 20261125T030939\\n'
begin_offset=40
begin_time=2026-11-25 03:09:39.036863+00:00
begin_wal=000000010000000000000002
begin_xlog=0/2000028
compression=None
config_file=/var/lib/postgresql/14/postgresql.conf
copy_stats={'copy_time': 0.5, 'total_time': 1.1}
end_time=2026-11-25 03:09:41+00:00
end_wal=000000010000000000000002
error=None
mode=local-rsync-concurrent
size=33817128
status=DONE
systemid=7441234567890123456
tablespaces=None
timeline=1
version=140023
";

    #[test]
    fn reads_a_backup_info_as_barman_3_3_writes_it() {
        let b =
            parse_backup_info("20261125T030939", INFO, Path::new("backup.info")).expect("parses");
        assert_eq!(b.status, BackupStatus::Done);
        assert!(b.is_recoverable());
        assert_eq!(b.timeline, Some(1));
        assert_eq!(b.size, Some(33_817_128));
        assert_eq!(b.version, Some(140_023));
        assert_eq!(b.error, None);
        assert_eq!(
            b.begin_time.map(|t| t.to_rfc3339()),
            Some("2026-11-25T03:09:39.036863+00:00".to_owned())
        );
        assert_eq!(
            b.end_time.map(|t| t.to_rfc3339()),
            Some("2026-11-25T03:09:41+00:00".to_owned())
        );
        assert!(b.raw.get("backup_label").is_some_and(Option::is_some));
    }

    #[test]
    fn times_with_other_offsets_become_utc() {
        let t = parse_barman_time("2026-11-25 04:09:39+01:00").expect("offset");
        assert_eq!(t.to_rfc3339(), "2026-11-25T03:09:39+00:00");
        assert!(parse_barman_time("yesterday").is_none());
    }

    #[test]
    fn failed_backups_are_not_recoverable() {
        let failed = INFO.replace("status=DONE", "status=FAILED");
        let b = parse_backup_info("20261125T030939", &failed, Path::new("x")).expect("parses");
        assert!(!b.is_recoverable());
        let bad = INFO.replace("size=33817128", "size=big");
        assert!(parse_backup_info("20261125T030939", &bad, Path::new("x")).is_err());
    }
}
