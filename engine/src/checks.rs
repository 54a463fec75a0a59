//! `barman check`, kept: the dashboard shows the last result and never runs barman on its read
//! path. A check runs in the background at an interval (the server's loop) and on demand, one
//! at a time: a caller who asks while one runs gets that run's report (a run that started after
//! the call, as [`crate::overview`]'s shared reads do), not a second barman process.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::barman::CheckItem;
use crate::overview::Shared;
use crate::restore::RestoreError;
use crate::Engine;

/// One run of `barman check`.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Every check barman made, or why barman could not be asked.
    pub result: Result<Vec<CheckItem>, String>,
}

impl CheckReport {
    /// Whether every check passed.
    pub fn ok(&self) -> bool {
        self.result
            .as_ref()
            .is_ok_and(|items| items.iter().all(|i| i.ok))
    }

    /// The checks that failed (none when barman could not be asked: see `result`).
    pub fn failing(&self) -> Vec<&CheckItem> {
        match &self.result {
            Ok(items) => items.iter().filter(|i| !i.ok).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// What the engine keeps of `barman check`.
#[derive(Default)]
pub(crate) struct CheckCache {
    run: Shared<Arc<CheckReport>>,
    last: Mutex<Option<Arc<CheckReport>>>,
    running: AtomicBool,
}

impl Engine {
    /// Runs `barman check` now, or waits for the run under way, and keeps its report.
    pub async fn barman_check(&self) -> Arc<CheckReport> {
        let checks = &self.reads().checks;
        let report = checks
            .run
            .get(|| async {
                checks.running.store(true, Ordering::SeqCst);
                let started = Utc::now();
                let mut result = self.barman().check().await.map_err(|e| e.to_string());
                if let (Ok(items), Some(_)) = (&mut result, &self.config().offsite) {
                    items.push(offsite_item(self.offsite_status().as_ref()));
                }
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "barman check could not run");
                }
                let report = Arc::new(CheckReport {
                    started,
                    finished: Utc::now(),
                    result,
                });
                if let Ok(mut last) = checks.last.lock() {
                    *last = Some(Arc::clone(&report));
                }
                checks.running.store(false, Ordering::SeqCst);
                Some(report)
            })
            .await;
        // The closure always yields a report; `get` gives None only when it did not.
        report.unwrap_or_else(|| {
            Arc::new(CheckReport {
                started: Utc::now(),
                finished: Utc::now(),
                result: Err("the check did not finish".into()),
            })
        })
    }

    /// `barman check` on demand: refused while a restore is open (PostgreSQL is stopped or
    /// paused on purpose then, and the failures would only be noise).
    pub async fn barman_check_now(&self) -> Result<Arc<CheckReport>, RestoreError> {
        self.refuse_during_restore("running barman check")?;
        Ok(self.barman_check().await)
    }

    /// The last finished `barman check`, without waiting or running one.
    pub fn last_barman_check(&self) -> Option<Arc<CheckReport>> {
        self.reads()
            .checks
            .last
            .lock()
            .ok()
            .and_then(|last| last.clone())
    }

    /// Whether a `barman check` is running now.
    pub fn barman_check_running(&self) -> bool {
        self.reads().checks.running.load(Ordering::SeqCst)
    }
}

/// The off-site copy as one more line of the check, from the last replication run (barkeep
/// copies outside Barman's hooks, so `barman check` itself cannot know of the bucket).
fn offsite_item(last: Option<&crate::offsite::OffsiteStatus>) -> CheckItem {
    let (ok, hint) = match last {
        None => (true, "(no replication run yet)".to_owned()),
        Some(s) => match (&s.error, &s.lag) {
            (Some(e), _) => (false, format!("({e})")),
            (None, Some(lag)) if !lag.is_zero() => (
                true,
                format!(
                    "(copying: {} WAL segment(s) and {} backup(s) behind)",
                    lag.missing_segments, lag.missing_backups
                ),
            ),
            (None, _) => (true, String::new()),
        },
    };
    CheckItem {
        name: "off-site copy".into(),
        ok,
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_off_site_line_fails_with_the_last_runs_error() {
        assert!(offsite_item(None).ok);
        let at = Utc::now();
        let run = |error: Option<&str>| crate::offsite::OffsiteStatus {
            started: at,
            finished: at,
            endpoint_url: "http://127.0.0.1:3900".into(),
            bucket_url: "s3://b/p".into(),
            lag: None,
            copied_wals: 0,
            copied_backups: Vec::new(),
            offsite_backups: Vec::new(),
            error: error.map(str::to_owned),
        };
        let failed = offsite_item(Some(&run(Some("the store refused the credentials"))));
        assert!(!failed.ok);
        assert!(
            failed.hint.contains("refused the credentials"),
            "{failed:?}"
        );
        assert!(offsite_item(Some(&run(None))).ok);
    }

    fn item(name: &str, ok: bool) -> CheckItem {
        CheckItem {
            name: name.into(),
            ok,
            hint: String::new(),
        }
    }

    #[test]
    fn a_report_is_ok_only_when_every_check_passed() {
        let at = Utc::now();
        let report = |result| CheckReport {
            started: at,
            finished: at,
            result,
        };
        assert!(report(Ok(vec![item("ssh", true), item("wal", true)])).ok());
        let failed = report(Ok(vec![item("ssh", true), item("wal", false)]));
        assert!(!failed.ok());
        assert_eq!(failed.failing(), vec![&item("wal", false)]);
        let unreachable = report(Err("no barman".into()));
        assert!(!unreachable.ok());
        assert!(unreachable.failing().is_empty());
    }
}
