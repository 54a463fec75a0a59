//! Running the barman CLI: argv only (never a shell), TZ=UTC, a timeout, all output read
//! (barman dies of BrokenPipeError otherwise) and logged, failures turned into typed errors.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::BarmanConfig;
use crate::process::{ProcessError, Program};
use crate::target::RestoreTarget;
use crate::validate;

#[derive(Debug, thiserror::Error)]
pub enum BarmanError {
    #[error(transparent)]
    Run(#[from] ProcessError),
    #[error("`barman {command}` failed (exit code {code:?}): {message}")]
    Failed {
        command: String,
        code: Option<i32>,
        message: String,
        output: Box<CommandOutput>,
    },
    #[error("barman printed something barkeep cannot read for `{command}`: {message}")]
    Unreadable { command: String, message: String },
    #[error("refusing to pass {0:?} to barman: not a valid value")]
    InvalidArgument(String),
}

pub use crate::process::CommandOutput;

/// One configured barman server.
#[derive(Debug, Clone)]
pub struct Barman {
    bin: PathBuf,
    config: PathBuf,
    server: String,
    timeout: Duration,
}

/// One line of `barman -f json check`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckItem {
    pub name: String,
    pub ok: bool,
    pub hint: String,
}

impl Barman {
    pub fn new(cfg: &BarmanConfig) -> Self {
        Self {
            bin: cfg.bin.clone(),
            config: cfg.config.clone(),
            server: cfg.server.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs),
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Runs `barman -c <config> <args...>`; a non-zero exit is an error carrying the output.
    pub async fn run(&self, args: &[OsString]) -> Result<CommandOutput, BarmanError> {
        let out = self.run_unchecked(args).await?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            Err(BarmanError::Failed {
                command: out.command.clone(),
                code: out.code,
                message: failure_message(&out),
                output: Box::new(out),
            })
        }
    }

    /// Runs barman and returns its output whatever the exit code (timeouts and spawn errors
    /// are still errors).
    pub async fn run_unchecked(&self, args: &[OsString]) -> Result<CommandOutput, BarmanError> {
        let program = Program::new(&self.bin, self.timeout)
            .arg("-c")
            .arg(&self.config)
            .args(args.iter().cloned())
            .env("TZ", "UTC")
            .env("LC_ALL", "C.UTF-8");
        let mut out = program.run().await?;
        // Messages name the barman subcommand, not the paths in front of it.
        out.command = join(args);
        Ok(out)
    }

    fn args<const N: usize>(items: [&str; N]) -> Vec<OsString> {
        items.iter().map(OsString::from).collect()
    }

    /// `switch-wal --force --archive`: close the current segment and wait until Barman has it.
    pub async fn switch_wal_archive(&self) -> Result<CommandOutput, BarmanError> {
        self.run(&Self::args([
            "switch-wal",
            "--force",
            "--archive",
            &self.server,
        ]))
        .await
    }

    /// `backup --wait`: a new base backup, waiting for its WAL.
    pub async fn backup(&self) -> Result<CommandOutput, BarmanError> {
        self.run(&Self::args(["backup", "--wait", &self.server]))
            .await
    }

    /// `-f json check`: every check with its result; exit 1 just means one failed.
    pub async fn check(&self) -> Result<Vec<CheckItem>, BarmanError> {
        let out = self
            .run_unchecked(&Self::args(["-f", "json", "check", &self.server]))
            .await?;
        parse_check(&self.server, &out)
    }

    pub async fn check_backup(&self, backup_id: &str) -> Result<CommandOutput, BarmanError> {
        let id = checked_backup_id(backup_id)?;
        self.run(&Self::args(["check-backup", &self.server, id]))
            .await
    }

    /// Holds a backup against retention for the length of a restore.
    pub async fn keep(&self, backup_id: &str) -> Result<CommandOutput, BarmanError> {
        let id = checked_backup_id(backup_id)?;
        self.run(&Self::args(["keep", "--target", "full", &self.server, id]))
            .await
    }

    pub async fn release_keep(&self, backup_id: &str) -> Result<CommandOutput, BarmanError> {
        let id = checked_backup_id(backup_id)?;
        self.run(&Self::args(["keep", "--release", &self.server, id]))
            .await
    }

    /// Whether the backup already had a keep annotation before barkeep touched it.
    pub async fn keep_status(&self, backup_id: &str) -> Result<Option<String>, BarmanError> {
        let id = checked_backup_id(backup_id)?;
        let out = self
            .run(&Self::args(["keep", "--status", &self.server, id]))
            .await?;
        let s = out.stdout.trim();
        Ok(match s.rsplit(':').next().map(str::trim) {
            Some("nokeep") | Some("") | None => None,
            Some(other) => Some(other.to_owned()),
        })
    }

    /// `recover --target-action pause --target-time '<UTC +00:00>' --target-tli <tli>` (or
    /// `--target-xid <xid> [--exclusive]` for a transaction target) into
    /// `destination`. The caller must have proven that destination is an EMPTY directory of a
    /// STOPPED server (docs/barman.md): barman itself does not refuse.
    pub async fn recover(
        &self,
        backup_id: &str,
        destination: &Path,
        target: RestoreTarget,
        timeline: Option<u32>,
    ) -> Result<CommandOutput, BarmanError> {
        let id = checked_backup_id(backup_id)?;
        let mut args = Self::args(["recover", "--target-action", "pause"]);
        args.extend(target.barman_args().into_iter().map(Into::into));
        args.push("--target-tli".into());
        args.push(match timeline {
            Some(t) if t > 0 => t.to_string().into(),
            _ => "latest".into(),
        });
        args.push(self.server.clone().into());
        args.push(id.into());
        if !destination.is_absolute() {
            return Err(BarmanError::InvalidArgument(
                destination.display().to_string(),
            ));
        }
        args.push(destination.as_os_str().to_owned());
        self.run(&args).await
    }
}

fn join(args: &[OsString]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn checked_backup_id(id: &str) -> Result<&str, BarmanError> {
    if validate::is_backup_id(id) {
        Ok(id)
    } else {
        Err(BarmanError::InvalidArgument(id.to_owned()))
    }
}

/// The words a person can act on: barman's `_ERROR` JSON, its ERROR lines, or the last lines.
fn failure_message(out: &CommandOutput) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(out.stdout.trim()) {
        if let Some(errs) = v.get("_ERROR").and_then(|e| e.as_array()) {
            let msgs: Vec<_> = errs.iter().filter_map(|e| e.as_str()).collect();
            if !msgs.is_empty() {
                return msgs.join("; ");
            }
        }
    }
    let errors: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("EXCEPTION") || l.contains("FATAL"))
        .collect();
    if !errors.is_empty() {
        return errors.join("; ");
    }
    let tail: Vec<&str> = out.lines().filter(|l| !l.trim().is_empty()).collect();
    let n = tail.len().saturating_sub(3);
    if tail.is_empty() {
        "no output".into()
    } else {
        tail[n..].join("; ")
    }
}

fn parse_check(server: &str, out: &CommandOutput) -> Result<Vec<CheckItem>, BarmanError> {
    let unreadable = |message: String| BarmanError::Unreadable {
        command: out.command.clone(),
        message,
    };
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .map_err(|e| unreadable(format!("{e}: {}", failure_message(out))))?;
    if v.get("_ERROR").is_some() {
        return Err(BarmanError::Failed {
            command: out.command.clone(),
            code: out.code,
            message: failure_message(out),
            output: Box::new(out.clone()),
        });
    }
    let checks = v
        .get(server)
        .and_then(|s| s.as_object())
        .ok_or_else(|| unreadable(format!("no section for server {server}")))?;
    Ok(checks
        .iter()
        .map(|(name, item)| CheckItem {
            name: name.clone(),
            ok: item.get("status").and_then(|s| s.as_str()) == Some("OK"),
            hint: item
                .get("hint")
                .and_then(|h| h.as_str())
                .unwrap_or_default()
                .to_owned(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &str, stderr: &str, code: i32) -> CommandOutput {
        CommandOutput {
            command: "x".into(),
            code: Some(code),
            stdout: stdout.into(),
            stderr: stderr.into(),
            elapsed_ms: 0,
        }
    }

    #[test]
    fn error_json_becomes_the_message() {
        let o = out(
            r#"{"_ERROR": ["Unknown backup '20991231T000000' for server 'pg'"]}"#,
            "",
            1,
        );
        assert_eq!(
            failure_message(&o),
            "Unknown backup '20991231T000000' for server 'pg'"
        );
        let o = out(
            "Starting remote restore\n",
            "ERROR: The requested target time is before the backup end time\n",
            1,
        );
        assert!(failure_message(&o).starts_with("ERROR: The requested target time"));
    }

    #[test]
    fn check_json_is_read_per_item() {
        let o = out(
            r#"{"pg": {"PostgreSQL": {"status": "OK"}, "WAL archive": {"status": "FAILED", "hint": "please make sure WAL shipping is setup"}}}"#,
            "",
            1,
        );
        let items = parse_check("pg", &o).expect("parses");
        assert_eq!(items.len(), 2);
        assert!(items
            .iter()
            .any(|i| i.name == "WAL archive" && !i.ok && i.hint.contains("WAL shipping")));
        assert!(items.iter().any(|i| i.name == "PostgreSQL" && i.ok));
    }

    #[tokio::test]
    async fn refuses_bad_backup_ids_before_spawning() {
        let b = Barman {
            bin: "/nonexistent/barman".into(),
            config: "/x".into(),
            server: "pg".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(matches!(
            b.keep("--help").await,
            Err(BarmanError::InvalidArgument(_))
        ));
        assert!(matches!(
            b.switch_wal_archive().await,
            Err(BarmanError::Run(ProcessError::Spawn { .. }))
        ));
    }
}
