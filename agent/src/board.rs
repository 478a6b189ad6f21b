//! The shared picture behind `status.json`: every stage writes its part,
//! a small task writes the file about once a second.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use custody_evidence::timefmt::format_utc;
use custody_evidence::StreamId;
use time::OffsetDateTime;

use crate::status::{
    AgentStatus, FileStatus, SkippedPath, SourceStatus, UnreadableFile, STATUS_FILE,
};

/// A file source's problems as it sees them after a scan, beside its
/// followed files (see [`Board::set_source_files`]).
#[derive(Debug, Clone, Default)]
pub struct FileView {
    pub errors: Vec<String>,
    pub unreadable: Vec<UnreadableFile>,
    pub skipped: Vec<SkippedPath>,
}

pub struct Board {
    inner: Mutex<AgentStatus>,
    path: PathBuf,
    /// Offsets made durable by the committer, per stream and file
    /// (device, inode): what `status` reports, not the read position.
    committed: Mutex<HashMap<(StreamId, u64, u64), u64>>,
    /// When `status.json` was last written, and its content then (without
    /// `updated`).
    last_written: Mutex<Option<(std::time::Instant, u64)>>,
    /// Counts changes to the status.
    generation: AtomicU64,
}

fn now() -> String {
    format_utc(OffsetDateTime::now_utc())
}

impl Board {
    pub fn new(state_dir: &std::path::Path, initial: AgentStatus) -> Self {
        Board {
            inner: Mutex::new(initial),
            path: state_dir.join(STATUS_FILE),
            committed: Mutex::new(HashMap::new()),
            last_written: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Changes the status; `f` returns whether it changed anything, so
    /// the writer knows when there is something new to write.
    fn change(&self, f: impl FnOnce(&mut AgentStatus) -> bool) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if f(&mut g) {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut AgentStatus) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut g);
        self.generation.fetch_add(1, Ordering::Relaxed);
        r
    }

    fn source<R>(&self, stream: &StreamId, f: impl FnOnce(&mut SourceStatus) -> R) -> Option<R> {
        self.with(|s| {
            s.sources
                .iter_mut()
                .find(|x| x.stream_id == stream.as_str())
                .map(f)
        })
    }

    /// The committer made `[.., offset)` of a file durable.
    pub fn file_committed(&self, stream: &StreamId, device: u64, inode: u64, offset: u64) {
        let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        c.insert((stream.clone(), device, inode), offset);
    }

    /// The committer forgot a file.
    pub fn file_forgotten(&self, stream: &StreamId, device: u64, inode: u64) {
        let mut c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        c.remove(&(stream.clone(), device, inode));
    }

    /// A source's followed files; their offsets are replaced by the
    /// committed ones (bytes read but not yet durable count as behind).
    pub fn set_source_files(&self, stream: &StreamId, mut files: Vec<FileStatus>, view: FileView) {
        let FileView {
            errors,
            unreadable,
            skipped,
        } = view;
        {
            let c = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            for f in &mut files {
                let committed = c
                    .get(&(stream.clone(), f.device, f.inode))
                    .copied()
                    .unwrap_or(0);
                f.offset = committed.min(f.offset);
                f.behind = f.size.saturating_sub(f.offset);
            }
        }
        self.change(|s| {
            let Some(src) = s
                .sources
                .iter_mut()
                .find(|x| x.stream_id == stream.as_str())
            else {
                return false;
            };
            if src.files == files
                && src.errors == errors
                && src.unreadable == unreadable
                && src.skipped == skipped
            {
                return false;
            }
            src.files = files;
            src.errors = errors;
            src.unreadable = unreadable;
            src.skipped = skipped;
            true
        });
    }

    /// The committer made a journal stream durable up to this state.
    pub fn journal_committed(&self, stream: &StreamId, state: &crate::checkpoint::JournalState) {
        self.source(stream, |s| {
            if let Some(j) = &mut s.journal {
                j.committed_cursor = state.cursor.clone();
            }
        });
    }

    /// The committer made an event log stream durable up to this state.
    pub fn eventlog_committed(
        &self,
        stream: &StreamId,
        state: &crate::eventlog::reader::ChannelState,
    ) {
        self.source(stream, |s| {
            if let Some(e) = &mut s.eventlog {
                e.committed_record_id = state.last_record_id;
            }
        });
    }

    /// An event log channel reader's own view: reading or waiting (and
    /// why), and the last record id it read.
    pub fn set_eventlog(
        &self,
        stream: &StreamId,
        state: String,
        last_read_record_id: Option<u64>,
        last_error: Option<String>,
    ) {
        self.change(|s| {
            let Some(src) = s
                .sources
                .iter_mut()
                .find(|x| x.stream_id == stream.as_str())
            else {
                return false;
            };
            let e = src.eventlog.get_or_insert_with(Default::default);
            if e.state == state
                && e.last_read_record_id == last_read_record_id
                && e.last_error == last_error
            {
                return false;
            }
            e.state = state;
            e.last_read_record_id = last_read_record_id;
            src.errors = last_error.iter().cloned().collect();
            e.last_error = last_error;
            true
        });
    }

    /// A journal source's own view: restarts, lost cursors and problems.
    pub fn set_journal(
        &self,
        stream: &StreamId,
        restarts: u64,
        lost: &[crate::status::LostCursor],
        errors: Vec<String>,
    ) {
        self.change(|s| {
            let Some(src) = s
                .sources
                .iter_mut()
                .find(|x| x.stream_id == stream.as_str())
            else {
                return false;
            };
            let j = src.journal.get_or_insert_with(Default::default);
            if j.restarts == restarts && j.lost_cursors == lost && src.errors == errors {
                return false;
            }
            j.restarts = restarts;
            j.lost_cursors = lost.to_vec();
            src.errors = errors;
            true
        });
    }

    /// A source's current problems, replaced as a whole (a webroot whose
    /// directories cannot be listed).
    pub fn set_source_errors(&self, stream: &StreamId, errors: Vec<String>) {
        self.change(|s| {
            let Some(src) = s
                .sources
                .iter_mut()
                .find(|x| x.stream_id == stream.as_str())
            else {
                return false;
            };
            if src.errors == errors {
                return false;
            }
            src.errors = errors;
            true
        });
    }

    pub fn segment_committed(&self, stream: &StreamId, seq: u64) {
        self.source(stream, |s| {
            s.last_segment_seq = Some(seq);
            s.last_segment_at = Some(now());
        });
    }

    pub fn spool(&self, bytes: u64, segments: u64, backpressure: bool, error: Option<String>) {
        self.change(|s| {
            let sp = &mut s.spool;
            let same = sp.bytes == bytes
                && sp.segments == segments
                && sp.backpressure == backpressure
                && sp.error == error;
            sp.bytes = bytes;
            sp.segments = segments;
            sp.backpressure = backpressure;
            sp.error = error;
            !same
        });
    }

    pub fn shipped(&self) {
        self.with(|s| {
            s.last_ship = Some(now());
            s.last_ship_error = None;
        });
    }

    pub fn ship_failed(&self, why: String) {
        self.with(|s| s.last_ship_error = Some(why));
    }

    pub fn digest_written(&self, seq: u64) {
        self.with(|s| {
            s.last_digest_seq = Some(seq);
            s.last_digest_at = Some(now());
        });
    }

    /// One line for systemd's `STATUS=`.
    pub fn summary(&self) -> String {
        let s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        crate::status::summary_line(&s)
    }

    pub fn stopped(&self) {
        self.with(|s| s.running = false);
    }

    /// Writes `status.json` atomically (temp file and rename).
    pub fn write(&self) -> std::io::Result<()> {
        let bytes = {
            let mut s = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            s.updated = now();
            serde_json::to_vec_pretty(&*s).unwrap_or_default()
        };
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Writes `status.json` when something in it changed, and at least
    /// every [`STATUS_REFRESH`] so `updated` shows the agent is alive: an
    /// idle agent then touches its state directory a few times a minute
    /// instead of every second.
    pub fn write_if_changed(&self) -> std::io::Result<()> {
        let generation = self.generation.load(Ordering::Relaxed);
        {
            let last = self.last_written.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((at, written)) = *last {
                if written == generation && at.elapsed() < STATUS_REFRESH {
                    return Ok(());
                }
            }
        }
        self.write()?;
        *self.last_written.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((std::time::Instant::now(), generation));
        Ok(())
    }
}

/// How often an unchanged status is rewritten; well inside
/// [`crate::status::STALE_AFTER`].
pub const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

impl Board {
    pub fn ship_recovered(&self) {
        self.with(|s| s.last_ship_error = None);
    }
}
