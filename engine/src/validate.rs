//! Validation of everything that reaches an argv: nothing is ever passed through a shell, and
//! every value still has to look like what it claims to be.

/// A barman server name, a systemd unit base, a database role: ASCII letters, digits, `-`, `_`.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `s3://bucket` or `s3://bucket/prefix`: a bucket name as S3 allows it (3 to 63 lowercase
/// letters, digits, `.` and `-`), a prefix of letters, digits, `.`, `-`, `_` and single `/`.
pub fn is_bucket_url(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("s3://") else {
        return false;
    };
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, Some(p)),
        None => (rest, None),
    };
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    let prefix_ok = prefix.is_none_or(|prefix| {
        prefix.len() <= 512
            && prefix.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            })
    });
    bucket_ok && prefix_ok
}

/// An absolute path that a shell would read as it is: what pg_ctl may put in its shell line.
pub fn is_plain_path(p: &std::path::Path) -> bool {
    let Some(s) = p.to_str() else { return false };
    s.starts_with('/')
        && s.len() <= 1024
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=+@".contains(&b))
}

/// A barman backup id as barman 3.3 makes them: `YYYYMMDDTHHMMSS`.
pub fn is_backup_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15
        && b[8] == b'T'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit)
}

/// A PostgreSQL memory size as postgresql.conf writes one: digits and a unit (`128MB`, `1GB`,
/// `16384kB`), at most 1 TB; plain digits are 8 kB pages.
pub fn is_memory_size(s: &str) -> bool {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    (1..=9).contains(&digits) && matches!(&s[digits..], "" | "kB" | "MB" | "GB")
}

/// A systemd unit name such as `postgresql.service`.
pub fn is_unit_name(s: &str) -> bool {
    match s.rsplit_once('.') {
        Some((base, kind)) => {
            !base.is_empty()
                && !base.starts_with('-')
                && base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_@:".contains(&b))
                && matches!(kind, "service" | "target")
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_as_postgresql_writes_them() {
        for good in ["128MB", "1GB", "16384kB", "16384"] {
            assert!(is_memory_size(good), "{good}");
        }
        for bad in [
            "",
            "MB",
            "1 GB",
            "1gb",
            "1TB",
            "-1MB",
            "1GB;",
            "9999999999MB",
        ] {
            assert!(!is_memory_size(bad), "{bad}");
        }
    }

    #[test]
    fn plain_paths_only_for_pg_ctl() {
        use std::path::Path;
        assert!(is_plain_path(Path::new("/var/tmp/barkeep-sandbox/pgdata")));
        assert!(is_plain_path(Path::new("/var/lib/postgresql/14")));
        for bad in [
            "relative/dir",
            "/tmp/a\"$(touch x)\"",
            "/tmp/a b",
            "/tmp/`id`",
            "/tmp/a;b",
            "/tmp/a\nb",
        ] {
            assert!(!is_plain_path(Path::new(bad)), "{bad:?}");
        }
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("pg"));
        assert!(is_plain_name("main-db_2"));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name("-c"));
        assert!(!is_plain_name("a b"));
        assert!(!is_plain_name("a;b"));
        assert!(!is_plain_name("../x"));
    }

    #[test]
    fn backup_ids() {
        assert!(is_backup_id("20261125T030939"));
        assert!(!is_backup_id("20261125T03093"));
        assert!(!is_backup_id("latest"));
        assert!(!is_backup_id("20261125X030939"));
        assert!(!is_backup_id("--help--------"));
    }

    #[test]
    fn unit_names() {
        assert!(is_unit_name("postgresql.service"));
        assert!(is_unit_name("barman-cron.service"));
        assert!(!is_unit_name("postgresql"));
        assert!(!is_unit_name("--now.service"));
        assert!(!is_unit_name("a b.service"));
    }

    #[test]
    fn bucket_urls() {
        for ok in [
            "s3://barkeep",
            "s3://barkeep/sandbox",
            "s3://my.bucket-1/a/b_c/d.e",
        ] {
            assert!(super::is_bucket_url(ok), "{ok}");
        }
        for bad in [
            "barkeep",
            "s3://",
            "s3://ab",
            "s3://Barkeep",
            "s3://bucket/",
            "s3://bucket//x",
            "s3://bucket/../x",
            "s3://bucket/a b",
            "s3://-bucket",
            "https://bucket",
        ] {
            assert!(!super::is_bucket_url(bad), "{bad}");
        }
    }
}
