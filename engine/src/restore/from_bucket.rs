//! A restore from the off-site bucket alone (the disaster restore, docs/offsite.md): the same
//! journaled state machine as a restore from Barman's catalog (stop, set aside, recover, start
//! paused, verify, accept | retry | roll back), with two differences, both decided by the plan's
//! [`RestoreSource::Bucket`]:
//! - the plan reads the bucket (its backups and WAL), never the local catalog, which a rebuilt
//!   host does not have; a data directory that holds no cluster (the host was rebuilt) is
//!   nothing to set aside, and a rollback then leaves it empty;
//! - the recover step restores the backup with barman-cloud-restore and fetches the WAL the
//!   replay can need with Barman's own download code into `barman_wal/` before PostgreSQL
//!   starts, as `barman recover` does locally: PostgreSQL's `restore_command` is a plain copy
//!   that needs neither the network nor the credentials (which only barkeep's user can read).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::io;
use super::guard::is_cluster;
use super::mode::RestoreMode;
use super::step::Cx;
use super::{space, Plan, RestoreError};
use crate::offsite::{Bucket, OffsiteError, RemoteBackup, Tools};
use crate::probe;
use crate::service::{Postmaster, ServiceControl};
use crate::target::{RestoreTarget, TargetTime};
use crate::wal::{classify, WalFileKind, WalSegment};
use crate::window::RecoveryWindow;
use crate::Engine;

/// Where a restore takes its backup and WAL from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum RestoreSource {
    /// Barman's catalog on this host (`barman recover`).
    #[default]
    Catalog,
    /// The off-site bucket (barman-cloud-restore and the bucket's WAL).
    Bucket {
        endpoint_url: String,
        bucket_url: String,
        /// The data directory held a cluster when the restore was planned, and it is set
        /// aside; `false` on a rebuilt host: nothing is set aside and a rollback leaves the
        /// data directory empty.
        original: bool,
    },
}

impl RestoreSource {
    pub fn is_bucket(&self) -> bool {
        matches!(self, Self::Bucket { .. })
    }

    /// Whether the restore has an original data directory to set aside and put back.
    pub fn has_original(&self) -> bool {
        match self {
            Self::Catalog => true,
            Self::Bucket { original, .. } => *original,
        }
    }
}

/// The directory `barman recover` and barkeep fetch the replay's WAL into, inside the restored
/// data directory; removed by PostgreSQL's `recovery_end_command` when recovery ends.
const WAL_DIR: &str = "barman_wal";

impl Engine {
    /// The dry run of a restore from the off-site bucket: the target checked against the
    /// bucket's backups, the data directory against what can be set aside; touches nothing.
    pub async fn plan_from_bucket(
        &self,
        target: TargetTime,
        backup_id: Option<&str>,
    ) -> Result<Plan, RestoreError> {
        let config = self.config();
        let offsite = config.offsite.as_ref().ok_or(OffsiteError::NotConfigured)?;
        let now = Utc::now();
        let restore_id = super::plan::new_restore_id(now);
        if let Some(id) = backup_id {
            if !crate::validate::is_backup_id(id) {
                return Err(RestoreError::UnknownOffsiteBackup(id.to_owned()));
            }
        }
        let bucket = Tools::new(config, offsite)?.list().await?;
        let backup = select_backup(&bucket, target, backup_id, now)?;
        let running = matches!(self.service().postmaster(), Postmaster::Running { .. });
        let mut warnings = Vec::new();
        if running {
            if let Ok(s) = probe::status(&config.postgres).await {
                warnings.push(format!(
                    "PostgreSQL is running here (timeline {}): it is stopped and its data \
                     directory set aside, kept until you discard it",
                    s.timeline
                ));
            }
        }
        let data_dir = config.postgres.data_dir.clone();
        let original = is_cluster(&data_dir);
        if original {
            space::check_renamable(&data_dir, self.state_dir().root())?;
        } else if std::fs::read_dir(&data_dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false)
        {
            // Files but no cluster: not ours to remove, nor to recover over.
            return Err(RestoreError::DestinationNotEmpty(data_dir));
        }
        let parent = data_dir.parent().unwrap_or(Path::new("/")).to_owned();
        std::fs::create_dir_all(&parent)
            .map_err(io(format!("cannot create {}", parent.display())))?;
        let free_bytes = space::free_bytes(&parent)?;
        let needed_bytes = needed_bytes(&bucket, backup);
        let pre_restore_kept = self.pre_restore_dirs();
        if free_bytes < needed_bytes {
            return Err(RestoreError::DiskFull {
                dir: parent,
                needed: needed_bytes,
                free: free_bytes,
                pre_restore_kept,
            });
        }
        warnings.extend(space::second_restore_warning(
            &parent,
            free_bytes,
            needed_bytes,
            &pre_restore_kept,
        ));
        // Barman's check also makes its directories of a rebuilt host, which archiving the
        // restored database's new timeline needs.
        let checks = self.barman_check_for_plan(&mut warnings).await;
        Ok(Plan {
            pre_restore_dir: self.state_dir().pre_restore(&restore_id),
            restore_id,
            created_at: now,
            target: RestoreTarget::Time(target),
            backup_id: backup.id.clone(),
            backup_end: backup.ended().unwrap_or(now),
            timeline: None,
            data_dir,
            server_was_running: running,
            mode: RestoreMode::InPlace,
            window: window(&bucket),
            checks,
            free_bytes,
            needed_bytes,
            pre_restore_kept,
            warnings,
            source: RestoreSource::Bucket {
                endpoint_url: offsite.endpoint_url.clone(),
                bucket_url: offsite.bucket_url.clone(),
                original,
            },
        })
    }

    /// Another target for a paused restore from the bucket: the backup for it, from the
    /// bucket as it is now.
    pub(super) async fn plan_retry_from_bucket(
        &self,
        target: RestoreTarget,
        backup_id: Option<&str>,
    ) -> Result<String, RestoreError> {
        let RestoreTarget::Time(at) = target else {
            return Err(RestoreError::OutsideWindow {
                target,
                why: "a transaction: a restore from the bucket takes a time".into(),
            });
        };
        let config = self.config();
        let offsite = config.offsite.as_ref().ok_or(OffsiteError::NotConfigured)?;
        let bucket = Tools::new(config, offsite)?.list().await?;
        select_backup(&bucket, at, backup_id, Utc::now()).map(|b| b.id.clone())
    }
}

/// The recover step of a restore from the bucket: the backup restored into the empty `data`
/// directory, the WAL from its first segment on fetched into `barman_wal/`, the recovery
/// settings written (pause at the target, archiving off until accept).
pub(super) async fn recover(cx: &Cx<'_>, data: &Path) -> Result<Option<String>, RestoreError> {
    let config = cx.engine.config();
    let offsite = config.offsite.as_ref().ok_or(OffsiteError::NotConfigured)?;
    let tools = Tools::new(config, offsite)?;
    let bucket = tools.list().await?;
    let backup = bucket
        .backups
        .iter()
        .find(|b| b.id == cx.backup_id && b.status == "DONE")
        .ok_or_else(|| RestoreError::UnknownOffsiteBackup(cx.backup_id.to_owned()))?;
    let begin = backup
        .begin_wal
        .as_deref()
        .ok_or_else(|| RestoreError::UnusableBackup {
            id: backup.id.clone(),
            why: "the bucket does not say its first WAL segment".into(),
        })?;
    let full = |e: OffsiteError| {
        if space::says_disk_full(&e.to_string()) {
            let parent = data.parent().unwrap_or(Path::new("/"));
            RestoreError::DiskFull {
                dir: parent.to_owned(),
                needed: cx.plan.needed_bytes,
                free: space::free_bytes(parent).unwrap_or(0),
                pre_restore_kept: cx.engine.pre_restore_dirs(),
            }
        } else {
            e.into()
        }
    };
    let t0 = Instant::now();
    tools.restore_backup(&backup.id, data).await.map_err(full)?;
    let restored_ms = t0.elapsed().as_millis();
    cx.run.log(format!(
        "backup {} restored from the bucket in {restored_ms} ms",
        backup.id
    ))?;
    let wal_dir = data.join(WAL_DIR);
    super::step::make_empty_data_dir(&wal_dir)?;
    let t1 = Instant::now();
    let fetched = tools.fetch_wals(begin, &wal_dir).await.map_err(full)?;
    let fetched_ms = t1.elapsed().as_millis();
    write_recovery_settings(data, cx.target.time())?;
    Ok(Some(format!(
        "backup {} from the bucket in {restored_ms} ms; {} WAL files ({}) fetched in {fetched_ms} ms",
        backup.id,
        fetched.fetched,
        space::human(fetched.bytes)
    )))
}

/// The backup a target is restored from: the one named (DONE in the bucket, ended before the
/// target), else the newest DONE one that ended before it.
fn select_backup<'b>(
    bucket: &'b Bucket,
    target: TargetTime,
    backup_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<&'b RemoteBackup, RestoreError> {
    let at = target.utc();
    let outside = |why: String| RestoreError::OutsideWindow {
        target: RestoreTarget::Time(target),
        why,
    };
    if at > now {
        return Err(outside(format!(
            "in the future (it is {} now)",
            TargetTime::new(now)
        )));
    }
    let done: Vec<&RemoteBackup> = bucket
        .backups
        .iter()
        .filter(|b| b.status == "DONE" && b.ended().is_some())
        .collect();
    if let Some(id) = backup_id {
        let b = done
            .iter()
            .find(|b| b.id == id)
            .ok_or_else(|| RestoreError::UnknownOffsiteBackup(id.to_owned()))?;
        if let Some(end) = b.ended().filter(|e| *e > at) {
            return Err(RestoreError::UnusableBackup {
                id: id.to_owned(),
                why: format!("it ended at {}, after the target", TargetTime::new(end)),
            });
        }
        return Ok(b);
    }
    let Some(oldest) = done.iter().filter_map(|b| b.ended()).min() else {
        return Err(outside(
            "not restorable from the bucket: it holds no finished backup".into(),
        ));
    };
    done.iter()
        .copied()
        .filter(|b| b.ended().is_some_and(|e| e <= at))
        .max_by_key(|b| b.ended())
        .ok_or_else(|| {
            outside(format!(
                "before the end of the oldest backup in the bucket ({}); nothing earlier can be \
                 restored",
                TargetTime::new(oldest)
            ))
        })
}

/// What the bucket can restore, as far as it can be known without replaying: from the end of
/// its oldest backup; the newest WAL segment it holds (the last transaction in it is not read).
fn window(bucket: &Bucket) -> RecoveryWindow {
    RecoveryWindow {
        earliest: bucket
            .backups
            .iter()
            .filter(|b| b.status == "DONE")
            .filter_map(RemoteBackup::ended)
            .min(),
        latest: None,
        latest_segment: bucket
            .wals
            .iter()
            .filter(|w| WalSegment::parse(&w.name).is_some())
            .map(|w| w.name.clone())
            .max(),
    }
}

/// What the restore writes next to a set-aside original: the backup, the WAL it may replay
/// (history files aside), a margin.
fn needed_bytes(bucket: &Bucket, backup: &RemoteBackup) -> u64 {
    let segments = backup
        .begin_wal
        .as_deref()
        .and_then(WalSegment::parse)
        .map(|begin| {
            bucket
                .wals
                .iter()
                .filter_map(|w| match classify(&w.name) {
                    WalFileKind::Segment(s) => Some(s),
                    _ => None,
                })
                .filter(|s| s.timeline >= begin.timeline && s.index() >= begin.index())
                .count() as u64
        })
        .unwrap_or(0);
    space::restore_bytes(backup.size.unwrap_or(0), segments)
}

/// The settings `barman recover --target-time .. --target-action pause` writes, for a replay
/// from `barman_wal/`: appended to postgresql.auto.conf (later lines win, and accept removes
/// them by ALTER SYSTEM as it removes Barman's), and `recovery.signal`.
fn write_recovery_settings(data: &Path, target: TargetTime) -> Result<(), RestoreError> {
    let auto = data.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&auto)
        .map_err(io(format!("cannot open {}", auto.display())))?;
    file.write_all(recovery_settings(target).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("cannot write {}", auto.display())))?;
    let signal = data.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(io(format!("cannot write {}", signal.display())))?;
    super::journal::sync_dir(data).map_err(io(format!("cannot sync {}", data.display())))
}

fn recovery_settings(target: TargetTime) -> String {
    let line = |k: &str, v: &str| format!("{k} = '{}'\n", v.replace('\'', "''"));
    [
        "# barkeep: a restore from the off-site bucket (removed when it is accepted)\n".to_owned(),
        line("restore_command", &format!("cp {WAL_DIR}/%f %p")),
        line("recovery_end_command", &format!("rm -fr {WAL_DIR}")),
        line("recovery_target_time", &target.for_barman()),
        line("recovery_target_timeline", "latest"),
        line("recovery_target_action", "pause"),
        // As `barman recover` does: nothing is archived from the copy before accept turns
        // archiving back on.
        line("archive_command", "false"),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offsite::RemoteWal;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, h, m, 0)
            .single()
            .expect("a time")
    }

    fn backup(id: &str, status: &str, end: DateTime<Utc>, begin_wal: &str) -> RemoteBackup {
        RemoteBackup {
            id: id.into(),
            status: status.into(),
            begin_wal: Some(begin_wal.into()),
            end_wal: None,
            end_time: Some(end.timestamp() as f64),
            size: Some(100 << 20),
        }
    }

    fn wal(name: &str) -> RemoteWal {
        RemoteWal {
            name: name.into(),
            key: format!("p/pg/wals/x/{name}.gz"),
            size: 1,
            modified: 0.0,
        }
    }

    fn bucket() -> Bucket {
        Bucket {
            backups: vec![
                backup(
                    "20261128T100000",
                    "DONE",
                    at(10, 1),
                    "000000010000000000000002",
                ),
                backup(
                    "20261128T120000",
                    "FAILED",
                    at(12, 1),
                    "000000010000000000000004",
                ),
                backup(
                    "20261128T140000",
                    "DONE",
                    at(14, 1),
                    "000000010000000000000006",
                ),
            ],
            wals: [
                "000000010000000000000002",
                "000000010000000000000002.00000028.backup",
                "000000010000000000000005",
                "000000010000000000000006",
                "000000010000000000000007",
                "00000002.history",
                "000000020000000000000007",
            ]
            .into_iter()
            .map(wal)
            .collect(),
        }
    }

    #[test]
    fn the_newest_finished_backup_before_the_target_is_chosen() {
        let b = bucket();
        let now = at(16, 0);
        let pick = |t, id| select_backup(&b, TargetTime::new(t), id, now).map(|b| b.id.clone());
        assert_eq!(pick(at(15, 0), None).expect("ok"), "20261128T140000");
        // The FAILED one in between is never chosen.
        assert_eq!(pick(at(13, 0), None).expect("ok"), "20261128T100000");
        assert_eq!(
            pick(at(15, 0), Some("20261128T100000")).expect("ok"),
            "20261128T100000"
        );
        assert!(matches!(
            pick(at(9, 0), None),
            Err(RestoreError::OutsideWindow { .. })
        ));
        assert!(matches!(
            pick(at(17, 0), None),
            Err(RestoreError::OutsideWindow { .. })
        ));
        assert!(matches!(
            pick(at(15, 0), Some("20261128T120000")),
            Err(RestoreError::UnknownOffsiteBackup(_))
        ));
        assert!(matches!(
            pick(at(13, 0), Some("20261128T140000")),
            Err(RestoreError::UnusableBackup { .. })
        ));
        let empty = Bucket {
            backups: vec![],
            wals: vec![],
        };
        let e = select_backup(&empty, TargetTime::new(at(15, 0)), None, now)
            .expect_err("nothing to restore");
        assert!(e.to_string().contains("holds no finished backup"), "{e}");
    }

    #[test]
    fn the_space_counts_the_segments_from_the_backups_first_one() {
        let b = bucket();
        // From ...06 on: 06, 07 and the later timeline's 07; not the history, not 02 or 05.
        assert_eq!(
            needed_bytes(&b, &b.backups[2]),
            space::restore_bytes(100 << 20, 3)
        );
        assert_eq!(
            window(&b).latest_segment.as_deref(),
            Some("000000020000000000000007")
        );
        assert_eq!(window(&b).earliest, Some(at(10, 1)));
    }

    #[test]
    fn the_recovery_settings_pause_at_the_target_in_utc_and_archive_nothing() {
        let text = recovery_settings(TargetTime::new(at(15, 30)));
        assert!(text.contains("restore_command = 'cp barman_wal/%f %p'\n"));
        assert!(text.contains("recovery_target_time = '2026-11-28 15:30:00.000000+00:00'\n"));
        assert!(text.contains("recovery_target_action = 'pause'\n"));
        assert!(text.contains("archive_command = 'false'\n"));
        // Everything but the archive_command is what accept removes.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let key = line.split(" = ").next().expect("a key");
            assert!(
                key == "archive_command"
                    || super::super::leftovers::RECOVERY_SETTINGS.contains(&key),
                "{key}"
            );
        }
    }
}
