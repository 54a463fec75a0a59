//! The restore state machine of design.md: plan, archive, stop, set aside, recover,
//! start paused, verify, then accept | retry | roll back. Every step is journaled before and
//! after it runs (see `journal`), one host-wide lock allows one restore at a time, any failure
//! between archive and start-paused rolls back by itself, and `resume` on start-up finishes or
//! undoes whatever a crash interrupted. The data directory is never deleted while it is the only
//! copy: it is renamed into the state directory and stays there until the person discards it.

mod guard;
pub mod journal;
mod run;
pub mod space;
mod steps;
mod verify;

pub use guard::check_os_user;
pub use space::PreRestoreDir;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::barman::{Barman, BarmanError, CheckItem};
use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::probe::ProbeError;
use crate::service::{Service, ServiceError};
use crate::target::{TargetTime, TargetTimeError};
use crate::window::{RecoveryWindow, WindowError};
use journal::{Entry, Journal, JournalError, Record};

/// The steps, in the order a restore runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Validate the target, choose the backup, preflight, hold the backup against retention.
    Plan,
    /// Seal a commit after the target and force the current WAL segment into Barman.
    Archive,
    /// Stop PostgreSQL and prove it stopped.
    Stop,
    /// Rename the data directory into the state dir; create an empty one.
    SetAside,
    /// `barman recover --target-action pause` into the empty data directory.
    Recover,
    /// Start PostgreSQL and wait until replay is paused at the target.
    StartPaused,
    /// Back to an empty data directory for another target (after a verify).
    Retry,
    /// Re-enable archiving, promote, clean Barman's recovery settings, archive the new timeline.
    Accept,
    /// Put the pre-restore data directory back and start it.
    Rollback,
}

impl Step {
    pub fn name(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Archive => "archive",
            Step::Stop => "stop",
            Step::SetAside => "set_aside",
            Step::Recover => "recover",
            Step::StartPaused => "start_paused",
            Step::Retry => "retry",
            Step::Accept => "accept",
            Step::Rollback => "rollback",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The restored state is live on a new timeline; the pre-restore directory is kept.
    Accepted { timeline: i32 },
    /// The pre-restore state is back.
    RolledBack { reason: String },
}

/// What a restore will do, computed before anything is touched (the dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub restore_id: String,
    pub created_at: DateTime<Utc>,
    pub target: TargetTime,
    pub backup_id: String,
    pub backup_end: DateTime<Utc>,
    /// The timeline to follow (`--target-tli`): the server's current one when it is up.
    pub timeline: Option<u32>,
    pub data_dir: PathBuf,
    pub pre_restore_dir: PathBuf,
    pub server_was_running: bool,
    pub window: RecoveryWindow,
    pub checks: Vec<CheckItem>,
    /// Free space on the data directory's filesystem when planned.
    pub free_bytes: u64,
    /// What the restore writes there: the backup, the WAL to replay, a margin.
    pub needed_bytes: u64,
    /// Pre-restore data directories kept from earlier restores, on the same disk.
    #[serde(default)]
    pub pre_restore_kept: Vec<PreRestoreDir>,
    pub warnings: Vec<String>,
}

/// Where a restore stands, derived from its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A step is running (or was, when the process died).
    Running,
    /// PostgreSQL is paused at the target: the person verifies, then accepts, retries or rolls back.
    Paused,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreStatus {
    pub restore_id: String,
    pub state: Phase,
    pub plan: Plan,
    /// The target of the latest recover (a retry changes it).
    pub target: TargetTime,
    pub steps: Vec<StepRecord>,
    pub outcome: Option<Outcome>,
    pub log: Vec<String>,
    /// Backups barkeep holds against retention for this restore (released at the end).
    #[serde(default)]
    pub kept: Vec<String>,
    /// The timeline PostgreSQL was on when replay paused at the target.
    #[serde(default)]
    pub paused_timeline: Option<i32>,
}

impl RestoreStatus {
    pub fn from_entries(entries: &[Entry]) -> Option<Self> {
        let mut status: Option<RestoreStatus> = None;
        for e in entries {
            match &e.record {
                Record::Planned { plan } => {
                    status = Some(RestoreStatus {
                        restore_id: e.restore_id.clone(),
                        state: Phase::Running,
                        target: plan.target,
                        plan: (**plan).clone(),
                        steps: Vec::new(),
                        outcome: None,
                        log: Vec::new(),
                        kept: Vec::new(),
                        paused_timeline: None,
                    });
                }
                other => {
                    let Some(s) = status.as_mut() else { continue };
                    match other {
                        Record::StepStarted { step, target } => {
                            if let Some(t) = target {
                                s.target = *t;
                            }
                            s.state = Phase::Running;
                            s.steps.push(StepRecord {
                                step: *step,
                                started: e.at,
                                finished: None,
                                error: None,
                                detail: None,
                            });
                        }
                        Record::StepFinished { step, detail } => {
                            if let Some(r) = s.steps.iter_mut().rev().find(|r| r.step == *step) {
                                r.finished = Some(e.at);
                                r.detail = detail.clone();
                            }
                            if *step == Step::StartPaused {
                                s.state = Phase::Paused;
                            }
                        }
                        Record::StepFailed { step, error } => {
                            if let Some(r) = s.steps.iter_mut().rev().find(|r| r.step == *step) {
                                r.finished = Some(e.at);
                                r.error = Some(error.clone());
                            }
                        }
                        Record::Log { line } => s.log.push(line.clone()),
                        Record::Child { pgid, command } => s
                            .log
                            .push(format!("started (process group {pgid}): {command}")),
                        Record::BackupKept { backup_id } => s.kept.push(backup_id.clone()),
                        Record::PausedAt { timeline, .. } => s.paused_timeline = Some(*timeline),
                        Record::Closed { outcome } => {
                            s.state = Phase::Closed;
                            s.outcome = Some(outcome.clone());
                        }
                        Record::Planned { .. } => {}
                    }
                }
            }
        }
        status
    }

    /// The last step that started, and whether it finished.
    pub fn last_step(&self) -> Option<(Step, bool)> {
        self.steps
            .last()
            .map(|r| (r.step, r.finished.is_some() && r.error.is_none()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Target(#[from] TargetTimeError),
    #[error("the target {target} is {why}")]
    OutsideWindow { target: TargetTime, why: String },
    #[error("there is no backup with id {0:?}: choose one that `barman list-backups` shows")]
    UnknownBackup(String),
    #[error("backup {id} cannot be used for this target: {why}")]
    UnusableBackup { id: String, why: String },
    #[error(
        "a restore is already in progress ({id}, {state}): accept, retry or roll it back first"
    )]
    InProgress { id: String, state: String },
    #[error(
        "another barkeep process is working on a restore right now; try again when it is done"
    )]
    Busy,
    #[error("there is no restore in progress")]
    NoRestore,
    #[error("there is no kept pre-restore data directory for restore {0:?}: `barkeep restore status` and the history list the restores")]
    UnknownRestore(String),
    #[error(
        "PostgreSQL has left recovery (it was promoted{}): the restored database may have taken writes since, and rolling back or retrying would delete them. The restore can only be finished: accept it. The pre-restore data directory stays at {} for a manual return",
        timeline.map(|t| format!(", timeline {t}")).unwrap_or_default(),
        pre_restore.display()
    )]
    Promoted {
        timeline: Option<i32>,
        pre_restore: PathBuf,
    },
    #[error("barkeep must run as the OS user that owns {} ({owner}), not as {me}: run it as that user (e.g. `runuser -u <user> -- barkeep ...`); nothing was changed", dir.display())]
    WrongUser {
        me: String,
        owner: String,
        dir: PathBuf,
    },
    #[error("verify queries cannot run as the role {role}: {why}")]
    VerifyRole { role: String, why: String },
    #[error("{} cannot be set aside by a rename: {why}; nothing was changed", dir.display())]
    NotRenamable { dir: PathBuf, why: String },
    #[error("a restore is open ({0}): finish it (accept or roll back) before taking a backup, or Barman would back up the restored copy")]
    BackupDuringRestore(String),
    #[error("this needs a restore paused at its target, but the restore is {0}")]
    NotPaused(String),
    #[error(
        "the disk holding {} is full: {} needed, {} free{}",
        dir.display(),
        space::human(*needed),
        space::human(*free),
        if pre_restore_kept.is_empty() { String::new() } else { format!("; kept pre-restore directories take {} of it (discard the ones you no longer need: {})", space::human(pre_restore_kept.iter().map(|p| p.bytes).sum()), pre_restore_kept.iter().map(|p| p.restore_id.as_str()).collect::<Vec<_>>().join(", ")) }
    )]
    DiskFull {
        dir: PathBuf,
        needed: u64,
        free: u64,
        pre_restore_kept: Vec<PreRestoreDir>,
    },
    #[error("the backups belong to another PostgreSQL cluster (Barman has system id {barman}, the server {server})")]
    WrongCluster { barman: String, server: String },
    #[error("WAL is missing from Barman's archive ({first} and {count} more): a restore past the gap is impossible")]
    WalGap { first: String, count: usize },
    #[error("refusing to recover into {0}: it is not an empty directory")]
    DestinationNotEmpty(PathBuf),
    #[error("the query is refused: {0}")]
    Query(String),
    #[error("step {step} failed: {message}")]
    StepFailed { step: &'static str, message: String },
    #[error(transparent)]
    Children(#[from] crate::process::ProcessError),
    #[error("the restore failed at step {step} ({message}) and was rolled back: the server is as it was before")]
    RolledBack { step: &'static str, message: String },
    #[error("the restore failed at step {step} ({message}) and rolling back failed too ({rollback}): the original data directory is safe at {pre_restore}")]
    RollbackFailed {
        step: &'static str,
        message: String,
        rollback: String,
        pre_restore: PathBuf,
    },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Barman(#[from] BarmanError),
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// Rows of a verify query, as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub truncated: bool,
}

/// Live progress: every journal entry, as it is written.
pub type RestoreEvent = Entry;

/// The engine: one per process, shared by the web app and the CLI.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    barman: Barman,
    service: Service,
    events: broadcast::Sender<RestoreEvent>,
    /// In-process serialisation; the flock below serialises processes.
    running: tokio::sync::Mutex<()>,
    /// Shared reads for the dashboard and the plan: catalog, probe, the recovery-window cache.
    reads: crate::overview::ReadCache,
}

/// The host-wide restore lock: an exclusive flock on `<state_dir>/restore.lock`.
pub(crate) struct HostLock {
    _file: File,
}

impl HostLock {
    fn acquire(state_dir: &Path) -> Result<Self, RestoreError> {
        let path = state_dir.join("restore.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| RestoreError::Io {
                what: format!("cannot open the restore lock {}", path.display()),
                source,
            })?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _file: file }),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(RestoreError::Busy),
            Err(e) => Err(RestoreError::Io {
                what: format!("cannot lock {}", path.display()),
                source: e.into(),
            }),
        }
    }
}

impl Engine {
    /// Refuses, before writing anything, to run as another OS user than the cluster's owner.
    pub fn new(config: Arc<Config>) -> Result<Self, RestoreError> {
        check_os_user(&config)?;
        let service = Service::from_config(&config)?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| RestoreError::Io {
            what: format!(
                "cannot create the state directory {}",
                config.state_dir.display()
            ),
            source,
        })?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            inner: Arc::new(Inner {
                barman: Barman::new(&config.barman),
                service,
                config,
                events,
                running: tokio::sync::Mutex::new(()),
                reads: crate::overview::ReadCache::default(),
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn reads(&self) -> &crate::overview::ReadCache {
        &self.inner.reads
    }

    pub fn barman(&self) -> &Barman {
        &self.inner.barman
    }

    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// Follow restores live: every journal entry as it is written.
    pub fn subscribe(&self) -> broadcast::Receiver<RestoreEvent> {
        self.inner.events.subscribe()
    }

    /// Barman's catalog, read from disk now.
    pub fn catalog(&self) -> Result<Catalog, CatalogError> {
        let c = &self.inner.config;
        Catalog::read(
            &c.server_home(),
            &c.barman
                .home
                .join(format!(".{}-xlogdb.lock", c.barman.server)),
        )
    }

    /// The restore in progress, if any, or the most recently closed one.
    pub fn status(&self) -> Result<Option<RestoreStatus>, RestoreError> {
        let state_dir = &self.inner.config.state_dir;
        if let Some(entries) = journal::read(&Journal::current_path(state_dir))? {
            return Ok(RestoreStatus::from_entries(&entries));
        }
        let dir = state_dir.join("restores");
        let newest = std::fs::read_dir(&dir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "journal"))
            .max();
        match newest {
            Some(p) => Ok(journal::read(&p)?.and_then(|e| RestoreStatus::from_entries(&e))),
            None => Ok(None),
        }
    }

    /// Pre-restore data directories kept in the state dir, oldest first, with their size.
    pub fn pre_restore_dirs(&self) -> Vec<PreRestoreDir> {
        let dir = self.inner.config.state_dir.join("pre-restore");
        let mut v: Vec<PreRestoreDir> = std::fs::read_dir(dir)
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let restore_id = e.file_name().to_str()?.to_owned();
                let path = e.path();
                Some(PreRestoreDir {
                    bytes: space::disk_usage(&path),
                    restore_id,
                    path,
                })
            })
            .collect();
        v.sort_by(|a, b| a.restore_id.cmp(&b.restore_id));
        v
    }

    async fn exclusive(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, HostLock), RestoreError> {
        let guard = self
            .inner
            .running
            .try_lock()
            .map_err(|_| RestoreError::Busy)?;
        let lock = HostLock::acquire(&self.inner.config.state_dir)?;
        Ok((guard, lock))
    }
}
