//! The real stack for tests: PostgreSQL 14.23 + Barman 3.3.0 (local-rsync, archive_command into
//! Barman's incoming directory, exactly as the NixOS module sets them up), brought up in a fresh
//! directory by `scripts/sandbox up --no-barkeep` as the CURRENT user.
//!
//! Prerequisite (once, as root): `scripts/sandbox install`. Tests then run as the unprivileged user
//! `barkeep` (PostgreSQL refuses root): `runuser -u barkeep -- <test binary>`. Run as root, the
//! script installs and drops to `barkeep` itself.
//!
//! ```no_run
//! use barkeep_testkit::{Sandbox, SandboxOptions};
//! let sb = Sandbox::up(SandboxOptions::default());
//! assert!(sb.psql("SHOW server_version").starts_with("14."));
//! let out = sb.barman(&["check", "pg"]);
//! assert!(out.status.success());
//! // dropped: `scripts/sandbox down`, then the directory is removed
//! ```
//!
//! Set `BARKEEP_KEEP_SANDBOX=1` to keep the directory (still stopped) for a post-mortem.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The Barman server name the sandbox configures.
pub const SERVER: &str = "pg";

/// Options of [`Sandbox::up`].
#[derive(Debug, Clone, Default)]
pub struct SandboxOptions {
    /// PostgreSQL's `timezone` setting (`--pg-timezone`); the machine's zone when `None`.
    pub pg_timezone: Option<String>,
    /// Parent of the sandbox directory; `/var/tmp` when `None` (keep it short: the socket path
    /// must stay under 100 bytes).
    pub parent: Option<PathBuf>,
}

impl SandboxOptions {
    pub fn pg_timezone(mut self, tz: impl Into<String>) -> Self {
        self.pg_timezone = Some(tz.into());
        self
    }
}

/// Why a sandbox did not come up.
#[derive(Debug)]
pub struct SandboxError(pub String);

impl fmt::Display for SandboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SandboxError {}

/// A running PostgreSQL + Barman stack in its own directory. Dropping it runs
/// `scripts/sandbox down` and removes the directory.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
    pg_port: u16,
    pg_bin: PathBuf,
    barman_bin: PathBuf,
    keep: bool,
}

impl Sandbox {
    /// Brings a fresh sandbox up, panicking with the script's output when it fails.
    pub fn up(opts: SandboxOptions) -> Sandbox {
        match Sandbox::try_up(opts) {
            Ok(sb) => sb,
            Err(e) => panic!("sandbox did not come up:\n{e}"),
        }
    }

    /// Brings a fresh sandbox up: a new directory `<parent>/bk-XXXX`, a free port, no barkeep.
    /// Retries with another port when the chosen one was taken meanwhile.
    pub fn try_up(opts: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let parent = opts
            .parent
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/tmp"));
        let mut last = String::new();
        for _attempt in 0..3 {
            let dir = fresh_dir(&parent).map_err(|e| {
                SandboxError(format!(
                    "cannot create a directory under {}: {e}",
                    parent.display()
                ))
            })?;
            let port = free_port()
                .map_err(|e| SandboxError(format!("cannot find a free TCP port: {e}")))?;
            let mut cmd = Command::new(script());
            cmd.arg("up")
                .arg("--dir")
                .arg(&dir)
                .arg("--pg-port")
                .arg(port.to_string())
                .arg("--no-barkeep");
            if let Some(tz) = &opts.pg_timezone {
                cmd.arg("--pg-timezone").arg(tz);
            }
            let started = Instant::now();
            let out = run(&mut cmd);
            if out.status.success() {
                let env = read_env_file(&dir.join("sandbox.env")).map_err(SandboxError)?;
                let get = |k: &str| {
                    env.get(k).cloned().ok_or_else(|| {
                        SandboxError(format!("{}/sandbox.env has no {k}", dir.display()))
                    })
                };
                let sb = Sandbox {
                    pg_bin: PathBuf::from(get("pg_bin")?),
                    barman_bin: PathBuf::from(get("barman")?),
                    pg_port: port,
                    keep: std::env::var_os("BARKEEP_KEEP_SANDBOX").is_some(),
                    dir,
                };
                eprintln!(
                    "[testkit] sandbox {} up on port {} in {:.1} s",
                    sb.dir.display(),
                    port,
                    started.elapsed().as_secs_f64()
                );
                return Ok(sb);
            }
            last = format!(
                "{:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                cmd,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let port_taken =
                last.contains("Address already in use") || last.contains("could not bind");
            // Never leave a half-made stack behind.
            let _ = run(Command::new(script()).arg("destroy").arg("--dir").arg(&dir));
            let _ = std::fs::remove_dir_all(&dir);
            if !port_taken {
                break;
            }
        }
        Err(SandboxError(last))
    }

    /// The sandbox directory D.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// barkeep's configuration for this stack (D/barkeep.toml, the schema of engine's config.rs).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("barkeep.toml")
    }
    /// PostgreSQL's TCP port (on localhost) and socket port.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }
    /// The PostgreSQL 14 binaries (psql, pg_ctl, pg_waldump, ...).
    pub fn pg_bin_dir(&self) -> &Path {
        &self.pg_bin
    }
    /// The unix socket directory (PGHOST).
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.join("run")
    }
    /// PGDATA.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("pgdata")
    }
    /// The server log given to `pg_ctl -l`.
    pub fn pg_log(&self) -> PathBuf {
        self.dir.join("log/postgresql.log")
    }
    /// barkeep's state directory (same filesystem as PGDATA).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }
    /// The barman executable (Barman 3.3.0 in its venv).
    pub fn barman_bin(&self) -> &Path {
        &self.barman_bin
    }
    /// barman.conf (`barman -c`).
    pub fn barman_config(&self) -> PathBuf {
        self.dir.join("barman/barman.conf")
    }
    /// barman_home; the catalog of the server is `<home>/pg`.
    pub fn barman_home(&self) -> PathBuf {
        self.dir.join("barman/home")
    }
    /// The archive_command in postgresql.conf (and in barkeep.toml).
    pub fn archive_command(&self) -> String {
        let incoming = self.barman_home().join(SERVER).join("incoming");
        format!("test ! -f {0}/%f && cp %p {0}/%f", incoming.display())
    }

    /// Runs SQL with psql over the socket in the database `app` (`-XAtq -v ON_ERROR_STOP=1`);
    /// returns stdout without the trailing newline. Panics when psql fails.
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql_db("app", sql)
            .unwrap_or_else(|e| panic!("psql failed on {sql:?}:\n{e}"))
    }

    /// [`Sandbox::psql`] in another database, returning psql's stderr on failure.
    pub fn try_psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = run(self.psql_command(db).arg("-c").arg(sql));
        if out.status.success() {
            let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
            while s.ends_with('\n') {
                s.pop();
            }
            Ok(s)
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A psql command for `db` over the socket, ready for more arguments.
    pub fn psql_command(&self, db: &str) -> Command {
        let mut cmd = Command::new(self.pg_bin.join("psql"));
        cmd.arg("-XAtq")
            .args(["-v", "ON_ERROR_STOP=1"])
            .arg("-h")
            .arg(self.socket_dir())
            .arg("-p")
            .arg(self.pg_port.to_string())
            .args(["-U", "postgres", "-d", db])
            .env_remove("PGSERVICE")
            .env_remove("PGPASSWORD");
        cmd
    }

    /// Runs `barman -c <config> ARGS` with TZ=UTC; all output read.
    pub fn barman(&self, args: &[&str]) -> Output {
        run(self.barman_command().args(args))
    }

    /// Like [`Sandbox::barman`] but panics with the output unless barman exits 0; returns stdout.
    pub fn barman_ok(&self, args: &[&str]) -> String {
        let out = self.barman(args);
        if !out.status.success() {
            panic!(
                "barman {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A `barman -c <config>` command with TZ=UTC, ready for more arguments.
    pub fn barman_command(&self) -> Command {
        let mut cmd = Command::new(&self.barman_bin);
        cmd.env("TZ", "UTC").arg("-c").arg(self.barman_config());
        cmd
    }

    /// `barman -f json ARGS`, parsed.
    pub fn barman_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["-f", "json"];
        all.extend_from_slice(args);
        let stdout = self.barman_ok(&all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("barman {all:?} printed no JSON ({e}):\n{stdout}"))
    }

    /// The archived WAL file names, in xlog.db order (`<home>/pg/wals/xlog.db`).
    pub fn archived_wal(&self) -> Vec<String> {
        let path = self.barman_home().join(SERVER).join("wals/xlog.db");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Runs `scripts/sandbox SUBCOMMAND --dir D EXTRA...` (`status`, `down`, `up`, ...).
    pub fn script(&self, subcommand: &str, extra: &[&str]) -> Output {
        run(Command::new(script())
            .arg(subcommand)
            .arg("--dir")
            .arg(&self.dir)
            .args(extra))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let out = self.script("down", &[]);
        if !out.status.success() {
            eprintln!(
                "[testkit] scripts/sandbox down --dir {} failed ({}):\n{}{}",
                self.dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if self.keep {
            eprintln!(
                "[testkit] kept {} (BARKEEP_KEEP_SANDBOX)",
                self.dir.display()
            );
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("[testkit] cannot remove {}: {e}", self.dir.display());
        }
    }
}

/// The repository root (this crate is `<root>/tests/testkit`).
pub fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("CARGO_MANIFEST_DIR has two parents")
}

/// `<root>/scripts/sandbox`.
pub fn script() -> PathBuf {
    repo_root().join("scripts/sandbox")
}

/// Runs a command to completion, reading all output (stdin closed).
fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// A new, empty directory `<parent>/bk-<pid>-<n>-<nanos>` (short: the socket lives inside).
fn fresh_dir(parent: &Path) -> std::io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    loop {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(
            "bk-{}-{n}-{:x}",
            std::process::id(),
            nanos & 0xffff
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A TCP port free on 127.0.0.1 right now (the script retries on a race, see `try_up`).
fn free_port() -> std::io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(l.local_addr()?.port())
}

/// `key=value` lines of D/sandbox.env.
fn read_env_file(path: &Path) -> Result<HashMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}
