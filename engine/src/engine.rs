//! The facade the app, the CLI and the tests use: one `Engine` per process, holding the
//! configuration, Barman, the service control and the shared read caches. Its operations live
//! beside what they do: reads in `overview`, the restore operations in `restore::operations`,
//! verify queries in `restore::verify`.

use std::fs::File;
use std::sync::Arc;

use crate::barman::Barman;
use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::restore::journal;
use crate::restore::space::{self, PreRestoreDir};
use crate::restore::{check_os_user, RestoreError, RestoreStatus};
use crate::service::Service;
use crate::state_dir::StateDir;

/// The engine: one per process, shared by the web app and the CLI.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    state_dir: StateDir,
    barman: Barman,
    service: Service,
    /// In-process serialisation; the flock of [`HostLock`] serialises processes.
    running: tokio::sync::Mutex<()>,
    /// Shared reads for the dashboard and the plan: catalog, probe, the recovery-window cache.
    reads: crate::overview::ReadCache,
    /// What each WAL segment's transactions did, summarised once (`transactions::list`).
    transactions: crate::transactions::list::TransactionLog,
}

/// How long a lock that looks taken is tried again before the answer is `Busy`.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// The host-wide restore lock: an exclusive flock on [`StateDir::lock_file`].
pub(crate) struct HostLock {
    _file: File,
}

impl HostLock {
    async fn acquire(state_dir: &StateDir) -> Result<Self, RestoreError> {
        let path = state_dir.lock_file();
        match exclusive_flock(&path).await {
            Ok(file) => Ok(Self { _file: file }),
            Err(None) => Err(RestoreError::Busy),
            Err(Some(source)) => Err(RestoreError::Io {
                what: format!("cannot lock the restore lock {}", path.display()),
                source,
            }),
        }
    }
}

/// An exclusive flock on `path` (created if missing), held as long as the file is open.
/// `Err(None)`: another holder has it; `Err(Some(e))`: the file cannot be opened or locked.
///
/// A child this process forks (pg_waldump for the dashboard, barman) holds a copy of the lock's
/// file until it execs, and with it the lock: a lock just released can look taken for a moment.
/// A real holder (another barkeep working on a restore or a replication) holds it far longer,
/// so a short wait tells the two apart.
pub(crate) async fn exclusive_flock(
    path: &std::path::Path,
) -> Result<File, Option<std::io::Error>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Some)?;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(file),
            Err(rustix::io::Errno::WOULDBLOCK) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(None),
            Err(e) => return Err(Some(e.into())),
        }
    }
}

/// Held by every operation that changes a restore: this process and every other one wait.
pub(crate) type Exclusive<'a> = (tokio::sync::MutexGuard<'a, ()>, HostLock);

impl Engine {
    /// Refuses, before writing anything, to run as another OS user than the cluster's owner.
    pub fn new(config: Arc<Config>) -> Result<Self, RestoreError> {
        check_os_user(&config)?;
        let state_dir = config.state();
        let service = Service::from_config(&config, &state_dir)?;
        std::fs::create_dir_all(state_dir.root()).map_err(|source| RestoreError::Io {
            what: format!(
                "cannot create the state directory {}",
                state_dir.root().display()
            ),
            source,
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                barman: Barman::new(&config.barman),
                service,
                state_dir,
                config,
                running: tokio::sync::Mutex::new(()),
                reads: crate::overview::ReadCache::default(),
                transactions: Default::default(),
            }),
        })
    }

    /// The memory of summarised WAL segments behind [`Engine::transactions`].
    pub fn transaction_log(&self) -> &crate::transactions::list::TransactionLog {
        &self.inner.transactions
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.inner.state_dir
    }

    pub(crate) fn reads(&self) -> &crate::overview::ReadCache {
        &self.inner.reads
    }

    pub fn barman(&self) -> &Barman {
        &self.inner.barman
    }

    pub fn service(&self) -> &Service {
        &self.inner.service
    }

    /// Barman's catalog, read from disk now.
    pub fn catalog(&self) -> Result<Catalog, CatalogError> {
        let c = &self.inner.config;
        Catalog::read(
            &c.server_home(),
            &c.barman
                .home
                .join(format!(".{}-xlogdb.lock", c.barman.server)),
        )
    }

    /// The restore in progress, if any, or the most recently closed one.
    pub fn status(&self) -> Result<Option<RestoreStatus>, RestoreError> {
        if let Some(entries) = journal::read(&self.state_dir().journal())? {
            return Ok(RestoreStatus::from_entries(&entries));
        }
        match self.history_journals().pop() {
            Some(p) => Ok(journal::read(&p)?.and_then(|e| RestoreStatus::from_entries(&e))),
            None => Ok(None),
        }
    }

    /// Closed restores, newest first, at most `max`; a journal that cannot be read is logged
    /// and left out.
    pub fn history(&self, max: usize) -> Vec<RestoreStatus> {
        self.history_journals()
            .into_iter()
            .rev()
            .filter_map(|p| match journal::read(&p) {
                Ok(entries) => entries.and_then(|e| RestoreStatus::from_entries(&e)),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot read a past restore's journal");
                    None
                }
            })
            .take(max)
            .collect()
    }

    /// The journals of closed restores, oldest first (restore ids sort by time).
    fn history_journals(&self) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.state_dir().history())
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "journal"))
            .collect();
        v.sort();
        v
    }

    /// Pre-restore data directories kept in the state dir, oldest first, with their size.
    pub fn pre_restore_dirs(&self) -> Vec<PreRestoreDir> {
        let mut v: Vec<PreRestoreDir> = std::fs::read_dir(self.state_dir().pre_restore_root())
            .ok()
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                let restore_id = e.file_name().to_str()?.to_owned();
                let path = e.path();
                Some(PreRestoreDir {
                    bytes: space::disk_usage(&path),
                    restore_id,
                    path,
                })
            })
            .collect();
        v.sort_by(|a, b| a.restore_id.cmp(&b.restore_id));
        v
    }

    /// The right to change a restore: refused at once (`Busy`) when another task or process
    /// holds it.
    pub(crate) async fn exclusive(&self) -> Result<Exclusive<'_>, RestoreError> {
        let guard = self
            .inner
            .running
            .try_lock()
            .map_err(|_| RestoreError::Busy)?;
        let lock = HostLock::acquire(self.state_dir()).await?;
        Ok((guard, lock))
    }
}
