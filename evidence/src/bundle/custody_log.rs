//! `custody.jsonl`: the bundle's append-only custody log. Every hand-over
//! of the evidence (collected, uploaded, received, verified, exported,
//! released) is one line: a canonical event naming the actor, time, place
//! and purpose, the hash of the previous line, the hash of the bag it is
//! about, and an `sshsig` signature over the event by the actor's key.
//!
//! The log is outside the tag manifest on purpose: the bag is signed once,
//! at collection, and later custodians append without breaking that
//! signature. What protects the log instead is its own chain: removing,
//! reordering or editing a line breaks `seq` or `prev_event` at the next
//! line, and each line is signed (FORMAT.md, "Evidence bundles").
//!
//! ```
//! use custody_evidence::bundle::custody_log::{Action, CustodyEvent, EventLine};
//! use custody_evidence::sign::HostKey;
//! use custody_evidence::Sha256;
//! use time::macros::datetime;
//!
//! let key = HostKey::generate();
//! let event = CustodyEvent::first(
//!     "ev-1", Action::Collected, datetime!(2026-11-30 09:00 UTC),
//!     "alice", "web01", "incident INC-7", Sha256::digest(b"tagmanifest"), &key.public_key_line(""),
//! );
//! let line = EventLine::sign(event, &key).unwrap();
//! let bytes = line.encode();
//! assert_eq!(EventLine::decode(&bytes).unwrap(), line);
//! line.verify_signature().unwrap();
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::Sha256;
use crate::segment::{peek_format, DecodeError};
use crate::sign::{self, HostKey, SignError, SignerInfo};
use crate::timefmt::serde_utc;

pub const EVENT_FORMAT_V1: &str = "custody.event.v1";
/// Events are signed in the bundle namespace: the bag's tag manifest and
/// its custody events are the two statements a key makes about a bundle,
/// and their encodings cannot be mistaken for one another (a JSON object vs
/// manifest lines).
pub const EVENT_NAMESPACE: &str = super::BUNDLE_NAMESPACE;

/// What happened to the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Taken from the host (the first event of every bundle).
    Collected,
    /// Sent to a store or collector.
    Uploaded,
    /// Accepted by a collector or custodian.
    Received,
    /// Checked by a verifier.
    Verified,
    /// Copied out, for example to the forensic exchange area.
    Exported,
    /// A legal hold lifted.
    Released,
}

/// One custody event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustodyEvent {
    pub format: String,
    /// The bundle's evidence id.
    pub evidence_id: String,
    /// Position in the log, from 0 without gaps.
    pub seq: u64,
    /// SHA-256 of the previous line's bytes (including its `\n`); `null` iff `seq = 0`.
    pub prev_event: Option<Sha256>,
    pub action: Action,
    #[serde(with = "serde_utc")]
    pub time: OffsetDateTime,
    /// Who acted (an operator's name, a service).
    pub actor: String,
    /// Where (a host id, a site).
    pub place: String,
    /// Why.
    pub purpose: String,
    /// SHA-256 of the bag's `tagmanifest-sha256.txt`: which bag this is about.
    pub bag_sha256: Sha256,
    /// The signing key, as an OpenSSH public key line without comment.
    pub signer: String,
}

impl CustodyEvent {
    /// The first event of a log (`seq` 0, no predecessor).
    #[allow(clippy::too_many_arguments)]
    pub fn first(
        evidence_id: &str,
        action: Action,
        time: OffsetDateTime,
        actor: &str,
        place: &str,
        purpose: &str,
        bag_sha256: Sha256,
        signer_public_key_line: &str,
    ) -> CustodyEvent {
        CustodyEvent {
            format: EVENT_FORMAT_V1.to_string(),
            evidence_id: evidence_id.to_string(),
            seq: 0,
            prev_event: None,
            action,
            time,
            actor: actor.to_string(),
            place: place.to_string(),
            purpose: purpose.to_string(),
            bag_sha256,
            signer: normalize(signer_public_key_line),
        }
    }

    /// The event that follows `prev` (whose stored line is `prev_line`).
    #[allow(clippy::too_many_arguments)]
    pub fn next(
        prev: &CustodyEvent,
        prev_line: &[u8],
        action: Action,
        time: OffsetDateTime,
        actor: &str,
        place: &str,
        purpose: &str,
        signer_public_key_line: &str,
    ) -> CustodyEvent {
        CustodyEvent {
            seq: prev.seq + 1,
            prev_event: Some(Sha256::digest(prev_line)),
            action,
            time,
            actor: actor.to_string(),
            place: place.to_string(),
            purpose: purpose.to_string(),
            signer: normalize(signer_public_key_line),
            ..prev.clone()
        }
    }

    /// The signed message: the event's canonical JSON plus `\n`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a custody event always encodes");
        out.push(b'\n');
        out
    }
}

fn normalize(line: &str) -> String {
    sign::normalize_public_key(line).unwrap_or_else(|_| line.trim().to_string())
}

/// One line of `custody.jsonl`: `{"event":{…},"signature":"-----BEGIN SSH SIGNATURE-----\n…"}\n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLine {
    pub event: CustodyEvent,
    /// Armored sshsig over [`CustodyEvent::signed_bytes`], namespace `custody-bundle`.
    pub signature: String,
}

impl EventLine {
    pub fn sign(event: CustodyEvent, key: &HostKey) -> Result<EventLine, SignError> {
        let signature = key.sign(EVENT_NAMESPACE, &event.signed_bytes())?;
        Ok(EventLine { event, signature })
    }

    /// The canonical line, ending in `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("a custody event line always encodes");
        out.push(b'\n');
        out
    }

    /// Decodes one line (with its `\n`), insisting on the canonical encoding.
    pub fn decode(line: &[u8]) -> Result<EventLine, DecodeError> {
        #[derive(Deserialize)]
        struct Peek {
            event: serde_json::Value,
        }
        let peek: Peek =
            serde_json::from_slice(line).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        let format = peek_format(peek.event.to_string().as_bytes())?;
        if format != EVENT_FORMAT_V1 {
            return Err(DecodeError::UnknownFormat {
                expected: EVENT_FORMAT_V1,
                found: format,
            });
        }
        let parsed: EventLine =
            serde_json::from_slice(line).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if parsed.encode() != line {
            return Err(DecodeError::NotCanonical);
        }
        Ok(parsed)
    }

    /// Checks the signature against the key the event names.
    pub fn verify_signature(&self) -> Result<SignerInfo, SignError> {
        sign::verify(
            &self.event.signer,
            EVENT_NAMESPACE,
            &self.event.signed_bytes(),
            &self.signature,
        )
    }
}

/// Splits `custody.jsonl` into lines, each with its `\n`; a last line
/// without `\n` is returned as it is (and will not decode as canonical).
pub fn split_lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            out.push(&bytes[start..=i]);
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.push(&bytes[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn chain_of_two_signed_events() {
        let key = HostKey::generate();
        let other = HostKey::generate();
        let first = CustodyEvent::first(
            "ev",
            Action::Collected,
            datetime!(2026-11-30 09:00 UTC),
            "alice",
            "web01",
            "why",
            Sha256::digest(b"t"),
            &key.public_key_line("c"),
        );
        let l0 = EventLine::sign(first, &key).unwrap();
        let b0 = l0.encode();
        assert!(b0.starts_with(b"{\"event\":{\"format\":\"custody.event.v1\""));
        let second = CustodyEvent::next(
            &l0.event,
            &b0,
            Action::Exported,
            datetime!(2026-11-30 10:00 UTC),
            "bob",
            "soc",
            "to the exchange area",
            &other.public_key_line(""),
        );
        assert_eq!(second.seq, 1);
        assert_eq!(second.prev_event, Some(Sha256::digest(&b0)));
        let l1 = EventLine::sign(second, &other).unwrap();
        l1.verify_signature().unwrap();
        let mut forged = l1.clone();
        forged.event.actor = "mallory".into();
        assert!(forged.verify_signature().is_err());
        let mut log = b0.clone();
        log.extend(l1.encode());
        let lines = split_lines(&log);
        assert_eq!(lines.len(), 2);
        assert_eq!(EventLine::decode(lines[1]).unwrap(), l1);
        let spaced =
            String::from_utf8(b0.clone())
                .unwrap()
                .replacen("{\"event\":", "{\"event\": ", 1);
        assert!(matches!(
            EventLine::decode(spaced.as_bytes()),
            Err(DecodeError::NotCanonical)
        ));
    }
}
