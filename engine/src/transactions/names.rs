//! Names for the relation files the WAL speaks of. The WAL names a relation by its file
//! (tablespace / database / relfilenode), never by its name: the name comes from the catalog
//! of the running server. A dropped table, or the old file of a truncated one, is no longer in
//! that catalog, so barkeep keeps what it has seen in a name book (`relation-names.json` in
//! its state directory), written each time it reads the catalog: when the transactions are
//! listed, when a restore is planned, and by the server's background check. A file the book
//! knows and the catalog does not is shown as gone, with its last name; one neither knows is
//! shown by its relfilenode.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::RelFile;
use crate::config::PostgresConfig;
use crate::probe::{self, ProbeError};

/// How long a name nobody has seen in the catalog is kept: longer than any backup is.
const FORGET_AFTER_DAYS: i64 = 60;

/// What barkeep can say of a relation file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationName {
    pub relfilenode: u32,
    /// Schema-qualified where the schema is not `public` (as `regclass` prints it).
    pub name: Option<String>,
    /// The current catalog no longer has this file: the table was dropped, truncated or
    /// rewritten since (the name, if any, is the last one barkeep saw).
    pub gone: bool,
}

impl RelationName {
    /// `orders`, `orders (since dropped or truncated)`, `relfilenode 24583 (no name known)`.
    pub fn label(&self) -> String {
        match (&self.name, self.gone) {
            (Some(n), false) => n.clone(),
            (Some(n), true) => format!("{n} (since dropped or truncated)"),
            (None, _) => format!("relfilenode {} (no name known)", self.relfilenode),
        }
    }
}

/// One name seen in a catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    rel: RelFile,
    name: String,
    seen_at: DateTime<Utc>,
}

/// The catalog's names now, and the book of names seen before.
#[derive(Debug, Clone, Default)]
pub struct Names {
    current: HashMap<RelFile, String>,
    /// The catalog could be read (else nothing is called gone).
    catalog_read: bool,
    book: HashMap<RelFile, String>,
}

impl Names {
    pub fn of(&self, rel: &RelFile) -> RelationName {
        let (name, gone) = match self.current.get(rel) {
            Some(n) => (Some(n.clone()), false),
            None => (self.book.get(rel).cloned(), self.catalog_read),
        };
        RelationName {
            relfilenode: rel.relfilenode,
            name,
            gone,
        }
    }
}

/// Reads the current names of every user table (and TOAST table, named after its table) in
/// every database that accepts connections, records them in the book at `book_path`, and
/// returns both. A server that cannot be read leaves the book as it is: its names still count.
pub async fn read(pg: &PostgresConfig, book_path: &Path) -> Names {
    let current = match current_names(pg).await {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::info!(error = %e, "relation names: the catalog could not be read");
            None
        }
    };
    let path = book_path.to_owned();
    let now = Utc::now();
    let fresh = current.clone();
    let book = tokio::task::spawn_blocking(move || update_book(&path, fresh.as_ref(), now))
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "relation names: the book could not be updated");
            HashMap::new()
        });
    Names {
        catalog_read: current.is_some(),
        current: current.unwrap_or_default(),
        book,
    }
}

/// The names of the user tables of every connectable database, by file.
async fn current_names(pg: &PostgresConfig) -> Result<HashMap<RelFile, String>, ProbeError> {
    let client = probe::connect(pg, None).await?;
    let databases: Vec<String> = client
        .query(
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate \
             ORDER BY datname",
            &[],
        )
        .await
        .map_err(|source| ProbeError::Query {
            what: "the list of databases",
            source,
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut names = HashMap::new();
    for db in databases {
        let client = match probe::connect(pg, Some(&db)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(database = %db, error = %e, "relation names: skipped a database");
                continue;
            }
        };
        let rows = client
            .query(
                "SELECT COALESCE(NULLIF(c.reltablespace, 0), d.dattablespace), d.oid, \
                        c.relfilenode, \
                        CASE WHEN c.relkind = 't' AND o.oid IS NOT NULL \
                             THEN o.oid::regclass::text || ' (TOAST)' \
                             ELSE c.oid::regclass::text END \
                 FROM pg_class c \
                 JOIN pg_database d ON d.datname = current_database() \
                 LEFT JOIN pg_class o ON o.reltoastrelid = c.oid \
                 WHERE c.relkind IN ('r', 'm', 't') AND c.relfilenode <> 0 AND c.oid >= 16384",
                &[],
            )
            .await
            .map_err(|source| ProbeError::Query {
                what: "relation names",
                source,
            })?;
        for r in rows {
            let rel = RelFile {
                tablespace: r.get(0),
                database: r.get(1),
                relfilenode: r.get(2),
            };
            names.insert(rel, r.get(3));
        }
    }
    Ok(names)
}

/// Adds `current` to the book (a JSON file, replaced atomically), forgets what was not seen for
/// [`FORGET_AFTER_DAYS`], and returns the book. Blocking. A book that cannot be read or written
/// is logged and worked around: names are a help, never a reason to fail a listing.
fn update_book(
    path: &Path,
    current: Option<&HashMap<RelFile, String>>,
    now: DateTime<Utc>,
) -> HashMap<RelFile, String> {
    let mut seen: BTreeMap<RelFile, Seen> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<Vec<Seen>>(&bytes)
            .unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "relation names: unreadable book, starting anew");
                Vec::new()
            })
            .into_iter()
            .map(|s| (s.rel, s))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "relation names: cannot read the book");
            BTreeMap::new()
        }
    };
    if let Some(current) = current {
        for (rel, name) in current {
            seen.insert(
                *rel,
                Seen {
                    rel: *rel,
                    name: name.clone(),
                    seen_at: now,
                },
            );
        }
        let cutoff = now - Duration::days(FORGET_AFTER_DAYS);
        seen.retain(|_, s| s.seen_at >= cutoff);
        if let Err(e) = write_book(path, seen.values()) {
            tracing::warn!(path = %path.display(), error = %e, "relation names: cannot write the book");
        }
    }
    seen.into_iter().map(|(rel, s)| (rel, s.name)).collect()
}

fn write_book<'a>(path: &Path, seen: impl Iterator<Item = &'a Seen>) -> std::io::Result<()> {
    let list: Vec<&Seen> = seen.collect();
    let text = serde_json::to_vec(&list).map_err(std::io::Error::other)?;
    let tmp: PathBuf = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(n: u32) -> RelFile {
        RelFile {
            tablespace: 1663,
            database: 5,
            relfilenode: n,
        }
    }

    #[test]
    fn the_book_remembers_a_dropped_tables_name_and_forgets_old_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relation-names.json");
        let t0: DateTime<Utc> = "2026-11-28T06:00:00Z".parse().expect("time");
        let first = HashMap::from([(rel(1), "orders".to_owned()), (rel(2), "audit".into())]);
        update_book(&path, Some(&first), t0);
        // Later, `audit` was dropped: the catalog has only orders.
        let t1 = t0 + Duration::hours(1);
        let now_only = HashMap::from([(rel(1), "orders".to_owned())]);
        let book = update_book(&path, Some(&now_only), t1);
        let names = Names {
            current: now_only.clone(),
            catalog_read: true,
            book,
        };
        assert_eq!(names.of(&rel(1)).label(), "orders");
        assert_eq!(
            names.of(&rel(2)).label(),
            "audit (since dropped or truncated)"
        );
        assert_eq!(names.of(&rel(3)).label(), "relfilenode 3 (no name known)");
        // Sixty days on, nobody has seen `audit`: forgotten.
        let book = update_book(&path, Some(&now_only), t1 + Duration::days(61));
        assert!(!book.contains_key(&rel(2)));
        assert!(book.contains_key(&rel(1)));
        // A server that cannot be read: the book is kept as it is, nothing is called gone.
        let book = update_book(&path, None, t1 + Duration::days(100));
        let names = Names {
            current: HashMap::new(),
            catalog_read: false,
            book,
        };
        assert_eq!(names.of(&rel(1)).label(), "orders");
    }
}
