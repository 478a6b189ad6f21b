//! An event log source on the agent's pipeline: one thread per channel
//! drives a [`ChannelReader`], seals each [`CutSegment`] and hands it to the
//! committer, like the journal reader does for journalctl. A channel that
//! fails only waits itself (the reader's recovery); the thread never ends
//! before shutdown, so other channels and sources are never held up.
//!
//! Generic over the feed so the loop is tested on every OS with a fake;
//! the agent uses it with [`super::wevt::WevtFeed`] on Windows only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_evidence::segment::{ByteRange, Framing, Split};
use custody_evidence::{Category, StreamId};
use time::OffsetDateTime;

use super::config::segment_source;
use super::feed::EventFeed;
use super::reader::{ChannelReader, CutSegment, Health};
use crate::board::Board;
use crate::checkpoint::StateAfter;
use crate::seal::Sealer;
use crate::source::{SealedSegment, SourceEvent};
use crate::wake::Wake;

/// How long one `poll` waits for events (and how often `stop` is seen).
pub const POLL_WAIT: Duration = Duration::from_secs(1);

/// One channel's thread.
pub struct EventLogSource<F: EventFeed> {
    pub reader: ChannelReader<F>,
    pub channel: String,
    pub stream: StreamId,
    pub category: Category,
    /// The next segment's sequence number in the stream.
    pub next_seq: u64,
    pub sealer: Sealer,
    pub out: SyncSender<SourceEvent>,
    pub board: Arc<Board>,
    pub wake: Arc<Wake>,
    pub stop: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
}

/// The committer is gone (the agent is stopping).
struct Closed;

impl<F: EventFeed> EventLogSource<F> {
    /// Reads, seals and sends until `stop`; then cuts what is open and
    /// reports `Done`.
    pub fn run(mut self) {
        // Wall-clock time the open segment's first event was read (to the
        // poll: within `POLL_WAIT`).
        let mut open_since: Option<OffsetDateTime> = None;
        let mut last_sent: Option<u64> = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                let cuts = self.reader.flush();
                if self.send_all(cuts, &mut open_since, &mut last_sent).is_ok() {
                    self.publish(last_sent);
                    let _ = self.out.send(SourceEvent::Done(self.stream.clone()));
                }
                return;
            }
            if self.paused.load(Ordering::SeqCst) {
                // Back-pressure: the spool is full; events stay in the channel.
                self.wake.wait_until(Instant::now() + POLL_WAIT);
                continue;
            }
            let cuts = self.reader.poll(Instant::now(), POLL_WAIT);
            if open_since.is_none() && (self.reader.has_open() || !cuts.is_empty()) {
                open_since = Some(custody_evidence::timefmt::now_utc_micros());
            }
            if self
                .send_all(cuts, &mut open_since, &mut last_sent)
                .is_err()
            {
                return;
            }
            self.publish(last_sent);
            if let Health::Waiting(_) = self.reader.health() {
                // poll returns at once while a retry is not due.
                self.wake.wait_until(Instant::now() + POLL_WAIT);
            }
        }
    }

    fn send_all(
        &mut self,
        cuts: Vec<CutSegment>,
        open_since: &mut Option<OffsetDateTime>,
        last_sent: &mut Option<u64>,
    ) -> Result<(), Closed> {
        for cut in cuts {
            let now = custody_evidence::timefmt::now_utc_micros();
            let first_read = open_since.take().unwrap_or(now);
            *last_sent = Some(cut.last_record_id);
            self.send(cut, first_read, now)?;
        }
        if self.reader.has_open() && open_since.is_none() {
            *open_since = Some(custody_evidence::timefmt::now_utc_micros());
        }
        Ok(())
    }

    fn send(
        &mut self,
        cut: CutSegment,
        first_read: OffsetDateTime,
        last_read: OffsetDateTime,
    ) -> Result<(), Closed> {
        let sealed = self.sealer.seal(&cut.raw);
        let seg = SealedSegment {
            stream: self.stream.clone(),
            category: self.category,
            seq: self.next_seq,
            framing: Framing::OctetCounted,
            source: segment_source(&cut).into(),
            range: ByteRange {
                start: cut.range.0,
                end: cut.range.1,
            },
            split: Split {
                starts_mid_unit: false,
                ends_mid_unit: false,
            },
            first_read,
            last_read,
            raw_len: cut.raw.len() as u64,
            raw_sha256: sealed.raw_sha256,
            object: sealed.object,
            object_sha256: sealed.object_sha256,
            after: StateAfter::EventLog {
                eventlog: cut.state_after,
            },
        };
        self.next_seq += 1;
        self.out
            .send(SourceEvent::Segment(Box::new(seg)))
            .map_err(|_| Closed)
    }

    fn publish(&self, last_sent: Option<u64>) {
        let (state, error) = match self.reader.health() {
            Health::Reading => ("reading".to_string(), None),
            Health::Waiting(why) => (
                "waiting".to_string(),
                Some(format!("channel {}: {why}", self.channel)),
            ),
        };
        self.board
            .set_eventlog(&self.stream, state, last_sent, error);
    }
}

/// The thread driven by a fake feed: what it hands the committer is sealed
/// octet-counted frames of the events with their bookmark as the state
/// after; a channel that fails shows as waiting in status and still stops.
#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::mpsc::{sync_channel, Receiver};

    use custody_evidence::octets::split_frames;
    use custody_evidence::segment::Source as SegmentSource;

    use super::*;
    use crate::eventlog::feed::{FeedError, RawEvent, StartFrom};
    use crate::eventlog::reader::{ChannelState, CutRules};
    use crate::status::{AgentStatus, SourceStatus};

    /// Hands out `events` (then nothing), or fails every subscribe.
    struct ScriptFeed {
        events: VecDeque<RawEvent>,
        missing: bool,
    }

    impl EventFeed for ScriptFeed {
        fn subscribe(&mut self, _from: &StartFrom) -> Result<(), FeedError> {
            if self.missing {
                return Err(FeedError::ChannelMissing("15007".into()));
            }
            Ok(())
        }
        fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<RawEvent>, FeedError> {
            let n = max.min(self.events.len());
            if n == 0 {
                std::thread::sleep(wait.min(Duration::from_millis(20)));
            }
            Ok(self.events.drain(..n).collect())
        }
        fn bookmark_at(&mut self, record_id: u64) -> Result<String, FeedError> {
            Ok(format!("<BookmarkList><Bookmark Channel='Security' RecordId='{record_id}' IsCurrent='true'/></BookmarkList>"))
        }
    }

    fn event(id: u64) -> RawEvent {
        let text = format!("<Event><System><EventRecordID>{id}</EventRecordID></System></Event>");
        RawEvent {
            record_id: id,
            xml: text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
        }
    }

    fn start(
        feed: ScriptFeed,
        dir: &std::path::Path,
    ) -> (
        Receiver<SourceEvent>,
        Arc<AtomicBool>,
        Arc<Board>,
        std::thread::JoinHandle<()>,
    ) {
        let stream = StreamId::new("eventlog-security").unwrap();
        let board = Arc::new(Board::new(
            dir,
            AgentStatus {
                sources: vec![SourceStatus {
                    name: "eventlog-security".into(),
                    stream_id: stream.to_string(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ));
        let (tx, rx) = sync_channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let rules = CutRules {
            max_bytes: 200,
            max_age: Duration::from_secs(3600),
            batch: 8,
            first_start: StartFrom::Oldest,
        };
        let committed = ChannelState {
            channel: "Security".into(),
            ..Default::default()
        };
        let source = EventLogSource {
            reader: ChannelReader::new(feed, committed, rules),
            channel: "Security".into(),
            stream,
            category: Category::Logon,
            next_seq: 0,
            sealer: Sealer::new(3).unwrap(),
            out: tx,
            board: board.clone(),
            wake: Arc::new(Wake::default()),
            stop: stop.clone(),
            paused: Arc::new(AtomicBool::new(false)),
        };
        let t = std::thread::spawn(move || source.run());
        (rx, stop, board, t)
    }

    #[test]
    fn events_are_sealed_as_frames_with_their_bookmark_and_flushed_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let feed = ScriptFeed {
            events: (1..=5).map(event).collect(),
            missing: false,
        };
        let (rx, stop, _board, t) = start(feed, dir.path());
        let mut segs = Vec::new();
        // 5 events of 138 framed bytes, 200 max: one per segment; the last
        // one is cut by the stop.
        while segs.len() < 4 {
            match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
                SourceEvent::Segment(s) => segs.push(s),
                _ => panic!("unexpected event before stop"),
            }
        }
        stop.store(true, Ordering::SeqCst);
        loop {
            match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
                SourceEvent::Segment(s) => segs.push(s),
                SourceEvent::Done(_) => break,
                _ => panic!("unexpected event"),
            }
        }
        t.join().unwrap();
        assert_eq!(segs.len(), 5);
        let mut offset = 0;
        for (i, s) in segs.iter().enumerate() {
            let id = i as u64 + 1;
            assert_eq!(s.seq, i as u64);
            assert_eq!(s.framing, Framing::OctetCounted);
            let raw = zstd::decode_all(&s.object[..]).unwrap();
            assert_eq!(raw.len() as u64, s.raw_len);
            assert_eq!(split_frames(&raw).unwrap(), vec![&event(id).xml[..]]);
            assert_eq!((s.range.start, s.range.end), (offset, offset + s.raw_len));
            offset = s.range.end;
            match &s.source {
                SegmentSource::EventLog(e) => {
                    assert_eq!((e.first_record_id, e.last_record_id), (id, id));
                    assert_eq!(e.channel, "Security");
                }
                other => panic!("not an event log source: {other:?}"),
            }
            match &s.after {
                StateAfter::EventLog { eventlog } => {
                    assert_eq!(eventlog.last_record_id, Some(id));
                    assert_eq!(eventlog.offset, s.range.end);
                    assert!(eventlog
                        .bookmark
                        .as_deref()
                        .is_some_and(|b| b.contains(&format!("RecordId='{id}'"))));
                }
                other => panic!("not an event log state: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_channel_waits_reports_itself_and_still_stops() {
        let dir = tempfile::tempdir().unwrap();
        let feed = ScriptFeed {
            events: VecDeque::new(),
            missing: true,
        };
        let (rx, stop, board, t) = start(feed, dir.path());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            board.write().unwrap();
            let text = std::fs::read_to_string(dir.path().join("status.json")).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            if v["sources"][0]["eventlog"]["state"] == "waiting" {
                break v;
            }
            assert!(Instant::now() < deadline, "never waiting: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = status["sources"][0]["eventlog"]["last_error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            err.contains("channel Security") && err.contains("15007"),
            "{err}"
        );
        assert_eq!(status["sources"][0]["errors"][0].as_str(), Some(&err[..]));
        stop.store(true, Ordering::SeqCst);
        match rx.recv_timeout(Duration::from_secs(30)).unwrap() {
            SourceEvent::Done(_) => {}
            _ => panic!("a missing channel produced a segment"),
        }
        t.join().unwrap();
    }
}
