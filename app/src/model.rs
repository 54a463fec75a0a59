//! What the pages show: plain serialisable views of the engine's domain, shared by the server
//! and the browser (the engine itself never reaches the wasm build).

use chrono::{DateTime, Utc};
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// Why a server function failed, in words a person can act on. Internal details (paths, the
/// engine's own messages) stay in barkeep's log; the browser gets the sentence and the server
/// answers with [`AppError::http_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// The request itself was wrong (a client error: 400).
    #[error("the request was not understood: {0}")]
    BadRequest(String),
    /// Barman's catalog could not be read (503: it may work again in a moment).
    #[error("Barman's catalog cannot be read right now; barkeep's log says why")]
    CatalogUnreadable,
    /// No session (401).
    #[error("please sign in")]
    SignInRequired,
    /// Signed in, but this needs an operator (403).
    #[error("this needs an operator; you are signed in as a viewer")]
    OperatorOnly,
    /// Refused as things stand (409): another action or a restore is running; the words say.
    #[error("{0}")]
    Refused(String),
    /// Understood, but it cannot be done as asked (422): a target outside the window, a backup
    /// that cannot serve it; the words say why.
    #[error("{0}")]
    Rejected(String),
    /// The action ran and failed (502): the engine's words.
    #[error("{0}")]
    ActionFailed(String),
    /// Anything else on the server (500).
    #[error("barkeep hit an internal problem; its log says what")]
    Internal,
    /// The browser could not reach barkeep (never sent by the server).
    #[error("barkeep did not answer: {0}")]
    Unreachable(String),
    /// barkeep's answer could not be read (never sent by the server).
    #[error("barkeep's answer could not be read: {0}")]
    BadResponse(String),
}

impl AppError {
    /// The HTTP status the server answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            AppError::BadRequest(_) => 400,
            AppError::CatalogUnreadable => 503,
            AppError::SignInRequired => 401,
            AppError::OperatorOnly => 403,
            AppError::Refused(_) => 409,
            AppError::Rejected(_) => 422,
            AppError::ActionFailed(_) => 502,
            AppError::Internal | AppError::Unreachable(_) | AppError::BadResponse(_) => 500,
        }
    }
}

/// Leptos 0.8 server functions return any error type that implements this (Leptos 0.7's
/// `ServerFnError<E>` with `FromStr`/`Display` is gone): the framework's own failures map into it.
impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The server could not decode what the browser sent.
            ServerFnErrorErr::Args(m) | ServerFnErrorErr::MissingArg(m) => AppError::BadRequest(m),
            // In the browser: the request did not get through, or the answer was garbled.
            ServerFnErrorErr::Request(m) | ServerFnErrorErr::UnsupportedRequestMethod(m) => {
                AppError::Unreachable(m)
            }
            ServerFnErrorErr::Deserialization(m) => AppError::BadResponse(m),
            // Server-side texts are not for the browser.
            ServerFnErrorErr::Registration(_)
            | ServerFnErrorErr::ServerError(_)
            | ServerFnErrorErr::MiddlewareError(_)
            | ServerFnErrorErr::Serialization(_)
            | ServerFnErrorErr::Response(_) => AppError::Internal,
        }
    }
}

/// What a signed-in person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The dashboard and the history.
    Viewer,
    /// Also restores and actions.
    Operator,
}

/// The person a request comes from (the server puts it on every signed-in request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub role: Role,
}

/// An action that finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionDone {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// The dashboard in one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DashboardView {
    pub postgres: PostgresView,
    /// Barman's side, or why it cannot be shown.
    pub catalog: Result<CatalogView, AppError>,
    /// The last `barman check` (none has finished yet: `None`).
    pub check: Option<CheckView>,
    /// A `barman check` is running now.
    pub check_running: bool,
    /// The restore that is open (running or paused), if any.
    pub restore_open: Option<OpenRestore>,
    /// The off-site copy as the last replication run left it; `None` when `[offsite]` is not
    /// configured.
    #[serde(default)]
    pub offsite: Option<OffsiteView>,
}

/// The off-site copy: where it goes and how far behind it is (from the last replication run,
/// never from the bucket on the page's read path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsiteView {
    pub bucket_url: String,
    pub endpoint_url: String,
    /// Seconds between two replication runs (`offsite.interval_secs`): a failed run is tried
    /// again that much later.
    pub interval_secs: u64,
    /// The last run, or `None` before the first.
    pub last_run: Option<OffsiteRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsiteRun {
    pub finished: DateTime<Utc>,
    /// Why it did not finish its work; `None`: it did.
    pub error: Option<String>,
    /// WAL segments the bucket lacks (`None`: unknown).
    pub missing_segments: Option<usize>,
    pub missing_wals: Option<usize>,
    /// What a restore from the bucket alone could not replay, in seconds.
    pub lag_seconds: Option<i64>,
    pub missing_backups: Option<usize>,
    pub newest_offsite_backup: Option<String>,
    pub copied_wals: usize,
    pub copied_backups: Vec<String>,
    /// The run finished and the bucket holds everything the catalog has (the engine's
    /// `OffsiteStatus::in_sync`).
    pub in_sync: bool,
}

/// What the off-site bucket holds now, listed on demand ("Verify off-site copy"): read from the
/// bucket itself, not from the last replication run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsiteListingView {
    pub listed_at: DateTime<Utc>,
    /// The backups in the bucket, oldest first.
    pub backups: Vec<OffsiteBackupRow>,
    /// WAL files in the bucket (segments, history files, backup labels).
    pub wal_files: usize,
    /// The newest of them in WAL order.
    pub newest_wal: Option<String>,
}

/// One backup in the off-site bucket, as Barman's cloud catalog describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OffsiteBackupRow {
    pub id: String,
    /// Barman's status of the copy (`DONE` is usable for a restore).
    pub status: String,
    /// The first and last WAL file the backup needs.
    pub begin_wal: Option<String>,
    pub end_wal: Option<String>,
    pub end: Option<DateTime<Utc>>,
}

/// A restore that is not closed yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenRestore {
    /// Its id; `None` when the journal cannot be read (a restore is then assumed open).
    pub restore_id: Option<String>,
    /// `running`, `paused`, or `unknown` (the journal cannot be read).
    pub state: String,
}

/// One `barman check`: when, and what failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckView {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub ok: bool,
    /// How many checks passed.
    pub passed: usize,
    /// The checks that failed, with barman's hint.
    pub failing: Vec<CheckLine>,
    /// Why barman could not be asked at all.
    pub problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckLine {
    pub name: String,
    pub hint: String,
}

/// The History page: past restores, the audit log, and the data directories kept aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryView {
    /// The open restore first (if any), then closed ones, newest first.
    pub restores: Vec<RestoreView>,
    /// Newest first.
    pub audit: Vec<AuditRow>,
    pub kept: Vec<KeptDataDir>,
    /// When the server read all this (ages are measured from it: the browser has no clock in
    /// the wasm build, and the page must draw the same text as the server did).
    pub read_at: DateTime<Utc>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub who: String,
    pub from: String,
    pub what: String,
    pub target: Option<String>,
    pub outcome: String,
}

/// A data directory a restore set aside, kept until someone discards it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptDataDir {
    pub restore_id: String,
    pub bytes: u64,
    /// When the restore set it aside (from its journal), if known.
    pub set_aside_at: Option<DateTime<Utc>>,
    /// How that restore ended (`accepted …`, `rolled back …`), or that it is still open.
    pub restore_outcome: String,
    /// It belongs to the open restore: it cannot be discarded yet.
    pub in_use: bool,
}

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
        last_failed_wal: Option<String>,
        last_failed_time: Option<DateTime<Utc>>,
        /// `archive_timeout`: the WAL age it is measured against.
        archive_timeout_secs: i64,
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
    /// Why the end of the window is unknown, when pg_waldump could not read the newest WAL.
    pub window_problem: Option<String>,
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

/// A restore as the dry run plans it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanView {
    /// The target, in UTC (a transaction target: the transaction's end).
    pub target: DateTime<Utc>,
    /// A transaction target in words: `just before transaction 745 (ended ...)`.
    pub target_transaction: Option<String>,
    pub backup_id: String,
    pub backup_end: DateTime<Utc>,
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    /// The steps that will run, in order, each with one sentence of what it does.
    pub steps: Vec<(String, String)>,
    pub server_was_running: bool,
    pub needed_bytes: u64,
    pub free_bytes: u64,
    pub warnings: Vec<String>,
    /// The name the operator types to confirm.
    pub database: String,
    /// How long PostgreSQL is expected to be down, and from what, when an earlier restore here
    /// measured it.
    pub expected_downtime: Option<String>,
    /// A preview: recovered beside production, swapped in on accept.
    pub preview: bool,
    /// A preview that holds production's writes while it is open.
    pub hold_writes: bool,
}

/// Whether a preview restore can run beside production now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreflightView {
    pub passes: bool,
    /// Why not, in words.
    pub problems: Vec<String>,
}

/// What production did since the open preview began: the swap discards it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductionWritesView {
    pub since: DateTime<Utc>,
    /// Rows inserted, updated and deleted (`None`: the statistics were reset).
    pub rows_written: Option<i64>,
    /// Transactions committed, read-only ones included.
    pub commits: Option<i64>,
    pub held: bool,
}

/// One step of a restore as its journal tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub step: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub detail: Option<String>,
}

/// The restore in progress, or the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RestoreView {
    pub restore_id: String,
    /// `running`, `paused` or `closed`.
    pub state: String,
    pub target: DateTime<Utc>,
    /// A transaction target in words (see [`PlanView::target_transaction`]).
    pub target_transaction: Option<String>,
    pub backup_id: String,
    pub steps: Vec<StepView>,
    /// The newest lines of the restore's log (Barman's and PostgreSQL's output among them).
    pub log_tail: Vec<String>,
    /// How it ended: `accepted on timeline N` or `rolled back: why`.
    pub outcome: Option<String>,
    pub pre_restore_dir: String,
    /// While paused: what PostgreSQL itself says about its replay (asked, not journaled).
    pub replay: Option<ReplayView>,
    /// A preview: the paused copy runs beside production, which keeps serving.
    pub preview: bool,
    /// While a preview is paused: production's writes since it began.
    pub production_writes: Option<ProductionWritesView>,
}

/// A paused server's replay, as PostgreSQL reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayView {
    /// `pg_get_wal_replay_pause_state()` is `paused`.
    pub paused: bool,
    /// `pg_last_xact_replay_timestamp()`: the last transaction replayed.
    pub last_replayed: Option<DateTime<Utc>>,
}

/// Rows of a verify query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryView {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub truncated: bool,
}

/// A target written as a transaction: `before xid 745` or `after xid 745` (the wizard's list
/// writes these; a person may too). `None` for anything else (a time, or nonsense).
pub fn parse_transaction_target(text: &str) -> Option<(bool, u32)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [side, "xid", n] => {
            let before = match *side {
                "before" => true,
                "after" => false,
                _ => return None,
            };
            Some((before, n.parse().ok()?))
        }
        _ => None,
    }
}

/// The text of a transaction target (see [`parse_transaction_target`]).
pub fn transaction_target_text(before: bool, xid: u32) -> String {
    format!("{} xid {xid}", if before { "before" } else { "after" })
}

/// One transaction found in the WAL, as the wizard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionRow {
    pub xid: u32,
    pub committed: bool,
    /// Commit (or abort) time, UTC.
    pub ended_at: DateTime<Utc>,
    pub end_lsn: String,
    /// `14:03:07 UTC, xid 1234: DELETE 5,000 rows from orders`.
    pub line: String,
    /// A drop, a truncate, or one of the largest deletes.
    pub suspicious: bool,
}

/// The transactions of a time range, for the wizard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionsView {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The ones shown (the filter applied, at most a page, nearest the middle of the range).
    pub rows: Vec<TransactionRow>,
    /// How many ended in the range, and how many of them are suspicious.
    pub total: usize,
    pub suspicious_total: usize,
    /// WAL segments read, how many pg_waldump decoded now (the rest were known), and how long
    /// the listing took.
    pub segments: usize,
    pub decoded: usize,
    pub elapsed_ms: u64,
    /// The last transaction end Barman has: later ones are still in PostgreSQL's pg_wal.
    pub last_archived_end: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod transaction_target_tests {
    use super::*;

    #[test]
    fn a_transaction_target_reads_back_from_its_text() {
        assert_eq!(
            parse_transaction_target("before xid 745"),
            Some((true, 745))
        );
        assert_eq!(parse_transaction_target(" after  xid 9 "), Some((false, 9)));
        assert_eq!(
            parse_transaction_target(&transaction_target_text(true, 4_000_000_000)),
            Some((true, 4_000_000_000))
        );
        assert_eq!(parse_transaction_target("before xid -1"), None);
        assert_eq!(parse_transaction_target("2026-11-28 05:25:40+00:00"), None);
        assert_eq!(parse_transaction_target("during xid 7"), None);
    }
}
