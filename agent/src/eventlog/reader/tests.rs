//! The channel reader driven by a fake feed that behaves as wevtapi does
//! for the cases of FORMAT.md §17.4: a channel that is cleared, a
//! subscription that goes stale, a channel that does not exist yet, and a
//! restart from the checkpoint's bookmark.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use custody_evidence::octets::split_frames;

use super::*;
use crate::eventlog::recovery::MAX_BACKOFF;

/// The channel as the Event Log service holds it.
#[derive(Default)]
struct Channel {
    exists: bool,
    events: Vec<(u64, Vec<u8>)>,
    next_id: u64,
    /// The next `next()` call fails as a stale subscription.
    stale_once: bool,
    /// Bumped by every clear.
    generation: u32,
}

impl Channel {
    fn write(&mut self, n: usize, size: usize) {
        for _ in 0..n {
            self.next_id += 1;
            let id = self.next_id;
            // UTF-16LE XML, as EvtRender gives it.
            let text = format!(
                "<Event><System><EventRecordID>{id}</EventRecordID></System>{}</Event>",
                "x".repeat(size)
            );
            let bytes: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
            self.events.push((id, bytes));
        }
    }
    /// `wevtutil cl`: everything goes; record ids start again at 1.
    fn clear(&mut self) {
        self.events.clear();
        self.next_id = 0;
        self.generation += 1;
    }
}

struct FakeFeed {
    ch: Rc<RefCell<Channel>>,
    /// Index into `events` of the next event to deliver.
    pos: Option<usize>,
    last_batch: Vec<u64>,
    /// The channel generation the position refers to.
    generation: u32,
    subscribes: Vec<StartFrom>,
}

fn bookmark_xml(id: u64) -> String {
    format!("<BookmarkList><Bookmark Channel='Security' RecordId='{id}' IsCurrent='true'/></BookmarkList>")
}

fn bookmark_id(xml: &str) -> u64 {
    let start = xml.find("RecordId='").unwrap() + 10;
    xml[start..].split('\'').next().unwrap().parse().unwrap()
}

impl EventFeed for FakeFeed {
    fn subscribe(&mut self, from: &StartFrom) -> Result<(), FeedError> {
        self.subscribes.push(from.clone());
        let ch = self.ch.borrow();
        if !ch.exists {
            return Err(FeedError::ChannelMissing("15007".into()));
        }
        self.generation = ch.generation;
        self.pos = Some(match from {
            StartFrom::Oldest => 0,
            StartFrom::Future => ch.events.len(),
            StartFrom::AfterBookmark(b) => {
                let id = bookmark_id(b);
                match ch.events.iter().position(|(i, _)| *i == id) {
                    Some(p) => p + 1,
                    None => return Err(FeedError::BookmarkLost("1168".into())),
                }
            }
        });
        Ok(())
    }

    fn next(&mut self, max: usize, _wait: Duration) -> Result<Vec<RawEvent>, FeedError> {
        let mut ch = self.ch.borrow_mut();
        if std::mem::take(&mut ch.stale_once) {
            return Err(FeedError::Stale("15011".into()));
        }
        let pos = self.pos.expect("next before subscribe");
        // A clear under a live subscription: it goes on with the new records.
        let pos = if ch.generation != self.generation {
            0
        } else {
            pos
        };
        self.generation = ch.generation;
        let batch: Vec<RawEvent> = ch.events[pos..]
            .iter()
            .take(max)
            .map(|(id, xml)| RawEvent {
                record_id: *id,
                xml: xml.clone(),
            })
            .collect();
        self.pos = Some(pos + batch.len());
        self.last_batch = batch.iter().map(|e| e.record_id).collect();
        Ok(batch)
    }

    fn bookmark_at(&mut self, record_id: u64) -> Result<String, FeedError> {
        assert!(
            self.last_batch.contains(&record_id),
            "bookmark for {record_id} outside the last batch {:?}",
            self.last_batch
        );
        Ok(bookmark_xml(record_id))
    }
}

fn rules() -> CutRules {
    CutRules {
        max_bytes: 1000,
        max_age: Duration::from_secs(3600),
        batch: 4,
        first_start: StartFrom::Oldest,
    }
}

fn reader(ch: &Rc<RefCell<Channel>>, state: ChannelState) -> ChannelReader<FakeFeed> {
    let feed = FakeFeed {
        ch: ch.clone(),
        pos: None,
        last_batch: vec![],
        generation: 0,
        subscribes: vec![],
    };
    ChannelReader::new(feed, state, rules())
}

fn channel(n: usize) -> Rc<RefCell<Channel>> {
    let ch = Rc::new(RefCell::new(Channel {
        exists: true,
        ..Default::default()
    }));
    ch.borrow_mut().write(n, 100);
    ch
}

/// Polls until nothing more comes, then flushes; returns all cuts.
fn drain(r: &mut ChannelReader<FakeFeed>, now: Instant) -> Vec<CutSegment> {
    let mut all = Vec::new();
    for _ in 0..100 {
        let cuts = r.poll(now, Duration::ZERO);
        let quiet = cuts.is_empty() && r.open.as_ref().is_none_or(|o| o.bookmark_for == o.last);
        all.extend(cuts);
        if quiet
            && matches!(r.health(), Health::Reading)
            && r.feed.pos == Some(r.feed.ch.borrow().events.len())
        {
            break;
        }
    }
    all.extend(r.flush());
    all
}

/// The record ids in a run of cuts, from the frames themselves.
fn ids(cuts: &[CutSegment]) -> Vec<u64> {
    let mut out = Vec::new();
    for c in cuts {
        for f in split_frames(&c.raw).expect("whole frames") {
            let units: Vec<u16> = f
                .chunks(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            let text = String::from_utf16(&units).unwrap();
            let id = text
                .split("<EventRecordID>")
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap();
            out.push(id.parse().unwrap());
        }
    }
    out
}

#[test]
fn frames_are_the_rendered_bytes_and_cuts_fall_between_events() {
    let ch = channel(10);
    let mut r = reader(
        &ch,
        ChannelState {
            channel: "Security".into(),
            ..Default::default()
        },
    );
    let cuts = drain(&mut r, Instant::now());
    assert_eq!(ids(&cuts), (1..=10).collect::<Vec<_>>());
    // Each event: 2 × 72 characters of XML = 144..146 bytes + its length prefix.
    assert!(cuts.len() >= 2, "{} cuts", cuts.len());
    let mut offset = 0;
    for c in &cuts {
        assert!(c.raw.len() <= 1000);
        assert_eq!(c.range, (offset, offset + c.raw.len() as u64));
        offset = c.range.1;
        assert_eq!(c.state_after.offset, offset);
        assert_eq!(c.state_after.last_record_id, Some(c.last_record_id));
        assert_eq!(
            c.state_after.bookmark.as_deref(),
            Some(bookmark_xml(c.last_record_id).as_str())
        );
        assert_eq!(c.resumed_after, None);
    }
    // Bytes exactly as rendered: the frames of the first cut are event 1's bytes, …
    let frames = split_frames(&cuts[0].raw).unwrap();
    assert_eq!(frames[0], &ch.borrow().events[0].1[..]);
}

#[test]
fn restart_from_the_checkpoint_bookmark_neither_loses_nor_repeats() {
    let ch = channel(6);
    let mut r = reader(
        &ch,
        ChannelState {
            channel: "Security".into(),
            ..Default::default()
        },
    );
    let first = drain(&mut r, Instant::now());
    // Only the first cut was made durable before the "crash".
    let committed = first[0].state_after.clone();
    ch.borrow_mut().write(3, 100);
    let mut r = reader(&ch, committed.clone());
    let second = drain(&mut r, Instant::now());
    assert_eq!(
        r.feed.subscribes[0],
        StartFrom::AfterBookmark(committed.bookmark.clone().unwrap())
    );
    let mut got = ids(&first[..1]);
    got.extend(ids(&second));
    assert_eq!(got, (1..=9).collect::<Vec<_>>());
    assert_eq!(second[0].range.0, committed.offset);
}

#[test]
fn a_cleared_channel_is_followed_and_marked() {
    let ch = channel(5);
    let mut r = reader(
        &ch,
        ChannelState {
            channel: "Security".into(),
            ..Default::default()
        },
    );
    let now = Instant::now();
    let before = drain(&mut r, now);
    assert_eq!(ids(&before), [1, 2, 3, 4, 5]);
    // Cleared under the live subscription: ids start again at 1 (the 1102).
    ch.borrow_mut().clear();
    ch.borrow_mut().write(3, 100);
    let after = drain(&mut r, now);
    assert_eq!(ids(&after), [1, 2, 3]);
    assert_eq!(after[0].resumed_after, Some(ResumeReason::Cleared));
    assert_eq!(after[0].range.0, before.last().unwrap().range.1);

    // Cleared while the agent was down: its bookmark (record 3) is gone
    // after a second clear, so it resumes from the oldest record.
    let committed = after.last().unwrap().state_after.clone();
    ch.borrow_mut().clear();
    ch.borrow_mut().write(2, 100);
    let mut r = reader(&ch, committed);
    let resumed = drain(&mut r, now);
    assert_eq!(ids(&resumed), [1, 2]);
    assert_eq!(resumed[0].resumed_after, Some(ResumeReason::BookmarkLost));
    assert_eq!(r.feed.subscribes.last(), Some(&StartFrom::Oldest));
}

#[test]
fn a_stale_subscription_resubscribes_after_what_was_read() {
    let ch = channel(4);
    let mut r = reader(
        &ch,
        ChannelState {
            channel: "System".into(),
            ..Default::default()
        },
    );
    let now = Instant::now();
    let mut cuts = r.poll(now, Duration::ZERO); // 1..4 read, bookmark at 4, open
    ch.borrow_mut().write(2, 100);
    ch.borrow_mut().stale_once = true;
    cuts.extend(r.poll(now, Duration::ZERO)); // fails: open segment cut with its bookmark
    assert!(matches!(r.health(), Health::Waiting(w) if w.contains("stale")));
    assert_eq!(ids(&cuts), [1, 2, 3, 4]);
    // Back-off: nothing happens before it ends …
    assert!(r.poll(now, Duration::ZERO).is_empty());
    assert_eq!(r.feed.subscribes.len(), 1);
    // … then it resubscribes after event 4.
    let later = now + Duration::from_secs(1);
    let rest = drain(&mut r, later);
    assert_eq!(
        r.feed.subscribes[1],
        StartFrom::AfterBookmark(bookmark_xml(4))
    );
    assert_eq!(ids(&rest), [5, 6]);
    assert_eq!(rest[0].resumed_after, Some(ResumeReason::SubscriptionStale));
}

#[test]
fn a_missing_channel_waits_and_does_not_hold_up_another() {
    let sysmon = Rc::new(RefCell::new(Channel::default()));
    let security = channel(3);
    let mut a = reader(
        &sysmon,
        ChannelState {
            channel: "Microsoft-Windows-Sysmon/Operational".into(),
            ..Default::default()
        },
    );
    let mut b = reader(
        &security,
        ChannelState {
            channel: "Security".into(),
            ..Default::default()
        },
    );
    let now = Instant::now();
    assert!(a.poll(now, Duration::ZERO).is_empty());
    assert!(matches!(a.health(), Health::Waiting(w) if w.contains("not found")));
    let got = drain(&mut b, now);
    assert_eq!(ids(&got), [1, 2, 3]);
    // Installed later: picked up at the next retry, not before.
    sysmon.borrow_mut().exists = true;
    sysmon.borrow_mut().write(2, 10);
    assert!(a
        .poll(now + Duration::from_secs(5), Duration::ZERO)
        .is_empty());
    assert_eq!(a.feed.subscribes.len(), 1);
    let got = drain(&mut a, now + MAX_BACKOFF);
    assert_eq!(ids(&got), [1, 2]);
    assert_eq!(got[0].resumed_after, Some(ResumeReason::ChannelMissing));
}

#[test]
fn an_event_larger_than_a_segment_is_a_segment_of_its_own() {
    let ch = channel(1);
    ch.borrow_mut().write(1, 2000);
    ch.borrow_mut().write(1, 10);
    let mut r = reader(
        &ch,
        ChannelState {
            channel: "Application".into(),
            ..Default::default()
        },
    );
    let cuts = drain(&mut r, Instant::now());
    assert_eq!(cuts.iter().map(|c| c.events).collect::<Vec<_>>(), [1, 1, 1]);
    assert!(cuts[1].raw.len() > 1000);
    assert_eq!(ids(&cuts), [1, 2, 3]);
}

#[test]
fn an_old_segment_is_cut_by_age() {
    let ch = channel(2);
    let mut r = reader(
        &ch,
        ChannelState {
            channel: "System".into(),
            ..Default::default()
        },
    );
    let now = Instant::now();
    assert!(r.poll(now, Duration::ZERO).is_empty());
    let cuts = r.poll(now + Duration::from_secs(3600), Duration::ZERO);
    assert_eq!(ids(&cuts), [1, 2]);
}

#[test]
fn the_checkpoint_keeps_the_channel_state() {
    let mut cp = crate::checkpoint::StreamState::default();
    let text = serde_json::to_string(&cp).unwrap();
    assert!(
        !text.contains("eventlog"),
        "file streams are unchanged: {text}"
    );
    cp.eventlog = Some(ChannelState {
        channel: "Security".into(),
        bookmark: Some(bookmark_xml(7)),
        last_record_id: Some(7),
        offset: 1234,
    });
    let back: crate::checkpoint::StreamState =
        serde_json::from_str(&serde_json::to_string(&cp).unwrap()).unwrap();
    assert_eq!(back, cp);
}
