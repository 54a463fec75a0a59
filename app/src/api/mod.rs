//! Server functions: each one is a thin call into the engine's facade (`Engine::overview`,
//! `Engine::postgres_check`, the actions). Each first asks who is calling ([`signed_in`], and
//! [`operator`] for anything that acts); every action goes to the audit log. Failures reach
//! the browser as an [`AppError`]: words; the details go to barkeep's log.

use leptos::prelude::*;

mod restore;
pub use restore::*;

use crate::model::{ActionDone, AppError, DashboardView, Identity, PostgresView};

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
            at: chrono::Utc::now(),
            who: caller.identity.name.clone(),
            from: caller.from.to_string(),
            what: what.to_owned(),
            target,
            outcome,
        })
        .await;
}

/// An action on the live server, audited; the engine's refusal or failure in its own words.
#[cfg(feature = "ssr")]
async fn act(
    what: &'static str,
    run: impl AsyncFnOnce(
        &engine::Engine,
    ) -> Result<engine::barman::CommandOutput, engine::restore::RestoreError>,
) -> Result<ActionDone, AppError> {
    use engine::restore::RestoreError;
    let caller = operator()?;
    let ctx = server_context()?;
    let result = run(&ctx.engine).await;
    let outcome = match &result {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("failed: {e}"),
    };
    audit(&ctx, &caller, what, None, outcome).await;
    match result {
        Ok(out) => Ok(ActionDone {
            at: chrono::Utc::now(),
            message: format!("done in {:.1} s", out.elapsed_ms as f64 / 1000.0),
        }),
        Err(e @ (RestoreError::Busy | RestoreError::DuringRestore { .. })) => {
            Err(AppError::Refused(e.to_string()))
        }
        Err(e) => {
            tracing::error!(action = what, error = %e, "an action failed");
            Err(AppError::ActionFailed(e.to_string()))
        }
    }
}

/// Who is signed in.
#[server]
pub async fn whoami() -> Result<Identity, AppError> {
    signed_in().map(|c| c.identity)
}

/// Closes the current WAL segment and waits until Barman has archived it (operators).
#[server]
pub async fn switch_wal() -> Result<ActionDone, AppError> {
    act("switch_wal", async |engine| engine.switch_wal_now().await).await
}

/// Takes a new base backup now and waits for it (operators).
#[server]
pub async fn backup_now() -> Result<ActionDone, AppError> {
    act("backup", async |engine| engine.backup_now().await).await
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
