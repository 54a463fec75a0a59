//! Starting and stopping PostgreSQL: one trait, two real implementations (systemd on NixOS,
//! pg_ctl in the sandbox and the tests). "Stopped" is always PROVEN from the data directory
//! (no postmaster.pid, or a pid that is not a live postmaster), never assumed: barman recover
//! over a running server corrupts it (docs/barman.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ServiceConfig};
use crate::process::{ProcessError, Program};
use crate::state_dir::StateDir;
use crate::validate;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Run(#[from] ProcessError),
    #[error("{what}: {source}")]
    File {
        what: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed (exit code {code:?}): {output}")]
    Failed {
        command: String,
        code: Option<i32>,
        output: String,
    },
    #[error(
        "PostgreSQL is still running on {data_dir} (postmaster pid {pid}) after it was stopped"
    )]
    StillRunning { data_dir: PathBuf, pid: i32 },
    #[error("refusing to use {0:?} as a unit name, pg_ctl option or path: only letters, digits and - _ . / : , = + @ are allowed")]
    Invalid(String),
}

/// What the data directory says about its postmaster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postmaster {
    /// No postmaster.pid, or one whose pid is not a live postgres process: proven stopped.
    Stopped,
    Running {
        pid: i32,
    },
}

/// Reads `<data_dir>/postmaster.pid` and checks the pid against /proc.
pub fn postmaster(data_dir: &Path) -> Postmaster {
    let Ok(text) = std::fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return Postmaster::Stopped;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return Postmaster::Stopped;
    };
    if pid <= 0 {
        return Postmaster::Stopped;
    }
    // A live process whose name is postgres/postmaster holds the data dir. A stale pid file
    // left by a crash (the pid now free, or reused by something else) does not.
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => {
            let comm = comm.trim();
            if comm == "postgres" || comm == "postmaster" {
                Postmaster::Running { pid }
            } else {
                Postmaster::Stopped
            }
        }
        Err(_) => Postmaster::Stopped,
    }
}

/// Start/stop of the PostgreSQL service.
#[allow(async_fn_in_trait)]
pub trait ServiceControl {
    /// Starts PostgreSQL and returns once it accepts connections (a paused standby counts).
    async fn start(&self) -> Result<(), ServiceError>;
    /// Stops PostgreSQL (fast shutdown) and proves it from the data directory.
    async fn stop(&self) -> Result<(), ServiceError>;
    /// Keeps anything else from starting PostgreSQL while its data dir is away or empty
    /// (NixOS' preStart would initdb an empty one). Undone by `release_start_guard`.
    async fn guard_against_start(&self) -> Result<(), ServiceError>;
    async fn release_start_guard(&self) -> Result<(), ServiceError>;
    /// What the service manager believes (`systemctl is-active`, `pg_ctl status`). For
    /// display; decisions use `postmaster()`, the proof from the data directory.
    async fn is_active(&self) -> Result<bool, ServiceError>;
    fn data_dir(&self) -> &Path;
    /// Proof from the data directory, whatever the service manager believes.
    fn postmaster(&self) -> Postmaster {
        postmaster(self.data_dir())
    }
}

/// `pg_ctl -D <data_dir>`: the sandbox and the tests.
#[derive(Debug, Clone)]
pub struct PgCtl {
    pub pg_ctl: PathBuf,
    pub data_dir: PathBuf,
    pub log_file: PathBuf,
    pub options: Vec<String>,
}

/// `systemctl start|stop <unit>`: NixOS. Not runnable on the machines that build barkeep (no
/// systemd there); covered by the NixOS VM tests.
#[derive(Debug, Clone)]
pub struct Systemd {
    pub systemctl: PathBuf,
    pub unit: String,
    pub data_dir: PathBuf,
    /// While this file exists the NixOS module's start condition skips every start of the
    /// unit (no initdb of an empty data dir, no Restart= loop). barkeep has no right to mask.
    pub start_blocker: PathBuf,
}

/// The configured implementation.
#[derive(Debug, Clone)]
pub enum Service {
    PgCtl(PgCtl),
    Systemd(Systemd),
}

impl Service {
    pub fn from_config(config: &Config, state_dir: &StateDir) -> Result<Self, ServiceError> {
        Ok(match &config.service {
            ServiceConfig::PgCtl { log_file, options } => {
                // pg_ctl builds a shell line around the data directory and the log file
                // (`exec postgres -D "<dir>" ... >> "<log>"`): only plain paths get through.
                for p in [&config.postgres.data_dir, log_file] {
                    if !validate::is_plain_path(p) {
                        return Err(ServiceError::Invalid(p.display().to_string()));
                    }
                }
                for o in options {
                    // pg_ctl hands -o to a shell: only plain words get through.
                    if !o
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_=./:,".contains(&b))
                    {
                        return Err(ServiceError::Invalid(o.clone()));
                    }
                }
                Service::PgCtl(PgCtl {
                    pg_ctl: config.postgres.bin_dir.join("pg_ctl"),
                    data_dir: config.postgres.data_dir.clone(),
                    log_file: log_file.clone(),
                    options: options.clone(),
                })
            }
            ServiceConfig::Systemd { unit, systemctl } => {
                if !validate::is_unit_name(unit) {
                    return Err(ServiceError::Invalid(unit.clone()));
                }
                Service::Systemd(Systemd {
                    systemctl: systemctl.clone(),
                    unit: unit.clone(),
                    data_dir: config.postgres.data_dir.clone(),
                    start_blocker: state_dir.start_blocker(),
                })
            }
        })
    }
}

const START_TIMEOUT: Duration = Duration::from_secs(900);

async fn run(
    program: &Path,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<String, ServiceError> {
    let p = Program::new(program, timeout).args(args.iter().copied());
    let command = p.display();
    tracing::info!(%command, "service control");
    let out = p.run().await?;
    let text = format!("{}{}", out.stdout, out.stderr);
    if out.success() {
        Ok(text)
    } else {
        Err(ServiceError::Failed {
            command,
            code: out.code,
            output: text.trim().to_owned(),
        })
    }
}

/// Waits until the data directory proves the postmaster gone.
async fn prove_stopped(data_dir: &Path, within: Duration) -> Result<(), ServiceError> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match postmaster(data_dir) {
            Postmaster::Stopped => return Ok(()),
            Postmaster::Running { pid } => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(ServiceError::StillRunning {
                        data_dir: data_dir.to_owned(),
                        pid,
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl ServiceControl for PgCtl {
    async fn start(&self) -> Result<(), ServiceError> {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "-D".as_ref(),
            self.data_dir.as_os_str(),
            "-l".as_ref(),
            self.log_file.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "900".as_ref(),
        ];
        for o in &self.options {
            args.push("-o".as_ref());
            args.push(o.as_ref());
        }
        args.push("start".as_ref());
        run(&self.pg_ctl, &args, START_TIMEOUT).await.map(drop)
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        if let Postmaster::Running { .. } = postmaster(&self.data_dir) {
            let args: [&std::ffi::OsStr; 8] = [
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "600".as_ref(),
                "stop".as_ref(),
            ];
            if let Err(e) = run(&self.pg_ctl, &args, Duration::from_secs(620)).await {
                // "PID file does not exist": it stopped meanwhile. The proof below decides.
                tracing::warn!(error = %e, "pg_ctl stop reported an error");
            }
        }
        prove_stopped(&self.data_dir, Duration::from_secs(10)).await
    }

    async fn guard_against_start(&self) -> Result<(), ServiceError> {
        // Nothing but barkeep starts a pg_ctl-managed server.
        Ok(())
    }

    async fn is_active(&self) -> Result<bool, ServiceError> {
        // pg_ctl status: 0 running, 3 not running, 4 no data directory.
        match run(
            &self.pg_ctl,
            &["-D".as_ref(), self.data_dir.as_os_str(), "status".as_ref()],
            Duration::from_secs(30),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(ServiceError::Failed {
                code: Some(3 | 4), ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn release_start_guard(&self) -> Result<(), ServiceError> {
        Ok(())
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl ServiceControl for Systemd {
    async fn start(&self) -> Result<(), ServiceError> {
        run(
            &self.systemctl,
            &["start".as_ref(), self.unit.as_ref()],
            START_TIMEOUT,
        )
        .await
        .map(drop)
    }

    async fn stop(&self) -> Result<(), ServiceError> {
        run(
            &self.systemctl,
            &["stop".as_ref(), self.unit.as_ref()],
            Duration::from_secs(620),
        )
        .await?;
        prove_stopped(&self.data_dir, Duration::from_secs(30)).await
    }

    async fn guard_against_start(&self) -> Result<(), ServiceError> {
        let io = |source| ServiceError::File {
            what: format!("cannot create {}", self.start_blocker.display()),
            source,
        };
        let f = std::fs::File::create(&self.start_blocker).map_err(io)?;
        f.sync_all().map_err(io)?;
        if let Some(dir) = self.start_blocker.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
        }
        Ok(())
    }

    async fn is_active(&self) -> Result<bool, ServiceError> {
        // is-active: 0 active, 3 inactive/failed (and other non-zero codes for unknown units).
        match run(
            &self.systemctl,
            &["is-active".as_ref(), "--quiet".as_ref(), self.unit.as_ref()],
            Duration::from_secs(30),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(ServiceError::Failed { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn release_start_guard(&self) -> Result<(), ServiceError> {
        match std::fs::remove_file(&self.start_blocker) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(ServiceError::File {
                what: format!("cannot remove {}", self.start_blocker.display()),
                source,
            }),
        }
    }

    fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl ServiceControl for Service {
    async fn start(&self) -> Result<(), ServiceError> {
        match self {
            Service::PgCtl(s) => s.start().await,
            Service::Systemd(s) => s.start().await,
        }
    }
    async fn stop(&self) -> Result<(), ServiceError> {
        match self {
            Service::PgCtl(s) => s.stop().await,
            Service::Systemd(s) => s.stop().await,
        }
    }
    async fn guard_against_start(&self) -> Result<(), ServiceError> {
        match self {
            Service::PgCtl(s) => s.guard_against_start().await,
            Service::Systemd(s) => s.guard_against_start().await,
        }
    }
    async fn release_start_guard(&self) -> Result<(), ServiceError> {
        match self {
            Service::PgCtl(s) => s.release_start_guard().await,
            Service::Systemd(s) => s.release_start_guard().await,
        }
    }
    async fn is_active(&self) -> Result<bool, ServiceError> {
        match self {
            Service::PgCtl(s) => s.is_active().await,
            Service::Systemd(s) => s.is_active().await,
        }
    }
    fn data_dir(&self) -> &Path {
        match self {
            Service::PgCtl(s) => &s.data_dir,
            Service::Systemd(s) => &s.data_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_stale_pid_file_means_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(postmaster(dir.path()), Postmaster::Stopped);
        // Our own pid is alive but is not a postgres process: a stale, reused pid.
        let me = std::process::id();
        std::fs::write(dir.path().join("postmaster.pid"), format!("{me}\n/data\n")).expect("write");
        assert_eq!(postmaster(dir.path()), Postmaster::Stopped);
        std::fs::write(dir.path().join("postmaster.pid"), "garbage\n").expect("write");
        assert_eq!(postmaster(dir.path()), Postmaster::Stopped);
    }
}
