//! One channel: reads events from an [`EventFeed`], frames them
//! (octet-counted, FORMAT.md §17.2), cuts segments at event boundaries and
//! keeps the bookmark that goes with each cut; on failure applies
//! [`decide`] and keeps going. It never waits for another channel and never
//! stops: a channel that fails only delays itself.

use std::time::{Duration, Instant};

use custody_evidence::octets::{append_frame, framed_len};
use serde::{Deserialize, Serialize};

use super::feed::{EventFeed, FeedError, RawEvent, StartFrom};
use super::recovery::{decide, ResumeReason};

/// A channel's committed position, kept in the agent checkpoint
/// (`StreamState::eventlog`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The channel path.
    pub channel: String,
    /// Bookmark XML at the last event in a durable segment.
    pub bookmark: Option<String>,
    /// `EventRecordID` of that event.
    pub last_record_id: Option<u64>,
    /// End of the stream's raw bytes in durable segments (the next
    /// segment's `range.start`).
    pub offset: u64,
}

/// Limits for cutting.
#[derive(Debug, Clone)]
pub struct CutRules {
    /// A segment is cut before an event that would take it past this many
    /// raw bytes; an event larger than this is a segment of its own (a
    /// frame is never split).
    pub max_bytes: usize,
    /// A segment is cut when its first event was read this long ago.
    pub max_age: Duration,
    /// Events taken per `EvtNext`.
    pub batch: usize,
    /// Where a channel without a bookmark starts.
    pub first_start: StartFrom,
}

/// A cut segment's content, ready to be sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutSegment {
    pub channel: String,
    /// Octet-counted frames, one per event.
    pub raw: Vec<u8>,
    /// `[start, end)` in the stream's raw bytes.
    pub range: (u64, u64),
    pub first_record_id: u64,
    pub last_record_id: u64,
    pub events: usize,
    /// Set on the first segment after a recovery.
    pub resumed_after: Option<ResumeReason>,
    /// The channel's state once this segment is durable.
    pub state_after: ChannelState,
}

struct Open {
    raw: Vec<u8>,
    first: u64,
    last: u64,
    events: usize,
    opened: Instant,
    resumed_after: Option<ResumeReason>,
    /// Bookmark XML at `bookmark_for` (rendered lazily).
    bookmark: Option<String>,
    bookmark_for: u64,
}

/// Where the channel reader is, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Reading,
    /// Waiting to resubscribe; why.
    Waiting(String),
}

/// Reads one channel.
pub struct ChannelReader<F: EventFeed> {
    feed: F,
    rules: CutRules,
    /// Read position: the last event put into a segment, its bookmark,
    /// and the raw offset after it.
    read_last: Option<u64>,
    read_bookmark: Option<String>,
    read_offset: u64,
    /// The last event in a cut segment (where `read_bookmark` is).
    cut_last: Option<u64>,
    open: Option<Open>,
    subscribed: bool,
    next_from: StartFrom,
    pending_reason: Option<ResumeReason>,
    retry_at: Option<Instant>,
    attempt: u32,
    health: Health,
    channel: String,
}

impl<F: EventFeed> ChannelReader<F> {
    /// A reader resuming from `committed` (the checkpoint's state, or a
    /// default one for a new channel).
    pub fn new(feed: F, committed: ChannelState, rules: CutRules) -> Self {
        let next_from = match &committed.bookmark {
            Some(b) => StartFrom::AfterBookmark(b.clone()),
            None => rules.first_start.clone(),
        };
        ChannelReader {
            feed,
            rules,
            read_last: committed.last_record_id,
            read_bookmark: committed.bookmark,
            read_offset: committed.offset,
            cut_last: committed.last_record_id,
            open: None,
            subscribed: false,
            next_from,
            pending_reason: None,
            retry_at: None,
            attempt: 0,
            health: Health::Reading,
            channel: committed.channel,
        }
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Events are waiting in a segment not cut yet.
    pub fn has_open(&self) -> bool {
        self.open.is_some()
    }

    pub fn feed_mut(&mut self) -> &mut F {
        &mut self.feed
    }

    /// One round: (re)subscribe if due, read one batch (waiting up to
    /// `wait`), return the segments cut. Never fails: failures become a
    /// wait and a resubscription.
    pub fn poll(&mut self, now: Instant, wait: Duration) -> Vec<CutSegment> {
        let mut cuts = Vec::new();
        if !self.subscribed {
            if self.retry_at.is_some_and(|t| now < t) {
                self.cut_if_old(now, &mut cuts);
                return cuts;
            }
            match self.feed.subscribe(&self.next_from) {
                Ok(()) => {
                    self.subscribed = true;
                    self.health = Health::Reading;
                }
                Err(e) => {
                    self.fail(e, now, &mut cuts);
                    return cuts;
                }
            }
        }
        match self.feed.next(self.rules.batch, wait) {
            Ok(events) => {
                self.attempt = 0;
                for ev in events {
                    if let Err(e) = self.add(ev, now, &mut cuts) {
                        self.fail(e, now, &mut cuts);
                        return cuts;
                    }
                }
                if let Err(e) = self.bookmark_open() {
                    self.fail(e, now, &mut cuts);
                    return cuts;
                }
                self.cut_if_old(now, &mut cuts);
            }
            Err(e) => self.fail(e, now, &mut cuts),
        }
        cuts
    }

    /// Cuts whatever is open (shutdown).
    pub fn flush(&mut self) -> Vec<CutSegment> {
        let mut cuts = Vec::new();
        if self.bookmark_open().is_ok() {
            self.cut(&mut cuts);
        }
        cuts
    }

    fn add(
        &mut self,
        ev: RawEvent,
        now: Instant,
        cuts: &mut Vec<CutSegment>,
    ) -> Result<(), FeedError> {
        // Record ids only grow within a channel; going back means the
        // channel was cleared (or recreated) under the subscription.
        if self.read_last.is_some_and(|last| ev.record_id <= last) {
            self.bookmark_open()?;
            self.cut(cuts);
            self.pending_reason = Some(ResumeReason::Cleared);
        }
        let frame = framed_len(ev.xml.len());
        if let Some(open) = &self.open {
            if open.raw.len() + frame > self.rules.max_bytes {
                self.bookmark_open()?;
                self.cut(cuts);
            }
        }
        let open = self.open.get_or_insert_with(|| Open {
            raw: Vec::new(),
            first: ev.record_id,
            last: ev.record_id,
            events: 0,
            opened: now,
            resumed_after: None,
            bookmark: None,
            bookmark_for: 0,
        });
        if open.events == 0 {
            open.resumed_after = self.pending_reason.take();
        }
        append_frame(&mut open.raw, &ev.xml);
        open.last = ev.record_id;
        open.events += 1;
        self.read_last = Some(ev.record_id);
        Ok(())
    }

    /// Renders the bookmark at the open segment's last event, while that
    /// event is still one the feed last returned.
    fn bookmark_open(&mut self) -> Result<(), FeedError> {
        if let Some(open) = &mut self.open {
            if open.bookmark.is_none() || open.bookmark_for != open.last {
                open.bookmark = Some(self.feed.bookmark_at(open.last)?);
                open.bookmark_for = open.last;
            }
        }
        Ok(())
    }

    fn cut_if_old(&mut self, now: Instant, cuts: &mut Vec<CutSegment>) {
        if self
            .open
            .as_ref()
            .is_some_and(|o| now.duration_since(o.opened) >= self.rules.max_age)
        {
            self.cut(cuts);
        }
    }

    fn cut(&mut self, cuts: &mut Vec<CutSegment>) {
        let Some(open) = self.open.take() else { return };
        let start = self.read_offset;
        let end = start + open.raw.len() as u64;
        self.read_offset = end;
        self.read_bookmark = open.bookmark.clone();
        self.cut_last = Some(open.last);
        cuts.push(CutSegment {
            channel: self.channel.clone(),
            range: (start, end),
            first_record_id: open.first,
            last_record_id: open.last,
            events: open.events,
            resumed_after: open.resumed_after,
            state_after: ChannelState {
                channel: self.channel.clone(),
                bookmark: open.bookmark,
                last_record_id: Some(open.last),
                offset: end,
            },
            raw: open.raw,
        });
    }

    /// Applies the recovery for `err`. What was read stays: the open
    /// segment is cut with the bookmark of its last event (rendered when
    /// its batch ended), so nothing read is lost or read twice.
    fn fail(&mut self, err: FeedError, now: Instant, cuts: &mut Vec<CutSegment>) {
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.bookmark.is_some() && o.bookmark_for == o.last)
        {
            self.cut(cuts);
        } else if self.open.take().is_some() {
            // Its last events have no bookmark (the feed failed before one
            // was rendered): drop the open segment and read those events
            // again after the last cut one — no loss, no duplicate.
            self.read_last = self.cut_last;
        }
        let r = decide(&err, self.read_bookmark.as_deref(), self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.subscribed = false;
        self.next_from = r.from;
        if r.reason != ResumeReason::SubscriptionStale || self.pending_reason.is_none() {
            self.pending_reason = Some(r.reason);
        }
        if matches!(r.reason, ResumeReason::BookmarkLost) {
            // Record ids restart or jump: do not treat the first events
            // after resubscribing as a clear as well.
            self.read_last = None;
            self.cut_last = None;
        }
        self.retry_at = Some(now + r.after);
        self.health = Health::Waiting(format!("{err}; retrying in {} s", r.after.as_secs()));
    }
}

#[cfg(test)]
mod tests;
