//! Who may use barkeep over HTTP (docs/security.md).
//!
//! - Every page and server function needs a session, on loopback too (any local user of the
//!   host reaches 127.0.0.1); only the sign-in page and its form, the static bundle, the
//!   favicon and /healthz do not. Without one, a page answers 401 with a link to the sign-in
//!   page, a server function 401 with [`AppError::SignInRequired`].
//! - Sessions: tower-sessions, in memory (a restart signs everyone out), in an HttpOnly,
//!   SameSite=Strict cookie, Secure when `web.secure_cookie` says barkeep is served over TLS;
//!   8 hours of inactivity end one; the id changes at sign-in.
//! - Passwords: the users file of argon2id hashes (`engine::users`), read at each sign-in.
//! - Sign-in is rate-limited per client address (governor: 10 a minute), answered 429 beyond.
//! - A request that changes anything (not GET/HEAD/OPTIONS) from another site is refused 403:
//!   `Sec-Fetch-Site` must be same-origin (or none: typed by the person), and `Origin`, when
//!   sent, must be this host.
//! - Every sign-in, failed sign-in and sign-out goes to the audit log.
//! - `/metrics` also opens to `Authorization: Bearer <token>` when `metrics_token_file` is set
//!   (Prometheus has no session); without it, it needs a session like a page.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;

use app::api::Caller;
use app::model::{AppError, Identity, Role};
use axum::body::Body;
use axum::extract::{Extension, Form};
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use engine::audit::{AuditEntry, AuditLog};
use engine::users::{User, Users};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use tower_sessions::cookie::time::Duration as CookieDuration;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, MemoryStore, Session, SessionManagerLayer};

/// Where the session keeps the signed-in user.
const SESSION_USER: &str = "user";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "barkeep_session";
/// The sign-in page (a Leptos page) and the form's target.
pub const SIGN_IN_PAGE: &str = "/signin";
pub const SIGN_IN_FORM: &str = "/auth/signin";
pub const SIGN_OUT_FORM: &str = "/auth/signout";
/// Server functions live under this prefix (Leptos' default).
const SERVER_FN_PREFIX: &str = "/api/";
/// The shortest metrics bearer token barkeep accepts.
pub const MIN_METRICS_TOKEN: usize = 32;
/// Prometheus' path.
pub const METRICS_PATH: &str = "/metrics";
/// Sign-in attempts per client address and minute.
const SIGN_INS_PER_MINUTE: u32 = 10;

/// The client's address, put on each request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// What the sign-in and sign-out handlers need.
pub struct Auth {
    users_file: PathBuf,
    audit: AuditLog,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// The bearer token that opens `/metrics` without a session (Prometheus), if configured.
    metrics_token: Option<String>,
}

impl Auth {
    pub fn new(users_file: PathBuf, audit: AuditLog) -> Self {
        let per_minute = NonZeroU32::new(SIGN_INS_PER_MINUTE).unwrap_or(NonZeroU32::MIN);
        Self {
            users_file,
            audit,
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            metrics_token: None,
        }
    }

    /// Lets `Authorization: Bearer <token>` read `/metrics`. The token is the file's first
    /// line; a token shorter than [`MIN_METRICS_TOKEN`] characters is refused.
    pub fn with_metrics_token_file(mut self, path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the metrics token file {}", path.display()))?;
        let token = text.lines().next().unwrap_or_default().trim().to_owned();
        anyhow::ensure!(
            token.len() >= MIN_METRICS_TOKEN,
            "the metrics token in {} is shorter than {MIN_METRICS_TOKEN} characters",
            path.display()
        );
        self.metrics_token = Some(token);
        Ok(self)
    }

    /// Whether the request carries the metrics bearer token (compared in constant time).
    fn has_metrics_token(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.metrics_token else {
            return false;
        };
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let (a, b) = (given.trim().as_bytes(), expected.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    async fn audit(&self, who: &str, from: IpAddr, what: &str, outcome: &str) {
        self.audit
            .record(AuditEntry {
                at: chrono::Utc::now(),
                who: who.to_owned(),
                from: from.to_string(),
                what: what.to_owned(),
                target: None,
                outcome: outcome.to_owned(),
            })
            .await;
    }
}

/// The session layer: in memory, HttpOnly, SameSite=Strict, Secure over TLS.
pub fn session_layer(secure: bool) -> SessionManagerLayer<MemoryStore> {
    SessionManagerLayer::new(MemoryStore::default())
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Strict)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(CookieDuration::hours(8)))
}

/// Paths anyone may reach: the sign-in page and form, the static bundle, the favicon, health.
pub fn is_public(path: &str) -> bool {
    path == SIGN_IN_PAGE
        || path == SIGN_IN_FORM
        || path == "/healthz"
        || path == "/favicon.svg"
        || path.starts_with("/pkg/")
}

/// Lets a request through only with a signed-in session, and puts the person and their
/// address on it ([`Caller`]) for the server functions.
pub async fn require_signed_in(
    session: Session,
    Extension(auth): Extension<Arc<Auth>>,
    mut req: Request<Body>,
    next: Next,
) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    if req.uri().path() == METRICS_PATH && auth.has_metrics_token(req.headers()) {
        return next.run(req).await;
    }
    match session.get::<User>(SESSION_USER).await {
        Ok(Some(user)) => {
            let from = req
                .extensions()
                .get::<ClientAddr>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
            req.extensions_mut().insert(Caller {
                identity: identity(&user),
                from,
            });
            next.run(req).await
        }
        Ok(None) => unauthorized(req.uri().path()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read a session");
            unauthorized(req.uri().path())
        }
    }
}

fn identity(user: &User) -> Identity {
    Identity {
        name: user.name.clone(),
        role: match user.role {
            engine::users::Role::Viewer => Role::Viewer,
            engine::users::Role::Operator => Role::Operator,
        },
    }
}

/// 401: a server function gets its error as JSON, a page a link to the sign-in page (and a
/// refresh to it, which needs no script).
fn unauthorized(path: &str) -> Response {
    if path.starts_with(SERVER_FN_PREFIX) {
        let body = serde_json::to_string(&AppError::SignInRequired).unwrap_or_default();
        return (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
    }
    let page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0; url={SIGN_IN_PAGE}\">\
         <title>Sign in: barkeep</title></head><body>\
         <p>Please <a href=\"{SIGN_IN_PAGE}\">sign in</a> to use barkeep.</p></body></html>"
    );
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

/// Refuses a request that changes something when it comes from another site (403).
pub async fn same_origin_only(req: Request<Body>, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || is_same_origin(req.headers())
    {
        return next.run(req).await;
    }
    tracing::warn!(method = %req.method(), path = %req.uri().path(), "a cross-site request was refused");
    (
        StatusCode::FORBIDDEN,
        "barkeep refuses requests that change something when they come from another site",
    )
        .into_response()
}

fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let site = text("sec-fetch-site");
    if let Some(site) = site {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
        (None, _) => true,
        // Under `Referrer-Policy: no-referrer` a browser sends `Origin: null` even from
        // barkeep's own pages; it then says where the request comes from in Sec-Fetch-Site.
        (Some("null"), _) => site == Some("same-origin"),
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
    }
}

#[derive(Deserialize)]
pub struct SignInForm {
    name: String,
    password: String,
}

/// POST /auth/signin: checks the password, starts a session with a new id, audits.
pub async fn sign_in(
    Extension(auth): Extension<Arc<Auth>>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    session: Session,
    Form(form): Form<SignInForm>,
) -> Response {
    let ip = peer.ip();
    // The name as the log may carry it: what was typed, cut and without control characters.
    let tried: String = form
        .name
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    if auth.limiter.check_key(&ip).is_err() {
        auth.audit(&tried, ip, "sign_in", "refused: too many attempts")
            .await;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>barkeep</title>\
             </head><body><p>Too many sign-in attempts from your address. Wait a minute, then \
             <a href=\"/signin\">try again</a>.</p></body></html>",
        )
            .into_response();
    }
    let users_file = auth.users_file.clone();
    let (name, password) = (form.name, form.password);
    let checked = tokio::task::spawn_blocking(move || {
        Users::load(&users_file).map(|users| users.verify(&name, &password))
    })
    .await;
    let user = match checked {
        Ok(Ok(user)) => user,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the users file");
            auth.audit(
                &tried,
                ip,
                "sign_in",
                "failed: the users file cannot be read",
            )
            .await;
            return Redirect::to("/signin?problem=users").into_response();
        }
        Err(e) => {
            tracing::error!(error = %e, "the password check stopped");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(user) = user else {
        auth.audit(&tried, ip, "sign_in", "failed: wrong name or password")
            .await;
        return Redirect::to("/signin?failed=1").into_response();
    };
    // A new id at sign-in: a session id planted before it is worth nothing after.
    let started = async {
        session.cycle_id().await?;
        session.insert(SESSION_USER, &user).await
    }
    .await;
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start a session");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    auth.audit(&user.name, ip, "sign_in", "ok").await;
    tracing::info!(user = %user.name, role = user.role.name(), %ip, "signed in");
    Redirect::to("/").into_response()
}

/// POST /auth/signout: ends the session, audits.
pub async fn sign_out(
    Extension(auth): Extension<Arc<Auth>>,
    Extension(ClientAddr(peer)): Extension<ClientAddr>,
    session: Session,
) -> Response {
    let who = session
        .get::<User>(SESSION_USER)
        .await
        .ok()
        .flatten()
        .map(|u| u.name);
    if let Err(e) = session.flush().await {
        tracing::warn!(error = %e, "cannot end a session");
    }
    if let Some(who) = who {
        auth.audit(&who, peer.ip(), "sign_out", "ok").await;
    }
    Redirect::to(SIGN_IN_PAGE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_configured_metrics_token_opens_metrics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let audit = AuditLog::new(&engine::state_dir::StateDir::new(dir.path()));
        let file = dir.path().join("token");
        let bearer = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(v).expect("header"),
            );
            h
        };
        let none = Auth::new(dir.path().join("users"), audit.clone());
        assert!(!none.has_metrics_token(&bearer("Bearer ")));
        std::fs::write(&file, "short\n").expect("write");
        assert!(Auth::new(dir.path().join("users"), audit.clone())
            .with_metrics_token_file(&file)
            .is_err());
        let token = "0123456789abcdef0123456789abcdef";
        std::fs::write(&file, format!("{token}\n")).expect("write");
        let auth = Auth::new(dir.path().join("users"), audit)
            .with_metrics_token_file(&file)
            .expect("a long enough token");
        assert!(auth.has_metrics_token(&bearer(&format!("Bearer {token}"))));
        for wrong in [
            format!("Bearer {token}x"),
            format!("Bearer {}", &token[1..]),
            format!("Basic {token}"),
            token.to_owned(),
        ] {
            assert!(!auth.has_metrics_token(&bearer(&wrong)), "{wrong}");
        }
        assert!(!auth.has_metrics_token(&HeaderMap::new()));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_same_origin_requests_may_change_something() {
        assert!(is_same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080.evil.example"),
        ])));
        assert!(!is_same_origin(&headers(&[(
            "origin",
            "http://127.0.0.1:8080"
        )])));
        // A form posted from barkeep's own page under no-referrer.
        assert!(is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null"),
            ("sec-fetch-site", "cross-site"),
        ])));
    }

    #[test]
    fn only_the_sign_in_page_the_bundle_and_health_are_public() {
        for p in [
            "/signin",
            "/auth/signin",
            "/healthz",
            "/favicon.svg",
            "/pkg/barkeep.wasm",
        ] {
            assert!(is_public(p), "{p}");
        }
        for p in [
            "/",
            "/history",
            "/api/overview",
            "/auth/signout",
            "/signin/x",
            "/pkgx",
        ] {
            assert!(!is_public(p), "{p}");
        }
    }
}
