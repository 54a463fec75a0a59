//! The PostgreSQL probe: what the server says about itself, read live with tokio-postgres.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls};

use crate::config::PostgresConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("PostgreSQL at {target} does not answer: {source}")]
    Unreachable {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL at {target} did not answer within {seconds} s")]
    Timeout { target: String, seconds: u64 },
    #[error("PostgreSQL refused a query ({what}): {source}")]
    Query {
        what: &'static str,
        source: tokio_postgres::Error,
    },
}

/// Replay pause state of a server in recovery (`pg_get_wal_replay_pause_state()`, PostgreSQL 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseState {
    NotPaused,
    PauseRequested,
    Paused,
}

impl PauseState {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "not paused" => Some(Self::NotPaused),
            "pause requested" => Some(Self::PauseRequested),
            "paused" => Some(Self::Paused),
            _ => None,
        }
    }
}

/// `pg_stat_archiver`: how archiving to Barman's incoming directory goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiverStats {
    pub archived_count: i64,
    pub last_archived_wal: Option<String>,
    pub last_archived_time: Option<DateTime<Utc>>,
    pub failed_count: i64,
    pub last_failed_wal: Option<String>,
    pub last_failed_time: Option<DateTime<Utc>>,
}

/// One look at a running server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// `server_version`, e.g. `14.23`.
    pub version: String,
    /// `server_version_num`, e.g. 140023.
    pub version_num: i32,
    pub in_recovery: bool,
    /// Only meaningful in recovery.
    pub pause_state: Option<PauseState>,
    /// `pg_last_xact_replay_timestamp()`: the last transaction replayed (in recovery).
    pub last_replayed_xact: Option<DateTime<Utc>>,
    /// Timeline of the last checkpoint (`pg_control_checkpoint()`).
    pub timeline: i32,
    pub archiver: ArchiverStats,
    /// `archive_command` as the server runs it now.
    pub archive_command: String,
    pub archive_timeout_secs: i64,
}

/// Connects to the configured server as barkeep's own (administrative) user. `database`
/// overrides the configured one.
pub async fn connect(pg: &PostgresConfig, database: Option<&str>) -> Result<Client, ProbeError> {
    connect_with(pg, &pg.user, database.unwrap_or(&pg.database)).await
}

/// Connects to the application database as another role (the verify role).
pub async fn connect_as(pg: &PostgresConfig, user: &str) -> Result<Client, ProbeError> {
    connect_with(pg, user, &pg.database).await
}

async fn connect_with(
    pg: &PostgresConfig,
    user: &str,
    database: &str,
) -> Result<Client, ProbeError> {
    const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    let mut config = tokio_postgres::Config::new();
    if pg.host.starts_with('/') {
        config.host_path(&pg.host);
    } else {
        config.host(&pg.host);
    }
    config
        .port(pg.port)
        .user(user)
        .dbname(database)
        .application_name("barkeep")
        .connect_timeout(CONNECT_TIMEOUT);
    let target = format!("{}:{}", pg.host, pg.port);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| ProbeError::Timeout {
            target: target.clone(),
            seconds: CONNECT_TIMEOUT.as_secs(),
        })?
        .map_err(|source| ProbeError::Unreachable { target, source })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "PostgreSQL connection closed");
        }
    });
    Ok(client)
}

/// Reads everything the dashboard and the restore steps need in one round trip.
pub async fn status(pg: &PostgresConfig) -> Result<ServerStatus, ProbeError> {
    let client = connect(pg, None).await?;
    status_of(&client).await
}

pub async fn status_of(client: &Client) -> Result<ServerStatus, ProbeError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'),
                    current_setting('server_version_num')::int,
                    pg_is_in_recovery(),
                    CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END,
                    pg_last_xact_replay_timestamp(),
                    (pg_control_checkpoint()).timeline_id,
                    a.archived_count, a.last_archived_wal, a.last_archived_time,
                    a.failed_count, a.last_failed_wal, a.last_failed_time,
                    current_setting('archive_command'),
                    EXTRACT(epoch FROM current_setting('archive_timeout')::interval)::bigint
               FROM pg_stat_archiver a",
            &[],
        )
        .await
        .map_err(|source| ProbeError::Query {
            what: "server status",
            source,
        })?;
    let pause: Option<String> = row.get(3);
    Ok(ServerStatus {
        version: row.get(0),
        version_num: row.get(1),
        in_recovery: row.get(2),
        pause_state: pause.as_deref().and_then(PauseState::parse),
        last_replayed_xact: row.get(4),
        timeline: row.get(5),
        archiver: ArchiverStats {
            archived_count: row.get(6),
            last_archived_wal: row.get(7),
            last_archived_time: row.get(8),
            failed_count: row.get(9),
            last_failed_wal: row.get(10),
            last_failed_time: row.get(11),
        },
        archive_command: row.get(12),
        archive_timeout_secs: row.get(13),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_states_parse_as_postgres_14_prints_them() {
        assert_eq!(PauseState::parse("paused"), Some(PauseState::Paused));
        assert_eq!(PauseState::parse("not paused"), Some(PauseState::NotPaused));
        assert_eq!(
            PauseState::parse("pause requested"),
            Some(PauseState::PauseRequested)
        );
        assert_eq!(PauseState::parse("PAUSED"), None);
    }
}
