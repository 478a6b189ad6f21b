//! Log clearing that shows in the records rather than in a line: a file
//! the agent read again from byte 0 with the same device and inode (it
//! was truncated in place, FORMAT.md §3 rule 1), and a journal whose
//! cursor the agent lost (§16.4). Each becomes a [`Kind::LogCleared`]
//! event on the first segment after it, citing that segment's payload
//! from offset 0 (length 0: the evidence is the record, which
//! `custody-verify store` checks).

use std::collections::{BTreeMap, HashMap};

use crate::findings::events::{Event, Kind};
use crate::input::SegmentSummary;

/// Events keyed by the index of their segment in `window` (the segments
/// the report reads); `all` is every segment of the store, so a
/// truncation is seen even when the segment before it is older than the
/// window.
pub fn from_records(all: &[SegmentSummary], window: &[SegmentSummary]) -> BTreeMap<usize, Event> {
    let index: HashMap<(&str, &str, u64), usize> = window
        .iter()
        .enumerate()
        .map(|(i, s)| ((s.host.as_str(), s.stream.as_str(), s.seq), i))
        .collect();
    let mut by_stream: BTreeMap<(&str, &str), Vec<&SegmentSummary>> = BTreeMap::new();
    for s in all {
        by_stream.entry((&s.host, &s.stream)).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for ((host, stream), mut segs) in by_stream {
        segs.sort_by_key(|s| s.seq);
        // (device, inode) → where the last segment of that file ended.
        let mut last_end: HashMap<(u64, u64), (u64, u64)> = HashMap::new();
        for s in segs {
            let Some(&i) = index.get(&(host, stream, s.seq)) else {
                if let Some(id) = s.file_identity {
                    last_end.insert(id, (s.range.1, s.seq));
                }
                continue;
            };
            let detail = if let Some(cursor) = &s.lost_cursor {
                Some(format!(
                    "host {host} stream {stream}: the journal no longer held the agent's cursor {cursor:?} before segment {}: the entries between were removed (journal cleared, vacuumed or rotated away while the agent was not reading)",
                    s.seq
                ))
            } else {
                s.file_identity.and_then(|id| {
                    let prev = last_end.insert(id, (s.range.1, s.seq));
                    match prev {
                        Some((end, seq)) if s.range.0 == 0 && end > 0 => Some(format!(
                            "host {host} stream {stream}: {} was truncated in place: segment {seq} had read it to byte {end}, segment {} reads the same device and inode again from byte 0 (emptied, e.g. `> {}`, or a copytruncate rotation; or its inode was reused by a new file)",
                            s.source_label, s.seq, s.source_label
                        )),
                        _ => None,
                    }
                })
            };
            if let Some(detail) = detail {
                out.insert(
                    i,
                    Event {
                        time: s.first_read,
                        seg: i as u32,
                        offset: 0,
                        len: 0,
                        line: String::new(),
                        line_sha256: custody_evidence::Sha256::digest(b"").to_hex(),
                        kind: Kind::LogCleared {
                            channel: s.source_label.clone(),
                            by: String::new(),
                            detail,
                        },
                        verified: false,
                        also: Vec::new(),
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::sample_segment;
    use time::macros::datetime;

    #[test]
    fn a_file_read_again_from_zero_and_a_lost_cursor_are_clearings() {
        let t = datetime!(2026-12-01 18:00 UTC);
        let mut a = sample_segment("h", "logon.wtmp", 0, t);
        a.range = (0, 768);
        let mut b = sample_segment("h", "logon.wtmp", 1, t);
        b.range = (768, 1152);
        let mut c = sample_segment("h", "logon.wtmp", 2, t);
        c.range = (0, 384);
        // A new file (another inode) from 0 is a rotation, not a clearing.
        let mut d = sample_segment("h", "logon.wtmp", 3, t);
        d.range = (0, 384);
        d.file_identity = Some((1, 99));
        let mut j = sample_segment("h", "os.journal", 0, t);
        j.file_identity = None;
        j.lost_cursor = Some("s=1;i=2".into());
        let all = vec![a, b, c.clone(), d.clone(), j.clone()];
        // The window holds only the last three: the truncation is still seen.
        let out = from_records(&all, &[c, d, j]);
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![0, 2]);
        let Kind::LogCleared { detail, .. } = &out[&0].kind else {
            panic!()
        };
        assert!(detail.contains("to byte 1152"), "{detail}");
    }
}
