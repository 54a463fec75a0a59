//! The recovery window: from the end of the oldest recoverable backup to the last COMMIT in
//! archived WAL (barman-facts.md pitfall 13: not "now", not a segment's mtime). The last commit
//! is read with pg_waldump (run with TZ=UTC) on the newest segments, walking back until one
//! holds a commit: forced switches and backups leave segments without any.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::wal::WalSegment;

#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("cannot read the archived WAL segment {path}: {source}")]
    Segment {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot run pg_waldump ({path}): {source}")]
    Waldump {
        path: PathBuf,
        source: std::io::Error,
    },
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

pub async fn recovery_window(
    catalog: &Catalog,
    pg_bin_dir: &Path,
) -> Result<RecoveryWindow, WindowError> {
    let earliest = catalog.earliest_recoverable();
    let mut candidates: Vec<(WalSegment, PathBuf)> = catalog
        .archived
        .iter()
        .filter_map(|w| w.segment().map(|s| (s, catalog.segment_path(&s))))
        .chain(catalog.incoming.iter().filter_map(|p| {
            WalSegment::parse(&p.name)
                .map(|s| (s, catalog.server_home.join("incoming").join(&p.name)))
        }))
        .collect();
    candidates.sort_by_key(|(s, _)| std::cmp::Reverse((s.index(), s.timeline)));
    candidates.dedup_by_key(|(s, _)| *s);
    for (segment, path) in candidates.into_iter().take(MAX_SEGMENTS_BACK) {
        if let Some(t) = last_xact_in_segment(&segment, &path, pg_bin_dir).await? {
            return Ok(RecoveryWindow {
                earliest,
                latest: Some(t),
                latest_segment: Some(segment.to_string()),
            });
        }
    }
    Ok(RecoveryWindow {
        earliest,
        latest: None,
        latest_segment: None,
    })
}

/// The time of the last COMMIT/ABORT record in one archived segment (gzip or plain).
pub async fn last_xact_in_segment(
    segment: &WalSegment,
    path: &Path,
    pg_bin_dir: &Path,
) -> Result<Option<DateTime<Utc>>, WindowError> {
    let seg_err = |source| WindowError::Segment {
        path: path.to_owned(),
        source,
    };
    let raw = match std::fs::read(path) {
        Ok(r) => r,
        // Removed by retention or processed out of incoming/ meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(seg_err(e)),
    };
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(16 << 20);
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(seg_err)?;
        out
    } else {
        raw
    };
    // pg_waldump derives the start position from the file NAME: keep it.
    let tmp = tempfile::tempdir().map_err(seg_err)?;
    let file = tmp.path().join(segment.to_string());
    std::fs::write(&file, &bytes).map_err(seg_err)?;
    let waldump = pg_bin_dir.join("pg_waldump");
    let child = tokio::process::Command::new(&waldump)
        .arg("--rmgr=Transaction")
        .arg(&file)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| WindowError::Waldump {
            path: waldump.clone(),
            source,
        })?;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .map_err(|_| WindowError::Waldump {
            path: waldump.clone(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "pg_waldump timed out"),
        })?
        .map_err(|source| WindowError::Waldump {
            path: waldump.clone(),
            source,
        })?;
    // pg_waldump exits 1 at the end of a partly filled segment: its output is still good.
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(parse_xact_time)
        .max())
}

/// `... desc: COMMIT 2026-11-26 09:51:33.052562 UTC; ...` (also ABORT, COMMIT_PREPARED, ...).
pub fn parse_xact_time(line: &str) -> Option<DateTime<Utc>> {
    let desc = line.split("desc: ").nth(1)?;
    let rest = ["COMMIT_PREPARED ", "ABORT_PREPARED ", "COMMIT ", "ABORT "]
        .iter()
        .find_map(|k| desc.strip_prefix(k))?;
    // The prepared variants start with the gid number: "COMMIT_PREPARED 5: 2026-..."
    let rest = match rest.split_once(": ") {
        Some((head, tail)) if head.bytes().all(|b| b.is_ascii_digit()) => tail,
        _ => rest,
    };
    let stamp = rest.get(..rest.find(" UTC")?)?;
    NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commit_times_as_pg_waldump_14_prints_them() {
        let l = "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/03000108, prev 0/030000D0, desc: COMMIT 2026-11-26 09:51:33.052562 UTC";
        assert_eq!(
            parse_xact_time(l).map(|t| t.to_rfc3339()),
            Some("2026-11-26T09:51:33.052562+00:00".to_owned())
        );
        let l = "rmgr: Transaction len (rec/tot): 98/98, tx: 740, lsn: 0/03000400, prev 0/030003C8, desc: COMMIT 2026-11-26 09:51:34.5 UTC; inval msgs: catcache 7";
        assert!(parse_xact_time(l).is_some());
        let l = "rmgr: Transaction len (rec/tot): 34/34, tx: 741, lsn: 0/03000500, prev 0/03000400, desc: ABORT 2026-11-26 09:51:35.000001 UTC";
        assert!(parse_xact_time(l).is_some());
        let l = "rmgr: Standby len (rec/tot): 50/50, tx: 0, lsn: 0/03000028, prev 0/02000148, desc: RUNNING_XACTS nextXid 735";
        assert!(parse_xact_time(l).is_none());
    }
}
