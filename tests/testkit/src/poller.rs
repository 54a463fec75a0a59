//! A client that asks the sandbox's PostgreSQL for `SELECT 1` every 50 ms over a new connection
//! (psql, `PGCONNECT_TIMEOUT=1`), as an application would, and remembers when it was served and
//! when not: the downtime a restore causes, measured from outside.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One poll: when it began and whether PostgreSQL answered.
type Poll = (Instant, bool);

/// Started by [`crate::Sandbox::poller`]; stops when dropped.
pub struct Poller {
    stop: Arc<AtomicBool>,
    polls: Arc<Mutex<Vec<Poll>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    pub(crate) fn start(psql: PathBuf, socket_dir: PathBuf, port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let polls = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, polls) = (stop.clone(), polls.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let at = Instant::now();
                    let served = Command::new(&psql)
                        .arg("-XAtq")
                        .arg("-h")
                        .arg(&socket_dir)
                        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres"])
                        .args(["-c", "SELECT 1"])
                        .env("PGCONNECT_TIMEOUT", "1")
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success());
                    lock(&polls).push((at, served));
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            stop,
            polls,
            thread: Some(thread),
        }
    }

    /// How many polls ran.
    pub fn count(&self) -> usize {
        lock(&self.polls).len()
    }

    /// Polls that began between `from` and `to` and were not served.
    pub fn refused_between(&self, from: Instant, to: Instant) -> usize {
        lock(&self.polls)
            .iter()
            .filter(|(at, ok)| *at >= from && *at <= to && !ok)
            .count()
    }

    /// The longest time PostgreSQL did not serve: from the first refused poll of a run to the
    /// next served one (a run still going counts up to now).
    pub fn longest_outage(&self) -> Duration {
        let polls = lock(&self.polls);
        let mut longest = Duration::ZERO;
        let mut down_since: Option<Instant> = None;
        for (at, ok) in polls.iter() {
            match (ok, down_since) {
                (false, None) => down_since = Some(*at),
                (true, Some(since)) => {
                    longest = longest.max(*at - since);
                    down_since = None;
                }
                _ => {}
            }
        }
        if let Some(since) = down_since {
            longest = longest.max(since.elapsed());
        }
        longest
    }

    /// Forgets the polls so far (the next outage is measured alone).
    pub fn reset(&self) {
        lock(&self.polls).clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
