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
    #[error("the settings do not make a valid configuration: {0}")]
    Setting(String),
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
    /// The users file (`name:role:argon2id-hash` lines, written by `barkeep user add`; outside
    /// the Nix store). Default: `<state_dir>/users`.
    #[serde(default)]
    pub users_file: Option<PathBuf>,
    /// Mark the session cookie Secure: set it when barkeep is reached over TLS (a proxy).
    #[serde(default)]
    pub secure_cookie: bool,
    /// A file holding a bearer token that lets Prometheus read `/metrics` without a session
    /// (outside the Nix store, readable by barkeep only). Without it, `/metrics` needs a
    /// signed-in session like every page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_token_file: Option<PathBuf>,
    pub postgres: PostgresConfig,
    pub barman: BarmanConfig,
    pub service: ServiceConfig,
    /// The preview restore's side instance (`restore::mode`).
    #[serde(default)]
    pub preview: PreviewConfig,
    /// Off-site copies of the backups and the WAL in S3-compatible storage (docs/offsite.md).
    /// Absent: off, and nothing of the local setup changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite: Option<OffsiteConfig>,
}

/// Where the off-site copy goes and how barkeep reaches it with Barman's cloud tools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OffsiteConfig {
    /// The S3 endpoint: `https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:3900` (Garage).
    pub endpoint_url: String,
    /// The bucket and the prefix the copies go under: `s3://bucket/prefix`.
    pub bucket_url: String,
    /// The region requests are signed for (Garage's default is `garage`).
    #[serde(default = "default_region")]
    pub region: String,
    /// An AWS shared-credentials file (`[default]`, `aws_access_key_id`,
    /// `aws_secret_access_key`), outside the repository and the Nix store, readable by
    /// barkeep's user only.
    pub credentials_file: PathBuf,
    /// Where barman-cloud-wal-archive and the other cloud tools are. Default: barman's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_bin_dir: Option<PathBuf>,
    /// A Python that imports barman and boto3 (barkeep lists the bucket with it). Default:
    /// `python` in the cloud tools' directory (Barman's virtualenv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PathBuf>,
    /// Seconds between two replication runs (one also runs after each backup barkeep takes).
    #[serde(default = "default_offsite_interval")]
    pub interval_secs: u64,
    /// Seconds before one cloud tool is stopped (a big backup takes long on a slow link).
    #[serde(default = "default_barman_timeout")]
    pub timeout_secs: u64,
}

impl OffsiteConfig {
    /// The directory of the cloud tools: `cloud_bin_dir`, else barman's.
    pub fn cloud_bin_dir(&self, barman: &BarmanConfig) -> PathBuf {
        self.cloud_bin_dir.clone().unwrap_or_else(|| {
            barman
                .bin
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
    }

    /// The Python barkeep lists the bucket with.
    pub fn python(&self, barman: &BarmanConfig) -> PathBuf {
        self.python
            .clone()
            .unwrap_or_else(|| self.cloud_bin_dir(barman).join("python"))
    }

    fn validate(&self) -> Result<(), String> {
        let url = &self.endpoint_url;
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() < "http://x".len()
            || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!(
                "offsite.endpoint_url must be an http:// or https:// URL, got {url:?}"
            ));
        }
        if !crate::validate::is_bucket_url(&self.bucket_url) {
            return Err(format!(
                "offsite.bucket_url must be s3://bucket or s3://bucket/prefix (letters, digits, \
                 . - _ and / in the prefix), got {:?}",
                self.bucket_url
            ));
        }
        if !crate::validate::is_plain_name(&self.region) {
            return Err(format!(
                "offsite.region must be a plain name like eu-west-1 or garage, got {:?}",
                self.region
            ));
        }
        for (name, p) in [
            ("offsite.credentials_file", Some(&self.credentials_file)),
            ("offsite.cloud_bin_dir", self.cloud_bin_dir.as_ref()),
            ("offsite.python", self.python.as_ref()),
        ] {
            if let Some(p) = p {
                if !p.is_absolute() {
                    return Err(format!(
                        "{name} must be an absolute path, got {}",
                        p.display()
                    ));
                }
            }
        }
        if self.interval_secs == 0 {
            return Err("offsite.interval_secs must be at least 1".into());
        }
        Ok(())
    }
}

/// How a preview restore runs its side instance: beside production, as the same OS user, on a
/// private socket directory in the state directory and no TCP port.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PreviewConfig {
    /// The side instance's port: it names its socket (`.s.PGSQL.<port>` in the private socket
    /// directory); it listens on no TCP address. 0: production's port + 1.
    #[serde(default)]
    pub port: u16,
    /// The side instance's shared_buffers (`128MB`, `1GB`, ...): a second instance needs its
    /// own memory. Empty: what the restored copy's configuration says (production's).
    #[serde(default)]
    pub shared_buffers: String,
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
fn default_region() -> String {
    "us-east-1".into()
}
fn default_offsite_interval() -> u64 {
    60
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
        if !self.preview.shared_buffers.is_empty()
            && !crate::validate::is_memory_size(&self.preview.shared_buffers)
        {
            return Err(format!(
                "preview.shared_buffers must be a size like 128MB or 1GB, got {:?}",
                self.preview.shared_buffers
            ));
        }
        if let Some(o) = &self.offsite {
            o.validate()?;
        }
        Ok(())
    }

    /// The catalog directory of the configured server: `<barman_home>/<server>`.
    pub fn server_home(&self) -> PathBuf {
        self.barman.home.join(&self.barman.server)
    }

    /// The users file: `users_file`, else `<state_dir>/users`.
    pub fn users_file(&self) -> PathBuf {
        self.users_file
            .clone()
            .unwrap_or_else(|| self.state().users())
    }

    /// The paths under `state_dir`.
    pub fn state(&self) -> crate::state_dir::StateDir {
        crate::state_dir::StateDir::new(&self.state_dir)
    }

    /// The one source of barkeep.toml: what the NixOS module writes with its defaults (the
    /// binaries' store paths aside, see the tests), with `service` as asked. `barkeep config
    /// example` prints it; `scripts/sandbox` writes its barkeep.toml from it with `--set`.
    pub fn example(service: ServiceKind) -> Self {
        let incoming = "/var/lib/barman/pg/incoming";
        Config {
            listen: default_listen(),
            state_dir: "/var/lib/barkeep".into(),
            users_file: None,
            secure_cookie: false,
            metrics_token_file: None,
            postgres: PostgresConfig {
                data_dir: "/var/lib/postgresql/14".into(),
                bin_dir: "/run/current-system/sw/bin".into(),
                host: "/run/postgresql".into(),
                port: 5432,
                user: "postgres".into(),
                database: "postgres".into(),
                archive_command: format!("test ! -f {incoming}/%f && cp %p {incoming}/%f"),
                verify_user: default_verify_user(),
            },
            barman: BarmanConfig {
                bin: "/run/current-system/sw/bin/barman".into(),
                config: "/etc/barman.conf".into(),
                server: "pg".into(),
                home: "/var/lib/barman".into(),
                timeout_secs: default_barman_timeout(),
            },
            service: match service {
                ServiceKind::Systemd => ServiceConfig::Systemd {
                    unit: "postgresql.service".into(),
                    systemctl: default_systemctl(),
                },
                ServiceKind::PgCtl => ServiceConfig::PgCtl {
                    log_file: "/var/log/postgresql/postgresql.log".into(),
                    options: Vec::new(),
                },
            },
            preview: PreviewConfig::default(),
            offsite: None,
        }
    }

    /// This configuration with `key=value` settings applied (`postgres.port=54329`; a dotted
    /// key names a table), validated like a file. A key must exist in the configuration
    /// (`users_file` and `metrics_token_file` may be added); a value takes the type of the one it replaces.
    pub fn with_settings(&self, settings: &[(String, String)]) -> Result<Self, ConfigError> {
        let invalid = ConfigError::Setting;
        let mut doc = toml::Value::try_from(self).map_err(|e| invalid(e.to_string()))?;
        for (key, value) in settings {
            let (tables, name) = match key.rsplit_once('.') {
                Some((t, n)) => (t.split('.').collect::<Vec<_>>(), n),
                None => (Vec::new(), key.as_str()),
            };
            let mut table = doc
                .as_table_mut()
                .ok_or_else(|| invalid("not a table".into()))?;
            for t in tables {
                table = table
                    .get_mut(t)
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| invalid(format!("{key}: there is no table {t:?}")))?;
            }
            let new = match table.get(name) {
                Some(toml::Value::Integer(_)) => {
                    toml::Value::Integer(value.parse().map_err(|_| {
                        invalid(format!("{key} must be a whole number, got {value:?}"))
                    })?)
                }
                Some(toml::Value::Array(_)) => toml::Value::Array(
                    value
                        .split_whitespace()
                        .map(|w| toml::Value::String(w.to_owned()))
                        .collect(),
                ),
                Some(_) => toml::Value::String(value.clone()),
                None if key == "users_file" || key == "metrics_token_file" => {
                    toml::Value::String(value.clone())
                }
                None => return Err(invalid(format!("{key}: no such setting"))),
            };
            table.insert(name.to_owned(), new);
        }
        let config: Config = doc
            .try_into()
            .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
        config.validate().map_err(invalid)?;
        Ok(config)
    }

    /// The configuration as barkeep.toml.
    pub fn to_toml(&self) -> String {
        // Plain data (strings, integers, tables): serialization cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

/// How the example starts and stops PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    /// NixOS: `systemctl start|stop postgresql.service`.
    Systemd,
    /// The sandbox and the tests: `pg_ctl`.
    PgCtl,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        Config::example(ServiceKind::Systemd).to_toml()
    }

    /// What the NixOS module writes (tests/nix-eval checks the module renders exactly these
    /// files), with its store-path placeholders filled in the way Nix fills them.
    fn module_output(case: &str) -> Config {
        let text = match case {
            "default" => include_str!("../../tests/nix-eval/expected/default/barkeep.toml"),
            "offsite" => include_str!("../../tests/nix-eval/expected/offsite/barkeep.toml"),
            _ => include_str!("../../tests/nix-eval/expected/custom/barkeep.toml"),
        };
        let text = text
            .replace(
                "@barman@",
                "/nix/store/00000000000000000000000000000000-barman-3.3.0",
            )
            .replace(
                "@barman-python@",
                "/nix/store/00000000000000000000000000000000-python3-3.10-env",
            )
            .replace(
                "@postgresql@",
                "/nix/store/00000000000000000000000000000000-postgresql-14.23",
            )
            .replace(
                "@systemd@",
                "/nix/store/00000000000000000000000000000000-systemd",
            );
        Config::parse(Path::new(case), &text).unwrap_or_else(|e| panic!("{case}: {e}"))
    }

    #[test]
    fn the_module_writes_what_the_engine_reads_and_the_example_is_its_default() {
        let default = module_output("default");
        let mut example = Config::example(ServiceKind::Systemd);
        // Only the binaries' store paths differ.
        example.barman.bin = default.barman.bin.clone();
        example.postgres.bin_dir = default.postgres.bin_dir.clone();
        if let (
            ServiceConfig::Systemd { systemctl, .. },
            ServiceConfig::Systemd {
                systemctl: from_nix,
                ..
            },
        ) = (&mut example.service, &default.service)
        {
            *systemctl = from_nix.clone();
        }
        assert_eq!(example, default);
        let custom = module_output("custom");
        assert_eq!(custom.postgres.verify_user, "verify_app");
        assert_ne!(custom, default);
        assert_eq!(default.offsite, None);
        assert_eq!(custom.offsite, None);

        // services.barkeep.offsite (tests/nix-eval/eval.nix, the offsite case): the section as
        // set, the cloud tools and the interpreter from the Barman package built with boto3.
        let offsite = module_output("offsite");
        let barman = "/nix/store/00000000000000000000000000000000-barman-3.3.0";
        let o = offsite.offsite.clone().expect("an [offsite] section");
        assert_eq!(
            o,
            OffsiteConfig {
                endpoint_url: "http://store:3900".into(),
                bucket_url: "s3://barkeep/vm-db".into(),
                region: "garage".into(),
                credentials_file: "/run/keys/barkeep-offsite".into(),
                cloud_bin_dir: Some(format!("{barman}/bin").into()),
                python: Some(
                    "/nix/store/00000000000000000000000000000000-python3-3.10-env/bin/python"
                        .into()
                ),
                interval_secs: 30,
                timeout_secs: default_barman_timeout(),
            }
        );
        // What the engine derives: the tools next to barman, the listing in Barman's Python.
        assert_eq!(
            o.cloud_bin_dir(&offsite.barman),
            offsite.barman.bin.parent().unwrap()
        );
        assert_eq!(
            o.cloud_bin_dir(&offsite.barman)
                .join("barman-cloud-wal-archive"),
            PathBuf::from(format!("{barman}/bin/barman-cloud-wal-archive"))
        );
        // Nothing else differs from the default but the database the case sets.
        let mut rest = offsite.clone();
        rest.offsite = None;
        rest.postgres.database = default.postgres.database.clone();
        assert_eq!(rest, default);
    }

    #[test]
    fn settings_take_the_type_of_what_they_replace_and_are_validated() {
        let c = Config::example(ServiceKind::PgCtl)
            .with_settings(&[
                ("postgres.port".into(), "54329".into()),
                ("state_dir".into(), "/var/tmp/sb/state".into()),
                ("service.log_file".into(), "/var/tmp/sb/pg.log".into()),
                ("service.options".into(), "-c port=54329".into()),
            ])
            .expect("valid settings");
        assert_eq!(c.postgres.port, 54329);
        assert_eq!(c.state_dir, PathBuf::from("/var/tmp/sb/state"));
        assert_eq!(
            c.service,
            ServiceConfig::PgCtl {
                log_file: "/var/tmp/sb/pg.log".into(),
                options: vec!["-c".into(), "port=54329".into()],
            }
        );
        let round_trip = Config::parse(Path::new("x"), &c.to_toml()).expect("parses back");
        assert_eq!(round_trip, c);
        let base = Config::example(ServiceKind::PgCtl);
        for (k, v) in [
            ("postgres.port", "many"),
            ("postgres.nope", "1"),
            ("nope.port", "1"),
            ("state_dir", "relative"),
        ] {
            assert!(
                base.with_settings(&[(k.into(), v.into())]).is_err(),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn parses_the_documented_sample() {
        let c = Config::parse(Path::new("x.toml"), &sample()).expect("sample parses");
        assert_eq!(c.server_home(), PathBuf::from("/var/lib/barman/pg"));
        assert_eq!(c.barman.timeout_secs, 3600);
        assert!(
            matches!(c.service, ServiceConfig::Systemd { ref unit, .. } if unit == "postgresql.service")
        );
    }

    #[test]
    fn rejects_relative_paths_and_odd_server_names() {
        let bad = sample().replace("state_dir = \"/var/lib/barkeep\"", "state_dir = \"var\"");
        let e = Config::parse(Path::new("x.toml"), &bad).unwrap_err();
        assert!(
            e.to_string().contains("state_dir must be an absolute path"),
            "{e}"
        );
        let bad = sample().replace("server = \"pg\"", "server = \"pg; rm -rf /\"");
        let e = Config::parse(Path::new("x.toml"), &bad).unwrap_err();
        assert!(
            e.to_string().contains("barman.server must be a plain name"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let bad = sample().replace("[barman]", "[barman]\nbogus = 1");
        assert!(Config::parse(Path::new("x.toml"), &bad).is_err());
    }
}
