//! One event, two sources: the same sshd message reaches a report through
//! journald and through `/var/log/auth.log`, a failed ssh logon is both an
//! sshd line and a btmp record, a logon both an `Accepted` line and a wtmp
//! record. Counted twice, each would double a burst or repeat a finding.
//! Such events are merged into the first one kept, which then cites both
//! (the other in [`Event::also`]): marked, never dropped.

use std::collections::HashMap;

use time::Duration;

use crate::findings::events::{Event, Kind};
use crate::input::SegmentSummary;

/// Two sources' times of one event differ by at most this: syslog keeps
/// whole seconds, wtmp and journald microseconds.
const SAME_EVENT: Duration = Duration::seconds(2);

/// What makes two events of `host` the same event (the host first, in
/// the one string, so an event costs one allocation); `None` for kinds
/// one source alone writes (access log requests).
fn key(host: &str, e: &Event) -> Option<String> {
    match &e.kind {
        Kind::FailedLogon { user, ip } => Some(format!("{host}\0fail\0{user}\0{ip}")),
        Kind::Logon { user, ip, .. } => Some(format!("{host}\0logon\0{user}\0{ip}")),
        Kind::NewAccount { name } => Some(format!("{host}\0new\0{name}")),
        Kind::GroupAdd { user, group } => Some(format!("{host}\0group\0{user}\0{group}")),
        Kind::LogCleared { .. }
        | Kind::NewService { .. }
        | Kind::Web { .. }
        | Kind::WebrootChange { .. }
        | Kind::Noted { .. }
        | Kind::Other => None,
    }
}

/// Merges `events` (sorted by time) across streams of one host; returns
/// the events kept, still sorted, and how many were merged into another.
pub fn merge(events: Vec<Event>, segs: &[SegmentSummary]) -> (Vec<Event>, u64) {
    let mut kept: Vec<Event> = Vec::with_capacity(events.len());
    // host and key → indices into `kept`, oldest first.
    let mut recent: HashMap<String, Vec<usize>> = HashMap::new();
    let mut merged = 0;
    for e in events {
        let seg = &segs[e.seg as usize];
        let Some(k) = key(&seg.host, &e) else {
            kept.push(e);
            continue;
        };
        let slot = recent.entry(k).or_default();
        slot.retain(|&i| e.time - kept[i].time <= SAME_EVENT);
        let stream = &seg.stream;
        let into = slot.iter().copied().find(|&i| {
            let first = &kept[i];
            segs[first.seg as usize].stream != *stream
                && !first
                    .also
                    .iter()
                    .any(|a| segs[a.seg as usize].stream == *stream)
        });
        match into {
            Some(i) => {
                kept[i].also.push(e);
                merged += 1;
            }
            None => {
                slot.push(kept.len());
                kept.push(e);
            }
        }
    }
    (kept, merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::sample_segment;
    use time::macros::datetime;

    fn ev(seg: u32, secs: i64, kind: Kind) -> Event {
        Event {
            time: datetime!(2026-12-01 18:00 UTC) + Duration::seconds(secs),
            seg,
            offset: 0,
            len: 0,
            line: String::new(),
            line_sha256: String::new(),
            kind,
            verified: true,
            also: Vec::new(),
        }
    }

    #[test]
    fn the_same_failure_in_two_streams_is_one_event_and_repeats_in_one_stream_are_not() {
        let t = datetime!(2026-12-01 18:00 UTC);
        let segs = vec![
            sample_segment("h", "logon.auth", 0, t),
            sample_segment("h", "logon.btmp", 0, t),
            sample_segment("other", "logon.btmp", 0, t),
        ];
        let fail = || Kind::FailedLogon {
            user: "root".into(),
            ip: "198.51.100.4".into(),
        };
        let events = vec![
            ev(0, 0, fail()),
            ev(1, 1, fail()),  // the same, from btmp
            ev(0, 1, fail()),  // a second failure in auth.log
            ev(2, 1, fail()),  // another host
            ev(1, 10, fail()), // too late to be the same
        ];
        let (kept, merged) = merge(events, &segs);
        assert_eq!(merged, 1);
        assert_eq!(kept.len(), 4);
        assert_eq!(kept[0].also.len(), 1);
        assert_eq!(kept[0].also[0].seg, 1);
    }
}
