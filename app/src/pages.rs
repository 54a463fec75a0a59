//! The pages.

use leptos::prelude::*;

use leptos_router::hooks::use_query_map;

use crate::api::{overview, whoami, BackupNow, PostgresStatus, SwitchWal};
use crate::model::{ActionDone, AppError, CatalogView, PostgresState, PostgresView, Role};

/// The dashboard: PostgreSQL and Barman's catalog (backups, recovery window, WAL), read live.
#[component]
pub fn Dashboard() -> impl IntoView {
    let refresh = ServerAction::<PostgresStatus>::new();
    let switch_wal = ServerAction::<SwitchWal>::new();
    let backup = ServerAction::<BackupNow>::new();
    // One call for the whole page (the engine's overview), loaded during server rendering and
    // re-run whenever a button's action finishes.
    let dashboard = Resource::new(
        move || {
            (
                refresh.version().get(),
                switch_wal.version().get(),
                backup.version().get(),
            )
        },
        |_| overview(),
    );
    let me = Resource::new(|| (), |_| whoami());

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
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                me.await
                    .ok()
                    .filter(|who| who.role == Role::Operator)
                    .map(|_| actions_card(switch_wal, backup))
            })}
        </Transition>
    }
}

/// The operator's actions on the live server, each with what it does.
fn actions_card(
    switch_wal: ServerAction<SwitchWal>,
    backup: ServerAction<BackupNow>,
) -> impl IntoView {
    let words = |r: Option<Result<ActionDone, AppError>>| {
        r.map(|r| match r {
            Ok(done) => format!(
                "Done at {} UTC, {}",
                done.at.format("%H:%M:%S"),
                done.message
            ),
            Err(e) => e.to_string(),
        })
    };
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
                    "Back up now"
                </button>
                <p class="muted">
                    "Takes a new base backup with Barman and waits for it (minutes for a large \
                     database). Refused while a restore is open."
                </p>
                <p id="backup-result" role="status">{move || words(backup.value().get())}</p>
            </div>
        </section>
    }
}

/// The sign-in page: a plain form (it works before the wasm has loaded, and without it).
#[component]
pub fn SignIn() -> impl IntoView {
    let query = use_query_map();
    let problem = move || {
        let q = query.read();
        if q.get("failed").is_some() {
            Some("That name and password do not match a user of barkeep.")
        } else if q.get("problem").is_some() {
            Some(
                "barkeep cannot read its users file. Whoever runs barkeep creates a user with \
                 `barkeep user add NAME --role operator`.",
            )
        } else {
            None
        }
    };
    view! {
        <section class="card signin" id="signin">
            <h2>"Sign in"</h2>
            {move || problem().map(|p| view! { <p class="error" role="alert">{p}</p> })}
            <form method="post" action="/auth/signin">
                <label for="name">"Name"</label>
                <input
                    id="name"
                    name="name"
                    type="text"
                    autocomplete="username"
                    required
                    maxlength="64"
                    autofocus
                />
                <label for="password">"Password"</label>
                <input
                    id="password"
                    name="password"
                    type="password"
                    autocomplete="current-password"
                    required
                    maxlength="1024"
                />
                <button type="submit">"Sign in"</button>
            </form>
        </section>
    }
}

/// Who is signed in, and the way out; nothing on the sign-in page.
#[component]
pub fn Account() -> impl IntoView {
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                me.await
                    .ok()
                    .map(|who| {
                        let role = match who.role {
                            Role::Operator => "operator",
                            Role::Viewer => "viewer",
                        };
                        view! {
                            <form class="account" method="post" action="/auth/signout">
                                <span id="signed-in-as">{format!("{} ({role})", who.name)}</span>
                                <button type="submit">"Sign out"</button>
                            </form>
                        }
                    })
            })}
        </Transition>
    }
}

/// What an [`AppError`](crate::model::AppError) under an ErrorBoundary shows: its words.
pub(crate) fn error_words(errors: ArcRwSignal<Errors>) -> impl IntoView {
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
