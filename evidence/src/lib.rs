//! The custody evidence format, as data: no file, socket or clock access.
//!
//! `FORMAT.md` beside this crate is the binding description; this crate is
//! one implementation of it. The main types:
//! - [`segment::SegmentMeta`]: the record stored beside each compressed
//!   payload, chained per stream by [`segment::SegmentMeta::prev_segment`].
//! - [`digest::DigestBody`]: the periodic, signed list of segments.
//! - [`sign::HostKey`]: Ed25519 keys and OpenSSH `sshsig` signatures.
//! - [`retention::RetentionPolicy`]: how long each object must be kept.
//! - [`verify::verify_store`]: checks a whole store and returns findings.
//! - [`layout`]: object names in a store.
//! - [`octets`]: RFC 6587 octet-counted frames, how a collector keeps
//!   syslog message boundaries in a segment.
//!
//! ```
//! use custody_evidence::retention::{Level, RetentionPolicy};
//! use custody_evidence::segment::{compress_payload, decompress_payload};
//! use custody_evidence::Sha256;
//! use time::macros::datetime;
//!
//! // Level A keeps six calendar months; the day is clamped to the month.
//! let policy = RetentionPolicy::new(Level::A, None).unwrap();
//! let until = policy.retain_until(datetime!(2026-08-31 12:00 UTC));
//! assert_eq!(until, datetime!(2027-02-28 12:00 UTC));
//!
//! // A payload is one zstd frame of exactly the raw bytes.
//! let raw = b"Jan  5 00:00:01 web01 sshd[1]: Accepted publickey for root\n";
//! let payload = compress_payload(raw, 3).unwrap();
//! let back = decompress_payload(&payload, raw.len()).unwrap();
//! assert_eq!(Sha256::digest(&back), Sha256::digest(raw));
//! ```
#![forbid(unsafe_code)]

pub mod bundle;
pub mod digest;
pub mod ids;
pub mod inventory;
pub mod layout;
pub mod octets;
pub mod retention;
pub mod segment;
pub mod sign;
pub mod timefmt;
pub mod verify;

pub use ids::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
