//! Swap (preview only; the first part of accept): the paused side copy becomes production's
//! data directory, and production's becomes the pre-restore directory. In order:
//! 1. the side copy proven still in recovery, a restartpoint taken there (`CHECKPOINT`), so that
//!    its next start replays from the target's neighbourhood and not from the backup's start;
//!    then stopped and proven stopped;
//! 2. a write hold written out of production's postgresql.auto.conf, without a reload: it holds
//!    until production stops, and the directory set aside does not carry it;
//! 3. production blocked from starting, stopped, proven stopped;
//! 4. production's directory renamed to the pre-restore directory, the side directory renamed
//!    into its place (same filesystem: two renames, nothing copied);
//! 5. started through the normal service control, and awaited until paused at the target on
//!    production's port; a transaction target's stop proven again.
//!
//! Production is down from 3 to 5. A crash before the swap finishes rolls back (production
//! back in its place and started; the side copy discarded); once it has finished, the accept
//! the person asked for is finished.

use std::time::Instant;

use super::super::error::io;
use super::super::guard::is_cluster;
use super::super::journal::Record;
use super::super::run::Run;
use super::super::{Plan, RestoreError, Step};
use super::start_paused::{stop_at_transaction, wait_paused};
use super::sync_parents;
use crate::service::ServiceControl;
use crate::target::RestoreTarget;
use crate::{admin, probe, Engine};

/// `target`: the target of the latest recover (a retry changes it).
pub(in crate::restore) async fn run(
    engine: &Engine,
    run: &Run,
    plan: &Plan,
    target: RestoreTarget,
) -> Result<Option<String>, RestoreError> {
    let failed = |message: String| RestoreError::StepFailed {
        step: Step::Swap,
        message,
    };
    let preview = plan
        .mode
        .preview()
        .ok_or_else(|| failed("this restore is not a preview".into()))?;
    let side = engine.side(preview);
    let production = engine.production();

    // 1. The side copy: in recovery, a restartpoint, stopped.
    let client = probe::connect(&side.pg, None).await?;
    let s = probe::status_of(&client).await?;
    if !s.in_recovery {
        return Err(RestoreError::Promoted {
            timeline: Some(s.timeline),
            pre_restore: preview.data_dir.clone(),
        });
    }
    admin::checkpoint(&client).await?;
    drop(client);
    side.service.stop().await?;
    if !preview.data_dir.join("recovery.signal").exists() {
        return Err(failed(format!(
            "{} has no recovery.signal after its stop: it left recovery; it is kept as it is",
            preview.data_dir.display()
        )));
    }
    run.log("the side copy took a restartpoint and stopped")?;

    // 2. The hold out of the configuration production's directory keeps.
    if preview.hold_writes {
        let client = probe::connect(&production.pg, None).await?;
        admin::release_writes(&client, false).await?;
    }

    // 3. Production down.
    let down = Instant::now();
    production.service.guard_against_start().await?;
    production.service.stop().await?;

    // 4. Two renames.
    let (data, pre) = (&plan.data_dir, &plan.pre_restore_dir);
    if !is_cluster(data) || !is_cluster(&preview.data_dir) {
        return Err(failed(format!(
            "{} or {} holds no cluster; nothing was renamed",
            data.display(),
            preview.data_dir.display()
        )));
    }
    if let Some(parent) = pre.parent() {
        std::fs::create_dir_all(parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
    }
    std::fs::rename(data, pre).map_err(io(format!(
        "cannot rename {} to {}",
        data.display(),
        pre.display()
    )))?;
    sync_parents(data, pre)?;
    std::fs::rename(&preview.data_dir, data).map_err(io(format!(
        "cannot rename {} to {}",
        preview.data_dir.display(),
        data.display()
    )))?;
    sync_parents(data, &preview.data_dir)?;
    super::super::fault::at_entry("swap:renamed");

    // 5. The copy on production's port, paused again at the target.
    production.service.release_start_guard().await?;
    production.service.start().await?;
    let replayed = wait_paused(&production).await?;
    let down_ms = down.elapsed().as_millis();
    let s = probe::status(&production.pg).await?;
    run.record(Record::PausedAt {
        timeline: s.timeline,
        last_replayed: replayed,
    })?;
    let at = match target.transaction() {
        Some(t) => format!(", {}", stop_at_transaction(&production, t).await?),
        None => String::new(),
    };
    Ok(Some(format!(
        "production was down {down_ms} ms: stopped, swapped with the side copy, paused again at \
         the target on its port{at}; production's data directory kept at {}",
        pre.display()
    )))
}
