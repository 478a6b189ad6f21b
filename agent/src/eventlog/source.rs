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
