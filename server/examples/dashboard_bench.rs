//! 200 concurrent dashboard clients against a running `barkeep serve` on the real stack, signed
//! in as the sandbox's operator:
//! 1. page loads: GET / on 127.0.0.1 from 200 clients at once, each a few times (bounded: it
//!    stops by itself), while a sampler watches barkeep's children. p50/p99 latency, errors,
//!    pages that showed PostgreSQL as down, the pg_waldump processes started (counted by the
//!    sampler and, when the binary logs it, by the engine's own counter), barkeep's peak RSS;
//! 2. the live dashboard: 200 event streams (`/live/dashboard`) open at once for a while: the
//!    time to each client's first event (p50/p99), events per client, and barkeep's CPU time
//!    for all of them (one engine read serves every stream).
//!
//! Nothing is asserted.
//! Run it with `scripts/bench dashboard`; BARKEEP_BIN chooses the binary (e.g. an older build
//! for comparison), BENCH_CLIENTS and BENCH_ROUNDS the load.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use barkeep_testkit::{Sandbox, SandboxOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One request may take this long before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> anyhow::Result<()> {
    let clients = env_num("BENCH_CLIENTS", 200);
    let rounds = env_num("BENCH_ROUNDS", 3);
    let empty_switches = env_num("BENCH_EMPTY_SWITCHES", 4);
    let sb = Sandbox::up(SandboxOptions::default().with_barkeep());
    let port = sb
        .http_port()
        .ok_or_else(|| anyhow::anyhow!("the sandbox started no barkeep"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let pid: u32 = std::fs::read_to_string(sb.dir().join("barkeep.pid"))?
        .trim()
        .parse()?;

    // A backup, a commit, then forced switches with no commit after it: the newest segments hold
    // no transaction, so the window walks back over them (as after backups and idle periods).
    sb.psql("CREATE TABLE t (id int)");
    sb.barman_ok(&["backup", "--wait", "pg"]);
    sb.psql("INSERT INTO t VALUES (1)");
    for _ in 0..=empty_switches {
        sb.barman_ok(&["switch-wal", "--force", "--archive", "pg"]);
    }
    let segments = sb.archived_wal().len();

    let cookie = sign_in(addr, &sb.operator())?;
    let rss_before = proc_status_kib(pid, "VmRSS:");
    let runs_before = logged_waldump_runs(&sb.barkeep_log());

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || sample_children(pid, "pg_waldump", &stop))
    };

    let rt = tokio::runtime::Runtime::new()?;
    let started = Instant::now();
    let results = Arc::new(Mutex::new(Vec::<Result<(Duration, bool), String>>::new()));
    rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let results = Arc::clone(&results);
                let cookie = cookie.clone();
                tokio::spawn(async move {
                    for _ in 0..rounds {
                        let r = get_dashboard(addr, &cookie).await;
                        if let Ok(mut v) = results.lock() {
                            v.push(r);
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    let wall = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let (spawned, peak_at_once) = sampler.join().unwrap_or((0, 0));
    let runs_after = logged_waldump_runs(&sb.barkeep_log());
    let rss_peak = proc_status_kib(pid, "VmHWM:");

    let results = results.lock().map(|v| v.clone()).unwrap_or_default();
    let mut latencies: Vec<Duration> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(d, _)| *d))
        .collect();
    latencies.sort();
    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let shown_down = results
        .iter()
        .filter(|r| matches!(r, Ok((_, true))))
        .count();
    let bin = std::env::var("BARKEEP_BIN").unwrap_or_else(|_| "(the release build)".into());

    println!();
    println!(
        "200 concurrent dashboard reads: {clients} clients x {rounds} GET / on 127.0.0.1, \
         {segments} archived WAL files, barkeep {bin}"
    );
    println!("| {:<52} | {:>14} |", "what", "measured");
    println!("|{:-<54}|{:->16}|", "", "");
    let row = |k: &str, v: String| println!("| {k:<52} | {v:>14} |");
    row("requests", results.len().to_string());
    row("wall time", format!("{:.1} s", wall.as_secs_f64()));
    row("latency p50", percentile(&latencies, 0.50));
    row("latency p99", percentile(&latencies, 0.99));
    row(
        "latency max",
        latencies
            .last()
            .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "—".into()),
    );
    row("errors (not 200, timeout, reset)", errors.len().to_string());
    row("pages showing PostgreSQL as down", shown_down.to_string());
    row(
        "pg_waldump processes seen (sampled every 5 ms)",
        spawned.to_string(),
    );
    row(
        "pg_waldump processes at once (peak)",
        peak_at_once.to_string(),
    );
    row(
        "pg_waldump runs by the engine's counter",
        match (runs_before, runs_after) {
            (b, Some(a)) => (a - b.unwrap_or(0)).to_string(),
            _ => "not logged".into(),
        },
    );
    row(
        "barkeep RSS before",
        rss_before
            .map(|k| format!("{} MiB", k / 1024))
            .unwrap_or_else(|| "?".into()),
    );
    row(
        "barkeep peak RSS (VmHWM)",
        rss_peak
            .map(|k| format!("{} MiB", k / 1024))
            .unwrap_or_else(|| "?".into()),
    );
    if let Some(e) = errors.first() {
        println!("first error: {e}");
    }

    let live_for = Duration::from_secs(env_num("BENCH_LIVE_SECS", 10) as u64);
    let cpu_before = proc_cpu_seconds(pid);
    let streams = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let cookie = cookie.clone();
                tokio::spawn(async move { follow_stream(addr, &cookie, live_for).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap_or_else(|e| Err(e.to_string())));
        }
        out
    });
    let cpu = proc_cpu_seconds(pid).zip(cpu_before).map(|(a, b)| a - b);
    let mut firsts: Vec<Duration> = streams
        .iter()
        .filter_map(|r| r.as_ref().ok().and_then(|(first, _)| *first))
        .collect();
    firsts.sort();
    let events: Vec<usize> = streams
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, n)| *n))
        .collect();
    let stream_errors: Vec<&String> = streams.iter().filter_map(|r| r.as_ref().err()).collect();
    println!();
    println!(
        "The live dashboard: {clients} event streams open at once for {} s",
        live_for.as_secs()
    );
    println!("| {:<52} | {:>14} |", "what", "measured");
    println!("|{:-<54}|{:->16}|", "", "");
    row("streams that got events", firsts.len().to_string());
    row(
        "first event after connecting, p50",
        percentile(&firsts, 0.50),
    );
    row(
        "first event after connecting, p99",
        percentile(&firsts, 0.99),
    );
    row(
        "events per stream (min / max)",
        format!(
            "{} / {}",
            events.iter().min().copied().unwrap_or(0),
            events.iter().max().copied().unwrap_or(0)
        ),
    );
    row("stream errors", stream_errors.len().to_string());
    row(
        "barkeep CPU time for all streams",
        cpu.map(|c| format!("{c:.2} s"))
            .unwrap_or_else(|| "?".into()),
    );
    if let Some(e) = stream_errors.first() {
        println!("first stream error: {e}");
    }
    Ok(())
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

/// The `p`-quantile of sorted `v` in milliseconds, or a dash.
fn percentile(v: &[Duration], p: f64) -> String {
    if v.is_empty() {
        return "—".into();
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.0} ms", v[i].as_secs_f64() * 1000.0)
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

/// Counts the distinct children of `parent` named `name`, and the most at once, until `stop`.
fn sample_children(parent: u32, name: &str, stop: &AtomicBool) -> (usize, usize) {
    let mut seen = HashSet::new();
    let mut peak = 0;
    while !stop.load(Ordering::SeqCst) {
        let mut now = 0;
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
                if comm == name && ppid == Some(parent) {
                    now += 1;
                    seen.insert(pid);
                }
            }
        }
        peak = peak.max(now);
        std::thread::sleep(Duration::from_millis(5));
    }
    (seen.len(), peak)
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
