//! The in-memory store: the same promises as the filesystem store (create-only
//! puts, retention, legal holds, the same refusals), held in a map, so tests
//! of the agent and the verifier run without a disk.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{
    check_key, stored_precision, ObjectInfo, ObjectStore, PruneReport, PutOptions, PutOutcome,
    StoreError,
};

/// An object store in memory; everything is lost when it is dropped.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<String, Entry>,
    holds: BTreeSet<String>,
}

#[derive(Debug)]
struct Entry {
    bytes: Vec<u8>,
    retain_until: OffsetDateTime,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Number of objects stored; for tests that count what arrived.
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every operation leaves the maps consistent before it can panic,
        // so a poisoned lock still guards valid data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Refuses the names a filesystem could not hold side by side (`a` and
    /// `a/b`), so tests against memory fail where production would.
    fn check_layout(&self, key: &str) -> Result<(), StoreError> {
        let leading_object = key
            .match_indices('/')
            .any(|(i, _)| self.objects.contains_key(&key[..i]));
        if leading_object {
            return Err(StoreError::InvalidKey {
                key: key.to_string(),
                why: "a leading part of this name is already an object",
            });
        }
        let as_dir = format!("{key}/");
        if self
            .objects
            .range(as_dir.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&as_dir))
        {
            return Err(StoreError::InvalidKey {
                key: key.to_string(),
                why: "this name is already a directory holding other objects",
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    fn describe(&self) -> String {
        "in-memory store".to_string()
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        check_key(key)?;
        let mut state = self.lock();
        if let Some(existing) = state.objects.get(key) {
            return if existing.bytes == bytes {
                Ok(PutOutcome::AlreadyPresent)
            } else {
                Err(StoreError::Conflict {
                    key: key.to_string(),
                })
            };
        }
        state.check_layout(key)?;
        let entry = Entry {
            bytes: bytes.to_vec(),
            retain_until: stored_precision(opts.retain_until),
        };
        state.objects.insert(key.to_string(), entry);
        Ok(PutOutcome::Created)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        check_key(key)?;
        let state = self.lock();
        state.check_layout(key)?;
        match state.objects.get(key) {
            Some(entry) => Ok(entry.bytes.clone()),
            None => Err(StoreError::NotFound {
                key: key.to_string(),
            }),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(key)?;
        let state = self.lock();
        state.check_layout(key)?;
        Ok(state.objects.get(key).map(|entry| ObjectInfo {
            key: key.to_string(),
            len: entry.bytes.len() as u64,
            retain_until: entry.retain_until,
            legal_hold: state.holds.contains(key),
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let state = self.lock();
        Ok(state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect())
    }

    async fn set_legal_hold(&self, key: &str, hold: bool) -> Result<(), StoreError> {
        check_key(key)?;
        let mut state = self.lock();
        if hold {
            state.check_layout(key)?;
            if !state.objects.contains_key(key) {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                });
            }
            state.holds.insert(key.to_string());
        } else {
            state.holds.remove(key);
        }
        Ok(())
    }

    async fn prune(&self, now: OffsetDateTime) -> Result<PruneReport, StoreError> {
        let mut state = self.lock();
        let mut report = PruneReport::default();
        let State { objects, holds } = &mut *state;
        objects.retain(|key, entry| {
            if entry.retain_until >= now {
                report.retained += 1;
                true
            } else if holds.contains(key) {
                report.held.push(key.clone());
                true
            } else {
                report.deleted.push(key.clone());
                false
            }
        });
        Ok(report)
    }
}
