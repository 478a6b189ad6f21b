//! The agent's self-report: the running agent rewrites `status.json` in its
//! state directory (atomically) about once a second and on every change of
//! error or back-pressure; `custody-agent status` reads and prints it.
//!
//! CONTRACT: the struct is fixed (the pipeline fills it); printing is the
//! CLI implementer's.

use serde::{Deserialize, Serialize};

pub const STATUS_FORMAT_V1: &str = "custody.agent-status.v1";
pub const STATUS_FILE: &str = "status.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentStatus {
    pub format: String,
    pub host_id: String,
    pub pid: u32,
    pub agent_instance: String,
    /// RFC 3339 UTC.
    pub updated: String,
    /// False once the agent has shut down cleanly.
    pub running: bool,
    pub store: String,
    pub spool: SpoolStatus,
    pub last_ship: Option<String>,
    pub last_ship_error: Option<String>,
    pub last_digest_seq: Option<u64>,
    pub last_digest_at: Option<String>,
    pub sources: Vec<SourceStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpoolStatus {
    pub bytes: u64,
    pub max_bytes: u64,
    pub segments: u64,
    /// Reading is paused because the spool is full (or its disk is).
    pub backpressure: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub category: String,
    pub stream_id: String,
    pub patterns: Vec<String>,
    pub files: Vec<FileStatus>,
    pub last_segment_seq: Option<u64>,
    pub last_segment_at: Option<String>,
    /// Current problems: unreadable file, glob matching nothing, …
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    pub device: u64,
    pub inode: u64,
    /// Bytes committed (in a spooled segment).
    pub offset: u64,
    pub size: u64,
    /// `size - offset`: bytes not yet in a segment.
    pub behind: u64,
}
