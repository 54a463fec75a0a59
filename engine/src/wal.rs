//! WAL file names as PostgreSQL and Barman use them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A WAL segment: `TTTTTTTTLLLLLLLLSSSSSSSS` (timeline, log, segment, in hex).
/// With the default 16 MB segments a "log" holds 0x100 segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WalSegment {
    pub timeline: u32,
    pub log: u32,
    pub seg: u32,
}

const SEGMENTS_PER_LOG: u64 = 0x100;

impl WalSegment {
    /// Parses a bare segment name (24 hex digits), nothing else.
    pub fn parse(name: &str) -> Option<Self> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let n = |r: std::ops::Range<usize>| u32::from_str_radix(&name[r], 16).ok();
        Some(Self {
            timeline: n(0..8)?,
            log: n(8..16)?,
            seg: n(16..24)?,
        })
    }

    /// Position on its timeline, for counting and finding gaps (16 MB segments).
    pub fn index(&self) -> u64 {
        u64::from(self.log) * SEGMENTS_PER_LOG + u64::from(self.seg)
    }

    pub fn from_index(timeline: u32, index: u64) -> Self {
        Self {
            timeline,
            log: (index / SEGMENTS_PER_LOG) as u32,
            seg: (index % SEGMENTS_PER_LOG) as u32,
        }
    }

    /// Barman's directory for the segment under `wals/`: timeline + log.
    pub fn hash_dir(&self) -> String {
        format!("{:08X}{:08X}", self.timeline, self.log)
    }
}

impl fmt::Display for WalSegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08X}{:08X}{:08X}", self.timeline, self.log, self.seg)
    }
}

/// Anything Barman archives: segments, `.backup` labels, `.history` files, `.partial` segments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WalFileKind {
    Segment(WalSegment),
    BackupLabel(WalSegment),
    History(u32),
    Partial(WalSegment),
    Other,
}

pub fn classify(name: &str) -> WalFileKind {
    if let Some(seg) = WalSegment::parse(name) {
        return WalFileKind::Segment(seg);
    }
    if let Some(tli) = name.strip_suffix(".history") {
        if tli.len() == 8 {
            if let Ok(t) = u32::from_str_radix(tli, 16) {
                return WalFileKind::History(t);
            }
        }
    }
    if let Some(base) = name.strip_suffix(".partial") {
        if let Some(seg) = WalSegment::parse(base) {
            return WalFileKind::Partial(seg);
        }
    }
    if name.ends_with(".backup") && name.len() > 24 {
        if let Some(seg) = WalSegment::parse(&name[..24]) {
            return WalFileKind::BackupLabel(seg);
        }
    }
    WalFileKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        let s = WalSegment::parse("00000002000000010000003F").expect("valid");
        assert_eq!((s.timeline, s.log, s.seg), (2, 1, 0x3F));
        assert_eq!(s.to_string(), "00000002000000010000003F");
        assert_eq!(s.hash_dir(), "0000000200000001");
        assert_eq!(WalSegment::from_index(2, s.index()), s);
        assert!(WalSegment::parse("00000002000000010000003").is_none());
        assert!(WalSegment::parse("0000000200000001000000XY").is_none());
    }

    #[test]
    fn classifies_what_barman_archives() {
        assert!(matches!(
            classify("000000010000000000000002"),
            WalFileKind::Segment(_)
        ));
        assert!(matches!(
            classify("000000010000000000000002.00000028.backup"),
            WalFileKind::BackupLabel(_)
        ));
        assert_eq!(classify("00000002.history"), WalFileKind::History(2));
        assert!(matches!(
            classify("000000010000000000000002.partial"),
            WalFileKind::Partial(_)
        ));
        assert_eq!(classify("notes.txt"), WalFileKind::Other);
    }
}
