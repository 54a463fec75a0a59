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

mod poller;

pub use poller::Poller;

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
    /// Also start barkeep (`up` without `--no-barkeep`) on a free HTTP port on 127.0.0.1; see
    /// [`Sandbox::http_url`]. Needs the release binary (`cargo leptos build --release`:
    /// `$CARGO_TARGET_DIR/release/barkeep`, or `BARKEEP_BIN`) and the site in `<repo>/target/site`.
    pub barkeep: bool,
    /// Also run Garage on 127.0.0.1 as the off-site store (`up --offsite`), with barkeep.toml's
    /// `[offsite]` pointing at its bucket. Needs `scripts/sandbox install --offsite` (root).
    pub offsite: bool,
}

impl SandboxOptions {
    /// Garage as the off-site store too (see [`SandboxOptions::offsite`]).
    pub fn with_offsite(mut self) -> Self {
        self.offsite = true;
        self
    }

    pub fn pg_timezone(mut self, tz: impl Into<String>) -> Self {
        self.pg_timezone = Some(tz.into());
        self
    }

    /// Starts barkeep too (see [`SandboxOptions::barkeep`]).
    pub fn with_barkeep(mut self) -> Self {
        self.barkeep = true;
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
    http_port: Option<u16>,
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

    /// Brings a fresh sandbox up: a new directory `<parent>/bk-XXXX`, a free port, and barkeep on
    /// another free port only when [`SandboxOptions::barkeep`] is set. Retries with other ports
    /// when a chosen one was taken meanwhile.
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
            let http_port = if opts.barkeep {
                Some(
                    free_port_except(&[port])
                        .map_err(|e| SandboxError(format!("cannot find a free TCP port: {e}")))?,
                )
            } else {
                None
            };
            let mut cmd = Command::new(script());
            cmd.arg("up")
                .arg("--dir")
                .arg(&dir)
                .arg("--pg-port")
                .arg(port.to_string());
            if opts.offsite {
                let mut taken = vec![port];
                taken.extend(http_port);
                let s3 = free_port_except(&taken)
                    .map_err(|e| SandboxError(format!("cannot find a free TCP port: {e}")))?;
                taken.push(s3);
                let rpc = free_port_except(&taken)
                    .map_err(|e| SandboxError(format!("cannot find a free TCP port: {e}")))?;
                cmd.arg("--offsite")
                    .arg("--s3-port")
                    .arg(s3.to_string())
                    .arg("--garage-rpc-port")
                    .arg(rpc.to_string());
            }
            match http_port {
                Some(h) => cmd.arg("--http-port").arg(h.to_string()),
                None => cmd.arg("--no-barkeep"),
            };
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
                    http_port,
                    keep: std::env::var_os("BARKEEP_KEEP_SANDBOX").is_some(),
                    dir,
                };
                eprintln!(
                    "[testkit] sandbox {} up on port {}{} in {:.1} s",
                    sb.dir.display(),
                    port,
                    http_port
                        .map(|h| format!(", barkeep on http://127.0.0.1:{h}/"))
                        .unwrap_or_default(),
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
    /// The operator `up` created for the web app: (name, password).
    pub fn operator(&self) -> (String, String) {
        let path = self.dir.join("operator-password");
        let password = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        ("operator".to_owned(), password.trim_end().to_owned())
    }
    /// PostgreSQL's TCP port (on localhost) and socket port.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }
    /// barkeep's HTTP port on 127.0.0.1, when started [`SandboxOptions::with_barkeep`].
    pub fn http_port(&self) -> Option<u16> {
        self.http_port
    }
    /// barkeep's URL, `http://127.0.0.1:<port>/`. Panics when the sandbox was brought up
    /// without barkeep.
    pub fn http_url(&self) -> String {
        match self.http_port {
            Some(p) => format!("http://127.0.0.1:{p}/"),
            None => panic!(
                "the sandbox {} runs no barkeep: use SandboxOptions::with_barkeep()",
                self.dir.display()
            ),
        }
    }
    /// barkeep's log (stdout and stderr of `barkeep serve`), D/barkeep.log.
    pub fn barkeep_log(&self) -> PathBuf {
        self.dir.join("barkeep.log")
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

    /// A client polling this PostgreSQL every 50 ms (see [`Poller`]).
    pub fn poller(&self) -> Poller {
        Poller::start(self.pg_bin.join("psql"), self.socket_dir(), self.pg_port)
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

    /// barkeep's CLI on this sandbox: the binary it serves (`scripts/sandbox env`'s
    /// `BARKEEP_BINARY`) with `--config D/barkeep.toml`, ready for more arguments. Run it as the
    /// sandbox's owner (the tests' user).
    pub fn barkeep_cli(&self) -> Command {
        let out = self.script("env", &[]);
        let env = String::from_utf8_lossy(&out.stdout);
        let bin = env
            .lines()
            .find_map(|l| l.strip_prefix("export BARKEEP_BINARY="))
            .unwrap_or_else(|| {
                panic!(
                    "scripts/sandbox env --dir {} names no BARKEEP_BINARY:\n{env}{}",
                    self.dir.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let mut cmd = Command::new(bin);
        cmd.arg("--config").arg(self.config_path());
        cmd
    }

    /// The off-site store goes down (Garage stopped), as in an outage of the bucket.
    pub fn garage_stop(&self) {
        self.script_ok("garage-stop");
    }

    /// The off-site store comes back.
    pub fn garage_start(&self) {
        self.script_ok("garage-start");
    }

    fn script_ok(&self, subcommand: &str) {
        let out = self.script(subcommand, &[]);
        assert!(
            out.status.success(),
            "scripts/sandbox {subcommand} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The off-site store's credentials file (`up --offsite`).
    pub fn offsite_credentials(&self) -> PathBuf {
        self.dir.join("offsite-credentials")
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

/// A free port on 127.0.0.1 that is none of `taken` (ports chosen but not bound yet).
fn free_port_except(taken: &[u16]) -> std::io::Result<u16> {
    for _ in 0..20 {
        let p = free_port()?;
        if !taken.contains(&p) {
            return Ok(p);
        }
    }
    Err(std::io::Error::other(
        "the kernel keeps handing out the same port",
    ))
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

// ---------------------------------------------------------------------------------------------
// A browser for the web app's tests: chromedriver + headless Debian chromium
// ---------------------------------------------------------------------------------------------

/// `chromedriver --port=<free port>` as a child process, driving headless chromium with a fresh
/// profile, HOME and XDG directories in its own temporary directory (the test user's HOME may be
/// unwritable). Connect any WebDriver client to [`ChromeDriver::url`] with
/// [`ChromeDriver::capabilities`], e.g. fantoccini:
///
/// ```ignore
/// let driver = barkeep_testkit::ChromeDriver::start();
/// let client = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
///     .capabilities(driver.capabilities())
///     .connect(&driver.url())
///     .await?;
/// ```
///
/// Dropping it kills chromedriver and whatever it started (its process group, and any process
/// still using this profile), then removes the directory (kept with `BARKEEP_KEEP_BROWSER=1`).
/// `BARKEEP_CHROMEDRIVER` and `BARKEEP_CHROMIUM` override `/usr/bin/chromedriver` and
/// `/usr/bin/chromium`.
#[derive(Debug)]
pub struct ChromeDriver {
    child: std::process::Child,
    port: u16,
    dir: PathBuf,
    chromium: PathBuf,
    keep: bool,
}

impl ChromeDriver {
    /// Starts chromedriver and waits until it answers; panics with its output when it does not.
    pub fn start() -> ChromeDriver {
        ChromeDriver::try_start().unwrap_or_else(|e| panic!("chromedriver did not start:\n{e}"))
    }

    /// Starts chromedriver on a free port (retrying with another port when it lost a race) and
    /// waits up to 20 s until `GET /status` answers.
    pub fn try_start() -> Result<ChromeDriver, String> {
        let driver_bin = std::env::var_os("BARKEEP_CHROMEDRIVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
        let chromium = std::env::var_os("BARKEEP_CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
        for p in [&driver_bin, &chromium] {
            if !p.exists() {
                return Err(format!(
                    "{} is missing (apt-get install chromium chromium-driver)",
                    p.display()
                ));
            }
        }
        let keep = std::env::var_os("BARKEEP_KEEP_BROWSER").is_some();
        let mut last = String::new();
        for _attempt in 0..3 {
            let dir = fresh_dir(&std::env::temp_dir())
                .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
            let port = free_port().map_err(|e| format!("cannot find a free TCP port: {e}"))?;
            let child = match spawn_chromedriver(&driver_bin, &dir, port) {
                Ok(child) => child,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(e);
                }
            };
            let mut driver = ChromeDriver {
                child,
                port,
                dir,
                chromium: chromium.clone(),
                keep,
            };
            match driver.wait_ready() {
                Ok(()) => return Ok(driver),
                Err(e) => last = format!("{}: {e}", driver_bin.display()),
            }
            // dropped here: killed, directory removed; try another port
        }
        Err(last)
    }

    /// Waits up to 20 s until `GET /status` answers 200.
    fn wait_ready(&mut self) -> Result<(), String> {
        let started = Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "exited ({status}):\n{}\n{}",
                    self.output_tail(30),
                    tail_of(&self.log_path(), 30)
                ));
            }
            if http_status_ok(self.port) {
                eprintln!(
                    "[testkit] chromedriver (pid {}) ready on {} in {:.1} s",
                    self.child.id(),
                    self.url(),
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(format!(
            "did not answer on {} within 20 s:\n{}\n{}",
            self.url(),
            self.output_tail(30),
            tail_of(&self.log_path(), 30)
        ))
    }

    /// The WebDriver URL, `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The temporary directory (HOME, the chromium profile, the logs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// chromium's profile directory (`--user-data-dir`), fresh for this driver.
    pub fn profile_dir(&self) -> PathBuf {
        self.dir.join("profile")
    }

    /// chromedriver's own log (`--log-path`).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("chromedriver.log")
    }

    /// chromedriver's and chromium's stdout and stderr.
    pub fn output_path(&self) -> PathBuf {
        self.dir.join("output.log")
    }

    /// The last `n` lines of chromium's and chromedriver's output, without the harmless noise
    /// (dbus, the wrapper script's `[: unexpected operator`).
    pub fn output_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.output_path()).unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("dbus/") && !l.contains("unexpected operator"))
            .collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The session capabilities for headless chromium: `goog:chromeOptions` with the binary and
    /// `--headless=new`, `--no-sandbox` only when running as root, a fresh `--user-data-dir`,
    /// no background networking, component updates, sync, first-run UI or QUIC, a 1280x900
    /// window; and the browser's console log kept for chromedriver's `se/log` command.
    pub fn capabilities(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut args = vec!["--headless=new".to_owned()];
        if running_as_root() {
            args.push("--no-sandbox".to_owned());
        }
        args.extend(
            [
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--window-size=1280,900",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ]
            .map(str::to_owned),
        );
        args.push(format!("--user-data-dir={}", self.profile_dir().display()));
        let caps = serde_json::json!({
            "browserName": "chrome",
            // the console log, readable through chromedriver's `POST /session/{id}/se/log`
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": self.chromium.display().to_string(),
                "args": args,
            },
        });
        match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!("a JSON object literal"),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // chromedriver's process group: chromedriver, chromium and chromium's helpers
        let _ = Command::new("/bin/kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // anything that left the group but still uses this profile
        let profile = self.profile_dir();
        kill_processes_mentioning(&format!("--user-data-dir={}", profile.display()));
        if self.keep {
            eprintln!(
                "[testkit] kept {} (BARKEEP_KEEP_BROWSER)",
                self.dir.display()
            );
        } else {
            // chromium may still be writing the profile for a moment after SIGKILL
            for _ in 0..20 {
                match std::fs::remove_dir_all(&self.dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        }
    }
}

/// `chromedriver --port=PORT` in its own process group, with HOME and the XDG directories under
/// `dir/home`, its log in `dir/chromedriver.log` and its (and chromium's) output in
/// `dir/output.log`.
/// The time zone the test browser runs in.
pub const BROWSER_TZ: &str = "America/Sao_Paulo";
/// Its UTC offset as the pages write it.
pub const BROWSER_OFFSET: &str = "-03:00";

fn spawn_chromedriver(
    driver_bin: &Path,
    dir: &Path,
    port: u16,
) -> Result<std::process::Child, String> {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let home = dir.join("home");
    for sub in [
        ".config",
        ".cache",
        ".local/share",
        ".local/state",
        "runtime",
    ] {
        std::fs::create_dir_all(home.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", home.join(sub).display()))?;
    }
    let _ = std::fs::set_permissions(home.join("runtime"), std::fs::Permissions::from_mode(0o700));
    let output = dir.join("output.log");
    let out = std::fs::File::create(&output)
        .map_err(|e| format!("cannot create {}: {e}", output.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot duplicate a file handle: {e}"))?;
    Command::new(driver_bin)
        .arg(format!("--port={port}"))
        .arg(format!(
            "--log-path={}",
            dir.join("chromedriver.log").display()
        ))
        .arg("--allowed-ips=127.0.0.1")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("XDG_DATA_HOME", home.join(".local/share"))
        .env("XDG_STATE_HOME", home.join(".local/state"))
        .env("XDG_RUNTIME_DIR", home.join("runtime"))
        // The browser's own zone is not UTC, as for most people: the pages must show times in
        // it (beside UTC) and read what is typed in it. São Paulo has had no daylight saving
        // time since 2019: always -03:00.
        .env("TZ", BROWSER_TZ)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // its own process group: Drop kills chromium with it
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", driver_bin.display()))
}

/// True when this process runs as root (chromium then needs `--no-sandbox`).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// `GET /status` on 127.0.0.1:port answers 200 (HTTP/1.1: chromedriver refuses HTTP/1.0).
fn http_status_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs(2);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        timeout,
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    if s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    let mut got = 0;
    while got < buf.len() {
        match s.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf[..got].starts_with(b"HTTP/1.1 200")
}

/// SIGKILLs every process of this user whose command line has an argument equal to `arg`.
fn kill_processes_mentioning(arg: &str) {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            let _ = Command::new("/bin/kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The last `n` lines of a text file (empty when unreadable).
pub fn tail_of(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
