//! Reading archived WAL with pg_waldump: one segment (gzip or plain) is staged uncompressed
//! under its own name in a temporary directory, decoded by `pg_waldump --rmgr=Transaction`
//! (TZ=UTC, through the one process runner), and the commit and abort times it prints are
//! read back. The recovery window (`window`) is built on it.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::process::Program;
use crate::wal::WalSegment;
use crate::window::{blocking, WindowError};

/// How long one pg_waldump may run.
const WALDUMP_TIMEOUT: Duration = Duration::from_secs(60);

/// The time of the last COMMIT/ABORT record in one archived segment (gzip or plain); `None`
/// when it has none or the file is gone.
pub async fn last_xact_in_segment(
    segment: &WalSegment,
    path: &Path,
    pg_bin_dir: &Path,
) -> Result<Option<DateTime<Utc>>, WindowError> {
    match decode(*segment, path, pg_bin_dir, None).await? {
        Decoded::Ran(t) => Ok(t),
        Decoded::Missing => Ok(None),
    }
}

pub(crate) enum Decoded {
    /// The file is gone (removed by retention, or moved out of incoming/ meanwhile).
    Missing,
    /// pg_waldump ran: the last transaction time in the segment, if any.
    Ran(Option<DateTime<Utc>>),
}

/// A segment copied, uncompressed, into a temporary directory under its own name.
pub(crate) struct Staged {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) file: PathBuf,
}

/// Decodes one segment: the file work on a blocking thread, pg_waldump as a child process.
/// `runs` counts the pg_waldump processes started.
pub(crate) async fn decode(
    segment: WalSegment,
    path: &Path,
    pg_bin_dir: &Path,
    runs: Option<&AtomicU64>,
) -> Result<Decoded, WindowError> {
    let source = path.to_owned();
    let staged = blocking("an archived WAL segment", move || stage(segment, &source)).await??;
    let Some(staged) = staged else {
        return Ok(Decoded::Missing);
    };
    if let Some(runs) = runs {
        runs.fetch_add(1, Ordering::Relaxed);
    }
    let result = waldump(&staged.file, pg_bin_dir).await;
    // Removing 16 MiB is file I/O too.
    let Staged { dir, .. } = staged;
    if let Err(e) = tokio::task::spawn_blocking(move || dir.close()).await {
        tracing::warn!(error = %e, "removing a temporary WAL copy failed");
    }
    result.map(Decoded::Ran)
}

/// Copies `path` (gzip or plain) uncompressed into a fresh temporary directory, under the
/// segment's name: pg_waldump derives the start position from the file NAME. Blocking.
pub(crate) fn stage(segment: WalSegment, path: &Path) -> Result<Option<Staged>, WindowError> {
    let dir = tempfile::tempdir().map_err(|source| WindowError::Segment {
        path: path.to_owned(),
        source,
    })?;
    Ok(stage_into(dir.path(), segment, path)?.map(|file| Staged { dir, file }))
}

/// Copies `path` (gzip or plain) uncompressed into `dir` under the segment's name; `None` when
/// the file is gone. Blocking.
pub(crate) fn stage_into(
    dir: &Path,
    segment: WalSegment,
    path: &Path,
) -> Result<Option<PathBuf>, WindowError> {
    let err = |source| WindowError::Segment {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let gzip = reader.fill_buf().map_err(err)?.starts_with(&[0x1f, 0x8b]);
    let staged = dir.join(segment.to_string());
    let mut out = File::create(&staged).map_err(err)?;
    if gzip {
        std::io::copy(&mut flate2::read::GzDecoder::new(reader), &mut out).map_err(err)?;
    } else {
        std::io::copy(&mut reader, &mut out).map_err(err)?;
    }
    Ok(Some(staged))
}

/// `pg_waldump --rmgr=Transaction FILE` with TZ=UTC: the latest COMMIT/ABORT time it prints.
async fn waldump(file: &Path, pg_bin_dir: &Path) -> Result<Option<DateTime<Utc>>, WindowError> {
    let out = Program::new(pg_bin_dir.join("pg_waldump"), WALDUMP_TIMEOUT)
        .arg("--rmgr=Transaction")
        .arg(file)
        .env("TZ", "UTC")
        .run()
        .await?;
    // pg_waldump exits 1 at the end of a partly filled segment: its output is still good.
    Ok(out.stdout.lines().filter_map(parse_xact_time).max())
}

/// `... desc: COMMIT 2026-11-26 09:51:33.052562 UTC; ...` (also ABORT, COMMIT_PREPARED, ...):
/// the end time of a transaction record, read by the one record parser
/// ([`crate::transactions::parse_record`]).
pub fn parse_xact_time(line: &str) -> Option<DateTime<Utc>> {
    match crate::transactions::parse_record(line)?.kind {
        crate::transactions::record::RecordKind::End { at, .. } => Some(at),
        _ => None,
    }
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
