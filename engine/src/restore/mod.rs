//! The restore state machine (docs/restore-state-machine.md): plan, archive, stop, set aside,
//! recover, start paused, verify, then accept | retry | roll back. In preview mode (`mode`)
//! production is neither stopped nor set aside before the verify: the copy is recovered and
//! paused beside it, and accept begins with the swap.
//!
//! - [`Step::forward`] is the ordered list of steps of each mode: `start` walks it up to
//!   paused, `retry` rejoins it at recover, and `resume` reads a crashed restore's place on it
//!   to decide whether to undo or to finish ([`Step::after_crash`]).
//! - `operations` holds what a person (or start-up) asks for; `step/` one file per step;
//!   `run` journals each step before and after it runs; `guard` proves from PostgreSQL and the
//!   files what the journal says before anything is destroyed.
//! - One host-wide lock allows one restore at a time. Any failure before paused rolls back by
//!   itself. The data directory is never deleted while it is the only copy: it is renamed into
//!   the state directory and stays there until the person discards it.

mod error;
mod estimate;
mod fault;
mod from_bucket;
mod guard;
pub mod journal;
mod leftovers;
pub mod mode;
mod operations;
mod plan;
mod run;
pub mod space;
mod status;
mod step;
mod verify;

pub use error::RestoreError;
pub use estimate::Downtime;
pub use from_bucket::RestoreSource;
pub use guard::check_os_user;
pub use mode::{ModeChoice, PreviewPreflight, ProductionWrites, RestoreMode};
pub use space::PreRestoreDir;
pub use status::{Phase, RestoreStatus, StepRecord};

use std::fmt;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::barman::CheckItem;
use crate::target::RestoreTarget;
use crate::window::RecoveryWindow;

/// The steps of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Validate the target, choose the backup, preflight, hold the backup against retention.
    Plan,
    /// Seal a commit after the target and force the current WAL segment into Barman.
    Archive,
    /// Stop PostgreSQL and prove it stopped.
    Stop,
    /// Rename the data directory into the state dir; create an empty one.
    SetAside,
    /// `barman recover --target-action pause` into the empty data directory.
    Recover,
    /// Start PostgreSQL and wait until replay is paused at the target.
    StartPaused,
    /// Preview only, the first part of accept: the side instance stopped after a restartpoint,
    /// production stopped and renamed aside, the side directory renamed into its place and
    /// started paused on production's port.
    Swap,
    /// Re-enable archiving, promote, clean Barman's recovery settings, archive the new timeline.
    Accept,
    /// Back to an empty data directory for another target (after a verify); rejoins at Recover.
    Retry,
    /// Put the pre-restore data directory back and start it; leaves the forward path.
    Rollback,
}

/// What `resume` does with a restore a crash interrupted, from its last journaled step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCrash {
    /// Before paused: the restored copy is a half-made copy of a backup; put the original back.
    RollBack,
    /// Paused at the target when it died: start it again, paused, for the person to decide.
    PauseAgain,
    /// Accept had begun: the database may be promoted and taking writes; finish, never undo.
    FinishAccept,
}

impl Step {
    /// The forward path of an in-place restore, in order. `start` runs it up to
    /// `StartPaused`, skipping `Archive` when PostgreSQL was down; `Retry` rejoins it at
    /// `Recover`; the person ends it with `Accept` (or leaves it by `Rollback`).
    pub const FORWARD: [Step; 7] = [
        Step::Plan,
        Step::Archive,
        Step::Stop,
        Step::SetAside,
        Step::Recover,
        Step::StartPaused,
        Step::Accept,
    ];

    /// The forward path of a preview: production keeps running until the swap, which the
    /// person's accept begins.
    pub const FORWARD_PREVIEW: [Step; 6] = [
        Step::Plan,
        Step::Archive,
        Step::Recover,
        Step::StartPaused,
        Step::Swap,
        Step::Accept,
    ];

    /// The forward path of a restore in this mode.
    pub fn forward(preview: bool) -> &'static [Step] {
        if preview {
            &Self::FORWARD_PREVIEW
        } else {
            &Self::FORWARD
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Step::Plan => "plan",
            Step::Archive => "archive",
            Step::Stop => "stop",
            Step::SetAside => "set_aside",
            Step::Recover => "recover",
            Step::StartPaused => "start_paused",
            Step::Swap => "swap",
            Step::Accept => "accept",
            Step::Retry => "retry",
            Step::Rollback => "rollback",
        }
    }

    /// Where the step stands on the mode's forward path; `Retry` stands where it rejoins it.
    fn position(self, preview: bool) -> Option<usize> {
        let on_path = if self == Step::Retry {
            Step::Recover
        } else {
            self
        };
        Step::forward(preview).iter().position(|s| *s == on_path)
    }

    /// The steps that take a restore from `from` to paused at its target: [`Step::Plan`] for
    /// a new restore, [`Step::Retry`] for another target.
    pub fn path_to_paused(from: Step, preview: bool) -> Vec<Step> {
        let mut path: Vec<Step> = (from == Step::Retry)
            .then_some(Step::Retry)
            .into_iter()
            .collect();
        let Some(start) = from.position(preview) else {
            return path;
        };
        path.extend(
            Step::forward(preview)[start..]
                .iter()
                .copied()
                .take_while(|s| *s != Step::Swap && *s != Step::Accept),
        );
        path
    }

    /// What `resume` does when this was the last step journaled and a crash interrupted the
    /// restore (`finished`: its `finished` entry is on disk). An unfinished swap rolls back
    /// (production back in place and started, the preview discarded); a finished one goes on
    /// to the accept the person asked for.
    pub fn after_crash(self, finished: bool, preview: bool) -> AfterCrash {
        let paused = Step::StartPaused.position(preview);
        match self.position(preview) {
            _ if self == Step::Swap && !finished => AfterCrash::RollBack,
            Some(p) if Some(p) > paused => AfterCrash::FinishAccept,
            Some(p) if Some(p) == paused && finished && self == Step::StartPaused => {
                AfterCrash::PauseAgain
            }
            _ => AfterCrash::RollBack,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    /// The restored state is live on a new timeline; the pre-restore directory is kept.
    Accepted { timeline: i32 },
    /// The pre-restore state is back.
    RolledBack { reason: String },
}

/// What a restore will do, computed before anything is touched (the dry run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub restore_id: String,
    pub created_at: DateTime<Utc>,
    pub target: RestoreTarget,
    pub backup_id: String,
    pub backup_end: DateTime<Utc>,
    /// The timeline to follow (`--target-tli`): the server's current one when it is up.
    pub timeline: Option<u32>,
    pub data_dir: PathBuf,
    pub pre_restore_dir: PathBuf,
    pub server_was_running: bool,
    /// In place, or beside production then swapped in.
    #[serde(default)]
    pub mode: RestoreMode,
    pub window: RecoveryWindow,
    pub checks: Vec<CheckItem>,
    /// Free space on the data directory's filesystem when planned.
    pub free_bytes: u64,
    /// What the restore writes there: the backup, the WAL to replay, a margin.
    pub needed_bytes: u64,
    /// Pre-restore data directories kept from earlier restores, on the same disk.
    #[serde(default)]
    pub pre_restore_kept: Vec<PreRestoreDir>,
    pub warnings: Vec<String>,
    /// Barman's catalog on this host, or the off-site bucket (a disaster restore).
    #[serde(default)]
    pub source: RestoreSource,
}

impl Plan {
    /// Where `barman recover` writes the restored copy: the side directory of a preview, else
    /// the data directory.
    pub fn recover_dir(&self) -> &std::path::Path {
        match self.mode.preview() {
            Some(p) => &p.data_dir,
            None => &self.data_dir,
        }
    }
}

/// Rows of a verify query, as text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_retry_walk_the_one_forward_path() {
        use Step::*;
        assert_eq!(
            Step::path_to_paused(Plan, false),
            [Plan, Archive, Stop, SetAside, Recover, StartPaused]
        );
        assert_eq!(
            Step::path_to_paused(Retry, false),
            [Retry, Recover, StartPaused]
        );
        // Preview: production is neither stopped nor set aside on the way to paused.
        assert_eq!(
            Step::path_to_paused(Plan, true),
            [Plan, Archive, Recover, StartPaused]
        );
        assert_eq!(
            Step::path_to_paused(Retry, true),
            [Retry, Recover, StartPaused]
        );
    }

    #[test]
    fn resume_undoes_before_paused_and_finishes_from_accept_on() {
        use Step::*;
        for preview in [false, true] {
            for step in [Plan, Archive, Stop, SetAside, Recover, Retry, Rollback] {
                for finished in [false, true] {
                    assert_eq!(
                        step.after_crash(finished, preview),
                        AfterCrash::RollBack,
                        "{step}"
                    );
                }
            }
            assert_eq!(
                StartPaused.after_crash(false, preview),
                AfterCrash::RollBack
            );
            assert_eq!(
                StartPaused.after_crash(true, preview),
                AfterCrash::PauseAgain
            );
            assert_eq!(Accept.after_crash(false, preview), AfterCrash::FinishAccept);
            assert_eq!(Accept.after_crash(true, preview), AfterCrash::FinishAccept);
        }
        // A swap cut short: production goes back; a finished one: the accept goes on.
        assert_eq!(Swap.after_crash(false, true), AfterCrash::RollBack);
        assert_eq!(Swap.after_crash(true, true), AfterCrash::FinishAccept);
    }

    #[test]
    fn step_names_are_what_the_journal_writes() {
        for step in Step::FORWARD
            .into_iter()
            .chain([Step::Swap, Step::Retry, Step::Rollback])
        {
            let json = serde_json::to_string(&step).expect("serializes");
            assert_eq!(json, format!("\"{}\"", step.name()));
        }
    }
}
