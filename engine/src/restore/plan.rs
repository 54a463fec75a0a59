//! The dry run and the plan step: everything about a target is checked here, before a restore
//! touches anything, and the chosen backup is held against retention for the restore's length.

use std::path::Path;

use chrono::{DateTime, Utc};

use super::mode::{ModeChoice, RestoreMode};
use super::run::Run;
use super::space;
use super::{Plan, RestoreError, RestoreSource};
use crate::admin;
use crate::catalog::{Backup, Catalog};
use crate::probe;
use crate::service::{Postmaster, ServiceControl};
use crate::target::{RestoreTarget, TargetTime};
use crate::transactions::Lsn;
use crate::window::RecoveryWindow;
use crate::Engine;

impl Engine {
    /// The dry run of an in-place restore: validates the target and everything around it,
    /// touches nothing.
    pub async fn plan(
        &self,
        target: impl Into<RestoreTarget>,
        backup_id: Option<&str>,
    ) -> Result<Plan, RestoreError> {
        self.plan_in(target, backup_id, ModeChoice::InPlace).await
    }

    /// The dry run of a restore in the chosen mode; a preview is refused here, with the
    /// reasons, when its preflight does not pass.
    pub async fn plan_in(
        &self,
        target: impl Into<RestoreTarget>,
        backup_id: Option<&str>,
        choice: ModeChoice,
    ) -> Result<Plan, RestoreError> {
        let target = target.into();
        let config = self.config();
        let now = Utc::now();
        // Microseconds: two barkeeps on one machine (the tests run several sandboxes at once, in
        // step) must never share an id, which marks the processes a resume may kill.
        let restore_id = new_restore_id(now);
        let catalog = self.catalog()?;
        // A backup id the person named must exist before anything else is said about it, and
        // before anything (pg_waldump, barman) is run.
        if let Some(id) = backup_id {
            if !crate::validate::is_backup_id(id) || catalog.backup(id).is_none() {
                return Err(RestoreError::UnknownBackup(id.to_owned()));
            }
        }
        let window = self.recovery_window_of(&catalog).await?;
        let running = matches!(self.service().postmaster(), Postmaster::Running { .. });
        let server = if running {
            probe::status(&config.postgres).await.ok()
        } else {
            None
        };
        // With the server up, the archive step commits and archives a transaction after the
        // target; otherwise only what Barman already has counts.
        let earliest = check_target(&window, target, now)?;
        if server.is_none() {
            require_reachable(
                &window,
                target,
                "and PostgreSQL is down, so no later one can be archived",
            )?;
        } else {
            // The names of the tables now: a transaction listed later can name a table this
            // restore drops.
            self.remember_relation_names().await;
        }
        let backup = select_backup(&catalog, target, backup_id)?;

        let mut warnings = Vec::new();
        if let Some(server) = &server {
            self.check_same_cluster(&catalog).await?;
            if server.version_num / 10000 != 14 {
                warnings.push(format!(
                    "PostgreSQL {} is not the pinned major version 14",
                    server.version
                ));
            }
        }
        let data_dir = config.postgres.data_dir.clone();
        // Set-aside is a rename into the state dir: refuse now what could not be renamed.
        space::check_renamable(&data_dir, self.state_dir().root())?;
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
        warnings.extend(space::second_restore_warning(
            parent,
            free_bytes,
            needed_bytes,
            &pre_restore_kept,
        ));
        if let Some(t) = target.transaction() {
            warnings.extend(self.transaction_warning(t).await);
        }
        let mode = match choice {
            ModeChoice::InPlace => RestoreMode::InPlace,
            ModeChoice::Preview { hold_writes } => {
                if server.is_none() {
                    return Err(RestoreError::PreviewUnavailable(vec![
                        "PostgreSQL is down: a preview runs beside a running server; restore in                          place"
                            .into(),
                    ]));
                }
                RestoreMode::Preview(self.preview_for(&restore_id, hold_writes, backup).await?)
            }
        };
        let checks = self.barman_check_for_plan(&mut warnings).await;

        Ok(Plan {
            pre_restore_dir: self.state_dir().pre_restore(&restore_id),
            restore_id,
            created_at: now,
            target,
            backup_id: backup.id.clone(),
            backup_end: backup.end_time.unwrap_or(earliest),
            timeline: server.as_ref().map(|s| s.timeline as u32),
            data_dir,
            server_was_running: running,
            mode,
            window,
            checks,
            free_bytes,
            needed_bytes,
            pre_restore_kept,
            warnings,
            source: RestoreSource::Catalog,
        })
    }

    /// `barman check` for a plan: its items, and a warning for each that failed (or for the
    /// check that could not run).
    pub(super) async fn barman_check_for_plan(
        &self,
        warnings: &mut Vec<String>,
    ) -> Vec<crate::barman::CheckItem> {
        let checks = match self.barman().check().await {
            Ok(c) => c,
            Err(e) => {
                warnings.push(format!("barman check could not run: {e}"));
                Vec::new()
            }
        };
        warnings.extend(checks.iter().filter(|c| !c.ok).map(|c| {
            format!("barman check: {} FAILED {}", c.name, c.hint)
                .trim_end()
                .to_owned()
        }));
        checks
    }

    /// Another target for a paused restore: re-validated against the catalog as it is now.
    /// The server is paused, so nothing later can be archived. Returns the backup to use.
    pub(super) async fn plan_retry(
        &self,
        target: RestoreTarget,
        backup_id: Option<&str>,
    ) -> Result<String, RestoreError> {
        let catalog = self.catalog()?;
        let window = self.recovery_window_of(&catalog).await?;
        check_target(&window, target, Utc::now())?;
        require_reachable(
            &window,
            target,
            "and the paused server cannot archive a later one",
        )?;
        select_backup(&catalog, target, backup_id).map(|b| b.id.clone())
    }

    /// What a person must know of a transaction target: a stop before the first record of a
    /// transaction that locked tables leaves out the transactions that committed while it ran.
    async fn transaction_warning(&self, t: &crate::target::TransactionTarget) -> Option<String> {
        let first = t.stop_before_first_record()?;
        let during = match self.transaction_and_concurrent(t.xid, t.side).await {
            Ok((_, during)) => during,
            Err(e) => {
                return Some(format!(
                    "the transactions around {} could not be read: {e}",
                    t.xid
                ))
            }
        };
        let why = format!(
            "transaction {} locked tables for as long as it ran (DROP, TRUNCATE, ALTER TABLE): \
             stopped at its commit, the paused server would keep them locked against your \
             checks, so the restore stops before its first record ({first})",
            t.xid
        );
        Some(if during.is_empty() {
            format!(
                "{why}; no other transaction committed while it ran, so nothing else is left out"
            )
        } else {
            format!(
                "{why}: {} transaction(s) that committed while it ran are left out too (xids {})",
                during.len(),
                during
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }

    /// The backups belong to this cluster: Barman's system id is the server's.
    async fn check_same_cluster(&self, catalog: &Catalog) -> Result<(), RestoreError> {
        let Some(ident) = catalog.identity.as_ref().and_then(|i| i.systemid.clone()) else {
            return Ok(());
        };
        let client = probe::connect(&self.config().postgres, None).await?;
        let sysid = admin::system_identifier(&client).await?;
        if sysid != ident {
            return Err(RestoreError::WrongCluster {
                barman: ident,
                server: sysid,
            });
        }
        Ok(())
    }

    /// Holds a backup against retention for the length of the restore (docs/barman.md),
    /// unless it was kept before; journaled BEFORE the keep so that a crash in between still
    /// releases it. The plan step holds the planned backup, a retry the one it recovers from.
    pub(super) async fn hold_backup(&self, run: &Run, backup_id: &str) -> Result<(), RestoreError> {
        if run.kept().iter().any(|k| k == backup_id)
            || self.barman().keep_status(backup_id).await?.is_some()
        {
            return Ok(());
        }
        run.record(super::journal::Record::BackupKept {
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

    /// Releases what [`Engine::hold_backup`] held, at the end of the restore.
    pub(super) async fn release_kept(&self, run: &Run) -> Result<(), RestoreError> {
        for id in run.kept() {
            if let Err(err) = self.barman().release_keep(&id).await {
                run.log(format!(
                    "warning: could not release the keep on backup {id}: {err}"
                ))?;
            }
        }
        Ok(())
    }
}

/// A restore's id: microseconds, because two barkeeps on one machine (the tests run several
/// sandboxes at once, in step) must never share one, which marks the processes a resume may
/// kill.
pub(super) fn new_restore_id(now: DateTime<Utc>) -> String {
    format!("r{}", now.format("%Y%m%dT%H%M%S%6fZ"))
}

/// Not in the future, not before the end of the oldest backup. Returns that end.
fn check_target(
    window: &RecoveryWindow,
    target: RestoreTarget,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, RestoreError> {
    let at = target.time();
    if at.utc() > now {
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
    if at.utc() < earliest {
        return Err(RestoreError::OutsideWindow {
            target,
            why: format!(
                "before the end of the oldest backup ({}); nothing earlier can be restored",
                TargetTime::new(earliest)
            ),
        });
    }
    Ok(earliest)
}

/// Recovery stops only at the first commit AFTER the target (docs/barman.md): without one in
/// archived WAL, replay runs to the end and never pauses at the target. A transaction target
/// stops at the transaction's own end record, which must have reached Barman. The one check of
/// it, for the plan, the archive step and a retry; `no_later` says why no later one is coming.
pub(super) fn require_reachable(
    window: &RecoveryWindow,
    target: RestoreTarget,
    no_later: &str,
) -> Result<DateTime<Utc>, RestoreError> {
    let at = target.time().utc();
    let reached = |latest: DateTime<Utc>| match target {
        RestoreTarget::Time(_) => at < latest,
        RestoreTarget::Transaction(_) => at <= latest,
    };
    match window.latest {
        Some(latest) if reached(latest) => Ok(latest),
        Some(latest) => Err(RestoreError::OutsideWindow {
            target,
            why: format!(
                "after the last transaction Barman has archived ({}), {no_later}",
                TargetTime::new(latest)
            ),
        }),
        None => Err(RestoreError::OutsideWindow {
            target,
            why: format!("not restorable: Barman holds no archived transaction, {no_later}"),
        }),
    }
}

/// The backup a restore to `target` starts from: the named one (it must exist, be finished and
/// have ended before the target) or the newest that ended before it; with no WAL gap after it.
fn select_backup<'c>(
    catalog: &'c Catalog,
    target: RestoreTarget,
    backup_id: Option<&str>,
) -> Result<&'c Backup, RestoreError> {
    let at = target.time();
    let backup = match backup_id {
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
            if let Some(end) = b.end_time.filter(|e| *e > at.utc()) {
                return Err(RestoreError::UnusableBackup {
                    id: id.to_owned(),
                    why: format!("it ended at {}, after the target", TargetTime::new(end)),
                });
            }
            b
        }
        None => catalog
            .backup_for_target(at.utc())
            .ok_or_else(|| RestoreError::OutsideWindow {
                target,
                why: "before every finished backup".into(),
            })?,
    };
    // A transaction must end after the backup's end position, not only its time: replay from a
    // backup that already holds the transaction never meets its end record.
    if let (Some(t), Some(end)) = (
        target.transaction(),
        backup.end_xlog.as_deref().and_then(Lsn::parse),
    ) {
        if t.stop_before_first_record().unwrap_or(t.end_lsn) <= end {
            return Err(RestoreError::UnusableBackup {
                id: backup.id.clone(),
                why: format!(
                    "it ends at WAL position {end}, after transaction {} ended ({})",
                    t.xid, t.end_lsn
                ),
            });
        }
    }
    let gaps = catalog.wal_gaps(backup);
    if let Some(first) = gaps.first() {
        return Err(RestoreError::WalGap {
            first: first.to_string(),
            count: gaps.len() - 1,
        });
    }
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("a time")
    }

    #[test]
    fn a_target_needs_a_commit_after_it_in_archived_wal() {
        let window = RecoveryWindow {
            earliest: Some(at("2026-11-28T01:00:00Z")),
            latest: Some(at("2026-11-28T02:00:00Z")),
            latest_segment: None,
        };
        let before = TargetTime::new(at("2026-11-28T01:59:59Z"));
        assert_eq!(
            require_reachable(&window, before.into(), "x").expect("a commit follows"),
            at("2026-11-28T02:00:00Z")
        );
        let same = TargetTime::new(at("2026-11-28T02:00:00Z"));
        let e = require_reachable(&window, same.into(), "and no later one is coming").unwrap_err();
        assert!(
            e.to_string()
                .contains("after the last transaction Barman has archived")
                && e.to_string().ends_with("and no later one is coming"),
            "{e}"
        );
        let empty = RecoveryWindow {
            latest: None,
            ..window.clone()
        };
        assert!(require_reachable(&empty, before.into(), "x").is_err());
    }

    #[test]
    fn a_target_in_the_future_or_before_the_oldest_backup_is_refused() {
        let window = RecoveryWindow {
            earliest: Some(at("2026-11-28T01:00:00Z")),
            latest: Some(at("2026-11-28T02:00:00Z")),
            latest_segment: None,
        };
        let now = at("2026-11-28T03:00:00Z");
        assert!(check_target(
            &window,
            TargetTime::new(at("2026-11-28T03:00:01Z")).into(),
            now
        )
        .unwrap_err()
        .to_string()
        .contains("in the future"));
        assert!(check_target(
            &window,
            TargetTime::new(at("2026-11-28T00:59:59Z")).into(),
            now
        )
        .unwrap_err()
        .to_string()
        .contains("before the end of the oldest backup"));
        assert_eq!(
            check_target(
                &window,
                TargetTime::new(at("2026-11-28T01:30:00Z")).into(),
                now
            )
            .expect("inside"),
            at("2026-11-28T01:00:00Z")
        );
    }
}
