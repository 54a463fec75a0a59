//! Undoing what `barman recover` 3.3 wrote into the restored data directory, once the restore
//! is accepted (docs/barman.md): the recovery settings it appended to postgresql.auto.conf,
//! the `archive_command = false` it wrote into postgresql.conf (with a `.origin` copy of the
//! file), and the `.origin` copy of postgresql.auto.conf. Barman's own equivalent is its
//! ConfigurationFileMangeler; this is the one place barkeep knows that list.
//! (`recovery.signal` is removed by PostgreSQL itself when it promotes.)

use std::path::Path;

use tokio_postgres::Client;

use super::error::io;
use super::RestoreError;
use crate::admin;

/// The recovery settings Barman 3.3 writes into postgresql.auto.conf.
pub(crate) const RECOVERY_SETTINGS: [&str; 8] = [
    "restore_command",
    "recovery_end_command",
    "recovery_target_time",
    "recovery_target_xid",
    "recovery_target_lsn",
    "recovery_target_inclusive",
    "recovery_target_action",
    "recovery_target_timeline",
];

/// The copy Barman keeps of postgresql.conf before it edits it.
const CONF_ORIGIN: &str = "postgresql.conf.origin";
/// The copy Barman keeps of postgresql.auto.conf before it appends to it.
const AUTO_CONF_ORIGIN: &str = "postgresql.auto.conf.origin";

/// Removes the recovery settings from postgresql.auto.conf (by ALTER SYSTEM, so PostgreSQL
/// rewrites the file itself) and puts postgresql.conf back as it was before Barman edited it.
/// Each part can run again after a crash.
pub(crate) async fn undo(client: &Client, data_dir: &Path) -> Result<(), RestoreError> {
    admin::reset_settings(client, &RECOVERY_SETTINGS).await?;
    restore_conf(data_dir)
}

/// `postgresql.conf.origin` back over `postgresql.conf` (or only removed where postgresql.conf
/// is a link, NixOS: Barman did not edit the store file), `postgresql.auto.conf.origin` removed.
fn restore_conf(data_dir: &Path) -> Result<(), RestoreError> {
    let conf = data_dir.join("postgresql.conf");
    let origin = data_dir.join(CONF_ORIGIN);
    if origin.exists() {
        let conf_is_link = std::fs::symlink_metadata(&conf)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false);
        if conf_is_link {
            std::fs::remove_file(&origin)
                .map_err(io(format!("cannot remove {}", origin.display())))?;
        } else {
            std::fs::rename(&origin, &conf)
                .map_err(io(format!("cannot restore {}", conf.display())))?;
        }
    }
    let auto_origin = data_dir.join(AUTO_CONF_ORIGIN);
    if auto_origin.exists() {
        std::fs::remove_file(&auto_origin)
            .map_err(io(format!("cannot remove {}", auto_origin.display())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgresql_conf_comes_back_from_its_origin_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("postgresql.conf"), "archive_command = false\n").expect("write");
        std::fs::write(d.join(CONF_ORIGIN), "archive_command = 'x'\n").expect("write");
        std::fs::write(d.join(AUTO_CONF_ORIGIN), "").expect("write");
        restore_conf(d).expect("restored");
        assert_eq!(
            std::fs::read_to_string(d.join("postgresql.conf")).expect("read"),
            "archive_command = 'x'\n"
        );
        assert!(!d.join(CONF_ORIGIN).exists());
        assert!(!d.join(AUTO_CONF_ORIGIN).exists());
        // Again (a resumed accept): nothing left to do, nothing changed.
        restore_conf(d).expect("idempotent");
    }

    #[test]
    fn a_linked_postgresql_conf_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        std::fs::write(d.join("store.conf"), "archive_command = 'x'\n").expect("write");
        std::os::unix::fs::symlink(d.join("store.conf"), d.join("postgresql.conf")).expect("link");
        std::fs::write(d.join(CONF_ORIGIN), "old\n").expect("write");
        restore_conf(d).expect("restored");
        assert!(std::fs::symlink_metadata(d.join("postgresql.conf"))
            .expect("still there")
            .file_type()
            .is_symlink());
        assert!(!d.join(CONF_ORIGIN).exists());
    }
}
