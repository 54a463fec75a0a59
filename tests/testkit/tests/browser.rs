//! The web app in a real browser: barkeep serving the sandbox, the dashboard loaded in headless
//! Debian chromium through chromedriver (fantoccini), the live PostgreSQL version on the page, and
//! HYDRATION proven by what only a hydrated page can show: the live stream's "Live: read at"
//! (the wasm opened the event stream and drew a pushed read), then a WAL switch whose new WAL
//! age arrives without a reload. A page that renders on the server but never hydrates (a broken
//! wasm bundle, e.g. the one Debian's binaryen 108 makes) fails this test.
//!
//! Needs `scripts/sandbox install` (root), chromium + chromium-driver, and the release build
//! (`cargo leptos build --release`: `$CARGO_TARGET_DIR/release/barkeep` and `<repo>/target/site`).
//! Run as the unprivileged user: `runuser -u barkeep -- <this test binary>`.
//! `BARKEEP_SCREENSHOT_DIR=<dir>` saves every page and state as `<dir>/<name>.png` (also when a
//! test fails): sign-in, dashboard (laptop and 360 px phone width), history, the wizard's states.
//!
//! Before the dashboard: barkeep sends a browser without a session to the sign-in page, refuses
//! a wrong password in words, and lets the sandbox's operator in.
//!
//! The dashboard's sandbox also runs Garage as the off-site store: the off-site panel shows a
//! replication run's outcome (in sync), and "Verify off-site copy" lists the bucket.

use std::time::{Duration, Instant};

use barkeep_testkit::{tail_of, ChromeDriver, Sandbox, SandboxOptions, BROWSER_OFFSET};
use fantoccini::{Client, ClientBuilder, Locator};

/// How long the page may take to hydrate (the click is retried until then).
const HYDRATION_BUDGET: Duration = Duration::from_secs(30);
/// Everything in the browser, end to end (the off-site panel waits for a replication run).
const BROWSER_BUDGET: Duration = Duration::from_secs(180);

#[test]
fn the_dashboard_is_live_and_its_actions_work() {
    let t0 = Instant::now();
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep().with_offsite());
    let url = sb.http_url();
    let pg_version = sb.psql("SHOW server_version");
    let operator = sb.operator();
    assert!(
        pg_version.starts_with("14."),
        "server_version = {pg_version:?}"
    );
    // One replication run now, from the CLI, while the browser signs in (the server's own
    // loop starts 10 s after it; whichever runs first, the other finds the bucket in sync or
    // the run busy).
    let replicate = sb
        .barkeep_cli()
        .args(["offsite", "replicate"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("barkeep offsite replicate");
    let backups = sb.barman_json(&["list-backups", barkeep_testkit::SERVER]);
    let backup_id = backups[barkeep_testkit::SERVER][0]["backup_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no backup id in barman list-backups: {backups}"))
        .to_owned();
    in_browser(&sb, BROWSER_BUDGET, "dashboard-phone.png", async |client| {
        sign_in(client, &url, &operator).await?;
        check_dashboard(client, &url, &pg_version).await?;
        check_offsite(client, &sb, &backup_id).await?;
        check_actions(client).await?;
        check_history(client, &url).await?;
        on_a_phone(client, &url).await
    });
    let replicated = replicate
        .wait_with_output()
        .expect("barkeep offsite replicate");
    let said = String::from_utf8_lossy(&replicated.stderr);
    assert!(
        replicated.status.success() || said.contains("another off-site replication is running"),
        "barkeep offsite replicate failed ({}):\n{said}",
        replicated.status
    );
    eprintln!(
        "[browser] dashboard rendered and hydrated; {:.1} s in all",
        t0.elapsed().as_secs_f64()
    );
}

/// Runs `checks` in a fresh chromium session within `budget`, saves the page as `shot`, closes
/// the session, and fails the test with barkeep's and chromium's logs when a check failed.
fn in_browser(
    sb: &Sandbox,
    budget: Duration,
    shot: &str,
    checks: impl AsyncFnOnce(&Client) -> Result<(), String>,
) {
    let driver = ChromeDriver::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = rt.block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(driver.capabilities())
            .connect(&driver.url())
            .await
            .map_err(|e| format!("no WebDriver session from {}: {e}", driver.url()))?;
        let checked = tokio::time::timeout(budget, checks(&client))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the browser checks took more than {} s",
                    budget.as_secs()
                ))
            });
        let saved = tokio::time::timeout(Duration::from_secs(30), save_screenshot(&client, shot))
            .await
            .unwrap_or_else(|_| Err("the screenshot took more than 30 s".to_owned()));
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        match (checked, saved) {
            (Ok(()), saved) => saved,
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(s)) => Err(format!("{e}\n(and the screenshot failed: {s})")),
        }
    });
    if let Err(e) = result {
        panic!(
            "{e}\n--- barkeep log ({})\n{}\n--- chromium/chromedriver output\n{}",
            sb.barkeep_log().display(),
            tail_of(&sb.barkeep_log(), 40),
            driver.output_tail(40)
        );
    }
}

/// Without a session the dashboard sends the browser to the sign-in page; a wrong password is
/// refused in words; the operator's password signs in and lands on the dashboard.
async fn sign_in(
    client: &Client,
    url: &str,
    (name, password): &(String, String),
) -> Result<(), String> {
    client
        .goto(url)
        .await
        .map_err(|e| format!("cannot load {url}: {e}"))?;
    let form = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("form[action='/auth/signin']"))
        .await
        .map_err(|e| format!("{url} without a session did not lead to the sign-in form ({e})"))?;
    let here = client.current_url().await.map_err(|e| e.to_string())?;
    if here.path() != "/signin" {
        return Err(format!("the sign-in form is at {here}, not /signin"));
    }
    let submit = |password: String| async move {
        let form = client
            .form(Locator::Css("form[action='/auth/signin']"))
            .await
            .map_err(|e| format!("no sign-in form: {e}"))?;
        form.set_by_name("name", name)
            .await
            .map_err(|e| format!("cannot type the name: {e}"))?
            .set_by_name("password", &password)
            .await
            .map_err(|e| format!("cannot type the password: {e}"))?
            .submit()
            .await
            .map_err(|e| format!("cannot submit the sign-in form: {e}"))
    };
    drop(form);
    submit(format!("{password}-wrong")).await?;
    let refusal = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css("#signin [role='alert']"))
        .await
        .map_err(|e| format!("a wrong password was not refused in words ({e})"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if !refusal.contains("do not match") {
        return Err(format!("a wrong password got {refusal:?}"));
    }
    save_screenshot(client, "signin.png").await?;
    submit(password.clone()).await?;
    let who = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id("signed-in-as"))
        .await
        .map_err(|e| format!("the operator's password did not sign in ({e})"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if who.trim() != format!("{name} (operator)") {
        return Err(format!("signed in as {who:?}"));
    }
    eprintln!("[browser] a wrong password was refused ({refusal:?}); signed in as {who:?}");
    Ok(())
}

/// The page: "barkeep", the live version in #pg-version, the backups, then hydration and the
/// live stream via #live-state.
async fn check_dashboard(client: &Client, url: &str, pg_version: &str) -> Result<(), String> {
    let t0 = Instant::now();
    client
        .goto(url)
        .await
        .map_err(|e| format!("cannot load {url}: {e}"))?;

    let title = client.title().await.map_err(|e| format!("no title: {e}"))?;
    let body = text_of(client, Locator::Css("body")).await?;
    if !body.contains("barkeep") {
        return Err(format!(
            "the page at {url} does not say \"barkeep\" (title {title:?}):\n{body}"
        ));
    }

    let version = client
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id("pg-version"))
        .await
        .map_err(|e| format!("no #pg-version on the page within 15 s ({e}):\n{body}"))?
        .text()
        .await
        .map_err(|e| format!("cannot read #pg-version: {e}"))?;
    let want = format!("PostgreSQL {pg_version}");
    if !version.starts_with("PostgreSQL 14.") || version.trim() != want {
        return Err(format!(
            "#pg-version says {version:?}, expected {want:?} (the sandbox's server_version)"
        ));
    }
    eprintln!(
        "[browser] loaded {url} (title {title:?}), #pg-version {version:?} after {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // Barman's catalog: the sandbox's first backup is listed DONE, and the recovery window is shown.
    let backups = text_of(client, Locator::Css("#backup-list tbody")).await?;
    if !backups.contains("DONE") {
        return Err(format!("no DONE backup in the backup list: {backups:?}"));
    }
    let window = text_of(client, Locator::Id("recovery-window")).await?;
    if !window.contains("UTC") {
        return Err(format!("no recovery window on the page: {window:?}"));
    }

    // Server rendering cannot produce this text: only the hydrated page, having opened the
    // event stream and drawn a pushed read, says it.
    let before = text_of(client, Locator::Id("live-state")).await?;
    let started = Instant::now();
    if let Err(e) = wait_for_text(
        client,
        "live-state",
        "Live: read at",
        HYDRATION_BUDGET.as_secs(),
    )
    .await
    {
        let diagnosis = diagnose(client).await;
        return Err(format!(
            "the page did not hydrate and go live (it said {before:?} first): {e}\n{diagnosis}"
        ));
    }
    eprintln!(
        "[browser] hydrated and live after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Times in the browser's own zone, UTC beside them.
    let window = text_of(client, Locator::Id("recovery-window")).await?;
    if !window.contains(BROWSER_OFFSET) || !window.contains("UTC") {
        return Err(format!(
            "the recovery window is not shown in the browser's zone ({BROWSER_OFFSET}) and UTC: \
             {window:?}"
        ));
    }
    let axis = text_of(client, Locator::Css("#recovery-axis figcaption")).await?;
    if !axis.contains("restorable") || !axis.contains("now") {
        return Err(format!("the time axis is not drawn: {axis:?}"));
    }
    Ok(())
}

/// The off-site panel, on the live page: once a replication run has copied the sandbox's WAL
/// and backup to Garage, it shows the bucket in sync with a lag of zero and the
/// backup as the newest off-site one; "Verify off-site copy" lists that backup from the bucket
/// itself; with Garage stopped, the same click says in words that the store cannot be reached.
async fn check_offsite(client: &Client, sb: &Sandbox, backup_id: &str) -> Result<(), String> {
    let bucket = text_of(client, Locator::Id("offsite-bucket")).await?;
    if !bucket.starts_with("s3://") {
        return Err(format!("the off-site panel shows no bucket: {bucket:?}"));
    }
    // The CLI's run (or the server's) ends; the live page shows what it left in offsite.json.
    let started = Instant::now();
    loop {
        let state = text_of(client, Locator::Id("offsite-state")).await?;
        if state.contains("in sync") {
            break;
        }
        if state.contains("failed") {
            let error = text_of(client, Locator::Id("offsite-error")).await?;
            return Err(format!("the off-site replication failed: {error}"));
        }
        if started.elapsed() > Duration::from_secs(150) {
            return Err(format!(
                "the off-site copy is not in sync after 150 s: {state:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let lag = text_of(client, Locator::Id("offsite-lag")).await?;
    if !lag.starts_with("0 WAL segments, 0 s") {
        return Err(format!("in sync, but the lag is {lag:?}"));
    }
    let newest = text_of(client, Locator::Id("offsite-newest-backup")).await?;
    if newest.trim() != backup_id {
        return Err(format!(
            "the newest off-site backup is {newest:?}, the sandbox's is {backup_id}"
        ));
    }
    let last_run = text_of(client, Locator::Id("offsite-last-run")).await?;
    if !last_run.contains("UTC") || !last_run.contains(BROWSER_OFFSET) {
        return Err(format!(
            "the last run is not shown in the browser's zone and UTC: {last_run:?}"
        ));
    }
    eprintln!(
        "[browser] off-site in sync after {:.1} s: lag {lag:?}, last run {last_run:?}",
        started.elapsed().as_secs_f64()
    );
    click(client, "verify-offsite").await?;
    wait_for_text(client, "offsite-backup-list", backup_id, 60).await?;
    let summary = text_of(client, Locator::Id("verify-offsite-summary")).await?;
    if !summary.contains("1 backup and") || summary.contains(" 0 WAL files") {
        return Err(format!("the bucket's listing says {summary:?}"));
    }
    eprintln!("[browser] verify off-site copy: {summary:?}");
    let panel_in_view = async || {
        client
            .execute(
                "document.getElementById('offsite').scrollIntoView();",
                vec![],
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot scroll to the off-site panel: {e}"))
    };
    panel_in_view().await?;
    save_screenshot(client, "offsite.png").await?;

    sb.garage_stop();
    click(client, "verify-offsite").await?;
    wait_for_text(client, "verify-offsite-result", "cannot reach", 60).await?;
    let failed = text_of(client, Locator::Id("verify-offsite-result")).await?;
    eprintln!("[browser] verify with the store down: {failed:?}");
    panel_in_view().await?;
    save_screenshot(client, "offsite-verify-failed.png").await
}

/// The operator's actions, watched on the live page (never reloaded here): a WAL switch makes
/// the newest WAL newer; `barman check` on demand shows its result.
async fn check_actions(client: &Client) -> Result<(), String> {
    let last_wal = async || {
        client
            .find(Locator::Id("wal-age"))
            .await
            .map_err(|e| format!("no #wal-age: {e}"))?
            .attr("data-last-wal")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "#wal-age has no data-last-wal".to_owned())
    };
    let before = last_wal().await?;
    click(client, "switch-wal").await?;
    wait_for_text(client, "switch-wal-result", "Done at", 60).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = last_wal().await?;
        if now > before {
            let age = text_of(client, Locator::Id("wal-age")).await?;
            eprintln!(
                "[browser] after the WAL switch the newest WAL is {now} ({age}), was {before}"
            );
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the WAL switch finished but the live page still shows the newest WAL of {now}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The background check may have passed already: the answer to this click is what counts.
    click(client, "run-check").await?;
    wait_for_text(client, "run-check-result", "every check passed", 90).await?;
    let check = text_of(client, Locator::Id("check-result")).await?;
    eprintln!("[browser] barman check: {check:?}");
    save_screenshot(client, "dashboard.png").await
}

/// The History page lists what the operator did, in the audit log.
async fn check_history(client: &Client, url: &str) -> Result<(), String> {
    client
        .goto(&format!("{url}history"))
        .await
        .map_err(|e| e.to_string())?;
    wait_for(client, Locator::Id("audit-log"), 15).await?;
    let audit = text_of(client, Locator::Id("audit-log")).await?;
    for what in ["sign_in", "verify_offsite", "switch_wal", "barman_check"] {
        if !audit.contains(what) {
            return Err(format!(
                "the audit log on the History page lacks {what}: {audit}"
            ));
        }
    }
    save_screenshot(client, "history.png").await
}

/// At 360 px the dashboard fits the screen: nothing wider than it but what scrolls inside a
/// card (the tables).
async fn on_a_phone(client: &Client, url: &str) -> Result<(), String> {
    client
        .set_window_size(360, 800)
        .await
        .map_err(|e| format!("cannot resize the window: {e}"))?;
    client.goto(url).await.map_err(|e| e.to_string())?;
    wait_for_text(client, "live-state", "Live: read at", 30).await?;
    let width = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .map_err(|e| e.to_string())?;
    let (page, window) = (width[0].as_i64(), width[1].as_i64());
    save_screenshot(client, "dashboard-phone.png").await?;
    if page > window {
        return Err(format!(
            "at 360 px the page is {page:?} px wide in a {window:?} px window"
        ));
    }
    Ok(())
}

/// The rendered text of the first element matching `loc`.
async fn text_of(client: &Client, loc: Locator<'_>) -> Result<String, String> {
    let el = client
        .find(loc)
        .await
        .map_err(|e| format!("no {loc:?} on the page: {e}"))?;
    el.text()
        .await
        .map_err(|e| format!("cannot read the text of {loc:?}: {e}"))
}

/// chromedriver's `POST /session/{id}/se/log` with `{"type": "browser"}`: the console messages
/// since the last call (kept because of the `goog:loggingPrefs` capability).
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(r#"{"type":"browser"}"#.to_owned()))
    }
}

/// The browser's console messages, one a line.
async fn console_log(client: &Client) -> String {
    match client.issue_cmd(BrowserLog).await {
        Ok(serde_json::Value::Array(entries)) if entries.is_empty() => "  (empty)".to_owned(),
        Ok(serde_json::Value::Array(entries)) => entries
            .iter()
            .map(|e| {
                format!(
                    "  {} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Ok(other) => format!("  {other}"),
        Err(e) => format!("  (cannot read the console log: {e})"),
    }
}

/// What the browser loaded and logged, for a failure message.
async fn diagnose(client: &Client) -> String {
    let script = r#"
        const res = performance.getEntriesByType('resource')
            .map(e => `  ${e.name} ${e.responseStatus ?? ''} ${Math.round(e.duration)} ms`);
        return `readyState ${document.readyState}\nresources:\n${res.join('\n')}`;
    "#;
    let loaded = match client.execute(script, vec![]).await {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("(cannot ask the page: {e})"),
    };
    format!("{loaded}\nconsole:\n{}", console_log(client).await)
}

/// `$BARKEEP_SCREENSHOT_DIR/dashboard.png`, when that variable is set.
/// The page as it is now, as `$BARKEEP_SCREENSHOT_DIR/<name>` (nothing when that is unset).
async fn save_screenshot(client: &Client, name: &str) -> Result<(), String> {
    let Some(dir) = std::env::var_os("BARKEEP_SCREENSHOT_DIR") else {
        return Ok(());
    };
    let dir = std::path::PathBuf::from(dir);
    let png = client
        .screenshot()
        .await
        .map_err(|e| format!("cannot take a screenshot: {e}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, &png).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    eprintln!(
        "[browser] screenshot: {} ({} bytes)",
        path.display(),
        png.len()
    );
    Ok(())
}

/// The mission, through the browser: a harmful DELETE, then the operator restores to the
/// second before it with the wizard (target, plan, typed confirmation, the steps), sees the rows
/// back with a query on the paused server (after a reload: the page follows the journal), and
/// accepts. Checked afterwards from outside with psql.
#[test]
fn the_seed_scenario_through_the_wizard() {
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let url = sb.http_url();
    let operator = sb.operator();
    let orders = sb.psql("SELECT count(*) FROM orders");
    std::thread::sleep(Duration::from_millis(1100));
    let target =
        sb.psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'");
    std::thread::sleep(Duration::from_millis(1100));
    sb.psql("DELETE FROM orders WHERE id % 2 = 0");
    let left = sb.psql("SELECT count(*) FROM orders");
    assert_ne!(left, orders, "the harmful DELETE deleted nothing");
    in_browser(
        &sb,
        Duration::from_secs(300),
        "restore-end.png",
        async |client| {
            sign_in(client, &url, &operator).await?;
            let id = restore_through_the_wizard(client, &sb, &target, &orders, &left).await?;
            discard_what_it_set_aside(client, &url, &id, &sb.state_dir()).await
        },
    );
    // From outside: every order is back, archiving is on, and PostgreSQL serves on a new timeline.
    assert_eq!(sb.psql("SELECT count(*) FROM orders"), orders);
    assert_eq!(sb.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(sb.psql("SHOW archive_command"), sb.archive_command());
}

/// A preview (the wizard's default here) verified while production serves `harmed` orders,
/// then swapped in. Returns the restore's id.
async fn restore_through_the_wizard(
    client: &Client,
    sb: &Sandbox,
    target: &str,
    orders: &str,
    harmed: &str,
) -> Result<String, String> {
    let url = &sb.http_url();
    let operator = &sb.operator();
    let id = start_in_the_wizard(client, url, target, Mode::Preview).await?;
    save_screenshot(client, "restore-running.png").await?;
    a_second_browser_sees(url, operator, &id).await?;
    client.refresh().await.map_err(|e| e.to_string())?;
    wait_for_text(client, "restore-state", "paused at", 240).await?;
    let steps = text_of(client, Locator::Id("restore-steps")).await?;
    for step in ["plan", "archive", "recover", "start_paused"] {
        if !steps.contains(step) {
            return Err(format!("the steps table lacks {step}: {steps}"));
        }
    }
    if steps.contains("stop") || steps.contains("set_aside") {
        return Err(format!("a preview stopped production: {steps}"));
    }
    // Production serves beside the paused copy, with the harm still in it.
    let serving = (
        sb.psql("SELECT pg_is_in_recovery()"),
        sb.psql("SELECT count(*) FROM orders"),
    );
    if serving != ("f".to_owned(), harmed.to_owned()) {
        return Err(format!(
            "production does not serve what it had during the preview: {serving:?}"
        ));
    }
    wait_for_text(client, "production-writes", "Production keeps serving", 10).await?;
    // Verify: the rows are back on the paused server.
    orders_back_then_accept(client, orders, "restore-paused.png").await?;
    eprintln!("[browser] restored to {target} through the wizard: {orders} orders, accepted");
    Ok(id)
}

/// How the wizard restores.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Preview,
    InPlace,
}

/// Chooses the mode on the wizard's target page; a preview is the default when it can run.
async fn choose_mode(client: &Client, mode: Mode) -> Result<(), String> {
    let preview = wait_for(client, Locator::Id("mode-preview"), 10).await?;
    let default = preview.prop("checked").await.map_err(|e| e.to_string())?;
    if default.as_deref() != Some("true") {
        let why = text_of(client, Locator::Id("preview-unavailable"))
            .await
            .unwrap_or_default();
        return Err(format!(
            "preview is not the default mode ({default:?}): {why}"
        ));
    }
    if mode == Mode::InPlace {
        click(client, "mode-in-place").await?;
    }
    Ok(())
}

/// On the restore page: the target typed, the mode chosen, the plan read, the database's name
/// typed, started. Returns the restore's id once the page says it runs.
async fn start_in_the_wizard(
    client: &Client,
    url: &str,
    target: &str,
    mode: Mode,
) -> Result<String, String> {
    let page = format!("{url}restore");
    client.goto(&page).await.map_err(|e| e.to_string())?;
    wait_for(client, Locator::Id("target"), 30).await?;
    // Typed until the hydrated page reads it back (in UTC): before hydration the server's HTML
    // does not react, and hydration resets the field.
    until_hydrated(|| async {
        type_into(client, "target", target).await?;
        wait_for_text(client, "target-utc", "UTC", 1).await
    })
    .await?;
    choose_mode(client, mode).await?;
    click(client, "plan-restore").await?;
    let planned = wait_for(client, Locator::Id("plan-target"), 60).await?;
    let how = text_of(client, Locator::Id("plan-mode")).await?;
    let want = if mode == Mode::Preview {
        "preview"
    } else {
        "in place"
    };
    if !how.contains(want) {
        return Err(format!("the plan says {how:?}, {want} was chosen"));
    }
    let planned = planned.text().await.map_err(|e| e.to_string())?;
    if !target.starts_with(&planned.replace(" UTC", "")[..19]) {
        return Err(format!(
            "the plan is for {planned:?}, the target was {target}"
        ));
    }
    save_screenshot(client, "restore-plan.png").await?;
    wait_for(client, Locator::Id("confirm-database"), 5)
        .await?
        .send_keys("app")
        .await
        .map_err(|e| e.to_string())?;
    click(client, "start-restore").await?;
    wait_for_text(client, "restore-state", "is running", 60).await?;
    let state = text_of(client, Locator::Id("restore-state")).await?;
    Ok(state
        .split_whitespace()
        .find(|w| w.starts_with('r') && w[1..].starts_with("20"))
        .ok_or_else(|| format!("no restore id in {state:?}"))?
        .to_owned())
}

/// After the rollback the wizard offers a new target: a preset and a click on the time axis
/// fill it in the browser's zone, and the plan now expects a downtime measured on the restore
/// that just ran.
async fn choose_again(client: &Client, target: &str) -> Result<(), String> {
    let value = async || -> Result<String, String> {
        client
            .find(Locator::Id("target"))
            .await
            .map_err(|e| e.to_string())?
            .prop("value")
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "#target has no value".to_owned())
    };
    type_into(client, "target", "").await?;
    click(client, "preset-5m").await?;
    let preset = value().await?;
    if !preset.ends_with(BROWSER_OFFSET) {
        return Err(format!(
            "\"5 minutes ago\" wrote {preset:?}, not a time in {BROWSER_OFFSET}"
        ));
    }
    wait_for(client, Locator::Css("#recovery-axis svg"), 15)
        .await?
        .click()
        .await
        .map_err(|e| format!("cannot click the time axis: {e}"))?;
    let picked = value().await?;
    if picked == preset || !picked.ends_with(BROWSER_OFFSET) {
        return Err(format!(
            "a click on the axis wrote {picked:?} (the preset was {preset:?})"
        ));
    }
    type_into(client, "target", target).await?;
    choose_mode(client, Mode::InPlace).await?;
    click(client, "plan-restore").await?;
    wait_for_text(client, "plan-downtime", "the last restore here", 60).await?;
    let downtime = text_of(client, Locator::Id("plan-downtime")).await?;
    eprintln!("[browser] preset {preset:?}, axis click {picked:?}; expected downtime: {downtime}");
    save_screenshot(client, "restore-choose.png").await
}

/// Every table of the app database, each as one md5 of its rows in order.
fn checksums(sb: &Sandbox) -> String {
    sb.psql("SELECT string_agg(tablename, ' ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'")
        .split_whitespace()
        .map(|t| {
            let sum = sb.psql(&format!(
                "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM public.{t} t"
            ));
            format!("{t}={sum}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// barkeep killed with SIGKILL in the middle of a restore started from the browser, then
/// started again alone (as systemd restarts its unit): its resume finishes or undoes the
/// restore before it serves, and the page, signed in again (sessions live in memory), shows
/// that outcome. If it paused again at the target the operator rolls back; either way nothing
/// is lost.
#[test]
fn barkeep_killed_mid_restore_and_the_page_shows_what_resume_did() {
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let url = sb.http_url();
    let operator = sb.operator();
    std::thread::sleep(Duration::from_millis(1100));
    let target =
        sb.psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'");
    std::thread::sleep(Duration::from_millis(1100));
    sb.psql("DELETE FROM orders WHERE id % 3 = 0");
    let before = checksums(&sb);
    in_browser(
        &sb,
        Duration::from_secs(300),
        "killed-end.png",
        async |client| {
            sign_in(client, &url, &operator).await?;
            let id = start_in_the_wizard(client, &url, &target, Mode::InPlace).await?;
            let pid_file = sb.dir().join("barkeep.pid");
            let pid = std::fs::read_to_string(&pid_file)
                .map_err(|e| format!("cannot read {}: {e}", pid_file.display()))?;
            // Killed while barman recover writes into the data directory, the most delicate
            // moment (or at the latest step the page saw, if recover was quicker than a look).
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut steps = String::new();
            while Instant::now() < deadline {
                steps = text_of(client, Locator::Id("restore-steps"))
                    .await
                    .unwrap_or_default();
                if steps.contains("recover") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let killed = std::process::Command::new("/bin/kill")
                .args(["-KILL", pid.trim()])
                .status()
                .map_err(|e| e.to_string())?;
            if !killed.success() {
                return Err(format!("kill -KILL {} failed", pid.trim()));
            }
            eprintln!(
                "[browser] killed barkeep (pid {}) during restore {id}, at:\n{steps}",
                pid.trim()
            );
            let restarted = sb.script("restart-barkeep", &[]);
            if !restarted.status.success() {
                return Err(format!(
                    "scripts/sandbox restart-barkeep failed:\n{}{}",
                    String::from_utf8_lossy(&restarted.stdout),
                    String::from_utf8_lossy(&restarted.stderr)
                ));
            }
            sign_in(client, &url, &operator).await?;
            client
                .goto(&format!("{url}restore"))
                .await
                .map_err(|e| e.to_string())?;
            let deadline = Instant::now() + Duration::from_secs(240);
            let outcome = loop {
                if let Ok(e) = client.find(Locator::Id("last-restore")).await {
                    let t = e.text().await.unwrap_or_default();
                    if t.contains(&id) && t.contains("rolled back") {
                        break t;
                    }
                }
                if let Ok(e) = client.find(Locator::Id("restore-state")).await {
                    let t = e.text().await.unwrap_or_default();
                    if t.contains("paused at") {
                        break t;
                    }
                }
                if Instant::now() > deadline {
                    return Err(
                        "after the restart the page showed neither the rollback nor the pause"
                            .into(),
                    );
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            };
            eprintln!("[browser] after the restart the page says: {outcome}");
            save_screenshot(client, "killed-after-restart.png").await?;
            if outcome.contains("paused at") {
                click(client, "rollback-restore").await?;
                wait_for_text(client, "last-restore", "rolled back", 180).await?;
            }
            Ok(())
        },
    );
    assert_eq!(checksums(&sb), before, "the data changed");
    assert_eq!(sb.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(sb.psql("SHOW archive_command"), sb.archive_command());
}

/// Runs `sql` on the paused server from the restore page; the result table's text.
async fn query_the_paused_server(client: &Client, sql: &str) -> Result<String, String> {
    wait_for(client, Locator::Id("verify-sql"), 10).await?;
    until_hydrated(|| async {
        type_into(client, "verify-sql", sql).await?;
        click(client, "run-query").await?;
        wait_for(client, Locator::Css("#query-result tbody"), 3)
            .await
            .map(|_| ())
    })
    .await?;
    wait_for(client, Locator::Css("#query-result tbody"), 30)
        .await?
        .text()
        .await
        .map_err(|e| e.to_string())
}

/// A restore rolled back from the browser loses nothing: after it, every table is what it was
/// before the restore started, to the byte (checksums), the writes made after the target
/// included; the paused copy really was the older state.
#[test]
fn a_rollback_through_the_wizard_loses_nothing() {
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let url = sb.http_url();
    let operator = sb.operator();
    let orders_at_target = sb.psql("SELECT count(*) FROM orders");
    std::thread::sleep(Duration::from_millis(1100));
    let target =
        sb.psql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'");
    std::thread::sleep(Duration::from_millis(1100));
    // Writes after the target: the restore would lose them; the rollback must keep them.
    sb.psql(
        "INSERT INTO orders (customer_id, amount, status) \
         SELECT customer_id, amount, status FROM orders LIMIT 25",
    );
    let before = checksums(&sb);
    assert!(
        before.contains("orders="),
        "no checksum of orders: {before}"
    );
    let orders_now = sb.psql("SELECT count(*) FROM orders");
    assert_ne!(
        orders_now, orders_at_target,
        "the insert after the target inserted nothing"
    );
    in_browser(
        &sb,
        Duration::from_secs(300),
        "rollback-end.png",
        async |client| {
            sign_in(client, &url, &operator).await?;
            start_in_the_wizard(client, &url, &target, Mode::InPlace).await?;
            wait_for_text(client, "restore-state", "paused at", 240).await?;
            let rows = query_the_paused_server(client, "SELECT count(*) FROM orders").await?;
            if rows.trim() != orders_at_target {
                return Err(format!(
                    "the paused copy has {rows:?} orders; at the target there were {orders_at_target}"
                ));
            }
            click(client, "rollback-restore").await?;
            wait_for_text(client, "last-restore", "rolled back", 180).await?;
            eprintln!("[browser] rolled back from the wizard");
            choose_again(client, &target).await
        },
    );
    assert_eq!(checksums(&sb), before, "the rollback changed the data");
    assert_eq!(sb.psql("SELECT count(*) FROM orders"), orders_now);
    assert_eq!(sb.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(sb.psql("SHOW archive_command"), sb.archive_command());
}

/// Another person, in another browser (its own chromium, profile and session), opens the
/// restore page in the middle of the restore and sees the same restore: the page shows the
/// engine's journal, not the first browser's state.
async fn a_second_browser_sees(
    url: &str,
    operator: &(String, String),
    restore_id: &str,
) -> Result<(), String> {
    let driver = ChromeDriver::try_start()?;
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(driver.capabilities())
        .connect(&driver.url())
        .await
        .map_err(|e| format!("no second WebDriver session: {e}"))?;
    let seen = async {
        sign_in(&client, url, operator).await?;
        client
            .goto(&format!("{url}restore"))
            .await
            .map_err(|e| e.to_string())?;
        wait_for_text(&client, "restore-state", restore_id, 30).await?;
        save_screenshot(&client, "restore-second-browser.png").await
    }
    .await;
    let _ = client.close().await;
    seen.map_err(|e| format!("the second browser: {e}"))?;
    eprintln!("[browser] a second browser shows restore {restore_id} too");
    Ok(())
}

/// After the accept, the data directory the restore set aside is on the History page; the
/// operator types its id and discards it, and it is gone from the disk.
async fn discard_what_it_set_aside(
    client: &Client,
    url: &str,
    restore_id: &str,
    state_dir: &std::path::Path,
) -> Result<(), String> {
    let kept = state_dir.join("pre-restore").join(restore_id);
    if !kept.is_dir() {
        return Err(format!(
            "the accepted restore kept nothing at {}",
            kept.display()
        ));
    }
    client
        .goto(&format!("{url}history"))
        .await
        .map_err(|e| e.to_string())?;
    let list = wait_for(client, Locator::Id("kept-list"), 15)
        .await?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if !list.contains(restore_id) || !list.contains("MiB") {
        return Err(format!(
            "the History page does not list {restore_id} with its size: {list:?}"
        ));
    }
    let button = format!("discard-button-{restore_id}");
    until_hydrated(|| async {
        type_into(client, &format!("discard-{restore_id}"), restore_id).await?;
        let enabled = client
            .find(Locator::Id(&button))
            .await
            .map_err(|e| e.to_string())?
            .is_enabled()
            .await
            .map_err(|e| e.to_string())?;
        if enabled {
            Ok(())
        } else {
            Err("the discard button is still disabled".to_owned())
        }
    })
    .await?;
    save_screenshot(client, "history-discard.png").await?;
    click(client, &button).await?;
    wait_for(client, Locator::Id("kept-none"), 60).await?;
    if kept.exists() {
        return Err(format!(
            "{} is still on disk after the discard",
            kept.display()
        ));
    }
    eprintln!(
        "[browser] discarded {} from the History page",
        kept.display()
    );
    Ok(())
}

async fn wait_for(
    client: &Client,
    loc: Locator<'_>,
    seconds: u64,
) -> Result<fantoccini::elements::Element, String> {
    client
        .wait()
        .at_most(Duration::from_secs(seconds))
        .for_element(loc)
        .await
        .map_err(|e| format!("{loc:?} did not appear within {seconds} s ({e})"))
}

async fn wait_for_text(client: &Client, id: &str, text: &str, seconds: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(e) = client.find(Locator::Id(id)).await {
            last = e.text().await.unwrap_or_default();
            if last.contains(text) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "#{id} never said {text:?} within {seconds} s (last: {last:?})"
    ))
}

/// Runs `attempt` until it succeeds or the page has had [`HYDRATION_BUDGET`] to hydrate.
async fn until_hydrated<F, Fut>(attempt: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + HYDRATION_BUDGET;
    loop {
        match attempt().await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!(
                    "not done within {} s: {e}",
                    HYDRATION_BUDGET.as_secs()
                ))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

async fn type_into(client: &Client, id: &str, text: &str) -> Result<(), String> {
    let e = client
        .find(Locator::Id(id))
        .await
        .map_err(|e| format!("no #{id}: {e}"))?;
    e.clear()
        .await
        .map_err(|e| format!("cannot clear #{id}: {e}"))?;
    e.send_keys(text)
        .await
        .map_err(|e| format!("cannot type into #{id}: {e}"))
}

async fn click(client: &Client, id: &str) -> Result<(), String> {
    client
        .find(Locator::Id(id))
        .await
        .map_err(|e| format!("no #{id}: {e}"))?
        .click()
        .await
        .map_err(|e| format!("cannot click #{id}: {e}"))
}

/// Issue 12 through the browser: a harmful DELETE that Barman does not have yet; the person
/// opens "Find the mistake", archives the current WAL from there, sees the DELETE listed among
/// the suspicious transactions, restores to just before it with one click, sees the rows back
/// on the paused server and accepts. Checked afterwards from outside with psql.
#[test]
fn the_mistake_found_in_the_wizard_and_undone() {
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let url = sb.http_url();
    let operator = sb.operator();
    let orders_before = sb.psql("SELECT count(*) FROM orders");
    let harmed = sb
        .psql("WITH d AS (DELETE FROM orders WHERE id % 3 = 0 RETURNING 1) SELECT count(*) FROM d");
    let harm = format!("DELETE {} rows from orders", thousands(&harmed));
    in_browser(
        &sb,
        Duration::from_secs(300),
        "mistake-end.png",
        async |client| {
            sign_in(client, &url, &operator).await?;
            client
                .goto(&format!("{url}restore"))
                .await
                .map_err(|e| e.to_string())?;
            wait_for(client, Locator::Id("transactions-panel"), 30).await?;
            client
                .find(Locator::Css("#transactions-panel summary"))
                .await
                .map_err(|e| e.to_string())?
                .click()
                .await
                .map_err(|e| e.to_string())?;
            until_hydrated(|| async {
                click(client, "list-transactions").await?;
                wait_for(client, Locator::Id("transactions-summary"), 3)
                    .await
                    .map(|_| ())
            })
            .await?;
            // Not archived yet: the newest WAL is still in pg_wal. One click sends it, and the
            // list is read again.
            click(client, "switch-wal-for-list").await?;
            wait_for_text(client, "transactions", &harm, 60).await?;
            save_screenshot(client, "transactions.png").await?;
            let row = client
                .find(Locator::XPath(&format!(
                    "//table[@id='transactions']//tr[contains(., '{harm}')]"
                )))
                .await
                .map_err(|e| e.to_string())?;
            let xid: String = row
                .attr("id")
                .await
                .map_err(|e| e.to_string())?
                .and_then(|id| id.strip_prefix("txn-").map(str::to_owned))
                .ok_or("the row has no id")?;
            if !row
                .attr("class")
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default()
                .contains("suspicious")
            {
                return Err("the DELETE is not marked suspicious".into());
            }
            click(client, &format!("before-{xid}")).await?;
            wait_for_text(
                client,
                "target-utc",
                &format!("just before transaction {xid}"),
                5,
            )
            .await?;
            // The default here: a preview, swapped in on accept.
            choose_mode(client, Mode::Preview).await?;
            click(client, "plan-restore").await?;
            wait_for_text(
                client,
                "plan-target",
                &format!("just before transaction {xid}"),
                60,
            )
            .await?;
            wait_for(client, Locator::Id("confirm-database"), 5)
                .await?
                .send_keys("app")
                .await
                .map_err(|e| e.to_string())?;
            click(client, "start-restore").await?;
            wait_for_text(
                client,
                "restore-state",
                "paused just before transaction",
                240,
            )
            .await?;
            orders_back_then_accept(client, &orders_before, "paused-before-transaction.png").await
        },
    );
    assert_eq!(sb.psql("SELECT count(*) FROM orders"), orders_before);
    assert_eq!(sb.psql("SELECT pg_is_in_recovery()"), "f");
}

/// On the paused page: the paused server has `orders` orders (a query in the wizard), the page
/// saved as `shot`, then accepted.
async fn orders_back_then_accept(client: &Client, orders: &str, shot: &str) -> Result<(), String> {
    let rows = query_the_paused_server(client, "SELECT count(*) FROM orders").await?;
    if rows.trim() != orders {
        return Err(format!(
            "the paused server has {rows:?} orders; {orders} were there at the target"
        ));
    }
    save_screenshot(client, shot).await?;
    click(client, "accept-restore").await?;
    wait_for_text(client, "last-restore", "accepted", 180).await
}

/// `5000` as the list writes it: `5,000`.
fn thousands(n: &str) -> String {
    let mut out = String::new();
    for (i, c) in n.chars().enumerate() {
        if i > 0 && (n.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}
