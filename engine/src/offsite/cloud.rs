//! Barman's cloud tools as barkeep runs them: argv only, the endpoint and the bucket from
//! barkeep.toml, the credentials from their file and from nowhere else (the AWS variables of
//! barkeep's own environment are removed, `AWS_CONFIG_FILE` points nowhere, no instance
//! metadata lookups), TZ=UTC, each in a process group of its own with a time-out.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::OffsiteError;
use crate::config::{Config, OffsiteConfig};
use crate::process::{CommandOutput, Program};

/// The listing helper (`python -c`): Barman 3.3's own listing stops at 1,000 keys.
const LIST_BUCKET: &str = concat!(include_str!("helper.py"), include_str!("list_bucket.py"));
/// The fetching helper (`python -c`): the WAL a restore replays, in one run.
const FETCH_WALS: &str = concat!(include_str!("helper.py"), include_str!("fetch_wals.py"));

/// What the bucket holds, as [`Tools::list`] read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub wals: Vec<RemoteWal>,
    pub backups: Vec<RemoteBackup>,
}

impl Bucket {
    /// The names of the WAL files it holds.
    pub fn wal_names(&self) -> BTreeSet<String> {
        self.wals.iter().map(|w| w.name.clone()).collect()
    }

    /// The newest WAL file it holds, in WAL order: WAL file names sort as the WAL runs
    /// (timeline, then position; a history file after its parent timeline's segments, a backup
    /// label after its segment).
    pub fn newest_wal(&self) -> Option<&str> {
        self.wals.iter().map(|w| w.name.as_str()).max()
    }

    /// The ids of the backups it holds that are DONE (usable for a restore).
    pub fn done_backups(&self) -> BTreeSet<String> {
        self.backups
            .iter()
            .filter(|b| b.status == "DONE")
            .map(|b| b.id.clone())
            .collect()
    }
}

/// What [`Tools::fetch_wals`] fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct FetchedWals {
    pub fetched: usize,
    pub bytes: u64,
}

/// A WAL file in the bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteWal {
    /// The WAL file's name (without the compression suffix of its key).
    pub name: String,
    pub key: String,
    pub size: u64,
    /// When the store received it (seconds since the epoch).
    pub modified: f64,
}

/// A backup in the bucket, as barman-cloud-backup-list reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteBackup {
    pub id: String,
    pub status: String,
    pub begin_wal: Option<String>,
    pub end_wal: Option<String>,
    /// Seconds since the epoch.
    pub end_time: Option<f64>,
    /// The size of its files, as Barman measured it when it took the backup.
    #[serde(default)]
    pub size: Option<u64>,
}

impl RemoteBackup {
    /// When the backup ended: a restore target must lie after it.
    pub fn ended(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let t = self.end_time?;
        chrono::DateTime::from_timestamp(t.floor() as i64, ((t.fract()) * 1e9) as u32)
    }
}

/// The AWS settings of barkeep's own environment that would override the configured ones.
const INHERITED: [&str; 6] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ENDPOINT_URL",
];

pub(crate) struct Tools {
    bin_dir: PathBuf,
    python: PathBuf,
    offsite: OffsiteConfig,
    server: String,
    timeout: Duration,
}

impl Tools {
    /// The tools for `offsite`, once its credentials file is proven usable: a regular file that
    /// neither its group nor others can read.
    pub(crate) fn new(config: &Config, offsite: &OffsiteConfig) -> Result<Self, OffsiteError> {
        let path = &offsite.credentials_file;
        let problem = |p: String| OffsiteError::Credentials {
            path: path.clone(),
            problem: p,
        };
        let meta = std::fs::metadata(path).map_err(|e| problem(e.to_string()))?;
        if !meta.is_file() {
            return Err(problem("not a regular file".into()));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(problem(format!(
                "others can read it (mode {:o}, owner uid {}): chmod 600 it",
                meta.permissions().mode() & 0o777,
                meta.uid()
            )));
        }
        Ok(Self {
            bin_dir: offsite.cloud_bin_dir(&config.barman),
            python: offsite.python(&config.barman),
            offsite: offsite.clone(),
            server: config.barman.server.clone(),
            timeout: Duration::from_secs(offsite.timeout_secs.max(1)),
        })
    }

    /// `program` with the environment and the options every cloud tool takes.
    fn program(&self, program: impl Into<PathBuf>) -> Program {
        let mut p = Program::new(program, self.timeout)
            .env("TZ", "UTC")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                &self.offsite.credentials_file.to_string_lossy(),
            )
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_DEFAULT_REGION", &self.offsite.region)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for v in INHERITED {
            p = p.env_remove(v);
        }
        p
    }

    fn tool(&self, name: &str) -> Program {
        self.program(self.bin_dir.join(name))
            .args(["--cloud-provider", "aws-s3", "--endpoint-url"])
            .arg(&self.offsite.endpoint_url)
    }

    /// What the bucket holds: its WAL files and its backups (one Python run).
    pub(crate) async fn list(&self) -> Result<Bucket, OffsiteError> {
        let out = self
            .program(&self.python)
            .arg("-c")
            .arg_shown_as(LIST_BUCKET, "<barkeep's listing of the bucket>")
            .args(["--cloud-provider", "aws-s3", "--endpoint-url"])
            .arg(&self.offsite.endpoint_url)
            .arg(&self.offsite.bucket_url)
            .arg(&self.server)
            .run()
            .await?;
        match out.code {
            Some(0) => serde_json::from_str(out.stdout.trim()).map_err(|e| OffsiteError::Tool {
                command: "listing the bucket".into(),
                message: format!("unexpected output ({e}): {}", tail(&out.stdout)),
            }),
            _ => Err(self.listing_error("listing the bucket", &out)),
        }
    }

    /// The exit codes of barkeep's Python helpers, in words.
    fn listing_error(&self, what: &str, out: &CommandOutput) -> OffsiteError {
        match out.code {
            Some(2) => OffsiteError::Unreachable {
                endpoint: self.offsite.endpoint_url.clone(),
                detail: last_error(out),
            },
            Some(5) => OffsiteError::NoBucket {
                bucket_url: self.offsite.bucket_url.clone(),
                endpoint: self.offsite.endpoint_url.clone(),
            },
            Some(6) => OffsiteError::Credentials {
                path: self.offsite.credentials_file.clone(),
                problem: last_error(out),
            },
            _ => failed(what, out),
        }
    }

    /// Copies one WAL file, as PostgreSQL wrote it and named it, gzip-compressed on the way.
    pub(super) async fn archive_wal(&self, raw: &Path) -> Result<(), OffsiteError> {
        let out = self
            .tool("barman-cloud-wal-archive")
            .arg("--gzip")
            .arg(&self.offsite.bucket_url)
            .arg(&self.server)
            .arg(raw)
            .run()
            .await?;
        self.check("barman-cloud-wal-archive", &out)
    }

    /// Copies one DONE backup of the local catalog through barman-cloud-backup's hook
    /// interface, the only way it copies a Barman backup.
    pub(super) async fn backup(&self, dir: &Path, id: &str) -> Result<(), OffsiteError> {
        let out = self
            .tool("barman-cloud-backup")
            .env("BARMAN_HOOK", "backup_script")
            .env("BARMAN_PHASE", "post")
            .env("BARMAN_BACKUP_DIR", &dir.to_string_lossy())
            .env("BARMAN_BACKUP_ID", id)
            .env("BARMAN_STATUS", "DONE")
            .arg("--gzip")
            .arg(&self.offsite.bucket_url)
            .arg(&self.server)
            .run()
            .await?;
        self.check(&format!("barman-cloud-backup of backup {id}"), &out)
    }

    /// Restores backup `id` from the bucket into `dest`, an empty directory
    /// (barman-cloud-restore).
    pub(crate) async fn restore_backup(&self, id: &str, dest: &Path) -> Result<(), OffsiteError> {
        if !crate::validate::is_backup_id(id) {
            return Err(OffsiteError::Tool {
                command: "barman-cloud-restore".into(),
                message: format!("{id:?} is not a backup id"),
            });
        }
        let out = self
            .tool("barman-cloud-restore")
            .arg(&self.offsite.bucket_url)
            .arg(&self.server)
            .arg(id)
            .arg(dest)
            .run()
            .await?;
        self.check(&format!("barman-cloud-restore of backup {id}"), &out)
    }

    /// Fetches into `dest` every history file and every segment from `begin_wal` on (its
    /// timeline or a later one), decompressed: what a replay from that backup can need.
    /// Returns how many files and bytes.
    pub(crate) async fn fetch_wals(
        &self,
        begin_wal: &str,
        dest: &Path,
    ) -> Result<FetchedWals, OffsiteError> {
        if crate::wal::WalSegment::parse(begin_wal).is_none() {
            return Err(OffsiteError::Tool {
                command: "fetching WAL".into(),
                message: format!("{begin_wal:?} is not a WAL segment name"),
            });
        }
        let out = self
            .program(&self.python)
            .arg("-c")
            .arg_shown_as(FETCH_WALS, "<barkeep's WAL fetch from the bucket>")
            .args(["--cloud-provider", "aws-s3", "--endpoint-url"])
            .arg(&self.offsite.endpoint_url)
            .arg(&self.offsite.bucket_url)
            .arg(&self.server)
            .arg(begin_wal)
            .arg(dest)
            .run()
            .await?;
        match out.code {
            Some(0) => serde_json::from_str(out.stdout.trim()).map_err(|e| OffsiteError::Tool {
                command: "fetching WAL from the bucket".into(),
                message: format!("unexpected output ({e}): {}", tail(&out.stdout)),
            }),
            _ => Err(self.listing_error("fetching WAL from the bucket", &out)),
        }
    }

    fn check(&self, what: &str, out: &CommandOutput) -> Result<(), OffsiteError> {
        match out.code {
            Some(0) => Ok(()),
            Some(2) => Err(OffsiteError::Unreachable {
                endpoint: self.offsite.endpoint_url.clone(),
                detail: last_error(out),
            }),
            _ => Err(failed(what, out)),
        }
    }
}

fn failed(what: &str, out: &CommandOutput) -> OffsiteError {
    OffsiteError::Tool {
        command: what.to_owned(),
        message: format!(
            "exit {} : {}",
            out.code.map_or("by a signal".into(), |c| c.to_string()),
            last_error(out)
        ),
    }
}

/// The tool's own words: its ERROR lines, or the last lines it printed.
fn last_error(out: &CommandOutput) -> String {
    let errors: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("Error") || l.contains("error"))
        .map(message_of)
        .collect();
    if errors.is_empty() {
        tail(&format!("{}\n{}", out.stdout, out.stderr))
    } else {
        errors.join("; ")
    }
}

/// A line of Barman's log without the prefix its cloud tools write
/// (`%(asctime)s [%(process)s] %(levelname)s: `): the message a person reads.
/// `2026-11-28 18:05:17,034 [10215] ERROR: Can't connect to cloud provider: ...` gives
/// `Can't connect to cloud provider: ...`; any other line is kept as it is.
fn message_of(line: &str) -> &str {
    let line = line.trim();
    let starts_with_date = line.bytes().next().is_some_and(|b| b.is_ascii_digit());
    let Some((head, rest)) = line.split_once("] ") else {
        return line;
    };
    if !starts_with_date || !head.contains(" [") {
        return line;
    }
    match rest.split_once(": ") {
        Some((level, message))
            if !level.is_empty() && level.bytes().all(|b| b.is_ascii_uppercase()) =>
        {
            message
        }
        _ => line,
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wal(name: &str) -> RemoteWal {
        RemoteWal {
            name: name.into(),
            key: format!("sandbox/pg/wals/{name}.gz"),
            size: 1,
            modified: 0.0,
        }
    }

    #[test]
    fn an_error_line_of_barmans_log_is_told_without_its_time_and_process() {
        assert_eq!(
            message_of(
                "2026-11-28 18:05:17,034 [10215] ERROR: Can't connect to cloud provider: \
                 Could not connect to the endpoint URL: \"http://127.0.0.1:3931/barkeep\""
            ),
            "Can't connect to cloud provider: Could not connect to the endpoint URL: \
             \"http://127.0.0.1:3931/barkeep\""
        );
        for kept in [
            "the store refused the credentials (AccessDenied)",
            "ClientError: An error occurred [x] here: (NoSuchKey)",
            "",
        ] {
            assert_eq!(message_of(kept), kept);
        }
    }

    #[test]
    fn the_newest_wal_file_is_the_last_in_wal_order_not_in_listing_order() {
        let bucket = |names: &[&str]| Bucket {
            wals: names.iter().map(|n| wal(n)).collect(),
            backups: Vec::new(),
        };
        assert_eq!(bucket(&[]).newest_wal(), None);
        let b = bucket(&[
            "000000010000000000000003",
            "000000010000000000000002.00000028.backup",
            "00000002.history",
            "000000010000000000000004",
        ]);
        assert_eq!(b.newest_wal(), Some("00000002.history"));
        let b = bucket(&[
            "000000020000000000000004",
            "00000002.history",
            "000000010000000000000004",
        ]);
        assert_eq!(b.newest_wal(), Some("000000020000000000000004"));
    }
}
