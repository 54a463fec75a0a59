//! Accept: the restored state becomes the database. In order, each part safe to run again:
//! 1. archiving back on while still paused (`admin::set_archive_command`), so that the new
//!    timeline's first WAL is archived;
//! 2. `pg_wal_replay_resume()`, and wait until PostgreSQL is out of recovery (promoted, on a
//!    new timeline);
//! 3. what `barman recover` wrote undone (`leftovers::undo`);
//! 4. `archive_command` proven back to the configured one (`admin::enable_archiving`);
//! 5. the new timeline's history file and first segment forced into Barman, and proven there;
//! 6. the backup held for the restore released.
//!
//! A crash here leaves a server that may be promoted and taking writes: resume never undoes
//! it, it runs accept again. The pre-restore directory is kept until the person discards it.

use super::super::leftovers;
use super::super::run::Run;
use super::super::{Plan, RestoreError, Step};
use crate::{admin, probe, Engine};

/// Returns the timeline the database lives on now, and the step's detail.
pub(in crate::restore) async fn run(
    engine: &Engine,
    run: &Run,
    plan: &Plan,
) -> Result<(i32, Option<String>), RestoreError> {
    let pg = &engine.config().postgres;
    let client = probe::connect(pg, None).await?;
    admin::set_archive_command(&client, &pg.archive_command).await?;
    if probe::status_of(&client).await?.in_recovery {
        run.log("resuming replay; waiting for the end of recovery")?;
    }
    let timeline = admin::resume_replay_and_wait_promoted(&client).await?;
    run.log(format!(
        "promoted: the database now lives on timeline {timeline}"
    ))?;
    leftovers::undo(&client, &plan.data_dir).await?;
    admin::enable_archiving(&client, &pg.archive_command).await?;
    drop(client);

    let out = engine.barman().switch_wal_archive().await?;
    run.log_output(&out)?;
    let catalog = engine.catalog()?;
    let has_timeline = catalog
        .archived
        .iter()
        .filter_map(|w| w.segment())
        .any(|s| s.timeline as i32 == timeline);
    if !has_timeline {
        return Err(RestoreError::StepFailed {
            step: Step::Accept,
            message: format!("no WAL of timeline {timeline} reached Barman; check archiving"),
        });
    }
    engine.release_kept(run).await?;
    Ok((
        timeline,
        Some(format!(
            "timeline {timeline} archived; pre-restore data kept at {}",
            plan.pre_restore_dir.display()
        )),
    ))
}
