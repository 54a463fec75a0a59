//! The operations of the restore state machine and the steps they run.

use std::path::Path;
use std::time::Duration;

use chrono::Utc;

use super::guard::is_cluster;
use super::journal::{sync_dir, Journal, Record};
use super::run::Run;
use super::space;
use super::{Engine, Outcome, Phase, Plan, RestoreError, RestoreStatus, Step};
use crate::catalog::Catalog;
use crate::probe::{self, PauseState};
use crate::service::{Postmaster, ServiceControl};
use crate::target::TargetTime;

/// The recovery settings Barman 3.3 writes into postgresql.auto.conf (pitfall 5).
const RECOVERY_SETTINGS: [&str; 5] = [
    "restore_command",
    "recovery_end_command",
    "recovery_target_time",
    "recovery_target_action",
    "recovery_target_timeline",
];

const PAUSE_TIMEOUT: Duration = Duration::from_secs(900);
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(300);

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Io { what, source }
}

impl Engine {
    /// The dry run: validates the target and everything around it, touches nothing.
    pub async fn plan(
        &self,
        target: TargetTime,
        backup_id: Option<&str>,
    ) -> Result<Plan, RestoreError> {
        let config = self.config();
        let now = Utc::now();
        let restore_id = format!("r{}", now.format("%Y%m%dT%H%M%S%3fZ"));
        let catalog = self.catalog()?;
        let window = self.recovery_window_of(&catalog).await?;
        let running = matches!(self.service().postmaster(), Postmaster::Running { .. });
        let server = if running {
            probe::status(&config.postgres).await.ok()
        } else {
            None
        };
        let mut warnings = Vec::new();

        // A backup id the person named must exist before anything else is said about it.
        if let Some(id) = backup_id {
            if !crate::validate::is_backup_id(id) || catalog.backup(id).is_none() {
                return Err(RestoreError::UnknownBackup(id.to_owned()));
            }
        }
        if target.utc() > now {
            return Err(RestoreError::OutsideWindow {
                target,
                why: format!("in the future (it is {} now)", TargetTime::new(now)),
            });
        }
        let Some(earliest) = window.earliest else {
            return Err(RestoreError::OutsideWindow {
                target,
                why: "not restorable: Barman has no finished backup yet".into(),
            });
        };
        if target.utc() < earliest {
            return Err(RestoreError::OutsideWindow {
                target,
                why: format!(
                    "before the end of the oldest backup ({}); nothing earlier can be restored",
                    TargetTime::new(earliest)
                ),
            });
        }
        // Recovery stops at the first transaction after the target: one must be archived.
        // With the server up, the archive step writes and archives one; otherwise only what
        // Barman already has counts.
        if server.is_none() {
            match window.latest {
                Some(latest) if target.utc() < latest => {}
                Some(latest) => {
                    return Err(RestoreError::OutsideWindow {
                        target,
                        why: format!(
                            "after the last transaction Barman has archived ({}), and PostgreSQL is down so no later one can be archived",
                            TargetTime::new(latest)
                        ),
                    })
                }
                None => {
                    return Err(RestoreError::OutsideWindow {
                        target,
                        why: "not restorable: Barman holds no archived transaction".into(),
                    })
                }
            }
        }

        let backup = select_backup(&catalog, target, backup_id)?;
        let backup_end = backup.end_time.unwrap_or(earliest);
        if let (Some(server), Some(ident)) = (
            &server,
            catalog.identity.as_ref().and_then(|i| i.systemid.clone()),
        ) {
            let client = probe::connect(&config.postgres, None).await?;
            let row = client
                .query_one(
                    "SELECT system_identifier::text FROM pg_control_system()",
                    &[],
                )
                .await
                .map_err(|source| crate::probe::ProbeError::Query {
                    what: "system identifier",
                    source,
                })?;
            let sysid: String = row.get(0);
            if sysid != ident {
                return Err(RestoreError::WrongCluster {
                    barman: ident,
                    server: sysid,
                });
            }
            if server.version_num / 10000 != 14 {
                warnings.push(format!(
                    "PostgreSQL {} is not the pinned major version 14",
                    server.version
                ));
            }
        }

        let data_dir = config.postgres.data_dir.clone();
        // Set-aside is a rename into the state dir: refuse now what could not be renamed.
        space::check_renamable(&data_dir, &config.state_dir)?;
        let parent = data_dir.parent().unwrap_or(Path::new("/"));
        let free_bytes = space::free_bytes(parent)?;
        // The restored copy sits next to the set-aside original: the backup's files, the WAL
        // barman copies for the replay, a margin.
        let needed_bytes = space::needed_bytes(&catalog, backup);
        let pre_restore_kept = self.pre_restore_dirs();
        if free_bytes < needed_bytes {
            return Err(RestoreError::DiskFull {
                dir: parent.to_owned(),
                needed: needed_bytes,
                free: free_bytes,
                pre_restore_kept,
            });
        }
        if free_bytes < needed_bytes.saturating_mul(2) {
            warnings.push(format!(
                "after this restore the disk holding {} cannot hold another one ({} free, {} per restore){}",
                parent.display(),
                space::human(free_bytes),
                space::human(needed_bytes),
                if pre_restore_kept.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; {} kept pre-restore director{} take {}: discard what you no longer need",
                        pre_restore_kept.len(),
                        if pre_restore_kept.len() == 1 { "y" } else { "ies" },
                        space::human(pre_restore_kept.iter().map(|p| p.bytes).sum())
                    )
                }
            ));
        }

        let checks = match self.barman().check().await {
            Ok(c) => c,
            Err(e) => {
                warnings.push(format!("barman check could not run: {e}"));
                Vec::new()
            }
        };
        for c in checks.iter().filter(|c| !c.ok) {
            warnings.push(
                format!("barman check: {} FAILED {}", c.name, c.hint)
                    .trim_end()
                    .to_owned(),
            );
        }

        Ok(Plan {
            pre_restore_dir: config.state_dir.join("pre-restore").join(&restore_id),
            restore_id,
            created_at: now,
            target,
            backup_id: backup.id.clone(),
            backup_end,
            timeline: server.as_ref().map(|s| s.timeline as u32),
            data_dir,
            server_was_running: running,
            window,
            checks,
            free_bytes,
            needed_bytes,
            pre_restore_kept,
            warnings,
        })
    }

    /// Runs a restore up to the paused state: plan, archive, stop, set aside, recover, start.
    /// Any failure rolls back to the state before the restore.
    pub async fn start_restore(
        &self,
        target: TargetTime,
        backup_id: Option<&str>,
    ) -> Result<RestoreStatus, RestoreError> {
        let (_guard, _lock) = self.exclusive().await?;
        self.refuse_if_in_progress()?;
        let plan = self.plan(target, backup_id).await?;
        // The journal first: from here on every crash is resumed or rolled back by it.
        let mut journal = Journal::create(&self.config().state_dir, &plan.restore_id)?;
        let entry = journal.append(Record::Planned {
            plan: Box::new(plan.clone()),
        })?;
        let _ = self.inner.events.send(entry);
        let run = Run::new(self, journal, &[], &plan.data_dir);
        let planned = run
            .step(Step::Plan, Some(target), async {
                for w in &plan.warnings {
                    run.log(format!("warning: {w}"))?;
                }
                self.hold_backup(&run, &plan.backup_id).await?;
                Ok((
                    (),
                    Some(format!(
                        "backup {} for target {}",
                        plan.backup_id, plan.target
                    )),
                ))
            })
            .await;
        let result = match planned {
            Ok(()) => {
                self.run_to_paused(&run, &plan, plan.target, plan.backup_id.clone(), true)
                    .await
            }
            Err(e) => Err((Step::Plan, e)),
        };
        self.finish_or_roll_back(run, &plan, result).await
    }

    /// Holds a backup against retention for the length of the restore (barman-facts pitfall
    /// 14), unless it was kept before; journaled BEFORE the keep so a crash still releases it.
    async fn hold_backup(&self, run: &Run<'_>, backup_id: &str) -> Result<(), RestoreError> {
        if self.barman().keep_status(backup_id).await?.is_some() {
            return Ok(());
        }
        run.record(Record::BackupKept {
            backup_id: backup_id.to_owned(),
        })?;
        if let Err(e) = self.barman().keep(backup_id).await {
            // 3.3 keeps DONE backups only; a WAITING_FOR_WALS one goes unheld.
            run.log(format!(
                "warning: could not hold the backup against retention: {e}"
            ))?;
        }
        Ok(())
    }

    async fn release_kept(&self, run: &Run<'_>) -> Result<(), RestoreError> {
        for id in run.kept() {
            if let Err(err) = self.barman().release_keep(&id).await {
                run.log(format!(
                    "warning: could not release the keep on backup {id}: {err}"
                ))?;
            }
        }
        Ok(())
    }
    /// Runs archive (when `archive`), stop, set aside (first time) or wipe (retry), recover,
    /// start paused.
    async fn run_to_paused(
        &self,
        run: &Run<'_>,
        plan: &Plan,
        target: TargetTime,
        backup_id: String,
        first: bool,
    ) -> Result<(), (Step, RestoreError)> {
        if first {
            if plan.server_was_running {
                run.step(Step::Archive, Some(target), async {
                    self.archive_step(run, target).await
                })
                .await
                .map_err(|e| (Step::Archive, e))?;
            }
            run.step(Step::Stop, None, async { self.stop_step().await })
                .await
                .map_err(|e| (Step::Stop, e))?;
            run.step(Step::SetAside, None, async { self.set_aside_step(plan) })
                .await
                .map_err(|e| (Step::SetAside, e))?;
        } else {
            run.step(Step::Retry, Some(target), async {
                // Only a copy proven still in recovery (or never started) may go.
                self.refuse_if_promoted(run, plan).await?;
                self.stop_step().await?;
                if let super::guard::RestoredCopy::Promoted { .. } =
                    self.restored_copy_stopped(run, &plan.data_dir)
                {
                    return Err(RestoreError::Promoted {
                        timeline: None,
                        pre_restore: plan.pre_restore_dir.clone(),
                    });
                }
                self.wipe_restored(plan)?;
                Ok((
                    (),
                    Some("restored copy removed, data directory empty".into()),
                ))
            })
            .await
            .map_err(|e| (Step::Retry, e))?;
        }
        run.step(Step::Recover, Some(target), async {
            self.recover_step(run, plan, &backup_id, target).await
        })
        .await
        .map_err(|e| (Step::Recover, e))?;
        run.step(Step::StartPaused, Some(target), async {
            self.start_paused_step(run).await
        })
        .await
        .map_err(|e| (Step::StartPaused, e))?;
        Ok(())
    }

    async fn finish_or_roll_back(
        &self,
        run: Run<'_>,
        plan: &Plan,
        result: Result<(), (Step, RestoreError)>,
    ) -> Result<RestoreStatus, RestoreError> {
        match result {
            Ok(()) => self.current_status(),
            Err((step, e)) => {
                let message = e.to_string();
                tracing::error!(step = step.name(), error = %message, "restore step failed; rolling back");
                match self
                    .rollback_in(&run, plan, &format!("{} failed: {message}", step.name()))
                    .await
                {
                    Ok(()) => {
                        run.archive(&self.config().state_dir)?;
                        Err(RestoreError::RolledBack {
                            step: step.name(),
                            message,
                        })
                    }
                    Err(rb) => Err(RestoreError::RollbackFailed {
                        step: step.name(),
                        message,
                        rollback: rb.to_string(),
                        pre_restore: plan.pre_restore_dir.clone(),
                    }),
                }
            }
        }
    }

    fn current_status(&self) -> Result<RestoreStatus, RestoreError> {
        self.status()?.ok_or(RestoreError::NoRestore)
    }

    fn refuse_if_in_progress(&self) -> Result<(), RestoreError> {
        let path = Journal::current_path(&self.config().state_dir);
        if let Some(entries) = super::journal::read(&path)? {
            let (id, state) = match RestoreStatus::from_entries(&entries) {
                Some(s) => (s.restore_id, format!("{:?}", s.state).to_lowercase()),
                None => ("unknown".into(), "unreadable".into()),
            };
            return Err(RestoreError::InProgress { id, state });
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn open_paused(
        &self,
    ) -> Result<(Journal, Vec<super::journal::Entry>, RestoreStatus), RestoreError> {
        let (journal, entries) =
            Journal::open_current(&self.config().state_dir)?.ok_or(RestoreError::NoRestore)?;
        let status = RestoreStatus::from_entries(&entries).ok_or(RestoreError::NoRestore)?;
        if status.state != Phase::Paused {
            return Err(RestoreError::NotPaused(
                format!("{:?}", status.state).to_lowercase(),
            ));
        }
        Ok((journal, entries, status))
    }

    /// Retry at another target: back to an empty data directory, recover, start paused.
    pub async fn retry(
        &self,
        target: TargetTime,
        backup_id: Option<&str>,
    ) -> Result<RestoreStatus, RestoreError> {
        let (_guard, _lock) = self.exclusive().await?;
        let (journal, entries, status) = self.open_paused()?;
        let run = Run::new(self, journal, &entries, &status.plan.data_dir);
        let plan = status.plan.clone();
        // Re-validate against the catalog as it is now; the server is paused, so no sealing.
        let catalog = self.catalog()?;
        let backup = self.choose_backup(&catalog, target, backup_id)?;
        let window = self.recovery_window_of(&catalog).await?;
        match window.latest {
            Some(latest) if target.utc() < latest => {}
            _ => {
                return Err(RestoreError::OutsideWindow {
                    target,
                    why: "after the last transaction in archived WAL".into(),
                })
            }
        }
        // A restored copy that left recovery is live data: refused before any step runs.
        self.refuse_if_promoted(&run, &plan).await?;
        let result = self.run_to_paused(&run, &plan, target, backup, false).await;
        self.finish_or_roll_back(run, &plan, result).await
    }

    fn choose_backup(
        &self,
        catalog: &Catalog,
        target: TargetTime,
        backup_id: Option<&str>,
    ) -> Result<String, RestoreError> {
        if catalog
            .earliest_recoverable()
            .is_none_or(|e| target.utc() < e)
        {
            return Err(RestoreError::OutsideWindow {
                target,
                why: "before the end of the oldest backup".into(),
            });
        }
        select_backup(catalog, target, backup_id).map(|b| b.id.clone())
    }

    /// Roll back: the pre-restore data directory goes back in place and is started.
    pub async fn rollback(&self) -> Result<RestoreStatus, RestoreError> {
        let (_guard, _lock) = self.exclusive().await?;
        let (journal, entries) =
            Journal::open_current(&self.config().state_dir)?.ok_or(RestoreError::NoRestore)?;
        let status = RestoreStatus::from_entries(&entries).ok_or(RestoreError::NoRestore)?;
        if status.state == Phase::Closed {
            return Err(RestoreError::NoRestore);
        }
        if status.steps.iter().any(|s| s.step == Step::Accept) {
            return Err(RestoreError::Promoted {
                timeline: None,
                pre_restore: status.plan.pre_restore_dir.clone(),
            });
        }
        let run = Run::new(self, journal, &entries, &status.plan.data_dir);
        // Refused before a step is journaled: the restore stays as it was (paused).
        self.refuse_if_promoted(&run, &status.plan).await?;
        self.rollback_in(&run, &status.plan, "rolled back by request")
            .await?;
        run.archive(&self.config().state_dir)?;
        self.current_status()
    }

    async fn rollback_in(
        &self,
        run: &Run<'_>,
        plan: &Plan,
        reason: &str,
    ) -> Result<(), RestoreError> {
        run.step(Step::Rollback, None, async {
            let e = self;
            // Nothing may still write into either directory: barman, its rsync, pg_ctl.
            let killed = crate::process::kill_restore_children(run.restore_id()).await?;
            if killed > 0 {
                run.log(format!("stopped {killed} process(es) left by the interrupted step"))?;
            }
            // A restored copy that left recovery is live data: never deleted.
            e.refuse_if_promoted(run, plan).await?;
            e.service().guard_against_start().await?;
            e.service().stop().await?;
            let pre = &plan.pre_restore_dir;
            let data = &plan.data_dir;
            if let super::guard::RestoredCopy::Promoted { .. } = e.restored_copy_stopped(run, data) {
                if is_cluster(pre) {
                    return Err(RestoreError::Promoted {
                        timeline: None,
                        pre_restore: pre.clone(),
                    });
                }
            }
            if is_cluster(pre) {
                // The restored copy (or an empty or half-written dir) is in the data dir's
                // place; it derives from a backup and was proven never promoted, so it goes,
                // FIRST: on a full disk that is what makes room for the rest.
                if data.exists() {
                    let discard = e.config().state_dir.join(format!("discard-{}", plan.restore_id));
                    if discard.exists() {
                        std::fs::remove_dir_all(&discard).map_err(io(format!("cannot remove {}", discard.display())))?;
                    }
                    std::fs::rename(data, &discard).map_err(io(format!("cannot move {} aside", data.display())))?;
                    std::fs::remove_dir_all(&discard).map_err(io(format!("cannot remove {}", discard.display())))?;
                    // ext4 hands the freed blocks back when its journal commits: now, so that
                    // PostgreSQL finds the room on a disk that was full.
                    if let Ok(d) = std::fs::File::open(&e.config().state_dir) {
                        let _ = rustix::fs::syncfs(&d);
                    }
                }
                std::fs::rename(pre, data).map_err(io(format!(
                    "cannot move {} back to {}",
                    pre.display(),
                    data.display()
                )))?;
                sync_parents(data, pre)?;
                run.log(format!("moved the pre-restore data directory back to {}", data.display()))?;
            } else if !is_cluster(data) {
                return Err(RestoreError::StepFailed {
                    step: "rollback",
                    message: format!(
                        "neither {} nor {} holds a PostgreSQL cluster; nothing was deleted, look at both by hand",
                        data.display(),
                        pre.display()
                    ),
                });
            }
            e.service().release_start_guard().await?;
            if plan.server_was_running {
                e.service().start().await?;
            }
            e.release_kept(run).await?;
            Ok(((), Some(reason.to_owned())))
        })
        .await?;
        run.record(Record::Closed {
            outcome: Outcome::RolledBack {
                reason: reason.to_owned(),
            },
        })
    }

    /// Accept: re-enable archiving, promote, clean Barman's recovery settings and .origin
    /// files, archive the new timeline. The pre-restore directory is kept.
    pub async fn accept(&self) -> Result<RestoreStatus, RestoreError> {
        let (_guard, _lock) = self.exclusive().await?;
        // Paused, or an accept that failed half-way (every part of it can run again).
        let (journal, entries, status) = match self.open_paused() {
            Ok(v) => v,
            Err(RestoreError::NotPaused(state)) => {
                let (journal, entries) = Journal::open_current(&self.config().state_dir)?
                    .ok_or(RestoreError::NoRestore)?;
                let status =
                    RestoreStatus::from_entries(&entries).ok_or(RestoreError::NoRestore)?;
                if status.last_step() != Some((Step::Accept, false)) {
                    return Err(RestoreError::NotPaused(state));
                }
                (journal, entries, status)
            }
            Err(e) => return Err(e),
        };
        let run = Run::new(self, journal, &entries, &status.plan.data_dir);
        self.accept_in(&run, &status.plan).await?;
        run.archive(&self.config().state_dir)?;
        self.current_status()
    }

    async fn accept_in(&self, run: &Run<'_>, plan: &Plan) -> Result<(), RestoreError> {
        let timeline = run
            .step(Step::Accept, None, async {
                self.accept_step(run, plan).await
            })
            .await?;
        run.record(Record::Closed {
            outcome: Outcome::Accepted { timeline },
        })
    }

    /// On start-up: finish or undo whatever a crash interrupted. Returns what it did.
    pub async fn resume(&self) -> Result<Option<RestoreStatus>, RestoreError> {
        let (_guard, _lock) = self.exclusive().await?;
        let Some((journal, entries)) = Journal::open_current(&self.config().state_dir)? else {
            return Ok(None);
        };
        let Some(status) = RestoreStatus::from_entries(&entries) else {
            // Not even planned: nothing was touched.
            drop(journal);
            let path = Journal::current_path(&self.config().state_dir);
            std::fs::remove_file(&path).map_err(io(format!("cannot remove {}", path.display())))?;
            return Ok(None);
        };
        let run = Run::new(self, journal, &entries, &status.plan.data_dir);
        let plan = status.plan.clone();
        if status.state == Phase::Closed {
            run.archive(&self.config().state_dir)?;
            return self.status();
        }
        let last = status.last_step();
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
        match last {
            Some((Step::StartPaused, true))
            | Some((Step::Accept, false))
            | Some((Step::Accept, true)) => {
                let accepting = matches!(last, Some((Step::Accept, _)));
                // Bring the restored server back up (paused, or promoted if accept got that far).
                if let Err(e) = self.ensure_restored_running().await {
                    if accepting {
                        return Err(e);
                    }
                    let reason =
                        format!("the restored server did not come back after an interruption: {e}");
                    self.rollback_in(&run, &plan, &reason).await?;
                    run.archive(&self.config().state_dir)?;
                    return self.status();
                }
                let promoted = !accepting
                    && matches!(
                        self.restored_copy_running(&run).await?,
                        Some(super::guard::RestoredCopy::Promoted { .. })
                    );
                if accepting || promoted {
                    if promoted {
                        run.log(
                            "PostgreSQL left recovery while the restore was paused (promoted outside barkeep): \
                             it may have taken writes, so the restore is finished, never undone",
                        )?;
                    }
                    self.accept_in(&run, &plan).await?;
                    run.archive(&self.config().state_dir)?;
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
                }
                self.status()
            }
            _ => {
                let reason = match last {
                    Some((step, _)) => format!("interrupted during {}", step.name()),
                    None => "interrupted before the first step".into(),
                };
                self.rollback_in(&run, &plan, &reason).await?;
                run.archive(&self.config().state_dir)?;
                self.status()
            }
        }
    }

    /// A new base backup (`barman backup --wait`), e.g. right after an accepted restore.
    pub async fn backup_now(&self) -> Result<crate::barman::CommandOutput, RestoreError> {
        let (_guard, _lock) = self.exclusive().await?;
        let path = Journal::current_path(&self.config().state_dir);
        if let Some(entries) = super::journal::read(&path)? {
            let id = RestoreStatus::from_entries(&entries)
                .map(|s| s.restore_id)
                .unwrap_or_else(|| "unknown".into());
            return Err(RestoreError::BackupDuringRestore(id));
        }
        Ok(self.barman().backup().await?)
    }

    /// Removes a kept pre-restore directory, once the person has decided it can go.
    pub async fn discard_pre_restore(&self, restore_id: &str) -> Result<(), RestoreError> {
        if !is_restore_id(restore_id) {
            return Err(RestoreError::UnknownRestore(restore_id.to_owned()));
        }
        let (_guard, _lock) = self.exclusive().await?;
        if let Some(s) = self.status()? {
            if s.restore_id == restore_id && s.state != Phase::Closed {
                return Err(RestoreError::InProgress {
                    id: s.restore_id,
                    state: "not closed".into(),
                });
            }
        }
        let dir = self.config().state_dir.join("pre-restore").join(restore_id);
        if !dir.exists() {
            return Err(RestoreError::UnknownRestore(restore_id.to_owned()));
        }
        std::fs::remove_dir_all(&dir).map_err(io(format!("cannot remove {}", dir.display())))
    }

    // ---- the steps ----

    async fn archive_step(
        &self,
        run: &Run<'_>,
        target: TargetTime,
    ) -> Result<((), Option<String>), RestoreError> {
        // A transaction of barkeep's own, committed after the target: recovery needs a commit
        // after the target in archived WAL to stop there (barman-facts.md pitfalls 3 and 13).
        let client = probe::connect(&self.config().postgres, None).await?;
        client
            .batch_execute("SELECT pg_current_xact_id()")
            .await
            .map_err(|source| crate::probe::ProbeError::Query {
                what: "sealing transaction",
                source,
            })?;
        drop(client);
        let out = self.barman().switch_wal_archive().await?;
        run.log_output(&out)?;
        let catalog = self.catalog()?;
        let window = self.recovery_window_of(&catalog).await?;
        match window.latest {
            Some(latest) if target.utc() < latest => Ok((
                (),
                Some(format!(
                    "last archived transaction {}",
                    TargetTime::new(latest)
                )),
            )),
            other => {
                Err(RestoreError::OutsideWindow {
                    target,
                    why: format!(
                    "not followed by an archived transaction even after a WAL switch (last: {})",
                    other.map(|t| TargetTime::new(t).to_string()).unwrap_or_else(|| "none".into())
                ),
                })
            }
        }
    }

    async fn stop_step(&self) -> Result<((), Option<String>), RestoreError> {
        // Blocked first: nothing may start it between the stop and the recover.
        self.service().guard_against_start().await?;
        self.service().stop().await?;
        Ok(((), Some("PostgreSQL stopped (no live postmaster)".into())))
    }

    fn set_aside_step(&self, plan: &Plan) -> Result<((), Option<String>), RestoreError> {
        let data = &plan.data_dir;
        let pre = &plan.pre_restore_dir;
        if let Postmaster::Running { pid } = self.service().postmaster() {
            return Err(crate::service::ServiceError::StillRunning {
                data_dir: data.clone(),
                pid,
            }
            .into());
        }
        if is_cluster(pre) && !is_cluster(data) {
            // Already set aside (a resumed run): just make sure the empty dir is there.
        } else {
            if !is_cluster(data) {
                return Err(RestoreError::StepFailed {
                    step: "set_aside",
                    message: format!("{} holds no PostgreSQL cluster", data.display()),
                });
            }
            let parent = pre.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(parent)
                .map_err(io(format!("cannot create {}", parent.display())))?;
            // Same filesystem: a rename, O(1), nothing copied, nothing deleted.
            std::fs::rename(data, pre).map_err(io(format!(
                "cannot rename {} to {} (they must be on the same filesystem)",
                data.display(),
                pre.display()
            )))?;
            sync_parents(data, pre)?;
        }
        make_empty_data_dir(data)?;
        Ok((
            (),
            Some(format!("original data directory kept at {}", pre.display())),
        ))
    }

    fn wipe_restored(&self, plan: &Plan) -> Result<(), RestoreError> {
        if !is_cluster(&plan.pre_restore_dir) {
            return Err(RestoreError::StepFailed {
                step: "retry",
                message: format!(
                    "the pre-restore directory {} is missing; refusing to touch {}",
                    plan.pre_restore_dir.display(),
                    plan.data_dir.display()
                ),
            });
        }
        if plan.data_dir.exists() {
            std::fs::remove_dir_all(&plan.data_dir).map_err(io(format!(
                "cannot remove the restored copy {}",
                plan.data_dir.display()
            )))?;
        }
        make_empty_data_dir(&plan.data_dir)
    }

    async fn recover_step(
        &self,
        run: &Run<'_>,
        plan: &Plan,
        backup_id: &str,
        target: TargetTime,
    ) -> Result<((), Option<String>), RestoreError> {
        let data = &plan.data_dir;
        // Barman does not refuse a live or non-empty destination (pitfall 7): we do.
        if let Postmaster::Running { pid } = self.service().postmaster() {
            return Err(crate::service::ServiceError::StillRunning {
                data_dir: data.clone(),
                pid,
            }
            .into());
        }
        let empty = std::fs::read_dir(data)
            .map_err(io(format!("cannot read {}", data.display())))?
            .next()
            .is_none();
        if !empty {
            return Err(RestoreError::DestinationNotEmpty(data.clone()));
        }
        let result = self
            .barman()
            .recover(backup_id, data, target, plan.timeline)
            .await;
        match result {
            Ok(out) => {
                run.log_output(&out)?;
                Ok((
                    (),
                    Some(format!(
                        "barman recover {backup_id} in {} ms",
                        out.elapsed_ms
                    )),
                ))
            }
            Err(e) => {
                if let crate::barman::BarmanError::Failed { output, .. } = &e {
                    run.log_output(output)?;
                    if space::says_disk_full(&format!("{}{}", output.stdout, output.stderr)) {
                        let parent = data.parent().unwrap_or(Path::new("/"));
                        let catalog = self.catalog()?;
                        return Err(RestoreError::DiskFull {
                            dir: parent.to_owned(),
                            needed: catalog
                                .backup(backup_id)
                                .map(|b| space::needed_bytes(&catalog, b))
                                .unwrap_or(plan.needed_bytes),
                            free: space::free_bytes(parent).unwrap_or(0),
                            pre_restore_kept: self.pre_restore_dirs(),
                        });
                    }
                }
                Err(e.into())
            }
        }
    }

    async fn start_paused_step(&self, run: &Run<'_>) -> Result<((), Option<String>), RestoreError> {
        self.service().release_start_guard().await?;
        self.service().start().await?;
        let replayed = self.wait_paused().await?;
        let s = probe::status(&self.config().postgres).await?;
        run.record(Record::PausedAt {
            timeline: s.timeline,
            last_replayed: replayed,
        })?;
        Ok((
            (),
            Some(match replayed {
                Some(t) => format!("paused; last replayed transaction {}", TargetTime::new(t)),
                None => "paused; no transaction replayed".into(),
            }),
        ))
    }

    async fn wait_paused(&self) -> Result<Option<chrono::DateTime<Utc>>, RestoreError> {
        let deadline = tokio::time::Instant::now() + PAUSE_TIMEOUT;
        loop {
            match probe::status(&self.config().postgres).await {
                Ok(s) if s.in_recovery && s.pause_state == Some(PauseState::Paused) => {
                    return Ok(s.last_replayed_xact)
                }
                Ok(s) if !s.in_recovery => {
                    return Err(RestoreError::StepFailed {
                        step: "start_paused",
                        message: "PostgreSQL finished recovery instead of pausing at the target"
                            .into(),
                    })
                }
                Ok(_) => {}
                Err(e) => {
                    if let Postmaster::Stopped = self.service().postmaster() {
                        return Err(RestoreError::StepFailed {
                            step: "start_paused",
                            message: format!(
                                "PostgreSQL stopped during recovery (see its log): {e}"
                            ),
                        });
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RestoreError::StepFailed {
                    step: "start_paused",
                    message: format!("replay did not pause within {} s", PAUSE_TIMEOUT.as_secs()),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ensure_restored_running(&self) -> Result<(), RestoreError> {
        if let Postmaster::Stopped = self.service().postmaster() {
            self.service().release_start_guard().await?;
            self.service().start().await?;
        }
        let s = probe::status(&self.config().postgres).await?;
        if s.in_recovery {
            self.wait_paused().await?;
        }
        Ok(())
    }

    async fn accept_step(
        &self,
        run: &Run<'_>,
        plan: &Plan,
    ) -> Result<(i32, Option<String>), RestoreError> {
        let pg = &self.config().postgres;
        let q = |what: &'static str| move |source| crate::probe::ProbeError::Query { what, source };
        let client = probe::connect(pg, None).await?;
        // 1. Archiving back on while paused: ALTER SYSTEM goes to postgresql.auto.conf, which
        //    works where postgresql.conf is a read-only link (NixOS). Barman's
        //    `archive_command = false` in postgresql.conf is overridden.
        set_archive_command(&client, &pg.archive_command).await?;
        // 2. Promote.
        let s = probe::status_of(&client).await?;
        if s.in_recovery {
            client
                .batch_execute("SELECT pg_wal_replay_resume()")
                .await
                .map_err(q("resume replay"))?;
            run.log("replay resumed; waiting for the end of recovery")?;
        }
        let deadline = tokio::time::Instant::now() + PROMOTE_TIMEOUT;
        let timeline = loop {
            let s = probe::status_of(&client).await?;
            if !s.in_recovery {
                // The checkpoint timeline lags until the end-of-recovery checkpoint.
                let row = client
                    .query_one(
                        "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                        &[],
                    )
                    .await
                    .map_err(q("current timeline"))?;
                let hex: String = row.get(0);
                break i32::from_str_radix(&hex, 16).unwrap_or(s.timeline);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RestoreError::StepFailed {
                    step: "accept",
                    message: "PostgreSQL did not finish recovery in time".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        run.log(format!(
            "promoted: the database now lives on timeline {timeline}"
        ))?;
        // 3. Barman's recovery settings out of postgresql.auto.conf (pitfall 5).
        for setting in RECOVERY_SETTINGS {
            client
                .batch_execute(&format!("ALTER SYSTEM RESET {setting}"))
                .await
                .map_err(q("reset recovery settings"))?;
        }
        // 4. Barman's postgresql.conf edits undone, .origin files removed.
        let data = &plan.data_dir;
        let conf = data.join("postgresql.conf");
        let origin = data.join("postgresql.conf.origin");
        if origin.exists() {
            let conf_is_link = std::fs::symlink_metadata(&conf)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if conf_is_link {
                std::fs::remove_file(&origin)
                    .map_err(io(format!("cannot remove {}", origin.display())))?;
            } else {
                std::fs::rename(&origin, &conf)
                    .map_err(io(format!("cannot restore {}", conf.display())))?;
            }
        }
        let auto_origin = data.join("postgresql.auto.conf.origin");
        if auto_origin.exists() {
            std::fs::remove_file(&auto_origin)
                .map_err(io(format!("cannot remove {}", auto_origin.display())))?;
        }
        // 5. Leave archive_command to postgresql.conf when it already says the right thing.
        // One statement per call: ALTER SYSTEM refuses an implicit transaction block.
        client
            .batch_execute("ALTER SYSTEM RESET archive_command")
            .await
            .map_err(q("reset archive_command"))?;
        client
            .batch_execute("SELECT pg_reload_conf()")
            .await
            .map_err(q("reload the configuration"))?;
        if !wait_for_setting(&client, "archive_command", &pg.archive_command).await? {
            set_archive_command(&client, &pg.archive_command).await?;
            if !wait_for_setting(&client, "archive_command", &pg.archive_command).await? {
                return Err(RestoreError::StepFailed {
                    step: "accept",
                    message: "archive_command could not be re-enabled".into(),
                });
            }
        }
        drop(client);
        // 6. The new timeline's first segment and history file into Barman (pitfall 15).
        let out = self.barman().switch_wal_archive().await?;
        run.log_output(&out)?;
        let catalog = self.catalog()?;
        let has_timeline = catalog
            .archived
            .iter()
            .filter_map(|w| w.segment())
            .any(|s| s.timeline as i32 == timeline);
        if !has_timeline {
            return Err(RestoreError::StepFailed {
                step: "accept",
                message: format!("no WAL of timeline {timeline} reached Barman; check archiving"),
            });
        }
        self.release_kept(run).await?;
        Ok((
            timeline,
            Some(format!(
                "timeline {timeline} archived; pre-restore data kept at {}",
                plan.pre_restore_dir.display()
            )),
        ))
    }
}

/// The backup a restore to `target` starts from: the named one (it must exist, be finished and
/// have ended before the target) or the newest that ended before it; with no WAL gap after it.
fn select_backup<'c>(
    catalog: &'c Catalog,
    target: TargetTime,
    backup_id: Option<&str>,
) -> Result<&'c crate::catalog::Backup, RestoreError> {
    let backup =
        match backup_id {
            Some(id) => {
                let b = catalog
                    .backup(id)
                    .filter(|_| crate::validate::is_backup_id(id))
                    .ok_or_else(|| RestoreError::UnknownBackup(id.to_owned()))?;
                if !b.is_recoverable() {
                    return Err(RestoreError::UnusableBackup {
                        id: id.to_owned(),
                        why: format!("its status is {}", b.status.as_str()),
                    });
                }
                if let Some(end) = b.end_time.filter(|e| *e > target.utc()) {
                    return Err(RestoreError::UnusableBackup {
                        id: id.to_owned(),
                        why: format!("it ended at {}, after the target", TargetTime::new(end)),
                    });
                }
                b
            }
            None => catalog.backup_for_target(target.utc()).ok_or_else(|| {
                RestoreError::OutsideWindow {
                    target,
                    why: "before every finished backup".into(),
                }
            })?,
        };
    let gaps = catalog.wal_gaps(backup);
    if let Some(first) = gaps.first() {
        return Err(RestoreError::WalGap {
            first: first.to_string(),
            count: gaps.len() - 1,
        });
    }
    Ok(backup)
}

async fn set_archive_command(
    client: &tokio_postgres::Client,
    command: &str,
) -> Result<(), RestoreError> {
    let q = |source| crate::probe::ProbeError::Query {
        what: "set archive_command",
        source,
    };
    let row = client
        .query_one(
            "SELECT format('ALTER SYSTEM SET archive_command = %L', $1::text)",
            &[&command],
        )
        .await
        .map_err(q)?;
    let stmt: String = row.get(0);
    client.batch_execute(&stmt).await.map_err(q)?;
    client
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .map_err(q)?;
    Ok(())
}

/// pg_reload_conf() is asynchronous: wait until this session sees the value.
async fn wait_for_setting(
    client: &tokio_postgres::Client,
    name: &str,
    want: &str,
) -> Result<bool, RestoreError> {
    for _ in 0..40 {
        let row = client
            .query_one("SELECT current_setting($1)", &[&name])
            .await
            .map_err(|source| crate::probe::ProbeError::Query {
                what: "read a setting",
                source,
            })?;
        let v: String = row.get(0);
        if v == want {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

pub(crate) fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        // Paused replay still holds the locks of transactions in flight at the target: a
        // TRUNCATE or DROP TABLE committed after the target keeps its table locked until accept.
        Some(db) if db.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => format!(
            "{}: the table is locked by a transaction that was still running at the target time \
             (often the harmful TRUNCATE or DROP itself); it is released when the restore is accepted, \
             or choose a target before that transaction began",
            db.message()
        ),
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}

/// A restore id as barkeep makes them: `r` and a UTC timestamp (`r20261127T213225123Z`).
fn is_restore_id(s: &str) -> bool {
    s.len() <= 32
        && s.starts_with('r')
        && s.len() > 1
        && s[1..].bytes().all(|b| b.is_ascii_alphanumeric())
}

fn make_empty_data_dir(dir: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("cannot set the mode of {}", dir.display())))?;
        }
        Err(e) => return Err(io(format!("cannot create {}", dir.display()))(e)),
    }
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(io(format!("cannot sync {}", parent.display())))?;
    }
    Ok(())
}

fn sync_parents(a: &Path, b: &Path) -> Result<(), RestoreError> {
    for p in [a.parent(), b.parent()].into_iter().flatten() {
        sync_dir(p).map_err(io(format!("cannot sync {}", p.display())))?;
    }
    Ok(())
}

/// The web server runs these futures on a multi-threaded runtime: they must be Send.
#[allow(dead_code)]
fn operations_are_send(e: &Engine, t: TargetTime) {
    fn send<T: Send>(_: T) {}
    send(e.plan(t, None));
    send(e.start_restore(t, None));
    send(e.retry(t, None));
    send(e.accept());
    send(e.rollback());
    send(e.resume());
    send(e.query("SELECT 1", 1));
}
