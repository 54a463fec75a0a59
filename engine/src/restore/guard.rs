//! Proofs before anything destructive: what PostgreSQL and the data directory say must agree
//! with what the journal expects, and barkeep must run as the user that owns the cluster.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::mode::Instance;
use super::run::Run;
use super::{Plan, RestoreError};
use crate::config::Config;
use crate::probe;
use crate::service::{Postmaster, ServiceControl};
use crate::Engine;

/// What the restored copy in the data directory is, proven rather than assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestoredCopy {
    /// Never started: a copy of a backup (whole or half-written), junk by definition.
    NeverStarted,
    /// Started, and still in recovery (running and `pg_is_in_recovery()`, or stopped with its
    /// `recovery.signal` in place): nothing was written to it; it may go.
    InRecovery,
    /// Left recovery (PostgreSQL removes `recovery.signal` when it promotes): the database may
    /// have taken writes since, it is live data and is never deleted.
    Promoted { timeline: Option<i32> },
}

impl Engine {
    /// Where the restored copy is: the side instance of a preview until its swap begins, else
    /// in the data directory's place.
    pub(crate) fn restored_instance(&self, plan: &Plan, run: &Run) -> Instance {
        self.restored_copy_of(plan, run.swap_begun())
    }

    /// The restored copy of `plan`, before (`swapped` false) or after a preview's swap began.
    pub(crate) fn restored_copy_of(&self, plan: &Plan, swapped: bool) -> Instance {
        match plan.mode.preview() {
            Some(p) if !swapped => self.side(p),
            _ => self.production(),
        }
    }

    /// Examines the restored copy WITHOUT stopping it: a promoted server keeps serving.
    /// `Unknown` cases (a server that does not answer) are decided from the files after a stop,
    /// see [`Engine::restored_copy_stopped`].
    pub(crate) async fn restored_copy_running(
        &self,
        run: &Run,
        copy: &Instance,
    ) -> Result<Option<RestoredCopy>, RestoreError> {
        if !run.server_started() {
            return Ok(Some(RestoredCopy::NeverStarted));
        }
        if let Postmaster::Stopped = copy.postmaster() {
            return Ok(None);
        }
        match probe::status(&copy.pg).await {
            Ok(s) if s.in_recovery => {
                if let Some(t) = run.paused_timeline() {
                    if t != s.timeline {
                        tracing::warn!(
                            paused = t,
                            now = s.timeline,
                            "the restored server is on another timeline than when it paused"
                        );
                    }
                }
                Ok(Some(RestoredCopy::InRecovery))
            }
            Ok(s) => Ok(Some(RestoredCopy::Promoted {
                timeline: Some(s.timeline),
            })),
            // Starting up, or shutting down: the files decide once it is stopped.
            Err(_) => Ok(None),
        }
    }

    /// The proof from the files of a STOPPED restored copy.
    pub(crate) fn restored_copy_stopped(&self, run: &Run, data_dir: &Path) -> RestoredCopy {
        if !run.server_started() || !is_cluster(data_dir) {
            return RestoredCopy::NeverStarted;
        }
        if data_dir.join("recovery.signal").exists() {
            RestoredCopy::InRecovery
        } else {
            RestoredCopy::Promoted { timeline: None }
        }
    }

    /// Refuses to delete or replace the restored copy unless it is proven never started or
    /// still in recovery. Stops it only when PostgreSQL cannot say what it is.
    pub(crate) async fn refuse_if_promoted(
        &self,
        run: &Run,
        plan: &Plan,
        instance: &Instance,
    ) -> Result<(), RestoreError> {
        let copy = match self.restored_copy_running(run, instance).await? {
            Some(c) => c,
            None => {
                instance.service.guard_against_start().await?;
                instance.service.stop().await?;
                self.restored_copy_stopped(run, instance.data_dir())
            }
        };
        match copy {
            RestoredCopy::Promoted { timeline } => Err(RestoreError::Promoted {
                timeline,
                pre_restore: plan.pre_restore_dir.clone(),
            }),
            RestoredCopy::NeverStarted | RestoredCopy::InRecovery => Ok(()),
        }
    }
}

impl Engine {
    /// Stops the restored copy once it is proven never promoted, and says what its files
    /// prove once it is stopped (a promotion may have raced the stop).
    pub(crate) async fn stop_restored_copy(
        &self,
        run: &Run,
        plan: &Plan,
        instance: &Instance,
    ) -> Result<RestoredCopy, RestoreError> {
        self.refuse_if_promoted(run, plan, instance).await?;
        instance.service.guard_against_start().await?;
        instance.service.stop().await?;
        Ok(self.restored_copy_stopped(run, instance.data_dir()))
    }
}

/// A directory that holds a PostgreSQL cluster.
pub(crate) fn is_cluster(dir: &Path) -> bool {
    dir.join("PG_VERSION").is_file() && dir.join("global").join("pg_control").is_file()
}

/// barkeep renames the data directory, runs `barman recover` into it and starts PostgreSQL on
/// it: only the user that owns it can do that without leaving files another user cannot touch
/// (a journal root wrote would wedge every later restore). Checked before anything is written.
pub fn check_os_user(config: &Config) -> Result<(), RestoreError> {
    let me = rustix::process::geteuid().as_raw();
    let candidates = [
        config.postgres.data_dir.as_path(),
        config.state_dir.as_path(),
        config.postgres.data_dir.parent().unwrap_or(Path::new("/")),
    ];
    let Some((dir, owner)) = candidates
        .iter()
        .find_map(|d| std::fs::metadata(d).ok().map(|m| (*d, m.uid())))
    else {
        return Ok(());
    };
    if owner == me {
        return Ok(());
    }
    Err(RestoreError::WrongUser {
        me: user_name(me),
        owner: user_name(owner),
        dir: dir.to_owned(),
    })
}

/// `name (uid)` from /etc/passwd, or the uid alone.
fn user_name(uid: u32) -> String {
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let _pw = f.next()?;
            (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
    });
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}
