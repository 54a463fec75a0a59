//! The two modes of a restore (docs/restore-state-machine.md), one state machine:
//!
//! - **in place**: production stopped, its data directory set aside, the restored copy
//!   recovered into the emptied directory and started paused there. Down from the stop until
//!   the person has verified and accepted.
//! - **preview**: the restored copy recovered into a side directory (`<state_dir>/preview/<id>`,
//!   on the data directory's filesystem) and started paused by barkeep itself, as the same OS
//!   user, on a private socket directory and no TCP address. Production keeps serving while the
//!   person verifies; on accept the side instance takes a restartpoint and stops, production
//!   stops, and two renames swap the directories (production's becomes the pre-restore
//!   directory). Production is down only from its stop until the copy is paused on its port.
//!
//! [`Instance`] is what the steps are parameterised by: a data directory, how it is started
//! and stopped, how it is reached.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::io;
use super::RestoreError;
use crate::catalog::Backup;
use crate::config::PostgresConfig;
use crate::service::{postmaster, PgCtl, Postmaster, Service};
use crate::{admin, probe, validate, Engine};

/// How a restore runs: in place, or beside production then swapped in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RestoreMode {
    /// Journals written before preview existed have no mode: in place.
    #[default]
    InPlace,
    Preview(Preview),
}

impl RestoreMode {
    pub fn preview(&self) -> Option<&Preview> {
        match self {
            RestoreMode::Preview(p) => Some(p),
            RestoreMode::InPlace => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            RestoreMode::InPlace => "in place",
            RestoreMode::Preview(_) => "preview",
        }
    }
}

/// What a person asks for when a restore starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModeChoice {
    #[default]
    InPlace,
    /// `hold_writes`: production refuses writes while the preview is open (they would be
    /// discarded by the swap).
    Preview { hold_writes: bool },
}

/// A preview restore's side instance, fixed by the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The side data directory (`<state_dir>/preview/<id>`).
    pub data_dir: PathBuf,
    /// Its private socket directory; it listens on no TCP address.
    pub socket_dir: PathBuf,
    /// The port naming its socket.
    pub port: u16,
    pub log_file: PathBuf,
    /// `shared_buffers` for the side instance when the configuration overrides it.
    pub shared_buffers: Option<String>,
    /// Production refuses writes while the preview is open.
    pub hold_writes: bool,
    /// Production's counters when the preview was planned.
    pub production_at_start: WriteCounters,
}

/// Cumulative counters of production's databases at one moment (`pg_stat_database`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteCounters {
    pub at: DateTime<Utc>,
    pub commits: i64,
    pub rows_written: i64,
}

/// What production did since the preview began: what the swap will discard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductionWrites {
    pub since: DateTime<Utc>,
    /// Transactions committed (read-only ones and barkeep's own checks included); `None` when
    /// the statistics were reset meanwhile (a crash of production).
    pub commits: Option<i64>,
    /// Rows inserted, updated and deleted: the writes the swap discards.
    pub rows_written: Option<i64>,
    /// Whether production holds writes for the preview.
    pub held: bool,
}

/// What the preview's preflight found: it runs when `problems` is empty.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviewPreflight {
    pub problems: Vec<String>,
    pub port: u16,
    /// The side instance's shared_buffers, in bytes.
    pub shared_buffers_bytes: Option<u64>,
    /// MemAvailable of the host.
    pub memory_available: Option<u64>,
}

impl PreviewPreflight {
    pub fn passes(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Memory a second instance needs beyond its shared_buffers (its processes, work memory).
const INSTANCE_OVERHEAD: u64 = 64 << 20;

/// A PostgreSQL a restore works on: its data directory and service control, and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Instance {
    pub service: Service,
    pub pg: PostgresConfig,
}

impl Instance {
    pub(crate) fn data_dir(&self) -> &Path {
        crate::service::ServiceControl::data_dir(&self.service)
    }

    pub(crate) fn postmaster(&self) -> Postmaster {
        postmaster(self.data_dir())
    }
}

impl Engine {
    /// Production: the configured data directory, service control and connection. In place,
    /// the restored copy is started there too.
    pub(crate) fn production(&self) -> Instance {
        Instance {
            service: self.service().clone(),
            pg: self.config().postgres.clone(),
        }
    }

    /// The preview's side instance: `pg_ctl` on the side directory, its own log, its private
    /// socket directory, no TCP address, hot standby on, and the configured shared_buffers.
    pub(crate) fn side(&self, preview: &Preview) -> Instance {
        let mut options = vec![
            format!("-cport={}", preview.port),
            format!("-cunix_socket_directories={}", preview.socket_dir.display()),
            "-clisten_addresses=".to_owned(),
            "-chot_standby=on".to_owned(),
        ];
        if let Some(sb) = &preview.shared_buffers {
            options.push(format!("-cshared_buffers={sb}"));
        }
        let mut pg = self.config().postgres.clone();
        pg.host = preview.socket_dir.display().to_string();
        pg.port = preview.port;
        Instance {
            service: Service::PgCtl(PgCtl {
                pg_ctl: self.config().postgres.bin_dir.join("pg_ctl"),
                data_dir: preview.data_dir.clone(),
                log_file: preview.log_file.clone(),
                options,
            }),
            pg,
        }
    }

    /// Whether a preview restore can run beside production now (with `backup`, the one the
    /// plan chose): production up, a backup without tablespaces (barman would recover them
    /// into production's own tablespace directories), memory for a second instance, a private
    /// socket nobody holds. Disk space is the plan's check, the same for both modes.
    pub async fn preview_preflight(&self, backup: Option<&Backup>) -> PreviewPreflight {
        let config = self.config();
        let pg = &config.postgres;
        let mut problems = Vec::new();
        let port = match config.preview.port {
            0 => pg.port.checked_add(1).unwrap_or(pg.port - 1),
            p => p,
        };
        let production = match probe::connect(pg, None).await {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(format!(
                    "production does not answer ({e}): a preview runs beside a running server; \
                     restore in place"
                ));
                None
            }
        };
        if let Some(b) = backup {
            if b.raw.get("tablespaces").cloned().flatten().is_some() {
                problems.push(format!(
                    "backup {} has tablespaces outside the data directory: recovered beside \
                     production they would overwrite production's own; restore in place",
                    b.id
                ));
            }
        }
        let shared_buffers_bytes = match (&config.preview.shared_buffers, &production) {
            (s, _) if !s.is_empty() => size_bytes(s),
            (_, Some(client)) => client
                .query_one(
                    "SELECT pg_size_bytes(current_setting('shared_buffers'))::bigint",
                    &[],
                )
                .await
                .ok()
                .map(|r| r.get::<_, i64>(0).max(0) as u64),
            _ => None,
        };
        let memory_available = memory_available();
        if let (Some(sb), Some(free)) = (shared_buffers_bytes, memory_available) {
            if sb + INSTANCE_OVERHEAD > free {
                problems.push(format!(
                    "a second PostgreSQL needs about {} of memory (shared_buffers {} and its \
                     processes) and {} is available: set preview.shared_buffers lower in \
                     barkeep.toml, or restore in place",
                    super::space::human(sb + INSTANCE_OVERHEAD),
                    super::space::human(sb),
                    super::space::human(free)
                ));
            }
        }
        let state = self.state_dir();
        let socket_dir = state.preview_socket_dir();
        let socket = socket_dir.join(format!(".s.PGSQL.{port}"));
        // sun_path holds 107 bytes and a NUL.
        if socket.as_os_str().len() > 107 {
            problems.push(format!(
                "the side instance's socket path {} is longer than 107 bytes: choose a shorter \
                 state_dir",
                socket.display()
            ));
        }
        let probe_id = "r0";
        for p in [
            &socket_dir,
            &state.preview(probe_id),
            &state.preview_log(probe_id),
        ] {
            if !validate::is_plain_path(p) {
                problems.push(format!(
                    "{} holds characters pg_ctl cannot pass on: choose a plainer state_dir",
                    p.display()
                ));
                break;
            }
        }
        if let Some(pid) = lock_holder(&socket_dir, port) {
            problems.push(format!(
                "port {port} in {} is held by a running PostgreSQL (pid {pid}): stop it, or set \
                 preview.port",
                socket_dir.display()
            ));
        }
        PreviewPreflight {
            problems,
            port,
            shared_buffers_bytes,
            memory_available,
        }
    }

    /// The side instance of a new preview restore, once the preflight passes.
    pub(crate) async fn preview_for(
        &self,
        restore_id: &str,
        hold_writes: bool,
        backup: &Backup,
    ) -> Result<Preview, RestoreError> {
        let preflight = self.preview_preflight(Some(backup)).await;
        if !preflight.passes() {
            return Err(RestoreError::PreviewUnavailable(preflight.problems));
        }
        let client = probe::connect(&self.config().postgres, None).await?;
        let (commits, rows_written) = admin::write_counters(&client).await?;
        let state = self.state_dir();
        let shared_buffers = &self.config().preview.shared_buffers;
        Ok(Preview {
            data_dir: state.preview(restore_id),
            socket_dir: state.preview_socket_dir(),
            port: preflight.port,
            log_file: state.preview_log(restore_id),
            shared_buffers: (!shared_buffers.is_empty()).then(|| shared_buffers.clone()),
            hold_writes,
            production_at_start: WriteCounters {
                at: Utc::now(),
                commits,
                rows_written,
            },
        })
    }

    /// What production did since the open preview began (`None` without an open preview, or
    /// once the swap has begun).
    pub async fn production_writes(&self) -> Result<Option<ProductionWrites>, RestoreError> {
        let Some(status) = self.status()? else {
            return Ok(None);
        };
        let Some(preview) = status.plan.mode.preview() else {
            return Ok(None);
        };
        if status.state == super::Phase::Closed
            || status.steps.iter().any(|s| s.step == super::Step::Swap)
        {
            return Ok(None);
        }
        let client = probe::connect(&self.config().postgres, None).await?;
        let (commits, rows) = admin::write_counters(&client).await?;
        let start = preview.production_at_start;
        let since = |now: i64, then: i64| (now >= then).then_some(now - then);
        Ok(Some(ProductionWrites {
            since: start.at,
            commits: since(commits, start.commits),
            rows_written: since(rows, start.rows_written),
            held: preview.hold_writes,
        }))
    }
}

/// The side instance's socket directory: created private (0700) to barkeep's OS user.
pub(crate) fn make_socket_dir(dir: &Path) -> Result<(), RestoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io(format!("cannot set the mode of {}", dir.display())))
        }
        Err(e) => Err(io(format!("cannot create {}", dir.display()))(e)),
    }
}

/// The pid of a live postgres holding `.s.PGSQL.<port>.lock` in `dir`.
fn lock_holder(dir: &Path, port: u16) -> Option<i32> {
    let text = std::fs::read_to_string(dir.join(format!(".s.PGSQL.{port}.lock"))).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    matches!(comm.trim(), "postgres" | "postmaster").then_some(pid)
}

/// `MemAvailable` of /proc/meminfo, in bytes.
fn memory_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Bytes of a size as postgresql.conf writes one (`128MB`; plain digits are 8 kB pages).
fn size_bytes(s: &str) -> Option<u64> {
    if !validate::is_memory_size(s) {
        return None;
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits].parse().ok()?;
    Some(
        n * match &s[digits..] {
            "kB" => 1 << 10,
            "MB" => 1 << 20,
            "GB" => 1 << 30,
            _ => 8 << 10,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_postgresql_reads_them() {
        assert_eq!(size_bytes("128MB"), Some(128 << 20));
        assert_eq!(size_bytes("1GB"), Some(1 << 30));
        assert_eq!(size_bytes("16384"), Some(16384 * 8192));
        assert_eq!(size_bytes("16384kB"), Some(16384 * 1024));
        assert_eq!(size_bytes("1 GB"), None);
    }

    #[test]
    fn a_journal_without_a_mode_is_in_place() {
        #[derive(Deserialize)]
        struct Old {
            #[serde(default)]
            mode: RestoreMode,
        }
        let old: Old = serde_json::from_str("{}").expect("reads");
        assert_eq!(old.mode, RestoreMode::InPlace);
        let json = serde_json::to_string(&RestoreMode::InPlace).expect("writes");
        assert_eq!(json, r#"{"kind":"in_place"}"#);
    }
}
