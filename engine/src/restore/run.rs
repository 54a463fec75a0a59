//! A journaled run of one restore operation: every step between its `started` and its
//! `finished`/`failed` entries, every child process it starts recorded (process group) and
//! marked with the restore id.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::fault;
use super::journal::{Entry, Journal, Record};
use super::{RestoreError, Step};
use crate::process::{ChildObserver, OBSERVER};
use crate::state_dir::StateDir;
use crate::target::RestoreTarget;

/// The journal of one restore and what it says so far, shared with the child observer.
pub(crate) struct Recorder {
    journal: Mutex<Journal>,
    restore_id: String,
    data_dir: PathBuf,
    step: Mutex<Option<Step>>,
    kept: Mutex<Vec<String>>,
    server_started: AtomicBool,
    swap_begun: AtomicBool,
    paused_timeline: Mutex<Option<i32>>,
}

impl Recorder {
    fn record(&self, record: Record) -> Result<(), RestoreError> {
        match &record {
            Record::StepStarted { step, .. } => {
                *lock(&self.step) = Some(*step);
                if *step == Step::StartPaused {
                    self.server_started.store(true, Ordering::SeqCst);
                }
                if *step == Step::Swap {
                    self.swap_begun.store(true, Ordering::SeqCst);
                }
            }
            Record::BackupKept { backup_id } => lock(&self.kept).push(backup_id.clone()),
            Record::PausedAt { timeline, .. } => *lock(&self.paused_timeline) = Some(*timeline),
            _ => {}
        }
        let point = fault::point(&record);
        let informative = matches!(record, Record::Log { .. } | Record::Child { .. });
        match lock(&self.journal).append(record) {
            Ok(_) => {}
            // A log line that cannot be written (a full disk) must not fail the step, nor the
            // rollback after it: the step boundaries are what resume needs.
            Err(e) if informative => {
                tracing::warn!(error = %e, "a restore log line was not journaled");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(point) = point {
            fault::at_entry(&point);
        }
        Ok(())
    }
}

impl ChildObserver for Recorder {
    fn restore_id(&self) -> Option<String> {
        Some(self.restore_id.clone())
    }

    fn started(&self, pgid: i32, command: &str) {
        if let Err(e) = self.record(Record::Child {
            pgid,
            command: command.to_owned(),
        }) {
            // The child is marked in its environment: resume finds it without this entry.
            tracing::warn!(error = %e, pgid, "cannot journal a child process");
        }
        if let Some(step) = *lock(&self.step) {
            fault::in_child(step, &self.data_dir);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One operation's run over the journal of the restore in progress.
pub(crate) struct Run {
    recorder: Arc<Recorder>,
}

impl Run {
    /// `entries`: what the journal already holds (empty for a new restore); `data_dir`: where
    /// the restored copy is recovered (the fault injection watches it).
    pub(crate) fn new(journal: Journal, entries: &[Entry], data_dir: &Path) -> Self {
        let mut kept = Vec::new();
        let mut started = false;
        let mut swap = false;
        let mut paused = None;
        for e in entries {
            match &e.record {
                Record::BackupKept { backup_id } => kept.push(backup_id.clone()),
                Record::StepStarted {
                    step: Step::StartPaused,
                    ..
                } => started = true,
                Record::StepStarted {
                    step: Step::Swap, ..
                } => swap = true,
                Record::PausedAt { timeline, .. } => paused = Some(*timeline),
                _ => {}
            }
        }
        let restore_id = journal.restore_id().to_owned();
        Self {
            recorder: Arc::new(Recorder {
                journal: Mutex::new(journal),
                restore_id,
                data_dir: data_dir.to_owned(),
                step: Mutex::new(None),
                kept: Mutex::new(kept),
                server_started: AtomicBool::new(started),
                swap_begun: AtomicBool::new(swap),
                paused_timeline: Mutex::new(paused),
            }),
        }
    }

    pub(crate) fn restore_id(&self) -> &str {
        &self.recorder.restore_id
    }

    pub(crate) fn record(&self, record: Record) -> Result<(), RestoreError> {
        self.recorder.record(record)
    }

    pub(crate) fn log(&self, line: impl Into<String>) -> Result<(), RestoreError> {
        let line = line.into();
        tracing::info!("{line}");
        self.record(Record::Log { line })
    }

    pub(crate) fn log_output(
        &self,
        out: &crate::process::CommandOutput,
    ) -> Result<(), RestoreError> {
        self.log(format!(
            "$ barman {} ({} ms, exit {:?})",
            out.command, out.elapsed_ms, out.code
        ))?;
        // A failing rsync can print a line per file: the head and the tail tell the story.
        const HEAD: usize = 20;
        const TAIL: usize = 40;
        let lines: Vec<&str> = out.lines().collect();
        if lines.len() <= HEAD + TAIL {
            for l in lines {
                self.log(format!("  {l}"))?;
            }
        } else {
            for l in &lines[..HEAD] {
                self.log(format!("  {l}"))?;
            }
            self.log(format!(
                "  ... {} lines omitted ...",
                lines.len() - HEAD - TAIL
            ))?;
            for l in &lines[lines.len() - TAIL..] {
                self.log(format!("  {l}"))?;
            }
        }
        Ok(())
    }

    /// Backups barkeep holds against retention for this restore (released at the end).
    pub(crate) fn kept(&self) -> Vec<String> {
        lock(&self.recorder.kept).clone()
    }

    /// Whether the restored copy was ever started: before that it is a copy of a backup and
    /// may go; after it, only a copy PROVEN still in recovery may.
    pub(crate) fn server_started(&self) -> bool {
        self.recorder.server_started.load(Ordering::SeqCst)
    }

    /// Whether a preview's swap has begun: from then on the restored copy may be in the data
    /// directory's place, and production in the pre-restore directory.
    pub(crate) fn swap_begun(&self) -> bool {
        self.recorder.swap_begun.load(Ordering::SeqCst)
    }

    pub(crate) fn paused_timeline(&self) -> Option<i32> {
        *lock(&self.recorder.paused_timeline)
    }

    /// Runs one step between its journal entries; children it spawns are recorded and marked.
    /// The future starts only when awaited, after the `started` entry is on disk.
    pub(crate) async fn step<T>(
        &self,
        step: Step,
        target: Option<RestoreTarget>,
        body: impl std::future::Future<Output = Result<(T, Option<String>), RestoreError>>,
    ) -> Result<T, RestoreError> {
        self.record(Record::StepStarted { step, target })?;
        let started = std::time::Instant::now();
        let observer: Arc<dyn ChildObserver> = self.recorder.clone();
        match OBSERVER.scope(observer, body).await {
            Ok((value, detail)) => {
                let ms = started.elapsed().as_millis();
                let detail = Some(match detail {
                    Some(d) => format!("{d} ({ms} ms)"),
                    None => format!("{ms} ms"),
                });
                self.record(Record::StepFinished { step, detail })?;
                Ok(value)
            }
            Err(e) => {
                self.record(Record::StepFailed {
                    step,
                    error: e.to_string(),
                })?;
                Err(e)
            }
        }
    }

    /// Moves the closed journal to the history.
    pub(crate) fn archive(self, state_dir: &StateDir) -> Result<(), RestoreError> {
        let recorder = Arc::try_unwrap(self.recorder).map_err(|_| RestoreError::Io {
            what: "the restore journal is still in use".into(),
            source: std::io::Error::other("busy"),
        })?;
        let journal = recorder
            .journal
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        journal.archive(state_dir)?;
        Ok(())
    }
}
