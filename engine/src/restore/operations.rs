//! What a person (or start-up) asks of a restore: start, retry, accept, roll back, resume;
//! and around it: take a backup, discard a kept pre-restore directory. Each takes the
//! host-wide lock, reads the journal, and drives the steps in `step/` in the order of
//! [`Step::FORWARD`]; a failure before paused rolls back by itself.

use super::error::io;
use super::journal::{self, Entry, Journal, Record};
use super::run::Run;
use super::step::{self, Cx};
use super::{AfterCrash, ModeChoice, Outcome, Phase, Plan, RestoreError, RestoreStatus, Step};
use crate::target::{RestoreTarget, TargetTime};
use crate::Engine;

/// A failure on the way to paused: the step it happened in, and why.
type StepError = (Step, RestoreError);

impl Engine {
    /// Runs an in-place restore up to the paused state: plan, archive, stop, set aside,
    /// recover, start. Any failure rolls back to the state before the restore.
    pub async fn start_restore(
        &self,
        target: impl Into<RestoreTarget>,
        backup_id: Option<&str>,
    ) -> Result<RestoreStatus, RestoreError> {
        self.start_restore_in(target, backup_id, ModeChoice::InPlace)
            .await
    }

    /// Runs a restore in the chosen mode up to the paused state; a preview leaves production
    /// serving (plan, archive, recover beside it, start the side copy paused). Any failure
    /// rolls back to the state before the restore.
    pub async fn start_restore_in(
        &self,
        target: impl Into<RestoreTarget>,
        backup_id: Option<&str>,
        choice: ModeChoice,
    ) -> Result<RestoreStatus, RestoreError> {
        let target = target.into();
        let _lock = self.exclusive().await?;
        self.refuse_if_in_progress()?;
        let plan = self.plan_in(target, backup_id, choice).await?;
        self.run_planned(plan).await
    }

    /// A planned restore, journaled first (from here on every crash is resumed or rolled back
    /// by the journal), then run up to paused.
    async fn run_planned(&self, plan: Plan) -> Result<RestoreStatus, RestoreError> {
        let mut journal = Journal::create(self.state_dir(), &plan.restore_id)?;
        journal.append(Record::Planned {
            plan: Box::new(plan.clone()),
        })?;
        let run = Run::new(journal, &[], plan.recover_dir());
        let result = self
            .run_to_paused(&run, &plan, Step::Plan, plan.target, &plan.backup_id)
            .await;
        self.finish_or_roll_back(run, &plan, result).await
    }

    /// Runs a restore from the off-site bucket alone up to the paused state (the disaster
    /// restore: a host whose Barman catalog is gone): plan from the bucket, stop, set aside
    /// (when the data directory holds a cluster), recover from the bucket, start. Then
    /// verify, accept, retry or roll back as any restore. Any failure rolls back.
    pub async fn start_restore_from_bucket(
        &self,
        target: TargetTime,
        backup_id: Option<&str>,
    ) -> Result<RestoreStatus, RestoreError> {
        let _lock = self.exclusive().await?;
        self.refuse_if_in_progress()?;
        let plan = self.plan_from_bucket(target, backup_id).await?;
        self.run_planned(plan).await
    }

    /// Retry at another target: back to an empty data directory, recover, start paused.
    pub async fn retry(
        &self,
        target: impl Into<RestoreTarget>,
        backup_id: Option<&str>,
    ) -> Result<RestoreStatus, RestoreError> {
        let target = target.into();
        let _lock = self.exclusive().await?;
        let (run, status) = self.open_paused()?;
        let plan = status.plan;
        let backup = if plan.source.is_bucket() {
            self.plan_retry_from_bucket(target, backup_id).await?
        } else {
            self.plan_retry(target, backup_id).await?
        };
        // A restored copy that left recovery is live data: refused before any step runs.
        let copy = self.restored_instance(&plan, &run);
        self.refuse_if_promoted(&run, &plan, &copy).await?;
        let result = self
            .run_to_paused(&run, &plan, Step::Retry, target, &backup)
            .await;
        self.finish_or_roll_back(run, &plan, result).await
    }

    /// Accept: re-enable archiving, promote, clean Barman's recovery settings and .origin
    /// files, archive the new timeline. The pre-restore directory is kept. A preview is first
    /// swapped in (`step::swap`); a swap that fails rolls back, production as it was.
    pub async fn accept(&self) -> Result<RestoreStatus, RestoreError> {
        let _lock = self.exclusive().await?;
        let (journal, entries, status) = self.open_current()?;
        if status.state == Phase::Closed {
            return Err(RestoreError::NotPaused(status.state.name().to_owned()));
        }
        let run = Run::new(journal, &entries, status.plan.recover_dir());
        let plan = &status.plan;
        let copy = self.restored_instance(plan, &run);
        // Paused, or an accept that failed half-way (every part of it can run again), or a
        // restored copy that was promoted behind barkeep's back before it paused: that one
        // may have taken writes and can only be finished (rollback and retry refuse it).
        let acceptable = status.state == Phase::Paused
            || status.last_step() == Some((Step::Accept, false))
            || matches!(
                self.restored_copy_running(&run, &copy).await?,
                Some(super::guard::RestoredCopy::Promoted { .. })
            );
        if !acceptable {
            return Err(RestoreError::NotPaused(status.state.name().to_owned()));
        }
        if plan.mode.preview().is_some() && !run.swap_begun() {
            let swapped = run
                .step(Step::Swap, None, async {
                    step::swap::run(self, &run, plan, status.target)
                        .await
                        .map(|detail| ((), detail))
                })
                .await
                .map_err(|e| (Step::Swap, e));
            if swapped.is_err() {
                return self.finish_or_roll_back(run, plan, swapped).await;
            }
        }
        self.accept_in(&run, plan).await?;
        self.close(run)
    }

    /// Roll back: the pre-restore data directory goes back in place and is started.
    pub async fn rollback(&self) -> Result<RestoreStatus, RestoreError> {
        let _lock = self.exclusive().await?;
        let (journal, entries, status) = self.open_current()?;
        if status.state == Phase::Closed {
            return Err(RestoreError::NoRestore);
        }
        if status.steps.iter().any(|s| s.step == Step::Accept) {
            return Err(RestoreError::Promoted {
                timeline: None,
                pre_restore: status.plan.pre_restore_dir.clone(),
            });
        }
        let run = Run::new(journal, &entries, status.plan.recover_dir());
        // Refused before a step is journaled: the restore stays as it was (paused).
        let copy = self.restored_instance(&status.plan, &run);
        self.refuse_if_promoted(&run, &status.plan, &copy).await?;
        self.rollback_in(&run, &status.plan, "rolled back by request")
            .await?;
        self.close(run)
    }

    /// On start-up: finish or undo whatever a crash interrupted. Returns what it did.
    pub async fn resume(&self) -> Result<Option<RestoreStatus>, RestoreError> {
        let _lock = self.exclusive().await?;
        let path = self.state_dir().journal();
        // A journal with no plan in it: the crash came between its creation and the `planned`
        // entry, which is written before anything is touched. It goes, or every later restore
        // would be refused as in progress.
        let forget = || match std::fs::remove_file(&path) {
            Ok(()) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("cannot remove {}", path.display()))(e)),
        };
        let Some((journal, entries)) = Journal::open_current(self.state_dir())? else {
            return forget();
        };
        let Some(status) = RestoreStatus::from_entries(&entries) else {
            drop(journal);
            return forget();
        };
        let run = Run::new(journal, &entries, status.plan.recover_dir());
        let last = status.last_step();
        let plan = status.plan;
        if status.state == Phase::Closed {
            self.close(run)?;
            return self.status();
        }
        run.log(format!(
            "resuming after an interruption; last step: {last:?}"
        ))?;
        // Before any directory is looked at: whatever the dead process started for this
        // restore (barman recover and its rsync, pg_ctl) is killed and proven gone.
        let killed = crate::process::kill_restore_children(run.restore_id()).await?;
        if killed > 0 {
            run.log(format!(
                "stopped {killed} process(es) the interrupted barkeep had started"
            ))?;
        }
        let preview = plan.mode.preview().is_some();
        let after_crash = match last {
            Some((step, finished)) => step.after_crash(finished, preview),
            None => AfterCrash::RollBack,
        };
        match after_crash {
            AfterCrash::RollBack => {
                let reason = match last {
                    Some((step, _)) => format!("interrupted during {step}"),
                    None => "interrupted before the first step".into(),
                };
                self.rollback_in(&run, &plan, &reason).await?;
            }
            AfterCrash::FinishAccept => {
                step::start_paused::ensure_running(&self.production()).await?;
                self.accept_in(&run, &plan).await?;
            }
            AfterCrash::PauseAgain => {
                let copy = self.restored_instance(&plan, &run);
                if let Some(p) = plan.mode.preview() {
                    super::mode::make_socket_dir(&p.socket_dir)?;
                }
                if let Err(e) = step::start_paused::ensure_running(&copy).await {
                    let reason =
                        format!("the restored server did not come back after an interruption: {e}");
                    self.rollback_in(&run, &plan, &reason).await?;
                } else if let (Some(super::guard::RestoredCopy::Promoted { timeline }), true) =
                    (self.restored_copy_running(&run, &copy).await?, preview)
                {
                    // A side copy is nobody's live data but it left recovery: it cannot be
                    // swapped in as a restore, nor deleted as junk. Production serves on.
                    return Err(RestoreError::Promoted {
                        timeline,
                        pre_restore: copy.data_dir().to_owned(),
                    });
                } else if let Some(super::guard::RestoredCopy::Promoted { .. }) =
                    self.restored_copy_running(&run, &copy).await?
                {
                    run.log(
                        "PostgreSQL left recovery while the restore was paused (promoted outside \
                         barkeep): it may have taken writes, so the restore is finished, never undone",
                    )?;
                    self.accept_in(&run, &plan).await?;
                } else {
                    // Paused again at the target: the person verifies as before.
                    run.record(Record::StepStarted {
                        step: Step::StartPaused,
                        target: None,
                    })?;
                    run.record(Record::StepFinished {
                        step: Step::StartPaused,
                        detail: Some("paused again after an interruption".into()),
                    })?;
                    return self.status();
                }
            }
        }
        self.close(run)?;
        self.status()
    }

    /// A new base backup (`barman backup --wait`), e.g. right after an accepted restore.
    pub async fn backup_now(&self) -> Result<crate::barman::CommandOutput, RestoreError> {
        let _lock = self.exclusive().await?;
        self.refuse_during_restore("taking a backup")?;
        Ok(self.barman().backup().await?)
    }

    /// The current WAL segment closed and archived into Barman now
    /// (`barman switch-wal --force --archive`), instead of within archive_timeout.
    pub async fn switch_wal_now(&self) -> Result<crate::barman::CommandOutput, RestoreError> {
        let _lock = self.exclusive().await?;
        self.refuse_during_restore("switching WAL")?;
        Ok(self.barman().switch_wal_archive().await?)
    }

    /// `barman check-backup` of a backup in the catalog: whether every WAL file it needs is
    /// archived (barman marks it FAILED when one is missing).
    pub async fn check_backup(
        &self,
        backup_id: &str,
    ) -> Result<crate::barman::CommandOutput, RestoreError> {
        if !crate::validate::is_backup_id(backup_id) {
            return Err(RestoreError::UnknownBackup(backup_id.to_owned()));
        }
        let _lock = self.exclusive().await?;
        self.refuse_during_restore("checking a backup")?;
        if !self.catalog()?.backups.iter().any(|b| b.id == backup_id) {
            return Err(RestoreError::UnknownBackup(backup_id.to_owned()));
        }
        Ok(self.barman().check_backup(backup_id).await?)
    }

    /// Actions on the live server wait for the open restore to end.
    pub(crate) fn refuse_during_restore(&self, action: &'static str) -> Result<(), RestoreError> {
        if let Some(entries) = journal::read(&self.state_dir().journal())? {
            let id = RestoreStatus::from_entries(&entries)
                .map(|s| s.restore_id)
                .unwrap_or_else(|| "unknown".into());
            return Err(RestoreError::DuringRestore { id, action });
        }
        Ok(())
    }

    /// Removes a kept pre-restore directory, once the person has decided it can go.
    pub async fn discard_pre_restore(&self, restore_id: &str) -> Result<(), RestoreError> {
        if !is_restore_id(restore_id) {
            return Err(RestoreError::UnknownRestore(restore_id.to_owned()));
        }
        let _lock = self.exclusive().await?;
        if let Some(s) = self.status()? {
            if s.restore_id == restore_id && s.state != Phase::Closed {
                return Err(RestoreError::InProgress {
                    id: s.restore_id,
                    state: "not closed".into(),
                });
            }
        }
        let dir = self.state_dir().pre_restore(restore_id);
        if !dir.exists() {
            return Err(RestoreError::UnknownRestore(restore_id.to_owned()));
        }
        std::fs::remove_dir_all(&dir).map_err(io(format!("cannot remove {}", dir.display())))
    }

    /// Walks [`Step::path_to_paused`] from `from`, each step between its journal entries.
    async fn run_to_paused(
        &self,
        run: &Run,
        plan: &Plan,
        from: Step,
        target: RestoreTarget,
        backup_id: &str,
    ) -> Result<(), StepError> {
        let cx = Cx {
            engine: self,
            run,
            plan,
            target,
            backup_id,
        };
        for step in Step::path_to_paused(from, plan.mode.preview().is_some()) {
            if !cx.applies(step) {
                continue;
            }
            // The target goes into the entries of the steps it decides.
            let journaled_target = matches!(
                step,
                Step::Plan | Step::Archive | Step::Retry | Step::Recover | Step::StartPaused
            )
            .then_some(target);
            run.step(step, journaled_target, async {
                cx.execute(step).await.map(|detail| ((), detail))
            })
            .await
            .map_err(|e| (step, e))?;
        }
        Ok(())
    }

    async fn finish_or_roll_back(
        &self,
        run: Run,
        plan: &Plan,
        result: Result<(), StepError>,
    ) -> Result<RestoreStatus, RestoreError> {
        let Err((step, e)) = result else {
            return self.status()?.ok_or(RestoreError::NoRestore);
        };
        let message = e.to_string();
        tracing::error!(%step, error = %message, "restore step failed; rolling back");
        match self
            .rollback_in(&run, plan, &format!("{step} failed: {message}"))
            .await
        {
            Ok(()) => {
                run.archive(self.state_dir())?;
                Err(RestoreError::RolledBack { step, message })
            }
            Err(rb) => Err(RestoreError::RollbackFailed {
                step,
                message,
                rollback: rb.to_string(),
                pre_restore: plan.pre_restore_dir.clone(),
            }),
        }
    }

    async fn rollback_in(&self, run: &Run, plan: &Plan, reason: &str) -> Result<(), RestoreError> {
        run.step(Step::Rollback, None, async {
            step::rollback::run(self, run, plan, reason)
                .await
                .map(|detail| ((), detail))
        })
        .await?;
        run.record(Record::Closed {
            outcome: Outcome::RolledBack {
                reason: reason.to_owned(),
            },
        })
    }

    async fn accept_in(&self, run: &Run, plan: &Plan) -> Result<(), RestoreError> {
        let timeline = run
            .step(Step::Accept, None, step::accept::run(self, run, plan))
            .await?;
        run.record(Record::Closed {
            outcome: Outcome::Accepted { timeline },
        })
    }

    /// The closed journal into the history; what it says now.
    fn close(&self, run: Run) -> Result<RestoreStatus, RestoreError> {
        run.archive(self.state_dir())?;
        self.status()?.ok_or(RestoreError::NoRestore)
    }

    fn refuse_if_in_progress(&self) -> Result<(), RestoreError> {
        if let Some(entries) = journal::read(&self.state_dir().journal())? {
            let (id, state) = match RestoreStatus::from_entries(&entries) {
                Some(s) => (s.restore_id, s.state.name().to_owned()),
                None => ("unknown".into(), "unreadable".into()),
            };
            return Err(RestoreError::InProgress { id, state });
        }
        Ok(())
    }

    fn open_current(&self) -> Result<(Journal, Vec<Entry>, RestoreStatus), RestoreError> {
        let (journal, entries) =
            Journal::open_current(self.state_dir())?.ok_or(RestoreError::NoRestore)?;
        let status = RestoreStatus::from_entries(&entries).ok_or(RestoreError::NoRestore)?;
        Ok((journal, entries, status))
    }

    /// The restore in progress, opened for a run, if it is paused at its target.
    fn open_paused(&self) -> Result<(Run, RestoreStatus), RestoreError> {
        let (journal, entries, status) = self.open_current()?;
        if status.state != Phase::Paused {
            return Err(RestoreError::NotPaused(status.state.name().to_owned()));
        }
        Ok((
            Run::new(journal, &entries, status.plan.recover_dir()),
            status,
        ))
    }
}

/// A restore id as barkeep makes them: `r` and a UTC timestamp (`r20261127T213225123456Z`;
/// before issue 13 with milliseconds, `r20261127T213225123Z`).
fn is_restore_id(s: &str) -> bool {
    s.len() <= 32
        && s.starts_with('r')
        && s.len() > 1
        && s[1..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The web server runs these futures on a multi-threaded runtime: they must be Send.
#[allow(dead_code)]
fn operations_are_send(e: &Engine, t: TargetTime) {
    fn send<T: Send>(_: T) {}
    send(e.plan(t, None));
    send(e.start_restore(t, None));
    send(e.start_restore_in(t, None, ModeChoice::Preview { hold_writes: true }));
    send(e.production_writes());
    send(e.retry(t, None));
    send(e.accept());
    send(e.rollback());
    send(e.resume());
    send(e.backup_now());
    send(e.switch_wal_now());
    send(e.discard_pre_restore("r1"));
    send(e.query("SELECT 1", 1));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ServiceKind};

    #[tokio::test]
    async fn resume_forgets_a_journal_that_never_got_its_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_str().expect("utf-8").to_owned();
        let config = Config::example(ServiceKind::PgCtl)
            .with_settings(&[
                ("state_dir".into(), format!("{root}/state")),
                ("postgres.data_dir".into(), format!("{root}/pgdata")),
                ("service.log_file".into(), format!("{root}/pg.log")),
            ])
            .expect("config");
        let engine = Engine::new(std::sync::Arc::new(config)).expect("engine");
        let journal = engine.state_dir().journal();
        // A crash right after Journal::create: an empty file, and an in-progress refusal.
        drop(Journal::create(engine.state_dir(), "r1").expect("create"));
        assert!(matches!(
            engine.refuse_if_in_progress(),
            Err(RestoreError::InProgress { .. })
        ));
        assert_eq!(engine.resume().await.expect("resumes"), None);
        assert!(!journal.exists());
        engine
            .refuse_if_in_progress()
            .expect("nothing in progress any more");
    }
}
