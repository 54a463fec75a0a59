//! Barman's on-disk catalog, read directly (no barman process, no 250 ms of Python imports):
//! `base/*/backup.info`, `wals/xlog.db` (under a shared flock on Barman's xlogdb lock),
//! `incoming/`, `errors/` and `identity.json` of one server.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::wal::{classify, WalFileKind, WalSegment};

mod backup_info;
pub use backup_info::{parse_backup_info, parse_barman_time, Backup, BackupStatus};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read Barman's catalog at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CatalogError + '_ {
    move |source| CatalogError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One line of xlog.db: a file Barman has archived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedWal {
    pub name: String,
    /// Compressed size in bytes.
    pub size: u64,
    /// When the file landed in incoming/ (Barman keeps its mtime).
    pub time: DateTime<Utc>,
    pub compression: Option<String>,
}

impl ArchivedWal {
    pub fn segment(&self) -> Option<WalSegment> {
        match classify(&self.name) {
            WalFileKind::Segment(s) => Some(s),
            _ => None,
        }
    }
}

/// A file archive_command left in incoming/ that Barman has not processed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingWal {
    pub name: String,
    pub time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub systemid: Option<String>,
    pub version: Option<String>,
}

/// Everything Barman knows of one server, read in one go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub server_home: PathBuf,
    /// Oldest first (backup ids sort by time).
    pub backups: Vec<Backup>,
    /// backup.info files that could not be read, with the reason.
    pub unreadable_backups: Vec<(String, String)>,
    /// In xlog.db order.
    pub archived: Vec<ArchivedWal>,
    pub incoming: Vec<PendingWal>,
    /// Names in errors/ (duplicates, unknown files).
    pub errors: Vec<String>,
    pub identity: Option<Identity>,
}

impl Catalog {
    /// Reads the catalog of `<barman_home>/<server>`; `xlogdb_lock` is Barman's
    /// `<barman_home>/.<server>-xlogdb.lock`, held shared while xlog.db is read.
    pub fn read(server_home: &Path, xlogdb_lock: &Path) -> Result<Self, CatalogError> {
        let mut backups = Vec::new();
        let mut unreadable_backups = Vec::new();
        let base = server_home.join("base");
        match std::fs::read_dir(&base) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(io(&base))?;
                    let id = entry.file_name().to_string_lossy().into_owned();
                    if !crate::validate::is_backup_id(&id) {
                        continue;
                    }
                    let info = entry.path().join("backup.info");
                    match std::fs::read_to_string(&info) {
                        Ok(text) => match parse_backup_info(&id, &text, &info) {
                            Ok(b) => backups.push(b),
                            Err(e) => unreadable_backups.push((id, e.to_string())),
                        },
                        // A backup directory being created or removed right now.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => unreadable_backups.push((id, e.to_string())),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&base)(e)),
        }
        backups.sort_by(|a, b| a.id.cmp(&b.id));

        let archived = read_xlog_db(&server_home.join("wals").join("xlog.db"), xlogdb_lock)?;
        let incoming = read_incoming(&server_home.join("incoming"))?;
        let errors = list_names(&server_home.join("errors"))?;
        let identity = read_identity(&server_home.join("identity.json"));
        Ok(Self {
            server_home: server_home.to_owned(),
            backups,
            unreadable_backups,
            archived,
            incoming,
            errors,
            identity,
        })
    }

    pub fn backup(&self, id: &str) -> Option<&Backup> {
        self.backups.iter().find(|b| b.id == id)
    }

    pub fn recoverable_backups(&self) -> impl Iterator<Item = &Backup> {
        self.backups.iter().filter(|b| b.is_recoverable())
    }

    /// The newest recoverable backup that ended at or before `target`.
    pub fn backup_for_target(&self, target: DateTime<Utc>) -> Option<&Backup> {
        self.recoverable_backups()
            .filter(|b| b.end_time.is_some_and(|e| e <= target))
            .max_by_key(|b| b.end_time)
    }

    /// The end of the oldest recoverable backup: no earlier moment can be restored.
    pub fn earliest_recoverable(&self) -> Option<DateTime<Utc>> {
        self.recoverable_backups().filter_map(|b| b.end_time).min()
    }

    /// When the newest WAL reached Barman: the latest archived time, or a file still waiting
    /// in incoming/ (archived by PostgreSQL, not yet processed by `barman cron`).
    pub fn last_wal_time(&self) -> Option<DateTime<Utc>> {
        let archived = self.archived.iter().map(|w| w.time).max();
        let pending = self.incoming.iter().map(|w| w.time).max();
        archived.max(pending)
    }

    /// Newest archived segment (by position; the highest timeline wins a tie).
    pub fn newest_segment(&self) -> Option<WalSegment> {
        self.archived
            .iter()
            .filter_map(ArchivedWal::segment)
            .max_by_key(|s| (s.index(), s.timeline))
    }

    /// Segments missing between a backup's begin_wal and the newest segment of its timeline:
    /// a gap there means a restore past it is impossible.
    pub fn wal_gaps(&self, backup: &Backup) -> Vec<WalSegment> {
        let Some(begin) = backup.begin_wal.as_deref().and_then(WalSegment::parse) else {
            return Vec::new();
        };
        let mut on_timeline: Vec<u64> = self
            .archived
            .iter()
            .filter_map(ArchivedWal::segment)
            .filter(|s| s.timeline == begin.timeline && s.index() >= begin.index())
            .map(|s| s.index())
            .collect();
        on_timeline.sort_unstable();
        on_timeline.dedup();
        let Some(&last) = on_timeline.last() else {
            return Vec::new();
        };
        let mut have = on_timeline.into_iter().peekable();
        let mut missing = Vec::new();
        for idx in begin.index()..=last {
            if have.peek() == Some(&idx) {
                have.next();
            } else {
                missing.push(WalSegment::from_index(begin.timeline, idx));
            }
        }
        missing
    }

    /// The archived file that holds `segment`, under `wals/<hash dir>/`.
    pub fn segment_path(&self, segment: &WalSegment) -> PathBuf {
        self.server_home
            .join("wals")
            .join(segment.hash_dir())
            .join(segment.to_string())
    }
}

fn read_xlog_db(path: &Path, lock: &Path) -> Result<Vec<ArchivedWal>, CatalogError> {
    // Barman rewrites xlog.db in place under an exclusive flock on this file.
    let _guard = match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
    {
        Ok(f) => {
            rustix::fs::flock(&f, rustix::fs::FlockOperation::LockShared)
                .map_err(|e| io(lock)(e.into()))?;
            Some(f)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(lock)(e)),
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io(path))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            parse_xlog_line(&line).ok_or_else(|| CatalogError::Malformed {
                path: path.to_owned(),
                line: n + 1,
                message: format!("not an xlog.db line: {line:?}"),
            })?,
        );
    }
    Ok(out)
}

/// `name \t size \t time \t compression`
pub fn parse_xlog_line(line: &str) -> Option<ArchivedWal> {
    let mut f = line.split('\t');
    let name = f.next()?.to_owned();
    let size = f.next()?.parse().ok()?;
    let time = f.next()?.parse::<f64>().ok()?;
    let compression = f
        .next()
        .map(str::trim)
        .filter(|c| *c != "None" && !c.is_empty());
    Some(ArchivedWal {
        name,
        size,
        time: epoch_to_utc(time)?,
        compression: compression.map(str::to_owned),
    })
}

fn epoch_to_utc(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    let whole = secs.floor();
    let nanos = ((secs - whole) * 1e9).round().min(999_999_999.0) as u32;
    Utc.timestamp_opt(whole as i64, nanos).single()
}

fn read_incoming(dir: &Path) -> Result<Vec<PendingWal>, CatalogError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(classify(&name), WalFileKind::Other) {
            continue;
        }
        // Processed by `barman cron` between the listing and here: it is archived now.
        let Ok(meta) = entry.metadata() else { continue };
        let Ok(modified) = meta.modified() else {
            continue;
        };
        out.push(PendingWal {
            name,
            time: DateTime::<Utc>::from(modified),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn list_names(dir: &Path) -> Result<Vec<String>, CatalogError> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut names = entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect::<Vec<_>>();
            names.sort();
            Ok(names)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(dir)(e)),
    }
}

fn read_identity(path: &Path) -> Option<Identity> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some(Identity {
        systemid: v
            .get("systemid")
            .and_then(|s| s.as_str())
            .map(str::to_owned),
        version: v.get("version").and_then(|s| s.as_str()).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::backup_info::tests::INFO;
    use super::*;

    #[test]
    fn xlog_db_lines() {
        let w = parse_xlog_line("000000010000000000000003\t16427\t1764040179.123456\tgzip")
            .expect("line");
        assert_eq!(w.size, 16427);
        assert_eq!(w.compression.as_deref(), Some("gzip"));
        assert_eq!(w.time.timestamp(), 1_764_040_179);
        assert!(w.segment().is_some());
        let h = parse_xlog_line("00000002.history\t42\t1764040179.0\tNone").expect("history");
        assert_eq!(h.compression, None);
        assert!(parse_xlog_line("garbage").is_none());
    }

    #[test]
    fn finds_gaps_on_the_backup_timeline() {
        let mk = |name: &str| ArchivedWal {
            name: name.into(),
            size: 1,
            time: Utc::now(),
            compression: None,
        };
        let catalog = Catalog {
            server_home: PathBuf::from("/x"),
            backups: vec![],
            unreadable_backups: vec![],
            archived: vec![
                mk("000000010000000000000002"),
                mk("000000010000000000000003"),
                mk("0000000100000000000000FF"),
                mk("000000010000000100000001"),
                mk("000000020000000100000005"),
            ],
            incoming: vec![],
            errors: vec![],
            identity: None,
        };
        let b = parse_backup_info("20261125T030939", INFO, Path::new("x")).expect("parses");
        let gaps = catalog.wal_gaps(&b);
        // 04..FE on log 0, then 1/00 are missing; the other timeline does not count.
        assert_eq!(gaps.len(), (0xFE - 0x04 + 1) + 1);
        assert_eq!(gaps[0].to_string(), "000000010000000000000004");
        assert_eq!(
            gaps.last().map(|s| s.to_string()).as_deref(),
            Some("000000010000000100000000")
        );
    }
}
