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
