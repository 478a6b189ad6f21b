//! Digests: the periodic, signed statement of which segments a host wrote
//! (FORMAT.md, "Digests"). Like CloudTrail's digest files, one is written
//! at every interval even when nothing was written, and each names the
//! previous one's hash, so a missing, reordered or replayed digest shows.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use crate::segment::{peek_format, DecodeError};
use crate::timefmt::serde_utc;

pub const DIGEST_FORMAT_V1: &str = "custody.digest.v1";
/// The sshsig namespace of digest signatures (`ssh-keygen -Y verify -n`).
pub const DIGEST_NAMESPACE: &str = "custody-digest";

/// The host clock as the agent saw it when writing the digest; from the
/// kernel's NTP state (`adjtimex`) where available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    /// Whether the kernel reports the clock as synchronised; `None` if unknown.
    pub synchronized: Option<bool>,
    /// The kernel's maximum error estimate, microseconds.
    pub max_error_us: Option<i64>,
    /// The kernel's estimated error, microseconds.
    pub est_error_us: Option<i64>,
}

/// One segment as listed in a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestEntry {
    pub stream_id: StreamId,
    pub seq: SegmentSeq,
    /// Chain hash of the segment record (SHA-256 of its stored bytes).
    pub meta_sha256: Sha256,
    pub object_sha256: Sha256,
    pub raw_sha256: Sha256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestBody {
    pub format: String,
    pub host_id: HostId,
    pub agent_instance: InstanceId,
    /// Position in the host's digest chain, from 0 without gaps.
    pub seq: u64,
    /// SHA-256 of the previous digest body's stored bytes; `None` only for
    /// `seq == 0`.
    pub prev_digest: Option<Sha256>,
    #[serde(with = "serde_utc")]
    pub window_start: OffsetDateTime,
    #[serde(with = "serde_utc")]
    pub window_end: OffsetDateTime,
    pub clock: ClockState,
    /// The signing key, as an OpenSSH public key line (`ssh-ed25519 AAAA…`).
    pub public_key: String,
    /// Segments created in the window, ordered by stream then seq.
    pub segments: Vec<DigestEntry>,
}

impl DigestBody {
    /// The single valid encoding: compact JSON in field order, then `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("digest always serializes");
        out.push(b'\n');
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let format = peek_format(bytes)?;
        if format != DIGEST_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                expected: DIGEST_FORMAT_V1,
                found: format,
            });
        }
        let body: DigestBody =
            serde_json::from_slice(bytes).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if body.encode() != bytes {
            return Err(DecodeError::NotCanonical);
        }
        Ok(body)
    }
}
