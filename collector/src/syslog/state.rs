//! Chain state that survives a restart: per device stream the next seq, the
//! chain head and the next byte offset; the digest chain; and segments
//! stored but not yet listed in a digest.
//!
//! The store is the truth, the checkpoint a shortcut: at start the
//! checkpoint (`STATE/syslog/checkpoint`, checksummed like the agent's,
//! previous generation kept as `checkpoint.prev`) is rolled forward over
//! every record and digest the store holds beyond it. So a crash between a
//! store write and the next checkpoint never forks a chain, and a lost
//! state directory costs a full read of the collector's own objects, not
//! the chain.
//!
//! The one window the store cannot cover is a crash between writing a
//! segment's payload and its record. Before the payload is written the
//! record is saved in `STATE/syslog/inflight/` (fsynced); at start each
//! in-flight record is completed when its payload is in the store (the
//! payload without its record would be a verification error) and dropped
//! otherwise (then nothing of that segment reached the store).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use custody_evidence::digest::{DigestBody, DigestEntry, DIGEST_NAMESPACE};
use custody_evidence::layout::{self, ParsedKey};
use custody_evidence::segment::SegmentMeta;
use custody_evidence::sign::HostKey;
use custody_evidence::{HostId, Sha256, StreamId};
use custody_store::{ObjectStore, PutOptions};
use serde::{Deserialize, Serialize};

const HEADER: &str = "custody-syslog-checkpoint v1 sha256=";
const CURRENT: &str = "checkpoint";
const PREVIOUS: &str = "checkpoint.prev";
const INFLIGHT: &str = "inflight";

/// One device stream's chain position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub next_seq: u64,
    /// Chain hash of segment `next_seq - 1`.
    pub head: Option<Sha256>,
    /// Bytes of the stream stored so far: the next segment's `range.start`.
    pub next_offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestState {
    pub next_seq: u64,
    pub prev: Option<Sha256>,
    /// End of the previous digest's window (RFC 3339 UTC).
    pub window_start: Option<String>,
    /// Stored segments not yet listed in a digest.
    pub pending: Vec<DigestEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub streams: BTreeMap<StreamId, StreamHead>,
    pub digest: DigestState,
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
        .ok()
        .and_then(|h| h.strip_prefix(HEADER))
        .with_context(|| format!("{}: unknown header (expected {HEADER}…)", path.display()))?;
    let want: Sha256 = header
        .parse()
        .with_context(|| format!("{}: bad checksum in header", path.display()))?;
    let body = &bytes[nl + 1..];
    if Sha256::digest(body) != want {
        bail!("{}: checksum mismatch: torn or altered", path.display());
    }
    serde_json::from_slice(body).with_context(|| format!("{}: body does not parse", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let dest = dir.join(name);
    let mut f =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &dest).with_context(|| format!("cannot rename to {}", dest.display()))?;
    sync_dir(dir)
}

/// Creates `STATE/syslog/` and its `inflight/` (0700: beside the key).
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.join(INFLIGHT))
        .with_context(|| format!("cannot create syslog state directory {}", dir.display()))
}

/// Saves the checkpoint, keeping the previous generation.
pub fn save(dir: &Path, cp: &Checkpoint) -> anyhow::Result<()> {
    let cur = dir.join(CURRENT);
    if cur.exists() {
        fs::copy(&cur, dir.join(PREVIOUS))
            .with_context(|| format!("cannot keep {} as {PREVIOUS}", cur.display()))?;
    }
    write_atomic(dir, CURRENT, &encode(cp))
}

/// The newest readable generation, or an empty checkpoint.
pub fn load(dir: &Path) -> anyhow::Result<Checkpoint> {
    let mut why = Vec::new();
    for name in [CURRENT, PREVIOUS] {
        let path = dir.join(name);
        match fs::read(&path) {
            Ok(bytes) => match decode(&bytes, &path) {
                Ok(cp) => {
                    if !why.is_empty() {
                        tracing::warn!("syslog checkpoint: {}; using {PREVIOUS}", why.join("; "));
                    }
                    return Ok(cp);
                }
                Err(e) => why.push(format!("{e:#}")),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
    if !why.is_empty() {
        tracing::warn!(
            "syslog checkpoint unusable ({}); rebuilding the chain state from the store",
            why.join("; ")
        );
    }
    Ok(Checkpoint::default())
}

fn inflight_path(dir: &Path, stream: &StreamId, seq: u64) -> PathBuf {
    dir.join(INFLIGHT)
        .join(format!("{stream}.{seq:020}.seg.json"))
}

/// Saves a segment record before its payload is written to the store.
pub fn write_inflight(
    dir: &Path,
    stream: &StreamId,
    seq: u64,
    record: &[u8],
) -> anyhow::Result<()> {
    let path = inflight_path(dir, stream, seq);
    let mut f =
        fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(record)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    sync_dir(&dir.join(INFLIGHT))
}

/// Forgets an in-flight record once the record is in the store. Not
/// fsynced: if the removal is lost, the start-up check finds the record
/// already stored and removes it again.
pub fn remove_inflight(dir: &Path, stream: &StreamId, seq: u64) {
    let path = inflight_path(dir, stream, seq);
    if let Err(e) = fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove an in-flight record; it is checked again at the next start");
    }
}

async fn put(
    store: &dyn ObjectStore,
    key: &str,
    bytes: &[u8],
    retain_until: time::OffsetDateTime,
) -> anyhow::Result<()> {
    store
        .put(key, bytes, PutOptions { retain_until })
        .await
        .with_context(|| format!("writing {key} to {}", store.describe()))?;
    Ok(())
}

/// Completes or drops the in-flight records left by a crash.
async fn finish_inflight(dir: &Path, store: &dyn ObjectStore) -> anyhow::Result<()> {
    let inflight = dir.join(INFLIGHT);
    let mut entries: Vec<PathBuf> = fs::read_dir(&inflight)
        .with_context(|| format!("cannot list {}", inflight.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let meta = match SegmentMeta::decode(&bytes) {
            Ok(m) => m,
            Err(e) => {
                // A torn in-flight file: it was never followed by a payload write.
                tracing::warn!(path = %path.display(), error = %e, "dropping an unreadable in-flight record (torn write before its payload was stored)");
                let _ = fs::remove_file(&path);
                continue;
            }
        };
        let payload = layout::segment_payload_key(
            &meta.host_id,
            &meta.stream_id,
            meta.seq,
            &meta.object_sha256,
        );
        let record = layout::segment_meta_key(
            &meta.host_id,
            &meta.stream_id,
            meta.seq,
            &meta.object_sha256,
        );
        if store
            .head(&payload)
            .await
            .with_context(|| format!("checking {payload}"))?
            .is_some()
        {
            put(store, &record, &bytes, meta.retain_until).await?;
            tracing::info!(stream = %meta.stream_id, seq = meta.seq.0, "completed a segment interrupted by a crash: its record is now stored beside its payload");
        } else {
            tracing::error!(
                stream = %meta.stream_id,
                seq = meta.seq.0,
                bytes = meta.raw_len,
                "the collector stopped before this segment reached the store: its {} bytes of syslog messages were lost \
                 (nothing of it is in the store, so the chain continues without a gap)",
                meta.raw_len
            );
        }
        fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Loads the checkpoint and rolls it forward over the store; also re-signs
/// a digest whose signature did not reach the store (Ed25519 signatures are
/// deterministic, so the same bytes are written).
pub async fn recover(
    dir: &Path,
    store: &dyn ObjectStore,
    host: &HostId,
    key: &HostKey,
    retention: &custody_evidence::retention::RetentionPolicy,
) -> anyhow::Result<Checkpoint> {
    prepare(dir)?;
    finish_inflight(dir, store).await?;
    let mut cp = load(dir)?;

    let prefix = format!("{}streams/", layout::host_prefix(host));
    let names = store
        .list(&prefix)
        .await
        .with_context(|| format!("listing {prefix} in {}", store.describe()))?;
    let mut records: BTreeMap<StreamId, Vec<(u64, String)>> = BTreeMap::new();
    for name in names {
        if let Some(ParsedKey::SegmentMeta { stream, seq, .. }) = layout::parse_key(&name) {
            let from = cp.streams.get(&stream).map_or(0, |s| s.next_seq);
            if seq.0 >= from {
                records.entry(stream).or_default().push((seq.0, name));
            }
        }
    }
    for (stream, mut recs) in records {
        recs.sort();
        let st = cp.streams.entry(stream.clone()).or_default();
        for (seq, name) in recs {
            if seq != st.next_seq {
                bail!(
                    "store {}: stream {stream} of host {host} has segment {seq} where {} was expected (two records for \
                     one seq, or a gap): another process writes under this collector's host id, or the store was \
                     altered. Run custody-verify on the store; give each collector its own --host-id",
                    store.describe(),
                    st.next_seq
                );
            }
            let bytes = store
                .get(&name)
                .await
                .with_context(|| format!("reading {name}"))?;
            let meta = SegmentMeta::decode(&bytes).with_context(|| format!("record {name}"))?;
            if meta.prev_segment != st.head {
                bail!("store {}: record {name} does not chain to segment {}: run custody-verify on the store", store.describe(), seq.saturating_sub(1));
            }
            st.next_seq = seq + 1;
            st.head = Some(SegmentMeta::chain_hash(&bytes));
            st.next_offset = meta.range.end;
            cp.digest.pending.push(DigestEntry {
                stream_id: meta.stream_id.clone(),
                seq: meta.seq,
                meta_sha256: SegmentMeta::chain_hash(&bytes),
                object_sha256: meta.object_sha256,
                raw_sha256: meta.raw_sha256,
            });
            tracing::info!(%stream, seq, "syslog chain state rolled forward over a stored segment");
        }
    }

    let prefix = layout::digest_prefix(host);
    let names = store
        .list(&prefix)
        .await
        .with_context(|| format!("listing {prefix} in {}", store.describe()))?;
    let mut sigs = std::collections::BTreeSet::new();
    let mut bodies = Vec::new();
    for name in names {
        match layout::parse_key(&name) {
            Some(ParsedKey::Digest { seq, .. }) if seq >= cp.digest.next_seq => {
                bodies.push((seq, name))
            }
            Some(ParsedKey::DigestSig { .. }) => {
                sigs.insert(name);
            }
            _ => {}
        }
    }
    bodies.sort();
    for (seq, name) in bodies {
        if seq != cp.digest.next_seq {
            bail!("store {}: digest {seq} of host {host} where {} was expected: run custody-verify on the store", store.describe(), cp.digest.next_seq);
        }
        let bytes = store
            .get(&name)
            .await
            .with_context(|| format!("reading {name}"))?;
        let body = DigestBody::decode(&bytes).with_context(|| format!("digest {name}"))?;
        let sig_name = format!("{name}.sig");
        if !sigs.contains(&sig_name) {
            let sig = key
                .sign(DIGEST_NAMESPACE, &bytes)
                .context("re-signing a digest")?;
            put(
                store,
                &sig_name,
                sig.as_bytes(),
                retention.retain_until(body.window_end),
            )
            .await?;
            tracing::info!(
                seq,
                "stored the signature of a digest interrupted by a crash"
            );
        }
        cp.digest.next_seq = seq + 1;
        cp.digest.prev = Some(Sha256::digest(&bytes));
        cp.digest.window_start = Some(custody_evidence::timefmt::format_utc(body.window_end));
        cp.digest.pending.retain(|e| {
            !body
                .segments
                .iter()
                .any(|x| x.stream_id == e.stream_id && x.seq == e.seq)
        });
    }
    save(dir, &cp)?;
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_round_trip_and_torn_fallback() {
        let dir = tempfile::tempdir().unwrap();
        prepare(dir.path()).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Checkpoint::default());
        let mut cp = Checkpoint::default();
        cp.streams.insert(
            StreamId::new("fw01").unwrap(),
            StreamHead {
                next_seq: 3,
                head: Some(Sha256::digest(b"x")),
                next_offset: 99,
            },
        );
        save(dir.path(), &cp).unwrap();
        assert_eq!(load(dir.path()).unwrap(), cp);
        let mut cp2 = cp.clone();
        cp2.digest.next_seq = 5;
        save(dir.path(), &cp2).unwrap();
        // A torn current generation falls back to the previous one.
        fs::write(
            dir.path().join(CURRENT),
            b"custody-syslog-checkpoint v1 sha256=00",
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap(), cp);
    }
}

#[cfg(test)]
mod recovery_tests {
    use super::*;
    use custody_evidence::retention::{Level, RetentionPolicy};
    use custody_evidence::segment::{
        compress_payload, ByteRange, Framing, Source, Split, SyslogKind, SyslogSource,
        SyslogTransport, SEGMENT_FORMAT_V1,
    };
    use custody_evidence::{Category, InstanceId, SegmentSeq};
    use custody_store::MemoryStore;

    fn segment(host: &HostId, stream: &StreamId, raw: &[u8]) -> (SegmentMeta, Vec<u8>, Vec<u8>) {
        let object = compress_payload(raw, 3).unwrap();
        let now = custody_evidence::timefmt::now_utc_micros();
        let meta = SegmentMeta {
            format: SEGMENT_FORMAT_V1.into(),
            host_id: host.clone(),
            stream_id: stream.clone(),
            category: Category::Os,
            seq: SegmentSeq(0),
            agent_instance: InstanceId::new("i-1").unwrap(),
            framing: Framing::OctetCounted,
            source: Source::Syslog(SyslogSource {
                kind: SyslogKind::Syslog,
                device: stream.to_string(),
                transport: SyslogTransport::Udp,
                peer: "192.0.2.1".into(),
                core_system: false,
            }),
            range: ByteRange {
                start: 0,
                end: raw.len() as u64,
            },
            split: Split::default(),
            first_read: now,
            last_read: now,
            raw_len: raw.len() as u64,
            raw_sha256: Sha256::digest(raw),
            object_len: object.len() as u64,
            object_sha256: Sha256::digest(&object),
            prev_segment: None,
            retain_until: now + time::Duration::days(200),
        };
        let record = meta.encode();
        (meta, record, object)
    }

    /// A crash after the payload was stored and before its record: the
    /// record is completed from `inflight/` and the chain continues after it.
    /// A crash before the payload: the in-flight record is dropped.
    #[tokio::test]
    async fn inflight_records_are_completed_or_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new();
        let host = HostId::new("c1").unwrap();
        let key = HostKey::generate();
        let policy = RetentionPolicy::new(Level::C, None).unwrap();
        prepare(dir.path()).unwrap();
        let a = StreamId::new("fw-a").unwrap();
        let b = StreamId::new("fw-b").unwrap();
        let (meta_a, rec_a, obj_a) = segment(&host, &a, b"5 <1>ab");
        let (_, rec_b, _) = segment(&host, &b, b"5 <1>cd");
        let opts = PutOptions {
            retain_until: meta_a.retain_until,
        };
        let payload_a = layout::segment_payload_key(&host, &a, meta_a.seq, &meta_a.object_sha256);
        store.put(&payload_a, &obj_a, opts).await.unwrap();
        write_inflight(dir.path(), &a, 0, &rec_a).unwrap();
        write_inflight(dir.path(), &b, 0, &rec_b).unwrap();

        let cp = recover(dir.path(), &store, &host, &key, &policy)
            .await
            .unwrap();
        let record_a = layout::segment_meta_key(&host, &a, meta_a.seq, &meta_a.object_sha256);
        assert_eq!(store.get(&record_a).await.unwrap(), rec_a);
        assert_eq!(cp.streams[&a].next_seq, 1);
        assert_eq!(cp.streams[&a].head, Some(SegmentMeta::chain_hash(&rec_a)));
        assert_eq!(cp.streams[&a].next_offset, 7);
        assert!(!cp.streams.contains_key(&b));
        assert_eq!(cp.digest.pending.len(), 1);
        assert_eq!(fs::read_dir(dir.path().join(INFLIGHT)).unwrap().count(), 0);
    }
}
