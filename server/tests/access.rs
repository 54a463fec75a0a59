//! Who may use barkeep over HTTP, against the real server on the sandbox stack. The paths come
//! from `barkeep routes`, built from the same sources as the router (the Leptos pages and the
//! registered server functions), so a new page or server function is covered without editing
//! this test:
//! - without a session every page and server function answers 401;
//! - an operator reaches them all; a viewer gets 403 from every server function that is not one
//!   of the few read-only ones listed here;
//! - a request that changes something from another site is refused (403);
//! - pages carry a Content-Security-Policy with a nonce and the other security headers;
//! - sign-out ends the session; sign-in is rate-limited (429); the audit log has it all.
//!
//! Run as the unprivileged user after `scripts/sandbox install` and the release build.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use barkeep_testkit::{tail_of, Sandbox, SandboxOptions};

/// Server functions a viewer may call: they read and change nothing.
const READ_ONLY: [&str; 5] = [
    "whoami",
    "overview",
    "postgres_status",
    "restore_status",
    "history",
];
/// Arguments that every server function can decode (unknown fields are ignored), so that a
/// refusal is about who asks, not about what was sent.
const ANY_ARGS: &str = "target=2026-01-01+00%3A00%3A00%2B00%3A00&sql=SELECT+1&confirm_database=x\
                        &backup_id=20260101T000000&restore_id=r20260101T000000000Z&confirm=x\
                        &around=&minutes=60&suspicious_only=true";

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request over a fresh connection, the whole answer read.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to barkeep");
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// The head of a server-sent event stream and its first event's data (the stream never ends:
/// read until one whole event has arrived).
fn first_event(port: u16, path: &str, cookie: (&str, &str)) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to barkeep");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{}: {}\r\nAccept: text/event-stream\r\n\r\n",
        cookie.0, cookie.1
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).expect("read the stream");
        assert!(n > 0, "the stream ended before its first event");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            if let Some(data) = body
                .split("data: ")
                .nth(1)
                .and_then(|d| d.split_once('\n'))
                .map(|(line, _)| line.trim_end().to_owned())
            {
                return (head.to_owned(), data);
            }
        }
    }
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// Signs in and returns the `Cookie` header value of the session.
fn sign_in(port: u16, name: &str, password: &str) -> String {
    let a = http(
        port,
        "POST",
        "/auth/signin",
        &[FORM],
        &format!("name={name}&password={password}"),
    );
    assert_eq!(a.status, 303, "sign-in of {name}: {}\n{}", a.head, a.body);
    assert_eq!(a.header("location").as_deref(), Some("/"), "{}", a.head);
    let cookie = a
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no session cookie: {}", a.head));
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "the cookie lacks {attr}: {cookie}");
    }
    cookie
        .split(';')
        .next()
        .expect("name=value")
        .trim()
        .to_owned()
}

fn barkeep(sb: &Sandbox) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_barkeep"));
    c.arg("--config").arg(sb.config_path());
    c
}

#[test]
fn every_page_and_server_function_needs_a_session_and_acting_needs_an_operator() {
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let port = sb.http_port().expect("barkeep runs");
    let out = barkeep(&sb).arg("routes").output().expect("barkeep routes");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let pages: Vec<String> = routes["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect();
    let server_fns: Vec<(String, String)> = routes["server_functions"]
        .as_array()
        .expect("server functions")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().expect("path").to_owned(),
                f["method"].as_str().expect("method").to_owned(),
            )
        })
        .collect();
    assert!(pages.contains(&"/".to_owned()) && pages.contains(&"/signin".to_owned()));
    assert!(server_fns.len() >= 5, "{server_fns:?}");
    let is_read_only = |path: &str| {
        READ_ONLY
            .iter()
            .any(|name| path.trim_start_matches("/api/").starts_with(name))
    };

    // Nobody signed in: only the sign-in page (and health, the bundle) answer.
    for page in pages.iter().filter(|p| *p != "/signin") {
        let a = http(port, "GET", page, &[], "");
        assert_eq!(a.status, 401, "GET {page} without a session: {}", a.head);
        assert!(a.body.contains("/signin"), "{}", a.body);
    }
    for (path, method) in &server_fns {
        let a = http(port, method, path, &[FORM], "");
        assert_eq!(
            a.status, 401,
            "{method} {path} without a session: {}",
            a.head
        );
        assert!(a.body.contains("SignInRequired"), "{}", a.body);
    }
    assert_eq!(http(port, "GET", "/healthz", &[], "").status, 200);
    let signin = http(port, "GET", "/signin", &[], "");
    assert_eq!(signin.status, 200);
    let csp = signin
        .header("content-security-policy")
        .expect("a page carries a CSP");
    assert!(
        csp.contains("script-src 'self' 'nonce-")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("a nonce");
    assert!(
        signin.body.contains(&format!("nonce=\"{nonce}\"")),
        "the page's scripts do not carry the header's nonce"
    );
    assert_eq!(
        signin.header("x-content-type-options").as_deref(),
        Some("nosniff")
    );
    assert_eq!(
        signin.header("referrer-policy").as_deref(),
        Some("no-referrer")
    );

    // The operator reaches everything; an action runs for real and is audited.
    let (name, password) = sb.operator();
    let operator = sign_in(port, &name, &password);
    let cookie = ("Cookie", operator.as_str());
    for page in &pages {
        let a = http(port, "GET", page, &[cookie], "");
        assert_eq!(a.status, 200, "GET {page} as the operator: {}", a.head);
    }
    for (path, method) in server_fns.iter().filter(|(p, _)| is_read_only(p)) {
        let a = http(port, method, path, &[FORM, cookie], "");
        assert_eq!(
            a.status, 200,
            "{method} {path} as the operator: {}\n{}",
            a.head, a.body
        );
    }
    let switch = server_fns
        .iter()
        .find(|(p, _)| p.trim_start_matches("/api/").starts_with("switch_wal"))
        .expect("a switch_wal server function");
    let before = sb.archived_wal().len();
    let a = http(port, &switch.1, &switch.0, &[FORM, cookie], "");
    assert_eq!(
        a.status, 200,
        "switch_wal as the operator: {}\n{}",
        a.head, a.body
    );
    assert!(
        sb.archived_wal().len() > before,
        "switch_wal archived nothing"
    );

    // Bad input to the restore wizard: 4xx in words, and no process started for it.
    let plan = server_fns
        .iter()
        .find(|(p, _)| p.trim_start_matches("/api/").starts_with("restore_plan"))
        .expect("a restore_plan server function");
    // Processes started for requests (the background `barman check` is not one).
    let spawned = || {
        std::fs::read_to_string(sb.barkeep_log())
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("spawned command=") && !l.contains(" check "))
            .count()
    };
    let before = spawned();
    let long = "9".repeat(10 * 1024);
    let hostile_targets = [
        ("yesterday", "not a time barkeep understands"),
        ("2026-13-01 00:00:00+00:00", ""),
        ("2026-11-26 09:30:00", "has no time zone"),
        (long.as_str(), ""),
        ("2026-11-26 09:30:00+00:00\0", ""),
    ];
    for (target, says) in hostile_targets {
        let body = format!("target={}", urlencode(target));
        let a = http(port, &plan.1, &plan.0, &[FORM, cookie], &body);
        assert_eq!(
            a.status,
            400,
            "target {:?}: {}\n{}",
            &target[..target.len().min(40)],
            a.head,
            a.body
        );
        assert!(
            a.body.contains("BadRequest") && a.body.contains(says),
            "{}",
            a.body
        );
    }
    for id in [
        "../x",
        "; rm -rf /",
        long.as_str(),
        "20261126T093000\0",
        "$(reboot)",
    ] {
        let body = format!(
            "target=2026-11-26+09%3A30%3A00%2B00%3A00&backup_id={}",
            urlencode(id)
        );
        let a = http(port, &plan.1, &plan.0, &[FORM, cookie], &body);
        assert_eq!(
            a.status,
            400,
            "backup id {:?}: {}\n{}",
            &id[..id.len().min(40)],
            a.head,
            a.body
        );
        assert!(a.body.contains("not a backup id"), "{}", a.body);
    }
    // The same ids to the actions that take one: check-backup, discard.
    let fn_named = |name: &str| {
        server_fns
            .iter()
            .find(|(p, _)| p.trim_start_matches("/api/").starts_with(name))
            .unwrap_or_else(|| panic!("a {name} server function"))
    };
    let (check_backup, discard) = (fn_named("check_backup"), fn_named("discard_kept_data_dir"));
    for id in [
        "../x",
        "; rm -rf /",
        long.as_str(),
        "20261126T093000\0",
        "$(reboot)",
    ] {
        let a = http(
            port,
            &check_backup.1,
            &check_backup.0,
            &[FORM, cookie],
            &format!("backup_id={}", urlencode(id)),
        );
        assert_eq!(
            a.status,
            400,
            "check_backup {:?}: {}",
            &id[..id.len().min(40)],
            a.body
        );
        assert!(a.body.contains("not a backup id"), "{}", a.body);
        let a = http(
            port,
            &discard.1,
            &discard.0,
            &[FORM, cookie],
            &format!("restore_id={0}&confirm={0}", urlencode(id)),
        );
        assert!(
            (400..500).contains(&a.status) && a.body.contains("there is no kept"),
            "discard {:?}: {}\n{}",
            &id[..id.len().min(40)],
            a.head,
            a.body
        );
    }
    // A well-formed id of no backup: refused with the reason, before barman runs.
    let a = http(
        port,
        &check_backup.1,
        &check_backup.0,
        &[FORM, cookie],
        "backup_id=20000101T000000",
    );
    assert_eq!(a.status, 422, "{}\n{}", a.head, a.body);
    assert!(a.body.contains("there is no backup"), "{}", a.body);
    assert_eq!(spawned(), before, "bad input started a process");
    // Well-formed but impossible: refused with the reason (422).
    for (target, says) in [
        (
            "2000-01-01 00:00:00+00:00",
            "before the end of the oldest backup",
        ),
        ("2099-01-01 00:00:00+00:00", "in the future"),
        // A transaction the WAL does not hold (barkeep reads the WAL to know it).
        ("before xid 4000000000", "does not end in the WAL"),
    ] {
        let body = format!("target={}", urlencode(target));
        let a = http(port, &plan.1, &plan.0, &[FORM, cookie], &body);
        assert_eq!(a.status, 422, "target {target}: {}\n{}", a.head, a.body);
        assert!(a.body.contains(says), "{}", a.body);
    }
    // The list of transactions: a time it cannot read is refused in words.
    let transactions = fn_named("restore_transactions");
    for (around, says) in [("yesterday", "not a time"), (long.as_str(), "not a time")] {
        let body = format!(
            "around={}&minutes=60&suspicious_only=true",
            urlencode(around)
        );
        let a = http(
            port,
            &transactions.1,
            &transactions.0,
            &[FORM, cookie],
            &body,
        );
        assert_eq!(
            a.status,
            400,
            "around {:?}: {}",
            &around[..around.len().min(40)],
            a.body
        );
        assert!(a.body.contains(says), "{}", a.body);
    }
    let a = http(
        port,
        &transactions.1,
        &transactions.0,
        &[FORM, cookie],
        "around=&minutes=60&suspicious_only=false",
    );
    assert_eq!(a.status, 200, "{}\n{}", a.head, a.body);
    assert!(a.body.contains("\"rows\""), "{}", a.body);
    // Verify off-site copy: this sandbox has no [offsite], and the engine says so.
    let verify = fn_named("verify_offsite");
    let a = http(port, &verify.1, &verify.0, &[FORM, cookie], "");
    assert_eq!(a.status, 422, "{}\n{}", a.head, a.body);
    assert!(a.body.contains("not configured"), "{}", a.body);
    let start = server_fns
        .iter()
        .find(|(p, _)| p.trim_start_matches("/api/").starts_with("restore_start"))
        .expect("a restore_start server function");
    let a = http(
        port,
        &start.1,
        &start.0,
        &[FORM, cookie],
        "target=2026-11-26+09%3A30%3A00%2B00%3A00&confirm_database=wrong",
    );
    assert_eq!(a.status, 400, "{}\n{}", a.head, a.body);
    assert!(a.body.contains("to confirm the restore"), "{}", a.body);

    // Another site cannot make the operator's browser act.
    for evil in [
        [("Origin", "null"), ("X-Nothing", "x")],
        [
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        [("Origin", "http://evil.example"), ("X-Nothing", "x")],
        [("Sec-Fetch-Site", "cross-site"), ("X-Nothing", "x")],
    ] {
        let mut headers = vec![FORM, cookie];
        headers.extend(evil);
        let a = http(port, &switch.1, &switch.0, &headers, "");
        assert_eq!(a.status, 403, "a cross-site {evil:?} request: {}", a.head);
    }

    // A viewer sees, and every server function that is not read-only refuses them.
    let mut add = barkeep(&sb)
        .args(["user", "add", "viewer", "--role", "viewer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("barkeep user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all(b"a viewer's long password\n")
        .expect("password");
    let added = add.wait_with_output().expect("user add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let viewer = sign_in(port, "viewer", "a%20viewer%27s%20long%20password");
    let cookie = ("Cookie", viewer.as_str());
    for page in &pages {
        assert_eq!(http(port, "GET", page, &[cookie], "").status, 200, "{page}");
    }
    let mut refused = 0;
    for (path, method) in &server_fns {
        let a = http(port, method, path, &[FORM, cookie], ANY_ARGS);
        if is_read_only(path) {
            assert_eq!(a.status, 200, "{method} {path} as a viewer: {}", a.head);
        } else {
            assert_eq!(
                a.status, 403,
                "{method} {path} as a viewer: {}\n{}",
                a.head, a.body
            );
            assert!(a.body.contains("OperatorOnly"), "{}", a.body);
            refused += 1;
        }
    }
    assert!(refused >= 2, "no acting server function was checked");

    // The live dashboard's event stream and /metrics: 401 without a session; a viewer reads
    // both (they change nothing).
    for path in routes["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|p| p.as_str())
    {
        assert_eq!(http(port, "GET", path, &[], "").status, 401, "GET {path}");
        let (head, event) = first_event(port, path, cookie);
        assert!(head.contains("text/event-stream"), "{head}");
        let view: serde_json::Value =
            serde_json::from_str(&event).unwrap_or_else(|e| panic!("{e}: {event}"));
        assert!(view["postgres"]["state"]["Up"].is_object(), "{event}");
        // No [offsite] section: no off-site panel.
        assert!(view["offsite"].is_null(), "{event}");
    }
    let metrics = routes["metrics"].as_str().expect("the metrics path");
    assert_eq!(http(port, "GET", metrics, &[], "").status, 401);
    let m = http(port, "GET", metrics, &[cookie], "");
    assert_eq!(m.status, 200, "{}", m.head);
    for line in ["barkeep_postgres_up 1", "barkeep_backups{status=\"DONE\"}"] {
        assert!(
            m.body.contains(line),
            "{line} missing from /metrics:\n{}",
            m.body
        );
    }

    // Sign-out ends the session for good.
    let a = http(port, "POST", "/auth/signout", &[cookie], "");
    assert_eq!(a.status, 303, "{}", a.head);
    assert_eq!(http(port, "GET", "/", &[cookie], "").status, 401);

    // Guessing passwords is slowed down: at most 10 tries a minute from one address.
    let mut limited_after = None;
    for i in 1..=12 {
        let a = http(
            port,
            "POST",
            "/auth/signin",
            &[FORM],
            "name=operator&password=guess",
        );
        match a.status {
            303 => assert_eq!(a.header("location").as_deref(), Some("/signin?failed=1")),
            429 => {
                limited_after = Some(i);
                break;
            }
            other => panic!("a wrong password answered {other}: {}", a.head),
        }
    }
    assert!(
        limited_after.is_some(),
        "12 wrong passwords in a row were not rate-limited"
    );

    let audit = std::fs::read_to_string(sb.state_dir().join("audit.log")).expect("audit log");
    for needle in [
        r#""who":"operator","from":"127.0.0.1","what":"sign_in","#,
        r#""who":"operator","from":"127.0.0.1","what":"switch_wal","#,
        r#""who":"operator","from":"127.0.0.1","what":"verify_offsite","#,
        r#""who":"viewer","from":"127.0.0.1","what":"sign_out","#,
        r#""outcome":"failed: wrong name or password""#,
        r#""outcome":"refused: too many attempts""#,
    ] {
        assert!(
            audit.contains(needle),
            "the audit log lacks {needle}:\n{audit}\n--- barkeep log\n{}",
            tail_of(&sb.barkeep_log(), 30)
        );
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
