//! Start paused: PostgreSQL started on the restored copy (the start blocker released first),
//! then awaited until replay is paused at the target; the timeline it paused on is journaled
//! for every later proof. A crash here leaves the restored server starting or replaying;
//! resume rolls back (it proves the copy never left recovery first). Once this step's
//! `finished` entry is on disk, resume brings it back up paused instead.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::journal::Record;
use super::super::{RestoreError, Step};
use super::Cx;
use crate::probe::{self, PauseState};
use crate::service::{Postmaster, ServiceControl};
use crate::target::TargetTime;
use crate::Engine;

/// How long replay up to the target may take.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(900);

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let engine = cx.engine;
    engine.service().release_start_guard().await?;
    engine.service().start().await?;
    let replayed = wait_paused(engine).await?;
    let s = probe::status(&engine.config().postgres).await?;
    cx.run.record(Record::PausedAt {
        timeline: s.timeline,
        last_replayed: replayed,
    })?;
    Ok(Some(match replayed {
        Some(t) => format!("paused; last replayed transaction {}", TargetTime::new(t)),
        None => "paused; no transaction replayed".into(),
    }))
}

/// The restored server up again after an interruption: started if it is down, and awaited
/// until paused if it is still in recovery.
pub(in crate::restore) async fn ensure_running(engine: &Engine) -> Result<(), RestoreError> {
    if let Postmaster::Stopped = engine.service().postmaster() {
        engine.service().release_start_guard().await?;
        engine.service().start().await?;
    }
    if probe::status(&engine.config().postgres).await?.in_recovery {
        wait_paused(engine).await?;
    }
    Ok(())
}

/// Waits until PostgreSQL is in recovery with replay paused; returns the last replayed
/// transaction's time.
async fn wait_paused(engine: &Engine) -> Result<Option<DateTime<Utc>>, RestoreError> {
    let failed = |message: String| RestoreError::StepFailed {
        step: Step::StartPaused,
        message,
    };
    let deadline = tokio::time::Instant::now() + PAUSE_TIMEOUT;
    loop {
        match probe::status(&engine.config().postgres).await {
            Ok(s) if s.in_recovery && s.pause_state == Some(PauseState::Paused) => {
                return Ok(s.last_replayed_xact)
            }
            Ok(s) if !s.in_recovery => {
                return Err(failed(
                    "PostgreSQL finished recovery instead of pausing at the target".into(),
                ))
            }
            Ok(_) => {}
            Err(e) => {
                if let Postmaster::Stopped = engine.service().postmaster() {
                    return Err(failed(format!(
                        "PostgreSQL stopped during recovery (see its log): {e}"
                    )));
                }
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(failed(format!(
                "replay did not pause within {} s",
                PAUSE_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
