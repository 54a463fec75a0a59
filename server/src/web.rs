//! The HTTP side: Leptos routes, server functions, the static site.

use anyhow::Context;
use app::api::ServerContext;
use app::{shell, App};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

pub async fn serve(engine: engine::restore::Engine) -> anyhow::Result<()> {
    // A restore a crash interrupted is finished or undone before anything else.
    match engine.resume().await {
        Ok(Some(status)) => tracing::warn!(
            restore = %status.restore_id,
            state = ?status.state,
            outcome = ?status.outcome,
            "an interrupted restore was taken care of"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "an interrupted restore could not be resumed or rolled back")
        }
    }

    let mut leptos_options = get_configuration(None)
        .context("cannot read the Leptos site settings (LEPTOS_SITE_ROOT, LEPTOS_OUTPUT_NAME)")?
        .leptos_options;
    // barkeep's own file decides where it listens.
    let addr = engine.config().listen;
    leptos_options.site_addr = addr;

    let context = ServerContext { engine };
    let routes = generate_route_list(App);
    let router = Router::new()
        .leptos_routes_with_context(
            &leptos_options,
            routes,
            move || provide_context(context.clone()),
            {
                let leptos_options = leptos_options.clone();
                move || shell(leptos_options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(leptos_options)
        .layer(CompressionLayer::new())
        .layer(TraceLayer::new_for_http());

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!("barkeep listening on http://{addr}");
    axum::serve(listener, router.into_make_service())
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server stopped with an error")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}
