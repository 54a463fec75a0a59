//! Figure 3: the dashboard and its live feed under BENCH_CLIENTS (200) signed-in clients for
//! BENCH_SECONDS (30) on loopback, against a running `barkeep serve` (the release build, or
//! BARKEEP_BIN). Each client does what a browser tab does: it opens the live feed
//! (`/live/dashboard`, server-sent events) and keeps it open, and loads the page (GET /, a new
//! connection each time) again and again until the time is up. Meanwhile a WAL segment is
//! archived every 10 s (by the bench, not by barkeep), so that the recovery window has news to
//! compute, and a sampler counts the barman and pg_waldump processes barkeep starts: they are
//! bounded by the check interval and by new WAL, not by the clients. The clients share one
//! session (signing in is rate-limited per address, as it should be).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions, SERVER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::table::Table;
use crate::{env_num, Samples};

/// One request may take this long before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Load {
    clients: usize,
    seconds: u64,
}

impl Load {
    pub fn from_env() -> Self {
        Self {
            clients: env_num("BENCH_CLIENTS", 200).max(1),
            seconds: env_num("BENCH_SECONDS", 30).max(1) as u64,
        }
    }
}

/// What figure 4 takes from this one: the server's memory.
pub struct WebRun {
    pub rss_idle_kib: Option<u64>,
    pub rss_peak_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
    pub clients: usize,
}

/// One client's run: page load times and errors, and its feed's first event and event count.
#[derive(Default)]
struct Client {
    pages: Vec<Duration>,
    page_errors: Vec<String>,
    pages_down: usize,
    first_event: Option<Duration>,
    events: usize,
    feed_error: Option<String>,
}

pub fn run(load: &Load) -> anyhow::Result<WebRun> {
    eprintln!(
        "[bench] figure 3: {} clients for {} s",
        load.clients, load.seconds
    );
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let port = sb
        .http_port()
        .ok_or_else(|| anyhow::anyhow!("the sandbox started no barkeep"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let pid: u32 = std::fs::read_to_string(sb.dir().join("barkeep.pid"))?
        .trim()
        .parse()?;
    sb.psql("CREATE TABLE bench_web (i int)");
    sb.barman_ok(&["backup", "--immediate-checkpoint", "--wait", SERVER]);
    sb.psql("INSERT INTO bench_web VALUES (0)");
    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
    let cookie = sign_in(addr, &sb.operator())?;
    // Past the first background barman check (5 s after start), then idle for a moment.
    std::thread::sleep(Duration::from_secs(6));
    let rss_idle_kib = proc_status_kib(pid, "VmRSS:");
    let waldump_before = logged_waldump_runs(&sb.barkeep_log());

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || sample_children(pid, &["barman", "pg_waldump"], &stop))
    };
    let cpu_before = proc_cpu_seconds(pid);
    let rt = tokio::runtime::Runtime::new()?;
    let how_long = Duration::from_secs(load.seconds);
    let started = Instant::now();
    // New WAL every 10 s while the clients run.
    let switches = {
        let stop = Arc::clone(&stop);
        let sb = &sb;
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let mut n = 0;
                while started.elapsed() + Duration::from_secs(10) < how_long {
                    std::thread::sleep(Duration::from_secs(10));
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    n += 1;
                    sb.psql(&format!("INSERT INTO bench_web VALUES ({n})"));
                    sb.barman_ok(&["switch-wal", "--force", "--archive", SERVER]);
                }
                n
            });
            let clients = rt.block_on(async {
                let tasks: Vec<_> = (0..load.clients)
                    .map(|_| {
                        let cookie = cookie.clone();
                        tokio::spawn(async move { browse(addr, &cookie, how_long).await })
                    })
                    .collect();
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap_or_default());
                }
                out
            });
            (writer.join().unwrap_or(0), clients)
        })
    };
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (switches, clients) = switches;
    let seen = sampler.join().unwrap_or_default();
    let cpu = proc_cpu_seconds(pid).zip(cpu_before).map(|(a, b)| a - b);
    let rss_peak_kib = proc_status_kib(pid, "VmHWM:");
    let rss_after_kib = proc_status_kib(pid, "VmRSS:");
    let waldump_after = logged_waldump_runs(&sb.barkeep_log());

    let pages = Samples::new(clients.iter().flat_map(|c| c.pages.clone()).collect());
    let firsts = Samples::new(clients.iter().filter_map(|c| c.first_event).collect());
    let page_errors: Vec<&String> = clients.iter().flat_map(|c| &c.page_errors).collect();
    let feed_errors: Vec<&String> = clients
        .iter()
        .filter_map(|c| c.feed_error.as_ref())
        .collect();
    let events: Vec<usize> = clients.iter().map(|c| c.events).collect();
    let down: usize = clients.iter().map(|c| c.pages_down).sum();
    let bin = std::env::var("BARKEEP_BIN").unwrap_or_else(|_| "the release build".into());

    let mut t = Table::new(
        format!(
            "Figure 3. The dashboard under {} signed-in clients for {} s on 127.0.0.1 ({bin}): \
             each keeps the live feed open and reloads the page",
            load.clients, load.seconds
        ),
        &["what", "measured"],
    );
    t.row(["page loads (GET /)".to_owned(), pages.len().to_string()]);
    t.row([
        "page loads per second".to_owned(),
        format!("{:.0}", pages.len() as f64 / wall.as_secs_f64()),
    ]);
    t.row(["page p50".to_owned(), pages.cell(0.5)]);
    t.row(["page p99".to_owned(), pages.cell(0.99)]);
    t.row([
        "page errors (not 200, timeout, reset)".to_owned(),
        page_errors.len().to_string(),
    ]);
    t.row([
        "pages that showed PostgreSQL as down".to_owned(),
        down.to_string(),
    ]);
    t.row([
        "live feeds that got events".to_owned(),
        format!("{} of {}", firsts.len(), load.clients),
    ]);
    t.row(["live feed: first event, p50".to_owned(), firsts.cell(0.5)]);
    t.row(["live feed: first event, p99".to_owned(), firsts.cell(0.99)]);
    t.row([
        "live feed: events per client (min / max)".to_owned(),
        format!(
            "{} / {}",
            events.iter().min().copied().unwrap_or(0),
            events.iter().max().copied().unwrap_or(0)
        ),
    ]);
    t.row(["live feed errors".to_owned(), feed_errors.len().to_string()]);
    t.row([
        "WAL segments archived during the run (by the bench)".to_owned(),
        switches.to_string(),
    ]);
    t.row([
        "barman processes barkeep started (sampled every 5 ms)".to_owned(),
        seen.first().copied().unwrap_or(0).to_string(),
    ]);
    t.row([
        "pg_waldump processes barkeep started (sampled every 5 ms)".to_owned(),
        seen.get(1).copied().unwrap_or(0).to_string(),
    ]);
    t.row([
        "pg_waldump runs by the engine's own counter".to_owned(),
        match (waldump_before, waldump_after) {
            (b, Some(a)) => (a - b.unwrap_or(0)).to_string(),
            _ => "not logged".into(),
        },
    ]);
    t.row([
        "barkeep CPU time".to_owned(),
        cpu.map_or_else(
            || "?".into(),
            |c| format!("{c:.1} s of {:.0} s", wall.as_secs_f64()),
        ),
    ]);
    t.note(
        "Bounds: barkeep starts barman only for its background check (server/src/live.rs, \
         CHECK_INTERVAL, every 5 minutes; the first ran before the clients came) and pg_waldump \
         only when a new WAL segment reached the catalog; neither grows with the clients. The \
         sampler can miss a pg_waldump that ends within 5 ms; the engine's counter cannot.",
    );
    if let Some(e) = page_errors.first() {
        t.note(format!("first page error: {e}"));
    }
    if let Some(e) = feed_errors.first() {
        t.note(format!("first live feed error: {e}"));
    }
    t.print();
    Ok(WebRun {
        rss_idle_kib,
        rss_peak_kib,
        rss_after_kib,
        clients: load.clients,
    })
}

/// One client for `how_long`: the live feed held open, the page loaded again and again.
async fn browse(addr: SocketAddr, cookie: &str, how_long: Duration) -> Client {
    let started = Instant::now();
    let feed = {
        let cookie = cookie.to_owned();
        tokio::spawn(async move { follow_stream(addr, &cookie, how_long).await })
    };
    let mut c = Client::default();
    while started.elapsed() < how_long {
        match get_dashboard(addr, cookie).await {
            Ok((d, down)) => {
                c.pages.push(d);
                c.pages_down += usize::from(down);
            }
            Err(e) => {
                c.page_errors.push(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    match feed.await {
        Ok(Ok((first, events))) => {
            c.first_event = first;
            c.events = events;
        }
        Ok(Err(e)) => c.feed_error = Some(e),
        Err(e) => c.feed_error = Some(e.to_string()),
    }
    c
}

/// Signs in; the session's `Cookie` header value.
fn sign_in(addr: SocketAddr, (name, password): &(String, String)) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let body = format!("name={name}&password={password}");
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "POST /auth/signin HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the sign-in gave no session: {answer}"))
}

/// A connection with `GET path` sent on it, as the signed-in operator (`Connection: close` when
/// `close`, to read the answer to its end).
async fn send_get(
    addr: SocketAddr,
    path: &str,
    cookie: &str,
    close: bool,
) -> Result<tokio::net::TcpStream, String> {
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let connection = if close { "Connection: close\r\n" } else { "" };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie}\r\n{connection}\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    Ok(s)
}

/// How each event of the stream begins.
const MARK: &str = "data: {";

/// Follows `/live/dashboard` for `how_long`: when the first event came, and how many came.
async fn follow_stream(
    addr: SocketAddr,
    cookie: &str,
    how_long: Duration,
) -> Result<(Option<Duration>, usize), String> {
    let started = Instant::now();
    let mut s = send_get(addr, "/live/dashboard", cookie, false).await?;
    let mut first = None;
    let mut events = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = Vec::new();
    while started.elapsed() < how_long {
        let left = how_long.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => break,
            Ok(Err(e)) => return Err(format!("read: {e}")),
            Ok(Ok(0)) => return Err("the stream ended".into()),
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if events == 0 && text.starts_with("HTTP/1.1 ") && !text.starts_with("HTTP/1.1 200")
                {
                    return Err(format!(
                        "answered {:?}",
                        text.lines().next().unwrap_or_default()
                    ));
                }
                let new = text.matches(MARK).count();
                if new > 0 {
                    first.get_or_insert_with(|| started.elapsed());
                    events += new;
                }
                // Keep less than a whole mark: one split between two reads is completed by the
                // next, and none is counted twice.
                let keep = seen.len().min(MARK.len() - 1);
                seen.drain(..seen.len() - keep);
            }
        }
    }
    Ok((first, events))
}

/// User plus system CPU seconds of a process (`/proc/<pid>/stat`, clock ticks of 1/100 s).
fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the state field: utime and stime are fields 14 and 15 of the whole line.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// GET / with `Connection: close`; the time to the last byte, and whether the page says
/// PostgreSQL is down.
async fn get_dashboard(addr: SocketAddr, cookie: &str) -> Result<(Duration, bool), String> {
    let started = Instant::now();
    let exchange = async {
        let mut s = send_get(addr, "/", cookie, true).await?;
        let mut body = Vec::new();
        s.read_to_end(&mut body)
            .await
            .map_err(|e| format!("read: {e}"))?;
        Ok::<_, String>(body)
    };
    let body = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))??;
    let text = String::from_utf8_lossy(&body);
    let status = text.lines().next().unwrap_or_default().to_owned();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {status:?}"));
    }
    let down = text.contains("id=\"pg-state\" class=\"error\">down<");
    Ok((started.elapsed(), down))
}

/// Counts the distinct children of `parent` with each of `names`, until `stop`.
fn sample_children(parent: u32, names: &[&str], stop: &AtomicBool) -> Vec<usize> {
    let mut seen: Vec<HashSet<u32>> = vec![HashSet::new(); names.len()];
    while !stop.load(Ordering::SeqCst) {
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.filter_map(Result::ok) {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                // pid (comm) state ppid ...
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
                    continue;
                };
                let comm = &stat[open + 1..close];
                let ppid = stat[close + 1..]
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(parent) {
                    if let Some(i) = names.iter().position(|n| *n == comm) {
                        seen[i].insert(pid);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    seen.iter().map(HashSet::len).collect()
}

/// A `/proc/<pid>/status` line in KiB (`VmRSS:`, `VmHWM:`).
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The engine's pg_waldump counter, as its "recovery window recomputed" log lines report it.
fn logged_waldump_runs(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter(|l| l.contains("recovery window recomputed"))
        .filter_map(|l| {
            let rest = &l[l.find("waldump_runs=")? + "waldump_runs=".len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .max()
}
