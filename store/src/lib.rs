//! Object stores behind one small trait, like rustic's `WriteBackend`:
//! the filesystem store (the embedded default), an in-memory store, and a
//! wrapper that injects faults for tests.
//!
//! Every store keeps the same promises, which the agent's shipping relies on:
//! - `put` is create-only. Writing identical bytes under an existing name is
//!   a no-op ([`PutOutcome::AlreadyPresent`]); different bytes under an
//!   existing name are refused with [`StoreError::Conflict`], never written.
//! - `put` returns only once the object is durable.
//! - Each object carries a retain-until time; [`ObjectStore::prune`] deletes
//!   only objects past it and never one under legal hold.
#![forbid(unsafe_code)]

pub mod fault;
pub mod fs;
pub mod memory;

use async_trait::async_trait;
use time::OffsetDateTime;





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
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} already exists with different content: refusing to overwrite (integrity alarm)")]
    Conflict { key: String },
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("invalid object name {key:?}: {why}")]
    InvalidKey { key: String, why: &'static str },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store {what} is damaged: {why}")]
    Corrupt { what: String, why: String },
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
    let bad = |why| Err(StoreError::InvalidKey { key: key.to_string(), why });
    if key.is_empty() || key.len() > 1024 {
        return bad("must be 1 to 1024 characters");
    }
    for part in key.split('/') {
        if part.is_empty() || part.starts_with('.') {
            return bad("components must not be empty or start with '.' (reserved for the store's own bookkeeping)");
        }
        if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
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
    async fn put(&self, key: &str, bytes: &[u8], opts: PutOptions) -> Result<PutOutcome, StoreError>;
    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError>;
    /// Whether an object exists, with its retention facts.
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// All names starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    async fn set_legal_hold(&self, key: &str, hold: bool) -> Result<(), StoreError>;
    /// Deletes objects whose retain-until is before `now` and that are not held.
    async fn prune(&self, now: OffsetDateTime) -> Result<PruneReport, StoreError>;
}
