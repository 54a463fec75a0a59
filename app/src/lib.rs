//! barkeep's web app: pages and components (rendered on the server, hydrated in the browser)
//! and the server functions, which are thin and call the engine.

pub mod api;
mod clock;
mod dashboard;
mod history_page;
pub mod model;
mod pages;
mod restore_page;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    StaticSegment,
};

/// The HTML document around the app, rendered by the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" type="image/svg+xml" href="/favicon.svg"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    clock::provide_browser_clock();
    view! {
        <Stylesheet id="leptos" href="/pkg/barkeep.css"/>
        <Title text="barkeep"/>
        <Router>
            <header class="topbar">
                <a class="brand" href="/">"barkeep"</a>
                <span class="tagline">"point-in-time recovery for PostgreSQL"</span>
                <nav>
                    <a href="/">"Dashboard"</a>
                    <a href="/restore">"Restore"</a>
                    <a href="/history">"History"</a>
                </nav>
                <pages::Account/>
            </header>
            <main>
                <Routes fallback=|| view! { <p class="error">"Page not found."</p> }>
                    <Route path=StaticSegment("") view=dashboard::Dashboard/>
                    <Route path=StaticSegment("history") view=history_page::HistoryPage/>
                    <Route path=StaticSegment("signin") view=pages::SignIn/>
                    <Route path=StaticSegment("restore") view=restore_page::RestorePage/>
                </Routes>
            </main>
        </Router>
    }
}

/// The wasm entry point: attaches the app to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
