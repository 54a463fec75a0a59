//! The restore journal: one JSON object per line, appended and fsync'd before and after every
//! step, so that a crash at any point can be resumed or rolled back from what it says.
//! `<state_dir>/restore.journal` is the restore in progress; a closed restore's journal moves to
//! `<state_dir>/restores/<id>.journal`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Outcome, Plan, Step};
use crate::target::TargetTime;

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
        target: Option<TargetTime>,
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
}

impl Journal {
    pub fn current_path(state_dir: &Path) -> PathBuf {
        state_dir.join("restore.journal")
    }

    /// Creates the journal of a new restore; refuses if one exists.
    pub fn create(state_dir: &Path, restore_id: &str) -> Result<Self, JournalError> {
        let path = Self::current_path(state_dir);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        sync_dir(state_dir).map_err(|source| JournalError::Io {
            path: state_dir.to_owned(),
            source,
        })?;
        Ok(Self {
            path,
            file,
            next_seq: 1,
            restore_id: restore_id.to_owned(),
        })
    }

    /// Opens the journal of the restore in progress for appending.
    pub fn open_current(state_dir: &Path) -> Result<Option<(Self, Vec<Entry>)>, JournalError> {
        let path = Self::current_path(state_dir);
        let entries = match read(&path)? {
            Some(e) => e,
            None => return Ok(None),
        };
        let Some(first) = entries.first() else {
            return Ok(None);
        };
        let restore_id = first.restore_id.clone();
        let next_seq = entries.last().map_or(1, |e| e.seq + 1);
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|source| JournalError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(Some((
            Self {
                path,
                file,
                next_seq,
                restore_id,
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
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        if !matches!(entry.record, Record::Log { .. }) {
            self.file.sync_data().map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        self.next_seq += 1;
        Ok(entry)
    }

    /// Moves a closed journal to `restores/<id>.journal`.
    pub fn archive(self, state_dir: &Path) -> Result<PathBuf, JournalError> {
        let dir = state_dir.join("restores");
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let dest = dir.join(format!("{}.journal", self.restore_id));
        std::fs::rename(&self.path, &dest).map_err(io(&dest))?;
        sync_dir(state_dir).map_err(io(state_dir))?;
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

pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
