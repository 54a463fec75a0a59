//! Target times: parsed strictly (an explicit zone is required), UTC inside, and handed to
//! Barman as `YYYY-MM-DD HH:MM:SS.ffffff+00:00` (docs/barman.md).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetTimeError {
    #[error("the target time is empty")]
    Empty,
    #[error(
        "{0:?} has no time zone: write it with an explicit offset, e.g. \
         2026-11-26 09:30:00+00:00 or 2026-11-26T10:30:00+01:00"
    )]
    NoZone(String),
    #[error("{0:?} is not a time barkeep understands: use YYYY-MM-DD HH:MM:SS[.ffffff]+HH:MM")]
    Unparseable(String),
}

/// A moment to restore to, always in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TargetTime(DateTime<Utc>);

impl TargetTime {
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(t)
    }
    pub fn utc(&self) -> DateTime<Utc> {
        self.0
    }
    /// The exact string given to `barman recover --target-time` (and so to PostgreSQL's
    /// `recovery_target_time`): UTC, microseconds, explicit `+00:00`.
    pub fn for_barman(&self) -> String {
        self.0.format("%Y-%m-%d %H:%M:%S%.6f+00:00").to_string()
    }
}

impl fmt::Display for TargetTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%d %H:%M:%S%.f UTC"))
    }
}

impl FromStr for TargetTime {
    type Err = TargetTimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(TargetTimeError::Empty);
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(Self(t.with_timezone(&Utc)));
        }
        let (body, utc_word) = match s.strip_suffix(" UTC").or_else(|| s.strip_suffix("Z")) {
            Some(b) => (b.trim_end(), true),
            None => (s, false),
        };
        if utc_word {
            for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                if let Ok(n) = chrono::NaiveDateTime::parse_from_str(body, fmt) {
                    return Ok(Self(n.and_utc()));
                }
            }
            return Err(TargetTimeError::Unparseable(s.to_owned()));
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S%.f%:z",
            "%Y-%m-%d %H:%M:%S%.f%z",
            "%Y-%m-%d %H:%M:%S%.f%#z",
        ] {
            if let Ok(t) = DateTime::<FixedOffset>::parse_from_str(s, fmt) {
                return Ok(Self(t.with_timezone(&Utc)));
            }
        }
        for fmt in [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ] {
            if chrono::NaiveDateTime::parse_from_str(s, fmt).is_ok() {
                return Err(TargetTimeError::NoZone(s.to_owned()));
            }
        }
        Err(TargetTimeError::Unparseable(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<String, TargetTimeError> {
        s.parse::<TargetTime>().map(|t| t.for_barman())
    }

    #[test]
    fn explicit_zones_become_utc_with_an_explicit_offset() {
        assert_eq!(
            p("2026-11-26 09:30:00+00:00").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
        assert_eq!(
            p("2026-11-26T10:30:00.25+01:00").as_deref(),
            Ok("2026-11-26 09:30:00.250000+00:00")
        );
        assert_eq!(
            p("2026-11-26 04:30:00-05:00").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
        assert_eq!(
            p("2026-11-26 09:30:00.123456 UTC").as_deref(),
            Ok("2026-11-26 09:30:00.123456+00:00")
        );
        assert_eq!(
            p("2026-11-26T09:30:00Z").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
        assert_eq!(
            p("2026-11-26 11:30:00+0200").as_deref(),
            Ok("2026-11-26 09:30:00.000000+00:00")
        );
    }

    #[test]
    fn zone_less_and_malformed_times_are_refused_with_a_reason() {
        assert!(matches!(
            p("2026-11-26 09:30:00"),
            Err(TargetTimeError::NoZone(_))
        ));
        assert!(matches!(
            p("2026-11-26T09:30:00"),
            Err(TargetTimeError::NoZone(_))
        ));
        assert!(matches!(
            p("yesterday"),
            Err(TargetTimeError::Unparseable(_))
        ));
        assert!(matches!(
            p("2026-13-01 00:00:00+00:00"),
            Err(TargetTimeError::Unparseable(_))
        ));
        assert!(matches!(p("  "), Err(TargetTimeError::Empty)));
        let e = p("2026-11-26 09:30:00").unwrap_err().to_string();
        assert!(e.contains("has no time zone"), "{e}");
    }
}
