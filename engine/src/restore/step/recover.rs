//! Recover: `barman recover --target-time <t> --target-action pause` into the empty data
//! directory, or a preview's empty side directory (TZ=UTC, the target as `+00:00`). Barman
//! refuses neither a live server nor a non-empty destination (docs/barman.md): both are
//! refused here first. A preview that holds writes turns the hold on here, before the copy. A crash here leaves
//! barman and its rsync possibly still writing and a half-written copy; resume kills every
//! process marked with the restore id, waits until none is left, then rolls back.

use std::path::Path;

use super::super::error::io;
use super::super::{space, RestoreError};
use super::{make_empty_data_dir, Cx};
use crate::barman::BarmanError;
use crate::service::{Postmaster, ServiceError};
use crate::{admin, probe};

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let (engine, plan, backup_id) = (cx.engine, cx.plan, cx.backup_id);
    let copy = engine.restored_instance(plan, cx.run);
    let data = copy.data_dir().to_owned();
    let data = &data;
    if let Postmaster::Running { pid } = copy.postmaster() {
        return Err(ServiceError::StillRunning {
            data_dir: data.clone(),
            pid,
        }
        .into());
    }
    if let Some(preview) = plan.mode.preview() {
        if let Some(parent) = data.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("cannot create {}", parent.display())))?;
        }
        make_empty_data_dir(data)?;
        if preview.hold_writes {
            let client = probe::connect(&engine.config().postgres, None).await?;
            admin::hold_writes(&client).await?;
            cx.run
                .log("production holds writes until the preview ends")?;
        }
    }
    let empty = std::fs::read_dir(data)
        .map_err(io(format!("cannot read {}", data.display())))?
        .next()
        .is_none();
    if !empty {
        return Err(RestoreError::DestinationNotEmpty(data.clone()));
    }
    if plan.source.is_bucket() {
        return super::super::from_bucket::recover(cx, data).await;
    }
    match engine
        .barman()
        .recover(backup_id, data, cx.target, plan.timeline)
        .await
    {
        Ok(out) => {
            cx.run.log_output(&out)?;
            Ok(Some(format!(
                "barman recover {backup_id} in {} ms",
                out.elapsed_ms
            )))
        }
        Err(e) => {
            if let BarmanError::Failed { output, .. } = &e {
                cx.run.log_output(output)?;
                if space::says_disk_full(&format!("{}{}", output.stdout, output.stderr)) {
                    return Err(disk_full(cx, data));
                }
            }
            Err(e.into())
        }
    }
}

/// A recover that ran out of space: what it needed and what is free, in words.
fn disk_full(cx: &Cx<'_>, data: &Path) -> RestoreError {
    let parent = data.parent().unwrap_or(Path::new("/"));
    let needed = cx
        .engine
        .catalog()
        .ok()
        .and_then(|c| c.backup(cx.backup_id).map(|b| space::needed_bytes(&c, b)))
        .unwrap_or(cx.plan.needed_bytes);
    RestoreError::DiskFull {
        dir: parent.to_owned(),
        needed,
        free: space::free_bytes(parent).unwrap_or(0),
        pre_restore_kept: cx.engine.pre_restore_dirs(),
    }
}
