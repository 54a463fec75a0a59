//! How long PostgreSQL will be down for a restore, from what the last restore here measured:
//! its downtime (from the start of its stop step to the end of its start_paused step) scaled
//! by the bytes the new one writes. No earlier restore: no estimate (a guess would be a number
//! nobody measured).

use chrono::TimeDelta;

use super::{Phase, RestoreStatus, Step};
use crate::Engine;

/// An expected downtime and what it rests on.
#[derive(Debug, Clone, PartialEq)]
pub struct Downtime {
    pub expected: TimeDelta,
    /// The restore it was measured on.
    pub basis_restore: String,
    pub basis_downtime: TimeDelta,
    pub basis_bytes: u64,
}

impl Engine {
    /// The expected downtime of a restore that writes `needed_bytes`, from the newest closed
    /// restore that reached the paused state.
    pub fn expected_downtime(&self, needed_bytes: u64) -> Option<Downtime> {
        self.history(20)
            .iter()
            .find_map(measured)
            .map(|(basis, downtime)| scale(basis, downtime, needed_bytes))
    }
}

/// A closed restore's downtime: stop started to start_paused finished, both without error.
fn measured(r: &RestoreStatus) -> Option<(&RestoreStatus, TimeDelta)> {
    if r.state != Phase::Closed || r.plan.needed_bytes == 0 {
        return None;
    }
    let stop = r
        .steps
        .iter()
        .find(|s| s.step == Step::Stop && s.error.is_none())?;
    let paused = r
        .steps
        .iter()
        .filter(|s| s.step == Step::StartPaused && s.error.is_none())
        .find_map(|s| s.finished)?;
    let downtime = paused - stop.started;
    (downtime > TimeDelta::zero()).then_some((r, downtime))
}

fn scale(basis: &RestoreStatus, downtime: TimeDelta, needed_bytes: u64) -> Downtime {
    let ratio = needed_bytes as f64 / basis.plan.needed_bytes as f64;
    let ms = (downtime.num_milliseconds() as f64 * ratio)
        .round()
        .max(1000.0);
    Downtime {
        expected: TimeDelta::milliseconds(ms as i64),
        basis_restore: basis.restore_id.clone(),
        basis_downtime: downtime,
        basis_bytes: basis.plan.needed_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restore::journal::{Entry, Record};
    use crate::restore::Outcome;
    use chrono::{DateTime, Utc};

    fn status(needed: u64, stop_at: i64, paused_at: i64) -> RestoreStatus {
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_795_800_000 + s, 0).expect("a time");
        let json = serde_json::json!({
            "restore_id": "r20261127T100000000Z",
            "created_at": t(0),
            "target": "2026-11-27T09:00:00Z",
            "backup_id": "20261127T080000",
            "backup_end": t(-3600),
            "timeline": 1,
            "data_dir": "/d",
            "pre_restore_dir": "/p",
            "server_was_running": true,
            "window": { "earliest": null, "latest": null, "latest_segment": null },
            "checks": [],
            "free_bytes": 1u64 << 40,
            "needed_bytes": needed,
            "warnings": []
        });
        let plan = serde_json::from_value(json).expect("a plan");
        let entry = |seq, s: i64, record| Entry {
            seq,
            at: t(s),
            restore_id: "r20261127T100000000Z".into(),
            record,
        };
        let entries = vec![
            entry(
                1,
                0,
                Record::Planned {
                    plan: Box::new(plan),
                },
            ),
            entry(
                2,
                stop_at,
                Record::StepStarted {
                    step: Step::Stop,
                    target: None,
                },
            ),
            entry(
                3,
                stop_at + 1,
                Record::StepFinished {
                    step: Step::Stop,
                    detail: None,
                },
            ),
            entry(
                4,
                paused_at - 1,
                Record::StepStarted {
                    step: Step::StartPaused,
                    target: None,
                },
            ),
            entry(
                5,
                paused_at,
                Record::StepFinished {
                    step: Step::StartPaused,
                    detail: None,
                },
            ),
            entry(
                6,
                paused_at + 30,
                Record::Closed {
                    outcome: Outcome::Accepted { timeline: 2 },
                },
            ),
        ];
        RestoreStatus::from_entries(&entries).expect("a status")
    }

    #[test]
    fn the_downtime_scales_with_the_bytes_from_the_last_measured_restore() {
        let r = status(100 << 20, 10, 70);
        let (_, downtime) = measured(&r).expect("measured");
        assert_eq!(downtime, TimeDelta::seconds(60));
        let d = scale(&r, downtime, 300 << 20);
        assert_eq!(d.expected, TimeDelta::seconds(180));
        assert_eq!(d.basis_bytes, 100 << 20);
        // Never less than a second, however small the new restore.
        assert_eq!(scale(&r, downtime, 1).expected, TimeDelta::seconds(1));
    }

    #[test]
    fn a_restore_that_never_paused_measures_nothing() {
        let mut r = status(100 << 20, 10, 70);
        r.steps.retain(|s| s.step != Step::StartPaused);
        assert!(measured(&r).is_none());
        let mut open = status(100 << 20, 10, 70);
        open.state = Phase::Paused;
        assert!(measured(&open).is_none());
    }
}
