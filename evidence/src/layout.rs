//! Object names in a store (FORMAT.md, "Store layout"). Every name starts
//! with the format version and the host, so a host's records can be listed,
//! permitted and retained as one namespace.
//!
//! ```text
//! v1/<host>/streams/<stream>/<seq:020>-<object_sha256>.zst        payload
//! v1/<host>/streams/<stream>/<seq:020>-<object_sha256>.seg.json   segment record
//! v1/<host>/digests/<seq:020>-<body_sha256>.digest.json           digest body
//! v1/<host>/digests/<seq:020>-<body_sha256>.digest.json.sig       sshsig of the body
//! v1/<host>/keys/<sha256 of the openssh public key line>.pub      host public key
//! ```

use crate::ids::{HostId, SegmentSeq, Sha256, StreamId};

pub const ROOT: &str = "v1";

pub fn host_prefix(host: &HostId) -> String {
    format!("{ROOT}/{host}/")
}

pub fn stream_prefix(host: &HostId, stream: &StreamId) -> String {
    format!("{ROOT}/{host}/streams/{stream}/")
}

fn segment_stem(host: &HostId, stream: &StreamId, seq: SegmentSeq, object: &Sha256) -> String {
    format!("{}{:020}-{}", stream_prefix(host, stream), seq.0, object)
}

/// The payload: a zstd frame of exactly the raw bytes.
pub fn segment_payload_key(
    host: &HostId,
    stream: &StreamId,
    seq: SegmentSeq,
    object: &Sha256,
) -> String {
    format!("{}.zst", segment_stem(host, stream, seq, object))
}

/// The segment record (JSON) stored beside the payload.
pub fn segment_meta_key(
    host: &HostId,
    stream: &StreamId,
    seq: SegmentSeq,
    object: &Sha256,
) -> String {
    format!("{}.seg.json", segment_stem(host, stream, seq, object))
}

pub fn digest_prefix(host: &HostId) -> String {
    format!("{ROOT}/{host}/digests/")
}

pub fn digest_key(host: &HostId, seq: u64, body: &Sha256) -> String {
    format!("{}{:020}-{}.digest.json", digest_prefix(host), seq, body)
}

pub fn digest_sig_key(host: &HostId, seq: u64, body: &Sha256) -> String {
    format!("{}.sig", digest_key(host, seq, body))
}

pub fn key_prefix(host: &HostId) -> String {
    format!("{ROOT}/{host}/keys/")
}

/// Where a host publishes its public key line; named by the line's hash so
/// a second key shows as a second object instead of replacing the first.
pub fn public_key_key(host: &HostId, public_key_line: &str) -> String {
    format!(
        "{}{}.pub",
        key_prefix(host),
        Sha256::digest(public_key_line.trim_end().as_bytes())
    )
}

/// What an object name says about itself; `None` for names outside the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedKey {
    SegmentPayload {
        host: HostId,
        stream: StreamId,
        seq: SegmentSeq,
        object_sha256: Sha256,
    },
    SegmentMeta {
        host: HostId,
        stream: StreamId,
        seq: SegmentSeq,
        object_sha256: Sha256,
    },
    Digest {
        host: HostId,
        seq: u64,
        body_sha256: Sha256,
    },
    DigestSig {
        host: HostId,
        seq: u64,
        body_sha256: Sha256,
    },
    PublicKey {
        host: HostId,
    },
    /// An evidence bundle (FORMAT.md §14): `v1/<host>/bundles/<incident>/<evidence-id>.tar`.
    Bundle {
        host: HostId,
    },
    /// A custody event a custodian (the collector) appended to a stored
    /// bundle's log, FORMAT.md §15.4:
    /// `v1/<host>/bundles/<incident>/<evidence-id>.events/<seq:020>.json`.
    BundleEvent {
        host: HostId,
        seq: u64,
    },
}

/// Suffix of the directory beside a stored bundle that holds the custody
/// events appended after it was stored (FORMAT.md §15.4).
pub const BUNDLE_EVENTS_SUFFIX: &str = ".events";

/// The prefix of the custody events appended to the bundle stored under
/// `bundle_key` (`….tar` → `….events/`).
pub fn bundle_events_prefix(bundle_key: &str) -> String {
    let stem = bundle_key.strip_suffix(".tar").unwrap_or(bundle_key);
    format!("{stem}{BUNDLE_EVENTS_SUFFIX}/")
}

/// The name of custody event `seq` of the bundle stored under `bundle_key`.
pub fn bundle_event_key(bundle_key: &str, seq: u64) -> String {
    format!("{}{seq:020}.json", bundle_events_prefix(bundle_key))
}

fn parse_seq_hash(name: &str) -> Option<(u64, Sha256)> {
    let (seq, hash) = name.split_once('-')?;
    if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((seq.parse().ok()?, hash.parse().ok()?))
}

pub fn parse_key(key: &str) -> Option<ParsedKey> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [ROOT, host, "streams", stream, file] => {
            let host = HostId::new(*host).ok()?;
            let stream = StreamId::new(*stream).ok()?;
            if let Some(stem) = file.strip_suffix(".zst") {
                let (seq, object_sha256) = parse_seq_hash(stem)?;
                Some(ParsedKey::SegmentPayload {
                    host,
                    stream,
                    seq: SegmentSeq(seq),
                    object_sha256,
                })
            } else if let Some(stem) = file.strip_suffix(".seg.json") {
                let (seq, object_sha256) = parse_seq_hash(stem)?;
                Some(ParsedKey::SegmentMeta {
                    host,
                    stream,
                    seq: SegmentSeq(seq),
                    object_sha256,
                })
            } else {
                None
            }
        }
        [ROOT, host, "digests", file] => {
            let host = HostId::new(*host).ok()?;
            if let Some(stem) = file.strip_suffix(".digest.json.sig") {
                let (seq, body_sha256) = parse_seq_hash(stem)?;
                Some(ParsedKey::DigestSig {
                    host,
                    seq,
                    body_sha256,
                })
            } else if let Some(stem) = file.strip_suffix(".digest.json") {
                let (seq, body_sha256) = parse_seq_hash(stem)?;
                Some(ParsedKey::Digest {
                    host,
                    seq,
                    body_sha256,
                })
            } else {
                None
            }
        }
        [ROOT, host, "keys", file] if file.ends_with(".pub") => Some(ParsedKey::PublicKey {
            host: HostId::new(*host).ok()?,
        }),
        [ROOT, host, "bundles", incident, file]
            if file.ends_with(".tar")
                && crate::bundle::check_incident_id(incident).is_ok()
                && file.starts_with(&format!("{incident}_{host}_")) =>
        {
            Some(ParsedKey::Bundle {
                host: HostId::new(*host).ok()?,
            })
        }
        [ROOT, host, "bundles", incident, dir, file]
            if crate::bundle::check_incident_id(incident).is_ok()
                && dir.starts_with(&format!("{incident}_{host}_"))
                && dir.ends_with(BUNDLE_EVENTS_SUFFIX) =>
        {
            let seq = file.strip_suffix(".json")?;
            if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(ParsedKey::BundleEvent {
                host: HostId::new(*host).ok()?,
                seq: seq.parse().ok()?,
            })
        }
        _ => None,
    }
}
