//! Object stores behind one small trait, like rustic's `WriteBackend`:
//! the filesystem store (the embedded default), S3, the custody collector
//! (`https://`), an in-memory store, and a wrapper that injects faults for
//! tests.
//!
//! Every store keeps the same promises, which the agent's shipping relies on:
//! - `put` is create-only. Writing identical bytes under an existing name is
//!   a no-op ([`PutOutcome::AlreadyPresent`]); different bytes under an
//!   existing name are refused with [`StoreError::Conflict`], never written.
//! - `put` returns only once the object is durable.
//! - Each object carries a retain-until time; [`ObjectStore::prune`] deletes
//!   only objects past it and never one under legal hold.
//!
//! Main types: [`ObjectStore`] (the trait the agent ships through),
//! [`FsStore`] (layout in `store/README.md`), [`MemoryStore`] and
//! [`FaultyStore`] (tests).
//!
//! ```
//! use custody_store::{FsStore, PutOptions, PutOutcome, StoreError};
//!
//! let dir = tempfile::tempdir()?;
//! let store = FsStore::open(dir.path().join("store"))?;
//! let opts = PutOptions { retain_until: time::OffsetDateTime::now_utc() + time::Duration::days(183) };
//! assert_eq!(store.put_sync("v1/host/a", b"evidence", opts)?, PutOutcome::Created);
//! // A retry after a lost acknowledgement is harmless...
//! assert_eq!(store.put_sync("v1/host/a", b"evidence", opts)?, PutOutcome::AlreadyPresent);
//! // ...and a rewrite is refused.
//! assert!(matches!(store.put_sync("v1/host/a", b"tampered", opts), Err(StoreError::Conflict { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// No unsafe code, except one Win32 call on Windows (`MoveFileExW`, the
// create-only publish in fs.rs), which std has no safe wrapper for.
#![cfg_attr(not(windows), forbid(unsafe_code))]
#![cfg_attr(windows, deny(unsafe_code))]

pub mod fault;
pub mod fs;
pub mod https;
pub mod memory;
pub mod s3;
pub use s3::{S3Settings, S3Store};

use async_trait::async_trait;
use time::{OffsetDateTime, UtcOffset};

pub use fault::{CallCounts, Fault, FaultyStore};
pub use fs::FsStore;
pub use https::{CollectorSettings, CollectorStore};
pub use memory::MemoryStore;

/// Options for one `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOptions {
    /// Earliest time the object may be deleted (from the retention policy).
    pub retain_until: OffsetDateTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// The same bytes were already stored under this name.
    AlreadyPresent,
}

/// What a store knows about one object besides its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub len: u64,
    pub retain_until: OffsetDateTime,
    pub legal_hold: bool,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<String>,
    /// Past their retain-until time but kept because of a legal hold.
    pub held: Vec<String>,
    /// Still within retention.
    pub retained: u64,
    /// Kept because the store cannot prove they expired (retention record
    /// missing or unreadable): `(key, why)`. Nothing is deleted on a guess.
    pub unproven: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} already exists with different content: refusing to overwrite (integrity alarm)")]
    Conflict { key: String },
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("invalid object name {key:?}: {why}")]
    InvalidKey { key: String, why: &'static str },
    /// The message includes the cause; it is not also chained as a
    /// `source`, so `{:#}` does not print it twice.
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: String,
        cause: std::io::Error,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store {what} is damaged: {why}")]
    Corrupt { what: String, why: String },
    /// The store understood the request and will never accept it as sent
    /// (a collector answering 400, 403 or 413, or an operation a host may
    /// not perform): retrying the same request cannot help.
    #[error("{what} refused: {reason}")]
    Refused { what: String, reason: String },
}

impl StoreError {
    /// Whether retrying later can succeed (outage, full disk) as opposed to
    /// a refusal that will never change (conflict, invalid name).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Io { .. } | StoreError::Unavailable(_))
    }
}

/// Names are `/`-separated relative paths of `[A-Za-z0-9._-]` components,
/// none empty or starting with `.`, so no store can be led outside its root.
pub fn check_key(key: &str) -> Result<(), StoreError> {
    let bad = |why| {
        Err(StoreError::InvalidKey {
            key: key.to_string(),
            why,
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1 to 1024 characters");
    }
    for part in key.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return bad("components must not be empty or start with '.' (reserved for the store's own bookkeeping)");
        }
        if !part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        {
            return bad("components may contain only letters, digits, '.', '_' and '-'");
        }
    }
    Ok(())
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Human-readable location for logs and errors (a path, a URL).
    fn describe(&self) -> String;
    /// Create-only write; see the crate documentation.
    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Whether an object exists, with its retention facts.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// All names starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    async fn set_legal_hold(&self, key: &str, hold: bool) -> Result<(), StoreError>;
    /// Deletes objects whose retain-until is before `now` and that are not held.
    async fn prune(&self, now: OffsetDateTime) -> Result<PruneReport, StoreError>;
}

/// The one text form of a retain-until time in every store record:
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, six fractional digits), the same
/// encoding as `custody_evidence::timefmt`, written here because this crate
/// sits below `custody-evidence` and must not depend on it.
pub(crate) fn format_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses an RFC 3339 time; the result is in UTC.
pub(crate) fn parse_utc(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    use time::format_description::well_known::Rfc3339;
    Ok(OffsetDateTime::parse(s, &Rfc3339)?.to_offset(UtcOffset::UTC))
}

/// A time as a store keeps it: UTC, whole microseconds. Every store
/// rounds the same way (down) so they report identical `retain_until`s.
pub(crate) fn stored_precision(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(UtcOffset::UTC);
    let nanos = t.nanosecond();
    // Cannot fail: the value stays within 0..1_000_000_000.
    t.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn one_time_encoding_in_utc_to_the_microsecond() {
        let t = datetime!(2026-11-22 10:11:12.5000019 +08:00);
        assert_eq!(format_utc(t), "2026-11-22T02:11:12.500001Z");
        let back = parse_utc(&format_utc(t)).unwrap();
        assert_eq!(back, stored_precision(t));
        assert_eq!(back.nanosecond(), 500_001_000);
    }

    #[test]
    fn keys_cannot_leave_the_root() {
        for bad in [
            "", "/a", "a/", "a//b", "../x", "a/../b", ".hidden", "a/.tmp-1", "a b", "a\\b",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        check_key("v1/host-1/streams/os.auth/00000000000000000001-ab.zst").unwrap();
    }
}
