//! The History page's read: past restores with their journals, the audit log, and the data
//! directories restores set aside.

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::{server_context, server_now, signed_in};
use crate::model::{AppError, HistoryView};

/// How many past restores and audit lines the page shows.
#[cfg(feature = "ssr")]
const RESTORES_SHOWN: usize = 50;
#[cfg(feature = "ssr")]
const AUDIT_LINES_SHOWN: usize = 200;

/// Every past restore (the open one first), the newest audit lines, and the kept data
/// directories with their size (viewers too: nothing here acts).
#[server]
pub async fn history() -> Result<HistoryView, AppError> {
    use crate::model::{AuditRow, KeptDataDir};
    use engine::restore::{Phase, Step};

    signed_in()?;
    let ctx = server_context()?;
    let engine = ctx.engine.clone();
    let read = tokio::task::spawn_blocking(move || {
        let open = engine
            .status()
            .ok()
            .flatten()
            .filter(|s| s.state != Phase::Closed);
        let closed = engine.history(RESTORES_SHOWN);
        let audit = engine::audit::AuditLog::new(engine.state_dir()).recent(AUDIT_LINES_SHOWN);
        let kept = engine.pre_restore_dirs();
        (open, closed, audit, kept)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "reading the history stopped");
        AppError::Internal
    })?;
    let (open, closed, audit, kept) = read;
    let restores: Vec<_> = open.iter().chain(closed.iter()).collect();
    let kept = kept
        .into_iter()
        .map(|dir| {
            let restore = restores.iter().find(|r| r.restore_id == dir.restore_id);
            KeptDataDir {
                set_aside_at: restore.and_then(|r| {
                    r.steps
                        .iter()
                        .filter(|s| {
                            matches!(s.step, Step::SetAside | Step::Swap) && s.error.is_none()
                        })
                        .find_map(|s| s.finished)
                }),
                restore_outcome: match restore {
                    Some(r) if r.state != Phase::Closed => "still open".to_owned(),
                    Some(r) => super::restore::views::restore(r)
                        .outcome
                        .unwrap_or_else(|| "closed".to_owned()),
                    None => "no journal left for it".to_owned(),
                },
                in_use: restore.is_some_and(|r| r.state != Phase::Closed),
                restore_id: dir.restore_id,
                bytes: dir.bytes,
            }
        })
        .collect();
    Ok(HistoryView {
        restores: restores
            .into_iter()
            .map(super::restore::views::restore)
            .collect(),
        audit: audit
            .into_iter()
            .map(|a| AuditRow {
                at: a.at,
                who: a.who,
                from: a.from,
                what: a.what,
                target: a.target,
                outcome: a.outcome,
            })
            .collect(),
        kept,
        read_at: server_now(),
    })
}
