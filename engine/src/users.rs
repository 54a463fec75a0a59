//! Who may use barkeep: the users file (`users_file` in barkeep.toml), one person per line,
//!
//! ```text
//! # name:role:argon2id PHC string
//! alice:operator:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! bob:viewer:$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//! ```
//!
//! Roles: a `viewer` sees the dashboard and the history; an `operator` also restores and acts.
//! Passwords are stored only as argon2id hashes (RustCrypto's `argon2`, its default
//! parameters: 19 MiB, 2 passes); the file is written 0600 by `barkeep user add`, never by hand
//! through argv. It is read again at every sign-in, so a change needs no restart.

use std::io::Write;
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read the users file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the users file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the users file {path} is not valid at line {line}: {message}")]
    Malformed {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0:?} is not a valid user name: use letters, digits, - and _ (at most 64)")]
    Name(String),
    #[error("the password is {0}")]
    Password(&'static str),
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// What a person may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The dashboard and the history.
    Viewer,
    /// Also restores and actions.
    Operator,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }
}

/// A person who signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    role: Role,
    hash: String,
}

/// The users file as read.
#[derive(Debug, Clone, Default)]
pub struct Users {
    entries: Vec<Entry>,
}

/// The shortest password `barkeep user add` accepts.
pub const MIN_PASSWORD_CHARS: usize = 12;

impl Users {
    /// Reads the file; a missing file is an error (nobody could sign in).
    pub fn load(path: &Path) -> Result<Self, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self, UsersError> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let malformed = |message: String| UsersError::Malformed {
                path: path.to_owned(),
                line: n + 1,
                message,
            };
            let mut parts = line.splitn(3, ':');
            let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed("expected name:role:hash".into()));
            };
            if !is_user_name(name) {
                return Err(malformed(format!("{name:?} is not a valid user name")));
            }
            let role = Role::parse(role).ok_or_else(|| {
                malformed(format!("role {role:?} is neither viewer nor operator"))
            })?;
            let parsed = PasswordHash::new(hash)
                .map_err(|e| malformed(format!("the hash of {name} is not a PHC string: {e}")))?;
            if parsed.algorithm.as_str() != "argon2id" {
                return Err(malformed(format!(
                    "the hash of {name} is {}, not argon2id",
                    parsed.algorithm
                )));
            }
            if entries.iter().any(|e: &Entry| e.name == name) {
                return Err(malformed(format!("{name} appears twice")));
            }
            entries.push(Entry {
                name: name.to_owned(),
                role,
                hash: hash.to_owned(),
            });
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The user, if the password is theirs. An unknown name costs the same hash as a known
    /// one, so the answer's time does not tell which names exist. Slow by design (argon2):
    /// call it on a blocking thread.
    pub fn verify(&self, name: &str, password: &str) -> Option<User> {
        let entry = self.entries.iter().find(|e| e.name == name);
        let hash = entry.map_or(DUMMY_HASH, |e| e.hash.as_str());
        let ok = PasswordHash::new(hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        });
        match entry {
            Some(e) if ok => Some(User {
                name: e.name.clone(),
                role: e.role,
            }),
            _ => None,
        }
    }

    /// Adds `name` (or replaces their role and password) in the file at `path`, created 0600
    /// when missing, written to a temporary file and renamed over it.
    pub fn add(path: &Path, name: &str, role: Role, password: &str) -> Result<(), UsersError> {
        if !is_user_name(name) {
            return Err(UsersError::Name(name.to_owned()));
        }
        check_password(password)?;
        let mut users = match Self::load(path) {
            Ok(u) => u,
            Err(UsersError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Users::default()
            }
            Err(e) => return Err(e),
        };
        let hash = hash_password(password)?;
        users.entries.retain(|e| e.name != name);
        users.entries.push(Entry {
            name: name.to_owned(),
            role,
            hash,
        });
        users.write(path)
    }

    fn write(&self, path: &Path) -> Result<(), UsersError> {
        use std::os::unix::fs::OpenOptionsExt;
        let err = |source| UsersError::Write {
            path: path.to_owned(),
            source,
        };
        let mut text =
            String::from("# barkeep users: name:role:argon2id hash (barkeep user add)\n");
        for e in &self.entries {
            text.push_str(&format!("{}:{}:{}\n", e.name, e.role.name(), e.hash));
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(text.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// An argon2id PHC string of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String, UsersError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UsersError::Hash(e.to_string()))
}

fn check_password(password: &str) -> Result<(), UsersError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UsersError::Password("shorter than 12 characters"));
    }
    if password.len() > 1024 {
        return Err(UsersError::Password("longer than 1024 bytes"));
    }
    if password.chars().any(char::is_control) {
        return Err(UsersError::Password("holding a control character"));
    }
    Ok(())
}

/// A user name as the file and the audit log carry it.
pub fn is_user_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The hash an unknown name is checked against (of a password nobody has), so that a wrong
/// name costs as much time as a wrong password.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YmFya2VlcGR1bW15c2FsdA$V0ORqqTHkbPz0DFHgKJ5e0TNq9H2yLU7pUt8T3a2jXc";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_added_signs_in_with_that_password_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        Users::add(&path, "alice", Role::Operator, "correct horse battery").expect("added");
        Users::add(&path, "bob", Role::Viewer, "another long password").expect("added");
        let users = Users::load(&path).expect("loads");
        assert_eq!(users.len(), 2);
        assert_eq!(
            users.verify("alice", "correct horse battery"),
            Some(User {
                name: "alice".into(),
                role: Role::Operator
            })
        );
        assert_eq!(users.verify("alice", "correct horse batter"), None);
        assert_eq!(users.verify("carol", "correct horse battery"), None);
        assert_eq!(
            users.verify("bob", "another long password").map(|u| u.role),
            Some(Role::Viewer)
        );
        // Replacing a user keeps one line for them.
        Users::add(&path, "bob", Role::Operator, "a third long password").expect("replaced");
        let users = Users::load(&path).expect("loads");
        assert_eq!(users.len(), 2);
        assert_eq!(users.verify("bob", "another long password"), None);
        assert_eq!(
            users.verify("bob", "a third long password").map(|u| u.role),
            Some(Role::Operator)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The hash is argon2id and the password is nowhere in the file.
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains(":operator:$argon2id$"), "{text}");
        assert!(!text.contains("third long"));
    }

    #[test]
    fn bad_names_passwords_and_lines_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("users");
        for name in ["", "a:b", "../x", "a b", "é"] {
            assert!(
                Users::add(&path, name, Role::Viewer, "long enough password").is_err(),
                "{name:?}"
            );
        }
        assert!(Users::add(&path, "alice", Role::Viewer, "short").is_err());
        assert!(Users::add(&path, "alice", Role::Viewer, "long enough\npassword").is_err());
        for bad in [
            "alice:admin:$argon2id$v=19$m=19456,t=2,p=1$YmFya2VlcGR1bW15c2FsdA$V0ORqqTHkbPz0DFHgKJ5e0TNq9H2yLU7pUt8T3a2jXc",
            "alice:viewer",
            "alice:viewer:plaintext",
            "alice:viewer:$2b$12$abcdefghijklmnopqrstuu5yqIxMZCoDBYLBeY3Cl7yKXMLo5VBXS",
        ] {
            assert!(Users::parse(Path::new("x"), bad).is_err(), "{bad}");
        }
        assert!(Users::parse(Path::new("x"), "# nobody yet\n\n")
            .expect("comments")
            .is_empty());
    }

    #[test]
    fn the_dummy_hash_is_a_valid_argon2id_hash() {
        let h = PasswordHash::new(DUMMY_HASH).expect("parses");
        assert_eq!(h.algorithm.as_str(), "argon2id");
    }
}
