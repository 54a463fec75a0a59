//! The audit log: one JSON object per line in [`StateDir::audit_log`], appended for every
//! sign-in (whether it worked or not), sign-out and action: who, when (UTC), from where, what,
//! on what, and how it ended. Appends are single `write`s on an `O_APPEND` file, so lines from
//! concurrent requests never interleave; each is synced, as a restore's journal is.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state_dir::StateDir;

#[derive(Debug, thiserror::Error)]
#[error("cannot write the audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// The user name; for a failed sign-in, the name that was tried.
    pub who: String,
    /// The client address.
    pub from: String,
    /// `sign_in`, `sign_out`, `restore_start`, `backup`, ...
    pub what: String,
    /// What it was about (a target time, a backup or restore id), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, or why it did not happen.
    pub outcome: String,
}

/// The audit log of one state directory.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    pub fn new(state_dir: &StateDir) -> Self {
        Self {
            path: state_dir.audit_log(),
        }
    }

    /// Appends one entry (blocking I/O: a line and an fsync).
    pub fn append(&self, entry: &AuditEntry) -> Result<(), AuditError> {
        let err = |source| AuditError {
            path: self.path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(entry).map_err(|e| err(e.into()))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(&line).map_err(err)?;
        f.sync_data().map_err(err)
    }

    /// Appends on a blocking thread, for async callers. A failure is logged, not returned: the
    /// answer to the action it records still goes out.
    pub async fn record(&self, entry: AuditEntry) {
        let log = self.clone();
        match tokio::task::spawn_blocking(move || log.append(&entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot write the audit log"),
            Err(e) => tracing::error!(error = %e, "the audit log writer stopped"),
        }
    }

    /// The newest `max` entries, newest first; unreadable lines are skipped.
    pub fn recent(&self, max: usize) -> Vec<AuditEntry> {
        let Ok(f) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        let all: Vec<AuditEntry> = BufReader::new(f)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect();
        all.into_iter().rev().take(max).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_appended_and_read_back_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AuditLog::new(&StateDir::new(dir.path()));
        assert!(log.recent(10).is_empty());
        for (who, outcome) in [("alice", "ok"), ("mallory", "wrong name or password")] {
            log.append(&AuditEntry {
                at: Utc::now(),
                who: who.into(),
                from: "127.0.0.1".into(),
                what: "sign_in".into(),
                target: None,
                outcome: outcome.into(),
            })
            .expect("appended");
        }
        let recent = log.recent(10);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].who, "mallory");
        assert_eq!(recent[1].outcome, "ok");
        assert_eq!(log.recent(1).len(), 1);
    }
}
