//! Segments of two different streams of one host that claim the same bytes
//! of the same source file (FORMAT.md §10, item 6): the same file identity
//! (device, inode, fingerprint and fingerprint length, §3.3) and
//! overlapping byte ranges.
//!
//! This module only finds the candidate pairs and compares their bytes; the
//! verifier reads the payloads and words the findings. A pair whose bytes
//! differ in the overlap is wrong evidence (one segment's bytes did not
//! come from the file it names); a pair whose bytes agree is a duplicate,
//! which two sources whose globs match the same file produce legitimately.
//! Different fingerprints under one device and inode are a reused inode,
//! a different file: never paired.

use std::collections::BTreeMap;

use crate::ids::{Sha256, StreamId};
use crate::segment::SegmentMeta;

/// The identity of a source file as a segment record states it (§3.3).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct FileIdentity {
    pub device: u64,
    pub inode: u64,
    pub fingerprint: Sha256,
    pub fingerprint_len: u32,
}

/// One segment's claim: these bytes of this file.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    pub stream: StreamId,
    pub seq: u64,
    /// The segment record's object name.
    pub record_key: String,
    /// The payload's object name.
    pub payload_key: String,
    pub path: String,
    pub identity: FileIdentity,
    pub start: u64,
    pub end: u64,
    pub raw_len: u64,
    pub raw_sha256: Sha256,
}

impl Claim {
    /// The claim of a segment read from a file; `None` for syslog, journal
    /// and Event Log segments, which have no file identity, and for an
    /// empty range.
    pub fn of(meta: &SegmentMeta, record_key: &str, payload_key: String) -> Option<Claim> {
        let file = meta.source.as_file()?;
        if meta.range.end <= meta.range.start {
            return None;
        }
        Some(Claim {
            stream: meta.stream_id.clone(),
            seq: meta.seq.0,
            record_key: record_key.to_string(),
            payload_key,
            path: file.path.clone(),
            identity: FileIdentity {
                device: file.device,
                inode: file.inode,
                fingerprint: file.fingerprint,
                fingerprint_len: file.fingerprint_len,
            },
            start: meta.range.start,
            end: meta.range.end,
            raw_len: meta.raw_len,
            raw_sha256: meta.raw_sha256,
        })
    }

    /// `[start, end)` of the bytes both claims cover.
    pub fn overlap(&self, other: &Claim) -> (u64, u64) {
        (self.start.max(other.start), self.end.min(other.end))
    }
}

/// Every pair of claims from different streams with the same file identity
/// and overlapping ranges, each pair once, ordered `(a, b)` with `a`'s
/// stream sorting before `b`'s. A sweep over each identity's claims sorted
/// by start, so the work is proportional to the pairs found, not to the
/// square of the segments.
pub(super) fn overlapping_pairs(claims: &[Claim]) -> Vec<(&Claim, &Claim)> {
    let mut by_identity: BTreeMap<&FileIdentity, Vec<&Claim>> = BTreeMap::new();
    for c in claims {
        by_identity.entry(&c.identity).or_default().push(c);
    }
    let mut pairs = Vec::new();
    for (_, mut group) in by_identity {
        if group.len() < 2 {
            continue;
        }
        group.sort_by(|x, y| (x.start, &x.stream, x.seq).cmp(&(y.start, &y.stream, y.seq)));
        let mut active: Vec<&Claim> = Vec::new();
        for c in group {
            active.retain(|a| a.end > c.start);
            for a in &active {
                if a.stream != c.stream {
                    let pair = if (&a.stream, a.seq) < (&c.stream, c.seq) {
                        (*a, c)
                    } else {
                        (c, *a)
                    };
                    pairs.push(pair);
                }
            }
            active.push(c);
        }
    }
    pairs.sort_by(|x, y| {
        (&x.0.stream, x.0.seq, &x.1.stream, x.1.seq).cmp(&(
            &y.0.stream,
            y.0.seq,
            &y.1.stream,
            y.1.seq,
        ))
    });
    pairs
}

/// Whether two claims hold the same bytes where they overlap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Agreement {
    Same,
    /// The overlap's SHA-256 in each, and the first file offset where
    /// they differ.
    Differs {
        first_offset: u64,
        a_sha256: Sha256,
        b_sha256: Sha256,
    },
}

/// Whether the pair can be settled from the records alone: the same range
/// and the same raw hash mean the same bytes, without reading payloads.
pub(super) fn same_by_records(a: &Claim, b: &Claim) -> bool {
    a.start == b.start && a.end == b.end && a.raw_sha256 == b.raw_sha256
}

/// Compares the overlap of `a` and `b` given their raw bytes (whose hashes
/// the caller has checked against the records).
pub(super) fn compare(a: &Claim, a_raw: &[u8], b: &Claim, b_raw: &[u8]) -> Agreement {
    let (from, to) = a.overlap(b);
    let slice = |c: &Claim, raw: &'_ [u8]| -> Vec<u8> {
        let lo = usize::try_from(from - c.start)
            .unwrap_or(usize::MAX)
            .min(raw.len());
        let hi = usize::try_from(to - c.start)
            .unwrap_or(usize::MAX)
            .min(raw.len());
        raw[lo..hi.max(lo)].to_vec()
    };
    let (x, y) = (slice(a, a_raw), slice(b, b_raw));
    if x == y {
        return Agreement::Same;
    }
    let at = x
        .iter()
        .zip(&y)
        .position(|(p, q)| p != q)
        .unwrap_or(x.len().min(y.len()));
    Agreement::Differs {
        first_offset: from + at as u64,
        a_sha256: Sha256::digest(&x),
        b_sha256: Sha256::digest(&y),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(stream: &str, seq: u64, inode: u64, fp: u8, start: u64, raw: &[u8]) -> Claim {
        Claim {
            stream: StreamId::new(stream.to_string()).unwrap(),
            seq,
            record_key: format!("{stream}/{seq}.seg.json"),
            payload_key: format!("{stream}/{seq}.zst"),
            path: "/var/log/x.log".into(),
            identity: FileIdentity {
                device: 1,
                inode,
                fingerprint: Sha256::digest(&[fp]),
                fingerprint_len: 1024,
            },
            start,
            end: start + raw.len() as u64,
            raw_len: raw.len() as u64,
            raw_sha256: Sha256::digest(raw),
        }
    }

    #[test]
    fn pairs_need_another_stream_the_same_identity_and_an_overlap() {
        let claims = vec![
            claim("os.a", 0, 7, 1, 0, &[0; 100]),
            claim("os.a", 1, 7, 1, 100, &[0; 100]),
            // Same stream overlapping itself (a truncation): never paired.
            claim("os.a", 2, 7, 1, 0, &[0; 50]),
            // Another stream, same file, overlapping seq 1 only.
            claim("web.b", 0, 7, 1, 150, &[0; 100]),
            // Adjacent, not overlapping: [200, 300) vs os.a's ranges.
            claim("web.b", 1, 7, 1, 250, &[0; 10]),
            // A reused inode (other fingerprint): a different file.
            claim("app.c", 0, 7, 2, 0, &[0; 300]),
            // Another inode.
            claim("app.d", 0, 8, 1, 0, &[0; 300]),
        ];
        let pairs: Vec<(String, u64, String, u64)> = overlapping_pairs(&claims)
            .into_iter()
            .map(|(a, b)| (a.stream.to_string(), a.seq, b.stream.to_string(), b.seq))
            .collect();
        assert_eq!(pairs, [("os.a".to_string(), 1, "web.b".to_string(), 0)]);
    }

    #[test]
    fn overlap_bytes_are_compared_at_their_file_offsets() {
        let file: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let a = claim("os.a", 0, 7, 1, 100, &file[100..600]);
        let b = claim("web.b", 3, 7, 1, 400, &file[400..900]);
        assert_eq!(
            compare(&a, &file[100..600], &b, &file[400..900]),
            Agreement::Same
        );
        assert!(!same_by_records(&a, &b));
        let mut forged = file[400..900].to_vec();
        forged[150] ^= 0xff; // file offset 550, inside the overlap
        let b = claim("web.b", 3, 7, 1, 400, &forged);
        match compare(&a, &file[100..600], &b, &forged) {
            Agreement::Differs { first_offset, .. } => assert_eq!(first_offset, 550),
            other => panic!("expected a difference, got {other:?}"),
        }
        let c = claim("web.b", 4, 7, 1, 100, &file[100..600]);
        assert!(same_by_records(&a, &c));
    }
}
