//! Synthetic stores of real, signed records and digests (no agent), for
//! the coverage tests and the benchmark: months of evidence in seconds.
//!
//! Every record, digest and signature is made with `custody-evidence`, so
//! the store verifies exactly as an agent's would. Payloads are real zstd
//! frames of a few log lines; one stream's payloads are the same bytes,
//! stored as hard links of one file (every name is still a regular file),
//! which keeps a six-month store of 100 hosts within a few GB.
#![allow(dead_code)] // each user takes a different part

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use custody_evidence::digest::{
    ClockState, DigestBody, DigestEntry, DIGEST_FORMAT_V1, DIGEST_NAMESPACE,
};
use custody_evidence::layout;
use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::segment::{
    compress_payload, ByteRange, Framing, JournalKind, JournalSource, SegmentMeta, Source,
    SourceFile, Split, SyslogKind, SyslogSource, SyslogTransport, SEGMENT_FORMAT_V1,
};
use custody_evidence::sign::HostKey;
use custody_evidence::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use time::{Duration, OffsetDateTime};

/// What kind of source a synthetic stream imitates.
#[derive(Debug, Clone)]
pub enum Kind {
    File(String),
    Journal,
    Syslog(String),
}

#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub id: String,
    pub category: Category,
    pub kind: Kind,
    /// Seqs whose record and payload are left out (a chain gap).
    pub skip: Vec<u64>,
    /// Each segment's raw bytes from its `first_read` (a payload of its
    /// own); `None`: the same few synthetic lines in every segment.
    pub lines: Option<fn(OffsetDateTime) -> String>,
}

#[derive(Debug, Clone)]
pub struct HostSpec {
    pub name: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
    pub segment_every: Duration,
    pub digest_every: Duration,
    pub retain_months: u32,
    pub streams: Vec<StreamSpec>,
}

/// The six streams of an agent host in the benchmark.
pub fn six_streams() -> Vec<StreamSpec> {
    let f = |id: &str, c, p: &str| StreamSpec {
        id: id.into(),
        category: c,
        kind: Kind::File(p.into()),
        skip: Vec::new(),
        lines: None,
    };
    vec![
        f("os.syslog", Category::Os, "/var/log/syslog"),
        f("logon.auth", Category::Logon, "/var/log/auth.log"),
        f("web.access", Category::Web, "/var/log/nginx/access.log"),
        f("web.error", Category::Web, "/var/log/nginx/error.log"),
        f("app.app", Category::App, "/srv/app/app.log"),
        StreamSpec {
            id: "os.journald".into(),
            category: Category::Os,
            kind: Kind::Journal,
            skip: Vec::new(),
            lines: None,
        },
    ]
}

/// Creates an empty filesystem store at `root` (the marker only).
pub fn init_store(root: &Path) -> io::Result<()> {
    fs::create_dir_all(root)?;
    fs::write(
        root.join(".custody-store.json"),
        b"{\"format\":\"custody.fsstore.v1\"}",
    )
}

fn write_obj(root: &Path, key: &str, bytes: &[u8]) -> io::Result<()> {
    let path = root.join(key);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, bytes)
}

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes one host's segments, digests, signatures and public key into the
/// store at `root`; returns the number of segments and digests written.
pub fn write_host(root: &Path, spec: &HostSpec) -> io::Result<(u64, u64)> {
    let host = HostId::new(spec.name.clone()).map_err(err)?;
    let key = HostKey::generate();
    let instance = InstanceId::new("11111111-1111-4111-8111-111111111111").map_err(err)?;
    let policy = RetentionPolicy::new(Level::D, Some(spec.retain_months)).map_err(err)?;
    let pk = key.public_key_line(host.as_str());
    write_obj(
        root,
        &layout::public_key_key(&host, &pk),
        format!("{pk}\n").as_bytes(),
    )?;

    // All segments, as (last_read, entry), to list in digests.
    let mut entries: Vec<(OffsetDateTime, DigestEntry)> = Vec::new();
    for s in &spec.streams {
        let stream = StreamId::new(s.id.clone()).map_err(err)?;
        let raw: Vec<u8> = (0..4)
            .map(|i| {
                format!(
                    "Dec  1 00:00:0{i} {} {}[{i}]: synthetic line {i}\n",
                    spec.name, s.id
                )
            })
            .collect::<String>()
            .into_bytes();
        let payload = compress_payload(&raw, 3).map_err(err)?;
        let object_sha256 = Sha256::digest(&payload);
        let raw_sha256 = Sha256::digest(&raw);
        let mut first_payload: Option<PathBuf> = None;
        let mut prev: Option<Sha256> = None;
        let mut t = spec.start;
        let mut seq = 0u64;
        let mut offset = 0u64;
        while t < spec.end {
            let first_read = t;
            let last_read = t + Duration::seconds(1);
            let own = match s.lines {
                Some(f) => {
                    let r = f(first_read).into_bytes();
                    let p = compress_payload(&r, 3).map_err(err)?;
                    Some((Sha256::digest(&p), Sha256::digest(&r), r, p))
                }
                None => None,
            };
            let (object_sha256, raw_sha256, raw, payload) = match &own {
                Some((o, r, raw, p)) => (*o, *r, raw, p),
                None => (object_sha256, raw_sha256, &raw, &payload),
            };
            let source = match &s.kind {
                Kind::File(p) => Source::File(SourceFile {
                    path: p.clone(),
                    device: 2049,
                    inode: 1000 + seq / 1000,
                    fingerprint: Sha256::digest(p.as_bytes()),
                    fingerprint_len: 1024,
                }),
                Kind::Journal => Source::Journal(JournalSource {
                    kind: JournalKind::Journal,
                    journal: "system".into(),
                    first_cursor: format!("s=synthetic;i={seq}"),
                    last_cursor: format!("s=synthetic;i={seq}"),
                    lost_cursor: None,
                }),
                Kind::Syslog(peer) => Source::Syslog(SyslogSource {
                    kind: SyslogKind::Syslog,
                    device: s.id.clone(),
                    transport: SyslogTransport::Tcp,
                    peer: peer.clone(),
                    core_system: true,
                }),
            };
            let framing = match &s.kind {
                Kind::File(_) => Framing::Lines,
                Kind::Journal => Framing::JournalExport,
                Kind::Syslog(_) => Framing::OctetCounted,
            };
            let meta = SegmentMeta {
                format: SEGMENT_FORMAT_V1.to_string(),
                host_id: host.clone(),
                stream_id: stream.clone(),
                category: s.category,
                seq: SegmentSeq(seq),
                agent_instance: instance.clone(),
                framing,
                source,
                range: ByteRange {
                    start: offset,
                    end: offset + raw.len() as u64,
                },
                split: Split::default(),
                first_read,
                last_read,
                raw_len: raw.len() as u64,
                raw_sha256,
                object_len: payload.len() as u64,
                object_sha256,
                prev_segment: prev,
                retain_until: policy.retain_until(first_read),
            };
            let bytes = meta.encode();
            let chain = SegmentMeta::chain_hash(&bytes);
            prev = Some(chain);
            if !s.skip.contains(&seq) {
                write_obj(
                    root,
                    &layout::segment_meta_key(&host, &stream, meta.seq, &object_sha256),
                    &bytes,
                )?;
                let pkey = layout::segment_payload_key(&host, &stream, meta.seq, &object_sha256);
                let ppath = root.join(&pkey);
                match &first_payload {
                    Some(first) if own.is_none() => fs::hard_link(first, &ppath)?,
                    _ => {
                        write_obj(root, &pkey, payload)?;
                        first_payload = Some(ppath);
                    }
                }
                entries.push((
                    last_read,
                    DigestEntry {
                        stream_id: stream.clone(),
                        seq: meta.seq,
                        meta_sha256: chain,
                        object_sha256,
                        raw_sha256,
                    },
                ));
            }
            offset += raw.len() as u64;
            seq += 1;
            t += spec.segment_every;
        }
    }
    entries.sort_by_key(|a| a.0);

    // Digests: one per interval from start to the last segment's time.
    let mut prev: Option<Sha256> = None;
    let mut dseq = 0u64;
    let mut w = spec.start;
    let mut next = 0usize;
    let mut segments = 0u64;
    while w < spec.end + spec.digest_every {
        let end = w + spec.digest_every;
        let mut listed: Vec<DigestEntry> = Vec::new();
        while next < entries.len() && entries[next].0 < end {
            listed.push(entries[next].1.clone());
            next += 1;
        }
        segments += listed.len() as u64;
        listed.sort_by(|a, b| (&a.stream_id, a.seq).cmp(&(&b.stream_id, b.seq)));
        let body = DigestBody {
            format: DIGEST_FORMAT_V1.to_string(),
            host_id: host.clone(),
            agent_instance: instance.clone(),
            seq: dseq,
            prev_digest: prev,
            window_start: w,
            window_end: end,
            clock: ClockState {
                synchronized: Some(true),
                max_error_us: Some(16_000),
                est_error_us: Some(250),
            },
            public_key: pk.clone(),
            segments: listed,
        };
        let bytes = body.encode();
        let sha = Sha256::digest(&bytes);
        let sig = key.sign(DIGEST_NAMESPACE, &bytes).map_err(err)?;
        write_obj(root, &layout::digest_key(&host, dseq, &sha), &bytes)?;
        write_obj(
            root,
            &layout::digest_sig_key(&host, dseq, &sha),
            sig.as_bytes(),
        )?;
        prev = Some(sha);
        dseq += 1;
        w = end;
        if next >= entries.len() && w >= spec.end {
            break;
        }
    }
    Ok((segments, dseq))
}
