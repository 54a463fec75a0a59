//! The dashboard in Prometheus' text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write;

use app::model::{DashboardView, PostgresState};
use chrono::{DateTime, Utc};

/// Renders `view` as read at `now`. A value that is not known (PostgreSQL down, no backup yet)
/// is left out rather than written as a made-up number.
pub fn render(view: &DashboardView, now: DateTime<Utc>) -> String {
    let mut out = Metrics::default();
    let (up, failed) = match &view.postgres.state {
        PostgresState::Up { failed_count, .. } => (1, Some(*failed_count)),
        PostgresState::Down { .. } => (0, None),
    };
    out.gauge(
        "barkeep_postgres_up",
        "PostgreSQL answered the last probe (1) or not (0).",
        &[],
        up,
    );
    if let Some(f) = failed {
        out.counter(
            "barkeep_archiver_failed_total",
            "WAL files PostgreSQL failed to archive (pg_stat_archiver.failed_count).",
            f,
        );
    }
    if let Ok(c) = &view.catalog {
        if let Some(last) = c.last_wal {
            out.gauge(
                "barkeep_wal_age_seconds",
                "Seconds since the newest WAL file reached Barman.",
                &[],
                (c.read_at - last).num_seconds().max(0),
            );
        }
        if let Some(end) = c
            .backups
            .iter()
            .filter(|b| b.recoverable)
            .filter_map(|b| b.end)
            .max()
        {
            out.gauge(
                "barkeep_last_backup_age_seconds",
                "Seconds since the newest usable base backup ended.",
                &[],
                (now - end).num_seconds().max(0),
            );
        }
        let mut by_status: BTreeMap<&str, i64> = BTreeMap::new();
        for b in &c.backups {
            *by_status.entry(b.status.as_str()).or_default() += 1;
        }
        out.help(
            "barkeep_backups",
            "Base backups in Barman's catalog, by status.",
            "gauge",
        );
        for (status, n) in by_status {
            out.sample("barkeep_backups", &[("status", status)], n);
        }
        if let Some(e) = c.earliest {
            out.gauge(
                "barkeep_recovery_window_start_timestamp_seconds",
                "The earliest time a restore can reach (Unix time).",
                &[],
                e.timestamp(),
            );
        }
        if let Some(l) = c.latest {
            out.gauge(
                "barkeep_recovery_window_end_timestamp_seconds",
                "The last archived transaction: the latest time a restore can reach (Unix time).",
                &[],
                l.timestamp(),
            );
        }
        out.gauge(
            "barkeep_wal_incoming_files",
            "WAL files waiting in Barman's incoming/ (growing: barman cron is not running).",
            &[],
            c.pending_wal as i64,
        );
        out.gauge(
            "barkeep_wal_error_files",
            "Files in Barman's errors/ directory.",
            &[],
            c.wal_errors as i64,
        );
    }
    out.gauge(
        "barkeep_catalog_readable",
        "Barman's catalog could be read (1) or not (0).",
        &[],
        i64::from(view.catalog.is_ok()),
    );
    let state = match &view.restore_open {
        None => "none",
        Some(r) if r.state == "paused" => "paused",
        Some(_) => "running",
    };
    out.help(
        "barkeep_restore_state",
        "The restore state: 1 for the current one.",
        "gauge",
    );
    for s in ["none", "running", "paused"] {
        out.sample(
            "barkeep_restore_state",
            &[("state", s)],
            i64::from(s == state),
        );
    }
    if let Some(check) = &view.check {
        out.gauge(
            "barkeep_barman_check_ok",
            "Every check of the last `barman check` passed (1) or not (0).",
            &[],
            i64::from(check.ok),
        );
        out.gauge(
            "barkeep_barman_check_timestamp_seconds",
            "When the last `barman check` finished (Unix time).",
            &[],
            check.finished.timestamp(),
        );
    }
    if let Some(run) = view.offsite.as_ref().and_then(|o| o.last_run.as_ref()) {
        out.gauge(
            "barkeep_offsite_last_run_ok",
            "The last off-site replication run finished its work (1) or not (0).",
            &[],
            i64::from(run.error.is_none()),
        );
        out.gauge(
            "barkeep_offsite_last_run_timestamp_seconds",
            "When the last off-site replication run finished (Unix time).",
            &[],
            run.finished.timestamp(),
        );
        for (name, help, value) in [
            (
                "barkeep_offsite_lag_segments",
                "WAL segments of Barman's catalog the off-site bucket lacks.",
                run.missing_segments.map(|n| n as i64),
            ),
            (
                "barkeep_offsite_lag_seconds",
                "Archive time the off-site bucket could not replay: from its last WAL file with no \
                 hole before it to the newest local one.",
                run.lag_seconds,
            ),
            (
                "barkeep_offsite_missing_backups",
                "Backups of Barman's catalog (DONE) the off-site bucket lacks.",
                run.missing_backups.map(|n| n as i64),
            ),
        ] {
            if let Some(v) = value {
                out.gauge(name, help, &[], v);
            }
        }
    }
    out.text
}

#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn help(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: i64) {
        let labels = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>();
        if labels.is_empty() {
            let _ = writeln!(self.text, "{name} {value}");
        } else {
            let _ = writeln!(self.text, "{name}{{{}}} {value}", labels.join(","));
        }
    }

    fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: i64) {
        self.help(name, help, "gauge");
        self.sample(name, labels, value);
    }

    fn counter(&mut self, name: &str, help: &str, value: i64) {
        self.help(name, help, "counter");
        self.sample(name, &[], value);
    }
}

/// A label value as the format wants it: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::model::{BackupRow, CatalogView, CheckView, PostgresView};
    use chrono::TimeZone;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 27, 10, 0, s)
            .single()
            .expect("a time")
    }

    fn view() -> DashboardView {
        DashboardView {
            postgres: PostgresView {
                checked_at: at(30),
                state: PostgresState::Up {
                    version: "14.23".into(),
                    in_recovery: false,
                    timeline: 1,
                    archived_count: 10,
                    last_archived_wal: None,
                    failed_count: 2,
                    last_failed_wal: None,
                    last_failed_time: None,
                    archive_timeout_secs: 900,
                },
            },
            catalog: Ok(CatalogView {
                backups: ["DONE", "DONE", "FAILED"]
                    .iter()
                    .enumerate()
                    .map(|(i, s)| BackupRow {
                        id: format!("2026112{i}T000000"),
                        status: (*s).into(),
                        recoverable: *s == "DONE",
                        begin: Some(at(0)),
                        end: Some(at(i as u32)),
                        size_bytes: Some(1),
                        timeline: Some(1),
                    })
                    .collect(),
                earliest: Some(at(0)),
                latest: Some(at(20)),
                window_problem: None,
                last_wal: Some(at(25)),
                pending_wal: 3,
                wal_errors: 0,
                read_at: at(30),
            }),
            check: Some(CheckView {
                started: at(1),
                finished: at(2),
                ok: false,
                passed: 10,
                failing: Vec::new(),
                problem: None,
            }),
            check_running: false,
            restore_open: Some(app::model::OpenRestore {
                restore_id: Some("r20261127T100000000Z".into()),
                state: "paused".into(),
            }),
            offsite: Some(app::model::OffsiteView {
                bucket_url: "s3://barkeep/pg".into(),
                endpoint_url: "http://127.0.0.1:3900".into(),
                interval_secs: 60,
                last_run: Some(app::model::OffsiteRun {
                    finished: at(35),
                    error: Some("cannot reach the off-site endpoint".into()),
                    missing_segments: Some(4),
                    missing_wals: Some(5),
                    lag_seconds: Some(180),
                    missing_backups: Some(0),
                    newest_offsite_backup: Some("20261120T000000".into()),
                    copied_wals: 0,
                    copied_backups: Vec::new(),
                    in_sync: false,
                }),
            }),
        }
    }

    #[test]
    fn every_sample_is_rendered_with_its_help_and_type() {
        let text = render(&view(), at(40));
        for line in [
            "barkeep_postgres_up 1",
            "barkeep_archiver_failed_total 2",
            "barkeep_wal_age_seconds 5",
            // The newest usable backup ended at :01 (the FAILED one is not usable).
            "barkeep_last_backup_age_seconds 39",
            "barkeep_backups{status=\"DONE\"} 2",
            "barkeep_backups{status=\"FAILED\"} 1",
            "barkeep_wal_incoming_files 3",
            "barkeep_restore_state{state=\"paused\"} 1",
            "barkeep_restore_state{state=\"none\"} 0",
            "barkeep_barman_check_ok 0",
            "barkeep_offsite_last_run_ok 0",
            "barkeep_offsite_lag_segments 4",
            "barkeep_offsite_lag_seconds 180",
            "barkeep_offsite_missing_backups 0",
            "# TYPE barkeep_archiver_failed_total counter",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        // Each metric name has exactly one TYPE line.
        let mut types: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or_default())
            .collect();
        let n = types.len();
        types.dedup();
        assert_eq!(types.len(), n);
    }

    #[test]
    fn unknown_values_are_left_out_not_invented() {
        let mut v = view();
        v.postgres.state = PostgresState::Down {
            reason: "refused".into(),
        };
        v.catalog = Err(app::model::AppError::CatalogUnreadable);
        v.check = None;
        v.offsite = None;
        let text = render(&v, at(40));
        assert!(text.contains("barkeep_postgres_up 0"));
        assert!(text.contains("barkeep_catalog_readable 0"));
        for absent in [
            "barkeep_wal_age_seconds",
            "barkeep_archiver_failed_total",
            "barkeep_barman_check_ok",
            "barkeep_offsite_lag_seconds",
        ] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
