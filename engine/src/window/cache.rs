//! The recovery-window cache (see the module above): answers per [`WindowKey`], computed
//! once for all concurrent callers, and what each segment holds memoised per [`SegmentKey`].

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Utc};

use super::{blocking, candidates, task_error, Candidate, Location, RecoveryWindow, WindowError};
use crate::catalog::Catalog;
use crate::wal::WalSegment;
use crate::waldump::{decode, Decoded};

/// What identifies the content of one segment file, for the per-segment memo.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SegmentKey {
    /// Barman never rewrites an archived segment: its name (and size) identify it.
    Archived { segment: WalSegment, size: u64 },
    /// archive_command may still be copying it: its size and mtime as seen now.
    Incoming {
        segment: WalSegment,
        size: u64,
        modified: SystemTime,
    },
}

impl SegmentKey {
    /// The key of a candidate; `file` is (size, mtime) of an incoming file (unused for archived
    /// segments). `None` when an incoming file was not there (`barman cron` moved it meanwhile).
    pub fn of(candidate: &Candidate, file: Option<(u64, SystemTime)>) -> Option<Self> {
        match candidate.location {
            Location::Archived { size } => Some(Self::Archived {
                segment: candidate.segment,
                size,
            }),
            Location::Incoming => file.map(|(size, modified)| Self::Incoming {
                segment: candidate.segment,
                size,
                modified,
            }),
        }
    }

    pub fn segment(&self) -> WalSegment {
        match self {
            Self::Archived { segment, .. } | Self::Incoming { segment, .. } => *segment,
        }
    }
}

/// What determines the window: the earliest recoverable backup and the newest segment file
/// (only the newest can still be growing: PostgreSQL archives one segment at a time, in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowKey {
    pub earliest: Option<DateTime<Utc>>,
    pub newest: Option<SegmentKey>,
}

/// The engine's recovery-window cache (see the module documentation). Cheap to clone: clones
/// share everything.
#[derive(Clone, Default)]
pub struct WindowCache {
    inner: Arc<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    state: tokio::sync::Mutex<CacheState>,
    waldump_runs: AtomicU64,
}

#[derive(Default)]
struct CacheState {
    last: Option<(WindowKey, RecoveryWindow)>,
    /// Last transaction time per segment file decoded (None: none in it).
    memo: HashMap<SegmentKey, Option<DateTime<Utc>>>,
}

impl std::fmt::Debug for WindowCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowCache")
            .field("waldump_runs", &self.waldump_runs())
            .finish_non_exhaustive()
    }
}

impl WindowCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many times this cache has started pg_waldump (for tests and the bench).
    pub fn waldump_runs(&self) -> u64 {
        self.inner.waldump_runs.load(Ordering::Relaxed)
    }

    /// The recovery window of `catalog`: from the cache when nothing it depends on changed,
    /// else computed once (concurrent callers wait for that one computation), decoding only
    /// segments not decoded before. The computation runs in its own task: a caller that goes
    /// away (a closed HTTP connection) does not waste the others' wait.
    pub async fn window(
        &self,
        catalog: &Catalog,
        pg_bin_dir: &Path,
    ) -> Result<RecoveryWindow, WindowError> {
        let earliest = catalog.earliest_recoverable();
        let candidates = candidates(catalog);
        let inner = Arc::clone(&self.inner);
        let pg_bin_dir = pg_bin_dir.to_owned();
        tokio::spawn(async move { inner.compute(earliest, candidates, &pg_bin_dir).await })
            .await
            .map_err(|e| task_error("the recovery window", e))?
    }
}

impl CacheInner {
    async fn compute(
        &self,
        earliest: Option<DateTime<Utc>>,
        candidates: Vec<Candidate>,
        pg_bin_dir: &Path,
    ) -> Result<RecoveryWindow, WindowError> {
        let (keyed, mut complete) = identify(candidates).await?;
        let key = WindowKey {
            earliest,
            newest: keyed.first().map(|(k, _)| k.clone()),
        };
        let mut state = self.state.lock().await;
        if let Some((k, w)) = &state.last {
            if *k == key {
                return Ok(w.clone());
            }
        }
        let mut found = None;
        let mut decoded = 0u32;
        for (k, path) in &keyed {
            let last = match state.memo.get(k) {
                Some(t) => *t,
                None => {
                    match decode(k.segment(), path, pg_bin_dir, Some(&self.waldump_runs)).await? {
                        Decoded::Missing => {
                            complete = false;
                            None
                        }
                        Decoded::Ran(t) => {
                            decoded += 1;
                            state.memo.insert(k.clone(), t);
                            t
                        }
                    }
                }
            };
            if let Some(t) = last {
                found = Some((t, k.segment()));
                break;
            }
        }
        let window = RecoveryWindow {
            earliest,
            latest: found.map(|(t, _)| t),
            latest_segment: found.map(|(_, s)| s.to_string()),
        };
        // Segments that fell out of the walk-back range are never looked at again.
        let live: HashSet<&SegmentKey> = keyed.iter().map(|(k, _)| k).collect();
        state.memo.retain(|k, _| live.contains(k));
        if decoded > 0 {
            tracing::info!(
                decoded,
                waldump_runs = self.waldump_runs.load(Ordering::Relaxed),
                latest = ?window.latest,
                segment = ?window.latest_segment,
                "recovery window recomputed"
            );
        }
        // A file that vanished mid-way (moved by `barman cron`) makes this answer one for a
        // catalog that no longer exists: answer it, but do not keep it.
        if complete {
            state.last = Some((key, window.clone()));
        }
        Ok(window)
    }
}

/// Keys the candidates: incoming files are stat'ed (on a blocking thread). The flag is false
/// when an incoming file was gone already.
async fn identify(
    candidates: Vec<Candidate>,
) -> Result<(Vec<(SegmentKey, PathBuf)>, bool), WindowError> {
    if candidates.iter().all(|c| c.location != Location::Incoming) {
        let keyed = candidates
            .into_iter()
            .filter_map(|c| SegmentKey::of(&c, None).map(|k| (k, c.path)))
            .collect();
        return Ok((keyed, true));
    }
    blocking("the incoming WAL files", move || {
        let mut complete = true;
        let mut keyed = Vec::with_capacity(candidates.len());
        for c in candidates {
            let file = match c.location {
                Location::Archived { .. } => None,
                Location::Incoming => match std::fs::metadata(&c.path) {
                    Ok(m) => Some((m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        complete = false;
                        None
                    }
                    Err(source) => {
                        return Err(WindowError::Segment {
                            path: c.path,
                            source,
                        })
                    }
                },
            };
            if let Some(k) = SegmentKey::of(&c, file) {
                keyed.push((k, c.path));
            }
        }
        Ok((keyed, complete))
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::super::recovery_window;
    use super::super::tests::{archived, catalog, seg};
    use super::*;
    use crate::catalog::ArchivedWal;
    use chrono::NaiveDateTime;
    use std::time::Duration;

    #[test]
    fn segment_keys_identify_content() {
        let s = seg("000000010000000000000007");
        let arch = Candidate {
            segment: s,
            path: PathBuf::from("/a"),
            location: Location::Archived { size: 10 },
        };
        // Archived: name and size, whatever the file metadata says.
        assert_eq!(
            SegmentKey::of(&arch, None),
            SegmentKey::of(&arch, Some((1, SystemTime::now())))
        );
        let inc = Candidate {
            location: Location::Incoming,
            ..arch.clone()
        };
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let t1 = t0 + Duration::from_millis(1);
        // Incoming: a file still growing, or rewritten, is another key.
        assert_eq!(SegmentKey::of(&inc, None), None);
        assert_ne!(
            SegmentKey::of(&inc, Some((8192, t0))),
            SegmentKey::of(&inc, Some((16 << 20, t0)))
        );
        assert_ne!(
            SegmentKey::of(&inc, Some((16 << 20, t0))),
            SegmentKey::of(&inc, Some((16 << 20, t1)))
        );
        assert_eq!(
            SegmentKey::of(&inc, Some((16 << 20, t0))),
            SegmentKey::of(&inc, Some((16 << 20, t0)))
        );
        // The same segment archived is not the incoming file.
        assert_ne!(
            SegmentKey::of(&arch, None),
            SegmentKey::of(&inc, Some((10, t0)))
        );
        assert_eq!(
            SegmentKey::of(&inc, Some((1, t0))).map(|k| k.segment()),
            Some(s)
        );
    }

    #[test]
    fn window_keys_change_with_the_newest_segment_and_the_earliest_backup() {
        let k = |newest: &str, earliest: Option<i64>| WindowKey {
            earliest: earliest.and_then(|s| DateTime::from_timestamp(s, 0)),
            newest: Some(SegmentKey::Archived {
                segment: seg(newest),
                size: 1,
            }),
        };
        assert_eq!(
            k("000000010000000000000003", Some(1)),
            k("000000010000000000000003", Some(1))
        );
        assert_ne!(
            k("000000010000000000000003", Some(1)),
            k("000000010000000000000004", Some(1))
        );
        assert_ne!(
            k("000000010000000000000003", Some(1)),
            k("000000010000000000000003", Some(2))
        );
        assert_ne!(
            k("000000010000000000000003", Some(1)),
            k("000000010000000000000003", None)
        );
    }

    /// A stand-in for pg_waldump: prints one COMMIT at the time written in the (staged) file,
    /// none when the file says "none", after 100 ms (long enough for callers to pile up).
    fn fake_bin_dir() -> &'static Path {
        static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
        DIR.get_or_init(|| {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().expect("temp dir");
            let script = dir.path().join("pg_waldump");
            std::fs::write(
                &script,
                "#!/bin/sh\n\
                 t=$(cat \"$2\")\n\
                 sleep 0.1\n\
                 [ \"$t\" = none ] || echo \"rmgr: Transaction len (rec/tot): 34/34, tx: 1, lsn: 0/01000028, prev 0/01000000, desc: COMMIT $t UTC\"\n",
            )
            .expect("write the script");
            std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
            dir
        })
        .path()
    }

    /// A Barman server home with archived segments (plain files holding a commit time or
    /// "none") and incoming files.
    struct Home {
        dir: tempfile::TempDir,
        archived: Vec<ArchivedWal>,
        incoming: Vec<String>,
    }

    impl Home {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().expect("temp dir"),
                archived: Vec::new(),
                incoming: Vec::new(),
            }
        }
        fn archive(&mut self, name: &str, content: &str) {
            let s = seg(name);
            let dir = self.dir.path().join("wals").join(s.hash_dir());
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join(name), content).expect("write");
            self.archived.push(archived(name, content.len() as u64));
        }
        fn put_incoming(&mut self, name: &str, content: &str) {
            let dir = self.dir.path().join("incoming");
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join(name), content).expect("write");
            if !self.incoming.iter().any(|n| n == name) {
                self.incoming.push(name.to_owned());
            }
        }
        fn catalog(&self) -> Catalog {
            let names: Vec<&str> = self.incoming.iter().map(String::as_str).collect();
            Catalog {
                server_home: self.dir.path().to_owned(),
                ..catalog(self.archived.clone(), &names)
            }
        }
    }

    fn at(s: &str) -> Option<DateTime<Utc>> {
        Some(
            NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f")
                .expect("a time")
                .and_utc(),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decodes_each_segment_once_for_any_number_of_callers() {
        let bin = fake_bin_dir();
        let mut home = Home::new();
        home.archive("000000010000000000000002", "2026-11-26 09:00:00.5");
        home.archive("000000010000000000000003", "none");
        home.archive("000000010000000000000004", "none");
        let cache = WindowCache::new();
        let c = Arc::new(home.catalog());
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (cache, c) = (cache.clone(), Arc::clone(&c));
                tokio::spawn(async move { cache.window(&c, bin).await })
            })
            .collect();
        for t in tasks {
            let w = t.await.expect("task").expect("window");
            assert_eq!(w.latest, at("2026-11-26 09:00:00.5"));
            assert_eq!(
                w.latest_segment.as_deref(),
                Some("000000010000000000000002")
            );
        }
        // 04 and 03 hold no commit, 02 does: three segments, three runs, for 200 callers.
        assert_eq!(cache.waldump_runs(), 3);
        assert_eq!(
            recovery_window(&c, bin).await.expect("uncached"),
            cache.window(&c, bin).await.expect("cached")
        );
        assert_eq!(cache.waldump_runs(), 3);

        // A new segment without a commit: only it is decoded; the answer stays.
        home.archive("000000010000000000000005", "none");
        let w = cache.window(&home.catalog(), bin).await.expect("window");
        assert_eq!(w.latest, at("2026-11-26 09:00:00.5"));
        assert_eq!(cache.waldump_runs(), 4);
        // A new one with a commit: it alone, and it is the new end.
        home.archive("000000010000000000000006", "2026-11-26 10:00:00");
        let w = cache.window(&home.catalog(), bin).await.expect("window");
        assert_eq!(w.latest, at("2026-11-26 10:00:00"));
        assert_eq!(
            w.latest_segment.as_deref(),
            Some("000000010000000000000006")
        );
        assert_eq!(cache.waldump_runs(), 5);
        assert_eq!(
            recovery_window(&home.catalog(), bin)
                .await
                .expect("uncached"),
            w
        );
    }

    #[tokio::test]
    async fn an_incoming_file_is_decoded_again_only_when_it_changed() {
        let bin = fake_bin_dir();
        let mut home = Home::new();
        home.archive("000000010000000000000002", "2026-11-26 09:00:00");
        home.put_incoming("000000010000000000000003", "none");
        let cache = WindowCache::new();
        let w = cache.window(&home.catalog(), bin).await.expect("window");
        assert_eq!(w.latest, at("2026-11-26 09:00:00"));
        assert_eq!(cache.waldump_runs(), 2);
        let _ = cache.window(&home.catalog(), bin).await.expect("window");
        assert_eq!(cache.waldump_runs(), 2, "nothing changed: nothing decoded");
        // archive_command finished copying it: other size (and mtime), decoded again; the
        // archived segment below it is not.
        home.put_incoming("000000010000000000000003", "2026-11-26 09:30:00");
        let w = cache.window(&home.catalog(), bin).await.expect("window");
        assert_eq!(w.latest, at("2026-11-26 09:30:00"));
        assert_eq!(cache.waldump_runs(), 3);
        // A later backup moves the earliest end: the answer changes, nothing is decoded.
        let mut c = home.catalog();
        c.backups.push(
            crate::catalog::parse_backup_info(
                "20261126T080000",
                "status=DONE\nend_time=2026-11-26 08:00:00+00:00\n",
                Path::new("backup.info"),
            )
            .expect("backup.info"),
        );
        let w = cache.window(&c, bin).await.expect("window");
        assert_eq!(w.earliest, at("2026-11-26 08:00:00"));
        assert_eq!(w.latest, at("2026-11-26 09:30:00"));
        assert_eq!(cache.waldump_runs(), 3);
    }

    /// With no pg_waldump at all, cached answers never need one: an empty archive has an empty
    /// window, computed without decoding anything, and a file that is not there is skipped.
    #[tokio::test]
    async fn missing_files_are_skipped_and_not_counted() {
        let cache = WindowCache::new();
        let c = catalog(vec![archived("000000010000000000000003", 1)], &[]);
        let w = cache
            .window(&c, Path::new("/nonexistent/bin"))
            .await
            .expect("a missing segment file is not an error");
        assert_eq!(w.latest, None);
        assert_eq!(cache.waldump_runs(), 0);
        let empty = catalog(vec![], &[]);
        let w = cache
            .window(&empty, Path::new("/nonexistent/bin"))
            .await
            .expect("empty");
        assert_eq!(
            w,
            RecoveryWindow {
                earliest: None,
                latest: None,
                latest_segment: None
            }
        );
    }
}
