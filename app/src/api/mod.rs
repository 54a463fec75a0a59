//! Server functions: each one is a thin call into the engine's facade (`Engine::overview`,
//! `Engine::postgres_check`, the actions). Each first asks who is calling ([`signed_in`], and
//! [`operator`] for anything that acts); every action goes to the audit log. Failures reach
//! the browser as an [`AppError`]: words; the details go to barkeep's log.

use leptos::prelude::*;

mod actions;
mod history;
#[cfg(feature = "ssr")]
pub mod live;
mod restore;
pub use actions::*;
pub use history::*;
pub use restore::*;

#[cfg(feature = "ssr")]
use crate::model::ActionDone;
use crate::model::{AppError, DashboardView, Identity, PostgresView};

/// Where the server streams the dashboard (server-sent events, see `live`).
pub const DASHBOARD_EVENTS: &str = "/live/dashboard";

/// What the server functions get from the server binary (provided as Leptos context).
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct ServerContext {
    pub engine: engine::Engine,
    /// The dashboard pushed to every open page; actions ask it for a fresh read when they end.
    pub feed: live::DashboardFeed,
}

#[cfg(feature = "ssr")]
fn server_context() -> Result<ServerContext, AppError> {
    use_context::<ServerContext>().ok_or_else(|| {
        tracing::error!("barkeep's server context is missing (a wiring bug)");
        AppError::Internal
    })
}

/// The time on the server (server functions only: `chrono::Utc::now` is disallowed in this
/// crate because it panics in the browser, see app/clippy.toml).
#[cfg(feature = "ssr")]
#[allow(clippy::disallowed_methods)]
pub(crate) fn server_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Who sent a request: the server's sign-in layer puts it on every signed-in request.
#[cfg(feature = "ssr")]
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// The client's address, for the audit log.
    pub from: std::net::IpAddr,
}

/// The signed-in person. Every server function asks first (the layer already refused a
/// request without a session: this is the second lock, and where the role comes from).
#[cfg(feature = "ssr")]
fn signed_in() -> Result<Caller, AppError> {
    use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>().cloned())
        .ok_or(AppError::SignInRequired)
}

/// The signed-in person, if an operator: everything that acts asks this.
#[cfg(feature = "ssr")]
fn operator() -> Result<Caller, AppError> {
    let caller = signed_in()?;
    if caller.identity.role != crate::model::Role::Operator {
        return Err(AppError::OperatorOnly);
    }
    Ok(caller)
}

/// Writes one line to the audit log for `caller`.
#[cfg(feature = "ssr")]
async fn audit(
    ctx: &ServerContext,
    caller: &Caller,
    what: &str,
    target: Option<String>,
    outcome: String,
) {
    engine::audit::AuditLog::new(ctx.engine.state_dir())
        .record(engine::audit::AuditEntry {
            at: server_now(),
            who: caller.identity.name.clone(),
            from: caller.from.to_string(),
            what: what.to_owned(),
            target,
            outcome,
        })
        .await;
}

/// An action on the live server, audited; the engine's refusal or failure in its own words.
/// It runs in a task of its own ([`detached`]): a browser that goes away (a reload, another
/// page) neither kills the barman it started nor loses its line in the audit log.
#[cfg(feature = "ssr")]
async fn act<F, Fut>(
    what: &'static str,
    target: Option<String>,
    run: F,
) -> Result<ActionDone, AppError>
where
    F: FnOnce(engine::Engine) -> Fut,
    Fut: std::future::Future<
            Output = Result<engine::barman::CommandOutput, engine::restore::RestoreError>,
        > + Send
        + 'static,
{
    let caller = operator()?;
    let ctx = server_context()?;
    let op = run(ctx.engine.clone());
    let result = detached(async move {
        let result = op.await;
        ctx.feed.refresh_now();
        let outcome = match &result {
            Ok(_) => "ok".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        audit(&ctx, &caller, what, target, outcome).await;
        result
    })
    .await?;
    match result {
        Ok(out) => Ok(ActionDone {
            at: server_now(),
            message: format!("done in {:.1} s", out.elapsed_ms as f64 / 1000.0),
        }),
        Err(e) => Err(restore::from_engine(e)),
    }
}

/// Runs `work` to its end in a task of its own, whatever happens to the request that asked
/// for it, and waits for it.
#[cfg(feature = "ssr")]
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, AppError> {
    tokio::spawn(work).await.map_err(|e| {
        tracing::error!(error = %e, "an action's task stopped");
        AppError::Internal
    })
}

/// Who is signed in.
#[server]
pub async fn whoami() -> Result<Identity, AppError> {
    signed_in().map(|c| c.identity)
}

/// Asks PostgreSQL how it is, now.
#[server]
pub async fn postgres_status() -> Result<PostgresView, AppError> {
    signed_in()?;
    let ctx = server_context()?;
    Ok(views::postgres(ctx.engine.postgres_check().await))
}

/// The dashboard: PostgreSQL, and Barman's catalog (read from its files, not by spawning barman)
/// with the recovery window.
#[server]
pub async fn overview() -> Result<DashboardView, AppError> {
    signed_in()?;
    let ctx = server_context()?;
    Ok(dashboard(&ctx.engine).await)
}

/// The dashboard as the engine sees it now: one shared read (see `Engine::overview`), the last
/// `barman check` as kept, whether a restore is open.
#[cfg(feature = "ssr")]
pub async fn dashboard(engine: &engine::Engine) -> DashboardView {
    let overview = engine.overview().await;
    let restore_open = match engine.status() {
        Ok(Some(s)) if s.state != engine::restore::Phase::Closed => {
            Some(crate::model::OpenRestore {
                restore_id: Some(s.restore_id),
                state: s.state.name().to_owned(),
            })
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the restore journal");
            Some(crate::model::OpenRestore {
                restore_id: None,
                state: "unknown".to_owned(),
            })
        }
    };
    DashboardView {
        postgres: views::postgres(overview.postgres),
        catalog: views::catalog(overview.read_at, overview.barman),
        check: engine.last_barman_check().as_deref().map(views::check),
        check_running: engine.barman_check_running(),
        restore_open,
        offsite: engine
            .config()
            .offsite
            .as_ref()
            .map(|o| views::offsite(o, engine.offsite_status())),
    }
}

/// The engine's answers as the pages show them.
#[cfg(feature = "ssr")]
mod views {
    use chrono::{DateTime, Utc};
    use engine::overview::{BarmanOverview, OverviewError, PostgresCheck, PostgresState as Pg};

    use crate::model::{
        AppError, BackupRow, CatalogView, CheckLine, CheckView, PostgresState, PostgresView,
    };

    pub fn offsite(
        config: &engine::config::OffsiteConfig,
        last: Option<engine::offsite::OffsiteStatus>,
    ) -> crate::model::OffsiteView {
        crate::model::OffsiteView {
            bucket_url: config.bucket_url.clone(),
            endpoint_url: config.endpoint_url.clone(),
            interval_secs: config.interval_secs,
            last_run: last.map(|s| crate::model::OffsiteRun {
                // Read before the fields below move out of the status.
                newest_offsite_backup: s.newest_offsite_backup().map(str::to_owned),
                in_sync: s.in_sync(),
                finished: s.finished,
                error: s.error,
                missing_segments: s.lag.as_ref().map(|l| l.missing_segments),
                missing_wals: s.lag.as_ref().map(|l| l.missing_wals),
                lag_seconds: s.lag.as_ref().map(|l| l.seconds),
                missing_backups: s.lag.as_ref().map(|l| l.missing_backups),
                copied_wals: s.copied_wals,
                copied_backups: s.copied_backups,
            }),
        }
    }

    /// What the bucket holds, as "Verify off-site copy" shows it.
    pub fn offsite_listing(
        listed_at: DateTime<Utc>,
        bucket: &engine::offsite::Bucket,
    ) -> crate::model::OffsiteListingView {
        crate::model::OffsiteListingView {
            listed_at,
            backups: bucket
                .backups
                .iter()
                .map(|b| crate::model::OffsiteBackupRow {
                    id: b.id.clone(),
                    status: b.status.clone(),
                    begin_wal: b.begin_wal.clone(),
                    end_wal: b.end_wal.clone(),
                    end: b.end_time.and_then(from_epoch),
                })
                .collect(),
            wal_files: bucket.wals.len(),
            newest_wal: bucket.newest_wal().map(str::to_owned),
        }
    }

    /// Seconds since the epoch (as the cloud tools write times) as a time; `None` when out of
    /// range.
    fn from_epoch(secs: f64) -> Option<DateTime<Utc>> {
        if !secs.is_finite() {
            return None;
        }
        let whole = secs.floor();
        let nanos = ((secs - whole) * 1e9) as u32;
        DateTime::from_timestamp(whole as i64, nanos.min(999_999_999))
    }

    pub fn check(report: &engine::checks::CheckReport) -> CheckView {
        CheckView {
            started: report.started,
            finished: report.finished,
            ok: report.ok(),
            passed: report
                .result
                .as_ref()
                .map_or(0, |items| items.iter().filter(|i| i.ok).count()),
            failing: report
                .failing()
                .into_iter()
                .map(|i| CheckLine {
                    name: i.name.clone(),
                    hint: i.hint.clone(),
                })
                .collect(),
            problem: report.result.as_ref().err().cloned(),
        }
    }

    pub fn postgres(check: PostgresCheck) -> PostgresView {
        let state = match check.state {
            Pg::Up(s) => PostgresState::Up {
                version: s.version,
                in_recovery: s.in_recovery,
                timeline: s.timeline,
                archived_count: s.archiver.archived_count,
                last_archived_wal: s.archiver.last_archived_wal,
                failed_count: s.archiver.failed_count,
                last_failed_wal: s.archiver.last_failed_wal,
                last_failed_time: s.archiver.last_failed_time,
                archive_timeout_secs: s.archive_timeout_secs,
            },
            Pg::Down { reason } => PostgresState::Down { reason },
        };
        PostgresView {
            checked_at: check.checked_at,
            state,
        }
    }

    pub fn catalog(
        read_at: DateTime<Utc>,
        barman: Result<BarmanOverview, OverviewError>,
    ) -> Result<CatalogView, AppError> {
        let b = barman.map_err(|e| {
            tracing::error!(error = %e, "cannot read Barman's catalog");
            AppError::CatalogUnreadable
        })?;
        let (earliest, latest, window_problem) = match b.window {
            Ok(w) => (w.earliest, w.latest, None),
            // Logged by the engine, with the path and the cause.
            Err(_) => (
                b.backups
                    .iter()
                    .filter(|b| b.is_recoverable())
                    .filter_map(|b| b.end_time)
                    .min(),
                None,
                Some(
                    "the last archived transaction cannot be read (pg_waldump failed; barkeep's \
                     log says why)"
                        .to_owned(),
                ),
            ),
        };
        Ok(CatalogView {
            backups: b
                .backups
                .iter()
                .rev()
                .map(|b| BackupRow {
                    id: b.id.clone(),
                    status: b.status.as_str().to_owned(),
                    recoverable: b.is_recoverable(),
                    begin: b.begin_time,
                    end: b.end_time,
                    size_bytes: b.size,
                    timeline: b.timeline,
                })
                .collect(),
            earliest,
            latest,
            window_problem,
            last_wal: b.last_wal,
            pending_wal: b.incoming,
            wal_errors: b.errors,
            read_at,
        })
    }
}
