//! The spool: the agent's write-ahead log. A segment is durable here before
//! the offset that produced it is committed to the checkpoint, and stays
//! until the store has acknowledged it. Records of shipped segments and
//! digests are kept a little longer (`*.shipped.json`) so that a fall-back
//! to the previous checkpoint generation can roll forward over them.
//!
//! ```text
//! spool/segments/<stream>/<seq:020>.zst          payload, written first
//! spool/segments/<stream>/<seq:020>.state.json   the file's committed state after it (agent-local)
//! spool/segments/<stream>/<seq:020>.seg.json     record: its presence makes the segment complete
//! spool/segments/<stream>/<seq:020>.shipped.json record after the store acknowledged it
//! spool/digests/<seq:020>.digest.json(.sig)      digest body and signature
//! spool/digests/<seq:020>.shipped.json           body after shipping
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use custody_evidence::StreamId;

use crate::checkpoint::{sync_dir, write_durably};

pub struct Spool {
    segments_dir: PathBuf,
    digests_dir: PathBuf,
    bytes: AtomicU64,
    count: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct PendingSegment {
    pub stream: StreamId,
    pub seq: u64,
    pub record: PathBuf,
    pub payload: PathBuf,
}

/// A spooled segment record as stored, with the file state beside it:
/// `(seq, record bytes, state bytes)`.
pub type SpooledRecord = (u64, Vec<u8>, Vec<u8>);

#[derive(Debug, Clone)]
pub struct PendingDigest {
    pub seq: u64,
    pub body: PathBuf,
    pub sig: PathBuf,
}

fn seq_of(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?;
    (stem.len() == 20).then(|| stem.parse().ok()).flatten()
}

fn sorted_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(names),
        Err(e) => {
            return Err(e).with_context(|| format!("listing spool directory {}", dir.display()))
        }
    };
    for entry in rd {
        let entry = entry.with_context(|| format!("listing spool directory {}", dir.display()))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

impl Spool {
    /// Opens (creating) the spool under `state_dir`, removing leftovers of
    /// interrupted writes: temp files, and payloads whose record was never
    /// written (their offsets were not committed, so they will be re-read).
    pub fn open(state_dir: &Path) -> anyhow::Result<Spool> {
        let root = state_dir.join("spool");
        let spool = Spool {
            segments_dir: root.join("segments"),
            digests_dir: root.join("digests"),
            bytes: AtomicU64::new(0),
            count: AtomicU64::new(0),
        };
        for d in [&spool.segments_dir, &spool.digests_dir] {
            fs::create_dir_all(d)
                .with_context(|| format!("creating spool directory {}", d.display()))?;
        }
        for stream in sorted_names(&spool.segments_dir)? {
            let dir = spool.segments_dir.join(&stream);
            for name in sorted_names(&dir)? {
                let path = dir.join(&name);
                if name.starts_with('.') {
                    fs::remove_file(&path)
                        .with_context(|| format!("removing temp file {}", path.display()))?;
                } else if let Some(seq) = seq_of(&name, ".state.json") {
                    let complete = dir.join(format!("{seq:020}.seg.json")).exists()
                        || dir.join(format!("{seq:020}.shipped.json")).exists();
                    if !complete {
                        fs::remove_file(&path)
                            .with_context(|| format!("removing {}", path.display()))?;
                    }
                } else if let Some(seq) = seq_of(&name, ".zst") {
                    if !dir.join(format!("{seq:020}.seg.json")).exists() {
                        tracing::warn!(path = %path.display(), "removing spooled payload without record (interrupted write; its bytes will be read again)");
                        fs::remove_file(&path)
                            .with_context(|| format!("removing {}", path.display()))?;
                    } else {
                        let len = fs::metadata(&path)
                            .with_context(|| format!("stat {}", path.display()))?
                            .len();
                        spool.bytes.fetch_add(len, Ordering::Relaxed);
                        spool.count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        for name in sorted_names(&spool.digests_dir)? {
            if name.starts_with('.') {
                let path = spool.digests_dir.join(&name);
                fs::remove_file(&path)
                    .with_context(|| format!("removing temp file {}", path.display()))?;
            }
        }
        Ok(spool)
    }

    /// Bytes of payload waiting to be shipped.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn segment_count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn publish(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let tmp = dir.join(format!(".{name}.tmp"));
        write_durably(&tmp, bytes)?;
        let dst = dir.join(name);
        fs::rename(&tmp, &dst)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dst.display()))
    }

    /// Makes one segment durable: payload, then record, then the directory.
    pub fn write_segment(
        &self,
        stream: &StreamId,
        seq: u64,
        payload: &[u8],
        record: &[u8],
        state: &[u8],
    ) -> anyhow::Result<()> {
        let dir = self.segments_dir.join(stream.as_str());
        if !dir.exists() {
            fs::create_dir_all(&dir)
                .with_context(|| format!("creating spool directory {}", dir.display()))?;
            sync_dir(&self.segments_dir)?;
        }
        let result = Self::publish(&dir, &format!("{seq:020}.zst"), payload)
            .and_then(|()| Self::publish(&dir, &format!("{seq:020}.state.json"), state))
            .and_then(|()| Self::publish(&dir, &format!("{seq:020}.seg.json"), record))
            .and_then(|()| sync_dir(&dir));
        if let Err(e) = result {
            // Leave nothing half-written behind: the bytes will be spooled again.
            let _ = fs::remove_file(dir.join(format!("{seq:020}.seg.json")));
            let _ = fs::remove_file(dir.join(format!("{seq:020}.zst")));
            let _ = fs::remove_file(dir.join(format!("{seq:020}.state.json")));
            let _ = fs::remove_file(dir.join(format!(".{seq:020}.zst.tmp")));
            let _ = fs::remove_file(dir.join(format!(".{seq:020}.state.json.tmp")));
            let _ = fs::remove_file(dir.join(format!(".{seq:020}.seg.json.tmp")));
            return Err(e);
        }
        self.bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn write_digest(&self, seq: u64, body: &[u8], sig: &[u8]) -> anyhow::Result<()> {
        let result = Self::publish(
            &self.digests_dir,
            &format!("{seq:020}.digest.json.sig"),
            sig,
        )
        .and_then(|()| Self::publish(&self.digests_dir, &format!("{seq:020}.digest.json"), body))
        .and_then(|()| sync_dir(&self.digests_dir));
        if let Err(e) = result {
            let _ = fs::remove_file(self.digests_dir.join(format!("{seq:020}.digest.json")));
            let _ = fs::remove_file(self.digests_dir.join(format!("{seq:020}.digest.json.sig")));
            return Err(e);
        }
        Ok(())
    }

    /// Complete segments not yet shipped, by stream then sequence.
    pub fn pending_segments(&self) -> anyhow::Result<Vec<PendingSegment>> {
        let mut out = Vec::new();
        for stream in sorted_names(&self.segments_dir)? {
            let Ok(stream_id) = StreamId::new(stream.clone()) else {
                continue;
            };
            let dir = self.segments_dir.join(&stream);
            for name in sorted_names(&dir)? {
                if let Some(seq) = seq_of(&name, ".seg.json") {
                    out.push(PendingSegment {
                        stream: stream_id.clone(),
                        seq,
                        record: dir.join(&name),
                        payload: dir.join(format!("{seq:020}.zst")),
                    });
                }
            }
        }
        Ok(out)
    }

    pub fn pending_digests(&self) -> anyhow::Result<Vec<PendingDigest>> {
        Ok(sorted_names(&self.digests_dir)?
            .into_iter()
            .filter_map(|name| seq_of(&name, ".digest.json"))
            .map(|seq| PendingDigest {
                seq,
                body: self.digests_dir.join(format!("{seq:020}.digest.json")),
                sig: self.digests_dir.join(format!("{seq:020}.digest.json.sig")),
            })
            .collect())
    }

    /// After the store acknowledged both objects: drop the payload, keep the record.
    pub fn mark_segment_shipped(
        &self,
        seg: &PendingSegment,
        payload_len: u64,
    ) -> anyhow::Result<()> {
        let shipped = seg
            .record
            .with_file_name(format!("{:020}.shipped.json", seg.seq));
        fs::rename(&seg.record, &shipped)
            .with_context(|| format!("renaming {}", seg.record.display()))?;
        fs::remove_file(&seg.payload)
            .with_context(|| format!("removing {}", seg.payload.display()))?;
        self.bytes
            .fetch_sub(payload_len.min(self.bytes()), Ordering::Relaxed);
        self.count.fetch_sub(1, Ordering::Relaxed);
        Ok(())
    }

    pub fn mark_digest_shipped(&self, d: &PendingDigest) -> anyhow::Result<()> {
        let shipped = self.digests_dir.join(format!("{:020}.shipped.json", d.seq));
        fs::rename(&d.body, &shipped).with_context(|| format!("renaming {}", d.body.display()))?;
        fs::remove_file(&d.sig).with_context(|| format!("removing {}", d.sig.display()))?;
        Ok(())
    }

    /// Records (pending or shipped) of `stream` with seq ≥ `from`, in order:
    /// what a checkpoint fall-back rolls forward over.
    pub fn records_from(&self, stream: &StreamId, from: u64) -> anyhow::Result<Vec<SpooledRecord>> {
        let dir = self.segments_dir.join(stream.as_str());
        let mut out = Vec::new();
        for name in sorted_names(&dir)? {
            let seq = seq_of(&name, ".seg.json").or_else(|| seq_of(&name, ".shipped.json"));
            if let Some(seq) = seq.filter(|s| *s >= from) {
                let path = dir.join(&name);
                let record =
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let state_path = dir.join(format!("{seq:020}.state.json"));
                let state = fs::read(&state_path)
                    .with_context(|| format!("reading {}", state_path.display()))?;
                out.push((seq, record, state));
            }
        }
        out.sort_by_key(|(s, _, _)| *s);
        Ok(out)
    }

    pub fn digests_from(&self, from: u64) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
        let mut out = Vec::new();
        for name in sorted_names(&self.digests_dir)? {
            let seq = seq_of(&name, ".digest.json").or_else(|| seq_of(&name, ".shipped.json"));
            if let Some(seq) = seq.filter(|s| *s >= from) {
                let path = self.digests_dir.join(&name);
                out.push((
                    seq,
                    fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
                ));
            }
        }
        out.sort_by_key(|(s, _)| *s);
        Ok(out)
    }

    /// Streams that have a spool directory.
    pub fn streams(&self) -> anyhow::Result<Vec<StreamId>> {
        Ok(sorted_names(&self.segments_dir)?
            .into_iter()
            .filter_map(|s| StreamId::new(s).ok())
            .collect())
    }

    /// Forgets shipped records below `below` (both checkpoint generations
    /// are past them, so no roll-forward can need them).
    pub fn forget_shipped_segments(&self, stream: &StreamId, below: u64) {
        let dir = self.segments_dir.join(stream.as_str());
        if let Ok(names) = sorted_names(&dir) {
            for name in names {
                if let Some(seq) = seq_of(&name, ".shipped.json").filter(|s| *s < below) {
                    let _ = fs::remove_file(dir.join(format!("{seq:020}.state.json")));
                    let _ = fs::remove_file(dir.join(name));
                }
            }
        }
    }

    pub fn forget_shipped_digests(&self, below: u64) {
        if let Ok(names) = sorted_names(&self.digests_dir) {
            for name in names {
                if seq_of(&name, ".shipped.json").is_some_and(|s| s < below) {
                    let _ = fs::remove_file(self.digests_dir.join(name));
                }
            }
        }
    }
}
