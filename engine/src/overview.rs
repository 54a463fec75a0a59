//! The facade the web app reads: [`Engine::overview`] (PostgreSQL, the backups, the recovery
//! window, WAL age, incoming/ and errors/ in one call) and [`Engine::recovery_window`].
//!
//! Reads are shared, so that a burst of page views costs what one costs:
//! - concurrent callers share one catalog read and one probe: a caller gets the result of a read
//!   that STARTED after it called (never an older one), and waits for it if one is under way;
//! - the recovery window comes from the engine's [`WindowCache`] (one computation per newest
//!   segment, each segment decoded once);
//! - file I/O runs on tokio's blocking threads; the probe has a short timeout, and a server that
//!   does not answer in time is a state ("down"), not an error.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use crate::catalog::{Backup, Catalog, CatalogError};
use crate::probe::{self, ServerStatus};
use crate::window::{RecoveryWindow, WindowCache, WindowError};
use crate::Engine;

/// How long the dashboard waits for PostgreSQL before it calls it down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum OverviewError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A blocking task panicked or was cancelled (a bug, or the runtime shutting down).
    #[error("reading Barman's catalog stopped unexpectedly: {0}")]
    Task(String),
}

impl From<OverviewError> for WindowError {
    fn from(e: OverviewError) -> Self {
        match e {
            OverviewError::Catalog(c) => WindowError::Catalog(c),
            OverviewError::Task(message) => WindowError::Task {
                what: "Barman's catalog",
                message,
            },
        }
    }
}

/// PostgreSQL as one look found it.
#[derive(Debug, Clone, PartialEq)]
pub enum PostgresState {
    Up(Box<ServerStatus>),
    /// It did not answer (or not within [`PROBE_TIMEOUT`]); the text says why.
    Down {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostgresCheck {
    /// When the probe started.
    pub checked_at: DateTime<Utc>,
    pub state: PostgresState,
}

/// Everything the dashboard shows, read in one call.
#[derive(Debug)]
pub struct Overview {
    pub read_at: DateTime<Utc>,
    pub postgres: PostgresCheck,
    /// Barman's side; `Err` when its catalog cannot be read.
    pub barman: Result<BarmanOverview, OverviewError>,
}

#[derive(Debug)]
pub struct BarmanOverview {
    /// Oldest first.
    pub backups: Vec<Backup>,
    /// backup.info files that could not be read, with the reason.
    pub unreadable_backups: Vec<(String, String)>,
    /// `Err` when pg_waldump could not read the newest segments.
    pub window: Result<RecoveryWindow, WindowError>,
    /// When the newest WAL reached Barman (archived, or waiting in incoming/).
    pub last_wal: Option<DateTime<Utc>>,
    /// `read_at - last_wal`, never negative.
    pub wal_age: Option<TimeDelta>,
    /// WAL files waiting in incoming/ (a long list means `barman cron` is not running).
    pub incoming: usize,
    /// Files in Barman's errors/ directory.
    pub errors: usize,
}

/// What the engine keeps between reads, shared by all clones of one engine.
#[derive(Default)]
pub struct ReadCache {
    window: WindowCache,
    catalog: Shared<Arc<Catalog>>,
    probe: Shared<PostgresCheck>,
    pub(crate) checks: crate::checks::CheckCache,
}

impl std::fmt::Debug for ReadCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// The dashboard in one call: the probe and Barman's side are read at the same time.
    pub async fn overview(&self) -> Overview {
        let read_at = Utc::now();
        let (postgres, barman) = tokio::join!(self.postgres_check(), self.barman_overview(read_at));
        Overview {
            read_at,
            postgres,
            barman,
        }
    }

    /// PostgreSQL, asked now (a probe that started after this call; concurrent callers share
    /// it), with [`PROBE_TIMEOUT`].
    pub async fn postgres_check(&self) -> PostgresCheck {
        let pg = self.config().postgres.clone();
        self.reads()
            .probe
            .get(|| async move {
                let checked_at = Utc::now();
                let state = match tokio::time::timeout(PROBE_TIMEOUT, probe::status(&pg)).await {
                    Ok(Ok(s)) => PostgresState::Up(Box::new(s)),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "PostgreSQL probe failed");
                        PostgresState::Down {
                            reason: e.to_string(),
                        }
                    }
                    Err(_) => {
                        tracing::warn!(
                            seconds = PROBE_TIMEOUT.as_secs(),
                            "PostgreSQL probe timed out"
                        );
                        PostgresState::Down {
                            reason: format!(
                                "PostgreSQL did not answer within {} s",
                                PROBE_TIMEOUT.as_secs()
                            ),
                        }
                    }
                };
                Some(PostgresCheck { checked_at, state })
            })
            .await
            .unwrap_or_else(|| PostgresCheck {
                checked_at: Utc::now(),
                state: PostgresState::Down {
                    reason: "the probe did not finish".into(),
                },
            })
    }

    /// Barman's catalog, read now on a blocking thread (a read that started after this call;
    /// concurrent callers share it).
    pub async fn shared_catalog(&self) -> Result<Arc<Catalog>, OverviewError> {
        let engine = self.clone();
        let mut error = None;
        let read = self
            .reads()
            .catalog
            .get(|| {
                let error = &mut error;
                async move {
                    match tokio::task::spawn_blocking(move || engine.catalog()).await {
                        Ok(Ok(c)) => Some(Arc::new(c)),
                        Ok(Err(e)) => {
                            *error = Some(OverviewError::Catalog(e));
                            None
                        }
                        Err(e) => {
                            *error = Some(OverviewError::Task(e.to_string()));
                            None
                        }
                    }
                }
            })
            .await;
        match (read, error) {
            (Some(c), _) => Ok(c),
            (None, Some(e)) => Err(e),
            (None, None) => Err(OverviewError::Task("the catalog read was cancelled".into())),
        }
    }

    /// The recovery window as of now (Barman's catalog read now, the window from the cache).
    pub async fn recovery_window(&self) -> Result<RecoveryWindow, WindowError> {
        let catalog = self.shared_catalog().await?;
        self.recovery_window_of(&catalog).await
    }

    /// The recovery window of a catalog the caller has read (e.g. the restore plan's), from the
    /// cache when nothing it depends on changed.
    pub async fn recovery_window_of(
        &self,
        catalog: &Catalog,
    ) -> Result<RecoveryWindow, WindowError> {
        self.reads()
            .window
            .window(catalog, &self.config().postgres.bin_dir)
            .await
    }

    /// How many pg_waldump processes this engine has started (tests, the bench).
    pub fn waldump_runs(&self) -> u64 {
        self.reads().window.waldump_runs()
    }

    async fn barman_overview(
        &self,
        read_at: DateTime<Utc>,
    ) -> Result<BarmanOverview, OverviewError> {
        let catalog = self.shared_catalog().await?;
        let window = self.recovery_window_of(&catalog).await;
        if let Err(e) = &window {
            tracing::warn!(error = %e, "cannot compute the recovery window");
        }
        let last_wal = catalog.last_wal_time();
        Ok(BarmanOverview {
            backups: catalog.backups.clone(),
            unreadable_backups: catalog.unreadable_backups.clone(),
            window,
            last_wal,
            wal_age: last_wal.map(|t| (read_at - t).max(TimeDelta::zero())),
            incoming: catalog.incoming.len(),
            errors: catalog.errors.len(),
        })
    }
}

/// One read shared by concurrent callers: a caller gets the value of a read that started at or
/// after its call, waiting for the one under way (or starting one) when the last is older.
/// A read that yields `None` (failed) is not kept: the next caller tries again.
pub(crate) struct Shared<T> {
    last: tokio::sync::Mutex<Option<(Instant, T)>>,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self {
            last: tokio::sync::Mutex::new(None),
        }
    }
}

impl<T: Clone> Shared<T> {
    pub(crate) async fn get<F, Fut>(&self, read: F) -> Option<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let called = Instant::now();
        let mut last = self.last.lock().await;
        if let Some((started, value)) = last.as_ref() {
            if *started >= called {
                return Some(value.clone());
            }
        }
        let started = Instant::now();
        let value = read().await?;
        *last = Some((started, value.clone()));
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_read_and_never_get_an_older_one() {
        let shared = Arc::new(Shared::<u32>::default());
        let reads = Arc::new(AtomicU32::new(0));
        let read = |reads: Arc<AtomicU32>| {
            move || async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some(reads.fetch_add(1, Ordering::SeqCst) + 1)
            }
        };
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (shared, reads) = (Arc::clone(&shared), Arc::clone(&reads));
            tasks.push(tokio::spawn(async move { shared.get(read(reads)).await }));
        }
        for t in tasks {
            assert!(t.await.expect("task").is_some());
        }
        // The first caller reads; everyone who called before that read started shares it;
        // whoever called while it ran gets the next one.
        assert!(
            reads.load(Ordering::SeqCst) <= 2,
            "{reads:?} reads for 200 callers"
        );
        // A caller after all of that gets a fresh read, not the kept one.
        let before = reads.load(Ordering::SeqCst);
        assert_eq!(shared.get(read(Arc::clone(&reads))).await, Some(before + 1));
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let shared = Shared::<u32>::default();
        assert_eq!(shared.get(|| async { None }).await, None);
        assert_eq!(shared.get(|| async { Some(7) }).await, Some(7));
    }
}
