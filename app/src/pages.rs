//! The sign-in page, the account in the top bar, and what every page shows for an error.

use leptos::prelude::*;

use leptos_router::hooks::use_query_map;

use crate::api::whoami;
use crate::model::Role;

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
