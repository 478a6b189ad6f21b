//! A journal source: the systemd journal, read through `journalctl -o
//! export --follow` as a child process, cut into segments at entry
//! boundaries with the exported bytes kept exactly (FORMAT.md §16).
//!
//! The checkpoint keeps the cursor of the last entry wholly in a durable
//! segment (and, for an entry larger than a segment, how many of the next
//! entry's bytes are durable). A restart, of the agent or of journalctl,
//! starts journalctl at that cursor with `--cursor`, checks that the first
//! entry it prints is that very entry, and drops it: so a cursor the journal
//! no longer has (vacuumed, rotated away, another journal) is noticed, never
//! silently replaced by journalctl's nearest guess. Reading then starts again
//! at the oldest entry, and the loss is logged, shown in status.json and
//! recorded in the next segment (`lost_cursor`).

pub mod export;

use std::io::{self, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use custody_evidence::segment::{
    ByteRange, Framing, JournalKind, JournalSource as JournalRecord, Split,
};
use custody_evidence::StreamId;
use time::OffsetDateTime;

use crate::board::Board;
use crate::checkpoint::{JournalState, StateAfter};
use crate::config::{JournalConfig, SourceConfig, StartAt};
use crate::seal::Sealer;
use crate::source::{Closed, SealedSegment, SourceEvent, SourceSettings};
use crate::status::LostCursor;
use crate::wake::Wake;
use export::{EntryEnd, ExportParser};

/// First wait before starting journalctl again after it ended.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest wait between attempts (journalctl missing, journal unreadable).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How often the loop looks at the stop flag while journalctl is quiet.
const TICK: Duration = Duration::from_millis(100);
/// How long a stopping source keeps reading what journalctl already wrote.
const FINAL_PASS: Duration = Duration::from_secs(2);
/// Bytes read from journalctl's output at a time.
const READ_CHUNK: usize = 256 * 1024;

/// What the output reader thread passes on.
enum Chunk {
    Data(Vec<u8>),
    /// Output closed (journalctl ended), or could not be read.
    End(Option<io::Error>),
}

/// A running journalctl.
struct Running {
    child: Child,
    rx: Receiver<Chunk>,
    /// The last lines journalctl wrote to stderr, for the error message.
    stderr: Arc<Mutex<String>>,
}

/// Where the bytes of the current child's output go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The first entry must be this cursor's (already stored): dropped.
    Expect(String),
    /// This many bytes of the next entry are already stored: dropped.
    Skip(u64),
    /// Everything is new.
    Read,
}

/// Entries waiting to be sealed into one segment.
struct Open {
    buf: Vec<u8>,
    first_cursor: String,
    last_cursor: String,
    starts_mid: bool,
    first_read: OffsetDateTime,
    last_read: OffsetDateTime,
    opened: Instant,
}

/// Why the output of journalctl cannot be followed any further.
enum Trouble {
    /// The cursor to resume from is not in the journal.
    LostCursor(String),
    /// The output is not export format, or not the entry expected.
    Broken(String),
}

pub struct JournalReader {
    cfg: SourceConfig,
    journal: JournalConfig,
    describe: String,
    stream: StreamId,
    settings: SourceSettings,
    next_seq: u64,
    /// The state after the last segment handed to the committer.
    sealed: JournalState,
    sealer: Sealer,
    out: SyncSender<SourceEvent>,
    board: Arc<Board>,
    wake: Arc<Wake>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    running: Option<Running>,
    parser: ExportParser,
    phase: Phase,
    open: Option<Open>,
    /// Bytes of the current (incomplete) entry not sealed yet.
    entry: Vec<u8>,
    /// Bytes of the current entry already sealed (pieces of a huge entry).
    entry_sealed: u64,
    /// Cursor of the last complete entry read (in `open` or sealed).
    last_cursor: Option<String>,
    /// A lost cursor not yet recorded in a segment.
    pending_lost: Option<String>,
    lost: Vec<LostCursor>,
    restarts: u64,
    backoff: Duration,
    next_start: Instant,
    /// An entry was read since journalctl was last started.
    progressed: bool,
    errors: Vec<String>,
    last_logged: Option<String>,
}

impl JournalReader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: SourceConfig,
        stream: StreamId,
        settings: SourceSettings,
        next_seq: u64,
        committed: Option<JournalState>,
        sealer: Sealer,
        out: SyncSender<SourceEvent>,
        board: Arc<Board>,
        wake: Arc<Wake>,
        stop: Arc<AtomicBool>,
        paused: Arc<AtomicBool>,
    ) -> Self {
        let journal = cfg.journal.clone().unwrap_or(JournalConfig {
            directory: None,
            files: Vec::new(),
            matches: Vec::new(),
            journalctl: "journalctl".into(),
        });
        let describe = journal.describe();
        let sealed = committed.unwrap_or_default();
        JournalReader {
            cfg,
            journal,
            describe,
            stream,
            settings,
            next_seq,
            last_cursor: sealed.cursor.clone(),
            sealed,
            sealer,
            out,
            board,
            wake,
            stop,
            paused,
            running: None,
            parser: ExportParser::new(),
            phase: Phase::Read,
            open: None,
            entry: Vec::new(),
            entry_sealed: 0,
            pending_lost: None,
            lost: Vec::new(),
            restarts: 0,
            backoff: BACKOFF_MIN,
            next_start: Instant::now(),
            progressed: false,
            errors: Vec::new(),
            last_logged: None,
        }
    }

    /// The source's loop: start journalctl, read, seal; until stopped.
    pub fn run(mut self) {
        if self.run_inner().is_err() {
            self.kill_child();
        }
    }

    fn run_inner(&mut self) -> Result<(), Closed> {
        self.publish_status();
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return self.finish();
            }
            let paused = self.paused.load(Ordering::SeqCst);
            if !paused && self.running.is_none() && Instant::now() >= self.next_start {
                self.start_child();
            }
            let mut wait = TICK;
            if let Some(o) = &self.open {
                wait = wait.min(
                    (o.opened + self.settings.segment_max_age)
                        .saturating_duration_since(Instant::now()),
                );
            }
            match (&self.running, paused) {
                (Some(r), false) => match r.rx.recv_timeout(wait) {
                    Ok(Chunk::Data(data)) => self.take(&data)?,
                    Ok(Chunk::End(err)) => self.child_ended(err)?,
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => self.child_ended(None)?,
                },
                _ => {
                    let until = if self.running.is_none() && !paused {
                        self.next_start.min(Instant::now() + wait)
                    } else {
                        Instant::now() + wait
                    };
                    self.wake
                        .wait_until(until.max(Instant::now() + Duration::from_millis(1)));
                }
            }
            let aged = self
                .open
                .as_ref()
                .is_some_and(|o| o.opened.elapsed() >= self.settings.segment_max_age);
            if aged {
                self.seal_open()?;
            }
            self.publish_status();
        }
    }

    /// Reads what journalctl already wrote (bounded), seals, stops journalctl.
    fn finish(&mut self) -> Result<(), Closed> {
        let until = Instant::now() + FINAL_PASS;
        while let Some(r) = &self.running {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match r.rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(Chunk::Data(data)) => self.take(&data)?,
                Ok(Chunk::End(_)) | Err(_) => break,
            }
        }
        self.seal_open()?;
        self.kill_child();
        self.publish_status();
        let _ = self.out.send(SourceEvent::Done(self.stream.clone()));
        Ok(())
    }

    fn publish_status(&self) {
        self.board
            .set_journal(&self.stream, self.restarts, &self.lost, self.errors.clone());
    }

    // ---- the child ---------------------------------------------------------

    fn start_child(&mut self) {
        let mut cmd = Command::new(&self.journal.journalctl);
        cmd.args(["--no-pager", "--output=export", "--follow"]);
        if let Some(dir) = &self.journal.directory {
            cmd.arg(format!("--directory={}", dir.display()));
        }
        for f in &self.journal.files {
            cmd.arg(format!("--file={f}"));
        }
        self.phase = match &self.sealed.cursor {
            Some(c) => {
                // --no-tail: with --follow, journalctl otherwise stops its
                // catch-up short (it applies the default of 10 lines).
                cmd.args([format!("--cursor={c}").as_str(), "--no-tail"]);
                Phase::Expect(c.clone())
            }
            None => {
                let nothing_yet = self.next_seq == 0 && self.sealed.skip == 0;
                if self.settings.first_start
                    && nothing_yet
                    && self.settings.start_at == StartAt::End
                    && self.pending_lost.is_none()
                {
                    cmd.arg("--lines=0");
                } else {
                    cmd.arg("--no-tail");
                }
                if self.sealed.skip > 0 {
                    Phase::Skip(self.sealed.skip)
                } else {
                    Phase::Read
                }
            }
        };
        cmd.args(&self.journal.matches);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let why = if e.kind() == io::ErrorKind::NotFound {
                    format!(
                        "journalctl program {} not found: install systemd's journalctl (Debian: package systemd) \
                         or set journalctl = \"/path/to/journalctl\" in this source",
                        self.journal.journalctl.display()
                    )
                } else {
                    format!("cannot start {}: {e}", self.journal.journalctl.display())
                };
                self.trouble(format!(
                    "{why}; the other sources keep going; trying again in {} s",
                    self.backoff.as_secs_f64()
                ));
                self.schedule_restart();
                return;
            }
        };
        let (tx, rx) = sync_channel::<Chunk>(8);
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let name = format!("journalctl {}", self.stream);
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || loop {
                let mut buf = vec![0u8; READ_CHUNK];
                match stdout.read(&mut buf) {
                    Ok(0) => {
                        let _ = tx.send(Chunk::End(None));
                        return;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Chunk::Data(buf)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = tx.send(Chunk::End(Some(e)));
                        return;
                    }
                }
            });
        let stderr_tail = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let tail = stderr_tail.clone();
            let stream = self.stream.clone();
            let _ = std::thread::Builder::new()
                .name(format!("{name} stderr"))
                .spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = err.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        tracing::warn!(%stream, "journalctl: {}", text.trim_end());
                        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                        t.push_str(&text);
                        if t.len() > 2048 {
                            let cut = t.len() - 2048;
                            let cut = (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                            t.drain(..cut);
                        }
                    }
                });
        }
        if let Err(e) = spawned {
            let _ = child.kill();
            let _ = child.wait();
            self.trouble(format!("cannot start a reader thread: {e}"));
            self.schedule_restart();
            return;
        }
        tracing::info!(
            stream = %self.stream,
            journal = %self.describe,
            cursor = self.sealed.cursor.as_deref().unwrap_or("(oldest entry)"),
            "journalctl started"
        );
        self.parser = ExportParser::new();
        self.entry.clear();
        self.entry_sealed = 0;
        self.last_cursor = self.sealed.cursor.clone();
        self.progressed = false;
        self.running = Some(Running {
            child,
            rx,
            stderr: stderr_tail,
        });
    }

    fn kill_child(&mut self) -> Option<(std::process::ExitStatus, String)> {
        let mut r = self.running.take()?;
        let _ = r.child.kill();
        let status = r.child.wait().ok();
        let stderr = r
            .stderr
            .lock()
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        status.map(|s| (s, stderr))
    }

    fn schedule_restart(&mut self) {
        self.next_start = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Records a problem: logged (naming the source) once per distinct
    /// text, kept for status.json (under the source).
    fn trouble(&mut self, msg: String) {
        if self.last_logged.as_deref() != Some(msg.as_str()) {
            tracing::error!(stream = %self.stream, "source {}: {msg}", self.cfg.name);
            self.last_logged = Some(msg.clone());
        }
        self.errors = vec![msg];
    }

    /// journalctl's output ended: seal what is whole, start it again later
    /// from the last sealed cursor.
    fn child_ended(&mut self, err: Option<io::Error>) -> Result<(), Closed> {
        let expecting = matches!(self.phase, Phase::Expect(_));
        let (status, stderr) = match self.kill_child() {
            Some((s, e)) => (s.to_string(), e),
            None => ("unknown status".to_string(), String::new()),
        };
        self.seal_open()?;
        // journalctl refuses a cursor it cannot parse before printing anything.
        if expecting && stderr.contains("cursor") {
            let lost = self.sealed.cursor.clone().unwrap_or_default();
            return self.cursor_lost(lost);
        }
        if self.progressed {
            self.backoff = BACKOFF_MIN;
        }
        self.restarts += 1;
        let read_err = err
            .map(|e| format!(", reading its output failed: {e}"))
            .unwrap_or_default();
        let stderr = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        self.trouble(format!(
            "journalctl ended ({status}{read_err}){stderr}; starting it again in {} s from cursor {}",
            self.backoff.as_secs_f64(),
            self.sealed.cursor.as_deref().unwrap_or("(oldest entry)")
        ));
        self.schedule_restart();
        Ok(())
    }

    /// The cursor to resume from is not in the journal: say so everywhere,
    /// and read again from the oldest entry.
    fn cursor_lost(&mut self, cursor: String) -> Result<(), Closed> {
        self.kill_child();
        self.seal_open()?;
        let msg = format!(
            "source {}: cursor {cursor} is no longer in the journal ({}; vacuumed or rotated away?): \
             reading again from the oldest entry. Entries between may be missing and earlier ones stored \
             twice; the next segment records lost_cursor",
            self.cfg.name, self.describe
        );
        tracing::error!(stream = %self.stream, "{msg}");
        self.lost.push(LostCursor {
            cursor: cursor.clone(),
            at: custody_evidence::timefmt::format_utc(OffsetDateTime::now_utc()),
        });
        self.pending_lost = Some(cursor);
        self.sealed.cursor = None;
        self.sealed.skip = 0;
        self.last_cursor = None;
        self.next_start = Instant::now();
        self.publish_status();
        Ok(())
    }

    // ---- bytes -------------------------------------------------------------

    /// Takes one chunk of journalctl's output.
    fn take(&mut self, data: &[u8]) -> Result<(), Closed> {
        let ends = match self.parser.feed(data) {
            Ok(ends) => ends,
            Err(e) => {
                return self.broken(format!("journalctl's output is not export format: {e}"));
            }
        };
        let mut pos = 0;
        for EntryEnd { end, cursor } in ends {
            match self.bytes(&data[pos..end], Some(cursor))? {
                None => {}
                Some(Trouble::LostCursor(c)) => return self.cursor_lost(c),
                Some(Trouble::Broken(why)) => return self.broken(why),
            }
            pos = end;
        }
        if pos < data.len() {
            match self.bytes(&data[pos..], None)? {
                None => {}
                Some(Trouble::LostCursor(c)) => return self.cursor_lost(c),
                Some(Trouble::Broken(why)) => return self.broken(why),
            }
        }
        Ok(())
    }

    /// Output that cannot be followed: keep what is whole, start again.
    fn broken(&mut self, why: String) -> Result<(), Closed> {
        self.kill_child();
        self.seal_open()?;
        self.restarts += 1;
        self.trouble(format!(
            "{why}; starting journalctl again in {} s from cursor {}",
            self.backoff.as_secs_f64(),
            self.sealed.cursor.as_deref().unwrap_or("(oldest entry)")
        ));
        self.schedule_restart();
        Ok(())
    }

    /// Bytes of the current entry; `complete` is `Some(cursor)` when they
    /// end it.
    fn bytes(
        &mut self,
        mut data: &[u8],
        complete: Option<Option<String>>,
    ) -> Result<Option<Trouble>, Closed> {
        match self.phase.clone() {
            Phase::Expect(want) => {
                let Some(cursor) = complete else {
                    return Ok(None); // the stored entry: dropped as it comes
                };
                if cursor.as_deref() != Some(want.as_str()) {
                    return Ok(Some(Trouble::LostCursor(want)));
                }
                self.phase = if self.sealed.skip > 0 {
                    Phase::Skip(self.sealed.skip)
                } else {
                    Phase::Read
                };
                self.progressed = true;
                return Ok(None);
            }
            Phase::Skip(left) => {
                let n = (left as usize).min(data.len());
                data = &data[n..];
                self.entry_sealed += n as u64;
                let left = left - n as u64;
                if left > 0 {
                    if complete.is_some() {
                        return Ok(Some(Trouble::Broken(format!(
                            "the entry after cursor {} is shorter than the {} bytes already stored of it",
                            self.sealed.cursor.as_deref().unwrap_or("(oldest entry)"),
                            self.sealed.skip
                        ))));
                    }
                    self.phase = Phase::Skip(left);
                    return Ok(None);
                }
                self.phase = Phase::Read;
            }
            Phase::Read => {}
        }
        self.entry.extend_from_slice(data);
        let max = self.settings.segment_max_bytes.max(1);
        // An entry larger than a segment is stored in pieces (§2.1).
        while self.entry.len() > max || (complete.is_none() && self.entry.len() == max) {
            let cursor = match &complete {
                Some(c) => c.clone(),
                None => self.parser.current_cursor().map(str::to_string),
            };
            self.seal_piece(max, cursor.unwrap_or_default())?;
        }
        if let Some(cursor) = complete {
            self.progressed = true;
            self.errors.clear();
            self.finish_entry(cursor)?;
        }
        Ok(None)
    }

    /// A whole entry (or the last piece of one) joins the open segment.
    fn finish_entry(&mut self, cursor: Option<String>) -> Result<(), Closed> {
        let max = self.settings.segment_max_bytes.max(1);
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.buf.len() + self.entry.len() > max)
        {
            self.seal_open()?;
        }
        let cursor_text = cursor.clone().unwrap_or_default();
        let now = custody_evidence::timefmt::now_utc_micros();
        let bytes = std::mem::take(&mut self.entry);
        let starts_mid = self.entry_sealed > 0;
        self.entry_sealed = 0;
        match &mut self.open {
            Some(o) => {
                o.buf.extend_from_slice(&bytes);
                o.last_cursor = cursor_text;
                o.last_read = now;
            }
            None => {
                self.open = Some(Open {
                    buf: bytes,
                    first_cursor: cursor_text.clone(),
                    last_cursor: cursor_text,
                    starts_mid,
                    first_read: now,
                    last_read: now,
                    opened: Instant::now(),
                })
            }
        }
        if cursor.is_some() {
            self.last_cursor = cursor;
        }
        if self.open.as_ref().is_some_and(|o| o.buf.len() >= max) {
            self.seal_open()?;
        }
        Ok(())
    }

    /// Seals the first `n` bytes of a huge entry as a piece of its own.
    fn seal_piece(&mut self, n: usize, cursor: String) -> Result<(), Closed> {
        self.seal_open()?;
        let piece: Vec<u8> = self.entry.drain(..n).collect();
        let now = custody_evidence::timefmt::now_utc_micros();
        let starts_mid = self.entry_sealed > 0;
        self.entry_sealed += n as u64;
        let after = JournalState {
            cursor: self.last_cursor.clone(),
            skip: self.entry_sealed,
            offset: self.sealed.offset + n as u64,
        };
        self.send(
            piece,
            cursor.clone(),
            cursor,
            starts_mid,
            true,
            now,
            now,
            after,
        )
    }

    fn seal_open(&mut self) -> Result<(), Closed> {
        let Some(o) = self.open.take() else {
            return Ok(());
        };
        let after = JournalState {
            cursor: self.last_cursor.clone(),
            skip: 0,
            offset: self.sealed.offset + o.buf.len() as u64,
        };
        self.send(
            o.buf,
            o.first_cursor,
            o.last_cursor,
            o.starts_mid,
            false,
            o.first_read,
            o.last_read,
            after,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        raw: Vec<u8>,
        first_cursor: String,
        last_cursor: String,
        starts_mid: bool,
        ends_mid: bool,
        first_read: OffsetDateTime,
        last_read: OffsetDateTime,
        after: JournalState,
    ) -> Result<(), Closed> {
        let sealed = self.sealer.seal(&raw);
        let seg = SealedSegment {
            stream: self.stream.clone(),
            category: self.cfg.category,
            seq: self.next_seq,
            framing: Framing::JournalExport,
            source: JournalRecord {
                kind: JournalKind::Journal,
                journal: self.describe.clone(),
                first_cursor,
                last_cursor,
                lost_cursor: self.pending_lost.take(),
            }
            .into(),
            range: ByteRange {
                start: self.sealed.offset,
                end: after.offset,
            },
            split: Split {
                starts_mid_unit: starts_mid,
                ends_mid_unit: ends_mid,
            },
            first_read,
            last_read,
            raw_len: raw.len() as u64,
            raw_sha256: sealed.raw_sha256,
            object: sealed.object,
            object_sha256: sealed.object_sha256,
            after: StateAfter::Journal {
                journal: after.clone(),
            },
        };
        self.next_seq += 1;
        self.sealed = after;
        self.out
            .send(SourceEvent::Segment(Box::new(seg)))
            .map_err(|_| Closed)
    }
}

/// The reader's cutting and resuming, driven without journalctl: output is
/// fed as journalctl would print it, and a restart is replayed by a second
/// reader given the first one's committed state.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceFraming;
    use std::sync::mpsc::Receiver;

    fn entry(cursor: &str, big: usize) -> Vec<u8> {
        let mut out = format!("__CURSOR={cursor}\nMESSAGE=entry {cursor}\n").into_bytes();
        if big > 0 {
            out.extend_from_slice(b"BIG\n");
            out.extend_from_slice(&(big as u64).to_le_bytes());
            out.extend((0..big).map(|k| if k % 7 == 0 { b'\n' } else { k as u8 }));
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }

    fn reader(
        committed: Option<JournalState>,
        next_seq: u64,
    ) -> (JournalReader, Receiver<SourceEvent>) {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = sync_channel(1024);
        let cfg = SourceConfig {
            name: "journald".into(),
            category: custody_evidence::Category::Os,
            paths: Vec::new(),
            framing: SourceFraming::Lines,
            journal: Some(JournalConfig {
                directory: Some("/j".into()),
                files: Vec::new(),
                matches: Vec::new(),
                journalctl: "journalctl".into(),
            }),
            eventlog: None,
            webroot: None,
        };
        let settings = SourceSettings {
            segment_max_bytes: 100,
            segment_max_age: Duration::from_secs(3600),
            poll_interval: Duration::from_secs(5),
            partial_line_wait: Duration::from_secs(5),
            start_at: StartAt::Beginning,
            first_start: committed.is_none(),
            foreign_globs: Vec::new(),
        };
        let mut r = JournalReader::new(
            cfg,
            StreamId::new("os.journald").unwrap(),
            settings,
            next_seq,
            committed,
            Sealer::new(3).unwrap(),
            tx,
            Arc::new(Board::new(dir.path(), Default::default())),
            Arc::new(Wake::default()),
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        // What start_child sets up, without a child.
        r.phase = match &r.sealed.cursor {
            Some(c) => Phase::Expect(c.clone()),
            None if r.sealed.skip > 0 => Phase::Skip(r.sealed.skip),
            None => Phase::Read,
        };
        r.last_cursor = r.sealed.cursor.clone();
        (r, rx)
    }

    fn segments(rx: &Receiver<SourceEvent>) -> Vec<(SealedSegment, Vec<u8>)> {
        rx.try_iter()
            .filter_map(|e| match e {
                SourceEvent::Segment(s) => {
                    let raw = zstd::bulk::decompress(&s.object, 1 << 20).unwrap();
                    Some((*s, raw))
                }
                _ => None,
            })
            .collect()
    }

    fn state(s: &SealedSegment) -> JournalState {
        match &s.after {
            StateAfter::Journal { journal } => journal.clone(),
            other => panic!("not a journal state from a journal source: {other:?}"),
        }
    }

    #[test]
    fn entries_are_cut_whole_and_a_huge_one_in_pieces_that_resume_exactly() {
        let mut all = Vec::new();
        for (c, big) in [("c1", 0), ("c2", 0), ("c3", 250), ("c4", 0)] {
            all.extend(entry(c, big));
        }
        let (mut r, rx) = reader(None, 0);
        // In odd chunk sizes, as a pipe delivers them.
        for chunk in all.chunks(37) {
            r.take(chunk).unwrap();
        }
        r.seal_open().unwrap();
        let segs = segments(&rx);
        let joined: Vec<u8> = segs.iter().flat_map(|(_, raw)| raw.clone()).collect();
        assert_eq!(joined, all);
        assert!(segs
            .iter()
            .all(|(s, raw)| raw.len() <= 100 && s.raw_len == raw.len() as u64));
        let pieces: Vec<_> = segs.iter().filter(|(s, _)| s.split.ends_mid_unit).collect();
        assert!(pieces.len() >= 2, "the 250-byte field is cut");
        let mut offset = 0;
        for (s, _) in &segs {
            assert_eq!(s.range.start, offset);
            offset = s.range.end;
        }

        // Crash after the first piece of c3: a new reader resumes from
        // that piece's committed state and journalctl prints from c2 on.
        let (cut, _) = pieces[0];
        let st = state(cut);
        assert_eq!(st.cursor.as_deref(), Some("c2"));
        assert!(st.skip > 0);
        let (mut r2, rx2) = reader(Some(st.clone()), cut.seq + 1);
        let from_c2 = &all[entry("c1", 0).len()..];
        for chunk in from_c2.chunks(11) {
            r2.take(chunk).unwrap();
        }
        r2.seal_open().unwrap();
        let segs2 = segments(&rx2);
        assert!(segs2[0].0.split.starts_mid_unit);
        assert_eq!(segs2[0].0.range.start, cut.range.end);
        let mut resumed: Vec<u8> = segs
            .iter()
            .take_while(|(s, _)| s.seq <= cut.seq)
            .flat_map(|(_, raw)| raw.clone())
            .collect();
        resumed.extend(segs2.iter().flat_map(|(_, raw)| raw.clone()));
        assert_eq!(resumed, all, "nothing lost, nothing twice");
        assert_eq!(
            state(&segs2.last().unwrap().0).cursor.as_deref(),
            Some("c4")
        );
    }

    #[test]
    fn a_cursor_not_printed_first_is_lost_and_recorded_in_the_next_segment() {
        let committed = JournalState {
            cursor: Some("gone".into()),
            skip: 0,
            offset: 500,
        };
        let (mut r, rx) = reader(Some(committed), 9);
        r.take(&entry("other", 0)).unwrap();
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.lost[0].cursor, "gone");
        assert_eq!(
            r.sealed.cursor, None,
            "the next start reads from the oldest entry"
        );
        assert!(
            segments(&rx).is_empty(),
            "nothing of the wrong position is kept"
        );
        // journalctl started again from the oldest entry:
        r.phase = Phase::Read;
        r.parser = ExportParser::new();
        r.take(&entry("first", 0)).unwrap();
        r.seal_open().unwrap();
        let segs = segments(&rx);
        let j = segs[0].0.source.as_journal().expect("a journal source");
        assert_eq!(j.lost_cursor.as_deref(), Some("gone"));
        assert_eq!(j.first_cursor, "first");
        assert_eq!(segs[0].0.range.start, 500);
        assert_eq!(segs[0].0.seq, 9);
    }
}
