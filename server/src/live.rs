//! What runs beside the pages: the dashboard's server-sent events (one engine read shared by
//! every open page, see [`DashboardFeed`]), `barman check` in the background, and `/metrics`.

use std::convert::Infallible;
use std::time::Duration;

use app::api::live::DashboardFeed;
use axum::extract::Extension;
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::Stream;

/// Where the dashboard's events are served.
pub use app::api::DASHBOARD_EVENTS;
/// How often `barman check` runs in the background.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// The dashboard as a stream of `message` events, each one whole [`app::model::DashboardView`]
/// as JSON; it ends when the server shuts down.
pub async fn dashboard_events(
    Extension(feed): Extension<DashboardFeed>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = feed.subscribe();
    let stream = futures_util::stream::unfold((rx, feed), |(mut rx, feed)| async move {
        loop {
            if feed.is_closed() || rx.changed().await.is_err() {
                return None;
            }
            let snapshot = rx.borrow_and_update().clone();
            if let Some(s) = snapshot {
                return Some((Ok(Event::default().data(&*s.json)), (rx, feed)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// Runs `barman check` every `every`, first soon after start, and reads the table names into the
/// name book (`transactions::names`); a restore being open skips a run.
pub async fn check_in_background(engine: engine::Engine, feed: DashboardFeed, every: Duration) {
    tokio::time::sleep(Duration::from_secs(5)).await;
    loop {
        let checked = engine.barman_check_now().await;
        if checked.is_ok() {
            // Not during a restore (the check refuses then): the names of the tables now, so
            // that a table dropped later is still named in the list of transactions.
            engine.remember_relation_names().await;
        }
        match checked {
            Ok(report) if report.ok() => tracing::debug!("barman check passed"),
            Ok(report) => tracing::warn!(
                failing = ?report.failing().iter().map(|i| &i.name).collect::<Vec<_>>(),
                problem = ?report.result.as_ref().err(),
                "barman check found problems"
            ),
            Err(e) => tracing::debug!(reason = %e, "barman check skipped"),
        }
        feed.refresh_now();
        if feed.is_closed() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// `/metrics`: the dashboard's read in Prometheus' text format.
pub async fn metrics(Extension(engine): Extension<engine::Engine>) -> impl IntoResponse {
    let view = app::api::dashboard(&engine).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&view, chrono::Utc::now()),
    )
}

/// Replicates to the off-site bucket every `offsite.interval_secs` (a new backup reaches the
/// bucket within one interval), when `[offsite]` is configured. A failed run is recorded with
/// its reason for the dashboard and tried again at the next interval; local archiving never
/// waits on it.
pub async fn replicate_in_background(engine: engine::Engine) {
    let Some(every) = engine
        .config()
        .offsite
        .as_ref()
        .map(|o| Duration::from_secs(o.interval_secs))
    else {
        return;
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    loop {
        match engine.offsite_replicate().await {
            Ok(s) if s.in_sync() => tracing::debug!("off-site copy in sync"),
            Ok(s) => tracing::info!(lag = ?s.lag, "off-site copy behind"),
            Err(e) => tracing::warn!(error = %e, "off-site replication failed"),
        }
        tokio::time::sleep(every).await;
    }
}
