//! Server functions: each one is a thin call into the engine.

use leptos::prelude::*;

use crate::model::PostgresView;

/// What the server functions get from the server binary (provided as Leptos context).
#[cfg(feature = "ssr")]
#[derive(Clone)]
pub struct ServerContext {
    pub config: std::sync::Arc<engine::Config>,
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
    let state = match engine::probe::status(&ctx.config.postgres).await {
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
