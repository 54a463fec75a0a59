//! The pages.

use leptos::prelude::*;

use crate::api::{overview, PostgresStatus};
use crate::model::{CatalogView, PostgresState, PostgresView};

/// The dashboard: PostgreSQL and Barman's catalog (backups, recovery window, WAL), read live.
#[component]
pub fn Dashboard() -> impl IntoView {
    let refresh = ServerAction::<PostgresStatus>::new();
    // One call for the whole page (the engine's overview), loaded during server rendering and
    // re-run whenever the button's action finishes.
    let dashboard = Resource::new(move || refresh.version().get(), |_| overview());

    view! {
        <section class="card" id="postgres">
            <h2>"PostgreSQL"</h2>
            <Transition fallback=|| view! { <p class="muted">"Asking PostgreSQL…"</p> }>
                <ErrorBoundary fallback=error_words>
                    {move || Suspend::new(async move {
                        dashboard.await.map(|view| postgres_card(view.postgres))
                    })}
                </ErrorBoundary>
            </Transition>
            <button
                id="refresh-postgres"
                on:click=move |_| { refresh.dispatch(PostgresStatus {}); }
                disabled=move || refresh.pending().get()
            >
                "Check again"
            </button>
            <p id="refresh-result" class="muted">
                {move || refresh.value().get().map(|r| match r {
                    Ok(v) => format!("Checked again at {} UTC", v.checked_at.format("%H:%M:%S")),
                    Err(e) => format!("The check failed: {e}"),
                })}
            </p>
        </section>
        <section class="card" id="backups">
            <h2>"Backups and recovery window"</h2>
            <Transition fallback=|| view! { <p class="muted">"Reading Barman's catalog…"</p> }>
                <ErrorBoundary fallback=error_words>
                    {move || Suspend::new(async move {
                        dashboard.await.and_then(|view| view.catalog).map(catalog_card)
                    })}
                </ErrorBoundary>
            </Transition>
        </section>
    }
}

/// What an [`AppError`](crate::model::AppError) under an ErrorBoundary shows: its words.
fn error_words(errors: ArcRwSignal<Errors>) -> impl IntoView {
    view! {
        <p class="error">
            {move || {
                errors
                    .get()
                    .into_iter()
                    .map(|(_, e)| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            }}
        </p>
    }
}

fn postgres_card(view: PostgresView) -> impl IntoView {
    let checked = view.checked_at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    match view.state {
        PostgresState::Up {
            version,
            in_recovery,
            timeline,
            archived_count,
            last_archived_wal,
            failed_count,
        } => view! {
            <dl class="facts">
                <dt>"State"</dt>
                <dd class="ok">{if in_recovery { "up, in recovery" } else { "up" }}</dd>
                <dt>"Version"</dt>
                <dd id="pg-version">{format!("PostgreSQL {version}")}</dd>
                <dt>"Timeline"</dt>
                <dd>{timeline}</dd>
                <dt>"WAL archived"</dt>
                <dd>
                    {format!("{archived_count} files")}
                    {last_archived_wal.map(|w| format!(", last file {w}"))}
                </dd>
                <dt>"Archive failures"</dt>
                <dd class={if failed_count > 0 { "warn" } else { "" }}>{failed_count}</dd>
                <dt>"Checked"</dt>
                <dd>{checked}</dd>
            </dl>
        }
        .into_any(),
        PostgresState::Down { reason } => view! {
            <dl class="facts">
                <dt>"State"</dt>
                <dd class="error">"down"</dd>
                <dt>"Why"</dt>
                <dd>{reason}</dd>
                <dt>"Checked"</dt>
                <dd>{checked}</dd>
            </dl>
        }
        .into_any(),
    }
}

fn utc(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".to_owned())
}

fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "—".to_owned())
}

fn catalog_card(view: CatalogView) -> impl IntoView {
    let wal_age = view
        .last_wal
        .map(|t| (view.read_at - t).num_seconds().max(0))
        .map(|s| format!("{s} s ago"))
        .unwrap_or_else(|| "no WAL yet".to_owned());
    let window = match (view.earliest, view.latest) {
        (Some(e), Some(l)) => format!("{} → {}", utc(Some(e)), utc(Some(l))),
        (Some(e), None) if view.window_problem.is_some() => format!(
            "from {}; its end is unknown: {}",
            utc(Some(e)),
            view.window_problem.unwrap_or_default()
        ),
        (Some(e), None) => format!("from {} (no archived transaction yet)", utc(Some(e))),
        _ => "empty: no finished backup yet".to_owned(),
    };
    let rows = view
        .backups
        .into_iter()
        .map(|b| {
            let class = if b.recoverable { "" } else { "muted" };
            view! {
                <tr class=class>
                    <td class="mono">{b.id}</td>
                    <td>{utc(b.begin)}</td>
                    <td>{utc(b.end)}</td>
                    <td class="num">{mib(b.size_bytes)}</td>
                    <td class="num">{b.timeline.map(|t| t.to_string()).unwrap_or_default()}</td>
                    <td>{b.status}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <dl class="facts">
            <dt>"Recovery window"</dt>
            <dd id="recovery-window">{window}</dd>
            <dt>"Last WAL reached Barman"</dt>
            <dd>{wal_age}</dd>
            <dt>"WAL waiting in incoming/"</dt>
            <dd class={if view.pending_wal > 2 { "warn" } else { "" }}>{view.pending_wal}</dd>
            <dt>"WAL errors"</dt>
            <dd class={if view.wal_errors > 0 { "warn" } else { "" }}>{view.wal_errors}</dd>
        </dl>
        <table id="backup-list">
            <thead>
                <tr>
                    <th>"Backup"</th>
                    <th>"Began"</th>
                    <th>"Ended"</th>
                    <th class="num">"Size"</th>
                    <th class="num">"Timeline"</th>
                    <th>"Status"</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
