//! Server functions: each one is a thin call into the engine.

use leptos::prelude::*;

use crate::model::PostgresView;

/// What the server functions get from the server binary (provided as Leptos context).
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct ServerContext {
    pub engine: engine::restore::Engine,
}

#[cfg(feature = "ssr")]
fn server_context() -> Result<ServerContext, ServerFnError> {
    use_context::<ServerContext>()
        .ok_or_else(|| ServerFnError::new("barkeep's server context is missing (a wiring bug)"))
}

/// Asks PostgreSQL how it is, now.
#[server]
pub async fn postgres_status() -> Result<PostgresView, ServerFnError> {
    use crate::model::PostgresState;
    let ctx = server_context()?;
    let checked_at = chrono::Utc::now();
    let state = match engine::probe::status(&ctx.engine.config().postgres).await {
        Ok(s) => PostgresState::Up {
            version: s.version,
            in_recovery: s.in_recovery,
            timeline: s.timeline,
            archived_count: s.archiver.archived_count,
            last_archived_wal: s.archiver.last_archived_wal,
            failed_count: s.archiver.failed_count,
        },
        Err(e) => {
            tracing::warn!(error = %e, "PostgreSQL probe failed");
            PostgresState::Down {
                reason: e.to_string(),
            }
        }
    };
    Ok(PostgresView { checked_at, state })
}

/// Barman's catalog (read from its files, not by spawning barman) and the recovery window.
#[server]
pub async fn catalog_overview() -> Result<crate::model::CatalogView, ServerFnError> {
    use crate::model::{BackupRow, CatalogView};
    let ctx = server_context()?;
    let catalog = ctx
        .engine
        .catalog()
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    let window = engine::window::recovery_window(&catalog, &ctx.engine.config().postgres.bin_dir)
        .await
        .map_err(|e| ServerFnError::new(e.to_string()))?;
    Ok(CatalogView {
        backups: catalog
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
        earliest: window.earliest,
        latest: window.latest,
        last_wal: catalog.last_wal_time(),
        pending_wal: catalog.incoming.len(),
        wal_errors: catalog.errors.len(),
        read_at: chrono::Utc::now(),
    })
}
