//! Roll back: the pre-restore data directory back in place and started, as if the restore had
//! never run. Before any directory is touched, every process marked with the restore id
//! (barman, its rsync, pg_ctl) is killed and proven gone, and the restored copy is proven never
//! promoted (a promoted copy is live data and is never deleted). The restored copy goes FIRST
//! (on a full disk that is what makes room), then the rename back. A crash here is finished by
//! resume running it again: each part finds what the last one left.
//!
//! A preview (cancel, a failed step, a crash before the swap finished): the side copy, proven
//! never promoted, is stopped and removed; production was never touched unless the swap had
//! begun, and then goes back as above. Production is started if it is down, and a write hold
//! is released. A preview cancelled before its swap never restarts production.

use std::path::Path;

use super::super::error::io;
use super::super::guard::{is_cluster, RestoredCopy};
use super::super::mode::Preview;
use super::super::run::Run;
use super::super::{Plan, RestoreError, Step};
use super::sync_parents;
use crate::service::{Postmaster, ServiceControl};
use crate::{admin, probe, Engine};

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
    if let Some(preview) = plan.mode.preview() {
        return roll_back_preview(engine, run, plan, preview, reason).await;
    }
    let (pre, data) = (&plan.pre_restore_dir, &plan.data_dir);
    let copy = engine
        .stop_restored_copy(run, plan, &engine.production())
        .await?;
    if is_cluster(pre) {
        if let RestoredCopy::Promoted { .. } = copy {
            return Err(RestoreError::Promoted {
                timeline: None,
                pre_restore: pre.clone(),
            });
        }
        // The restored copy (or an empty or half-written dir) derives from a backup and was
        // proven never promoted: it goes.
        discard(engine, plan, data)?;
        put_back(run, plan)?;
    } else if !plan.source.has_original() {
        // A restore from the bucket onto a rebuilt host: no original to put back; the copy,
        // proven never promoted, goes and the data directory is left empty, as it was.
        if let RestoredCopy::Promoted { .. } = copy {
            return Err(RestoreError::Promoted {
                timeline: None,
                pre_restore: pre.clone(),
            });
        }
        discard(engine, plan, data)?;
        super::make_empty_data_dir(data)?;
        run.log(format!(
            "the restored copy is discarded; {} is empty again",
            data.display()
        ))?;
    } else if !is_cluster(data) {
        return Err(no_cluster(plan));
    }
    engine.service().release_start_guard().await?;
    if plan.server_was_running {
        engine.service().start().await?;
    }
    engine.release_kept(run).await?;
    Ok(Some(reason.to_owned()))
}

/// A preview rolled back: the side copy goes, the swap's half (if it began) is undone,
/// production runs without a write hold.
async fn roll_back_preview(
    engine: &Engine,
    run: &Run,
    plan: &Plan,
    preview: &Preview,
    reason: &str,
) -> Result<Option<String>, RestoreError> {
    let (pre, data) = (&plan.pre_restore_dir, &plan.data_dir);
    let promoted = |timeline| RestoreError::Promoted {
        timeline,
        pre_restore: pre.clone(),
    };
    if preview.data_dir.exists() {
        let side = engine.side(preview);
        if let RestoredCopy::Promoted { timeline } =
            engine.stop_restored_copy(run, plan, &side).await?
        {
            return Err(promoted(timeline));
        }
        discard(engine, plan, &preview.data_dir)?;
        run.log("the side copy of the preview is discarded")?;
    }
    if is_cluster(pre) {
        // The swap had renamed production aside: the data directory holds the restored copy
        // (never promoted: accept had not begun), or nothing.
        let in_place = engine.production();
        if let RestoredCopy::Promoted { timeline } =
            engine.stop_restored_copy(run, plan, &in_place).await?
        {
            return Err(promoted(timeline));
        }
        discard(engine, plan, data)?;
        put_back(run, plan)?;
    } else if !is_cluster(data) {
        return Err(no_cluster(plan));
    }
    engine.service().release_start_guard().await?;
    if let Postmaster::Stopped = engine.service().postmaster() {
        engine.service().start().await?;
        run.log("production started again")?;
    }
    if preview.hold_writes {
        let client = probe::connect(&engine.config().postgres, None).await?;
        admin::release_writes(&client, true).await?;
        run.log("production takes writes again")?;
    }
    engine.release_kept(run).await?;
    Ok(Some(reason.to_owned()))
}

/// Neither directory holds the original: nothing is deleted, a person must look.
fn no_cluster(plan: &Plan) -> RestoreError {
    RestoreError::StepFailed {
        step: Step::Rollback,
        message: format!(
            "neither {} nor {} holds a PostgreSQL cluster; nothing was deleted, look at both by hand",
            plan.data_dir.display(),
            plan.pre_restore_dir.display()
        ),
    }
}

/// The pre-restore data directory renamed back into the data directory's place.
fn put_back(run: &Run, plan: &Plan) -> Result<(), RestoreError> {
    let (pre, data) = (&plan.pre_restore_dir, &plan.data_dir);
    std::fs::rename(pre, data).map_err(io(format!(
        "cannot move {} back to {}",
        pre.display(),
        data.display()
    )))?;
    sync_parents(data, pre)?;
    run.log(format!(
        "moved the pre-restore data directory back to {}",
        data.display()
    ))
}

/// A restored copy removed: renamed out of its place first (so a crash never leaves a
/// half-deleted copy where the original goes back), then deleted; the filesystem synced so that
/// ext4 hands the blocks back now, for a PostgreSQL starting on a disk that was full.
fn discard(engine: &Engine, plan: &Plan, copy: &Path) -> Result<(), RestoreError> {
    let discard = engine.state_dir().discard(&plan.restore_id);
    if discard.exists() {
        std::fs::remove_dir_all(&discard)
            .map_err(io(format!("cannot remove {}", discard.display())))?;
    }
    match std::fs::rename(copy, &discard) {
        Ok(()) => {}
        // A crash between a rename and the directory made in its place: nothing to remove.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("cannot move {} aside", copy.display()))(e)),
    }
    std::fs::remove_dir_all(&discard)
        .map_err(io(format!("cannot remove {}", discard.display())))?;
    if let Ok(d) = std::fs::File::open(engine.state_dir().root()) {
        let _ = rustix::fs::syncfs(&d);
    }
    Ok(())
}
