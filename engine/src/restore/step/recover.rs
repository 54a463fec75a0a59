//! Recover: `barman recover --target-time <t> --target-action pause` into the empty data
//! directory (TZ=UTC, the target as `+00:00`). Barman refuses neither a live server nor a
//! non-empty destination (docs/barman.md): both are refused here first. A crash here leaves
//! barman and its rsync possibly still writing and a half-written copy; resume kills every
//! process marked with the restore id, waits until none is left, then rolls back.

use std::path::Path;

use super::super::error::io;
use super::super::{space, RestoreError};
use super::Cx;
use crate::barman::BarmanError;
use crate::service::{Postmaster, ServiceControl, ServiceError};

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let (engine, plan, backup_id) = (cx.engine, cx.plan, cx.backup_id);
    let data = &plan.data_dir;
    if let Postmaster::Running { pid } = engine.service().postmaster() {
        return Err(ServiceError::StillRunning {
            data_dir: data.clone(),
            pid,
        }
        .into());
    }
    let empty = std::fs::read_dir(data)
        .map_err(io(format!("cannot read {}", data.display())))?
        .next()
        .is_none();
    if !empty {
        return Err(RestoreError::DestinationNotEmpty(data.clone()));
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
