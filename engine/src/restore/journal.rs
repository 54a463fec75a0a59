//! The restore journal: one JSON object per line, appended and fsync'd before and after every
//! step, so that a crash at any point can be resumed or rolled back from what it says.
//! [`StateDir::journal`] is the restore in progress; a closed restore's journal moves to
//! [`StateDir::history_journal`].

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Outcome, Plan, Step};
use crate::state_dir::StateDir;
use crate::target::RestoreTarget;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write the restore journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the restore journal {path} is damaged at line {line}: {message}")]
    Damaged {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Record {
    Planned {
        plan: Box<Plan>,
    },
    StepStarted {
        step: Step,
        target: Option<RestoreTarget>,
    },
    StepFinished {
        step: Step,
        detail: Option<String>,
    },
    StepFailed {
        step: Step,
        error: String,
    },
    Log {
        line: String,
    },
    /// A child that can outlive barkeep (barman, pg_ctl) started in this process group; it is
    /// also marked with the restore id in its environment (`process::RESTORE_MARK`).
    Child {
        pgid: i32,
        command: String,
    },
    /// barkeep is about to hold this backup against retention (`barman keep`); recorded BEFORE
    /// the keep, so that a crash in between still releases it.
    BackupKept {
        backup_id: String,
    },
    /// What PostgreSQL said when replay paused at the target: the state every later step checks
    /// against before it destroys anything.
    PausedAt {
        timeline: i32,
        last_replayed: Option<DateTime<Utc>>,
    },
    Closed {
        outcome: Outcome,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub restore_id: String,
    #[serde(flatten)]
    pub record: Record,
}

pub struct Journal {
    path: PathBuf,
    file: File,
    next_seq: u64,
    restore_id: String,
    /// A file of written zeros beside the journal, on its filesystem: released (and the
    /// filesystem synced, or ext4 hands the blocks back only at its next commit) when a write
    /// meets a full disk, so that the failure of a step and the rollback after it are journaled.
    /// (Blocks preallocated with fallocate do not do: on a full ext4 the write into them still
    /// failed with ENOSPC here.)
    reserve: PathBuf,
}

/// Bytes held by the reserve: thousands of journal lines.
const RESERVE_BYTES: usize = 1 << 20;

impl Journal {
    /// Creates the journal of a new restore; refuses if one exists.
    pub fn create(state_dir: &StateDir, restore_id: &str) -> Result<Self, JournalError> {
        let path = state_dir.journal();
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        let reserve = state_dir.journal_reserve();
        if let Err(e) = write_reserve(&reserve) {
            tracing::warn!(path = %reserve.display(), error = %e, "cannot hold space for the restore journal");
            let _ = std::fs::remove_file(&reserve);
        }
        sync_dir(state_dir.root()).map_err(|source| JournalError::Io {
            path: state_dir.root().to_owned(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            next_seq: 1,
            restore_id: restore_id.to_owned(),
            reserve,
        })
    }

    /// Opens the journal of the restore in progress for appending.
    pub fn open_current(state_dir: &StateDir) -> Result<Option<(Self, Vec<Entry>)>, JournalError> {
        let path = state_dir.journal();
        let entries = match read(&path)? {
            Some(e) => e,
            None => return Ok(None),
        };
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let restore_id = first.restore_id.clone();
        let next_seq = entries.last().map_or(1, |e| e.seq + 1);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new().append(true).open(&path).map_err(io)?;
        // A line torn by a crash or a full disk is cut off before anything is appended: left
        // in place it would sit in the middle of the journal and damage it for good.
        let bytes = std::fs::read(&path).map_err(io)?;
        let good = good_length(&bytes);
        if bytes.len() > good {
            let mut file = &file;
            if serde_json::from_slice::<Entry>(&bytes[good..]).is_ok() {
                // Whole but for its newline: end it.
                file.write_all(b"\n").map_err(io)?;
            } else {
                tracing::warn!(path = %path.display(), "truncating a torn last line of the restore journal");
                file.set_len(good as u64).map_err(io)?;
            }
            file.sync_data().map_err(io)?;
        }
        Ok(Some((
            Self {
                path,
                file,
                next_seq,
                restore_id,
                reserve: state_dir.journal_reserve(),
            },
            entries,
        )))
    }

    pub fn restore_id(&self) -> &str {
        &self.restore_id
    }

    /// Appends one record. Step boundaries are fsync'd; log lines are not (they are many and
    /// only informative).
    pub fn append(&mut self, record: Record) -> Result<Entry, JournalError> {
        let entry = Entry {
            seq: self.next_seq,
            at: Utc::now(),
            restore_id: self.restore_id.clone(),
            record,
        };
        let mut line = serde_json::to_string(&entry).map_err(|e| JournalError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        line.push('\n');
        let durable = !matches!(entry.record, Record::Log { .. });
        match self.write_line(line.as_bytes(), durable) {
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
                if std::fs::remove_file(&self.reserve).is_ok() {
                    tracing::warn!("the disk is full: released the restore journal's reserve");
                    if let Some(dir) = self.path.parent() {
                        if let Ok(d) = File::open(dir) {
                            let _ = rustix::fs::syncfs(&d);
                        }
                    }
                }
                self.write_line(line.as_bytes(), durable)
            }
            other => other,
        }
        .map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        self.next_seq += 1;
        Ok(entry)
    }

    /// One whole line or nothing: a partial write is cut off again.
    fn write_line(&mut self, line: &[u8], durable: bool) -> std::io::Result<()> {
        let before = self.file.metadata()?.len();
        let result = self.file.write_all(line).and_then(|()| {
            if durable {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        if result.is_err() && self.file.metadata().is_ok_and(|m| m.len() != before) {
            let _ = self.file.set_len(before);
        }
        result
    }

    /// Moves a closed journal to `restores/<id>.journal`.
    pub fn archive(self, state_dir: &StateDir) -> Result<PathBuf, JournalError> {
        let dir = state_dir.history();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let dest = state_dir.history_journal(&self.restore_id);
        std::fs::rename(&self.path, &dest).map_err(io(&dest))?;
        let _ = std::fs::remove_file(&self.reserve);
        sync_dir(state_dir.root()).map_err(io(state_dir.root()))?;
        sync_dir(&dir).map_err(io(&dir))?;
        Ok(dest)
    }
}

/// Reads a journal; a torn last line (a crash in the middle of a write) is ignored.
pub fn read(path: &Path) -> Result<Option<Vec<Entry>>, JournalError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(JournalError::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<Result<_, _>>()
        .map_err(|source| JournalError::Io {
            path: path.to_owned(),
            source,
        })?;
    let mut entries = Vec::with_capacity(lines.len());
    let last = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(e) => entries.push(e),
            Err(_) if i + 1 == last => {
                tracing::warn!(path = %path.display(), "ignoring a torn last line of the restore journal");
            }
            Err(e) => {
                return Err(JournalError::Damaged {
                    path: path.to_owned(),
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(Some(entries))
}

/// The length of the journal up to the end of its last complete, readable line.
fn good_length(bytes: &[u8]) -> usize {
    let mut good = 0usize;
    let mut start = 0usize;
    while let Some(nl) = bytes[start..].iter().position(|b| *b == b'\n') {
        let end = start + nl;
        let line = &bytes[start..end];
        if line.iter().all(u8::is_ascii_whitespace) || serde_json::from_slice::<Entry>(line).is_ok()
        {
            good = end + 1;
        } else {
            break;
        }
        start = end + 1;
    }
    good
}

fn write_reserve(path: &Path) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(&vec![0u8; RESERVE_BYTES])?;
    f.sync_all()
}

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(line: &str) -> Record {
        Record::Log { line: line.into() }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_the_journal_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let mut j = Journal::create(&state, "r1").expect("create");
        let reserve = state.journal_reserve();
        assert_eq!(
            std::fs::metadata(&reserve).map(|m| m.len()).ok(),
            Some(RESERVE_BYTES as u64),
            "space is held"
        );
        j.append(log("one")).expect("append");
        j.append(log("two")).expect("append");
        drop(j);
        // A crash (or ENOSPC) in the middle of the third line.
        let path = state.journal();
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(br#"{"seq":3,"at":"2026-11-2"#).expect("tear");
        drop(f);
        assert_eq!(read(&path).expect("readable").expect("exists").len(), 2);

        let (mut j, entries) = Journal::open_current(&state)
            .expect("opens")
            .expect("exists");
        assert_eq!(entries.len(), 2);
        j.append(log("three")).expect("append after the torn line");
        drop(j);
        let entries = read(&path).expect("not damaged").expect("exists");
        let lines: Vec<_> = entries
            .iter()
            .map(|e| match &e.record {
                Record::Log { line } => line.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(lines, ["one", "two", "three"]);
        assert_eq!(entries[2].seq, 3);
    }

    #[test]
    fn a_last_line_missing_only_its_newline_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateDir::new(dir.path());
        let mut j = Journal::create(&state, "r1").expect("create");
        j.append(log("one")).expect("append");
        drop(j);
        let path = state.journal();
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.trim_end()).expect("cut the newline");
        let (mut j, _) = Journal::open_current(&state)
            .expect("opens")
            .expect("exists");
        j.append(log("two")).expect("append");
        assert_eq!(read(&path).expect("ok").expect("exists").len(), 2);
    }
}
