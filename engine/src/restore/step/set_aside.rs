//! Set aside: the data directory renamed (same filesystem: O(1), nothing copied, nothing
//! deleted) to `<state_dir>/pre-restore/<restore id>`, an empty one made in its place. A crash
//! here leaves the original either still in place or already renamed; both are found by
//! rollback, which moves it back.

use std::path::Path;

use super::super::error::io;
use super::super::guard::is_cluster;
use super::super::RestoreError;
use super::{make_empty_data_dir, sync_parents, Cx};
use crate::service::{Postmaster, ServiceControl, ServiceError};

pub(super) fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let data = &cx.plan.data_dir;
    let pre = &cx.plan.pre_restore_dir;
    if let Postmaster::Running { pid } = cx.engine.service().postmaster() {
        return Err(ServiceError::StillRunning {
            data_dir: data.clone(),
            pid,
        }
        .into());
    }
    if is_cluster(pre) && !is_cluster(data) {
        // Already set aside (a resumed run): just make sure the empty dir is there.
    } else if !cx.plan.source.has_original() && !is_cluster(data) {
        // A restore from the bucket onto a rebuilt host: there is nothing to keep.
        make_empty_data_dir(data)?;
        return Ok(Some(format!(
            "{} held no cluster: nothing to set aside",
            data.display()
        )));
    } else {
        if !is_cluster(data) {
            return Err(RestoreError::StepFailed {
                step: super::super::Step::SetAside,
                message: format!("{} holds no PostgreSQL cluster", data.display()),
            });
        }
        let parent = pre.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
        std::fs::rename(data, pre).map_err(io(format!(
            "cannot rename {} to {} (they must be on the same filesystem)",
            data.display(),
            pre.display()
        )))?;
        sync_parents(data, pre)?;
    }
    make_empty_data_dir(data)?;
    Ok(Some(format!(
        "original data directory kept at {}",
        pre.display()
    )))
}
