//! Off-site copies of the backups and the WAL in S3-compatible storage (docs/offsite.md).
//!
//! barkeep never hooks into Barman: a **replication run** ([`Engine::offsite_replicate`]) lists
//! what the bucket holds, compares it with the local catalog, and copies what is missing with
//! Barman's own cloud tools, one WAL file or one backup at a time. Barman's archiving never
//! waits on the network (an unreachable bucket fails the run, not the archive), and a file that
//! failed once is copied by a later run (no silent hole): the lag says how far behind the bucket
//! is until it is zero. What a run found and did is kept in `<state_dir>/offsite.json`
//! ([`Engine::offsite_status`]): the dashboard reads that, never the bucket.

mod cloud;
mod lag;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{ArchivedWal, Backup, BackupStatus, Catalog, CatalogError};
use crate::config::OffsiteConfig;
use crate::process::ProcessError;
use crate::wal::{classify, WalFileKind};
use crate::Engine;

pub(crate) use cloud::Tools;
pub use cloud::{Bucket, FetchedWals, RemoteBackup, RemoteWal};
pub use lag::Lag;

#[derive(Debug, thiserror::Error)]
pub enum OffsiteError {
    #[error("off-site copies are not configured (no [offsite] section in barkeep.toml)")]
    NotConfigured,
    #[error("another off-site replication is running; try again when it has finished")]
    Busy,
    #[error("cannot reach the off-site endpoint {endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("the bucket of {bucket_url} does not exist at {endpoint} (create it, or fix offsite.bucket_url)")]
    NoBucket {
        bucket_url: String,
        endpoint: String,
    },
    #[error("the off-site credentials file {path}: {problem}")]
    Credentials { path: PathBuf, problem: String },
    #[error("{command} failed: {message}")]
    Tool { command: String, message: String },
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the off-site run stopped unexpectedly: {0}")]
    Task(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> OffsiteError {
    let what = what.into();
    move |source| OffsiteError::Io { what, source }
}

/// What the last replication run found and did: kept in `<state_dir>/offsite.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsiteStatus {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub endpoint_url: String,
    pub bucket_url: String,
    /// How far the bucket is behind the local catalog after this run (`None` when the bucket
    /// could not be listed).
    pub lag: Option<Lag>,
    /// WAL files and backups this run copied.
    pub copied_wals: usize,
    pub copied_backups: Vec<String>,
    /// The DONE backups the bucket holds, oldest first.
    pub offsite_backups: Vec<String>,
    /// Why the run did not finish its work, in words a person can act on.
    pub error: Option<String>,
}

impl OffsiteStatus {
    /// The newest backup the bucket holds.
    pub fn newest_offsite_backup(&self) -> Option<&str> {
        self.offsite_backups.last().map(String::as_str)
    }

    /// Whether the run finished and the bucket holds everything the catalog has.
    pub fn in_sync(&self) -> bool {
        self.error.is_none() && self.lag.as_ref().is_some_and(Lag::is_zero)
    }
}

impl Engine {
    fn offsite_config(&self) -> Result<&OffsiteConfig, OffsiteError> {
        self.config()
            .offsite
            .as_ref()
            .ok_or(OffsiteError::NotConfigured)
    }

    /// What the bucket holds now (the "verify off-site copy" action): its backups and WAL files.
    pub async fn offsite_listing(&self) -> Result<Bucket, OffsiteError> {
        let o = self.offsite_config()?;
        cloud::Tools::new(self.config(), o)?.list().await
    }

    /// What the last replication run found and did, as kept on disk; `None` before the first.
    pub fn offsite_status(&self) -> Option<OffsiteStatus> {
        let text = std::fs::read_to_string(self.config().state().offsite_status()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// One replication run: lists the bucket, copies every local WAL file and DONE backup it
    /// lacks (WAL oldest first, then backups newest first), and records the outcome in
    /// `offsite.json`, a failed run included. One run at a time on the host; a second gets
    /// [`OffsiteError::Busy`].
    pub async fn offsite_replicate(&self) -> Result<OffsiteStatus, OffsiteError> {
        let o = self.offsite_config()?.clone();
        let state = self.config().state();
        // One run at a time on the host (the same flock as the restore's, on its own file).
        let lock_path = state.offsite_lock();
        let _lock = crate::engine::exclusive_flock(&lock_path)
            .await
            .map_err(|e| match e {
                None => OffsiteError::Busy,
                Some(source) => OffsiteError::Io {
                    what: format!("cannot lock {}", lock_path.display()),
                    source,
                },
            })?;
        let started = Utc::now();
        let t0 = Instant::now();
        let mut status = OffsiteStatus {
            started,
            finished: started,
            endpoint_url: o.endpoint_url.clone(),
            bucket_url: o.bucket_url.clone(),
            lag: None,
            copied_wals: 0,
            copied_backups: Vec::new(),
            offsite_backups: Vec::new(),
            error: None,
        };
        let outcome = self.replicate_into(&o, &mut status).await;
        status.finished = Utc::now();
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, "off-site replication failed");
            status.error = Some(e.to_string());
        } else {
            tracing::info!(
                copied_wals = status.copied_wals,
                copied_backups = status.copied_backups.len(),
                lag = ?status.lag,
                ms = t0.elapsed().as_millis() as u64,
                "off-site replication run"
            );
        }
        write_status(&state.offsite_status(), &status)?;
        outcome.map(|()| status)
    }

    async fn replicate_into(
        &self,
        o: &OffsiteConfig,
        status: &mut OffsiteStatus,
    ) -> Result<(), OffsiteError> {
        let tools = cloud::Tools::new(self.config(), o)?;
        let engine = self.clone();
        let catalog = tokio::task::spawn_blocking(move || engine.catalog())
            .await
            .map_err(|e| OffsiteError::Task(e.to_string()))??;
        let bucket = match tools.list().await {
            Ok(b) => b,
            Err(e) => {
                // Not listed: the bucket holds at most what the last run left there.
                let last = self.offsite_status();
                let frontier = last
                    .as_ref()
                    .and_then(|s| s.lag.as_ref())
                    .and_then(|l| l.newest_offsite_wal.clone());
                let known: BTreeSet<String> = last
                    .iter()
                    .flat_map(|s| s.offsite_backups.clone())
                    .collect();
                status.offsite_backups = known.iter().cloned().collect();
                status.lag = Some(Lag::since(&catalog, frontier.as_deref(), &known));
                return Err(e);
            }
        };
        let mut remote = bucket.wal_names();
        let remote_backups = bucket.done_backups();
        // Copied so far, for the lag after the run, a failed one included.
        let mut copied_backups = remote_backups.clone();
        let tmp = self.config().state().offsite_tmp();
        let result = async {
            let missing: Vec<&ArchivedWal> = catalog
                .archived
                .iter()
                .filter(|w| !remote.contains(&w.name))
                .collect();
            for wal in missing {
                let raw = decompressed(&local_path(&catalog, wal), wal, &tmp)?;
                let copied = tools.archive_wal(&raw).await;
                let _ = std::fs::remove_file(&raw);
                copied?;
                remote.insert(wal.name.clone());
                status.copied_wals += 1;
            }
            // barman-cloud-backup copies DONE backups only; the newest is the most useful.
            let missing: Vec<&Backup> = catalog
                .backups
                .iter()
                .rev()
                .filter(|b| b.status == BackupStatus::Done && !copied_backups.contains(&b.id))
                .collect();
            for b in missing {
                tools
                    .backup(&catalog.server_home.join("base").join(&b.id), &b.id)
                    .await?;
                status.copied_backups.push(b.id.clone());
                copied_backups.insert(b.id.clone());
            }
            Ok::<_, OffsiteError>(())
        }
        .await;
        let _ = std::fs::remove_dir_all(&tmp);
        status.offsite_backups = copied_backups.iter().cloned().collect();
        status.lag = Some(Lag::of(&catalog, &remote, &copied_backups));
        result
    }
}

/// Where Barman keeps an archived WAL file: `wals/<hash dir>/<name>`, a history file at
/// `wals/<name>`.
fn local_path(catalog: &Catalog, wal: &ArchivedWal) -> PathBuf {
    let wals = catalog.server_home.join("wals");
    match classify(&wal.name) {
        WalFileKind::History(_) | WalFileKind::Other => wals.join(&wal.name),
        WalFileKind::Segment(s) | WalFileKind::BackupLabel(s) | WalFileKind::Partial(s) => {
            wals.join(s.hash_dir()).join(&wal.name)
        }
    }
}

/// The file as PostgreSQL wrote it, named as PostgreSQL names it, in the private temporary
/// directory: barman-cloud-wal-archive takes the WAL name from the file name and compresses
/// what it reads, while Barman keeps segments gzip-compressed.
fn decompressed(source: &Path, wal: &ArchivedWal, tmp: &Path) -> Result<PathBuf, OffsiteError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().mode(0o700).create(tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(format!("cannot create {}", tmp.display()))(e)),
    }
    let target = tmp.join(&wal.name);
    let input =
        std::fs::File::open(source).map_err(io(format!("cannot read {}", source.display())))?;
    let mut output =
        std::fs::File::create(&target).map_err(io(format!("cannot write {}", target.display())))?;
    let copied = match wal.compression.as_deref() {
        None | Some("None") => std::io::copy(&mut std::io::BufReader::new(input), &mut output),
        Some("gzip") => std::io::copy(
            &mut flate2::read::GzDecoder::new(std::io::BufReader::new(input)),
            &mut output,
        ),
        Some(other) => {
            return Err(OffsiteError::Tool {
                command: "barkeep".into(),
                message: format!(
                    "{} is compressed with {other}: only gzip (the documented setup) is copied",
                    wal.name
                ),
            })
        }
    };
    copied
        .and_then(|_| output.flush())
        .map_err(io(format!("cannot decompress {}", source.display())))?;
    Ok(target)
}

fn write_status(path: &Path, status: &OffsiteStatus) -> Result<(), OffsiteError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(status).unwrap_or_default();
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(io(format!("cannot write {}", path.display())))
}
