//! Running the programs barkeep drives (barman and the rsync it starts, pg_ctl, systemctl): argv
//! only, never a shell; every child in a process group of its own, killed as a group when
//! barkeep gives up on it (time-out, cancelled request); and, during a restore, every child
//! marked in its environment with the restore's id so that after a crash of barkeep itself
//! (SIGKILL, OOM kill, power cut of the process) `resume` can find whatever is still running
//! for that restore, kill it and wait until it is gone BEFORE it touches any directory. Without
//! that, an orphaned `barman recover` goes on writing `recovery.signal` and
//! `archive_command = false` into whatever directory now has the name it was given.
//!
//! On NixOS the barkeep unit's cgroup already ends every child when the service's main process
//! dies (KillMode=control-group, before Restart=): that covers `barkeep serve`. It does not
//! cover the CLI run by hand from a login shell, whose children live in the user's session
//! scope; the marker and the group kill below cover both.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// The environment variable that marks a child (and, by inheritance, its children) as working
/// for one restore.
pub const RESTORE_MARK: &str = "BARKEEP_RESTORE_ID";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "`{command}` did not finish within {seconds} s and was stopped (with its process group)"
    )]
    Timeout { command: String, seconds: u64 },
    #[error(
        "{count} process(es) of restore {restore_id} are still alive after SIGKILL ({which}); \
         refusing to touch the data directory while they may write into it"
    )]
    Survivors {
        restore_id: String,
        count: usize,
        which: String,
    },
}

/// What a child printed, kept whole for the restore log.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CommandOutput {
    pub command: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed_ms: u64,
}

impl CommandOutput {
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().chain(self.stderr.lines())
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Who is told about a child once it runs: the restore journal records its process group.
pub trait ChildObserver: Send + Sync {
    /// The restore the child works for: it is marked with [`RESTORE_MARK`].
    fn restore_id(&self) -> Option<String>;
    /// Called right after the spawn, before anything waits on the child.
    fn started(&self, pgid: i32, command: &str);
}

tokio::task_local! {
    /// Set by the restore runner around each step: children spawned inside inherit it.
    pub static OBSERVER: std::sync::Arc<dyn ChildObserver>;
}

/// A program with its arguments and environment.
#[derive(Debug, Clone)]
pub struct Program {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub env: Vec<(String, String)>,
    /// Variables of barkeep's own environment the child must not see.
    pub env_removed: Vec<String>,
    /// Arguments shown in logs and messages as something shorter (by index).
    pub shown_as: Vec<(usize, String)>,
    pub timeout: Duration,
}

impl Program {
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            env_removed: Vec::new(),
            shown_as: Vec::new(),
            timeout,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, items: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(items.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// An argument shown as `shown` in logs and messages (a whole script given to `-c`).
    pub fn arg_shown_as(mut self, a: impl Into<OsString>, shown: &str) -> Self {
        self.shown_as.push((self.args.len(), shown.to_owned()));
        self.args.push(a.into());
        self
    }

    /// Keeps `k` of barkeep's own environment from the child.
    pub fn env_remove(mut self, k: &str) -> Self {
        self.env_removed.push(k.to_owned());
        self
    }

    /// `program arg arg ...` for logs and messages.
    pub fn display(&self) -> String {
        let args = self.args.iter().enumerate().map(|(i, a)| {
            match self.shown_as.iter().find(|(at, _)| *at == i) {
                Some((_, shown)) => shown.clone(),
                None => a.to_string_lossy().into_owned(),
            }
        });
        std::iter::once(self.program.to_string_lossy().into_owned())
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to the end (or the time-out), reading all of stdout and stderr (barman dies of a
    /// broken pipe otherwise). A time-out or a dropped future kills the whole process group.
    pub async fn run(&self) -> Result<CommandOutput, ProcessError> {
        let mut out = Vec::new();
        self.execute(StdoutSink::Collect(&mut out)).await
    }

    /// Like [`Program::run`], but hands each line of stdout to `each` as it comes instead of
    /// keeping it: for output too large to hold (pg_waldump of a whole segment). The returned
    /// output has an empty `stdout`.
    pub async fn run_lines(
        &self,
        each: &mut (dyn FnMut(&str) + Send),
    ) -> Result<CommandOutput, ProcessError> {
        self.execute(StdoutSink::Lines(each)).await
    }

    async fn execute(&self, mut sink: StdoutSink<'_>) -> Result<CommandOutput, ProcessError> {
        let command = self.display();
        let observer = OBSERVER.try_with(|o| o.clone()).ok();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group: a kill reaches barman's rsync too, and a Ctrl-C to barkeep's
            // terminal does not reach the children half-way.
            .process_group(0)
            .kill_on_drop(true);
        for k in &self.env_removed {
            cmd.env_remove(k);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        match observer.as_ref().and_then(|o| o.restore_id()) {
            Some(id) => cmd.env(RESTORE_MARK, id),
            None => cmd.env_remove(RESTORE_MARK),
        };
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let pgid = child.id().map(|p| p as i32);
        // Kills the group if this future is dropped or times out while the leader is unreaped
        // (its pid, and so the group id, cannot have been reused then).
        let mut group = GroupGuard { pgid };
        tracing::info!(%command, pgid = ?pgid, "spawned");
        if let (Some(o), Some(pgid)) = (observer.as_ref(), pgid) {
            o.started(pgid, &command);
        }
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_all = async {
            let mut err = Vec::new();
            let o = async {
                let Some(s) = stdout.as_mut() else { return };
                match &mut sink {
                    StdoutSink::Collect(out) => {
                        let _ = s.read_to_end(out).await;
                    }
                    StdoutSink::Lines(each) => {
                        let mut lines = tokio::io::BufReader::with_capacity(1 << 16, s);
                        let mut line = Vec::new();
                        while matches!(lines.read_until(b'\n', &mut line).await, Ok(n) if n > 0) {
                            let text = String::from_utf8_lossy(&line);
                            each(text.trim_end_matches(['\n', '\r']));
                            line.clear();
                        }
                    }
                }
            };
            let e = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.read_to_end(&mut err).await;
                }
            };
            tokio::join!(o, e);
            let status = child.wait().await;
            (err, status)
        };
        let (err, status) = match tokio::time::timeout(self.timeout, read_all).await {
            Ok(r) => r,
            Err(_) => {
                return Err(ProcessError::Timeout {
                    command,
                    seconds: self.timeout.as_secs(),
                })
            }
        };
        // Reaped: from here on the group id may be reused; never signal it again.
        group.pgid = None;
        let status = status.map_err(|source| ProcessError::Spawn {
            program: self.program.clone(),
            source,
        })?;
        let output = CommandOutput {
            command,
            code: status.code(),
            stdout: match sink {
                StdoutSink::Collect(out) => String::from_utf8_lossy(out).into_owned(),
                StdoutSink::Lines(_) => String::new(),
            },
            stderr: String::from_utf8_lossy(&err).into_owned(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        for line in output.lines() {
            tracing::debug!(target: "barkeep::child", "{line}");
        }
        Ok(output)
    }
}

/// Where a child's stdout goes: kept whole, or handed on line by line.
enum StdoutSink<'a> {
    Collect(&'a mut Vec<u8>),
    Lines(&'a mut (dyn FnMut(&str) + Send)),
}

struct GroupGuard {
    pgid: Option<i32>,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
    }
}

fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        match rustix::process::kill_process_group(pid, rustix::process::Signal::KILL) {
            Ok(()) => tracing::warn!(pgid, "killed the process group of a child"),
            Err(rustix::io::Errno::SRCH) => {}
            Err(e) => tracing::warn!(pgid, error = %e, "cannot kill a child's process group"),
        }
    }
}

/// A process that works for a restore, found by its mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedProcess {
    pub pid: i32,
    pub pgid: i32,
    pub comm: String,
}

/// Every live process of this user marked as working for `restore_id`, except PostgreSQL's own
/// (a postmaster started by pg_ctl inherits the mark; it is governed by postmaster.pid and the
/// service control, never killed here).
pub fn marked_processes(restore_id: &str) -> Vec<MarkedProcess> {
    let needle = format!("{RESTORE_MARK}={restore_id}");
    let me = std::process::id() as i32;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for e in entries.filter_map(Result::ok) {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let dir = Path::new("/proc").join(pid.to_string());
        // Other users' processes are unreadable and cannot be barkeep's children.
        let Ok(environ) = std::fs::read(dir.join("environ")) else {
            continue;
        };
        if !environ.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()) {
            continue;
        }
        let Some((comm, state, pgid)) = stat_of(&dir) else {
            continue;
        };
        // A zombie writes nothing; it waits for its parent (or init) to reap it.
        if state == 'Z' || comm == "postgres" || comm == "postmaster" {
            continue;
        }
        found.push(MarkedProcess { pid, pgid, comm });
    }
    found
}

/// `comm`, state and process group from /proc/<pid>/stat (comm may hold spaces and parens).
fn stat_of(dir: &Path) -> Option<(String, char, i32)> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let _ppid = rest.next()?;
    let pgid = rest.next()?.parse().ok()?;
    Some((comm, state, pgid))
}

/// Kills every process still working for `restore_id` (its whole group) and waits until none
/// is left. The proof `resume` and `rollback` need before they move a directory.
pub async fn kill_restore_children(restore_id: &str) -> Result<usize, ProcessError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut killed = 0;
    loop {
        let found = marked_processes(restore_id);
        if found.is_empty() {
            return Ok(killed);
        }
        if Instant::now() >= deadline {
            return Err(ProcessError::Survivors {
                restore_id: restore_id.to_owned(),
                count: found.len(),
                which: found
                    .iter()
                    .map(|p| format!("{} pid {}", p.comm, p.pid))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for p in &found {
            tracing::warn!(pid = p.pid, pgid = p.pgid, comm = %p.comm, restore = restore_id,
                "killing a process left by an interrupted restore");
            // The group first (barman and its rsync), then the process itself in case it
            // moved to another group.
            if p.pgid > 1 && p.pgid != rustix::process::getpgrp().as_raw_nonzero().get() {
                kill_group(p.pgid);
            }
            if let Some(pid) = rustix::process::Pid::from_raw(p.pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            killed += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mark(String);
    impl ChildObserver for Mark {
        fn restore_id(&self) -> Option<String> {
            Some(self.0.clone())
        }
        fn started(&self, _pgid: i32, _command: &str) {}
    }

    #[tokio::test]
    async fn output_is_read_whole_and_exit_codes_kept() {
        let out = Program::new("/bin/sh", Duration::from_secs(10))
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run()
            .await
            .expect("runs");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group_and_marked_children_are_found() {
        let id = format!("rtest{}", std::process::id());
        let obs: std::sync::Arc<dyn ChildObserver> = std::sync::Arc::new(Mark(id.clone()));
        // A parent that starts a grandchild in the same group, then hangs.
        let p = Program::new("/bin/sh", Duration::from_millis(500))
            .args(["-c", "sleep 60 & sleep 60; wait"]);
        let r = OBSERVER.scope(obs.clone(), async { p.run().await }).await;
        assert!(matches!(r, Err(ProcessError::Timeout { .. })), "{r:?}");
        // Both sleeps were in the group: none survives.
        for _ in 0..100 {
            if marked_processes(&id).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(marked_processes(&id), Vec::new());

        // A marked child that escaped into its own session is still found and killed.
        let q = Program::new("/bin/sh", Duration::from_secs(5))
            .args(["-c", "setsid -f sleep 60 </dev/null >/dev/null 2>&1"]);
        OBSERVER
            .scope(obs, async { q.run().await })
            .await
            .expect("setsid -f returns at once");
        // Between fork and exec the escaped child is still called `setsid`: wait for the exec.
        let mut seen = Vec::new();
        for _ in 0..100 {
            seen = marked_processes(&id);
            if seen.iter().any(|p| p.comm == "sleep") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].comm, "sleep");
        assert_eq!(kill_restore_children(&id).await.expect("killed"), 1);
        assert!(marked_processes(&id).is_empty());
    }
}
