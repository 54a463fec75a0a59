//! Retry: the paused restored copy is removed, and its directory is empty again for a recover
//! to another target. Only a copy proven still in recovery (or never started) goes; in place,
//! the pre-restore directory must be there. A crash here leaves the copy stopped, half removed
//! or gone; resume rolls back (in place: to the pre-restore directory; a preview: production
//! was never touched).

use super::super::guard::{is_cluster, RestoredCopy};
use super::super::{RestoreError, Step};
use super::{make_empty_data_dir, Cx};
use crate::restore::error::io;

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let (engine, plan) = (cx.engine, cx.plan);
    let copy = engine.restored_instance(plan, cx.run);
    if let RestoredCopy::Promoted { .. } = engine.stop_restored_copy(cx.run, plan, &copy).await? {
        return Err(RestoreError::Promoted {
            timeline: None,
            pre_restore: plan.pre_restore_dir.clone(),
        });
    }
    // In place, the original is in the pre-restore directory; in a preview, in the data
    // directory, serving. Either way it must be there before its copy goes.
    let original = match plan.mode.preview() {
        Some(_) => &plan.data_dir,
        None => &plan.pre_restore_dir,
    };
    // (A restore from the bucket onto a rebuilt host has no original.)
    if plan.source.has_original() && !is_cluster(original) {
        return Err(RestoreError::StepFailed {
            step: Step::Retry,
            message: format!(
                "the original data directory {} is missing; refusing to touch {}",
                original.display(),
                copy.data_dir().display()
            ),
        });
    }
    let dir = copy.data_dir();
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(io(format!(
            "cannot remove the restored copy {}",
            dir.display()
        )))?;
    }
    make_empty_data_dir(dir)?;
    // Another target may need another backup: held like the first one.
    if !plan.source.is_bucket() {
        engine.hold_backup(cx.run, cx.backup_id).await?;
    }
    Ok(Some("restored copy removed, its directory empty".into()))
}
