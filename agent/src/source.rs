//! One configured source: discovers its files by glob, follows each by
//! identity through rotation, truncation and deletion, and cuts what it reads
//! into sealed segments at line (or record) boundaries.
//!
//! Runs on its own thread. It never commits anything itself: segments go to
//! the committer, which makes them durable and only then advances the
//! checkpoint, so a crash anywhere here re-reads from the last durable
//! segment, never skips.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_evidence::segment::{ByteRange, Framing, Source as SegmentSource, SourceFile, Split};
use custody_evidence::{Category, Sha256, StreamId};
use time::OffsetDateTime;

use crate::board::{Board, FileView};
use crate::checkpoint::{FileState, StateAfter};
use crate::config::{SourceConfig, SourceFraming, StartAt};
use crate::fingerprint::{
    looks_compressed, read_exact_at, FileKey, Fingerprint, TailCheck, FINGERPRINT_WINDOW,
};
use crate::platform::{self, Stat};
use crate::seal::Sealer;
use crate::status::SkippedPath;
use crate::unreadable::{Noted, Unreadable};
use crate::wake::Wake;

/// A segment cut and sealed by a source, on its way to the committer.
pub struct SealedSegment {
    pub stream: StreamId,
    pub category: Category,
    pub seq: u64,
    pub framing: Framing,
    pub source: SegmentSource,
    pub range: ByteRange,
    pub split: Split,
    pub first_read: OffsetDateTime,
    pub last_read: OffsetDateTime,
    pub raw_len: u64,
    pub raw_sha256: Sha256,
    pub object: Vec<u8>,
    pub object_sha256: Sha256,
    /// The file's (or journal's) committed state once this segment is durable.
    pub after: StateAfter,
}

/// What sources tell the committer, in order.
pub enum SourceEvent {
    Segment(Box<SealedSegment>),
    /// A file is now followed from this state (new file, copy, resumed).
    Track(StreamId, FileState),
    /// A file is finished and gone: drop it from the checkpoint.
    Forget(StreamId, FileKey),
    /// The source has flushed and stopped (shutdown).
    Done(StreamId),
}

/// Settings a source needs, taken from the checked config.
#[derive(Clone)]
pub struct SourceSettings {
    pub segment_max_bytes: usize,
    pub segment_max_age: Duration,
    pub poll_interval: Duration,
    pub partial_line_wait: Duration,
    pub start_at: StartAt,
    /// True when this stream has no checkpoint yet (first start).
    pub first_start: bool,
    /// The globs of the agent's other file sources. A file found under a
    /// name our globs do not match is adopted (finished from a saved
    /// offset) only if none of these match it either: a file another
    /// source's glob matches is that source's file, even when it got the
    /// inode of one of ours (see `may_adopt`).
    pub foreign_globs: Vec<glob::Pattern>,
}

struct Tracked {
    state: FileState,
    file: File,
    size: u64,
    /// Matched by the glob at the last scan (else: renamed away or deleted,
    /// read to its end and then forgotten).
    matched: bool,
    last_change: Instant,
    /// Since when the bytes after `offset` have been an incomplete unit.
    partial_since: Option<(u64, Instant)>,
    mtime: i64,
    /// Taken as a new file and not read yet. A copy that was still being
    /// created when it was found (empty, or shorter than the fingerprint)
    /// could not be recognised then; it is checked again before its first
    /// read, so copytruncate's copy is never read twice.
    fresh: bool,
    /// The file's size and change time, and our offset, when the bytes
    /// before the offset were last found unchanged: while all three stay
    /// the same there is nothing to check again (an idle host's scans then
    /// only stat its files).
    verified: Option<(u64, i64, i64, u64)>,
}

/// Where reading a file not followed before begins.
struct Start {
    offset: u64,
    tail: Option<TailCheck>,
    mid_unit: bool,
    /// A new file read from its beginning (see [`Tracked::fresh`]).
    fresh: bool,
}

/// What a file not followed yet is, judged by content against the files
/// followed now, the checkpoint, and files recently found truncated.
enum CopyMatch {
    /// Not a copy of anything known.
    NotACopy,
    /// A copy whose original was truncated or rewritten: read only the
    /// bytes after what was read of the original.
    Copy {
        offset: u64,
        tail: Option<TailCheck>,
        mid_unit: bool,
        original: FileKey,
    },
    /// Looks like a copy while the original is still intact, or a copy
    /// still being written: decide later.
    Undecided,
}

/// How long a truncated file's last state is kept for recognising its copy.
const TRUNCATED_MEMORY: Duration = Duration::from_secs(30);

struct OpenSegment {
    key: FileKey,
    path: String,
    fingerprint: Fingerprint,
    start: u64,
    buf: Vec<u8>,
    starts_mid: bool,
    first_read: OffsetDateTime,
    opened: Instant,
    last_read: OffsetDateTime,
}

pub struct Source {
    cfg: SourceConfig,
    stream: StreamId,
    settings: SourceSettings,
    next_seq: u64,
    tracked: Vec<Tracked>,
    /// Files from the checkpoint not yet found again (only after a start).
    persisted: Vec<FileState>,
    /// Checkpoint entries found no longer valid at their inode during the
    /// first scan (truncated, rewritten, inode reused). Kept until that scan
    /// ends so that a copy made while the agent was stopped is still
    /// matched against the original's saved offset, in whatever order the
    /// two are found.
    superseded: Vec<FileState>,
    /// Originals whose copy was recognised during this scan.
    copied_from: HashSet<FileKey>,
    /// Candidates that look like copies of a followed file whose original is
    /// still intact: decided later (see `decide_start`).
    deferred: HashMap<FileKey, Instant>,
    /// Followed files found truncated or rewritten, as they were just
    /// before (see [`TRUNCATED_MEMORY`]).
    truncated: Vec<(FileState, Instant)>,
    ignored: HashSet<FileKey>,
    /// Files that exist but cannot be opened, with their saved positions.
    unreadable: Unreadable,
    /// Paths the globs match that are not regular files, and what they
    /// are: logged when first seen, shown in `status` while they match.
    skipped: BTreeMap<PathBuf, &'static str>,
    open: Option<OpenSegment>,
    sealer: Sealer,
    out: SyncSender<SourceEvent>,
    board: Arc<Board>,
    wake: Arc<Wake>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    errors: Vec<String>,
    last_scan: Option<Instant>,
    scratch: Vec<u8>,
    /// The buffer of the last sealed full segment, read into next.
    spare: Vec<u8>,
    /// Set when the stop signal is first seen: until then the source still
    /// reads (see `FINAL_PASS`).
    final_pass_until: Option<Instant>,
}

/// How long a stopping source keeps reading what was written before the signal.
const FINAL_PASS: Duration = Duration::from_secs(2);

impl Source {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: SourceConfig,
        stream: StreamId,
        settings: SourceSettings,
        next_seq: u64,
        persisted: Vec<FileState>,
        sealer: Sealer,
        out: SyncSender<SourceEvent>,
        board: Arc<Board>,
        wake: Arc<Wake>,
        stop: Arc<AtomicBool>,
        paused: Arc<AtomicBool>,
    ) -> Self {
        let unreadable = Unreadable::new(settings.poll_interval);
        Source {
            cfg,
            stream,
            settings,
            next_seq,
            tracked: Vec::new(),
            persisted,
            superseded: Vec::new(),
            copied_from: HashSet::new(),
            deferred: HashMap::new(),
            truncated: Vec::new(),
            ignored: HashSet::new(),
            unreadable,
            skipped: BTreeMap::new(),
            open: None,
            sealer,
            out,
            board,
            wake,
            stop,
            paused,
            errors: Vec::new(),
            last_scan: None,
            scratch: Vec::new(),
            spare: Vec::new(),
            final_pass_until: None,
        }
    }

    fn framing(&self) -> Framing {
        match self.cfg.framing {
            SourceFraming::Lines => Framing::Lines,
            SourceFraming::Records { size } => Framing::Records { size },
        }
    }

    /// The source's loop: scan, read, seal, sleep; until stopped.
    pub fn run(mut self) {
        let min_gap = Duration::from_millis(10);
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            if stopping && self.final_pass_until.is_none() {
                // One last look at every file, so lines written before the
                // signal are shipped; bounded so a large backlog waits for
                // the next start instead of delaying the stop.
                self.final_pass_until = Some(Instant::now() + FINAL_PASS);
                self.last_scan = None;
            }
            let final_pass = self.final_pass_until.is_some_and(|d| Instant::now() < d);
            if (!stopping || final_pass) && !self.paused.load(Ordering::SeqCst) {
                // Rescan on wake-ups, at most every 100 ms, and at every poll.
                if self
                    .last_scan
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(100))
                {
                    self.scan();
                }
                if self.read_all().is_err() {
                    return; // the committer is gone
                }
            }
            let aged = self
                .open
                .as_ref()
                .is_some_and(|o| o.opened.elapsed() >= self.settings.segment_max_age);
            if (aged || stopping) && self.seal_open().is_err() {
                return;
            }
            self.publish_status();
            if stopping {
                let _ = self.out.send(SourceEvent::Done(self.stream.clone()));
                return;
            }
            let mut deadline = Instant::now() + self.settings.poll_interval;
            if let Some(o) = &self.open {
                deadline = deadline.min(o.opened + self.settings.segment_max_age);
            }
            for t in &self.tracked {
                if let Some((_, since)) = t.partial_since {
                    deadline = deadline.min(since + self.settings.partial_line_wait);
                }
                if !t.matched {
                    deadline = deadline.min(t.last_change + self.settings.partial_line_wait);
                }
            }
            let start = Instant::now();
            self.wake
                .wait_until(deadline.max(start + Duration::from_millis(1)));
            // Bound the rate of work under a flood of events.
            let spent = start.elapsed();
            if spent < min_gap {
                std::thread::sleep(min_gap - spent);
            }
        }
    }

    fn publish_status(&self) {
        let files = self
            .tracked
            .iter()
            .map(|t| crate::status::FileStatus {
                path: t.state.path.clone(),
                device: t.state.key.device,
                inode: t.state.key.inode,
                offset: t.state.offset,
                size: t.size,
                behind: t.size.saturating_sub(t.state.offset),
            })
            .collect();
        let skipped = self
            .skipped
            .iter()
            .map(|(path, kind)| SkippedPath {
                path: path.to_string_lossy().into_owned(),
                kind: kind.to_string(),
            })
            .collect();
        let view = FileView {
            errors: self.errors.clone(),
            unreadable: self.unreadable.status(),
            skipped,
        };
        self.board.set_source_files(&self.stream, files, view);
    }

    // ---- discovery -------------------------------------------------------

    fn glob_all(&mut self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for pattern in &self.cfg.paths {
            match glob::glob(pattern) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(p) => paths.push(p),
                            Err(e) => self.errors.push(format!(
                                "cannot read {}: {}; grant the agent's user access to it",
                                e.path().display(),
                                e.error()
                            )),
                        }
                    }
                }
                Err(e) => self.errors.push(format!("invalid glob {pattern:?}: {e}")),
            }
        }
        paths.sort();
        paths.dedup();
        paths
    }

    /// Finds new, renamed, truncated and deleted files.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.errors.clear();
        let paths = self.glob_all();
        if paths.is_empty() {
            self.errors.push(format!(
                "no file matches {} yet (checked again every {:?})",
                self.cfg.paths.join(", "),
                self.settings.poll_interval
            ));
        }
        for t in &mut self.tracked {
            t.matched = false;
        }
        let mut candidates: Vec<(PathBuf, Stat)> = Vec::new();
        let mut seen: HashSet<FileKey> = HashSet::new();
        let mut skipped = BTreeMap::new();
        for path in paths {
            let meta = match platform::stat_path(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    self.errors
                        .push(format!("cannot stat {}: {e}", path.display()));
                    continue;
                }
            };
            if !meta.is_file {
                // A FIFO, a directory, a device: never read (a FIFO would
                // block, a device never ends). Said once, shown in status.
                let kind = platform::kind_of(&path);
                if !self.skipped.contains_key(&path) {
                    tracing::warn!(stream = %self.stream, path = %path.display(), "{} is {kind}, not a regular file: not reading it; narrow the glob if it should not match", path.display());
                }
                skipped.insert(path, kind);
                continue;
            }
            let key = meta.key;
            seen.insert(key);
            if self.ignored.contains(&key) {
                continue;
            }
            if let Some(t) = self.tracked.iter_mut().find(|t| t.state.key == key) {
                t.matched = true;
                let p = path.to_string_lossy().into_owned();
                if t.state.path != p {
                    tracing::info!(stream = %self.stream, from = %t.state.path, to = %p, "followed a rename");
                    t.state.path = p;
                }
            } else if self.unreadable.due(&meta) {
                candidates.push((path, meta));
            }
        }
        self.skipped = skipped;
        // New files first, judged against the followed files as they were
        // before this scan (a copytruncate copy must see the original's
        // offset before the truncation resets it).
        // Files the checkpoint knows go last, so that a copy made while the
        // agent was stopped is matched against the original's saved offset
        // before the original is found truncated.
        let known: HashSet<FileKey> = self.persisted.iter().map(|p| p.key).collect();
        candidates.sort_by_key(|(p, m)| (known.contains(&m.key), m.mtime.0, m.mtime.1, p.clone()));
        for (path, meta) in candidates {
            self.consider_candidate(&path, &meta, true);
        }
        self.retry_unreadable_elsewhere(&seen);
        self.find_persisted_elsewhere();
        self.check_followed();
        // Files matched by nothing that are done: forget them.
        self.drop_finished();
        let still: Vec<String> = self.unreadable.errors().map(str::to_string).collect();
        self.errors.extend(still);
    }

    /// Unreadable files the glob did not match in this scan: renamed away
    /// (a rotation) or deleted. Found at their path or beside it by
    /// device/inode, they are retried there when due (and only finished,
    /// as any file found under another name); gone, their loss is said.
    fn retry_unreadable_elsewhere(&mut self, seen: &HashSet<FileKey>) {
        if self.unreadable.is_empty() {
            return;
        }
        for e in self.unreadable.unseen(seen) {
            let here = platform::stat_path(&e.path)
                .ok()
                .filter(|m| m.is_file && m.key == e.key)
                .map(|m| (e.path.clone(), m));
            match here.or_else(|| find_beside(&e.path, e.key)) {
                Some((path, meta)) => {
                    if self.unreadable.due(&meta) {
                        self.consider_candidate(&path, &meta, false);
                    }
                }
                None => {
                    self.unreadable.take(e.key);
                    match e.saved {
                        Some(saved) => self.record_lost(
                            &saved,
                            "it was deleted or renamed away while it could not be opened",
                        ),
                        None => {
                            tracing::warn!(stream = %self.stream, path = %e.path.display(), "a file that could not be opened is gone before it could be read; none of its content was read")
                        }
                    }
                }
            }
        }
    }

    /// A followed file is gone for good and what was written to it after
    /// its saved offset could not be read: say so, and drop it from the
    /// checkpoint.
    fn record_lost(&self, p: &FileState, why: &str) {
        tracing::warn!(stream = %self.stream, path = %p.path, offset = p.offset, "a followed file disappeared while the agent was stopped ({why}); anything written to it after offset {} could not be read", p.offset);
        let _ = self
            .out
            .send(SourceEvent::Forget(self.stream.clone(), p.key));
    }

    /// Opens a file the glob (or a saved path) named. A file that exists
    /// but cannot be opened is recorded as unreadable with its saved
    /// position (see [`crate::unreadable`]), never dropped or taken as new.
    fn open_file(&mut self, path: &Path, found: &Stat, matched: bool) -> Option<(File, Stat)> {
        let e = match platform::open_log(path).and_then(|f| platform::stat_file(&f).map(|m| (f, m)))
        {
            Ok(fm) => return Some(fm),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => e,
        };
        let msg = if e.kind() == io::ErrorKind::PermissionDenied {
            let mode = platform::describe_access(path);
            format!(
                "cannot read {} ({mode}): permission denied; grant the agent's user read access (for example membership of the file's group, such as adm); retried with back-off and at once when its mode or owner changes; the other sources keep going",
                path.display()
            )
        } else {
            format!("cannot open {}: {e}; retried with back-off", path.display())
        };
        let saved = self
            .persisted
            .iter()
            .position(|p| p.key == found.key)
            .map(|i| self.persisted.remove(i));
        let kept = saved.as_ref().map(|s| s.offset);
        match self
            .unreadable
            .failed(path, found, saved, matched, msg.clone())
        {
            Noted::New => {
                tracing::warn!(stream = %self.stream, saved_offset = ?kept, "{msg}")
            }
            Noted::Again => tracing::debug!(stream = %self.stream, "{msg}"),
        }
        None
    }

    /// The checkpoint's position for `key`, if any: from the checkpoint as
    /// loaded, or kept while the file could not be opened.
    fn take_saved(&mut self, key: FileKey) -> Option<FileState> {
        let kept = self.unreadable.take(key).and_then(|e| {
            tracing::info!(stream = %self.stream, path = %e.path.display(), saved_offset = ?e.saved.as_ref().map(|s| s.offset), "can open a file that could not be opened before");
            e.saved
        });
        let loaded = self
            .persisted
            .iter()
            .position(|p| p.key == key)
            .map(|i| self.persisted.remove(i));
        loaded.or(kept)
    }

    /// Whether a file found under a name our globs do not match, with the
    /// device/inode of `saved`, is that file renamed (finish it from the
    /// saved offset) rather than another file that got its inode. It must
    /// be the same content: as long as the saved offset, the same first
    /// bytes and the same bytes before the offset. And it must not be
    /// another source's file (matched by another source's glob). `Err`
    /// says why not.
    fn may_adopt(
        &self,
        path: &Path,
        file: &File,
        size: u64,
        saved: &FileState,
    ) -> Result<(), String> {
        if let Some(g) = self
            .settings
            .foreign_globs
            .iter()
            .find(|g| g.matches_path(path))
        {
            return Err(format!(
                "its inode now belongs to {}, which another source's glob ({g}) matches",
                path.display()
            ));
        }
        let same = size >= saved.offset
            && saved.fingerprint.matches(file).unwrap_or(false)
            && saved
                .tail
                .is_none_or(|t| t.holds(file, saved.offset).unwrap_or(false));
        if !same {
            return Err(format!(
                "its inode now belongs to {}, which holds other content",
                path.display()
            ));
        }
        Ok(())
    }

    /// Starts following a file the glob matched (`matched`), or one found
    /// beside a saved path under another name (`!matched`: only finished
    /// from the saved offset, see `may_adopt`).
    fn consider_candidate(&mut self, path: &Path, meta: &Stat, matched: bool) {
        let key = meta.key;
        let Some((file, meta)) = self.open_file(path, meta, matched) else {
            return;
        };
        if meta.key != key {
            return; // replaced between stat and open; next scan sees it
        }
        let size = meta.len;
        let head = read_exact_at(&file, 0, size.min(8))
            .ok()
            .flatten()
            .unwrap_or_default();
        if looks_compressed(path, &head) {
            tracing::debug!(path = %path.display(), "not reading compressed rotation");
            self.ignored.insert(key);
            return;
        }
        let fingerprint = match Fingerprint::compute(&file, size) {
            Ok(f) => f,
            Err(e) => {
                self.errors
                    .push(format!("cannot read {}: {e}", path.display()));
                return;
            }
        };
        let saved = self.take_saved(key);
        if let (false, Some(p)) = (matched, &saved) {
            if let Err(why) = self.may_adopt(path, &file, size, p) {
                self.record_lost(p, &why);
                return;
            }
            tracing::info!(stream = %self.stream, from = %p.path, to = %path.display(), "found a file renamed while the agent was stopped; finishing it");
        }
        let Some(start) = self.decide_start(&file, key, size, path, saved) else {
            return;
        };
        let state = FileState {
            path: path.to_string_lossy().into_owned(),
            key,
            fingerprint,
            offset: start.offset,
            tail: start.tail,
            mid_unit: start.mid_unit,
        };
        if self
            .out
            .send(SourceEvent::Track(self.stream.clone(), state.clone()))
            .is_err()
        {
            return;
        }
        self.tracked.push(Tracked {
            state,
            file,
            size,
            matched,
            last_change: Instant::now(),
            partial_since: None,
            mtime: meta.mtime.0,
            fresh: start.fresh,
            verified: None,
        });
    }

    /// Where to start reading a file not followed yet: a saved offset
    /// (validated), the unread tail of a copy of a followed file, or the
    /// beginning. `None` defers the decision to a later scan.
    fn decide_start(
        &mut self,
        file: &File,
        key: FileKey,
        size: u64,
        path: &Path,
        saved: Option<FileState>,
    ) -> Option<Start> {
        // 1. The checkpoint knows this device/inode.
        if let Some(p) = saved {
            let long_enough = size >= p.offset;
            let head_same = p.fingerprint.matches(file).unwrap_or(false);
            let tail_same = p
                .tail
                .is_none_or(|t| t.holds(file, p.offset).unwrap_or(false));
            if long_enough && head_same && tail_same {
                return Some(Start {
                    offset: p.offset,
                    tail: p.tail,
                    mid_unit: p.mid_unit,
                    fresh: false,
                });
            }
            tracing::info!(
                stream = %self.stream,
                path = %path.display(),
                saved_offset = p.offset,
                size,
                head_same,
                tail_same,
                "inode reused, truncated or rewritten since the checkpoint: reading it from the start"
            );
            let _ = self.out.send(SourceEvent::Forget(self.stream.clone(), key));
            self.superseded.push(p);
        }
        // 2. A copy of a followed file (copytruncate), recognised by content.
        match self.match_copy(file, key, size) {
            CopyMatch::Copy {
                offset,
                tail,
                mid_unit,
                original,
            } => {
                self.deferred.remove(&key);
                self.copied_from.insert(original);
                // The copy's offset is where reading of the original got
                // to, which may be in the open segment: make that durable
                // first, so the checkpoint never holds the copy's offset
                // without the bytes before it.
                if self.open.as_ref().is_some_and(|o| o.key == original) {
                    self.seal_open().ok()?;
                }
                tracing::info!(stream = %self.stream, path = %path.display(), offset, "recognised a copy of a followed file: reading only its unread tail");
                return Some(Start {
                    offset,
                    tail,
                    mid_unit,
                    fresh: false,
                });
            }
            CopyMatch::Undecided => {
                let first = *self.deferred.entry(key).or_insert_with(Instant::now);
                if first.elapsed() < self.settings.poll_interval * 2 {
                    return None;
                }
                tracing::info!(stream = %self.stream, path = %path.display(), "a file begins like a followed one, but the original is intact: treating it as a new file");
            }
            CopyMatch::NotACopy => {}
        }
        self.deferred.remove(&key);
        // 3. A new file.
        if self.settings.first_start && self.settings.start_at == StartAt::End {
            let tail = if size > 0 {
                read_exact_at(
                    file,
                    size - size.min(crate::fingerprint::TAIL_WINDOW),
                    size.min(crate::fingerprint::TAIL_WINDOW),
                )
                .ok()
                .flatten()
                .map(|b| TailCheck::of_bytes_before(&b))
            } else {
                None
            };
            return Some(Start {
                offset: size,
                tail,
                mid_unit: false,
                fresh: false,
            });
        }
        Some(Start {
            offset: 0,
            tail: None,
            mid_unit: false,
            fresh: true,
        })
    }

    /// Whether `file` (device/inode `key`, `size` bytes now) is a copy of a
    /// file followed now, known from the checkpoint, or recently found
    /// truncated: same first bytes, and the same bytes before the offset
    /// read from the original.
    fn match_copy(&self, file: &File, key: FileKey, size: u64) -> CopyMatch {
        let mut found = CopyMatch::NotACopy;
        let known = self
            .tracked
            .iter()
            .map(|t| (&t.state, Some(t)))
            .chain(self.persisted.iter().map(|p| (p, None)))
            .chain(self.superseded.iter().map(|p| (p, None)))
            .chain(self.truncated.iter().map(|(p, _)| (p, None)));
        for (st, tracked) in known {
            if st.key == key || st.offset == 0 || st.fingerprint.len == 0 {
                continue;
            }
            if !st.fingerprint.matches(file).unwrap_or(false) {
                continue;
            }
            if size < st.offset {
                // Same beginning but shorter: a copy still being written.
                found = CopyMatch::Undecided;
                continue;
            }
            if !st
                .tail
                .is_none_or(|t| t.holds(file, st.offset).unwrap_or(false))
            {
                continue;
            }
            let intact = match tracked {
                Some(t) => {
                    let now = t.file.metadata().map(|m| m.len()).unwrap_or(0);
                    now >= st.offset
                        && st
                            .tail
                            .is_none_or(|tc| tc.holds(&t.file, st.offset).unwrap_or(false))
                }
                None => false,
            };
            if intact {
                found = CopyMatch::Undecided;
                continue;
            }
            return CopyMatch::Copy {
                offset: st.offset,
                tail: st.tail,
                mid_unit: st.mid_unit,
                original: st.key,
            };
        }
        found
    }

    /// Before the first read of a file taken as new: whether it turned out
    /// to be a copy (it was found while still being created). `false`
    /// means: do not read it yet.
    fn settle_fresh(&mut self, i: usize) -> bool {
        let t = &self.tracked[i];
        let (key, size) = (t.state.key, t.size);
        match self.match_copy(&t.file, key, size) {
            CopyMatch::Copy {
                offset,
                tail,
                mid_unit,
                original,
            } => {
                self.deferred.remove(&key);
                // As in `decide_start`: the bytes before the offset first.
                if self.open.as_ref().is_some_and(|o| o.key == original)
                    && self.seal_open().is_err()
                {
                    return false;
                }
                let t = &mut self.tracked[i];
                tracing::info!(stream = %self.stream, path = %t.state.path, offset, original = ?original, "a new file turned out to be a copy of a followed file: reading only its unread tail");
                t.state.offset = offset;
                t.state.tail = tail;
                t.state.mid_unit = mid_unit;
                t.fresh = false;
                let _ = self
                    .out
                    .send(SourceEvent::Track(self.stream.clone(), t.state.clone()));
                true
            }
            CopyMatch::Undecided => {
                let first = *self.deferred.entry(key).or_insert_with(Instant::now);
                if first.elapsed() < self.settings.poll_interval * 2 {
                    return false;
                }
                self.deferred.remove(&key);
                self.tracked[i].fresh = false;
                true
            }
            CopyMatch::NotACopy => {
                self.tracked[i].fresh = false;
                true
            }
        }
    }

    /// After a restart: files from the checkpoint that the glob no longer
    /// finds were renamed away while the agent was down, or deleted; look
    /// for them by device/inode beside their old path and finish them if
    /// what is found there is still the same file (`may_adopt`); else they
    /// are gone, and so is what was written to them after the saved offset.
    fn find_persisted_elsewhere(&mut self) {
        // Originals truncated while the agent was stopped whose copy the glob
        // did not match: look for the copy beside them.
        for old in std::mem::take(&mut self.superseded) {
            let copied = self.copied_from.contains(&old.key) || self.follow_copy_beside(&old);
            // Its inode now holds other content under another name, and its
            // own name is gone or another file: the inode was reused (the
            // saved entry is already forgotten; this only says so).
            let moved = platform::stat_path(Path::new(&old.path))
                .map(|m| m.key != old.key)
                .unwrap_or(true);
            if !copied && moved && old.offset > 0 {
                tracing::warn!(stream = %self.stream, path = %old.path, offset = old.offset, "a followed file disappeared while the agent was stopped (its inode now holds a new file, read from its start); anything written to it after offset {} could not be read", old.offset);
            }
        }
        self.copied_from.clear();
        if self.persisted.is_empty() {
            self.settings.first_start = false;
            return;
        }
        let lost = std::mem::take(&mut self.persisted);
        let mut still_lost = Vec::new();
        for p in lost {
            match find_beside(Path::new(&p.path), p.key) {
                Some((path, meta)) => {
                    // Adopted only if it is still the same file (checked
                    // once it is open: `consider_candidate`, `may_adopt`);
                    // unreadable, it waits with its saved offset.
                    let key = p.key;
                    self.persisted.push(p);
                    self.consider_candidate(&path, &meta, false);
                    if let Some(i) = self.persisted.iter().position(|q| q.key == key) {
                        // Neither followed, refused nor unreadable: it went
                        // away between the listing and the open.
                        still_lost.push(self.persisted.remove(i));
                    }
                }
                None => still_lost.push(p),
            }
        }
        for p in still_lost {
            self.record_lost(&p, "not found beside its old name");
        }
        self.persisted.clear();
        self.settings.first_start = false;
    }

    /// Stat followed files through their open handles: growth, truncation,
    /// in-place rewrites and deletion.
    fn check_followed(&mut self) {
        let mut truncated = Vec::new();
        for (i, t) in self.tracked.iter_mut().enumerate() {
            let Ok(meta) = platform::stat_file(&t.file) else {
                continue;
            };
            if meta.links == 0 {
                t.matched = false;
            }
            let size = meta.len;
            if size != t.size || meta.mtime.0 != t.mtime {
                t.last_change = Instant::now();
                t.mtime = meta.mtime.0;
            }
            t.size = size;
            let seen = (size, meta.ctime.0, meta.ctime.1, t.state.offset);
            let rewritten = size < t.state.offset
                || (t.verified != Some(seen)
                    && t.state
                        .tail
                        .is_some_and(|tc| !tc.holds(&t.file, t.state.offset).unwrap_or(true)));
            t.verified = (!rewritten).then_some(seen);
            if rewritten {
                truncated.push(i);
            } else if t.state.fingerprint.len < FINGERPRINT_WINDOW && size > t.state.fingerprint.len
            {
                if let Ok(fp) = Fingerprint::compute(&t.file, size) {
                    t.state.fingerprint = fp;
                }
            }
        }
        for i in truncated {
            self.handle_truncation(i);
        }
    }

    /// The file was truncated (copytruncate) or rewritten. Before starting it
    /// again from 0, look beside it for the rotated copy that holds what was
    /// not read yet (when the glob does not match the copy).
    fn handle_truncation(&mut self, i: usize) {
        let old = self.tracked[i].state.clone();
        if old.offset > 0 {
            self.truncated
                .retain(|(_, at)| at.elapsed() < TRUNCATED_MEMORY);
            self.truncated.push((old.clone(), Instant::now()));
        }
        if self.open.as_ref().is_some_and(|o| o.key == old.key) {
            let _ = self.seal_open();
        }
        self.follow_copy_beside(&old);
        let t = &mut self.tracked[i];
        tracing::info!(stream = %self.stream, path = %t.state.path, was = old.offset, now = t.size, "file truncated or rewritten: reading it again from the start");
        t.state.offset = 0;
        t.state.tail = None;
        t.state.mid_unit = false;
        t.partial_since = None;
        if let Ok(fp) = Fingerprint::compute(&t.file, t.size) {
            t.state.fingerprint = fp;
        }
        let _ = self
            .out
            .send(SourceEvent::Track(self.stream.clone(), t.state.clone()));
    }

    /// Looks beside a truncated file for its rotated copy (a file that is
    /// not followed, begins with the same bytes and holds the same bytes
    /// before the saved offset) and follows it from that offset, so what was
    /// written between the last read and the truncation is not lost.
    fn follow_copy_beside(&mut self, old: &FileState) -> bool {
        if old.offset == 0 || old.fingerprint.len == 0 {
            return false;
        }
        let dir = Path::new(&old.path)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/"));
        let followed: HashSet<FileKey> = self.tracked.iter().map(|t| t.state.key).collect();
        if let Ok(rd) = fs::read_dir(&dir) {
            let mut siblings: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            siblings.sort();
            for path in siblings {
                let Ok(meta) = platform::stat_path(&path) else {
                    continue;
                };
                let key = meta.key;
                if !meta.is_file
                    || followed.contains(&key)
                    || self.ignored.contains(&key)
                    || meta.len < old.offset
                {
                    continue;
                }
                let Ok(f) = platform::open_log(&path) else {
                    continue;
                };
                let same = old.fingerprint.matches(&f).unwrap_or(false)
                    && old
                        .tail
                        .is_none_or(|t| t.holds(&f, old.offset).unwrap_or(false));
                if same {
                    tracing::info!(stream = %self.stream, original = %old.path, copy = %path.display(), offset = old.offset, "truncated; reading the unread tail from its rotated copy");
                    let state = FileState {
                        path: path.to_string_lossy().into_owned(),
                        key,
                        ..old.clone()
                    };
                    if self
                        .out
                        .send(SourceEvent::Track(self.stream.clone(), state.clone()))
                        .is_err()
                    {
                        return false;
                    }
                    self.tracked.push(Tracked {
                        state,
                        file: f,
                        size: meta.len,
                        matched: false,
                        last_change: Instant::now(),
                        partial_since: None,
                        mtime: meta.mtime.0,
                        fresh: false,
                        verified: None,
                    });
                    return true;
                }
            }
        }
        false
    }

    fn drop_finished(&mut self) {
        let wait = self.settings.partial_line_wait;
        let mut keep = Vec::with_capacity(self.tracked.len());
        for t in std::mem::take(&mut self.tracked) {
            let done = !t.matched
                && t.state.offset >= t.size
                && t.last_change.elapsed() >= wait
                && self.open.as_ref().is_none_or(|o| o.key != t.state.key);
            if done {
                tracing::debug!(stream = %self.stream, path = %t.state.path, "finished a rotated or deleted file");
                let _ = self
                    .out
                    .send(SourceEvent::Forget(self.stream.clone(), t.state.key));
            } else {
                keep.push(t);
            }
        }
        self.tracked = keep;
    }

    // ---- reading ----------------------------------------------------------

    /// Reads every followed file up to its current end, oldest first.
    fn read_all(&mut self) -> Result<(), Closed> {
        let mut order: Vec<usize> = (0..self.tracked.len()).collect();
        order.sort_by_key(|&i| (self.tracked[i].matched, self.tracked[i].mtime));
        for i in order {
            if let Ok(meta) = self.tracked[i].file.metadata() {
                let t = &mut self.tracked[i];
                if meta.len() != t.size {
                    t.last_change = Instant::now();
                }
                if meta.len() < t.state.offset {
                    continue; // truncation: handled by the next scan
                }
                t.size = meta.len();
            }
            self.read_file(i)?;
        }
        // Caught up: the read buffers of catch-up are not needed until the
        // next backlog, and a steady agent should stay small.
        if self.tracked.iter().all(|t| t.state.offset >= t.size) {
            if self.scratch.capacity() > 1 << 20 {
                self.scratch = Vec::new();
            }
            if self.spare.capacity() > 1 << 20 {
                self.spare = Vec::new();
            }
        }
        Ok(())
    }

    fn read_file(&mut self, i: usize) -> Result<(), Closed> {
        let max = self.settings.segment_max_bytes;
        let framing = self.cfg.framing;
        loop {
            let stopped = self.stop.load(Ordering::SeqCst)
                && self.final_pass_until.is_none_or(|d| Instant::now() >= d);
            if stopped || self.paused.load(Ordering::SeqCst) {
                return Ok(());
            }
            let t = &self.tracked[i];
            let avail = t.size.saturating_sub(t.state.offset);
            if avail == 0 {
                self.tracked[i].partial_since = None;
                return Ok(());
            }
            if self.tracked[i].fresh && !self.settle_fresh(i) {
                return Ok(());
            }
            let t = &self.tracked[i];
            let avail = t.size.saturating_sub(t.state.offset);
            if avail == 0 {
                return Ok(());
            }
            if self.open.as_ref().is_some_and(|o| o.key != t.state.key) {
                self.seal_open()?;
            }
            let used = self.open.as_ref().map_or(0, |o| o.buf.len());
            let room = max - used;
            let want = avail.min(room as u64) as usize;
            let t = &self.tracked[i];
            // One read buffer per source, kept between reads (catch-up reads
            // whole segments) and shrunk again when reads become small.
            let mut chunk = std::mem::take(&mut self.scratch);
            if avail < 64 * 1024 && chunk.capacity() > 1 << 20 {
                chunk = Vec::new();
            }
            chunk.resize(want, 0);
            let n = match platform::read_at_most(&t.file, t.state.offset, &mut chunk) {
                Ok(n) => n,
                Err(e) => {
                    let msg = format!("reading {} at offset {}: {e}", t.state.path, t.state.offset);
                    tracing::warn!(stream = %self.stream, "{msg}");
                    self.errors.push(msg);
                    return Ok(());
                }
            };
            chunk.truncate(n);
            if n == 0 {
                self.scratch = chunk;
                return Ok(());
            }
            // Checked after the read: if the file was truncated and written
            // past our offset since the last look (copytruncate between two
            // reads), what was just read is the new content, not the
            // continuation. Drop it and start the file again; the old
            // content's rest is in the copy.
            let t = &self.tracked[i];
            if t.state
                .tail
                .is_some_and(|tc| !tc.holds(&t.file, t.state.offset).unwrap_or(true))
            {
                self.scratch = chunk;
                self.handle_truncation(i);
                continue;
            }
            let t = &self.tracked[i];
            let full = n == room;
            let mut cut = match framing {
                SourceFraming::Lines => memchr::memrchr(b'\n', &chunk).map_or(0, |p| p + 1),
                SourceFraming::Records { size } => {
                    let size = size as u64;
                    let pos = t.state.offset;
                    // Align to record boundaries relative to the file start.
                    let first = (size - pos % size) % size;
                    if (n as u64) < first {
                        0
                    } else {
                        (first + (n as u64 - first) / size * size) as usize
                    }
                }
            };
            if cut == 0 && full && used == 0 {
                // One unit longer than a whole segment: split it.
                cut = n;
            } else if cut == 0 && full {
                // The segment is full of complete units; seal and go on.
                self.scratch = chunk;
                self.seal_open()?;
                continue;
            } else if cut == 0 {
                let t = &mut self.tracked[i];
                let since = match t.partial_since {
                    Some((off, since)) if off == t.state.offset => since,
                    _ => {
                        t.partial_since = Some((t.state.offset, Instant::now()));
                        Instant::now()
                    }
                };
                let finished =
                    !t.matched && t.last_change.elapsed() >= self.settings.partial_line_wait;
                // A partial line is shipped after the wait (a writer may never
                // end it); a partial binary record only when its file is
                // finished, since a record is never split while it may grow.
                let waited = since.elapsed() >= self.settings.partial_line_wait
                    && matches!(framing, SourceFraming::Lines);
                if waited || finished {
                    cut = n;
                } else {
                    self.scratch = chunk;
                    return Ok(());
                }
            }
            self.scratch = self.append(i, chunk, cut);
            if self.open.as_ref().is_some_and(|o| o.buf.len() >= max) {
                self.seal_open()?;
            }
            if cut < n && !full {
                // The rest is an incomplete unit: wait for it.
                let t = &mut self.tracked[i];
                t.partial_since = Some((t.state.offset, Instant::now()));
                return Ok(());
            }
        }
    }

    /// Adds `chunk[..cut]` to the open segment (opening one if needed) and
    /// returns the buffer to read into next. A chunk that starts a segment
    /// becomes the segment's buffer instead of being copied, and the buffer
    /// of the last sealed segment is read into next: in catch-up each byte
    /// is copied once, from the page cache, into memory already mapped.
    fn append(&mut self, i: usize, mut chunk: Vec<u8>, cut: usize) -> Vec<u8> {
        let t = &mut self.tracked[i];
        let now = custody_evidence::timefmt::now_utc_micros();
        let (open, next_scratch) = match self.open.take() {
            Some(mut open) => {
                open.buf.extend_from_slice(&chunk[..cut]);
                (open, chunk)
            }
            None => {
                chunk.truncate(cut);
                let open = OpenSegment {
                    key: t.state.key,
                    path: t.state.path.clone(),
                    fingerprint: t.state.fingerprint,
                    start: t.state.offset,
                    buf: chunk,
                    starts_mid: t.state.mid_unit,
                    first_read: now,
                    opened: Instant::now(),
                    last_read: now,
                };
                (open, std::mem::take(&mut self.spare))
            }
        };
        let open = self.open.insert(open);
        open.last_read = now;
        open.path = t.state.path.clone();
        open.fingerprint = t.state.fingerprint;
        t.state.offset += cut as u64;
        t.state.mid_unit = match self.cfg.framing {
            SourceFraming::Lines => open.buf.last() != Some(&b'\n'),
            SourceFraming::Records { size } => !t.state.offset.is_multiple_of(size as u64),
        };
        t.partial_since = None;
        // Keep the fingerprint as long as the file allows (up to the window):
        // copies are recognised by it, so it must cover what was read. When
        // the segment holds the file's first bytes, take it from exactly
        // those bytes: the file may have been truncated and rewritten
        // between being found and being read (copytruncate), and a
        // fingerprint of other content would hide the copy of this one.
        if open.start == 0 {
            let fp = Fingerprint::of_prefix(&open.buf);
            if fp != t.state.fingerprint {
                t.state.fingerprint = fp;
                open.fingerprint = fp;
            }
        } else if t.state.fingerprint.len < FINGERPRINT_WINDOW
            && t.state.offset > t.state.fingerprint.len
        {
            if let Ok(fp) = Fingerprint::compute(&t.file, t.state.offset) {
                t.state.fingerprint = fp;
                open.fingerprint = fp;
            }
        }
        let tail_src = &open.buf[open
            .buf
            .len()
            .saturating_sub(crate::fingerprint::TAIL_WINDOW as usize)..];
        t.state.tail = Some(TailCheck::of_bytes_before(tail_src));
        next_scratch
    }

    /// Hashes and compresses the open segment and hands it to the committer.
    fn seal_open(&mut self) -> Result<(), Closed> {
        let Some(open) = self.open.take() else {
            return Ok(());
        };
        let Some(t) = self.tracked.iter().find(|t| t.state.key == open.key) else {
            return Ok(()); // cannot happen: a file is dropped only with no open segment
        };
        let end = open.start + open.buf.len() as u64;
        let ends_mid = match self.cfg.framing {
            SourceFraming::Lines => open.buf.last() != Some(&b'\n'),
            SourceFraming::Records { size } => !end.is_multiple_of(size as u64),
        };
        let file_after = FileState {
            path: open.path.clone(),
            key: open.key,
            fingerprint: t.state.fingerprint,
            offset: end,
            tail: Some(TailCheck::of_bytes_before(&open.buf)),
            mid_unit: ends_mid,
        };
        let sealed = self.sealer.seal(&open.buf);
        let seg = SealedSegment {
            stream: self.stream.clone(),
            category: self.cfg.category,
            seq: self.next_seq,
            framing: self.framing(),
            source: SourceFile {
                path: open.path,
                device: open.key.device,
                inode: open.key.inode,
                fingerprint: open.fingerprint.hash,
                fingerprint_len: open.fingerprint.len as u32,
            }
            .into(),
            range: ByteRange {
                start: open.start,
                end,
            },
            split: Split {
                starts_mid_unit: open.starts_mid,
                ends_mid_unit: ends_mid,
            },
            first_read: open.first_read,
            last_read: open.last_read,
            raw_len: open.buf.len() as u64,
            raw_sha256: sealed.raw_sha256,
            object: sealed.object,
            object_sha256: sealed.object_sha256,
            after: StateAfter::File(file_after),
        };
        // Keep a full segment's buffer to read into next (catch-up); let
        // any other go (sealed by age: the source has caught up), so a
        // quiet source holds no large buffers.
        let mut buf = open.buf;
        if buf.len() >= self.settings.segment_max_bytes / 2 {
            buf.clear();
            self.spare = buf;
        }
        self.next_seq += 1;
        self.out
            .send(SourceEvent::Segment(Box::new(seg)))
            .map_err(|_| Closed)
    }
}

/// The regular file with device/inode `key` in the directory of `path`
/// (where a rotation renames files to), if there is one.
fn find_beside(path: &Path, key: FileKey) -> Option<(PathBuf, Stat)> {
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    names.sort();
    names.into_iter().find_map(|p| {
        platform::stat_path(&p)
            .ok()
            .filter(|m| m.is_file && m.key == key)
            .map(|m| (p, m))
    })
}

/// The committer has gone away (fatal error or shutdown).
#[derive(Debug)]
pub struct Closed;

/// Regressions for races between logrotate's copytruncate and the reader,
/// replayed step by step (scan, write, read) so they happen every time; the
/// rotation matrix in `tests/` found them only now and then.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceFraming, StartAt};
    use std::sync::mpsc::{sync_channel, Receiver};

    struct Harness {
        dir: tempfile::TempDir,
        source: Source,
        events: Receiver<SourceEvent>,
    }

    fn harness() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = sync_channel(1024);
        let board = Arc::new(Board::new(dir.path(), Default::default()));
        let cfg = SourceConfig {
            name: "app".into(),
            category: custody_evidence::Category::App,
            paths: vec![format!("{}/app.log*", dir.path().display())],
            framing: SourceFraming::Lines,
            journal: None,
            eventlog: None,
            webroot: None,
        };
        let settings = SourceSettings {
            segment_max_bytes: 1 << 20,
            segment_max_age: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(5),
            partial_line_wait: Duration::from_secs(5),
            start_at: StartAt::Beginning,
            first_start: true,
            foreign_globs: Vec::new(),
        };
        let source = Source::new(
            cfg,
            StreamId::new("app.app").unwrap(),
            settings,
            0,
            Vec::new(),
            Sealer::new(3).unwrap(),
            tx,
            board,
            Arc::new(Wake::default()),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        Harness {
            dir,
            source,
            events: rx,
        }
    }

    impl Harness {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
        fn write(&self, name: &str, bytes: &[u8]) {
            fs::write(self.path(name), bytes).unwrap();
        }
        fn append(&self, name: &str, bytes: &[u8]) {
            use std::io::Write;
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(self.path(name))
                .unwrap();
            f.write_all(bytes).unwrap();
        }
        fn truncate(&self, name: &str) {
            fs::OpenOptions::new()
                .write(true)
                .open(self.path(name))
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        /// One turn of the source loop, then every open segment sealed.
        fn turn(&mut self) {
            self.source.scan();
            self.source.read_all().unwrap();
        }
        fn flush(&mut self) -> Vec<SourceEvent> {
            self.source.seal_open().unwrap();
            self.events.try_iter().collect()
        }
        /// Every byte shipped, in order, as text.
        fn shipped(events: &[SourceEvent]) -> String {
            let mut out = String::new();
            for e in events {
                if let SourceEvent::Segment(s) = e {
                    let raw = zstd::bulk::decompress(&s.object, 1 << 24).unwrap();
                    out.push_str(&String::from_utf8(raw).unwrap());
                }
            }
            out
        }
    }

    fn lines(tag: &str, n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("same text on every line of every generation {tag}:{i:04}\n"))
            .collect::<String>()
            .into_bytes()
    }

    fn count(haystack: &str, line: &str) -> usize {
        haystack.matches(line).count()
    }

    #[test]
    fn a_copy_found_while_still_empty_is_not_read_again() {
        let mut h = harness();
        h.write("app.log", &lines("g0", 100));
        h.turn();
        // logrotate creates the copy, the scan sees it empty...
        h.write("app.log.1", b"");
        h.turn();
        // ...then fills it and truncates the original, which gets new lines.
        h.write("app.log.1", &lines("g0", 100));
        h.truncate("app.log");
        h.append("app.log", &lines("g1", 10));
        h.turn();
        h.turn();
        let all = Harness::shipped(&h.flush());
        assert_eq!(count(&all, "g0:0000\n"), 1, "{all}");
        assert_eq!(count(&all, "g0:0099\n"), 1);
        assert_eq!(count(&all, "g1:0009\n"), 1);
    }

    #[test]
    fn a_rewrite_past_the_offset_between_reads_is_not_taken_as_more_lines() {
        let mut h = harness();
        h.write("app.log", &lines("g0", 50));
        h.turn();
        // copytruncate, and the writer goes past the old offset before the
        // next read; no scan in between.
        h.write("app.log.1", &lines("g0", 60));
        h.truncate("app.log");
        h.append("app.log", &lines("g1", 80));
        h.source.read_all().unwrap();
        h.turn();
        let all = Harness::shipped(&h.flush());
        for line in [
            "g0:0000\n",
            "g0:0049\n",
            "g0:0059\n",
            "g1:0000\n",
            "g1:0079\n",
        ] {
            assert_eq!(count(&all, line), 1, "{line:?} in\n{all}");
        }
    }

    #[test]
    fn a_file_rewritten_between_found_and_read_is_fingerprinted_by_what_was_read() {
        let mut h = harness();
        h.write("app.log", &lines("g0", 40));
        h.source.scan(); // found, not read yet
        h.write("app.log.1", &lines("g0", 40));
        h.truncate("app.log");
        h.append("app.log", &lines("g1", 30));
        h.turn(); // reads g1 from the live file, and all of the g0 copy
                  // The next copytruncate: the copy of g1 must be known by g1's bytes.
        h.append("app.log", &lines("g1b", 5));
        h.turn();
        fs::rename(h.path("app.log.1"), h.path("app.log.2")).unwrap();
        let mut live = lines("g1", 30);
        live.extend(lines("g1b", 5));
        live.extend(lines("g1c", 5));
        h.write("app.log.1", &live);
        h.truncate("app.log");
        h.turn();
        h.turn();
        let all = Harness::shipped(&h.flush());
        for line in [
            "g0:0000\n",
            "g1:0000\n",
            "g1:0029\n",
            "g1b:0004\n",
            "g1c:0004\n",
        ] {
            assert_eq!(count(&all, line), 1, "{line:?} in\n{all}");
        }
    }

    #[test]
    fn the_bytes_before_a_copys_offset_are_sent_before_the_copy_is_tracked() {
        let mut h = harness();
        h.write("app.log", &lines("g0", 20));
        h.turn(); // g0:0..20 sits in the open segment
        h.write("app.log.1", &lines("g0", 25));
        h.truncate("app.log");
        h.turn();
        let events = h.flush();
        let copy = h.path("app.log.1").to_string_lossy().into_owned();
        let tracked_at = events
            .iter()
            .position(|e| matches!(e, SourceEvent::Track(_, st) if st.path == copy))
            .expect("the copy is followed");
        let sealed_at = events
            .iter()
            .position(|e| matches!(e, SourceEvent::Segment(s) if s.range.start == 0 && s.source.as_file().is_some_and(|f| f.path.ends_with("app.log"))))
            .expect("the original's bytes are shipped");
        assert!(
            sealed_at < tracked_at,
            "segment at {sealed_at}, copy tracked at {tracked_at}"
        );
        let all = Harness::shipped(&events);
        assert_eq!(count(&all, "g0:0019\n"), 1);
        assert_eq!(count(&all, "g0:0024\n"), 1);
    }
}
