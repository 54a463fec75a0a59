//! Verify: read-only queries against the restored server while it is paused at the target.
//!
//! They never run as a superuser: on a paused PostgreSQL 14 a superuser's `BEGIN READ ONLY`
//! still runs `pg_wal_replay_resume()`, `pg_promote()`, `COPY ... TO PROGRAM` and
//! `pg_read_file()`. They run as the configured verify role (`postgres.verify_user`): LOGIN, no
//! superuser, a member of the database owner's role and of nothing that reaches server files
//! or programs, reached by peer authentication. barkeep checks that on every connection and
//! refuses otherwise. Each query is one SELECT (a cursor is declared over it through the
//! extended protocol, which refuses a second statement), in a read-only transaction with a
//! statement and a lock time-out, and only `max_rows + 1` rows are ever fetched.

use tokio_postgres::SimpleQueryMessage;

use super::mode::Instance;
use super::{Phase, QueryResult, RestoreError, RestoreStatus};
use crate::probe::{self, PauseState};
use crate::Engine;

/// Roles whose members read or write server files, run programs or read every table
/// (pg_read_all_data reads pg_authid's password hashes on 14.23).
const FORBIDDEN_ROLES: [&str; 5] = [
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_read_all_data",
    "pg_write_all_data",
];

impl Engine {
    /// A read-only query against the paused server, as the verify role.
    pub async fn query(&self, sql: &str, max_rows: usize) -> Result<QueryResult, RestoreError> {
        let sql = sql.trim().trim_end_matches(';').trim_end();
        if sql.is_empty() {
            return Err(RestoreError::Query("the query is empty".into()));
        }
        if sql.len() > 64 * 1024 {
            return Err(RestoreError::Query(
                "the query is longer than 64 KiB".into(),
            ));
        }
        if sql.contains('\0') {
            return Err(RestoreError::Query("the query holds a NUL byte".into()));
        }
        let max_rows = max_rows.clamp(1, 10_000);
        let copy = self.require_paused().await?;
        let pg = &copy.pg;
        let role = pg.verify_user.as_str();
        let client = probe::connect_as(pg, role)
            .await
            .map_err(|e| verify_role_error(role, e))?;
        prove_harmless(&client, role).await?;
        let q = |source| probe::ProbeError::Query {
            what: "verify query",
            source,
        };
        client
            .batch_execute(
                "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY; \
                 SET LOCAL statement_timeout = '10s'; SET LOCAL lock_timeout = '2s'; \
                 SET LOCAL idle_in_transaction_session_timeout = '60s'",
            )
            .await
            .map_err(q)?;
        // Extended protocol: exactly one statement, and only a query a cursor can run.
        let declared = client
            .execute(
                &format!("DECLARE barkeep_verify NO SCROLL CURSOR FOR {sql}"),
                &[],
            )
            .await;
        if let Err(e) = declared {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(RestoreError::Query(db_error_text(&e)));
        }
        let fetched = client
            .simple_query(&format!(
                "FETCH FORWARD {} FROM barkeep_verify",
                max_rows + 1
            ))
            .await;
        let _ = client.batch_execute("ROLLBACK").await;
        let messages = fetched.map_err(|e| RestoreError::Query(db_error_text(&e)))?;
        let mut result = QueryResult {
            columns: Vec::new(),
            rows: Vec::new(),
            truncated: false,
        };
        for m in messages {
            match m {
                SimpleQueryMessage::RowDescription(cols) => {
                    result.columns = cols.iter().map(|c| c.name().to_owned()).collect();
                }
                SimpleQueryMessage::Row(row) => {
                    if result.columns.is_empty() {
                        result.columns =
                            row.columns().iter().map(|c| c.name().to_owned()).collect();
                    }
                    if result.rows.len() >= max_rows {
                        result.truncated = true;
                        continue;
                    }
                    result.rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    );
                }
                _ => {}
            }
        }
        Ok(result)
    }

    /// What the paused copy of the open restore says about itself (a preview's side instance,
    /// or the server in the data directory); `None` unless a restore is paused.
    pub async fn paused_copy_status(&self) -> Result<Option<probe::ServerStatus>, RestoreError> {
        match self.paused_copy() {
            Ok(copy) => Ok(Some(probe::status(&copy.pg).await?)),
            Err(RestoreError::NoRestore | RestoreError::NotPaused(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The copy the journal says is paused (a paused preview's swap has not begun).
    fn paused_copy(&self) -> Result<Instance, RestoreError> {
        let entries =
            super::journal::read(&self.state_dir().journal())?.ok_or(RestoreError::NoRestore)?;
        let status = RestoreStatus::from_entries(&entries).ok_or(RestoreError::NoRestore)?;
        if status.state != Phase::Paused {
            return Err(RestoreError::NotPaused(status.state.name().to_owned()));
        }
        Ok(self.restored_copy_of(&status.plan, false))
    }

    /// The journal says paused AND PostgreSQL confirms it: in recovery, replay paused. Returns
    /// the paused copy: a preview's side instance, or the server in the data directory.
    async fn require_paused(&self) -> Result<Instance, RestoreError> {
        let copy = self.paused_copy()?;
        let s = probe::status(&copy.pg).await?;
        if !s.in_recovery {
            return Err(RestoreError::NotPaused(
                "PostgreSQL is out of recovery (promoted): it is no longer the paused restore"
                    .into(),
            ));
        }
        if s.pause_state != Some(PauseState::Paused) {
            return Err(RestoreError::NotPaused(format!(
                "PostgreSQL's replay is {:?}, not paused at the target",
                s.pause_state
            )));
        }
        Ok(copy)
    }
}

fn verify_role_error(role: &str, e: probe::ProbeError) -> RestoreError {
    let missing = match &e {
        probe::ProbeError::Unreachable { source, .. } => source.as_db_error().is_some_and(|db| {
            db.code() == &tokio_postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        }),
        _ => false,
    };
    RestoreError::VerifyRole {
        role: role.to_owned(),
        why: if missing {
            format!(
                "the restored database has no role {role} (the backup predates it, or peer \
                 authentication does not map barkeep's OS user to it): accept or roll back \
                 without verify queries, or choose a backup taken after the role was created ({e})"
            )
        } else {
            e.to_string()
        },
    }
}

/// Refuses a verify role that is, or can become, more than a reader of the application.
async fn prove_harmless(client: &tokio_postgres::Client, role: &str) -> Result<(), RestoreError> {
    let rows = client
        .query(
            "SELECT r.rolname, r.rolsuper
               FROM pg_roles r
              WHERE pg_has_role(current_user, r.oid, 'MEMBER')
                AND (r.rolsuper OR r.rolreplication OR r.rolbypassrls OR r.rolname = ANY($1))",
            &[&FORBIDDEN_ROLES.as_slice()],
        )
        .await
        .map_err(|source| probe::ProbeError::Query {
            what: "verify role's memberships",
            source,
        })?;
    if rows.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = rows.iter().map(|r| r.get::<_, String>(0)).collect();
    Err(RestoreError::VerifyRole {
        role: role.to_owned(),
        why: format!(
            "it is, or is a member of, {}: verify queries must not run with those rights; \
             make {role} a member of the database owner's role only",
            names.join(", ")
        ),
    })
}

fn db_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        // Paused replay still holds the locks of transactions in flight at the target: a
        // TRUNCATE or DROP TABLE committed after the target keeps its table locked until accept.
        Some(db) if db.code() == &tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE => format!(
            "{}: the table is locked by a transaction that was still running at the target time \
             (often the harmful TRUNCATE or DROP itself); it is released when the restore is accepted, \
             or choose a target before that transaction began",
            db.message()
        ),
        Some(db) => db.message().to_owned(),
        None => e.to_string(),
    }
}
