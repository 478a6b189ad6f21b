//! The filesystem store, the embedded default: one directory, one file per
//! object, written so that a name, once published, never changes.
//!
//! ```text
//! ROOT/.custody-store.json        {"format":"custody.fsstore.v1"} (marks a store root)
//! ROOT/<key>                      the object's bytes, mode 0444
//! ROOT/.retention/<key>.json      {"format":"custody.retention.v1","retain_until":…,"sha256":…,"len":…}
//! ROOT/.holds/<key>               exists ⇔ the object is under legal hold
//! ROOT/**/.tmp-*                  a write in progress (or interrupted); never listed
//! ```
//!
//! A put writes a temp file in the destination directory, `sync_all`s it,
//! makes it read-only and publishes it with `hard_link` (on Windows: a
//! rename that refuses to replace, `MoveFileExW` without
//! `MOVEFILE_REPLACE_EXISTING`), which fails if the
//! name exists: nothing is ever overwritten. The retention record is
//! published first, so an object never exists without one. Every directory
//! that gained or lost a name is fsynced before the call returns.
//!
//! The blocking `*_sync` methods do the work; the [`ObjectStore`] impl runs
//! them on tokio's blocking pool, and binaries without a runtime (the
//! verifier) call them directly.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::{
    check_key, format_utc, parse_utc, stored_precision, ObjectInfo, ObjectStore, PruneReport,
    PutOptions, PutOutcome, StoreError,
};

/// Name of the marker file that makes a directory a store root.
pub const MARKER_NAME: &str = ".custody-store.json";
/// Format written in the marker; readers refuse any other.
pub const FORMAT: &str = "custody.fsstore.v1";
/// Format of each retention record.
pub const RETENTION_FORMAT: &str = "custody.retention.v1";
/// Format of each legal-hold file (its presence is what counts).
pub const HOLD_FORMAT: &str = "custody.hold.v1";
const RETENTION_DIR: &str = ".retention";
const HOLDS_DIR: &str = ".holds";
const TMP_PREFIX: &str = ".tmp-";
/// Retention records and markers are tiny; refuse to slurp a huge file put there by mistake.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// The filesystem store. Cheap to clone (it is just its root path).
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

/// `ROOT/.retention/<key>.json`, field order as written.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRecord {
    format: String,
    retain_until: String,
    sha256: String,
    len: u64,
}

/// A retention record after checking.
#[derive(Debug)]
struct Retention {
    retain_until: OffsetDateTime,
    sha256: String,
    len: u64,
}

/// Why a retention record could not be used.
enum RecordProblem {
    Missing,
    Bad(String),
    Io(StoreError),
}

/// What `publish` found at the destination name.
enum Published {
    Created,
    NameTaken,
}

impl FsStore {
    /// Opens the store at `root` for writing, creating the directory (and its
    /// marker) if it is missing or empty. Refuses a non-empty directory
    /// without the marker, so a typo in the config cannot scatter evidence
    /// into an unrelated directory, and checks that the root is writable now
    /// rather than at the first shipment.
    pub fn open(root: impl Into<PathBuf>) -> Result<FsStore, StoreError> {
        let store = FsStore { root: root.into() };
        let root = store.root.clone();
        match fs::metadata(&root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => store.create_dir_chain(&root)?,
            Err(e) => return Err(store.read_err("stat", &root, e)),
        }
        store.require_dir()?;
        let marker = root.join(MARKER_NAME);
        match fs::symlink_metadata(&marker) {
            Ok(_) => store.check_marker()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut entries =
                    fs::read_dir(&root).map_err(|e| store.read_err("list", &root, e))?;
                if entries.next().is_some() {
                    return Err(not_a_store(
                        &root,
                        "the directory is not empty and has no .custody-store.json marker, so it is not a custody \
                         store; point the store at a new or empty directory (or at the store's own root)",
                    ));
                }
                let body = serde_json::to_vec(&serde_json::json!({ "format": FORMAT }))
                    .map_err(|e| store.write_err("encode", &marker, io::Error::other(e)))?;
                match store.publish(&root, MARKER_NAME, &body)? {
                    Published::Created => {}
                    // Another opener raced us; its marker must be a valid one.
                    Published::NameTaken => store.check_marker()?,
                }
            }
            Err(e) => return Err(store.read_err("stat", &marker, e)),
        }
        // Probe: fail now, with the fix in the message, not at the first put.
        let probe = store.create_temp(&root)?;
        drop(probe);
        Ok(store)
    }

    /// Opens an existing store for reading (the verifier, `custody-verify`).
    /// Never creates anything; refuses a directory without the marker.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<FsStore, StoreError> {
        let store = FsStore { root: root.into() };
        match fs::metadata(&store.root) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(not_a_store(
                    &store.root,
                    "no such directory; give the path of an existing custody store",
                ))
            }
            Err(e) => return Err(store.read_err("stat", &store.root, e)),
        }
        store.require_dir()?;
        if !store.root.join(MARKER_NAME).exists() {
            return Err(not_a_store(
                &store.root,
                "no .custody-store.json marker: this is not a custody store (or not its root directory)",
            ));
        }
        store.check_marker()?;
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Create-only write; see the crate documentation for the promises.
    pub fn put_sync(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        check_key(key)?;
        let path = self.root.join(key);
        if self.locate(key)?.is_some() {
            return self.compare_existing(key, &path, bytes);
        }
        let wrote_record = self.write_retention(key, bytes, opts)?;
        let (dir, name) = split_key(&self.root, key);
        let published = self
            .ensure_store_dir(key, &dir)
            .and_then(|()| self.publish(&dir, name, bytes));
        match published {
            Ok(Published::Created) => Ok(PutOutcome::Created),
            Ok(Published::NameTaken) => self.compare_existing(key, &path, bytes),
            Err(e) => {
                if wrote_record {
                    // Best effort: leave no record for an object that was not written.
                    let record = self.retention_path(key);
                    if remove_file(&record).is_ok() {
                        let _ = fsync_dir(record.parent().unwrap_or(&self.root));
                    }
                }
                Err(e)
            }
        }
    }

    /// The object's bytes as stored.
    pub fn get_sync(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        check_key(key)?;
        if self.locate(key)?.is_none() {
            return Err(StoreError::NotFound {
                key: key.to_string(),
            });
        }
        self.read_object(&self.root.join(key))
    }

    /// Whether an object exists, with its retention facts. An object whose
    /// retention record is missing or disagrees with it is reported as
    /// [`StoreError::Corrupt`]: the store cannot vouch for its retention.
    pub fn head_sync(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(key)?;
        let Some(meta) = self.locate(key)? else {
            return Ok(None);
        };
        let corrupt = |why: String| StoreError::Corrupt {
            what: format!("object {key}"),
            why,
        };
        let retention = match self.read_retention(key) {
            Ok(r) => r,
            Err(RecordProblem::Missing) => {
                return Err(corrupt(format!(
                    "its retention record {} is missing",
                    self.retention_path(key).display()
                )))
            }
            Err(RecordProblem::Bad(why)) => return Err(corrupt(why)),
            Err(RecordProblem::Io(e)) => return Err(e),
        };
        if retention.len != meta.len() {
            return Err(corrupt(format!(
                "the object is {} bytes but its retention record says {}",
                meta.len(),
                retention.len
            )));
        }
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            len: meta.len(),
            retain_until: retention.retain_until,
            legal_hold: self.is_held(key)?,
        }))
    }

    /// All object names starting with `prefix`, sorted. Walks the tree
    /// without following symlinks and skips dot-entries (bookkeeping and
    /// temp files) at every level.
    pub fn list_sync(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = self.walk(&self.root, prefix)?;
        keys.sort();
        Ok(keys)
    }

    /// Places or lifts a legal hold. Placing one on a missing object is
    /// [`StoreError::NotFound`]; lifting one that is not there is a no-op.
    pub fn set_legal_hold_sync(&self, key: &str, hold: bool) -> Result<(), StoreError> {
        check_key(key)?;
        let path = self.hold_path(key);
        if hold {
            if self.locate(key)?.is_none() {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                });
            }
            let dir = path.parent().unwrap_or(&self.root).to_path_buf();
            self.ensure_store_dir(key, &dir)?;
            let body = serde_json::to_vec(&serde_json::json!({
                "format": HOLD_FORMAT,
                "held_since": format_utc(OffsetDateTime::now_utc()),
            }))
            .map_err(|e| self.write_err("encode", &path, io::Error::other(e)))?;
            let name = key.rsplit('/').next().unwrap_or(key);
            // Already held is fine: the hold is the file's existence.
            self.publish(&dir, name, &body)?;
            Ok(())
        } else {
            match remove_file(&path) {
                Ok(()) => fsync_dir(path.parent().unwrap_or(&self.root))
                    .map_err(|e| self.write_err("fsync", path.parent().unwrap_or(&self.root), e)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.write_err("remove legal hold", &path, e)),
            }
        }
    }

    /// Deletes objects whose retain-until is before `now` and that are not
    /// held: the object first, then its retention record. An object whose
    /// record is missing or unreadable is kept and reported in
    /// [`PruneReport::unproven`]. Also removes expired retention records
    /// left without an object by an interrupted put or prune.
    pub fn prune_sync(&self, now: OffsetDateTime) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        for key in self.list_sync("")? {
            let retention = match self.read_retention(&key) {
                Ok(r) => r,
                Err(RecordProblem::Missing) => {
                    report
                        .unproven
                        .push((key, "retention record missing".to_string()));
                    continue;
                }
                Err(RecordProblem::Bad(why)) => {
                    report.unproven.push((key, why));
                    continue;
                }
                Err(RecordProblem::Io(e)) => {
                    report.unproven.push((key, e.to_string()));
                    continue;
                }
            };
            if retention.retain_until >= now {
                report.retained += 1;
            } else if self.is_held(&key)? {
                report.held.push(key);
            } else {
                self.remove_and_sync("delete object", &self.root.join(&key))?;
                self.remove_and_sync("delete retention record", &self.retention_path(&key))?;
                report.deleted.push(key);
            }
        }
        self.sweep_orphan_records(now)?;
        Ok(report)
    }

    // ---- layout -------------------------------------------------------

    fn retention_path(&self, key: &str) -> PathBuf {
        self.root.join(RETENTION_DIR).join(format!("{key}.json"))
    }

    fn hold_path(&self, key: &str) -> PathBuf {
        self.root.join(HOLDS_DIR).join(key)
    }

    fn is_held(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.hold_path(key);
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            // ENOTDIR: a leading part is a file, so no hold can exist below it.
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(false),
            Err(e) => Err(self.read_err("stat legal hold", &path, e)),
        }
    }

    fn require_dir(&self) -> Result<(), StoreError> {
        let meta = fs::metadata(&self.root).map_err(|e| self.read_err("stat", &self.root, e))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(not_a_store(
                &self.root,
                "exists but is not a directory; point the store at a directory",
            ))
        }
    }

    fn check_marker(&self) -> Result<(), StoreError> {
        let path = self.root.join(MARKER_NAME);
        let bytes = self.read_small(&path)?;
        let corrupt = |why: String| StoreError::Corrupt {
            what: format!("marker {}", path.display()),
            why,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(FORMAT) => Ok(()),
            Some(other) => Err(corrupt(format!(
                "unknown store format {other:?}; this build reads {FORMAT:?}"
            ))),
            None => Err(corrupt("no \"format\" field".to_string())),
        }
    }

    /// The object's metadata if it exists, checking every leading part of
    /// the name on the way without following symlinks.
    fn locate(&self, key: &str) -> Result<Option<fs::Metadata>, StoreError> {
        let mut path = self.root.clone();
        let parts: Vec<&str> = key.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let last = i + 1 == parts.len();
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(self.read_err("stat", &path, e)),
            };
            let ft = meta.file_type();
            if ft.is_symlink() {
                return Err(StoreError::Corrupt {
                    what: format!("path {}", path.display()),
                    why: "is a symbolic link; the store never follows links".to_string(),
                });
            }
            match (last, ft.is_dir(), ft.is_file()) {
                (true, false, true) => return Ok(Some(meta)),
                (true, true, _) => {
                    return Err(StoreError::InvalidKey {
                        key: key.to_string(),
                        why: "this name is already a directory holding other objects",
                    })
                }
                (false, true, _) => {}
                (false, false, true) => {
                    return Err(StoreError::InvalidKey {
                        key: key.to_string(),
                        why: "a leading part of this name is already an object",
                    })
                }
                (_, false, false) => {
                    return Err(StoreError::Corrupt {
                        what: format!("path {}", path.display()),
                        why: "is neither a regular file nor a directory".to_string(),
                    })
                }
            }
        }
        Ok(None)
    }

    // ---- retention records ---------------------------------------------

    /// Publishes the retention record for `key`; true if this call wrote it.
    fn write_retention(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<bool, StoreError> {
        let retain_until = stored_precision(opts.retain_until);
        let sha256 = hex::encode(Sha256::digest(bytes));
        let record = RetentionRecord {
            format: RETENTION_FORMAT.to_string(),
            retain_until: format_utc(retain_until),
            sha256: sha256.clone(),
            len: bytes.len() as u64,
        };
        let path = self.retention_path(key);
        let body = serde_json::to_vec(&record)
            .map_err(|e| self.write_err("encode", &path, io::Error::other(e)))?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        self.ensure_store_dir(key, &dir)?;
        match self.publish(&dir, &name, &body)? {
            Published::Created => Ok(true),
            Published::NameTaken => {
                // A record without its object is the trace of an interrupted
                // put (no object relies on it). Keep it only if it already
                // promises at least as much as this put asks for.
                if let Ok(old) = self.read_retention(key) {
                    if old.sha256 == sha256
                        && old.len == bytes.len() as u64
                        && old.retain_until >= retain_until
                    {
                        return Ok(false);
                    }
                }
                let tmp = self.write_temp(&dir, &body)?;
                replace_file(&tmp.path, &path)
                    .map_err(|e| self.write_err("replace retention record", &path, e))?;
                tmp.disarm();
                fsync_dir(&dir).map_err(|e| self.write_err("fsync", &dir, e))?;
                Ok(true)
            }
        }
    }

    fn read_retention(&self, key: &str) -> Result<Retention, RecordProblem> {
        let path = self.retention_path(key);
        let bytes = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => self.read_small(&path).map_err(RecordProblem::Io)?,
            Ok(_) => {
                return Err(RecordProblem::Bad(format!(
                    "retention record {} is not a regular file",
                    path.display()
                )))
            }
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::NotADirectory =>
            {
                return Err(RecordProblem::Missing)
            }
            Err(e) => return Err(RecordProblem::Io(self.read_err("stat", &path, e))),
        };
        let bad =
            |why: String| RecordProblem::Bad(format!("retention record {}: {why}", path.display()));
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        match value.get("format").and_then(|f| f.as_str()) {
            Some(RETENTION_FORMAT) => {}
            Some(other) => {
                return Err(bad(format!(
                    "unknown format {other:?}; this build reads {RETENTION_FORMAT:?}"
                )))
            }
            None => return Err(bad("no \"format\" field".to_string())),
        }
        let record: RetentionRecord =
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        let retain_until = parse_utc(&record.retain_until)
            .map_err(|e| bad(format!("retain_until {:?}: {e}", record.retain_until)))?;
        if record.sha256.len() != 64
            || !record
                .sha256
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad(format!(
                "sha256 {:?} is not 64 lowercase hex digits",
                record.sha256
            )));
        }
        Ok(Retention {
            retain_until,
            sha256: record.sha256,
            len: record.len,
        })
    }

    fn sweep_orphan_records(&self, now: OffsetDateTime) -> Result<(), StoreError> {
        let base = self.root.join(RETENTION_DIR);
        if !base.is_dir() {
            return Ok(());
        }
        for name in self.walk(&base, "")? {
            let Some(key) = name.strip_suffix(".json") else {
                continue;
            };
            // A key whose object exists (or cannot be checked) is not an orphan.
            if check_key(key).is_err() || !matches!(self.locate(key), Ok(None)) {
                continue;
            }
            // Only an orphan that proves it expired; a put in progress writes
            // a record promising the future, so it is never swept from under it.
            if matches!(self.read_retention(key), Ok(r) if r.retain_until < now) {
                self.remove_and_sync("delete orphan retention record", &self.retention_path(key))?;
            }
        }
        Ok(())
    }

    // ---- files and directories -------------------------------------------

    /// Relative names of regular files under `base` starting with `prefix`
    /// that are valid keys. Descends only into directories that can hold a match.
    fn walk(&self, base: &Path, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut found = Vec::new();
        let mut stack = vec![(base.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = fs::read_dir(&dir).map_err(|e| self.read_err("list", &dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| self.read_err("list", &dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let child = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                // file_type() does not follow symlinks: links are neither.
                let ft = entry
                    .file_type()
                    .map_err(|e| self.read_err("stat", &entry.path(), e))?;
                if ft.is_dir() {
                    let as_dir = format!("{child}/");
                    if as_dir.starts_with(prefix) || prefix.starts_with(&as_dir) {
                        stack.push((entry.path(), child));
                    }
                } else if ft.is_file() && child.starts_with(prefix) && check_key(&child).is_ok() {
                    found.push(child);
                }
            }
        }
        Ok(found)
    }

    /// Creates `dir` (inside the root) and any missing parents, refusing
    /// symlinks and non-directories on the way, fsyncing each new
    /// directory's parent so the new name is durable.
    fn ensure_store_dir(&self, key: &str, dir: &Path) -> Result<(), StoreError> {
        let rel = dir.strip_prefix(&self.root).unwrap_or(Path::new(""));
        let mut path = self.root.clone();
        for part in rel.components() {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(StoreError::Corrupt {
                        what: format!("path {}", path.display()),
                        why: "is a symbolic link; the store never follows links".to_string(),
                    })
                }
                Ok(_) => {
                    return Err(StoreError::InvalidKey {
                        key: key.to_string(),
                        why: "a leading part of this name is already an object (or another object's bookkeeping record)",
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::create_dir(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => continue,
                        Err(e) => return Err(self.write_err("create directory", &path, e)),
                    }
                    let parent = path.parent().unwrap_or(&self.root);
                    fsync_dir(parent).map_err(|e| self.write_err("fsync", parent, e))?;
                }
                Err(e) => return Err(self.read_err("stat", &path, e)),
            }
        }
        Ok(())
    }

    /// Creates `path` and missing ancestors outside any store (the root
    /// itself), fsyncing each new directory's parent.
    fn create_dir_chain(&self, path: &Path) -> Result<(), StoreError> {
        if path.is_dir() {
            return Ok(());
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.create_dir_chain(parent)?;
        }
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => return Ok(()),
            Err(e) => return Err(self.write_err("create directory", path, e)),
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fsync_dir(parent).map_err(|e| self.write_err("fsync", parent, e))
    }

    fn create_temp(&self, dir: &Path) -> Result<TempFile, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        let name = format!(
            "{TMP_PREFIX}{}-{}-{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        let path = dir.join(name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let file = options
            .open(&path)
            .map_err(|e| self.write_err("create temp file", &path, e))?;
        Ok(TempFile {
            path,
            file: Some(file),
            armed: true,
        })
    }

    /// A durable, read-only temp file in `dir` holding `bytes`.
    fn write_temp(&self, dir: &Path, bytes: &[u8]) -> Result<TempFile, StoreError> {
        let mut tmp = self.create_temp(dir)?;
        let path = tmp.path.clone();
        let file = tmp
            .file
            .as_mut()
            .ok_or_else(|| self.write_err("write", &path, io::Error::other("temp file closed")))?;
        file.write_all(bytes)
            .map_err(|e| self.write_err("write", &path, e))?;
        read_only_permissions(file)
            .and_then(|p| file.set_permissions(p))
            .map_err(|e| self.write_err("chmod 0444", &path, e))?;
        file.sync_all()
            .map_err(|e| self.write_err("fsync", &path, e))?;
        tmp.file = None;
        Ok(tmp)
    }

    /// Create-only publish of `bytes` as `dir/name`; never overwrites.
    fn publish(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<Published, StoreError> {
        let tmp = self.write_temp(dir, bytes)?;
        let target = dir.join(name);
        match link_new_name(&tmp.path, &target) {
            Ok(()) => {
                #[cfg(unix)]
                drop(tmp); // the temp name goes; the object keeps its new name
                #[cfg(not(unix))]
                tmp.disarm(); // renamed: there is no temp name left
                fsync_dir(dir).map_err(|e| self.write_err("fsync", dir, e))?;
                Ok(Published::Created)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Published::NameTaken),
            Err(e) => Err(self.write_err("publish", &target, e)),
        }
    }

    fn compare_existing(
        &self,
        key: &str,
        path: &Path,
        bytes: &[u8],
    ) -> Result<PutOutcome, StoreError> {
        let meta = fs::symlink_metadata(path).map_err(|e| self.read_err("stat", path, e))?;
        if meta.len() == bytes.len() as u64 && self.read_object(path)? == bytes {
            Ok(PutOutcome::AlreadyPresent)
        } else {
            Err(StoreError::Conflict {
                key: key.to_string(),
            })
        }
    }

    fn read_object(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        let mut file = open_no_follow(path).map_err(|e| self.read_err("open", path, e))?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| self.read_err("read", path, e))?;
        Ok(buf)
    }

    fn read_small(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        let file = open_no_follow(path).map_err(|e| self.read_err("open", path, e))?;
        let mut buf = Vec::new();
        file.take(MAX_RECORD_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| self.read_err("read", path, e))?;
        if buf.len() as u64 > MAX_RECORD_BYTES {
            return Err(StoreError::Corrupt {
                what: format!("record {}", path.display()),
                why: format!("larger than {MAX_RECORD_BYTES} bytes; not a store record"),
            });
        }
        Ok(buf)
    }

    fn remove_and_sync(&self, op: &'static str, path: &Path) -> Result<(), StoreError> {
        remove_file(path).map_err(|e| self.write_err(op, path, e))?;
        let dir = path.parent().unwrap_or(&self.root);
        fsync_dir(dir).map_err(|e| self.write_err("fsync", dir, e))
    }

    fn write_err(&self, op: &'static str, path: &Path, e: io::Error) -> StoreError {
        explain_io_error(op, path, &self.root, Access::Write, e)
    }

    fn read_err(&self, op: &'static str, path: &Path, e: io::Error) -> StoreError {
        explain_io_error(op, path, &self.root, Access::Read, e)
    }
}

/// Whether the failing operation was reading or changing the store; the
/// advice differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Turns an io error into [`StoreError::Io`], rewording the failures an
/// operator can fix (full disk, permissions, read-only mount) into what to do.
pub(crate) fn explain_io_error(
    op: &'static str,
    path: &Path,
    root: &Path,
    access: Access,
    e: io::Error,
) -> StoreError {
    let root = root.display();
    let advice = match (e.raw_os_error().map(errno::class), access) {
        (Some(errno::Class::Full), _) => {
            Some(format!("disk full: free space on the filesystem holding {root}; nothing was written ({e})"))
        }
        (Some(errno::Class::Denied), Access::Write) => Some(format!(
            "permission denied: make {root} (and everything under it) writable by the agent's user; \
             nothing was written ({e})"
        )),
        (Some(errno::Class::Denied), Access::Read) => {
            Some(format!("permission denied: make {root} (and everything under it) readable by this user ({e})"))
        }
        (Some(errno::Class::ReadOnly), _) => Some(format!(
            "read-only filesystem: {root} is mounted read-only; remount it read-write or choose another store \
             directory; nothing was written ({e})"
        )),
        _ => None,
    };
    let source = match advice {
        Some(msg) => io::Error::new(e.kind(), msg),
        None => e,
    };
    StoreError::Io {
        op,
        path: path.display().to_string(),
        cause: source,
    }
}

fn not_a_store(root: &Path, why: &str) -> StoreError {
    StoreError::Io {
        op: "open store",
        path: root.display().to_string(),
        cause: io::Error::new(io::ErrorKind::InvalidInput, why.to_string()),
    }
}

/// `(ROOT/<dirs of key>, <last component>)`.
fn split_key<'k>(root: &Path, key: &'k str) -> (PathBuf, &'k str) {
    match key.rsplit_once('/') {
        Some((dirs, name)) => (root.join(dirs), name),
        None => (root.to_path_buf(), key),
    }
}

/// The OS errors an operator can fix, by class. Windows reports Win32
/// error codes where Unix reports errno values.
mod errno {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Class {
        Full,
        Denied,
        ReadOnly,
        Other,
    }

    #[cfg(unix)]
    pub(crate) fn class(code: i32) -> Class {
        match code {
            libc::ENOSPC | libc::EDQUOT => Class::Full,
            libc::EACCES | libc::EPERM => Class::Denied,
            libc::EROFS => Class::ReadOnly,
            _ => Class::Other,
        }
    }

    /// ERROR_HANDLE_DISK_FULL, ERROR_DISK_FULL, ERROR_DISK_QUOTA_EXCEEDED;
    /// ERROR_ACCESS_DENIED; ERROR_WRITE_PROTECT.
    #[cfg(windows)]
    pub(crate) fn class(code: i32) -> Class {
        match code {
            39 | 112 | 1295 => Class::Full,
            5 => Class::Denied,
            19 => Class::ReadOnly,
            _ => Class::Other,
        }
    }
}

/// Published objects and records are read-only: mode 0444 on Unix, the
/// read-only attribute on Windows.
fn read_only_permissions(file: &File) -> io::Result<fs::Permissions> {
    #[cfg(unix)]
    {
        let _ = file;
        Ok(fs::Permissions::from_mode(0o444))
    }
    #[cfg(not(unix))]
    {
        let mut p = file.metadata()?.permissions();
        p.set_readonly(true);
        Ok(p)
    }
}

/// Gives the file at `from` the new name `to`, failing with
/// `AlreadyExists` if `to` exists: a hard link on Unix (the temp name is
/// removed afterwards); on Windows a rename without replace, because a
/// read-only file cannot be deleted there, so its temp name could not be
/// removed after linking.
fn link_new_name(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::hard_link(from, to)
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStrExt;
        use windows_sys::Win32::Storage::FileSystem::{MoveFileExW, MOVEFILE_WRITE_THROUGH};
        let wide = |p: &Path| p.as_os_str().encode_wide().chain([0]).collect::<Vec<u16>>();
        let (from, to) = (wide(from), wide(to));
        // SAFETY: both are NUL-terminated UTF-16 strings that outlive the call.
        #[allow(unsafe_code)]
        if unsafe { MoveFileExW(from.as_ptr(), to.as_ptr(), MOVEFILE_WRITE_THROUGH) } == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Replaces `to` with `from` (a retention record rewritten). Windows refuses
/// to replace a read-only file: its read-only attribute is cleared first.
fn replace_file(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(windows)]
    clear_read_only(to)?;
    fs::rename(from, to)
}

/// Removes a store file. On Windows a read-only file cannot be deleted:
/// its read-only attribute is cleared first (the file is going anyway).
fn remove_file(path: &Path) -> io::Result<()> {
    #[cfg(windows)]
    clear_read_only(path)?;
    fs::remove_file(path)
}

#[cfg(windows)]
fn clear_read_only(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut p = meta.permissions();
    if p.readonly() {
        #[allow(clippy::permissions_set_readonly_false)] // Windows: the attribute, not a mode
        p.set_readonly(false);
        fs::set_permissions(path, p)?;
    }
    Ok(())
}

/// Opens a store file for reading, refusing a symbolic link (a link
/// planted in the store must not make it read elsewhere).
fn open_no_follow(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        /// FILE_FLAG_OPEN_REPARSE_POINT: open a link itself, not its target.
        const OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(OPEN_REPARSE_POINT)
            .open(path)?;
        if file.metadata()?.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "is a symbolic link; the store never follows links",
            ));
        }
        Ok(file)
    }
}

/// Makes a directory's new or removed names durable. Windows has no
/// directory fsync (std cannot open a directory as a file); NTFS journals
/// its metadata, and each file's data was flushed before it was linked.
fn fsync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// A temp file that removes itself unless published.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
    armed: bool,
}

impl TempFile {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if self.armed {
            let _ = remove_file(&self.path);
        }
    }
}

/// Runs blocking filesystem work off the async executor.
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("filesystem store worker failed: {e}")))?
}

#[async_trait]
impl ObjectStore for FsStore {
    fn describe(&self) -> String {
        format!("filesystem store at {}", self.root.display())
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        let (store, key, bytes) = (self.clone(), key.to_string(), bytes.to_vec());
        blocking(move || store.put_sync(&key, &bytes, opts)).await
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.get_sync(&key)).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.head_sync(&key)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let (store, prefix) = (self.clone(), prefix.to_string());
        blocking(move || store.list_sync(&prefix)).await
    }

    async fn set_legal_hold(&self, key: &str, hold: bool) -> Result<(), StoreError> {
        let (store, key) = (self.clone(), key.to_string());
        blocking(move || store.set_legal_hold_sync(&key, hold)).await
    }

    async fn prune(&self, now: OffsetDateTime) -> Result<PruneReport, StoreError> {
        let store = self.clone();
        blocking(move || store.prune_sync(now)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS's own codes for the errors tested (errno; Win32 on Windows).
    #[cfg(unix)]
    mod code {
        pub const FULL: i32 = libc::ENOSPC;
        pub const DENIED: i32 = libc::EACCES;
        pub const PERM: i32 = libc::EPERM;
        pub const READ_ONLY: i32 = libc::EROFS;
        pub const IO: i32 = libc::EIO;
    }
    #[cfg(windows)]
    mod code {
        pub const FULL: i32 = 112; // ERROR_DISK_FULL
        pub const DENIED: i32 = 5; // ERROR_ACCESS_DENIED
        pub const PERM: i32 = 5;
        pub const READ_ONLY: i32 = 19; // ERROR_WRITE_PROTECT
        pub const IO: i32 = 1117; // ERROR_IO_DEVICE
    }

    fn os_err(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    #[test]
    fn operator_fixable_errors_say_what_to_do() {
        let root = Path::new("/srv/custody");
        let path = Path::new("/srv/custody/v1/x");
        let msg =
            |code, access| explain_io_error("write", path, root, access, os_err(code)).to_string();

        let full = msg(code::FULL, Access::Write);
        assert!(
            full.contains(
                "disk full: free space on the filesystem holding /srv/custody; nothing was written"
            ),
            "{full}"
        );
        assert!(full.starts_with("write /srv/custody/v1/x: "), "{full}");
        let denied = msg(code::DENIED, Access::Write);
        assert!(
            denied.contains("permission denied: make /srv/custody"),
            "{denied}"
        );
        assert!(denied.contains("writable by the agent's user"), "{denied}");
        assert!(msg(code::PERM, Access::Read).contains("readable by this user"));
        assert!(msg(code::READ_ONLY, Access::Write)
            .contains("read-only filesystem: /srv/custody is mounted read-only"));
        // Everything else passes through with its own text.
        let other = msg(code::IO, Access::Write);
        assert!(
            !other.contains("disk full") && !other.contains("permission denied"),
            "{other}"
        );
    }

    #[test]
    fn the_kind_survives_the_rewording() {
        let e = explain_io_error(
            "write",
            Path::new("/a"),
            Path::new("/"),
            Access::Write,
            os_err(code::DENIED),
        );
        match e {
            StoreError::Io { cause, .. } => {
                assert_eq!(cause.kind(), io::ErrorKind::PermissionDenied)
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
