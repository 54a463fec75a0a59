//! Retry: the paused restored copy is removed, and the data directory is empty again for a
//! recover to another target. Only a copy proven still in recovery (or never started) goes;
//! the pre-restore directory must be there. A crash here leaves the copy stopped, half
//! removed or gone; resume rolls back to the pre-restore directory.

use super::super::guard::{is_cluster, RestoredCopy};
use super::super::{RestoreError, Step};
use super::{make_empty_data_dir, Cx};
use crate::restore::error::io;

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let (engine, plan) = (cx.engine, cx.plan);
    if let RestoredCopy::Promoted { .. } = engine.stop_restored_copy(cx.run, plan).await? {
        return Err(RestoreError::Promoted {
            timeline: None,
            pre_restore: plan.pre_restore_dir.clone(),
        });
    }
    if !is_cluster(&plan.pre_restore_dir) {
        return Err(RestoreError::StepFailed {
            step: Step::Retry,
            message: format!(
                "the pre-restore directory {} is missing; refusing to touch {}",
                plan.pre_restore_dir.display(),
                plan.data_dir.display()
            ),
        });
    }
    if plan.data_dir.exists() {
        std::fs::remove_dir_all(&plan.data_dir).map_err(io(format!(
            "cannot remove the restored copy {}",
            plan.data_dir.display()
        )))?;
    }
    make_empty_data_dir(&plan.data_dir)?;
    // Another target may need another backup: held like the first one.
    engine.hold_backup(cx.run, cx.backup_id).await?;
    Ok(Some("restored copy removed, data directory empty".into()))
}
