//! Why a restore operation refused or failed, in words the person can act on.

use std::path::PathBuf;

use super::journal::JournalError;
use super::space::{self, PreRestoreDir};
use super::Step;
use crate::barman::BarmanError;
use crate::catalog::CatalogError;
use crate::probe::ProbeError;
use crate::service::ServiceError;
use crate::target::{RestoreTarget, TargetTimeError};
use crate::window::WindowError;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("{0}")]
    Target(#[from] TargetTimeError),
    #[error("the target {target} is {why}")]
    OutsideWindow { target: RestoreTarget, why: String },
    #[error(
        "transaction {xid} does not end in the WAL Barman holds between {} and {}: choose one \
         from the list of transactions (`barkeep restore transactions`)",
        from.format("%Y-%m-%d %H:%M:%S UTC"),
        to.format("%Y-%m-%d %H:%M:%S UTC")
    )]
    UnknownTransaction {
        xid: u32,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    },
    #[error("there is no backup with id {0:?}: choose one that `barman list-backups` shows")]
    UnknownBackup(String),
    #[error("the bucket holds no finished backup with id {0:?}: choose one that `barkeep offsite list` shows")]
    UnknownOffsiteBackup(String),
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
    #[error("a restore is open ({id}): finish it (accept or roll back) before {action}, or it would act on the restored copy")]
    DuringRestore { id: String, action: &'static str },
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
    #[error("a preview restore cannot run here: {}", .0.join("; "))]
    PreviewUnavailable(Vec<String>),
    #[error("refusing to recover into {0}: it is not an empty directory")]
    DestinationNotEmpty(PathBuf),
    #[error("the query is refused: {0}")]
    Query(String),
    #[error("step {step} failed: {message}")]
    StepFailed { step: Step, message: String },
    #[error(transparent)]
    Children(#[from] crate::process::ProcessError),
    #[error("the restore failed at step {step} ({message}) and was rolled back: the server is as it was before")]
    RolledBack { step: Step, message: String },
    #[error("the restore failed at step {step} ({message}) and rolling back failed too ({rollback}): the original data directory is safe at {pre_restore}")]
    RollbackFailed {
        step: Step,
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
    Admin(#[from] crate::admin::AdminError),
    #[error(transparent)]
    Window(#[from] WindowError),
    #[error(transparent)]
    Offsite(#[from] crate::offsite::OffsiteError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// `map_err(io("cannot do X"))`: an I/O error with what barkeep was doing.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { what, source }
}
