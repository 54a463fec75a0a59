//! Start paused: PostgreSQL started on the restored copy (the start blocker released first),
//! then awaited until replay is paused at the target; the timeline it paused on is journaled
//! for every later proof. In a preview the copy is the side instance, started by barkeep on
//! its private socket; production is not touched. A crash here leaves the restored server starting or replaying;
//! resume rolls back (it proves the copy never left recovery first). Once this step's
//! `finished` entry is on disk, resume brings it back up paused instead.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::journal::Record;
use super::super::mode::{make_socket_dir, Instance};
use super::super::{RestoreError, Step};
use super::Cx;
use crate::probe::{self, PauseState};
use crate::service::{Postmaster, ServiceControl};
use crate::target::{Side, TargetTime, TransactionTarget};
use crate::transactions::Lsn;

/// How long replay up to the target may take.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(900);

pub(super) async fn run(cx: &Cx<'_>) -> Result<Option<String>, RestoreError> {
    let copy = cx.engine.restored_instance(cx.plan, cx.run);
    if let Some(p) = cx.plan.mode.preview() {
        make_socket_dir(&p.socket_dir)?;
    }
    copy.service.release_start_guard().await?;
    copy.service.start().await?;
    let replayed = wait_paused(&copy).await?;
    let s = probe::status(&copy.pg).await?;
    cx.run.record(Record::PausedAt {
        timeline: s.timeline,
        last_replayed: replayed,
    })?;
    let last = match replayed {
        Some(t) => format!("last replayed transaction {}", TargetTime::new(t)),
        None => "no transaction replayed".into(),
    };
    match cx.target.transaction() {
        None => Ok(Some(format!("paused; {last}"))),
        Some(t) => Ok(Some(format!(
            "paused {}; {last}",
            stop_at_transaction(&copy, t).await?
        ))),
    }
}

/// Proves from PostgreSQL that replay paused on the chosen side of the transaction: the end of
/// the last replayed record is at or before the start of its commit record ("before"), or
/// past it ("after"). Says where, for the person to see.
pub(super) async fn stop_at_transaction(
    copy: &Instance,
    t: &TransactionTarget,
) -> Result<String, RestoreError> {
    let client = probe::connect(&copy.pg, None).await?;
    let row = client
        .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
        .await
        .map_err(|source| probe::ProbeError::Query {
            what: "the replay position",
            source,
        })?;
    let text: Option<String> = row.get(0);
    let replayed = text.as_deref().and_then(Lsn::parse);
    let (stop, record) = match t.stop_before_first_record() {
        Some(first) => (first, "first record"),
        None => (t.end_lsn, "end record"),
    };
    let right = match (t.side, replayed) {
        (Side::Before, Some(r)) => r <= stop,
        (Side::After, Some(r)) => r > stop,
        (_, None) => false,
    };
    let shown = text.unwrap_or_else(|| "nowhere".into());
    let side = match t.side {
        Side::Before => "before",
        Side::After => "after",
    };
    if !right {
        return Err(RestoreError::StepFailed {
            step: Step::StartPaused,
            message: format!(
                "replay paused at WAL position {shown}, not just {side} transaction {} (its \
                 {record} is at {stop})",
                t.xid
            ),
        });
    }
    Ok(format!(
        "at WAL position {shown}, just {side} transaction {} (its {record} is at {stop})",
        t.xid
    ))
}

/// The restored server up again after an interruption: started if it is down, and awaited
/// until paused if it is still in recovery.
pub(in crate::restore) async fn ensure_running(copy: &Instance) -> Result<(), RestoreError> {
    if let Postmaster::Stopped = copy.postmaster() {
        copy.service.release_start_guard().await?;
        copy.service.start().await?;
    }
    if probe::status(&copy.pg).await?.in_recovery {
        wait_paused(copy).await?;
    }
    Ok(())
}

/// Waits until PostgreSQL is in recovery with replay paused; returns the last replayed
/// transaction's time.
pub(super) async fn wait_paused(copy: &Instance) -> Result<Option<DateTime<Utc>>, RestoreError> {
    let failed = |message: String| RestoreError::StepFailed {
        step: Step::StartPaused,
        message,
    };
    let deadline = tokio::time::Instant::now() + PAUSE_TIMEOUT;
    loop {
        match probe::status(&copy.pg).await {
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
                if let Postmaster::Stopped = copy.postmaster() {
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
