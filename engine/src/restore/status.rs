//! Where a restore stands, read from its journal alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::journal::{Entry, Record};
use super::{Outcome, Plan, Step};
use crate::target::RestoreTarget;

/// Where a restore stands, derived from its journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// A step is running (or was, when the process died).
    Running,
    /// PostgreSQL is paused at the target: the person verifies, then accepts, retries or rolls back.
    Paused,
    Closed,
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step: Step,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreStatus {
    pub restore_id: String,
    pub state: Phase,
    pub plan: Plan,
    /// The target of the latest recover (a retry changes it).
    pub target: RestoreTarget,
    pub steps: Vec<StepRecord>,
    pub outcome: Option<Outcome>,
    pub log: Vec<String>,
    /// Backups barkeep holds against retention for this restore (released at the end).
    #[serde(default)]
    pub kept: Vec<String>,
    /// The timeline PostgreSQL was on when replay paused at the target.
    #[serde(default)]
    pub paused_timeline: Option<i32>,
}

impl RestoreStatus {
    pub fn from_entries(entries: &[Entry]) -> Option<Self> {
        let mut status: Option<RestoreStatus> = None;
        for e in entries {
            match &e.record {
                Record::Planned { plan } => {
                    status = Some(RestoreStatus {
                        restore_id: e.restore_id.clone(),
                        state: Phase::Running,
                        target: plan.target,
                        plan: (**plan).clone(),
                        steps: Vec::new(),
                        outcome: None,
                        log: Vec::new(),
                        kept: Vec::new(),
                        paused_timeline: None,
                    });
                }
                other => {
                    let Some(s) = status.as_mut() else { continue };
                    match other {
                        Record::StepStarted { step, target } => {
                            if let Some(t) = target {
                                s.target = *t;
                            }
                            s.state = Phase::Running;
                            s.steps.push(StepRecord {
                                step: *step,
                                started: e.at,
                                finished: None,
                                error: None,
                                detail: None,
                            });
                        }
                        Record::StepFinished { step, detail } => {
                            if let Some(r) = s.steps.iter_mut().rev().find(|r| r.step == *step) {
                                r.finished = Some(e.at);
                                r.detail = detail.clone();
                            }
                            if *step == Step::StartPaused {
                                s.state = Phase::Paused;
                            }
                        }
                        Record::StepFailed { step, error } => {
                            if let Some(r) = s.steps.iter_mut().rev().find(|r| r.step == *step) {
                                r.finished = Some(e.at);
                                r.error = Some(error.clone());
                            }
                        }
                        Record::Log { line } => s.log.push(line.clone()),
                        Record::Child { pgid, command } => s
                            .log
                            .push(format!("started (process group {pgid}): {command}")),
                        Record::BackupKept { backup_id } => s.kept.push(backup_id.clone()),
                        Record::PausedAt { timeline, .. } => s.paused_timeline = Some(*timeline),
                        Record::Closed { outcome } => {
                            s.state = Phase::Closed;
                            s.outcome = Some(outcome.clone());
                        }
                        Record::Planned { .. } => {}
                    }
                }
            }
        }
        status
    }

    /// The last step that started, and whether it finished.
    pub fn last_step(&self) -> Option<(Step, bool)> {
        self.steps
            .last()
            .map(|r| (r.step, r.finished.is_some() && r.error.is_none()))
    }
}
