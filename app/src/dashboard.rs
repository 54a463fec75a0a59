//! The dashboard: PostgreSQL, WAL age, the backups and the recovery window on a time axis, the
//! last `barman check`, the off-site copy (when configured), and the operator's actions. The server renders it from one read; in the
//! browser it then follows the server's event stream (`/live/dashboard`): every open page gets
//! the same read, pushed, without reloading.

use chrono::{DateTime, TimeDelta, Utc};
use leptos::prelude::*;

use crate::api::{
    overview, whoami, BackupNow, BarmanCheckNow, CheckBackup, SwitchWal, VerifyOffsite,
};
use crate::clock::{span, time_or_dash, time_view, utc};
use crate::model::{
    ActionDone, AppError, BackupRow, CatalogView, CheckView, DashboardView, OffsiteListingView,
    OffsiteRun, OffsiteView, PostgresState, PostgresView, Role,
};
use crate::pages::error_words;

/// How fresh something is, drawn green, amber or red.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Good,
    Late,
    Stale,
}

impl Health {
    fn class(self) -> &'static str {
        match self {
            Health::Good => "badge good",
            Health::Late => "badge late",
            Health::Stale => "badge stale",
        }
    }
}

/// `barman cron` runs every minute: a WAL file may wait that long in incoming/.
const CRON_SLACK: i64 = 60;

/// WAL age against archive_timeout: within it (and a minute for `barman cron`) good, within
/// twice it late, beyond that stale. An archive_timeout of 0 (off) counts as 900 s.
pub fn wal_age_health(age: TimeDelta, archive_timeout_secs: i64) -> Health {
    let timeout = if archive_timeout_secs > 0 {
        archive_timeout_secs
    } else {
        900
    };
    let age = age.num_seconds();
    if age <= timeout + CRON_SLACK {
        Health::Good
    } else if age <= 2 * timeout + CRON_SLACK {
        Health::Late
    } else {
        Health::Stale
    }
}

/// The newest usable backup's age against the daily schedule (a day and two hours of slack).
pub fn backup_age_health(age: TimeDelta) -> Health {
    let hours = age.num_hours();
    if hours < 26 {
        Health::Good
    } else if hours < 50 {
        Health::Late
    } else {
        Health::Stale
    }
}

/// Whether the page follows the server's stream (only the browser leaves `Connecting`).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Connecting,
    Live,
    Lost,
}

#[component]
pub fn Dashboard() -> impl IntoView {
    let first = Resource::new(|| (), |_| overview());
    let me = Resource::new(|| (), |_| whoami());
    let live: RwSignal<Option<DashboardView>> = RwSignal::new(None);
    let stream = RwSignal::new(Stream::Connecting);
    #[cfg(feature = "hydrate")]
    follow(live, stream);
    let actions = Actions {
        switch_wal: ServerAction::new(),
        backup: ServerAction::new(),
        check: ServerAction::new(),
        check_backup: ServerAction::new(),
        verify_offsite: ServerAction::new(),
    };
    view! {
        <p id="live-state" class="muted live-state" role="status">
            {move || {
                let read = live.with(|v| v.as_ref().map(|v| v.postgres.checked_at));
                match (stream.get(), read) {
                    (Stream::Live, Some(at)) => format!("Live: read at {} UTC", at.format("%H:%M:%S")),
                    (Stream::Lost, _) => "Live updates interrupted: reconnecting…".to_owned(),
                    _ => "Connecting for live updates…".to_owned(),
                }
            }}
        </p>
        <Transition fallback=|| view! { <p class="muted">"Reading PostgreSQL and Barman…"</p> }>
            <ErrorBoundary fallback=error_words>
                {move || Suspend::new(async move {
                    let first = first.await;
                    let operator = me.await.is_ok_and(|who| who.role == Role::Operator);
                    live.get()
                        .map(Ok)
                        .unwrap_or(first)
                        .map(|view| cards(view, operator, actions))
                })}
            </ErrorBoundary>
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                me.await
                    .ok()
                    .filter(|who| who.role == Role::Operator)
                    .map(|_| actions_card(actions))
            })}
        </Transition>
    }
}

/// The operator's server actions, owned by the page (the cards are drawn again on every read).
#[derive(Clone, Copy)]
struct Actions {
    switch_wal: ServerAction<SwitchWal>,
    backup: ServerAction<BackupNow>,
    check: ServerAction<BarmanCheckNow>,
    check_backup: ServerAction<CheckBackup>,
    verify_offsite: ServerAction<VerifyOffsite>,
}

/// Follows the server's event stream into `live` (the browser reconnects by itself).
#[cfg(feature = "hydrate")]
fn follow(live: RwSignal<Option<DashboardView>>, stream: RwSignal<Stream>) {
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::JsCast;

    let Ok(source) = web_sys::EventSource::new(crate::api::DASHBOARD_EVENTS) else {
        stream.set(Stream::Lost);
        return;
    };
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let view = event
                .data()
                .as_string()
                .and_then(|text| serde_json::from_str::<DashboardView>(&text).ok());
            match view {
                Some(v) => {
                    live.set(Some(v));
                    stream.set(Stream::Live);
                }
                None => stream.set(Stream::Lost),
            }
        });
    let on_error = Closure::<dyn FnMut(web_sys::Event)>::new(move |_: web_sys::Event| {
        stream.set(Stream::Lost);
    });
    source.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    // The browser is one thread: the wrapper only carries these to the cleanup.
    let held = send_wrapper::SendWrapper::new((source, on_message, on_error));
    on_cleanup(move || {
        let (source, _, _) = held.take();
        source.close();
    });
}

fn cards(view: DashboardView, operator: bool, actions: Actions) -> impl IntoView {
    let banner = view.restore_open.clone().map(|r| {
        let which = match r.restore_id {
            Some(id) => format!("{id} ({})", r.state),
            None => "its journal cannot be read (barkeep's log says why)".to_owned(),
        };
        view! {
            <p class="banner" id="restore-open" role="alert">
                {format!("A restore is open: {which}. ")}
                <a href="/restore">"Open the restore page"</a>
                " to follow it; actions wait until it is accepted or rolled back."
            </p>
        }
    });
    let timeout = match &view.postgres.state {
        PostgresState::Up {
            archive_timeout_secs,
            ..
        } => Some(*archive_timeout_secs),
        PostgresState::Down { .. } => None,
    };
    let catalog = match view.catalog {
        Ok(c) => catalog_card(c, timeout, operator, actions).into_any(),
        Err(e) => view! {
            <section class="card" id="backups">
                <h2>"Backups and recovery window"</h2>
                <p class="error">{e.to_string()}</p>
            </section>
        }
        .into_any(),
    };
    let read_at = view.postgres.checked_at;
    let offsite = view
        .offsite
        .map(|o| offsite_card(o, read_at, operator, actions.verify_offsite));
    view! {
        {banner}
        {postgres_card(view.postgres)}
        {catalog}
        {check_card(view.check, view.check_running, operator, actions.check)}
        {offsite}
    }
}

fn postgres_card(view: PostgresView) -> impl IntoView {
    let facts = match view.state {
        PostgresState::Up {
            version,
            in_recovery,
            timeline,
            archived_count,
            last_archived_wal,
            failed_count,
            last_failed_wal,
            last_failed_time,
            archive_timeout_secs,
        } => view! {
            <dt>"State"</dt>
            <dd id="pg-state" class="ok">{if in_recovery { "up, in recovery" } else { "up" }}</dd>
            <dt>"Version"</dt>
            <dd id="pg-version">{format!("PostgreSQL {version}")}</dd>
            <dt>"Timeline"</dt>
            <dd id="pg-timeline">{timeline}</dd>
            <dt>"WAL archived"</dt>
            <dd>
                {format!("{archived_count} files")}
                {last_archived_wal.map(|w| format!(", last {w}"))}
            </dd>
            <dt>"Archive failures"</dt>
            <dd id="archive-failures" class={if failed_count > 0 { "warn" } else { "" }}>
                {failed_count}
                {last_failed_wal.map(|w| format!(", last {w}"))}
                {last_failed_time.map(|t| view! { " at " {time_view(t)} })}
            </dd>
            <dt>"archive_timeout"</dt>
            <dd>{format!("{archive_timeout_secs} s")}</dd>
        }
        .into_any(),
        PostgresState::Down { reason } => view! {
            <dt>"State"</dt>
            <dd id="pg-state" class="error">"down"</dd>
            <dt>"Why"</dt>
            <dd>{reason}</dd>
        }
        .into_any(),
    };
    view! {
        <section class="card" id="postgres">
            <h2>"PostgreSQL"</h2>
            <dl class="facts">
                {facts}
                <dt>"Asked"</dt>
                <dd>{time_view(view.checked_at)}</dd>
            </dl>
        </section>
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "—".to_owned())
}

fn catalog_card(
    view: CatalogView,
    archive_timeout: Option<i64>,
    operator: bool,
    actions: Actions,
) -> impl IntoView {
    let read_at = view.read_at;
    let wal_age = match view.last_wal {
        Some(t) => {
            let age = read_at - t;
            let health = wal_age_health(age, archive_timeout.unwrap_or(900));
            view! {
                <span id="wal-age" class=health.class() data-last-wal=t.to_rfc3339()>
                    {format!("{} ago", span(age))}
                </span>
                <span class="muted">
                    {format!(
                        " (against archive_timeout {} s; an idle database writes no WAL, so \
                         its age grows without risk)",
                        archive_timeout.unwrap_or(900)
                    )}
                </span>
            }
            .into_any()
        }
        None => view! { <span id="wal-age" class="badge stale">"no WAL yet"</span> }.into_any(),
    };
    let newest_backup = view
        .backups
        .iter()
        .filter(|b| b.recoverable)
        .filter_map(|b| b.end)
        .max();
    let backup_age = match newest_backup {
        Some(t) => {
            let age = read_at - t;
            view! {
                <span id="backup-age" class=backup_age_health(age).class()>
                    {format!("{} ago", span(age))}
                </span>
            }
            .into_any()
        }
        None => {
            view! { <span id="backup-age" class="badge stale">"no usable backup"</span> }.into_any()
        }
    };
    let window = match (view.earliest, view.latest) {
        (Some(e), Some(l)) => view! { {time_view(e)}" → "{time_view(l)} }.into_any(),
        (Some(e), None) => view! {
            "from "{time_view(e)}
            {format!(
                "; its end is unknown: {}",
                view.window_problem
                    .clone()
                    .unwrap_or_else(|| "no archived transaction yet".to_owned())
            )}
        }
        .into_any(),
        _ => view! { "empty: no finished backup yet" }.into_any(),
    };
    let axis = recovery_axis(&view, None);
    let pending = view.pending_wal;
    let rows = view
        .backups
        .into_iter()
        .map(|b| backup_row(b, operator, actions.check_backup))
        .collect_view();
    view! {
        <section class="card" id="backups">
            <h2>"Backups and recovery window"</h2>
            <dl class="facts">
                <dt>"Recovery window"</dt>
                <dd id="recovery-window">{window}</dd>
                <dt>"Last WAL reached Barman"</dt>
                <dd>{wal_age}</dd>
                <dt>"Newest usable backup"</dt>
                <dd>{backup_age}</dd>
                <dt>"WAL waiting in incoming/"</dt>
                <dd id="incoming" class={if pending > 2 { "warn" } else { "" }}>
                    {pending}
                    {(pending > 2).then_some(
                        " (barman cron moves them every minute: is it running?)",
                    )}
                </dd>
                <dt>"Files in errors/"</dt>
                <dd class={if view.wal_errors > 0 { "warn" } else { "" }}>{view.wal_errors}</dd>
            </dl>
            {axis}
            <div class="table-scroll">
                <table id="backup-list">
                    <thead>
                        <tr>
                            <th>"Backup"</th>
                            <th>"Began"</th>
                            <th>"Ended"</th>
                            <th class="num">"Size"</th>
                            <th class="num">"Timeline"</th>
                            <th>"Status"</th>
                            {operator.then(|| view! { <th>"Check"</th> })}
                        </tr>
                    </thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
        </section>
    }
}

fn backup_row(b: BackupRow, operator: bool, check: ServerAction<CheckBackup>) -> impl IntoView {
    let class = if b.recoverable { "" } else { "muted" };
    let id = b.id.clone();
    let button = operator.then(|| {
        let label = format!("Check backup {id}");
        view! {
            <td>
                <button
                    class="small"
                    aria-label=label
                    disabled=move || check.pending().get()
                    on:click=move |_| { check.dispatch(CheckBackup { backup_id: id.clone() }); }
                >
                    "check-backup"
                </button>
            </td>
        }
    });
    view! {
        <tr class=class>
            <td class="mono">{b.id}</td>
            <td>{time_or_dash(b.begin)}</td>
            <td>{time_or_dash(b.end)}</td>
            <td class="num">{mib(b.size_bytes)}</td>
            <td class="num">{b.timeline.map(|t| t.to_string()).unwrap_or_default()}</td>
            <td>{b.status}</td>
            {button}
        </tr>
    }
}

/// The recovery window on a time axis, from the first backup to now: what can be restored,
/// what cannot (before the oldest usable backup ended; after the last archived transaction),
/// and each backup as a mark. Every part says what it is when pointed at (SVG titles).
/// With `pick`, a click on the axis picks the time under the pointer (the restore page).
pub(crate) fn recovery_axis(
    view: &CatalogView,
    pick: Option<Callback<DateTime<Utc>>>,
) -> impl IntoView {
    const W: f64 = 1000.0;
    let now = view.read_at;
    let start = view
        .backups
        .iter()
        .filter_map(|b| b.begin.or(b.end))
        .chain(view.earliest)
        .min()?;
    if start >= now {
        return None;
    }
    let total = (now - start).num_milliseconds() as f64;
    let x = move |t: DateTime<Utc>| {
        ((t.max(start).min(now) - start).num_milliseconds() as f64 / total * W).clamp(0.0, W)
    };
    let bar = |class: &'static str, from: f64, to: f64, title: String| {
        (to > from).then(|| {
            view! {
                <rect class=class x=format!("{from:.1}") y="14" width=format!("{:.1}", to - from) height="16">
                    <title>{title}</title>
                </rect>
            }
        })
    };
    let (span_from, span_to) = match (view.earliest, view.latest) {
        (Some(e), Some(l)) if l > e => (x(e), x(l)),
        (Some(e), _) => (x(e), x(e)),
        _ => (W, W),
    };
    let restorable = view
        .earliest
        .zip(view.latest)
        .map(|(e, l)| format!("restorable: {} to {}", utc(e), utc(l)));
    let marks = view
        .backups
        .iter()
        .filter_map(|b| {
            let end = b.end?;
            let class = if b.recoverable {
                "axis-backup"
            } else {
                "axis-backup failed"
            };
            let at = format!("{:.1}", x(end));
            Some(view! {
                <g class=class>
                    <line x1=at.clone() x2=at.clone() y1="6" y2="38"></line>
                    <circle cx=at r="4" cy="6"></circle>
                    <title>{format!("backup {} ({}) ended {}", b.id, b.status, utc(end))}</title>
                </g>
            })
        })
        .collect_view();
    Some(view! {
        <figure class=if pick.is_some() { "axis pickable" } else { "axis" } id="recovery-axis">
            <svg viewBox="0 0 1000 56" preserveAspectRatio="none" role="img"
                aria-label="The recovery window on a time axis"
                on:click=move |ev| {
                    if let (Some(pick), Some(f)) = (pick, click_fraction(&ev)) {
                        pick.run(start + TimeDelta::milliseconds((total * f) as i64));
                    }
                }>
                {bar("axis-gap", 0.0, span_from, "not restorable: before the oldest usable backup ended".to_owned())}
                {bar("axis-span", span_from, span_to, restorable.unwrap_or_default())}
                {bar(
                    "axis-tail",
                    span_to,
                    W,
                    "not restorable yet: WAL written after the last archived transaction \
                     (archived within archive_timeout, or at once with Switch WAL now)"
                        .to_owned(),
                )}
                {marks}
            </svg>
            <figcaption class="axis-labels">
                <span>{utc(start)}</span>
                <span class="legend">
                    <i class="swatch span"></i>"restorable "
                    <i class="swatch tail"></i>"not yet archived "
                    <i class="swatch gap"></i>"before the oldest backup "
                    <i class="swatch backup"></i>"backup"
                </span>
                <span>"now"</span>
            </figcaption>
        </figure>
    })
}

/// Where a click fell across the element it was attached to, from 0 (left) to 1 (right).
#[cfg(feature = "hydrate")]
fn click_fraction(ev: &leptos::ev::MouseEvent) -> Option<f64> {
    use wasm_bindgen::JsCast;
    let el: web_sys::Element = ev.current_target()?.dyn_into().ok()?;
    let r = el.get_bounding_client_rect();
    (r.width() > 0.0).then(|| ((f64::from(ev.client_x()) - r.left()) / r.width()).clamp(0.0, 1.0))
}

#[cfg(not(feature = "hydrate"))]
fn click_fraction(_: &leptos::ev::MouseEvent) -> Option<f64> {
    None
}

fn check_card(
    check: Option<CheckView>,
    running: bool,
    operator: bool,
    action: ServerAction<BarmanCheckNow>,
) -> impl IntoView {
    let result = match check {
        None => {
            view! { <p class="muted" id="check-result">"No barman check has finished yet."</p> }
                .into_any()
        }
        Some(c) => {
            let summary = if c.ok {
                view! { <span class="badge good">{format!("all {} checks passed", c.passed)}</span> }
                    .into_any()
            } else if let Some(p) = c.problem.clone() {
                view! { <span class="badge stale">{format!("barman could not run: {p}")}</span> }
                    .into_any()
            } else {
                view! {
                    <span class="badge stale">
                        {format!("{} failed, {} passed", c.failing.len(), c.passed)}
                    </span>
                }
                .into_any()
            };
            let failing = c
                .failing
                .into_iter()
                .map(|l| {
                    let hint = if l.hint.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", l.hint)
                    };
                    view! { <li><strong>{l.name}</strong>{hint}</li> }
                })
                .collect_view();
            view! {
                <p id="check-result">{summary}" finished "{time_view(c.finished)}</p>
                <ul class="failing" id="check-failing">{failing}</ul>
            }
            .into_any()
        }
    };
    view! {
        <section class="card" id="barman-check">
            <h2>"barman check"</h2>
            {result}
            {running.then(|| view! { <p class="muted">"A check is running now…"</p> })}
            <p class="muted">"barkeep runs it every 5 minutes (not while a restore is open)."</p>
            {operator.then(|| view! {
                <button
                    id="run-check"
                    on:click=move |_| { action.dispatch(BarmanCheckNow {}); }
                    disabled=move || action.pending().get()
                >
                    "Run barman check now"
                </button>
                <p id="run-check-result" role="status">
                    {move || action.value().get().map(|r| match r {
                        Ok(c) => format!(
                            "Checked at {} UTC: {}",
                            c.finished.format("%H:%M:%S"),
                            if c.ok { "every check passed" } else { "problems found, listed above" }
                        ),
                        Err(e) => e.to_string(),
                    })}
                </p>
            })}
        </section>
    }
}

/// `1 backup`, `2 backups`.
fn count(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The off-site copy as the last replication run left it (the page never reads the bucket
/// itself), and for operators the bucket listed on demand ("Verify off-site copy").
fn offsite_card(
    view: OffsiteView,
    read_at: DateTime<Utc>,
    operator: bool,
    verify: ServerAction<VerifyOffsite>,
) -> impl IntoView {
    let every = view.interval_secs;
    let (state, facts, error) = match view.last_run {
        None => (
            view! {
                <span class="badge late">"no run yet"</span>
                <span class="muted">
                    {format!(" barkeep replicates every {every} s; the first run has not finished")}
                </span>
            }
            .into_any(),
            None,
            None,
        ),
        Some(run) => {
            let state = if run.error.is_some() {
                view! { <span class=Health::Stale.class()>"last run failed"</span> }.into_any()
            } else if run.in_sync {
                view! {
                    <span class=Health::Good.class()>"in sync"</span>
                    <span class="muted">" at the last run: the bucket holds every WAL file and backup"</span>
                }
                .into_any()
            } else {
                view! {
                    <span class=Health::Late.class()>"behind"</span>
                    <span class="muted">{format!(" the next run copies what is missing (every {every} s)")}</span>
                }
                .into_any()
            };
            let error = run.error.clone();
            (state, Some(offsite_run_facts(run, read_at)), error)
        }
    };
    let error = error.map(|e| {
        view! {
            <p class="error" id="offsite-error" role="alert">
                {format!("The last replication run failed: {e}")}
            </p>
            <p class="muted">
                {format!(
                    "Local archiving and backups go on without the bucket. barkeep tries again \
                     every {every} s, and the bucket catches up at the first run that succeeds; \
                     until then the lag above grows."
                )}
            </p>
        }
    });
    view! {
        <section class="card" id="offsite">
            <h2>"Off-site copy"</h2>
            <dl class="facts">
                <dt>"Bucket"</dt>
                <dd id="offsite-bucket" class="mono">{view.bucket_url}</dd>
                <dt>"Endpoint"</dt>
                <dd id="offsite-endpoint" class="mono">{view.endpoint_url}</dd>
                <dt>"State"</dt>
                <dd id="offsite-state">{state}</dd>
                {facts}
            </dl>
            {error}
            {operator.then(|| verify_offsite(verify))}
        </section>
    }
}

/// What the last replication run found and did.
fn offsite_run_facts(run: OffsiteRun, read_at: DateTime<Utc>) -> impl IntoView {
    let copied = match (run.copied_wals, run.copied_backups.as_slice()) {
        (0, []) if run.error.is_some() => String::new(),
        (0, []) => "; nothing to copy".to_owned(),
        (n, []) => format!("; copied {}", count(n, "WAL file")),
        (n, ids) => format!(
            "; copied {} and backup {}",
            count(n, "WAL file"),
            ids.join(", ")
        ),
    };
    // A failed run may have copied some before it stopped.
    let copied = if run.error.is_some() && !copied.is_empty() {
        format!("{copied} before it stopped")
    } else {
        copied
    };
    let lag = match (run.missing_segments, run.lag_seconds) {
        (Some(segments), Some(secs)) => {
            let others = run.missing_wals.map_or(0, |w| w.saturating_sub(segments));
            let mut words = format!("{}, {secs} s", count(segments, "WAL segment"));
            if secs >= 120 {
                words.push_str(&format!(" ({})", span(TimeDelta::seconds(secs))));
            }
            if others > 0 {
                words.push_str(&format!(", and {}", count(others, "other WAL file")));
            }
            let behind = segments > 0 || secs > 0 || others > 0;
            view! {
                <span class=if behind { "warn" } else { "" }>{words}</span>
                {behind.then(|| view! {
                    <span class="muted">" of archive a restore from the bucket alone could not replay yet"</span>
                })}
            }
            .into_any()
        }
        // The run stopped before it compared the bucket with the catalog (its error says why).
        _ => view! { <span class="muted">"unknown: the last run stopped before it could compare"</span> }
            .into_any(),
    };
    let missing_backups = run.missing_backups;
    view! {
        <dt>"Last run"</dt>
        <dd id="offsite-last-run">
            {time_view(run.finished)}
            {format!(" ({} ago){copied}", span(read_at - run.finished))}
        </dd>
        <dt>"Lag"</dt>
        <dd id="offsite-lag">{lag}</dd>
        <dt>"Backups missing"</dt>
        <dd
            id="offsite-missing-backups"
            class={if missing_backups.unwrap_or(0) > 0 { "warn" } else { "" }}
        >
            {missing_backups.map_or_else(|| "unknown".to_owned(), |n| n.to_string())}
        </dd>
        <dt>"Newest off-site backup"</dt>
        <dd id="offsite-newest-backup" class="mono">
            {run.newest_offsite_backup.unwrap_or_else(|| "none yet".to_owned())}
        </dd>
    }
}

/// "Verify off-site copy": the bucket listed now, from the bucket itself.
fn verify_offsite(verify: ServerAction<VerifyOffsite>) -> impl IntoView {
    view! {
        <div class="action">
            <button
                id="verify-offsite"
                on:click=move |_| { verify.dispatch(VerifyOffsite {}); }
                disabled=move || verify.pending().get()
            >
                {move || if verify.pending().get() { "Listing the bucket…" } else { "Verify off-site copy" }}
            </button>
            <p class="muted">
                "Lists what the bucket holds now, read from the bucket itself: its backups and \
                 WAL files."
            </p>
        </div>
        <div id="verify-offsite-result" role="status">
            {move || verify.value().get().map(offsite_listing)}
        </div>
    }
}

fn offsite_listing(listing: Result<OffsiteListingView, AppError>) -> impl IntoView {
    let l = match listing {
        Ok(l) => l,
        Err(e) => {
            return view! {
                <p class="error">{format!("The bucket could not be listed: {e}")}</p>
            }
            .into_any()
        }
    };
    let newest = l
        .newest_wal
        .map(|w| format!(", the newest {w}"))
        .unwrap_or_default();
    let summary = format!(
        "Listed at {} UTC: {} and {}{newest}.",
        l.listed_at.format("%H:%M:%S"),
        count(l.backups.len(), "backup"),
        count(l.wal_files, "WAL file"),
    );
    let rows = l
        .backups
        .into_iter()
        .rev()
        .map(|b| {
            let wal = match (b.begin_wal, b.end_wal) {
                (Some(from), Some(to)) if from == to => from,
                (Some(from), Some(to)) => format!("{from} → {to}"),
                (Some(w), None) | (None, Some(w)) => w,
                (None, None) => "—".to_owned(),
            };
            view! {
                <tr>
                    <td class="mono">{b.id}</td>
                    <td>{b.status}</td>
                    <td>{time_or_dash(b.end)}</td>
                    <td class="mono">{wal}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <p id="verify-offsite-summary">{summary}</p>
        <div class="table-scroll">
            <table id="offsite-backup-list">
                <thead>
                    <tr>
                        <th>"Backup in the bucket"</th>
                        <th>"Status"</th>
                        <th>"Ended"</th>
                        <th>"WAL it needs"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}

/// The operator's actions on the live server, each with what it does.
fn actions_card(actions: Actions) -> impl IntoView {
    fn words(r: Option<Result<ActionDone, AppError>>) -> Option<String> {
        r.map(|r| match r {
            Ok(done) => format!(
                "Done at {} UTC, {}",
                done.at.format("%H:%M:%S"),
                done.message
            ),
            Err(e) => e.to_string(),
        })
    }
    let Actions {
        switch_wal,
        backup,
        check_backup,
        ..
    } = actions;
    view! {
        <section class="card" id="actions">
            <h2>"Actions"</h2>
            <div class="action">
                <button
                    id="switch-wal"
                    on:click=move |_| { switch_wal.dispatch(SwitchWal {}); }
                    disabled=move || switch_wal.pending().get()
                >
                    "Switch WAL now"
                </button>
                <p class="muted">
                    "Closes the current WAL segment and waits until Barman has it: the last \
                     transactions become restorable now instead of within archive_timeout."
                </p>
                <p id="switch-wal-result" role="status">{move || words(switch_wal.value().get())}</p>
            </div>
            <div class="action">
                <button
                    id="backup-now"
                    on:click=move |_| { backup.dispatch(BackupNow {}); }
                    disabled=move || backup.pending().get()
                >
                    {move || if backup.pending().get() { "Backing up…" } else { "Back up now" }}
                </button>
                <p class="muted">
                    "Takes a new base backup with Barman and waits for it (minutes for a large \
                     database). Refused while a restore is open."
                </p>
                <p id="backup-result" role="status">{move || words(backup.value().get())}</p>
            </div>
            <div class="action">
                <span class="muted">"check-backup"</span>
                <p class="muted">
                    "Each backup's row has a check-backup button: Barman verifies that every WAL \
                     file the backup needs is archived, and marks it FAILED when one is missing."
                </p>
                <p id="check-backup-result" role="status">
                    {move || {
                        let id = check_backup.input().get().map(|i| i.backup_id);
                        words(check_backup.value().get()).map(|w| match id {
                            Some(id) => format!("{id}: {w}"),
                            None => w,
                        })
                    }}
                </p>
            </div>
            <p class="muted">
                "Data directories set aside by past restores are on the "
                <a href="/history">"History"</a>" page, where they can be discarded."
            </p>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_age_is_measured_against_archive_timeout() {
        let s = TimeDelta::seconds;
        assert_eq!(wal_age_health(s(10), 900), Health::Good);
        assert_eq!(wal_age_health(s(960), 900), Health::Good);
        assert_eq!(wal_age_health(s(961), 900), Health::Late);
        assert_eq!(wal_age_health(s(1860), 900), Health::Late);
        assert_eq!(wal_age_health(s(1861), 900), Health::Stale);
        // archive_timeout off: judged as if it were 900 s.
        assert_eq!(wal_age_health(s(961), 0), Health::Late);
        assert_eq!(wal_age_health(s(100), 60), Health::Good);
        assert_eq!(wal_age_health(s(121), 60), Health::Late);
    }

    #[test]
    fn backup_age_is_measured_against_the_daily_backup() {
        let h = TimeDelta::hours;
        assert_eq!(backup_age_health(h(3)), Health::Good);
        assert_eq!(backup_age_health(h(26)), Health::Late);
        assert_eq!(backup_age_health(h(50)), Health::Stale);
    }
}
