//! How far the bucket is behind the local catalog.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::catalog::{ArchivedWal, Backup, BackupStatus, Catalog};
use crate::wal::{classify, WalFileKind};

/// The bucket against the local catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lag {
    /// Local WAL files (segments, history files, backup labels) the bucket lacks.
    pub missing_wals: usize,
    /// Of those, WAL segments.
    pub missing_segments: usize,
    /// From the last WAL file the bucket holds with no hole before it to the newest local one,
    /// in seconds of archive time: what a restore from the bucket alone could not replay.
    /// 0 when the bucket has every WAL file.
    pub seconds: i64,
    pub newest_local_wal: Option<String>,
    /// The newest WAL file the bucket holds with no hole before it.
    pub newest_offsite_wal: Option<String>,
    /// Local DONE backups the bucket lacks.
    pub missing_backups: usize,
    pub newest_local_backup: Option<String>,
}

impl Lag {
    pub fn is_zero(&self) -> bool {
        self.missing_wals == 0 && self.missing_backups == 0
    }

    /// The lag of `catalog` against a bucket holding the WAL files `remote` and the DONE
    /// backups `remote_backups`.
    pub fn of(
        catalog: &Catalog,
        remote: &BTreeSet<String>,
        remote_backups: &BTreeSet<String>,
    ) -> Self {
        Self::compute(&catalog.archived, &catalog.backups, remote, remote_backups)
    }

    /// The lag when the bucket cannot be listed: it holds at most what the last run left there,
    /// every WAL file up to `frontier` (the newest it held with no hole before it) and the
    /// backups `known`.
    pub fn since(catalog: &Catalog, frontier: Option<&str>, known: &BTreeSet<String>) -> Self {
        let upto = frontier
            .and_then(|f| catalog.archived.iter().position(|w| w.name == f))
            .map_or(0, |i| i + 1);
        let held: BTreeSet<String> = catalog.archived[..upto]
            .iter()
            .map(|w| w.name.clone())
            .collect();
        Self::compute(&catalog.archived, &catalog.backups, &held, known)
    }

    fn compute(
        archived: &[ArchivedWal],
        backups: &[Backup],
        remote: &BTreeSet<String>,
        remote_backups: &BTreeSet<String>,
    ) -> Self {
        let missing: Vec<&ArchivedWal> = archived
            .iter()
            .filter(|w| !remote.contains(&w.name))
            .collect();
        let newest = archived.last();
        let first_hole = archived.iter().position(|w| !remote.contains(&w.name));
        let (seconds, newest_offsite) = match (first_hole, newest) {
            (None, Some(n)) => (0, Some(n.name.clone())),
            (None, None) => (0, None),
            (Some(i), Some(n)) => {
                let since = archived[i.saturating_sub(1)].time;
                let held = i.checked_sub(1).map(|j| archived[j].name.clone());
                ((n.time - since).num_seconds().max(0), held)
            }
            (Some(_), None) => (0, None),
        };
        let done: Vec<&Backup> = backups
            .iter()
            .filter(|b| b.status == BackupStatus::Done)
            .collect();
        Lag {
            missing_wals: missing.len(),
            missing_segments: missing
                .iter()
                .filter(|w| matches!(classify(&w.name), WalFileKind::Segment(_)))
                .count(),
            seconds,
            newest_local_wal: newest.map(|w| w.name.clone()),
            newest_offsite_wal: newest_offsite,
            missing_backups: done
                .iter()
                .filter(|b| !remote_backups.contains(&b.id))
                .count(),
            newest_local_backup: done.last().map(|b| b.id.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn wal(name: &str, secs: i64) -> ArchivedWal {
        ArchivedWal {
            name: name.into(),
            size: 16_000,
            time: Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap(),
            compression: Some("gzip".into()),
        }
    }

    fn names(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    const A: &str = "000000010000000000000002";
    const LABEL: &str = "000000010000000000000002.00000028.backup";
    const B: &str = "000000010000000000000003";
    const C: &str = "000000010000000000000004";

    #[test]
    fn in_sync_is_zero() {
        let archived = [wal(A, 0), wal(LABEL, 1), wal(B, 60), wal(C, 120)];
        let lag = Lag::compute(&archived, &[], &names(&[A, LABEL, B, C]), &names(&[]));
        assert!(lag.is_zero());
        assert_eq!(lag.seconds, 0);
        assert_eq!(lag.newest_offsite_wal.as_deref(), Some(C));
    }

    #[test]
    fn a_hole_counts_from_the_file_before_it_even_when_later_ones_are_there() {
        let archived = [wal(A, 0), wal(LABEL, 1), wal(B, 60), wal(C, 120)];
        // B failed once; C was copied after it: a restore from the bucket stops before B.
        let lag = Lag::compute(&archived, &[], &names(&[A, LABEL, C]), &names(&[]));
        assert_eq!((lag.missing_wals, lag.missing_segments), (1, 1));
        assert_eq!(lag.seconds, 119);
        assert_eq!(lag.newest_offsite_wal.as_deref(), Some(LABEL));
        assert_eq!(lag.newest_local_wal.as_deref(), Some(C));
        assert!(!lag.is_zero());
    }

    #[test]
    fn an_empty_bucket_lags_by_the_whole_archive() {
        let archived = [wal(A, 0), wal(LABEL, 1), wal(B, 60)];
        let lag = Lag::compute(&archived, &[], &names(&[]), &names(&[]));
        assert_eq!((lag.missing_wals, lag.missing_segments), (3, 2));
        assert_eq!(lag.seconds, 60);
        assert_eq!(lag.newest_offsite_wal, None);
    }
}
