//! One file per step of the restore. Each step is a function of the [`Cx`] it runs in and
//! returns the detail its `finished` journal entry carries; `Run::step` journals it, and the
//! order they run in is [`Step::FORWARD`](super::Step::FORWARD), walked by
//! `operations::run_to_paused`.

pub(super) mod accept;
mod archive;
mod recover;
mod retry;
pub(super) mod rollback;
mod set_aside;
pub(super) mod start_paused;
mod stop;
pub(super) mod swap;

use std::path::Path;

use super::error::io;
use super::journal::sync_dir;
use super::run::Run;
use super::{Plan, RestoreError, Step};
use crate::target::RestoreTarget;
use crate::Engine;

/// What a step of the way to paused runs with.
pub(super) struct Cx<'a> {
    pub engine: &'a Engine,
    pub run: &'a Run,
    pub plan: &'a Plan,
    /// The target of this pass (a retry changes it).
    pub target: RestoreTarget,
    /// The backup of this pass (a retry may change it).
    pub backup_id: &'a str,
}

impl Cx<'_> {
    /// Whether `step` runs in this restore (Barman's `_should_execute`): the archive step only
    /// when PostgreSQL was up to commit and archive a transaction after the target.
    pub(super) fn applies(&self, step: Step) -> bool {
        step != Step::Archive || (self.plan.server_was_running && !self.plan.source.is_bucket())
    }

    /// Runs one step of the way to paused; its journal entries are written by the caller.
    pub(super) async fn execute(&self, step: Step) -> Result<Option<String>, RestoreError> {
        match step {
            Step::Plan => {
                for w in &self.plan.warnings {
                    self.run.log(format!("warning: {w}"))?;
                }
                if !self.plan.source.is_bucket() {
                    self.engine.hold_backup(self.run, self.backup_id).await?;
                }
                Ok(Some(format!(
                    "backup {} for target {}",
                    self.plan.backup_id, self.plan.target
                )))
            }
            Step::Archive => archive::run(self).await,
            Step::Stop => stop::run(self.engine).await,
            Step::SetAside => set_aside::run(self),
            Step::Retry => retry::run(self).await,
            Step::Recover => recover::run(self).await,
            Step::StartPaused => start_paused::run(self).await,
            Step::Swap | Step::Accept | Step::Rollback => Err(RestoreError::StepFailed {
                step,
                message: "not a step on the way to paused".into(),
            }),
        }
    }
}

/// An empty data directory with PostgreSQL's mode (0700), synced into its parent (also the
/// restore-from-bucket's `barman_wal/`).
pub(super) fn make_empty_data_dir(dir: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("cannot set the mode of {}", dir.display())))?;
        }
        Err(e) => return Err(io(format!("cannot create {}", dir.display()))(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(io(format!("cannot sync {}", parent.display())))?;
    }
    Ok(())
}

/// After a rename: both parents' entries on disk.
fn sync_parents(a: &Path, b: &Path) -> Result<(), RestoreError> {
    for p in [a.parent(), b.parent()].into_iter().flatten() {
        sync_dir(p).map_err(io(format!("cannot sync {}", p.display())))?;
    }
    Ok(())
}
