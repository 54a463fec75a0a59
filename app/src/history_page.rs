//! The History page: every restore with its journal (steps, output, how it ended), the data
//! directories restores set aside (operators discard them here, typing the restore's id), and
//! the audit log.

use leptos::prelude::*;

use crate::api::{history, whoami, DiscardKeptDataDir};
use crate::clock::{span, time_or_dash, time_view};
use crate::model::{AuditRow, KeptDataDir, RestoreView, Role};
use crate::pages::error_words;

#[component]
pub fn HistoryPage() -> impl IntoView {
    let discard = ServerAction::<DiscardKeptDataDir>::new();
    // Read again after each discard.
    let read = Resource::new(move || discard.version().get(), |_| history());
    let me = Resource::new(|| (), |_| whoami());
    view! {
        <Transition fallback=|| view! { <p class="muted">"Reading the history…"</p> }>
            <ErrorBoundary fallback=error_words>
                {move || Suspend::new(async move {
                    let operator = me.await.is_ok_and(|w| w.role == Role::Operator);
                    read.await.map(|h| view! {
                        <section class="card" id="restores">
                            <h2>"Restores"</h2>
                            {restores(h.restores)}
                        </section>
                        <section class="card" id="kept">
                            <h2>"Data directories set aside"</h2>
                            {kept(h.kept, h.read_at, operator, discard)}
                        </section>
                        <section class="card" id="audit">
                            <h2>"Audit log"</h2>
                            {audit(h.audit)}
                        </section>
                    })
                })}
            </ErrorBoundary>
        </Transition>
    }
}

fn restores(list: Vec<RestoreView>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="muted">"No restore yet."</p> }.into_any();
    }
    list.into_iter()
        .map(|r| {
            let took = r
                .steps
                .first()
                .zip(r.steps.iter().filter_map(|s| s.finished).max())
                .map(|(first, last)| span(last - first.started));
            let outcome = r.outcome.clone().unwrap_or_else(|| format!("{} now", r.state));
            let class = match r.state.as_str() {
                "closed" if outcome.starts_with("accepted") => "ok",
                "closed" => "warn",
                _ => "warn",
            };
            let steps = r
                .steps
                .iter()
                .map(|s| {
                    let how = match (&s.error, &s.detail, s.finished) {
                        (Some(e), _, _) => format!("failed: {e}"),
                        (None, Some(d), _) => d.clone(),
                        (None, None, Some(f)) => format!("done in {}", span(f - s.started)),
                        (None, None, None) => "did not finish".to_owned(),
                    };
                    view! {
                        <tr>
                            <td>{s.step.clone()}</td>
                            <td>{time_view(s.started)}</td>
                            <td>{how}</td>
                        </tr>
                    }
                })
                .collect_view();
            view! {
                <details class="restore" id=format!("restore-{}", r.restore_id)>
                    <summary>
                        <span class="mono">{r.restore_id.clone()}</span>
                        " to "{time_view(r.target)}
                        <span class=class>{format!(" {outcome}")}</span>
                    </summary>
                    <dl class="facts">
                        <dt>"From backup"</dt><dd class="mono">{r.backup_id.clone()}</dd>
                        <dt>"Took"</dt><dd>{took.unwrap_or_else(|| "—".to_owned())}</dd>
                        <dt>"Set aside in"</dt><dd class="mono">{r.pre_restore_dir.clone()}</dd>
                    </dl>
                    <div class="table-scroll">
                        <table>
                            <thead><tr><th>"Step"</th><th>"Started"</th><th>"How it went"</th></tr></thead>
                            <tbody>{steps}</tbody>
                        </table>
                    </div>
                    <pre class="log">{r.log_tail.join("\n")}</pre>
                </details>
            }
        })
        .collect_view()
        .into_any()
}

fn kept(
    dirs: Vec<KeptDataDir>,
    now: chrono::DateTime<chrono::Utc>,
    operator: bool,
    discard: ServerAction<DiscardKeptDataDir>,
) -> impl IntoView {
    if dirs.is_empty() {
        return view! { <p class="muted" id="kept-none">"None: nothing is kept aside."</p> }
            .into_any();
    }
    let rows = dirs
        .into_iter()
        .map(|d| {
            let confirm = RwSignal::new(String::new());
            let id = d.restore_id.clone();
            let age = d.set_aside_at.map(|t| format!("{} ago", span(now - t)));
            let control = match (operator, d.in_use) {
                (false, _) => None,
                (true, true) => {
                    Some(view! { <td class="muted">"in use by the open restore"</td> }.into_any())
                }
                (true, false) => {
                    let label = format!("Type {id} to discard it");
                    let input_id = format!("discard-{id}");
                    let button_id = format!("discard-button-{id}");
                    let expected = id.clone();
                    let ready = move || confirm.with(|c| c.trim() == expected);
                    Some(
                        view! {
                            <td class="discard">
                                <label class="muted" for=input_id.clone()>{label}</label>
                                <input
                                    id=input_id
                                    type="text"
                                    autocomplete="off"
                                    on:input=move |ev| confirm.set(event_target_value(&ev))
                                />
                                <button
                                    id=button_id
                                    class="danger small"
                                    disabled=move || !ready() || discard.pending().get()
                                    on:click=move |_| {
                                        discard.dispatch(DiscardKeptDataDir {
                                            restore_id: id.clone(),
                                            confirm: confirm.get_untracked(),
                                        });
                                    }
                                >
                                    "Discard for good"
                                </button>
                            </td>
                        }
                        .into_any(),
                    )
                }
            };
            view! {
                <tr>
                    <td class="mono">{d.restore_id}</td>
                    <td class="num">{format!("{:.1} MiB", d.bytes as f64 / 1048576.0)}</td>
                    <td>{time_or_dash(d.set_aside_at)}{age.map(|a| format!(" ({a})"))}</td>
                    <td>{d.restore_outcome}</td>
                    {control}
                </tr>
            }
        })
        .collect_view();
    view! {
        <p class="muted">
            "A restore renames the data directory it replaces instead of deleting it: it stays \
             here, on the same disk, until someone discards it. Discarding deletes it for good."
        </p>
        <div class="table-scroll">
            <table id="kept-list">
                <thead>
                    <tr>
                        <th>"Restore"</th><th class="num">"Size"</th><th>"Set aside"</th>
                        <th>"That restore"</th>{operator.then(|| view! { <th>"Discard"</th> })}
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
        <p class="error" role="alert" id="discard-error">
            {move || discard.value().get().and_then(Result::err).map(|e| e.to_string())}
        </p>
    }
    .into_any()
}

fn audit(rows: Vec<AuditRow>) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="muted">"Nothing yet."</p> }.into_any();
    }
    let rows = rows
        .into_iter()
        .map(|a| {
            let class = if a.outcome == "ok" || a.outcome.starts_with("ok:") {
                ""
            } else {
                "warn"
            };
            view! {
                <tr>
                    <td>{time_view(a.at)}</td>
                    <td>{a.who}</td>
                    <td class="mono">{a.from}</td>
                    <td>{a.what}</td>
                    <td class="mono">{a.target.unwrap_or_default()}</td>
                    <td class=class>{a.outcome}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <div class="table-scroll">
            <table id="audit-log">
                <thead>
                    <tr>
                        <th>"When"</th><th>"Who"</th><th>"From"</th><th>"What"</th>
                        <th>"On"</th><th>"Outcome"</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
        </div>
    }
    .into_any()
}
