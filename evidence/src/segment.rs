//! The segment record: what the store keeps beside each payload, and the
//! link of the per-stream hash chain (FORMAT.md, "Segments").
//!
//! A record has exactly one encoding ([`SegmentMeta::encode`]): compact JSON
//! with the fields in the order declared here, followed by one `\n`. The
//! chain hash of a segment is the SHA-256 of those stored bytes, never of a
//! re-encoding.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use crate::timefmt::serde_utc;

/// The value of the `format` field of every version-1 segment record.
pub const SEGMENT_FORMAT_V1: &str = "custody.segment.v1";

/// How the source is cut into units that are never split except when a
/// single unit is larger than a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Framing {
    /// Text lines ending in `\n`.
    Lines,
    /// Fixed-size binary records (utmp/wtmp/btmp: 384 bytes on Linux).
    Records { size: u32 },
    /// Syslog messages received by a collector, each stored as an RFC 6587
    /// octet-counted frame `MSG-LEN SP MSG` (see [`crate::octets`]), so the
    /// message boundaries survive without touching the message bytes.
    OctetCounted,
    /// Journal entries as `journalctl -o export` writes them (FORMAT.md §16):
    /// text fields `NAME=value\n`, binary fields `NAME\n` + 64-bit
    /// little-endian length + bytes + `\n`, each entry ended by an empty line.
    JournalExport,
}

/// Which file the bytes came from. Identity is the content fingerprint plus
/// device and inode: paths change on rotation, inodes are reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceFile {
    /// Path at the time of reading (lossy UTF-8 if the name was not UTF-8).
    pub path: String,
    pub device: u64,
    pub inode: u64,
    /// SHA-256 of the first `fingerprint_len` bytes of the file.
    pub fingerprint: Sha256,
    pub fingerprint_len: u32,
}

/// Where a segment's bytes came from: a file an agent read, or a device
/// that sent syslog to a collector.
///
/// Untagged, so a file source is encoded exactly as before this enum
/// existed (`{"path":…}`); a device source starts with `"kind":"syslog"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Source {
    File(SourceFile),
    Syslog(SyslogSource),
    Journal(JournalSource),
    EventLog(EventLogSource),
    Inventory(InventorySource),
}

impl Source {
    /// The file, for a segment an agent read from a file.
    pub fn as_file(&self) -> Option<&SourceFile> {
        match self {
            Source::File(f) => Some(f),
            Source::Syslog(_) | Source::Journal(_) | Source::EventLog(_) | Source::Inventory(_) => {
                None
            }
        }
    }

    /// The web roots, for a segment that is (part of) an inventory of them.
    pub fn as_inventory(&self) -> Option<&InventorySource> {
        match self {
            Source::Inventory(i) => Some(i),
            _ => None,
        }
    }

    /// The channel, for a segment an agent read from the Windows Event Log.
    pub fn as_eventlog(&self) -> Option<&EventLogSource> {
        match self {
            Source::EventLog(e) => Some(e),
            _ => None,
        }
    }

    /// The device, for a segment a collector received as syslog.
    pub fn as_syslog(&self) -> Option<&SyslogSource> {
        match self {
            Source::Syslog(s) => Some(s),
            _ => None,
        }
    }

    /// The journal, for a segment an agent read from the systemd journal.
    pub fn as_journal(&self) -> Option<&JournalSource> {
        match self {
            Source::Journal(j) => Some(j),
            _ => None,
        }
    }
}

impl From<JournalSource> for Source {
    fn from(j: JournalSource) -> Self {
        Source::Journal(j)
    }
}

impl From<SourceFile> for Source {
    fn from(f: SourceFile) -> Self {
        Source::File(f)
    }
}

impl From<SyslogSource> for Source {
    fn from(s: SyslogSource) -> Self {
        Source::Syslog(s)
    }
}

impl From<InventorySource> for Source {
    fn from(i: InventorySource) -> Self {
        Source::Inventory(i)
    }
}

impl From<EventLogSource> for Source {
    fn from(e: EventLogSource) -> Self {
        Source::EventLog(e)
    }
}

/// A Windows Event Log channel an agent subscribed to (FORMAT.md §17).
/// The raw bytes are octet-counted frames (§13.2), one per event, each the
/// event's XML exactly as `EvtRender` returned it: UTF-16LE, without the
/// terminating NUL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogSource {
    /// Always [`EventLogKind::Eventlog`]; tells a reader this is not a file.
    pub kind: EventLogKind,
    /// The channel path (`Security`, `Microsoft-Windows-Sysmon/Operational`).
    pub channel: String,
    /// How each frame's bytes are encoded: always `"utf-16le"`.
    pub encoding: String,
    /// `EventRecordID` of the first and last event in the segment.
    pub first_record_id: u64,
    pub last_record_id: u64,
    /// Set on the first segment after the agent found the channel cleared,
    /// recreated or its bookmark unusable: events may be missing before it.
    pub resumed_after: Option<String>,
}

/// The constant tag of an [`EventLogSource`]: always `"eventlog"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventLogKind {
    #[default]
    Eventlog,
}

/// The constant tag of a [`SyslogSource`]: always `"syslog"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogKind {
    #[default]
    Syslog,
}

/// How a syslog message reached the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    /// RFC 5426: one message per datagram.
    Udp,
    /// RFC 6587: octet-counting or LF-terminated frames.
    Tcp,
    /// RFC 5425: octet-counted frames over TLS.
    Tls,
}

impl SyslogTransport {
    pub fn as_str(&self) -> &'static str {
        match self {
            SyslogTransport::Udp => "udp",
            SyslogTransport::Tcp => "tcp",
            SyslogTransport::Tls => "tls",
        }
    }
}

/// A device that sent syslog to a collector: a firewall, switch or other
/// appliance that cannot run an agent (REQUIREMENTS.md §1, levels A and B).
/// Every message of a segment came from this one peer over this transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyslogSource {
    /// Always [`SyslogKind::Syslog`]; tells a reader this is not a file.
    pub kind: SyslogKind,
    /// The device name from the collector's mapping (the stream id).
    pub device: String,
    pub transport: SyslogTransport,
    /// The sender's IP address as text (RFC 5952 for IPv6), without port.
    pub peer: String,
    /// Whether the mapping marks the device as connected to a core system
    /// (responsibility levels A and B must keep its logs).
    pub core_system: bool,
}

/// The constant tag of a [`JournalSource`]: always `"journal"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalKind {
    #[default]
    Journal,
}

/// Entries an agent read from the systemd journal through `journalctl -o
/// export` (FORMAT.md §16). A journal has no inode and offset that stay put
/// (files rotate, are vacuumed and are written by journald itself), so an
/// entry is identified by its cursor, the journal's own stable name for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalSource {
    /// Always [`JournalKind::Journal`]; tells a reader this is not a file.
    pub kind: JournalKind,
    /// Which journal was read: `"system"`, `"directory:<path>"` or
    /// `"files:<glob>[,<glob>…]"`, plus `" match:<FIELD=value>"` for each match.
    pub journal: String,
    /// `__CURSOR` of the first entry whose bytes are in the segment.
    pub first_cursor: String,
    /// `__CURSOR` of the last entry whose bytes are in the segment.
    pub last_cursor: String,
    /// Set on the first segment read after the cursor the agent was to
    /// resume from could no longer be found (the journal was vacuumed or
    /// rotated away): that cursor. Reading then began again at the oldest
    /// entry still in the journal, so entries between may be missing and
    /// entries before may be stored twice.
    pub lost_cursor: Option<String>,
}

/// The constant tag of an [`InventorySource`]: always `"inventory"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventoryKind {
    #[default]
    Inventory,
}

/// An inventory of web roots an agent took (FORMAT.md §18): one line per
/// file ([`crate::inventory::InventoryEntry`]). A web root is not a log, so
/// there are no bytes to tail; what the incident form asks ("unauthorised
/// files in web directories") is answered by comparing inventories taken
/// over time, each as preserved and chained as any log segment.
///
/// One inventory may span several segments (parts); `range` then counts
/// bytes of the whole inventory's text, and only the part with `last_part`
/// set closes it. An inventory without its last part (the agent stopped
/// during the walk) is incomplete and says nothing about files not listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySource {
    /// Always [`InventoryKind::Inventory`]; tells a reader this is not a file.
    pub kind: InventoryKind,
    /// The web roots walked, as configured (absolute directories).
    pub roots: Vec<String>,
    /// When the walk began (UTC): the inventory's name among its parts.
    #[serde(with = "serde_utc")]
    pub taken: OffsetDateTime,
    /// This segment's place among the inventory's parts, from 0.
    pub part: u32,
    /// Set on the inventory's final part.
    pub last_part: bool,
}

/// Half-open byte range `[start, end)` of the source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// Marks a line or record that is cut across segments: it happens only for
/// a unit longer than the maximum segment size, a file that ended without a
/// final newline, or a partial line held longer than the configured wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Split {
    /// The first bytes continue a unit begun in the previous segment.
    pub starts_mid_unit: bool,
    /// The last bytes are not the end of a unit.
    pub ends_mid_unit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Always [`SEGMENT_FORMAT_V1`] for this version.
    pub format: String,
    pub host_id: HostId,
    pub stream_id: StreamId,
    pub category: Category,
    pub seq: SegmentSeq,
    pub agent_instance: InstanceId,
    pub framing: Framing,
    pub source: Source,
    pub range: ByteRange,
    pub split: Split,
    #[serde(with = "serde_utc")]
    pub first_read: OffsetDateTime,
    #[serde(with = "serde_utc")]
    pub last_read: OffsetDateTime,
    pub raw_len: u64,
    pub raw_sha256: Sha256,
    pub object_len: u64,
    pub object_sha256: Sha256,
    /// Chain hash (SHA-256 of the stored record bytes) of segment `seq - 1`
    /// of the same stream; `None` only for `seq == 0`.
    pub prev_segment: Option<Sha256>,
    /// Earliest time the store may delete the payload and this record.
    #[serde(with = "serde_utc")]
    pub retain_until: OffsetDateTime,
}

/// Why stored bytes are not a segment record. An unknown version is kept
/// apart from corruption: a newer writer is not a tampered store.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown format {found:?} (this build reads {expected:?})")]
    UnknownFormat {
        expected: &'static str,
        found: String,
    },
    #[error("not a valid record: {0}")]
    Corrupt(String),
    #[error("record is valid JSON but not in its single canonical encoding")]
    NotCanonical,
}

impl SegmentMeta {
    /// The single valid encoding: compact JSON in field order, then `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("segment record always serializes");
        out.push(b'\n');
        out
    }

    /// Decodes stored bytes, refusing unknown versions and any encoding
    /// other than [`SegmentMeta::encode`]'s.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let format = peek_format(bytes)?;
        if format != SEGMENT_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                expected: SEGMENT_FORMAT_V1,
                found: format,
            });
        }
        let meta: SegmentMeta =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if meta.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(meta)
    }

    /// The chain hash of an encoded record: what the next segment's
    /// `prev_segment` must equal.
    pub fn chain_hash(encoded: &[u8]) -> Sha256 {
        Sha256::digest(encoded)
    }
}

/// Reads the `format` field first so that a record of another version is
/// reported as such rather than as a field mismatch.
pub(crate) fn peek_format(bytes: &[u8]) -> Result<String, DecodeError> {
    #[derive(Deserialize)]
    struct Peek {
        format: String,
    }
    serde_json::from_slice::<Peek>(bytes)
        .map(|p| p.format)
        .map_err(|e| DecodeError::Corrupt(e.to_string()))
}

/// Compresses raw bytes into the stored payload: one standard zstd frame
/// with the content size recorded, so stock `zstd -d` reproduces them.
pub fn compress_payload(raw: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
    let mut c = zstd::bulk::Compressor::new(level)?;
    c.include_contentsize(true)?;
    c.include_checksum(true)?;
    c.compress(raw)
}

/// Decompresses a payload, refusing output larger than `max_len` (the
/// recorded `raw_len`), so a forged payload cannot exhaust memory.
pub fn decompress_payload(object: &[u8], max_len: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut dec = zstd::stream::read::Decoder::new(object)?;
    let mut out = Vec::with_capacity(max_len.min(64 << 20));
    (&mut dec).take(max_len as u64 + 1).read_to_end(&mut out)?;
    if out.len() > max_len {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "payload decompresses to more than its recorded length",
        ));
    }
    Ok(out)
}
