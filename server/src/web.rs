//! The HTTP side: Leptos routes, server functions, the static site, and the bounds that keep a
//! burst of requests or a hostile client from exhausting barkeep:
//! - a header read timeout in hyper's HTTP/1 connection ([`HEADER_READ_TIMEOUT`]). This, not a
//!   request timeout, is what cuts a slow-loris client: tower layers see a request only after
//!   hyper has parsed all of its head, so a client that trickles header bytes never reaches them
//!   and would hold its connection (a task and a file descriptor) forever. `axum::serve` does not
//!   expose the setting (and sets no timer, so hyper's default 30 s never applies), hence the
//!   accept loop here;
//! - at most [`MAX_CONNECTIONS`] connections: beyond that, new ones wait in the kernel's backlog;
//! - a timeout for each request as a whole, body read included ([`REQUEST_TIMEOUT`], 503);
//! - a request body limit ([`BODY_LIMIT`], 413 with a message);
//! - at most [`MAX_IN_FLIGHT`] requests handled at once (one semaphore for the whole router);
//!   the others wait for a slot within their request timeout;
//! - a server function's error answers with the status its [`AppError`] names (a client error is
//!   a 4xx with a sentence, never a 500 with internal text).
//!
//! Who may use it (sessions, sign-in, same-origin checks) is in [`crate::auth`]; every answer
//! carries nosniff, no-referrer, frame denial and a Content-Security-Policy (pages: scripts only
//! from barkeep itself or with the nonce Leptos puts on its hydration script, no inline styles).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use app::api::ServerContext;
use app::model::AppError;
use app::{shell, App};
use axum::body::Body;
use axum::extract::Extension;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{self, Auth, ClientAddr};
use crate::live;
use app::api::live::DashboardFeed;

/// A client must send a request's whole head within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A request must be answered within this, its body read included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest request body (server function arguments and forms are small).
pub const BODY_LIMIT: usize = 64 * 1024;
/// Requests handled at once.
pub const MAX_IN_FLIGHT: usize = 64;
/// Open connections at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a shutdown waits for open connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The limits [`serve_with`] applies (tests use shorter ones).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub max_in_flight: usize,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            body_limit: BODY_LIMIT,
            max_in_flight: MAX_IN_FLIGHT,
            max_connections: MAX_CONNECTIONS,
        }
    }
}

pub async fn serve(engine: engine::Engine) -> anyhow::Result<()> {
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

    let users_file = engine.config().users_file();
    if !users_file.exists() {
        tracing::warn!(
            path = %users_file.display(),
            "there is no users file, so nobody can sign in: create one with `barkeep user add NAME --role operator`"
        );
    }
    let mut auth = Auth::new(users_file, engine::audit::AuditLog::new(engine.state_dir()));
    if let Some(path) = &engine.config().metrics_token_file {
        auth = auth.with_metrics_token_file(path)?;
    }
    let auth = Arc::new(auth);
    let secure_cookie = engine.config().secure_cookie;
    let feed = DashboardFeed::start(engine.clone(), app::api::live::INTERVAL);
    tokio::spawn(live::check_in_background(
        engine.clone(),
        feed.clone(),
        live::CHECK_INTERVAL,
    ));
    tokio::spawn(live::replicate_in_background(engine.clone()));
    let context = ServerContext {
        engine: engine.clone(),
        feed: feed.clone(),
    };
    let routes = generate_route_list(App);
    let router = Router::new()
        .route(auth::SIGN_IN_FORM, post(auth::sign_in))
        .route(auth::SIGN_OUT_FORM, post(auth::sign_out))
        .route("/healthz", get(|| async { "ok" }))
        .route(live::DASHBOARD_EVENTS, get(live::dashboard_events))
        .route(auth::METRICS_PATH, get(live::metrics))
        .layer(Extension(feed.clone()))
        .layer(Extension(engine))
        .leptos_routes_with_context(
            &leptos_options,
            routes,
            move || {
                provide_context(context.clone());
                page_security_policy();
            },
            {
                let leptos_options = leptos_options.clone();
                move || shell(leptos_options.clone())
            },
        )
        .fallback(leptos_axum::file_and_error_handler(shell))
        .with_state(leptos_options);
    let router = guarded(router, auth, secure_cookie);

    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!("barkeep listening on http://{addr}");
    let shutdown = async move {
        shutdown_signal().await;
        // Ends the dashboards' event streams, which would otherwise hold the shutdown open.
        feed.close();
    };
    serve_with(listener, router, Limits::default(), shutdown).await;
    Ok(())
}

/// What the router answers, read from the same sources it is built from: the Leptos pages,
/// the registered server functions, and the routes of this module.
pub fn route_table() -> serde_json::Value {
    let pages: Vec<String> = generate_route_list(App)
        .iter()
        .map(|r| r.path().to_owned())
        .collect();
    let mut server_functions: Vec<serde_json::Value> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, method)| serde_json::json!({ "path": path, "method": method.as_str() }))
        .collect();
    server_functions.sort_by_key(|v| v["path"].as_str().map(str::to_owned));
    serde_json::json!({
        "pages": pages,
        "server_functions": server_functions,
        "forms": [auth::SIGN_IN_FORM, auth::SIGN_OUT_FORM],
        "streams": [live::DASHBOARD_EVENTS],
        "metrics": auth::METRICS_PATH,
        "public": ["/healthz"],
    })
}

/// `router` behind sign-in ([`crate::auth`]) and the security headers. Outermost last: the
/// headers, the same-origin check, the session, then who is signed in.
pub fn guarded(router: Router, auth: Arc<Auth>, secure_cookie: bool) -> Router {
    let header =
        |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    router
        .layer(axum::middleware::from_fn(auth::require_signed_in))
        .layer(Extension(auth))
        .layer(auth::session_layer(secure_cookie))
        .layer(axum::middleware::from_fn(auth::same_origin_only))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::REFERRER_POLICY, "no-referrer"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        // Pages set their own (with the nonce); everything else runs nothing.
        .layer(header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ))
}

/// A page's Content-Security-Policy: scripts from barkeep itself or carrying this response's
/// nonce (Leptos puts it on its hydration script), the wasm compiled, styles only from the
/// stylesheet, no frames, forms only to barkeep.
fn page_security_policy() {
    let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    match HeaderValue::from_str(&policy) {
        Ok(v) => response.insert_header(header::CONTENT_SECURITY_POLICY, v),
        Err(e) => tracing::error!(error = %e, "cannot build the Content-Security-Policy"),
    }
}

/// `router` behind the bounds of this module (see its documentation).
pub fn bounded(router: Router, limits: Limits) -> Router {
    // Outermost last: trace, body limit, timeout (waiting for a slot counts), the in-flight
    // limit, then the server-function status and compression around the routes.
    router
        .layer(CompressionLayer::new())
        .layer(axum::middleware::from_fn(server_fn_status))
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(RequestBodyLimitLayer::new(limits.body_limit))
        .layer(TraceLayer::new_for_http())
}

/// Serves `router`, bounded by `limits`, on `listener` until `shutdown` resolves; then stops
/// accepting and gives open connections [`SHUTDOWN_GRACE`] to finish.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let router = bounded(router, limits);
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // HTTP/1 only: the header read timeout is an HTTP/1 setting, and browsers reach barkeep over
    // HTTP/1.1 (directly or through a TLS proxy).
    let http = http.http1_only();
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&connections).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Who is asking, for the sign-in rate limit and the audit log.
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ClientAddr(peer));
                req
            },
        ));
        let conn = http.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after {} s: closing them", SHUTDOWN_GRACE.as_secs());
        }
    }
}

/// A server function's error answers with the status its [`AppError`] names (server_fn 0.8
/// answers every error with 500): 400 for a request it could not decode, 503 when Barman's
/// catalog cannot be read, 500 for the rest. The body stays the error, as the client expects.
async fn server_fn_status(req: Request<Body>, next: Next) -> Response {
    let res = next.run(req).await;
    if !res.headers().contains_key("serverfnerror") {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let bytes = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a server function's error");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    if let Ok(e) = serde_json::from_slice::<AppError>(&bytes) {
        if let Ok(status) = StatusCode::from_u16(e.http_status()) {
            parts.status = status;
        }
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(bytes))
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const LIMITS: Limits = Limits {
        header_read_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(5),
        body_limit: 1024,
        max_in_flight: 4,
        max_connections: 16,
    };

    /// A tiny router behind the real bounds, served by the real accept loop on 127.0.0.1.
    async fn start() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let router = Router::new().route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve_with(listener, router, LIMITS, async move {
            let _ = stopped.await;
        }));
        (addr, stop)
    }

    /// Sends raw bytes, then reads until the server closes (or 5 s pass).
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413_with_a_message() {
        let (addr, _stop) = start().await;
        let body = vec![b'x'; 4096];
        let mut req = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let answer = exchange(addr, &req).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("length limit exceeded"), "{answer}");
        // Under the limit it works.
        let answer = exchange(
            addr,
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with('3'), "{answer}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_without_a_length_is_refused_too() {
        let (addr, _stop) = start().await;
        let mut req =
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        req.extend_from_slice(b"1000\r\n");
        req.extend_from_slice(&[b'x'; 0x1000]);
        req.extend_from_slice(b"\r\n0\r\n\r\n");
        let answer = exchange(addr, &req).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    #[tokio::test]
    async fn a_slow_header_is_cut() {
        let (addr, _stop) = start().await;
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let started = Instant::now();
        s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        // One header byte every 100 ms, never the blank line: the server must hang up.
        let mut closed = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if s.write_all(b"X").await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                _ => {}
            }
        }
        let after = started.elapsed();
        assert!(closed, "the connection was still open after {after:?}");
        assert!(
            after < LIMITS.header_read_timeout + Duration::from_secs(2),
            "cut only after {after:?}"
        );
    }

    #[tokio::test]
    async fn server_function_errors_answer_with_their_status() {
        let router = Router::new()
            .route(
                "/api/bad",
                axum::routing::post(|| async {
                    let body =
                        serde_json::to_string(&AppError::BadRequest("no".into())).expect("json");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("serverfnerror", "/api/bad")],
                        body,
                    )
                }),
            )
            .route(
                "/api/catalog",
                axum::routing::post(|| async {
                    let body = serde_json::to_string(&AppError::CatalogUnreadable).expect("json");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("serverfnerror", "/api/catalog")],
                        body,
                    )
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve_with(listener, router, LIMITS, std::future::pending()));
        let answer = exchange(
            addr,
            b"POST /api/bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("BadRequest"), "{answer}");
        let answer = exchange(
            addr,
            b"POST /api/catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
}
