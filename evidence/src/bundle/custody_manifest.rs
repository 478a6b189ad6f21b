//! The chain-of-custody manifest (`custody-manifest.json`): who collected
//! what, when, where, with which tool and why, and per item its original
//! path, size, hash, volatility class and file facts. The fields follow
//! RFC 3227 §3.2/§4 and NIST SP 800-86 §3.1 (FORMAT.md, "Evidence bundles").
//!
//! One canonical JSON object (FORMAT.md §1.2), so its bytes, which the tag
//! manifest hashes and the bundle signature covers, have one encoding.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::digest::ClockState;
use crate::ids::{HostId, Sha256};
use crate::segment::{peek_format, DecodeError};
use crate::timefmt::serde_utc;

pub const CUSTODY_MANIFEST_FORMAT_V1: &str = "custody.bundle-manifest.v1";

/// The host the evidence was collected on, as it identified itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostIdentity {
    /// The agent's host id (object names, `allowed_signers` principal).
    pub host_id: HostId,
    /// `/proc/sys/kernel/hostname` at collection time.
    pub hostname: Option<String>,
    /// `/etc/machine-id`.
    pub machine_id: Option<String>,
    /// `/proc/sys/kernel/random/boot_id`: which boot the volatile state is of.
    pub boot_id: Option<String>,
}

/// The collecting tool, so an examiner can reproduce or challenge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolIdentity {
    pub name: String,
    pub version: String,
    /// SHA-256 of the executable that ran (`/proc/self/exe`), if readable.
    pub build_sha256: Option<Sha256>,
}

/// What kind of evidence an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// State that changes by itself (time, connections, processes), captured in memory first.
    Volatile,
    /// A byte-for-byte copy of a log file (including rotated and compressed ones).
    Log,
    /// The list of already-shipped segments and digests (names and hashes).
    Shipped,
    /// A disk device or VM image.
    Image,
}

/// Facts about a copied file as `fstat` gave them when the copy started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFacts {
    /// Size when the copy started: the copy never goes past it.
    pub size_at_start: u64,
    /// Size when the copy ended (larger: the file grew meanwhile).
    pub size_at_end: u64,
    #[serde(with = "serde_utc")]
    pub mtime: OffsetDateTime,
    #[serde(with = "serde_utc")]
    pub ctime: OffsetDateTime,
    pub device: u64,
    pub inode: u64,
    pub uid: u32,
    pub gid: u32,
    /// `st_mode` (type and permission bits), decimal.
    pub mode: u32,
}

/// One file of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Path in the bag (`data/…`), as in `manifest-sha256.txt`.
    pub path: String,
    pub kind: ItemKind,
    /// RFC 3227 §2.1 order-of-volatility class, 1 (most volatile) to 7.
    pub volatility: u8,
    /// Where it came from on the host (`/proc/net/tcp`, `/var/log/auth.log.1`); `null` when generated.
    pub original_path: Option<String>,
    /// Bytes in the bag.
    pub len: u64,
    pub sha256: Sha256,
    /// For copied files: what `fstat` said; `null` for `/proc` and generated items.
    pub file: Option<FileFacts>,
    /// Anything an examiner must know about this item (grew during the copy, short read, …).
    pub note: Option<String>,
}

/// An unavoidable change the collection made or could not prevent (RFC 3227
/// §2.2: "note … the changes made").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The item concerned (bag path), or `null` for the whole collection.
    pub item: Option<String>,
    pub what: String,
    pub reason: String,
}

/// `custody-manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyManifest {
    pub format: String,
    pub evidence_id: String,
    pub incident_id: String,
    /// Under whose authority the evidence was collected, if given.
    pub authority: Option<String>,
    pub reason: Option<String>,
    /// The operator who collected it.
    pub collected_by: String,
    pub host: HostIdentity,
    pub tool: ToolIdentity,
    /// The command line that ran, argument by argument.
    pub command_line: Vec<String>,
    #[serde(with = "serde_utc")]
    pub started: OffsetDateTime,
    #[serde(with = "serde_utc")]
    pub finished: OffsetDateTime,
    /// The host clock's state when the collection started (adjtimex).
    pub clock: ClockState,
    /// The clock's offset from its time reference at the start, microseconds
    /// (adjtimex `offset`); `null` when not synchronised or unknown.
    pub clock_offset_us: Option<i64>,
    /// Every payload file, in bundle order.
    pub items: Vec<Item>,
    pub changes: Vec<Change>,
}

impl CustodyManifest {
    /// The canonical encoding: compact JSON plus `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a custody manifest always encodes");
        out.push(b'\n');
        out
    }

    /// Decodes and insists on the canonical encoding; an unknown `format`
    /// is [`DecodeError::UnknownFormat`], never "corrupt".
    pub fn decode(bytes: &[u8]) -> Result<CustodyManifest, DecodeError> {
        let format = peek_format(bytes)?;
        if format != CUSTODY_MANIFEST_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                expected: CUSTODY_MANIFEST_FORMAT_V1,
                found: format,
            });
        }
        let m: CustodyManifest =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if m.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(m)
    }
}
