//! A webroot source (FORMAT.md §18): every `interval`, an inventory of the
//! configured web roots (path, type, size, mtime, mode and SHA-256 of each
//! file) is taken and kept as a stream of its own, chained, signed and
//! shipped like any log. The incident form asks for "unauthorised files in
//! web directories" (REQUIREMENTS.md §4, STEP 5); a web server logs the
//! request that planted a webshell, not the file, so only inventories taken
//! over time answer it. `custody-report findings` compares them.
//!
//! An inventory is cut into parts at line boundaries, each part a segment
//! no larger than `segment_max_bytes`; the last part says so. The
//! checkpoint keeps when the last complete inventory was taken, so a
//! restart takes the next one when it is due, not at once; an inventory the
//! agent stopped in the middle of is left incomplete (its parts stay, as
//! evidence of what was seen) and a new one is taken at the next start.

pub mod config;
pub mod walk;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_evidence::inventory::InventoryEntry;
use custody_evidence::segment::{ByteRange, Framing, InventoryKind, InventorySource, Split};
use custody_evidence::timefmt::{format_utc, parse_utc};
use custody_evidence::{Category, StreamId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::board::Board;
use crate::checkpoint::StateAfter;
use crate::seal::Sealer;
use crate::source::{Closed, SealedSegment, SourceEvent};
use crate::wake::Wake;
pub use config::WebrootConfig;
use walk::Walker;

/// How often the thread looks at the stop flag while waiting.
const TICK: Duration = Duration::from_millis(200);

/// A webroot stream's committed position, kept in the agent checkpoint
/// (`StreamState::inventory`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryState {
    /// `taken` of the inventory the last durable part belongs to (RFC 3339).
    pub taken: String,
    /// Whether that part was the inventory's last.
    pub complete: bool,
    /// End of the stream's raw bytes in durable segments, within the
    /// inventory `taken` (the next part's `range.start`).
    pub offset: u64,
}

/// One webroot source on its own thread.
pub struct InventoryReader {
    pub stream: StreamId,
    pub category: Category,
    pub webroot: WebrootConfig,
    pub segment_max_bytes: usize,
    pub next_seq: u64,
    /// From the checkpoint: the last durable part's inventory.
    pub committed: Option<InventoryState>,
    pub sealer: Sealer,
    pub out: SyncSender<SourceEvent>,
    pub board: Arc<Board>,
    pub wake: Arc<Wake>,
    pub stop: Arc<AtomicBool>,
    pub paused: Arc<AtomicBool>,
}

/// The parts of the inventory being taken.
struct Taking {
    taken: OffsetDateTime,
    part: u32,
    offset: u64,
    buf: Vec<u8>,
    first_read: OffsetDateTime,
}

impl InventoryReader {
    pub fn run(mut self) {
        let mut walker = Walker::default();
        let mut due = self.first_due();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            if Instant::now() >= due && !self.paused.load(Ordering::SeqCst) {
                let started = Instant::now();
                match self.take(&mut walker) {
                    Ok(true) => {}
                    Ok(false) => break, // stopped during the walk
                    Err(Closed) => return,
                }
                tracing::debug!(
                    stream = %self.stream,
                    hashed = walker.hashed_last_walk,
                    took_ms = started.elapsed().as_millis() as u64,
                    "web-root inventory taken"
                );
                due = started + self.webroot.interval;
            }
            let until = due.min(Instant::now() + TICK);
            self.wake
                .wait_until(until.max(Instant::now() + Duration::from_millis(1)));
        }
        let _ = self.out.send(SourceEvent::Done(self.stream.clone()));
    }

    /// Now, unless the last complete inventory is younger than the interval.
    fn first_due(&self) -> Instant {
        let Some(state) = self.committed.as_ref().filter(|s| s.complete) else {
            return Instant::now();
        };
        let Ok(taken) = parse_utc(&state.taken) else {
            return Instant::now();
        };
        let age = OffsetDateTime::now_utc() - taken;
        let interval =
            time::Duration::try_from(self.webroot.interval).unwrap_or(time::Duration::HOUR);
        if age.is_negative() || age >= interval {
            return Instant::now();
        }
        let left = Duration::try_from(interval - age).unwrap_or(Duration::ZERO);
        Instant::now() + left
    }

    /// Takes one inventory. Ok(false) when the agent is stopping.
    fn take(&mut self, walker: &mut Walker) -> Result<bool, Closed> {
        let now = custody_evidence::timefmt::now_utc_micros();
        let mut taking = Taking {
            taken: now,
            part: 0,
            offset: 0,
            buf: Vec::new(),
            first_read: now,
        };
        let mut errors = Vec::new();
        let stop = self.stop.clone();
        let roots = self.webroot.roots.clone();
        let max = self.segment_max_bytes.max(4096);
        let result = walker.walk(&roots, &stop, &mut |entry: InventoryEntry| {
            if entry.entry_type == custody_evidence::inventory::EntryType::Directory {
                if let Some(e) = &entry.error {
                    errors.push(format!("{}: {e}", entry.display_path()));
                }
            }
            let line = entry.encode();
            if !taking.buf.is_empty() && taking.buf.len() + line.len() > max {
                self.seal_part(&mut taking, false)?;
            }
            taking.buf.extend_from_slice(&line);
            Ok::<(), Closed>(())
        });
        self.board.set_source_errors(&self.stream, errors);
        match result {
            Ok(_) => {
                self.seal_part(&mut taking, true)?;
                Ok(true)
            }
            Err(Some(Closed)) => Err(Closed),
            // Stopping: the parts so far stay, the inventory incomplete.
            Err(None) => Ok(false),
        }
    }

    fn seal_part(&mut self, t: &mut Taking, last: bool) -> Result<(), Closed> {
        let raw = std::mem::take(&mut t.buf);
        let last_read = custody_evidence::timefmt::now_utc_micros();
        let sealed = self.sealer.seal(&raw);
        let end = t.offset + raw.len() as u64;
        let seg = SealedSegment {
            stream: self.stream.clone(),
            category: self.category,
            seq: self.next_seq,
            framing: Framing::Lines,
            source: InventorySource {
                kind: InventoryKind::Inventory,
                roots: self
                    .webroot
                    .roots
                    .iter()
                    .map(|r| r.to_string_lossy().into_owned())
                    .collect(),
                taken: t.taken,
                part: t.part,
                last_part: last,
            }
            .into(),
            range: ByteRange {
                start: t.offset,
                end,
            },
            split: Split::default(),
            first_read: t.first_read,
            last_read,
            raw_len: raw.len() as u64,
            raw_sha256: sealed.raw_sha256,
            object: sealed.object,
            object_sha256: sealed.object_sha256,
            after: StateAfter::Inventory {
                inventory: InventoryState {
                    taken: format_utc(t.taken),
                    complete: last,
                    offset: end,
                },
            },
        };
        self.next_seq += 1;
        t.part += 1;
        t.offset = end;
        t.first_read = last_read;
        self.out
            .send(SourceEvent::Segment(Box::new(seg)))
            .map_err(|_| Closed)
    }
}
