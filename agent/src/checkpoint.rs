//! The checkpoint: how far every file has been read into durable segments,
//! each stream's chain head, and the digest chain's state.
//!
//! Written atomically (temp file, fsync, rename, fsync the directory) and
//! checksummed: the first line is `custody-checkpoint v1 sha256=<hex>` over
//! the JSON body that follows, so a torn write is detected, never parsed.
//! The previous generation is kept as `checkpoint.prev`; when the current
//! one is missing or torn the agent falls back to it and rolls forward from
//! the spool (see `spool::recover`), so nothing is read twice or skipped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use custody_evidence::digest::DigestEntry;
use custody_evidence::{Sha256, StreamId};
use serde::{Deserialize, Serialize};

use crate::fingerprint::{FileKey, Fingerprint, TailCheck};

const HEADER: &str = "custody-checkpoint v1 sha256=";
pub const CURRENT: &str = "checkpoint";
pub const PREVIOUS: &str = "checkpoint.prev";

/// One file's committed read position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub path: String,
    pub key: FileKey,
    pub fingerprint: Fingerprint,
    /// Every byte before this offset is in a durable segment.
    pub offset: u64,
    /// Checks the bytes before `offset`; `None` when `offset == 0`.
    pub tail: Option<TailCheck>,
    /// The last committed segment ended inside a line or record.
    pub mid_unit: bool,
}

/// A journal stream's committed read position (FORMAT.md §16): every
/// entry up to and including `cursor` is in a durable segment, and so are
/// the first `skip` bytes of the entry after it (an entry larger than a
/// segment is stored in pieces).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalState {
    /// `__CURSOR` of the last entry wholly durable; `None`: none yet.
    pub cursor: Option<String>,
    /// Bytes of the entry after `cursor` already durable (0: none).
    pub skip: u64,
    /// End of the stream's raw bytes so far (the next segment's `range.start`).
    pub offset: u64,
}

/// What a durable segment leaves committed, kept beside it in the spool so
/// that a checkpoint can be rolled forward. Untagged: a file's state is
/// stored exactly as before journal streams existed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StateAfter {
    File(FileState),
    Journal {
        journal: JournalState,
    },
    /// A Windows Event Log channel's bookmark (FORMAT.md §17.4).
    EventLog {
        eventlog: crate::eventlog::reader::ChannelState,
    },
    /// A web-root inventory's progress (FORMAT.md §18).
    Inventory {
        inventory: crate::webroot::InventoryState,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    pub next_seq: u64,
    /// Chain hash of segment `next_seq - 1`.
    pub head: Option<Sha256>,
    pub files: Vec<FileState>,
    /// Journal streams only: the committed cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalState>,
    /// For a Windows Event Log stream: its channel's bookmark and position
    /// (FORMAT.md §17.4). Absent for file streams (and in checkpoints
    /// written before event log sources existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<crate::eventlog::reader::ChannelState>,
    /// For a webroot stream: the last durable inventory part (FORMAT.md §18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<crate::webroot::InventoryState>,
}

impl StreamState {
    pub fn file_mut(&mut self, key: FileKey) -> Option<&mut FileState> {
        self.files.iter_mut().find(|f| f.key == key)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestState {
    pub next_seq: u64,
    /// SHA-256 of the previous digest body.
    pub prev: Option<Sha256>,
    /// RFC 3339 UTC end of the previous digest's window (start of the next).
    pub window_start: Option<String>,
    /// Committed segments not yet listed in a digest.
    pub pending: Vec<DigestEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub streams: BTreeMap<StreamId, StreamState>,
    pub digest: DigestState,
}

/// Which generation a checkpoint was loaded from, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loaded {
    Fresh,
    Current,
    /// The current generation was missing or damaged (reason given).
    Previous(String),
}

fn encode(cp: &Checkpoint) -> Vec<u8> {
    let body = serde_json::to_vec(cp).expect("checkpoint serializes");
    let mut out = format!("{HEADER}{}\n", Sha256::digest(&body)).into_bytes();
    out.extend_from_slice(&body);
    out
}

fn decode(bytes: &[u8], path: &Path) -> anyhow::Result<Checkpoint> {
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .with_context(|| format!("{}: no header line (torn write?)", path.display()))?;
    let header = std::str::from_utf8(&bytes[..nl])
        .with_context(|| format!("{}: header is not text", path.display()))?;
    let Some(hex) = header.strip_prefix(HEADER) else {
        bail!(
            "{}: unknown header {header:?} (expected {HEADER}…)",
            path.display()
        );
    };
    let want: Sha256 = hex
        .parse()
        .with_context(|| format!("{}: bad checksum in header", path.display()))?;
    let body = &bytes[nl + 1..];
    let got = Sha256::digest(body);
    if got != want {
        bail!(
            "{}: checksum mismatch (header {want}, body {got}): torn or altered",
            path.display()
        );
    }
    serde_json::from_slice(body).with_context(|| format!("{}: body does not parse", path.display()))
}

/// Reads the newest valid generation from `dir`.
pub fn load(dir: &Path) -> anyhow::Result<(Checkpoint, Loaded)> {
    let cur = dir.join(CURRENT);
    let prev = dir.join(PREVIOUS);
    let read = |p: &Path| -> anyhow::Result<Option<Checkpoint>> {
        match fs::read(p) {
            Ok(b) => decode(&b, p).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    };
    match read(&cur) {
        Ok(Some(cp)) => Ok((cp, Loaded::Current)),
        cur_result => {
            let why = match &cur_result {
                Ok(None) => "missing".to_string(),
                Err(e) => format!("{e:#}"),
                Ok(Some(_)) => unreachable!(),
            };
            match read(&prev) {
                Ok(Some(cp)) => Ok((cp, Loaded::Previous(why))),
                Ok(None) if matches!(cur_result, Ok(None)) => Ok((Checkpoint::default(), Loaded::Fresh)),
                Ok(None) => bail!(
                    "checkpoint {} is damaged ({why}) and there is no previous generation; \
                     refusing to guess where reading stopped. Inspect the spool and store, then \
                     move the damaged file away to start from the store's current state",
                    cur.display()
                ),
                Err(e) => bail!(
                    "both checkpoint generations in {} are damaged: current: {why}; previous: {e:#}. \
                     Refusing to guess where reading stopped",
                    dir.display()
                ),
            }
        }
    }
}

/// Atomically replaces the checkpoint, keeping the old one as the previous
/// generation.
pub fn save(dir: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let cur = dir.join(CURRENT);
    let tmp: PathBuf = dir.join(".checkpoint.tmp");
    write_durably(&tmp, &encode(cp))?;
    match fs::rename(&cur, dir.join(PREVIOUS)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("keeping previous checkpoint {}", cur.display()))
        }
    }
    fs::rename(&tmp, &cur)
        .with_context(|| format!("renaming {} to {}", tmp.display(), cur.display()))?;
    sync_dir(dir)
}

/// temp file → write → fsync; the caller renames.
pub fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    Ok(())
}

pub fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    crate::platform::sync_dir(dir).with_context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_current_falls_back_to_previous() {
        let dir = tempfile::tempdir().unwrap();
        let mut cp = Checkpoint::default();
        cp.digest.next_seq = 1;
        save(dir.path(), &cp).unwrap();
        cp.digest.next_seq = 2;
        save(dir.path(), &cp).unwrap();
        assert_eq!(load(dir.path()).unwrap(), (cp.clone(), Loaded::Current));
        let cur = dir.path().join(CURRENT);
        let bytes = fs::read(&cur).unwrap();
        fs::write(&cur, &bytes[..bytes.len() - 3]).unwrap();
        let (got, how) = load(dir.path()).unwrap();
        assert_eq!(got.digest.next_seq, 1);
        assert!(matches!(how, Loaded::Previous(why) if why.contains("checksum mismatch")));
    }

    #[test]
    fn damaged_without_previous_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CURRENT), b"garbage").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("refusing to guess"), "{err}");
    }
}
