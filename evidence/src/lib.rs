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
#![forbid(unsafe_code)]

pub mod digest;
pub mod ids;
pub mod layout;
pub mod retention;
pub mod segment;
pub mod sign;
pub mod timefmt;
pub mod verify;

pub use ids::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
