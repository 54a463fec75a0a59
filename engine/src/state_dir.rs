//! barkeep's state directory (`state_dir` in barkeep.toml, `/var/lib/barkeep` on NixOS): every
//! name barkeep gives a file or directory in it is written here and nowhere else.
//!
//! ```text
//! <state_dir>/
//!   restore.lock                 flock held by the one process working on a restore
//!   restore.journal              the journal of the restore in progress (absent when none is)
//!   restore.journal.reserve      1 MiB of zeros released when the disk fills mid-restore
//!   restores/<id>.journal        the journals of closed restores (the history)
//!   pre-restore/<id>/            a data directory set aside by restore <id>, kept until discarded
//!   discard-<id>/                a restored copy being deleted by a rollback (gone when done)
//!   preview/<id>/                a preview restore's side data directory (until swapped in
//!                                or discarded)
//!   preview/<id>.log             its server log
//!   preview-socket/              its private socket directory (0700): it listens nowhere else
//!   postgresql-start-blocked     while present, the NixOS unit refuses to start PostgreSQL
//!                                (no initdb of the emptied data directory, no Restart= loop)
//!   relation-names.json          the table names barkeep has seen, by relation file, so that a
//!                                dropped table is still named in the list of transactions
//!   offsite.json                 what the last off-site replication run found and did
//!   offsite.lock                 flock held by the one replication run (`offsite`)
//!   offsite-tmp/                 WAL segments decompressed for barman-cloud-wal-archive (0700)
//!   audit.log                    who signed in and did what, one JSON line each
//!   users                        the users file when `users_file` is not set (`barkeep user add`)
//!   initdb-guard                 written (not by barkeep) by the NixOS module once barkeep
//!                                protects a cluster: from then on an empty data directory is
//!                                never initdb'ed (nixos-module/default.nix)
//! ```
//!
//! The set-aside is a rename, so `pre-restore/` must be on the data directory's filesystem
//! (checked by the plan, see `restore::space::check_renamable`).

use std::path::{Path, PathBuf};

/// The file the NixOS module's `ConditionPathExists=!` on postgresql.service looks at
/// (nixos-module/lib.nix writes the same name).
pub const START_BLOCKER: &str = "postgresql-start-blocked";

/// The paths under barkeep's state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The names of relations barkeep has seen, by file (`transactions::names`).
    pub fn relation_names(&self) -> PathBuf {
        self.root.join("relation-names.json")
    }

    /// What the last off-site replication run found and did (JSON).
    pub fn offsite_status(&self) -> PathBuf {
        self.root.join("offsite.json")
    }

    /// Held (an exclusive flock) by the one off-site replication run.
    pub fn offsite_lock(&self) -> PathBuf {
        self.root.join("offsite.lock")
    }

    /// Segments decompressed for the cloud tools, removed after each copy.
    pub fn offsite_tmp(&self) -> PathBuf {
        self.root.join("offsite-tmp")
    }

    /// The host-wide restore lock (an exclusive flock).
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("restore.lock")
    }

    /// The journal of the restore in progress.
    pub fn journal(&self) -> PathBuf {
        self.root.join("restore.journal")
    }

    /// Space held for the journal on a disk that fills during a restore.
    pub fn journal_reserve(&self) -> PathBuf {
        self.root.join("restore.journal.reserve")
    }

    /// Where closed restores' journals go.
    pub fn history(&self) -> PathBuf {
        self.root.join("restores")
    }

    pub fn history_journal(&self, restore_id: &str) -> PathBuf {
        self.history().join(format!("{restore_id}.journal"))
    }

    /// Where set-aside data directories are kept.
    pub fn pre_restore_root(&self) -> PathBuf {
        self.root.join("pre-restore")
    }

    /// The data directory restore `restore_id` set aside.
    pub fn pre_restore(&self, restore_id: &str) -> PathBuf {
        self.pre_restore_root().join(restore_id)
    }

    /// Where a rollback moves the restored copy before deleting it.
    pub fn discard(&self, restore_id: &str) -> PathBuf {
        self.root.join(format!("discard-{restore_id}"))
    }

    /// The side data directory of preview restore `restore_id`.
    pub fn preview(&self, restore_id: &str) -> PathBuf {
        self.root.join("preview").join(restore_id)
    }

    /// The server log of preview restore `restore_id`'s side instance.
    pub fn preview_log(&self, restore_id: &str) -> PathBuf {
        self.root.join("preview").join(format!("{restore_id}.log"))
    }

    /// The side instance's socket directory: private to barkeep's OS user.
    pub fn preview_socket_dir(&self) -> PathBuf {
        self.root.join("preview-socket")
    }

    /// The users file unless barkeep.toml names another (`users`).
    pub fn users(&self) -> PathBuf {
        self.root.join("users")
    }

    /// The audit log (`audit`).
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }

    /// See [`START_BLOCKER`].
    pub fn start_blocker(&self) -> PathBuf {
        self.root.join(START_BLOCKER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_inside_the_state_directory() {
        let s = StateDir::new("/var/lib/barkeep");
        let id = "r20261128T010203004Z";
        for p in [
            s.lock_file(),
            s.journal(),
            s.journal_reserve(),
            s.history_journal(id),
            s.pre_restore(id),
            s.discard(id),
            s.preview(id),
            s.preview_log(id),
            s.preview_socket_dir(),
            s.start_blocker(),
            s.audit_log(),
            s.users(),
        ] {
            assert!(p.starts_with(s.root()), "{}", p.display());
            assert_ne!(p, s.root().to_path_buf());
        }
        assert_eq!(
            s.pre_restore(id),
            Path::new("/var/lib/barkeep/pre-restore/r20261128T010203004Z")
        );
        assert_eq!(
            s.history_journal(id),
            Path::new("/var/lib/barkeep/restores/r20261128T010203004Z.journal")
        );
    }
}
