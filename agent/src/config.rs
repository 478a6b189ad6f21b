//! Configuration: TOML (or command-line flags) → a raw struct → one checked
//! [`Config`]. Only the raw → checked conversion can fail, and its errors
//! name the key or flag and say what would be valid.
//!
//! CONTRACT: the checked types below are fixed (the pipeline uses them);
//! the raw structs, parsing, defaults and validation are the config
//! implementer's.

use std::path::PathBuf;
use std::time::Duration;

use custody_evidence::retention::RetentionPolicy;
use custody_evidence::{Category, HostId};

/// Where shipped objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A directory: the filesystem store, the embedded default.
    Filesystem(PathBuf),
}

/// How a source's bytes are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFraming {
    Lines,
    /// Fixed-size binary records (utmp: 384 bytes).
    Records { size: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Read a file seen for the first time from its first byte.
    Beginning,
    /// Start a file seen for the first time at its current end (only for
    /// files present at the agent's first start; later files from the start).
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Unique among sources; part of the stream id, so keep it stable.
    pub name: String,
    pub category: Category,
    /// Glob patterns (absolute). Rotated names (`auth.log.1`) may be
    /// included; compressed files (`.gz`, `.zst`, `.xz`, `.bz2`, by content) are never read.
    pub paths: Vec<String>,
    pub framing: SourceFraming,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host_id: HostId,
    pub state_dir: PathBuf,
    pub store: StoreTarget,
    pub retention: RetentionPolicy,
    pub sources: Vec<SourceConfig>,
    /// Close a segment when it reaches this many raw bytes (default 4 MiB).
    pub segment_max_bytes: usize,
    /// Close a segment when its first byte is this old (default 1 s).
    pub segment_max_age: Duration,
    /// Stop reading when the spool holds this many bytes (default 1 GiB).
    pub spool_max_bytes: u64,
    /// Write a digest this often (default 60 s).
    pub digest_interval: Duration,
    /// Safety-net rescan of every source (default 5 s).
    pub poll_interval: Duration,
    /// How long an unterminated last line is held before it is shipped as a
    /// split unit (default 5 s).
    pub partial_line_wait: Duration,
    pub start_at: StartAt,
    /// zstd level (default 3).
    pub zstd_level: i32,
    /// On shutdown, how long to keep shipping before leaving the rest in the spool (default 10 s).
    pub shutdown_grace: Duration,
}
