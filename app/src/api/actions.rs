//! The operator's actions on the live server: switch WAL, back up, `barman check`,
//! `check-backup`, discard a kept data directory, verify the off-site copy. Each that changes
//! something is refused while a restore is open (the engine says so in words); each goes to the
//! audit log.

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::{act, audit, detached, operator, server_context};
use crate::model::{ActionDone, AppError, CheckView, OffsiteListingView};

/// Closes the current WAL segment and waits until Barman has archived it (operators).
#[server]
pub async fn switch_wal() -> Result<ActionDone, AppError> {
    act("switch_wal", None, |engine| async move {
        engine.switch_wal_now().await
    })
    .await
}

/// Takes a new base backup now and waits for it (operators).
#[server]
pub async fn backup_now() -> Result<ActionDone, AppError> {
    act(
        "backup",
        None,
        |engine| async move { engine.backup_now().await },
    )
    .await
}

/// `barman check-backup` of one backup: are all the WAL files it needs archived (operators).
#[server]
pub async fn check_backup(backup_id: String) -> Result<ActionDone, AppError> {
    operator()?;
    if !engine::validate::is_backup_id(&backup_id) {
        return Err(AppError::BadRequest(
            "that is not a backup id: they look like 20261126T093000 (see the backup list)".into(),
        ));
    }
    let target = Some(backup_id.clone());
    act("check_backup", target, |engine| async move {
        engine.check_backup(&backup_id).await
    })
    .await
}

/// Runs `barman check` now, or waits for the one running, and answers with its result
/// (operators; the dashboard shows it to everyone).
#[server]
pub async fn barman_check_now() -> Result<CheckView, AppError> {
    let caller = operator()?;
    let ctx = server_context()?;
    detached(async move {
        let result = ctx.engine.barman_check_now().await;
        ctx.feed.refresh_now();
        let (outcome, answer) = match result {
            Ok(report) => {
                let view = super::views::check(&report);
                let outcome = if view.ok {
                    "ok".to_owned()
                } else if let Some(p) = &view.problem {
                    format!("barman could not run: {p}")
                } else {
                    format!("{} check(s) failed", view.failing.len())
                };
                (outcome, Ok(view))
            }
            Err(e) => (
                format!("refused: {e}"),
                Err(AppError::Refused(e.to_string())),
            ),
        };
        audit(&ctx, &caller, "barman_check", None, outcome).await;
        answer
    })
    .await?
}

/// Deletes a data directory a closed restore set aside (operators). The person types the
/// restore's id to confirm: this is the one action that removes data for good.
#[server]
pub async fn discard_kept_data_dir(restore_id: String, confirm: String) -> Result<(), AppError> {
    let caller = operator()?;
    let ctx = server_context()?;
    if confirm.trim() != restore_id {
        return Err(AppError::BadRequest(format!(
            "type the restore id {restore_id:?} to confirm; nothing was deleted"
        )));
    }
    let result = detached(async move {
        let result = ctx.engine.discard_pre_restore(&restore_id).await;
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(e) => format!("failed: {e}"),
        };
        audit(
            &ctx,
            &caller,
            "discard_pre_restore",
            Some(restore_id),
            outcome,
        )
        .await;
        result
    })
    .await?;
    result.map_err(super::restore::from_engine)
}

/// Lists what the off-site bucket holds now, from the bucket itself (operators): its backups,
/// how many WAL files, the newest. The dashboard's off-site panel otherwise shows what the last
/// replication run found.
#[server]
pub async fn verify_offsite() -> Result<OffsiteListingView, AppError> {
    let caller = operator()?;
    let ctx = server_context()?;
    let result = detached(async move {
        let result = ctx.engine.offsite_listing().await;
        let outcome = match &result {
            Ok(bucket) => format!(
                "ok: {} backup(s), {} WAL file(s)",
                bucket.backups.len(),
                bucket.wals.len()
            ),
            Err(e) => format!("failed: {e}"),
        };
        audit(&ctx, &caller, "verify_offsite", None, outcome).await;
        result
    })
    .await?;
    result
        .map(|bucket| super::views::offsite_listing(super::server_now(), &bucket))
        .map_err(from_offsite)
}

/// The engine's off-site errors in its own words (they say what to fix), with the status they
/// deserve.
#[cfg(feature = "ssr")]
fn from_offsite(e: engine::offsite::OffsiteError) -> AppError {
    use engine::offsite::OffsiteError as E;
    match e {
        E::NotConfigured => AppError::Rejected(e.to_string()),
        E::Busy => AppError::Refused(e.to_string()),
        other => {
            tracing::warn!(error = %other, "listing the off-site bucket failed");
            AppError::ActionFailed(other.to_string())
        }
    }
}
