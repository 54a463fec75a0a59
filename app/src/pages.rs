//! The pages.

use leptos::prelude::*;

use crate::api::{postgres_status, PostgresStatus};
use crate::model::{PostgresState, PostgresView};

/// The dashboard: the state of PostgreSQL, read live from the server.
#[component]
pub fn Dashboard() -> impl IntoView {
    let refresh = ServerAction::<PostgresStatus>::new();
    // Loaded during server rendering; re-run whenever the button's action finishes.
    let status = Resource::new(move || refresh.version().get(), |_| postgres_status());

    view! {
        <section class="card" id="postgres">
            <h2>"PostgreSQL"</h2>
            <Suspense fallback=|| view! { <p class="muted">"Asking PostgreSQL…"</p> }>
                {move || Suspend::new(async move {
                    match status.await {
                        Ok(view) => postgres_card(view).into_any(),
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Suspense>
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
