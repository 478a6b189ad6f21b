//! The findings report as written (JSON schema `custody-report/findings/v1`,
//! SCHEMA.md): every finding cites the exact bytes it rests on.

use serde::Serialize;

/// Where one line is: enough to re-derive it with `zstd -dc`, `tail -c`,
/// `head -c` and `sha256sum` alone (README.md, "Re-deriving a finding").
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub host: String,
    pub stream: String,
    pub seq: u64,
    /// The payload object's key in the store.
    pub object: String,
    /// SHA-256 of the whole decompressed payload, as its record states.
    pub payload_raw_sha256: String,
    /// Byte offset of the line inside the decompressed payload.
    pub offset: u64,
    /// Length of the line in bytes, its `\n` excluded.
    pub len: u64,
    /// The line, decoded lossily for reading (invalid UTF-8 shows as
    /// U+FFFD); the bytes themselves are offset/len above.
    pub line: String,
    /// SHA-256 of the line's bytes (offset/len), not of `line`.
    pub line_sha256: String,
    /// The payload matched both hashes of its record.
    pub verified: bool,
    /// For a bundle's copy: the bundle (`object` is then the member's
    /// path inside it, `payload_raw_sha256` the copy's SHA-256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
    /// `gzip`, `zstd`, `bzip2` or `xz` when the member is a compressed
    /// copy: `offset`/`len` are in its decompressed bytes (`tar -xOf B M |
    /// gzip -dc | tail -c …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decompress: Option<&'static str>,
}

/// One detection.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The rule's table name in the rules file (`failed_logon_burst`).
    pub rule: String,
    pub severity: String,
    /// The first event's time, UTC RFC 3339.
    pub time: String,
    /// The same in the office-hours zone, the zone named.
    pub time_local: String,
    pub last_time: String,
    pub host: String,
    pub ip: Option<String>,
    pub user: Option<String>,
    pub summary: String,
    /// All of its evidence verified.
    pub verified: bool,
    pub evidence: Vec<Evidence>,
}

/// A row of the abnormal-IP table: every IP some finding names.
#[derive(Debug, Clone, Serialize)]
pub struct AbnormalIp {
    pub ip: String,
    pub internal: bool,
    pub first_seen: String,
    pub last_seen: String,
    pub hosts: Vec<String>,
    /// Events by kind: failed_logon, logon, web_request, web_error.
    pub counts: std::collections::BTreeMap<String, u64>,
    pub rules: Vec<String>,
}

/// A segment whose payload did not verify.
#[derive(Debug, Clone, Serialize)]
pub struct UnverifiedSegment {
    pub host: String,
    pub stream: String,
    pub seq: u64,
    pub object: String,
    /// What did not match: `object_sha256`, `raw_sha256`, `record`, `read`, `decompress`.
    pub check: String,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub message: String,
}

/// Per stream: what was read.
#[derive(Debug, Clone, Serialize, Default)]
pub struct StreamStats {
    pub host: String,
    pub stream: String,
    pub category: String,
    pub segments: u64,
    pub bytes: u64,
    pub lines_read: u64,
    /// Lines no parser understood (not an error: other programs' lines).
    pub lines_unparsed: u64,
    /// Lines over the line limit, not matched (each also has a note).
    pub lines_too_long: u64,
    /// Lines that looked like a known format but did not parse (notes).
    pub lines_malformed: u64,
    /// Lines outside the window (by their own time), not matched.
    pub lines_outside_window: u64,
    /// The first few unparsed lines of the stream (at most
    /// [`UNPARSED_EXAMPLES`]), so that "not parsed" can be checked.
    pub unparsed_examples: Vec<Evidence>,
}

/// How many unparsed lines per stream are cited as examples.
pub const UNPARSED_EXAMPLES: usize = 5;

/// Something the reader should know; `evidence` when it is about a line.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub kind: String,
    pub message: String,
    pub evidence: Option<Evidence>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema: &'static str,
    pub store: String,
    pub from: String,
    pub to: String,
    pub host_tz: String,
    pub office_tz: String,
    pub rules: String,
    pub include_unverified: bool,
    /// How times without year or zone were completed.
    pub time_assumptions: Vec<String>,
    pub segments_read: u64,
    pub findings: Vec<Finding>,
    pub abnormal_ips: Vec<AbnormalIp>,
    pub unverified_segments: Vec<UnverifiedSegment>,
    pub streams: Vec<StreamStats>,
    pub notes: Vec<Note>,
    /// Notes left out after the first of each kind per stream.
    pub notes_omitted: u64,
}

/// The schema name of [`Report`].
pub const SCHEMA: &str = "custody-report/findings/v1";
