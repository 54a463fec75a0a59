//! barkeep's one configuration file (TOML), read by the server and the CLI, written by the
//! NixOS module and by `scripts/sandbox`. Every path and command the engine touches is here.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("the configuration file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the web app listens (default 127.0.0.1:8080).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// barkeep's own state: the restore journal, the host-wide lock, pre-restore data dirs.
    /// Must be on the same filesystem as the data directory (set-aside is a rename).
    pub state_dir: PathBuf,
    /// File of `user:argon2-or-other-hash` lines (outside the Nix store). Optional until auth lands.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    pub postgres: PostgresConfig,
    pub barman: BarmanConfig,
    pub service: ServiceConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// PGDATA of the cluster barkeep protects.
    pub data_dir: PathBuf,
    /// Directory of the PostgreSQL binaries (pg_waldump, pg_controldata, pg_ctl).
    pub bin_dir: PathBuf,
    /// Socket directory or host name for tokio-postgres.
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Database barkeep connects to for probes (the application database for verify queries).
    pub database: String,
    /// The archive_command to restore after a recovery (barman disables it while recovering).
    pub archive_command: String,
    /// The role verify queries run as: LOGIN, no superuser, a member of the database owner's
    /// role and of nothing that reads or writes server files or runs programs. Created at
    /// set-up (so every later backup carries it) and reached by peer authentication with an
    /// ident map from barkeep's OS user.
    #[serde(default = "default_verify_user")]
    pub verify_user: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BarmanConfig {
    /// The barman executable.
    pub bin: PathBuf,
    /// barman.conf (passed as `-c`).
    pub config: PathBuf,
    /// The server section name in barman.d (`pg`).
    pub server: String,
    /// barman_home: the on-disk catalog is `<home>/<server>/`.
    pub home: PathBuf,
    /// Seconds before a barman command is killed (recover of a big backup takes minutes).
    #[serde(default = "default_barman_timeout")]
    pub timeout_secs: u64,
}

/// How PostgreSQL is started and stopped: systemd on NixOS, pg_ctl in the sandbox and tests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServiceConfig {
    Systemd {
        /// e.g. `postgresql.service`
        unit: String,
        #[serde(default = "default_systemctl")]
        systemctl: PathBuf,
    },
    PgCtl {
        /// Server log file given to `pg_ctl -l`.
        log_file: PathBuf,
        /// Extra `-o` options for postgres (e.g. `-c port=5433 -k /sock`); split on whitespace, no shell.
        #[serde(default)]
        options: Vec<String>,
    },
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_verify_user() -> String {
    "barkeep_verify".into()
}
fn default_barman_timeout() -> u64 {
    3600
}
fn default_systemctl() -> PathBuf {
    PathBuf::from("systemctl")
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("state_dir", &self.state_dir),
            ("postgres.data_dir", &self.postgres.data_dir),
            ("postgres.bin_dir", &self.postgres.bin_dir),
            ("barman.config", &self.barman.config),
            ("barman.home", &self.barman.home),
        ] {
            if !p.is_absolute() {
                return Err(format!(
                    "{name} must be an absolute path, got {}",
                    p.display()
                ));
            }
        }
        if !crate::validate::is_plain_name(&self.barman.server) {
            return Err(format!(
                "barman.server must be a plain name (letters, digits, - and _), got {:?}",
                self.barman.server
            ));
        }
        if !crate::validate::is_plain_name(&self.postgres.verify_user) {
            return Err(format!(
                "postgres.verify_user must be a plain role name (letters, digits, - and _), got {:?}",
                self.postgres.verify_user
            ));
        }
        if self.postgres.archive_command.trim().is_empty() {
            return Err("postgres.archive_command must not be empty".into());
        }
        Ok(())
    }

    /// The catalog directory of the configured server: `<barman_home>/<server>`.
    pub fn server_home(&self) -> PathBuf {
        self.barman.home.join(&self.barman.server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
listen = "127.0.0.1:8080"
state_dir = "/var/lib/barkeep"

[postgres]
data_dir = "/var/lib/postgresql/14"
bin_dir = "/run/current-system/sw/bin"
host = "/run/postgresql"
port = 5432
user = "postgres"
database = "app"
archive_command = "test ! -f /var/lib/barman/pg/incoming/%f && cp %p /var/lib/barman/pg/incoming/%f"

[barman]
bin = "/run/current-system/sw/bin/barman"
config = "/etc/barman.conf"
server = "pg"
home = "/var/lib/barman"

[service]
kind = "systemd"
unit = "postgresql.service"
"#;

    #[test]
    fn parses_the_documented_sample() {
        let c = Config::parse(Path::new("x.toml"), SAMPLE).expect("sample parses");
        assert_eq!(c.server_home(), PathBuf::from("/var/lib/barman/pg"));
        assert_eq!(c.barman.timeout_secs, 3600);
        assert!(
            matches!(c.service, ServiceConfig::Systemd { ref unit, .. } if unit == "postgresql.service")
        );
    }

    #[test]
    fn rejects_relative_paths_and_odd_server_names() {
        let bad = SAMPLE.replace("state_dir = \"/var/lib/barkeep\"", "state_dir = \"var\"");
        let e = Config::parse(Path::new("x.toml"), &bad).unwrap_err();
        assert!(
            e.to_string().contains("state_dir must be an absolute path"),
            "{e}"
        );
        let bad = SAMPLE.replace("server = \"pg\"", "server = \"pg; rm -rf /\"");
        let e = Config::parse(Path::new("x.toml"), &bad).unwrap_err();
        assert!(
            e.to_string().contains("barman.server must be a plain name"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let bad = SAMPLE.replace("[barman]", "[barman]\nbogus = 1");
        assert!(Config::parse(Path::new("x.toml"), &bad).is_err());
    }
}
