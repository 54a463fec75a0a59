//! The restore wizard: choose a target, read the plan, confirm, watch the steps, verify the
//! paused server, then accept, retry or roll back. Its state is the engine's journal (read every
//! second through `restore_status`), not the page's: a reload, a second browser or a restarted
//! server shows the same restore.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use leptos::prelude::*;

use crate::api::{
    overview, restore_preflight, restore_status, BackupNow, RestoreAccept, RestorePlan,
    RestoreQuery, RestoreRetry, RestoreRollback, RestoreStart, RestoreTransactions, SwitchWal,
};
use crate::clock::utc;
use crate::model::{
    parse_transaction_target, transaction_target_text, AppError, PlanView, PreflightView,
    ProductionWritesView, QueryView, RestoreView, TransactionsView,
};

/// The target as typed, read as barkeep reads it: a time with an explicit zone.
fn parse_target(text: &str) -> Option<DateTime<FixedOffset>> {
    let t = text.trim().replace('T', " ");
    [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M%:z",
    ]
    .iter()
    .find_map(|f| DateTime::parse_from_str(&t, f).ok())
}

/// A `datetime-local` value (the browser's zone) with the browser's offset for that moment.
#[cfg(feature = "hydrate")]
fn with_browser_zone(local: &str) -> Option<String> {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_str(local));
    let minutes = date.get_timezone_offset();
    if minutes.is_nan() {
        return None;
    }
    // getTimezoneOffset is UTC minus local, in minutes.
    let east = -(minutes as i32);
    let sign = if east < 0 { '-' } else { '+' };
    let seconds = if local.len() == 16 { ":00" } else { "" };
    Some(format!(
        "{}{seconds}{sign}{:02}:{:02}",
        local.replace('T', " "),
        east.abs() / 60,
        east.abs() % 60
    ))
}

#[cfg(not(feature = "hydrate"))]
fn with_browser_zone(_local: &str) -> Option<String> {
    None
}

/// The wizard page. It asks the journal once a second, but draws again only when the answer
/// changed: what the person types (a query, a target) is not swept away while nothing happens.
#[component]
pub fn RestorePage() -> impl IntoView {
    let first = Resource::new(|| (), |_| restore_status());
    let live: RwSignal<Option<Result<Option<RestoreView>, AppError>>> = RwSignal::new(None);
    // Production's writes during a preview change with every look (barkeep's own checks commit
    // too): a signal of their own, so that the page around them (a typed query, its result) is
    // not drawn again each second.
    let writes: RwSignal<Option<ProductionWritesView>> = RwSignal::new(None);
    #[cfg(feature = "hydrate")]
    {
        if let Ok(handle) = set_interval_with_handle(
            move || {
                leptos::task::spawn_local(async move {
                    let (now, now_writes) = without_writes(restore_status().await);
                    if writes.get_untracked() != now_writes {
                        writes.set(now_writes);
                    }
                    // Compared with what is drawn: the live answer, else the first one.
                    let drawn = live
                        .get_untracked()
                        .or_else(|| first.get_untracked().map(|f| without_writes(f).0));
                    if drawn.as_ref() != Some(&now) {
                        live.set(Some(now));
                    }
                });
            },
            std::time::Duration::from_secs(1),
        ) {
            on_cleanup(move || handle.clear());
        }
    }
    view! {
        <section class="card" id="restore">
            <h2>"Restore to a point in time"</h2>
            <Transition fallback=|| view! { <p class="muted">"Reading the restore journal…"</p> }>
                <ErrorBoundary fallback=crate::pages::error_words>
                    {move || Suspend::new(async move {
                        let first = first.await;
                        live.get().unwrap_or(first).map(|s| match s {
                            Some(r) if r.state == "running" => running(r).into_any(),
                            Some(r) if r.state == "paused" => paused(r, writes).into_any(),
                            last => choose(last).into_any(),
                        })
                    })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

/// A status answer without production's writes, and those writes.
#[cfg(feature = "hydrate")]
fn without_writes(
    mut answer: Result<Option<RestoreView>, AppError>,
) -> (
    Result<Option<RestoreView>, AppError>,
    Option<ProductionWritesView>,
) {
    let writes = match &mut answer {
        Ok(Some(r)) => r.production_writes.take(),
        _ => None,
    };
    (answer, writes)
}

/// No restore open: the target, the plan, the confirmation.
fn choose(last: Option<RestoreView>) -> impl IntoView {
    let target = RwSignal::new(String::new());
    let plan = ServerAction::<RestorePlan>::new();
    let start = ServerAction::<RestoreStart>::new();
    let confirm = RwSignal::new(String::new());
    let read_as = move || {
        target.with(|t| {
            if t.trim().is_empty() {
                String::new()
            } else if let Some((before, xid)) = parse_transaction_target(t) {
                format!(
                    "= just {} transaction {xid}: everything that committed {} it, found in the WAL",
                    if before { "before" } else { "after" },
                    if before { "before" } else { "up to and with" }
                )
            } else {
                match parse_target(t) {
                    Some(t) => format!("= {}", utc(t.with_timezone(&Utc))),
                    None => "write it with its zone, e.g. 2026-11-26 09:30:00+01:00".to_owned(),
                }
            }
        })
    };
    let set_target = move |t: DateTime<Utc>| target.set(crate::clock::as_target(t));
    // Presets from the browser's clock (there is none on the server: they act once hydrated).
    let ago = move |minutes: i64| {
        move |_| {
            if let Some(now) = crate::clock::browser_now() {
                set_target(now - TimeDelta::minutes(minutes));
            }
        }
    };
    // "Just before": the target moved earlier, in the zone it was written in.
    let earlier = move |by: TimeDelta| {
        move |_| {
            if let Some(t) = parse_target(&target.get_untracked()) {
                target.set((t - by).format("%Y-%m-%d %H:%M:%S%.f%:z").to_string());
            }
        }
    };
    let catalog = Resource::new(|| (), |_| overview());
    // Preview is the default when it can run here, in place otherwise, until the person chooses.
    let preflight = Resource::new(|| (), |_| restore_preflight());
    let chosen: RwSignal<Option<bool>> = RwSignal::new(None);
    let hold_writes = RwSignal::new(false);
    let preview = move || {
        chosen
            .get_untracked()
            .unwrap_or_else(|| matches!(preflight.get_untracked(), Some(Ok(p)) if p.passes))
    };
    let accepted = last.as_ref().is_some_and(|l| {
        l.outcome
            .as_deref()
            .is_some_and(|o| o.starts_with("accepted"))
    });
    view! {
        {last.and_then(|l| l.outcome.map(|o| view! {
            <p class="muted" id="last-restore">{format!("The last restore ({}) was {o}.", l.restore_id)}</p>
        }))}
        {accepted.then(backup_after_accept)}
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                catalog.await.ok().and_then(|d| d.catalog.ok()).map(|c| view! {
                    <p class="muted">"Click the time axis to pick a target, or type one below."</p>
                    {crate::dashboard::recovery_axis(&c, Some(Callback::new(set_target)))}
                })
            })}
        </Transition>
        <div class="presets" role="group" aria-label="Presets">
            <button id="preset-5m" on:click=ago(5)>"5 minutes ago"</button>
            <button id="preset-30m" on:click=ago(30)>"30 minutes ago"</button>
            <button id="preset-1h" on:click=ago(60)>"1 hour ago"</button>
            <button id="earlier-1s" on:click=earlier(TimeDelta::seconds(1))>"1 second earlier"</button>
            <button id="earlier-1m" on:click=earlier(TimeDelta::minutes(1))>"1 minute earlier"</button>
        </div>
        <div class="field">
            <label for="target-local">"Target, in your browser's time zone"</label>
            <input
                id="target-local"
                type="datetime-local"
                step="1"
                on:input=move |ev| {
                    if let Some(t) = with_browser_zone(&event_target_value(&ev)) {
                        target.set(t);
                    }
                }
            />
        </div>
        <div class="field">
            <label for="target">"Target time, with its zone"</label>
            <input
                id="target"
                type="text"
                placeholder="2026-11-26 09:30:00+01:00"
                prop:value=move || target.get()
                on:input=move |ev| target.set(event_target_value(&ev))
            />
            <p class="muted" id="target-utc">{read_as}</p>
        </div>
        {transactions_panel(target)}
        <Transition fallback=|| view! { <p class="muted">"Checking whether a preview can run here…"</p> }>
            {move || Suspend::new(async move {
                let p = preflight.await;
                mode_choice(chosen, hold_writes, p)
            })}
        </Transition>
        <button
            id="plan-restore"
            on:click=move |_| {
                let preview = preview();
                plan.dispatch(RestorePlan {
                    target: target.get_untracked(),
                    backup_id: None,
                    preview,
                    hold_writes: preview && hold_writes.get_untracked(),
                });
            }
            disabled=move || plan.pending().get()
        >
            "Plan the restore"
        </button>
        {move || plan.value().get().map(|r| match r {
            Err(e) => view! { <p class="error" role="alert" id="plan-error">{e.to_string()}</p> }.into_any(),
            Ok(p) => {
                let database = p.database.clone();
                let target_text = target.get_untracked();
                // What runs is what the plan shows.
                let (as_preview, hold) = (p.preview, p.hold_writes);
                view! {
                    {plan_view(p)}
                    <div class="field">
                        <label for="confirm-database">
                            {format!("Type the database's name, {database}, to confirm")}
                        </label>
                        <input
                            id="confirm-database"
                            type="text"
                            autocomplete="off"
                            on:input=move |ev| confirm.set(event_target_value(&ev))
                        />
                    </div>
                    <button
                        id="start-restore"
                        class="danger"
                        disabled=move || start.pending().get() || confirm.get().trim() != database
                        on:click=move |_| {
                            start.dispatch(RestoreStart {
                                target: target_text.clone(),
                                backup_id: None,
                                confirm_database: confirm.get_untracked(),
                                preview: as_preview,
                                hold_writes: hold,
                            });
                        }
                    >
                        {if as_preview { "Restore beside production" } else { "Stop PostgreSQL and restore" }}
                    </button>
                }
                .into_any()
            }
        })}
        {move || start.value().get().and_then(|r| r.err()).map(|e| view! {
            <p class="error" role="alert" id="start-error">{e.to_string()}</p>
        })}
    }
}

/// In place or preview, each said in one sentence; preview offered (and the default) only
/// when its preflight passes, else the reasons why not. `chosen`: the person's choice, if any.
fn mode_choice(
    chosen: RwSignal<Option<bool>>,
    hold_writes: RwSignal<bool>,
    preflight: Result<PreflightView, AppError>,
) -> impl IntoView {
    let unavailable = match preflight {
        Ok(p) if p.passes => None,
        Ok(p) => Some(p.problems.join("; ")),
        Err(e) => Some(e.to_string()),
    };
    let can_preview = unavailable.is_none();
    let preview = move || chosen.get().unwrap_or(can_preview);
    view! {
        <fieldset class="mode" id="restore-mode">
            <legend>"How to restore"</legend>
            <label>
                <input type="radio" name="restore-mode" id="mode-preview"
                    prop:checked=preview
                    disabled=!can_preview
                    on:change=move |_| chosen.set(Some(true))/>
                " Preview beside production"
            </label>
            <p class="muted">
                "Production keeps serving while you check the restored copy beside it; \
                 accepting swaps it in, with about a second of downtime."
            </p>
            <label class="indent">
                <input type="checkbox" id="hold-writes"
                    prop:checked=move || hold_writes.get()
                    prop:disabled=move || !preview()
                    on:change=move |ev| hold_writes.set(event_target_checked(&ev))/>
                " Refuse writes on production while the preview is open (the swap discards them)"
            </label>
            <label>
                <input type="radio" name="restore-mode" id="mode-in-place"
                    prop:checked=move || !preview()
                    on:change=move |_| chosen.set(Some(false))/>
                " In place"
            </label>
            <p class="muted">
                "PostgreSQL stops now and stays down until you accept or roll back; no second \
                 server is needed."
            </p>
            {unavailable.map(|why| view! {
                <p class="warn" id="preview-unavailable">{format!("A preview cannot run here: {why}")}</p>
            })}
        </fieldset>
    }
}

/// "What happened": the transactions in the WAL around the target (or in the last hour), the
/// suspicious ones first, each a click away from being the target: just before it, or just
/// after it.
fn transactions_panel(target: RwSignal<String>) -> impl IntoView {
    let list = ServerAction::<RestoreTransactions>::new();
    let switch = ServerAction::<SwitchWal>::new();
    let suspicious_only = RwSignal::new(true);
    let minutes = RwSignal::new(60u32);
    let load = move || {
        // Around the typed time when there is one, else the last `minutes` up to now.
        let around = parse_target(&target.get_untracked())
            .map(|t| t.format("%Y-%m-%d %H:%M:%S%.f%:z").to_string())
            .unwrap_or_default();
        list.dispatch(RestoreTransactions {
            around,
            minutes: minutes.get_untracked(),
            suspicious_only: suspicious_only.get_untracked(),
        });
    };
    // A WAL switch sends the newest transactions to Barman: list again once it is done.
    Effect::new(move |_| {
        if matches!(switch.value().get(), Some(Ok(_))) {
            load();
        }
    });
    view! {
        <details class="transactions" id="transactions-panel">
            <summary>"Find the mistake: the transactions in the WAL"</summary>
            <p class="muted">
                "barkeep reads the WAL Barman holds and lists what each transaction did.                  Choose one to restore to just before it (everything that committed before it,                  not it) or just after it."
            </p>
            <div class="presets">
                <label>
                    <input id="transactions-suspicious" type="checkbox"
                        prop:checked=move || suspicious_only.get()
                        on:change=move |ev| suspicious_only.set(event_target_checked(&ev))/>
                    " Only drops, truncates and the largest deletes"
                </label>
                <label>
                    " Range: "
                    <select id="transactions-minutes"
                        on:change=move |ev| {
                            if let Ok(m) = event_target_value(&ev).parse() {
                                minutes.set(m);
                            }
                        }>
                        <option value="10">"10 minutes"</option>
                        <option value="60" selected>"1 hour"</option>
                        <option value="360">"6 hours"</option>
                        <option value="1440">"24 hours"</option>
                    </select>
                    " either side of the target (or back from now)"
                </label>
                <button id="list-transactions" on:click=move |_| load()
                    disabled=move || list.pending().get()>
                    {move || if list.pending().get() { "Reading the WAL…" } else { "Show the transactions" }}
                </button>
            </div>
            {move || list.value().get().map(|r| match r {
                Err(e) => view! { <p class="error" role="alert" id="transactions-error">{e.to_string()}</p> }.into_any(),
                Ok(v) => transactions_table(v, target, switch).into_any(),
            })}
        </details>
    }
}

fn transactions_table(
    v: TransactionsView,
    target: RwSignal<String>,
    switch: ServerAction<SwitchWal>,
) -> impl IntoView {
    let summary = format!(
        "{} ended between {} and {} ({} suspicious); {} shown. Read {} WAL segments ({} \
         decoded now, the rest known) in {} ms.",
        if v.total == 1 {
            "1 transaction".to_owned()
        } else {
            format!("{} transactions", v.total)
        },
        utc(v.from),
        utc(v.to),
        v.suspicious_total,
        v.rows.len(),
        v.segments,
        v.decoded,
        v.elapsed_ms
    );
    let newest = match v.last_archived_end {
        Some(t) => format!(
            "The newest transaction Barman has ended at {}. Later ones are still in \
             PostgreSQL's pg_wal, sent when the segment fills or archive_timeout passes.",
            utc(t)
        ),
        None => "Barman holds no transaction yet.".to_owned(),
    };
    let rows = v
        .rows
        .into_iter()
        .map(|t| {
            let xid = t.xid;
            // The line without its time and xid: the columns beside it say them.
            let what = t
                .line
                .split_once(": ")
                .map_or(t.line.as_str(), |(_, w)| w)
                .to_owned();
            view! {
                <tr id=format!("txn-{xid}") class:suspicious=t.suspicious>
                    <td>{crate::clock::time_view(t.ended_at)}</td>
                    <td class="mono" title=format!("end record at {}", t.end_lsn)>
                        {xid}{(!t.committed).then_some(" (aborted)")}
                    </td>
                    <td>{what}</td>
                    <td class="nowrap">
                        <button class="small" id=format!("before-{xid}")
                            on:click=move |_| target.set(transaction_target_text(true, xid))>
                            "Just before"
                        </button>
                        " "
                        <button class="small" id=format!("after-{xid}")
                            on:click=move |_| target.set(transaction_target_text(false, xid))>
                            "Just after"
                        </button>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted" id="transactions-summary">{summary}</p>
        <p class="muted" id="transactions-newest">
            {newest}" "
            <button class="small" id="switch-wal-for-list"
                on:click=move |_| { switch.dispatch(SwitchWal {}); }
                disabled=move || switch.pending().get()>
                "Archive the current WAL now"
            </button>
        </p>
        <div class="table-scroll">
            <table id="transactions">
                <thead><tr><th>"Ended"</th><th>"xid"</th><th>"What it did"</th><th>"Restore to"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
}

/// After an accept: the restored database's WAL is on a new timeline, and its newest base
/// backup is from before the restore. A new one now makes the next restore short and safe.
fn backup_after_accept() -> impl IntoView {
    let backup = ServerAction::<BackupNow>::new();
    view! {
        <div class="after-accept">
            <p>
                "The restored database runs on a new timeline; its newest base backup is older \
                 than the restore. Taking one now makes the next restore shorter."
            </p>
            <button
                id="backup-after-accept"
                on:click=move |_| { backup.dispatch(BackupNow {}); }
                disabled=move || backup.pending().get()
            >
                {move || if backup.pending().get() {
                    "Backing up… (barman backup --wait)"
                } else {
                    "Take a new base backup now"
                }}
            </button>
            <p id="backup-after-accept-result" role="status">
                {move || backup.value().get().map(|r| match r {
                    Ok(done) => format!("Backed up: {} (finished {} UTC)", done.message, done.at.format("%H:%M:%S")),
                    Err(e) => e.to_string(),
                })}
            </p>
        </div>
    }
}

fn plan_view(p: PlanView) -> impl IntoView {
    let window = match (p.window_start, p.window_end) {
        (Some(a), Some(b)) => format!("{} to {}", utc(a), utc(b)),
        (Some(a), None) => format!("from {}", utc(a)),
        _ => "none".to_owned(),
    };
    view! {
        <div id="plan">
            <dl class="facts">
                <dt>"Target"</dt>
                <dd id="plan-target">
                    {p.target_transaction.clone().unwrap_or_else(|| utc(p.target))}
                </dd>
                <dt>"From backup"</dt><dd>{format!("{} (ended {})", p.backup_id, utc(p.backup_end))}</dd>
                <dt>"Recovery window"</dt><dd>{window}</dd>
                <dt>"Disk"</dt><dd>{format!("{} MiB needed, {} MiB free", p.needed_bytes >> 20, p.free_bytes >> 20)}</dd>
                <dt>"How"</dt>
                <dd id="plan-mode">
                    {match (p.preview, p.hold_writes) {
                        (true, true) => "preview beside production, which refuses writes until it ends",
                        (true, false) => "preview beside production, which keeps taking writes (the swap discards them)",
                        (false, _) => "in place",
                    }}
                </dd>
                <dt>"Expected downtime"</dt>
                <dd id="plan-downtime">
                    {if p.preview {
                        "about a second, at the swap when you accept: production serves while the \
                         copy is restored and while you verify it".to_owned()
                    } else {
                        p.expected_downtime.unwrap_or_else(|| {
                            "not known yet: no restore has run here to measure it from (the copy \
                             runs at the disk's speed)".to_owned()
                        })
                    }}
                </dd>
            </dl>
            <ol class="steps">
                {p.steps.into_iter().map(|(step, what)| view! { <li><strong>{step}</strong>": "{what}</li> }).collect_view()}
            </ol>
            {p.warnings.into_iter().map(|w| view! { <p class="warn">{w}</p> }).collect_view()}
            <p class="muted">
                {if p.preview {
                    "Production is stopped only at the swap; its data directory is then kept, \
                     renamed, until you discard it."
                } else {
                    "PostgreSQL is down from the stop step until you accept or roll back; the data \
                     directory you have now is kept, renamed, until you discard it."
                }}
            </p>
        </div>
    }
}

fn steps_view(r: &RestoreView) -> impl IntoView {
    let rows = r
        .steps
        .iter()
        .map(|s| {
            let (state, class) = match (&s.finished, &s.error) {
                (_, Some(e)) => (format!("failed: {e}"), "error"),
                // The journal's detail ends with the step's duration.
                (Some(f), None) => (
                    s.detail.clone().map_or_else(
                        || format!("done in {} ms", (*f - s.started).num_milliseconds()),
                        |d| format!("done: {d}"),
                    ),
                    "ok",
                ),
                (None, None) => ("running…".to_owned(), "warn"),
            };
            view! {
                <tr>
                    <td>{s.step.clone()}</td>
                    <td class="mono">{s.started.format("%H:%M:%S").to_string()}</td>
                    <td class=class>{state}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="restore-steps">
            <thead><tr><th>"Step"</th><th>"Started (UTC)"</th><th>"State"</th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

fn running(r: RestoreView) -> impl IntoView {
    view! {
        <p id="restore-state" class="warn">
            {format!("Restore {} to {} is running.", r.restore_id, target_words(&r))}
        </p>
        {steps_view(&r)}
        <details open>
            <summary>"Barman's and PostgreSQL's output"</summary>
            <pre class="log" id="restore-log">{r.log_tail.join("\n")}</pre>
        </details>
    }
}

fn paused(r: RestoreView, writes: RwSignal<Option<ProductionWritesView>>) -> impl IntoView {
    let sql = RwSignal::new(String::from("SELECT count(*) FROM "));
    let query = ServerAction::<RestoreQuery>::new();
    let accept = ServerAction::<RestoreAccept>::new();
    let rollback = ServerAction::<RestoreRollback>::new();
    let retry = ServerAction::<RestoreRetry>::new();
    let retry_target = RwSignal::new(String::new());
    let busy = move || accept.pending().get() || rollback.pending().get() || retry.pending().get();
    let refusal = move || {
        [
            accept.value().get(),
            rollback.value().get(),
            retry.value().get(),
        ]
        .into_iter()
        .flatten()
        .find_map(Result::err)
        .map(|e| view! { <p class="error" role="alert" id="decide-error">{e.to_string()}</p> })
    };
    let preview = r.preview;
    view! {
        <p id="restore-state" class="ok">
            {format!(
                "Restore {}: {} is paused {}. Look at the data before you decide.",
                r.restore_id,
                if preview { "the restored copy beside production" } else { "PostgreSQL" },
                r.target_transaction.clone().unwrap_or_else(|| format!("at {}", utc(r.target)))
            )}
        </p>
        {preview.then(|| {
            // The first answer (drawn by the server) until the page's own looks arrive.
            let first = r.production_writes.clone();
            move || production_writes_view(writes.get().or_else(|| first.clone()))
        })}
        <p id="replay-state" class="muted">
            {match &r.replay {
                Some(p) => format!(
                    "PostgreSQL says: replay {}; the last transaction it replayed committed at {}.",
                    if p.paused { "paused" } else { "not paused" },
                    p.last_replayed.map(utc).unwrap_or_else(|| "(none replayed)".to_owned())
                ),
                None => "PostgreSQL does not answer as a server in recovery right now.".to_owned(),
            }}
        </p>
        {steps_view(&r)}
        <h3>"Verify"</h3>
        <div class="field">
            <label for="verify-sql">"A read-only query (one SELECT; at most 200 rows are shown)"</label>
            <textarea id="verify-sql" rows="3" prop:value=move || sql.get()
                on:input=move |ev| sql.set(event_target_value(&ev))></textarea>
        </div>
        <button id="run-query" on:click=move |_| { query.dispatch(RestoreQuery { sql: sql.get_untracked() }); }
            disabled=move || query.pending().get()>"Run the query"</button>
        {move || query.value().get().map(|r| match r {
            Ok(q) => query_table(q).into_any(),
            Err(e) => view! { <p class="error" role="alert" id="query-error">{e.to_string()}</p> }.into_any(),
        })}
        <h3>"Decide"</h3>
        <div class="action">
            <button id="accept-restore" disabled=busy on:click=move |_| { accept.dispatch(RestoreAccept {}); }>
                {if preview { "Swap in and accept" } else { "Accept" }}
            </button>
            <p class="muted">
                {if preview {
                    "Production stops for about a second: the restored copy takes its place and \
                     becomes live on a new timeline; archiving goes back on. Production's data \
                     directory is kept until you discard it."
                } else {
                    "The restored database becomes live on a new timeline; archiving goes back on. \
                     The data directory you had before stays kept until you discard it."
                }}
            </p>
        </div>
        <div class="action">
            <button id="rollback-restore" disabled=busy on:click=move |_| { rollback.dispatch(RestoreRollback {}); }>
                {if preview { "Discard the preview" } else { "Roll back" }}
            </button>
            <p class="muted">
                {if preview {
                    "The restored copy is stopped and deleted; production, never touched, serves on."
                } else {
                    "The restored copy is deleted and the data directory you had before goes back \
                     in place and starts: as if nothing happened."
                }}
            </p>
        </div>
        <div class="action">
            <button id="retry-restore" disabled=busy on:click=move |_| {
                retry.dispatch(RestoreRetry { target: retry_target.get_untracked(), backup_id: None });
            }>"Retry at"</button>
            <input id="retry-target" type="text" placeholder="2026-11-26 09:29:00+01:00 or before xid 745"
                on:input=move |ev| retry_target.set(event_target_value(&ev))/>
        </div>
        {refusal}
    }
}

/// A preview's banner: production serves, and what it wrote since the preview began is what
/// the swap discards.
fn production_writes_view(w: Option<ProductionWritesView>) -> impl IntoView {
    let words = match w {
        None => "Production keeps serving beside the preview.".to_owned(),
        Some(w) if w.held => format!(
            "Production keeps serving reads and refuses writes since {} (held for the preview): \
             {} rows written since then.",
            utc(w.since),
            w.rows_written
                .map_or_else(|| "unknown".to_owned(), |n| n.to_string())
        ),
        Some(w) => match w.rows_written {
            Some(0) => format!(
                "Production keeps serving; it has written no rows since the preview began ({}).",
                utc(w.since)
            ),
            Some(n) => format!(
                "Production keeps serving and has written {n} rows ({} transactions committed, \
                 reads included) since the preview began ({}): the swap discards them.",
                w.commits.map_or_else(|| "?".to_owned(), |c| c.to_string()),
                utc(w.since)
            ),
            None => "Production keeps serving; its statistics were reset since the preview \
                     began, so what it wrote since is unknown: the swap discards it."
                .to_owned(),
        },
    };
    view! { <p id="production-writes" class="warn">{words}</p> }
}

/// The target as the pages say it: a time in UTC, or the transaction.
fn target_words(r: &RestoreView) -> String {
    r.target_transaction
        .clone()
        .unwrap_or_else(|| utc(r.target))
}

fn query_table(q: QueryView) -> impl IntoView {
    let head = q
        .columns
        .into_iter()
        .map(|c| view! { <th>{c}</th> })
        .collect_view();
    let body = q
        .rows
        .into_iter()
        .map(|row| {
            let cells = row
                .into_iter()
                .map(|v| view! { <td class="mono">{v.unwrap_or_else(|| "NULL".to_owned())}</td> })
                .collect_view();
            view! { <tr>{cells}</tr> }
        })
        .collect_view();
    view! {
        <table id="query-result">
            <thead><tr>{head}</tr></thead>
            <tbody>{body}</tbody>
        </table>
        {q.truncated.then(|| view! { <p class="muted">"More rows than shown."</p> })}
    }
}
