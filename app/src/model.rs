//! What the pages show: plain serialisable views of the engine's domain, shared by the server
//! and the browser (the engine itself never reaches the wasm build).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The PostgreSQL server as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostgresView {
    /// When the server was asked.
    pub checked_at: DateTime<Utc>,
    pub state: PostgresState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PostgresState {
    Up {
        version: String,
        in_recovery: bool,
        timeline: i32,
        archived_count: i64,
        last_archived_wal: Option<String>,
        failed_count: i64,
    },
    /// The server does not answer; the text says why, in words a person can act on.
    Down { reason: String },
}

/// Barman's catalog as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogView {
    pub backups: Vec<BackupRow>,
    /// End of the oldest recoverable backup.
    pub earliest: Option<DateTime<Utc>>,
    /// Last transaction in archived WAL.
    pub latest: Option<DateTime<Utc>>,
    /// When the newest WAL reached Barman (archived or waiting in incoming/).
    pub last_wal: Option<DateTime<Utc>>,
    /// WAL files waiting in incoming/ (a long list means `barman cron` is not running).
    pub pending_wal: usize,
    /// Files in Barman's errors/ directory.
    pub wal_errors: usize,
    pub read_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRow {
    pub id: String,
    pub status: String,
    pub recoverable: bool,
    pub begin: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub size_bytes: Option<u64>,
    pub timeline: Option<u32>,
}
