//! Roll back: the pre-restore data directory back in place and started, as if the restore had
//! never run. Before any directory is touched, every process marked with the restore id
//! (barman, its rsync, pg_ctl) is killed and proven gone, and the restored copy is proven never
//! promoted (a promoted copy is live data and is never deleted). The restored copy goes FIRST
//! (on a full disk that is what makes room), then the rename back. A crash here is finished by
//! resume running it again: each part finds what the last one left.

use super::super::error::io;
use super::super::guard::{is_cluster, RestoredCopy};
use super::super::run::Run;
use super::super::{Plan, RestoreError, Step};
use super::sync_parents;
use crate::service::ServiceControl;
use crate::Engine;

pub(in crate::restore) async fn run(
    engine: &Engine,
    run: &Run,
    plan: &Plan,
    reason: &str,
) -> Result<Option<String>, RestoreError> {
    let killed = crate::process::kill_restore_children(run.restore_id()).await?;
    if killed > 0 {
        run.log(format!(
            "stopped {killed} process(es) left by the interrupted step"
        ))?;
    }
    let (pre, data) = (&plan.pre_restore_dir, &plan.data_dir);
    let copy = engine.stop_restored_copy(run, plan).await?;
    if is_cluster(pre) {
        if let RestoredCopy::Promoted { .. } = copy {
            return Err(RestoreError::Promoted {
                timeline: None,
                pre_restore: pre.clone(),
            });
        }
        // The restored copy (or an empty or half-written dir) derives from a backup and was
        // proven never promoted: it goes.
        remove_restored_copy(engine, plan)?;
        std::fs::rename(pre, data).map_err(io(format!(
            "cannot move {} back to {}",
            pre.display(),
            data.display()
        )))?;
        sync_parents(data, pre)?;
        run.log(format!(
            "moved the pre-restore data directory back to {}",
            data.display()
        ))?;
    } else if !is_cluster(data) {
        return Err(RestoreError::StepFailed {
            step: Step::Rollback,
            message: format!(
                "neither {} nor {} holds a PostgreSQL cluster; nothing was deleted, look at both by hand",
                data.display(),
                pre.display()
            ),
        });
    }
    engine.service().release_start_guard().await?;
    if plan.server_was_running {
        engine.service().start().await?;
    }
    engine.release_kept(run).await?;
    Ok(Some(reason.to_owned()))
}

/// Renamed out of the data directory's place first (so a crash never leaves a half-deleted
/// copy where the original goes back), then deleted; the filesystem synced so that ext4 hands
/// the blocks back now, for a PostgreSQL starting on a disk that was full.
fn remove_restored_copy(engine: &Engine, plan: &Plan) -> Result<(), RestoreError> {
    let data = &plan.data_dir;
    let discard = engine.state_dir().discard(&plan.restore_id);
    if discard.exists() {
        std::fs::remove_dir_all(&discard)
            .map_err(io(format!("cannot remove {}", discard.display())))?;
    }
    std::fs::rename(data, &discard).map_err(io(format!("cannot move {} aside", data.display())))?;
    std::fs::remove_dir_all(&discard)
        .map_err(io(format!("cannot remove {}", discard.display())))?;
    if let Ok(d) = std::fs::File::open(engine.state_dir().root()) {
        let _ = rustix::fs::syncfs(&d);
    }
    Ok(())
}
