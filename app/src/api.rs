//! Server functions: each one is a thin call into the engine's facade (`Engine::overview`,
//! `Engine::postgres_check`). Failures reach the browser as an [`AppError`]: words, no paths;
//! the details go to barkeep's log.

use leptos::prelude::*;

use crate::model::{AppError, DashboardView, PostgresView};

/// What the server functions get from the server binary (provided as Leptos context).
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct ServerContext {
    pub engine: engine::Engine,
}

#[cfg(feature = "ssr")]
fn server_context() -> Result<ServerContext, AppError> {
    use_context::<ServerContext>().ok_or_else(|| {
        tracing::error!("barkeep's server context is missing (a wiring bug)");
        AppError::Internal
    })
}

/// Asks PostgreSQL how it is, now.
#[server]
pub async fn postgres_status() -> Result<PostgresView, AppError> {
    let ctx = server_context()?;
    Ok(views::postgres(ctx.engine.postgres_check().await))
}

/// The dashboard: PostgreSQL, and Barman's catalog (read from its files, not by spawning barman)
/// with the recovery window.
#[server]
pub async fn overview() -> Result<DashboardView, AppError> {
    let ctx = server_context()?;
    let overview = ctx.engine.overview().await;
    Ok(DashboardView {
        postgres: views::postgres(overview.postgres),
        catalog: views::catalog(overview.read_at, overview.barman),
    })
}

/// The engine's answers as the pages show them.
#[cfg(feature = "ssr")]
mod views {
    use chrono::{DateTime, Utc};
    use engine::overview::{BarmanOverview, OverviewError, PostgresCheck, PostgresState as Pg};

    use crate::model::{AppError, BackupRow, CatalogView, PostgresState, PostgresView};

    pub fn postgres(check: PostgresCheck) -> PostgresView {
        let state = match check.state {
            Pg::Up(s) => PostgresState::Up {
                version: s.version,
                in_recovery: s.in_recovery,
                timeline: s.timeline,
                archived_count: s.archiver.archived_count,
                last_archived_wal: s.archiver.last_archived_wal,
                failed_count: s.archiver.failed_count,
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
