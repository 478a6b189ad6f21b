//! `data/shipped.json`: the segments and digests already in the store that
//! cover the files copied into a bundle, by name and hash, so the bundle
//! and the store can be checked against each other (FORMAT.md, "Evidence
//! bundles"). A segment covers a copied file when its record names the same
//! device and inode; `bag_path` then says which copy, and its byte `range`
//! in that copy must hash to the segment's `raw_sha256`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{HostId, SegmentSeq, Sha256, StreamId};
use crate::segment::{peek_format, ByteRange, DecodeError};
use crate::timefmt::serde_utc;

pub const SHIPPED_FORMAT_V1: &str = "custody.shipped.v1";

/// One shipped segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedSegment {
    pub stream_id: StreamId,
    pub seq: SegmentSeq,
    /// Object name of the record in the store.
    pub record_key: String,
    /// SHA-256 of the stored record (its chain hash).
    pub meta_sha256: Sha256,
    /// Object name of the payload.
    pub payload_key: String,
    pub object_sha256: Sha256,
    pub raw_sha256: Sha256,
    /// The source file the record names.
    pub source_path: String,
    pub device: u64,
    pub inode: u64,
    pub range: ByteRange,
    /// The bundled copy of that file (`data/logs/…`), if one was made.
    pub bag_path: Option<String>,
}

/// One shipped digest and its signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedDigest {
    pub seq: u64,
    pub key: String,
    pub sha256: Sha256,
    pub sig_key: String,
    pub sig_sha256: Option<Sha256>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippedList {
    pub format: String,
    pub host_id: HostId,
    /// Which store was listed (a path or URL), for the examiner.
    pub store: String,
    #[serde(with = "serde_utc")]
    pub listed_at: OffsetDateTime,
    /// Ordered by stream id then seq.
    pub segments: Vec<ShippedSegment>,
    /// Ordered by seq: every digest that lists one of `segments`, and the newest digest.
    pub digests: Vec<ShippedDigest>,
    /// Why the list may be incomplete (store unreachable, …); `null` when complete.
    pub note: Option<String>,
}

impl ShippedList {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a shipped list always encodes");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ShippedList, DecodeError> {
        let format = peek_format(bytes)?;
        if format != SHIPPED_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                expected: SHIPPED_FORMAT_V1,
                found: format,
            });
        }
        let list: ShippedList =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if list.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(list)
    }
}
