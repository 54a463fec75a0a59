//! The restore wizard's server functions: thin calls into the engine's restore operations.
//!
//! - Input is checked here before the engine runs anything: a target time must parse with an
//!   explicit zone, a backup id must look like one, a query is the engine's to check; bad input
//!   answers 400 with words and starts no process.
//! - The long operations (start, retry, accept, roll back) run in the server, in a task of their
//!   own: the browser may close, reload or come back from another machine; the page follows the
//!   restore through [`restore_status`], which reads the engine's journal. What would refuse
//!   them (a target outside the window, a restore already open) is asked first, so that the
//!   answer comes back to the person who asked.
//! - Everything but the status needs an operator, and is audited with its target.

use leptos::prelude::*;

use crate::model::{AppError, PlanView, PreflightView, QueryView, RestoreView};

#[cfg(feature = "ssr")]
use super::{audit, operator, server_context, signed_in, Caller, ServerContext};

/// The longest target text accepted (a time with a zone is ~35 characters).
#[cfg(feature = "ssr")]
const MAX_TARGET_CHARS: usize = 64;

/// A target as the wizard sends it: a time with its zone, or `before xid N` / `after xid N`
/// (a transaction from the list), found in the WAL by the engine.
#[cfg(feature = "ssr")]
async fn parse_target(
    ctx: &ServerContext,
    text: &str,
) -> Result<engine::target::RestoreTarget, AppError> {
    if text.len() > MAX_TARGET_CHARS || text.contains('\0') {
        return Err(AppError::BadRequest(
            "the target time is not a time: write it like 2026-11-26 09:30:00+01:00".into(),
        ));
    }
    if let Some((before, xid)) = crate::model::parse_transaction_target(text) {
        let side = if before {
            engine::target::Side::Before
        } else {
            engine::target::Side::After
        };
        return ctx
            .engine
            .transaction_target(xid, side)
            .await
            .map_err(from_engine);
    }
    text.parse::<engine::target::TargetTime>()
        .map(engine::target::RestoreTarget::Time)
        .map_err(|e| AppError::BadRequest(e.to_string()))
}

#[cfg(feature = "ssr")]
fn parse_backup_id(id: Option<String>) -> Result<Option<String>, AppError> {
    match id.filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(id) if engine::validate::is_backup_id(&id) => Ok(Some(id)),
        Some(_) => Err(AppError::BadRequest(
            "that is not a backup id: they look like 20261126T093000 (see the backup list)".into(),
        )),
    }
}

/// The mode the wizard asked for.
#[cfg(feature = "ssr")]
fn mode_choice(preview: bool, hold_writes: bool) -> engine::restore::ModeChoice {
    if preview {
        engine::restore::ModeChoice::Preview { hold_writes }
    } else {
        engine::restore::ModeChoice::InPlace
    }
}

/// The engine's refusals and failures, in its own words, with the status they deserve.
#[cfg(feature = "ssr")]
pub(super) fn from_engine(e: engine::restore::RestoreError) -> AppError {
    use engine::restore::RestoreError as E;
    match e {
        E::Target(_) => AppError::BadRequest(e.to_string()),
        E::OutsideWindow { .. }
        | E::UnknownBackup(_)
        | E::UnusableBackup { .. }
        | E::UnknownTransaction { .. }
        | E::WalGap { .. }
        | E::WrongCluster { .. }
        | E::DiskFull { .. }
        | E::NotRenamable { .. }
        | E::PreviewUnavailable(_)
        | E::Query(_) => AppError::Rejected(e.to_string()),
        E::InProgress { .. }
        | E::Busy
        | E::NoRestore
        | E::NotPaused(_)
        | E::DuringRestore { .. }
        | E::Promoted { .. }
        | E::UnknownRestore(_) => AppError::Refused(e.to_string()),
        other => {
            tracing::error!(error = %other, "a restore operation failed");
            AppError::ActionFailed(other.to_string())
        }
    }
}

/// Runs a long restore operation in a task of its own; its outcome is in the journal (and the
/// audit log), whoever is watching.
#[cfg(feature = "ssr")]
fn in_background<F>(
    ctx: ServerContext,
    caller: Caller,
    what: &'static str,
    target: Option<String>,
    op: F,
) where
    F: std::future::Future<
            Output = Result<engine::restore::RestoreStatus, engine::restore::RestoreError>,
        > + Send
        + 'static,
{
    tokio::spawn(async move {
        let outcome = match op.await {
            Ok(s) => format!("ok: {}", s.state.name()),
            Err(e) => {
                tracing::warn!(operation = what, error = %e, "a restore operation ended with an error");
                format!("failed: {e}")
            }
        };
        audit(&ctx, &caller, what, target, outcome).await;
    });
}

/// Refuses to start when a restore is open (the engine would too, but only in the background).
#[cfg(feature = "ssr")]
fn refuse_if_open(ctx: &ServerContext) -> Result<(), AppError> {
    match ctx.engine.status() {
        Ok(Some(s)) if s.state != engine::restore::Phase::Closed => {
            Err(AppError::Refused(format!(
                "a restore is already in progress ({}, {}): accept, retry or roll it back first",
                s.restore_id,
                s.state.name()
            )))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(from_engine(e)),
    }
}

/// Whether a preview can run beside production now: the wizard makes it the default when so.
#[server]
pub async fn restore_preflight() -> Result<PreflightView, AppError> {
    operator()?;
    let ctx = server_context()?;
    let p = ctx.engine.preview_preflight(None).await;
    Ok(PreflightView {
        passes: p.passes(),
        problems: p.problems,
    })
}

/// The dry run for a target (and a backup, or the newest that can serve it), in place or as a
/// preview: touches nothing.
#[server]
pub async fn restore_plan(
    target: String,
    backup_id: Option<String>,
    #[server(default)] preview: bool,
    #[server(default)] hold_writes: bool,
) -> Result<PlanView, AppError> {
    operator()?;
    let backup_id = parse_backup_id(backup_id)?;
    let ctx = server_context()?;
    let target = parse_target(&ctx, &target).await?;
    let plan = ctx
        .engine
        .plan_in(
            target,
            backup_id.as_deref(),
            mode_choice(preview, hold_writes),
        )
        .await
        .map_err(from_engine)?;
    let downtime = ctx.engine.expected_downtime(plan.needed_bytes);
    Ok(views::plan(
        &plan,
        &ctx.engine.config().postgres.database,
        downtime,
    ))
}

/// Starts a restore to `target`, in place or as a preview: the operator typed the database's
/// name to confirm. Returns at once; the restore runs in the server up to the copy paused at
/// the target.
#[server]
pub async fn restore_start(
    target: String,
    backup_id: Option<String>,
    confirm_database: String,
    #[server(default)] preview: bool,
    #[server(default)] hold_writes: bool,
) -> Result<(), AppError> {
    let caller = operator()?;
    let backup_id = parse_backup_id(backup_id)?;
    let ctx = server_context()?;
    let target = parse_target(&ctx, &target).await?;
    let database = ctx.engine.config().postgres.database.clone();
    if confirm_database.trim() != database {
        return Err(AppError::BadRequest(format!(
            "type the database's name, {database}, to confirm the restore"
        )));
    }
    refuse_if_open(&ctx)?;
    let choice = mode_choice(preview, hold_writes);
    // What would refuse the restore is said now, to the person who asked.
    if let Err(e) = ctx
        .engine
        .plan_in(target, backup_id.as_deref(), choice)
        .await
    {
        audit(
            &ctx,
            &caller,
            "restore_start",
            Some(target.to_string()),
            format!("refused: {e}"),
        )
        .await;
        return Err(from_engine(e));
    }
    let engine = ctx.engine.clone();
    in_background(
        ctx,
        caller,
        "restore_start",
        Some(target.to_string()),
        async move {
            engine
                .start_restore_in(target, backup_id.as_deref(), choice)
                .await
        },
    );
    Ok(())
}

/// The restore in progress, or the last one (anyone signed in may watch).
#[server]
pub async fn restore_status() -> Result<Option<RestoreView>, AppError> {
    signed_in()?;
    let ctx = server_context()?;
    let Some(status) = ctx.engine.status().map_err(from_engine)? else {
        return Ok(None);
    };
    let mut view = views::restore(&status);
    if status.state == engine::restore::Phase::Paused {
        // PostgreSQL's own word on where replay stopped: in place, the shared probe (cheap to
        // ask); a preview's side instance is asked itself.
        let copy = if view.preview {
            ctx.engine.paused_copy_status().await.ok().flatten()
        } else {
            match ctx.engine.postgres_check().await.state {
                engine::overview::PostgresState::Up(s) => Some(*s),
                _ => None,
            }
        };
        view.replay = copy
            .filter(|s| s.in_recovery)
            .map(|s| crate::model::ReplayView {
                paused: s.pause_state == Some(engine::probe::PauseState::Paused),
                last_replayed: s.last_replayed_xact,
            });
        if view.preview {
            view.production_writes = ctx
                .engine
                .production_writes()
                .await
                .ok()
                .flatten()
                .map(|w| crate::model::ProductionWritesView {
                    since: w.since,
                    rows_written: w.rows_written,
                    commits: w.commits,
                    held: w.held,
                });
        }
    }
    Ok(Some(view))
}

/// A read-only query on the paused server, as the verify role (the engine's limits: one
/// statement, time-outs, a row cap).
#[server]
pub async fn restore_query(sql: String) -> Result<QueryView, AppError> {
    let caller = operator()?;
    let ctx = server_context()?;
    let result = ctx.engine.query(&sql, 200).await;
    let outcome = match &result {
        Ok(r) => format!("ok: {} rows", r.rows.len()),
        Err(e) => format!("refused: {e}"),
    };
    let shown: String = sql.chars().take(200).collect();
    audit(&ctx, &caller, "restore_query", Some(shown), outcome).await;
    let r = result.map_err(from_engine)?;
    Ok(QueryView {
        columns: r.columns,
        rows: r.rows,
        truncated: r.truncated,
    })
}

/// Recover again to another target, from the paused state.
#[server]
pub async fn restore_retry(target: String, backup_id: Option<String>) -> Result<(), AppError> {
    let caller = operator()?;
    let backup_id = parse_backup_id(backup_id)?;
    let ctx = server_context()?;
    paused(&ctx)?;
    let target = parse_target(&ctx, &target).await?;
    let engine = ctx.engine.clone();
    in_background(
        ctx,
        caller,
        "restore_retry",
        Some(target.to_string()),
        async move { engine.retry(target, backup_id.as_deref()).await },
    );
    Ok(())
}

/// The longest range listed at once, and the most rows sent to the page.
#[cfg(feature = "ssr")]
const MAX_RANGE_MINUTES: i64 = 24 * 60;
#[cfg(feature = "ssr")]
const MAX_ROWS: usize = 300;

/// The transactions that ended within `minutes` either side of `around` (a time with its zone;
/// empty: the last `minutes` up to now), from the WAL Barman holds. `suspicious_only` keeps the
/// drops, truncates and largest deletes. At most [`MAX_ROWS`] rows, the nearest to the middle.
#[server]
pub async fn restore_transactions(
    around: String,
    minutes: u32,
    suspicious_only: bool,
) -> Result<crate::model::TransactionsView, AppError> {
    operator()?;
    let ctx = server_context()?;
    let span = chrono::TimeDelta::minutes(i64::from(minutes).clamp(1, MAX_RANGE_MINUTES));
    let now = super::server_now();
    let (from, to, middle) = if around.trim().is_empty() {
        (now - span, now, now)
    } else {
        if around.len() > MAX_TARGET_CHARS {
            return Err(AppError::BadRequest("that is not a time".into()));
        }
        let t = around
            .parse::<engine::target::TargetTime>()
            .map_err(|e| AppError::BadRequest(e.to_string()))?
            .utc();
        (t - span, t + span, t)
    };
    let started = std::time::Instant::now();
    let list = ctx
        .engine
        .transactions(from, to)
        .await
        .map_err(|e| from_engine(e.into()))?;
    Ok(views::transactions(
        list,
        suspicious_only,
        middle,
        MAX_ROWS,
        started.elapsed().as_millis() as u64,
    ))
}

/// Make the restored state the database: archiving back on, promote, clean up.
#[server]
pub async fn restore_accept() -> Result<(), AppError> {
    let caller = operator()?;
    let ctx = server_context()?;
    open(&ctx)?;
    let engine = ctx.engine.clone();
    in_background(ctx, caller, "restore_accept", None, async move {
        engine.accept().await
    });
    Ok(())
}

/// Put the pre-restore data directory back and start it.
#[server]
pub async fn restore_rollback() -> Result<(), AppError> {
    let caller = operator()?;
    let ctx = server_context()?;
    open(&ctx)?;
    let engine = ctx.engine.clone();
    in_background(ctx, caller, "restore_rollback", None, async move {
        engine.rollback().await
    });
    Ok(())
}

#[cfg(feature = "ssr")]
fn open(ctx: &ServerContext) -> Result<engine::restore::RestoreStatus, AppError> {
    match ctx.engine.status().map_err(from_engine)? {
        Some(s) if s.state != engine::restore::Phase::Closed => Ok(s),
        _ => Err(AppError::Refused("there is no restore in progress".into())),
    }
}

#[cfg(feature = "ssr")]
fn paused(ctx: &ServerContext) -> Result<(), AppError> {
    let s = open(ctx)?;
    if s.state != engine::restore::Phase::Paused {
        return Err(AppError::Refused(format!(
            "this needs the restore paused at its target, but it is {}",
            s.state.name()
        )));
    }
    Ok(())
}

#[cfg(feature = "ssr")]
pub(super) mod views {
    use engine::restore::{Downtime, Outcome, Plan, RestoreStatus, Step};

    use crate::model::{PlanView, RestoreView, StepView, TransactionRow, TransactionsView};

    /// The rows the page shows: the filter, then at most `max`, the nearest to `middle`, in
    /// the order they ended.
    pub fn transactions(
        list: engine::transactions::TransactionList,
        suspicious_only: bool,
        middle: chrono::DateTime<chrono::Utc>,
        max: usize,
        elapsed_ms: u64,
    ) -> TransactionsView {
        let total = list.transactions.len();
        let suspicious_total = list.transactions.iter().filter(|t| t.suspicious).count();
        let mut rows: Vec<(usize, TransactionRow)> = list
            .transactions
            .into_iter()
            .filter(|t| t.suspicious || !suspicious_only)
            .map(|t| TransactionRow {
                xid: t.xid,
                committed: t.committed,
                ended_at: t.ended_at,
                end_lsn: t.end_lsn,
                line: t.line,
                suspicious: t.suspicious,
            })
            .enumerate()
            .collect();
        if rows.len() > max {
            // The nearest to the middle, then back in WAL order.
            rows.sort_by_key(|(_, r)| (r.ended_at - middle).abs());
            rows.truncate(max);
            rows.sort_by_key(|(i, _)| *i);
        }
        TransactionsView {
            from: list.from,
            to: list.to,
            rows: rows.into_iter().map(|(_, r)| r).collect(),
            total,
            suspicious_total,
            segments: list.segments,
            decoded: list.decoded,
            elapsed_ms,
            last_archived_end: list.last_archived_end,
        }
    }

    /// What each step does, in one sentence.
    fn what(step: Step) -> &'static str {
        match step {
            Step::Plan => "check the target, choose the backup, hold it against retention",
            Step::Archive => "commit a transaction after the target and archive the current WAL",
            Step::Stop => "stop PostgreSQL and prove it stopped",
            Step::SetAside => "rename the data directory aside (it is kept until you discard it)",
            Step::Recover => "barman recover the backup, set to pause at the target",
            Step::StartPaused => "start PostgreSQL and wait until it pauses at the target",
            Step::Swap => {
                "stop the preview and production, swap their data directories by rename, start \
                 paused on production's port"
            }
            Step::Accept => "archiving back on, promote, clean up Barman's settings",
            Step::Retry => "remove the restored copy for another target",
            Step::Rollback => "put the original data directory back and start it",
        }
    }

    pub fn plan(p: &Plan, database: &str, downtime: Option<Downtime>) -> PlanView {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let secs = |d: chrono::TimeDelta| d.num_milliseconds() as f64 / 1000.0;
        PlanView {
            expected_downtime: downtime.map(|d| {
                format!(
                    "about {:.0} s: the last restore here ({}) kept PostgreSQL down {:.0} s \
                     for {:.0} MiB; this one writes {:.0} MiB",
                    secs(d.expected).max(1.0),
                    d.basis_restore,
                    secs(d.basis_downtime),
                    mib(d.basis_bytes),
                    mib(p.needed_bytes)
                )
            }),
            target: p.target.time().utc(),
            target_transaction: p.target.transaction().map(|_| p.target.to_string()),
            backup_id: p.backup_id.clone(),
            backup_end: p.backup_end,
            window_start: p.window.earliest,
            window_end: p.window.latest,
            steps: Step::path_to_paused(Step::Plan, p.mode.preview().is_some())
                .into_iter()
                .filter(|s| *s != Step::Archive || p.server_was_running)
                .map(|s| (s.name().to_owned(), what(s).to_owned()))
                .collect(),
            server_was_running: p.server_was_running,
            needed_bytes: p.needed_bytes,
            free_bytes: p.free_bytes,
            warnings: p.warnings.clone(),
            database: database.to_owned(),
            preview: p.mode.preview().is_some(),
            hold_writes: p.mode.preview().is_some_and(|v| v.hold_writes),
        }
    }

    pub fn restore(s: &RestoreStatus) -> RestoreView {
        const TAIL: usize = 40;
        RestoreView {
            restore_id: s.restore_id.clone(),
            state: s.state.name().to_owned(),
            target: s.target.time().utc(),
            target_transaction: s.target.transaction().map(|_| s.target.to_string()),
            backup_id: s.plan.backup_id.clone(),
            steps: s
                .steps
                .iter()
                .map(|r| StepView {
                    step: r.step.name().to_owned(),
                    started: r.started,
                    finished: r.finished,
                    error: r.error.clone(),
                    detail: r.detail.clone(),
                })
                .collect(),
            log_tail: s.log[s.log.len().saturating_sub(TAIL)..].to_vec(),
            outcome: s.outcome.as_ref().map(|o| match o {
                Outcome::Accepted { timeline } => {
                    format!("accepted: the database lives on timeline {timeline}")
                }
                Outcome::RolledBack { reason } => format!("rolled back: {reason}"),
            }),
            pre_restore_dir: s.plan.pre_restore_dir.display().to_string(),
            replay: None,
            preview: s.plan.mode.preview().is_some(),
            production_writes: None,
        }
    }
}
