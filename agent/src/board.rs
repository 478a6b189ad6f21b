//! The shared picture behind `status.json`: every stage writes its part,
//! a small task writes the file about once a second.

use std::path::PathBuf;
use std::sync::Mutex;

use custody_evidence::timefmt::format_utc;
use custody_evidence::StreamId;
use time::OffsetDateTime;

use crate::status::{AgentStatus, FileStatus, SourceStatus, STATUS_FILE};

pub struct Board {
    inner: Mutex<AgentStatus>,
    path: PathBuf,
}

fn now() -> String {
    format_utc(OffsetDateTime::now_utc())
}

impl Board {
    pub fn new(state_dir: &std::path::Path, initial: AgentStatus) -> Self {
        Board {
            inner: Mutex::new(initial),
            path: state_dir.join(STATUS_FILE),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut AgentStatus) -> R) -> R {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut g)
    }

    fn source<R>(&self, stream: &StreamId, f: impl FnOnce(&mut SourceStatus) -> R) -> Option<R> {
        self.with(|s| {
            s.sources
                .iter_mut()
                .find(|x| x.stream_id == stream.as_str())
                .map(f)
        })
    }

    pub fn set_source_files(&self, stream: &StreamId, files: Vec<FileStatus>, errors: Vec<String>) {
        self.source(stream, |s| {
            s.files = files;
            s.errors = errors;
        });
    }

    pub fn segment_committed(&self, stream: &StreamId, seq: u64) {
        self.source(stream, |s| {
            s.last_segment_seq = Some(seq);
            s.last_segment_at = Some(now());
        });
    }

    pub fn spool(&self, bytes: u64, segments: u64, backpressure: bool, error: Option<String>) {
        self.with(|s| {
            s.spool.bytes = bytes;
            s.spool.segments = segments;
            s.spool.backpressure = backpressure;
            s.spool.error = error;
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

    pub fn stopped(&self) {
        self.with(|s| s.running = false);
    }

    /// Writes `status.json` atomically (temp file and rename).
    pub fn write(&self) -> std::io::Result<()> {
        let bytes = self.with(|s| {
            s.updated = now();
            serde_json::to_vec_pretty(s).unwrap_or_default()
        });
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl Board {
    pub fn has_ship_error(&self) -> bool {
        self.with(|s| s.last_ship_error.is_some())
    }
}
