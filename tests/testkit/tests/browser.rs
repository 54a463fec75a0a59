//! The web app in a real browser: barkeep serving the sandbox, the dashboard loaded in headless
//! Debian chromium through chromedriver (fantoccini), the live PostgreSQL version on the page, and
//! HYDRATION proven by clicking a button whose result only a hydrated page can show (the server
//! function's answer, "Checked again at ..."). A page that renders on the server but never
//! hydrates (a broken wasm bundle, e.g. the one Debian's binaryen 108 makes) fails this test.
//!
//! Needs `scripts/sandbox install` (root), chromium + chromium-driver, and the release build
//! (`cargo leptos build --release`: `$CARGO_TARGET_DIR/release/barkeep` and `<repo>/target/site`).
//! Run as the unprivileged user: `runuser -u barkeep -- <this test binary>`.
//! `BARKEEP_SCREENSHOT_DIR=<dir>` saves the pages as `<dir>/signin.png` and `<dir>/dashboard.png`
//! (also when it fails).
//!
//! Before the dashboard: barkeep sends a browser without a session to the sign-in page, refuses
//! a wrong password in words, and lets the sandbox's operator in.

use std::time::{Duration, Instant};

use barkeep_testkit::{tail_of, ChromeDriver, Sandbox, SandboxOptions};
use fantoccini::{Client, ClientBuilder, Locator};

/// How long the page may take to hydrate (the click is retried until then).
const HYDRATION_BUDGET: Duration = Duration::from_secs(30);
/// Everything in the browser, end to end.
const BROWSER_BUDGET: Duration = Duration::from_secs(120);

#[test]
fn dashboard_shows_live_postgres_and_hydrates() {
    let t0 = Instant::now();
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let url = sb.http_url();
    let pg_version = sb.psql("SHOW server_version");
    let operator = sb.operator();
    assert!(
        pg_version.starts_with("14."),
        "server_version = {pg_version:?}"
    );
    in_browser(&sb, BROWSER_BUDGET, "dashboard.png", async |client| {
        sign_in(client, &url, &operator).await?;
        check_dashboard(client, &url, &pg_version).await
    });
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

/// The page: "barkeep", the live version in #pg-version, then hydration via #refresh-postgres.
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

    // Server rendering cannot produce this text: it appears only when the hydrated page runs the
    // button's server action and shows its answer.
    let before = text_of(client, Locator::Id("refresh-result")).await?;
    if before.contains("Checked again at") {
        return Err(format!(
            "#refresh-result says {before:?} before any click: the test would prove nothing"
        ));
    }

    let started = Instant::now();
    let mut clicks = 0u32;
    let mut last_problem = String::new();
    loop {
        match client.find(Locator::Id("refresh-postgres")).await {
            Ok(button) => match button.click().await {
                Ok(()) => clicks += 1,
                Err(e) => last_problem = format!("click: {e}"),
            },
            Err(e) => last_problem = format!("no #refresh-postgres: {e}"),
        }
        // Give this click a second to come back before clicking again.
        let round = Instant::now();
        while round.elapsed() < Duration::from_secs(1) {
            let result = text_of(client, Locator::Id("refresh-result")).await?;
            if result.contains("Checked again at") {
                eprintln!(
                    "[browser] hydrated: #refresh-result {result:?} after {clicks} click(s), {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            if result.contains("The check failed") {
                return Err(format!(
                    "the page hydrated but the server function failed: {result:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if started.elapsed() >= HYDRATION_BUDGET {
            let diagnosis = diagnose(client).await;
            return Err(format!(
                "the page did not hydrate: {clicks} click(s) on #refresh-postgres in {} s and \
                 #refresh-result never said \"Checked again at\" (last problem: {}).\n{diagnosis}",
                HYDRATION_BUDGET.as_secs(),
                if last_problem.is_empty() {
                    "none"
                } else {
                    &last_problem
                },
            ));
        }
    }
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
            restore_through_the_wizard(client, &url, &target, &orders).await
        },
    );
    // From outside: every order is back, archiving is on, and PostgreSQL serves on a new timeline.
    assert_eq!(sb.psql("SELECT count(*) FROM orders"), orders);
    assert_eq!(sb.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(sb.psql("SHOW archive_command"), sb.archive_command());
}

async fn restore_through_the_wizard(
    client: &Client,
    url: &str,
    target: &str,
    orders: &str,
) -> Result<(), String> {
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
    click(client, "plan-restore").await?;
    let planned = wait_for(client, Locator::Id("plan-target"), 60).await?;
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
    // The steps, then paused; a reload on the way shows the same restore (the journal's).
    wait_for_text(client, "restore-state", "is running", 60).await?;
    save_screenshot(client, "restore-running.png").await?;
    client.refresh().await.map_err(|e| e.to_string())?;
    wait_for_text(client, "restore-state", "paused at", 240).await?;
    let steps = text_of(client, Locator::Id("restore-steps")).await?;
    for step in [
        "plan",
        "archive",
        "stop",
        "set_aside",
        "recover",
        "start_paused",
    ] {
        if !steps.contains(step) {
            return Err(format!("the steps table lacks {step}: {steps}"));
        }
    }
    // Verify: the rows are back on the paused server.
    wait_for(client, Locator::Id("verify-sql"), 10).await?;
    until_hydrated(|| async {
        type_into(client, "verify-sql", "SELECT count(*) FROM orders").await?;
        click(client, "run-query").await?;
        wait_for(client, Locator::Css("#query-result tbody"), 3)
            .await
            .map(|_| ())
    })
    .await?;
    let rows = wait_for(client, Locator::Css("#query-result tbody"), 30)
        .await?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    if rows.trim() != orders {
        return Err(format!(
            "the paused server has {rows:?} orders, {orders} were there at the target"
        ));
    }
    save_screenshot(client, "restore-paused.png").await?;
    click(client, "accept-restore").await?;
    wait_for_text(client, "last-restore", "accepted", 120).await?;
    eprintln!("[browser] restored to {target} through the wizard: {orders} orders, accepted");
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
