//! Test support: an in-memory [`ObjectSource`] and a builder for a valid
//! store (one host, two streams of five segments, three signed digests),
//! so each tamper vector reads as "take a good store, do one bad thing".
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;

use custody_evidence::digest::{
    ClockState, DigestBody, DigestEntry, DIGEST_FORMAT_V1, DIGEST_NAMESPACE,
};
use custody_evidence::layout;
use custody_evidence::segment::{
    compress_payload, ByteRange, Framing, SegmentMeta, Source, SourceFile, Split, SEGMENT_FORMAT_V1,
};
use custody_evidence::sign::HostKey;
use custody_evidence::verify::{
    verify_store, Finding, FindingKind, ObjectSource, Report, Severity, SourceError, VerifyOptions,
};
use custody_evidence::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// A store as a sorted map of object name to bytes.
#[derive(Debug, Clone, Default)]
pub struct MemSource(pub BTreeMap<String, Vec<u8>>);

impl ObjectSource for MemSource {
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        Ok(self
            .0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| SourceError::new(key, "not in the in-memory store"))
    }
}

pub const T0: OffsetDateTime = datetime!(2026-01-05 00:00:00 UTC);

/// One segment as written: its record, raw bytes and object names.
#[derive(Debug, Clone)]
pub struct Seg {
    pub meta: SegmentMeta,
    pub meta_bytes: Vec<u8>,
    pub raw: Vec<u8>,
    pub payload: Vec<u8>,
    pub meta_key: String,
    pub payload_key: String,
}

impl Seg {
    pub fn chain_hash(&self) -> Sha256 {
        SegmentMeta::chain_hash(&self.meta_bytes)
    }
    pub fn entry(&self) -> DigestEntry {
        DigestEntry {
            stream_id: self.meta.stream_id.clone(),
            seq: self.meta.seq,
            meta_sha256: self.chain_hash(),
            object_sha256: self.meta.object_sha256,
            raw_sha256: self.meta.raw_sha256,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Dig {
    pub body: DigestBody,
    pub bytes: Vec<u8>,
    pub key: String,
    pub sig_key: String,
}

pub struct Fixture {
    pub host: HostId,
    pub key: HostKey,
    pub streams: Vec<StreamId>,
    /// `segs[stream index][seq]`
    pub segs: Vec<Vec<Seg>>,
    pub digests: Vec<Dig>,
    pub store: MemSource,
}

pub fn raw_lines(stream: &StreamId, seq: u64, variant: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..4 {
        out.extend_from_slice(
            format!(
                "Jan  5 00:00:{seq:02} web01 {stream}[{i}]: line {i} of segment {seq}{variant}\n"
            )
            .as_bytes(),
        );
    }
    out
}

/// A fully valid record for `raw`, chained to `prev`.
pub fn make_seg(
    host: &HostId,
    stream: &StreamId,
    seq: u64,
    prev: Option<Sha256>,
    raw: Vec<u8>,
    instance: &InstanceId,
) -> Seg {
    let payload = compress_payload(&raw, 3).expect("compress");
    let object_sha256 = Sha256::digest(&payload);
    let start = seq * 1000;
    let meta = SegmentMeta {
        format: SEGMENT_FORMAT_V1.to_string(),
        host_id: host.clone(),
        stream_id: stream.clone(),
        category: Category::Os,
        seq: SegmentSeq(seq),
        agent_instance: instance.clone(),
        framing: Framing::Lines,
        source: Source::File(SourceFile {
            path: format!("/var/log/{stream}.log"),
            device: 2049,
            // Each stream reads its own file: another inode per stream, so
            // the cross-stream check (FORMAT.md §10 item 6) sees no overlap.
            inode: 131_072 + stream.as_str().bytes().map(u64::from).sum::<u64>(),
            fingerprint: Sha256::digest(b"first line"),
            fingerprint_len: 10,
        }),
        range: ByteRange {
            start,
            end: start + raw.len() as u64,
        },
        split: Split::default(),
        first_read: T0 + Duration::seconds(seq as i64),
        last_read: T0 + Duration::seconds(seq as i64) + Duration::milliseconds(900),
        raw_len: raw.len() as u64,
        raw_sha256: Sha256::digest(&raw),
        object_len: payload.len() as u64,
        object_sha256,
        prev_segment: prev,
        retain_until: datetime!(2026-07-05 00:00:00 UTC),
    };
    seg_from_meta(meta, raw, payload)
}

pub fn seg_from_meta(meta: SegmentMeta, raw: Vec<u8>, payload: Vec<u8>) -> Seg {
    let meta_bytes = meta.encode();
    let meta_key = layout::segment_meta_key(
        &meta.host_id,
        &meta.stream_id,
        meta.seq,
        &meta.object_sha256,
    );
    let payload_key = layout::segment_payload_key(
        &meta.host_id,
        &meta.stream_id,
        meta.seq,
        &meta.object_sha256,
    );
    Seg {
        meta,
        meta_bytes,
        raw,
        payload,
        meta_key,
        payload_key,
    }
}

/// A signed digest of `entries`, chained to `prev`.
pub fn make_digest(
    host: &HostId,
    key: &HostKey,
    instance: &InstanceId,
    seq: u64,
    prev: Option<Sha256>,
    entries: Vec<DigestEntry>,
) -> Dig {
    let body = DigestBody {
        format: DIGEST_FORMAT_V1.to_string(),
        host_id: host.clone(),
        agent_instance: instance.clone(),
        seq,
        prev_digest: prev,
        window_start: T0 + Duration::seconds(60 * seq as i64),
        window_end: T0 + Duration::seconds(60 * (seq as i64 + 1)),
        clock: ClockState {
            synchronized: Some(true),
            max_error_us: Some(16_000),
            est_error_us: Some(250),
        },
        public_key: key.public_key_line(host.as_str()),
        segments: entries,
    };
    let bytes = body.encode();
    let sha = Sha256::digest(&bytes);
    Dig {
        key: layout::digest_key(host, seq, &sha),
        sig_key: layout::digest_sig_key(host, seq, &sha),
        body,
        bytes,
    }
}

impl Fixture {
    /// Host `web01`, streams `os-syslog` and `logon-auth` of five segments
    /// each (the second stream's agent restarts before seq 3), digests
    /// 0 (seqs 0-1), 1 (seqs 2-3) and 2 (seq 4), all signed by the host key,
    /// which is published under `keys/`.
    pub fn valid() -> Fixture {
        let host = HostId::new("web01").unwrap();
        let key = HostKey::generate();
        let first = InstanceId::new("11111111-1111-4111-8111-111111111111").unwrap();
        let second = InstanceId::new("22222222-2222-4222-8222-222222222222").unwrap();
        let streams = vec![
            StreamId::new("os-syslog").unwrap(),
            StreamId::new("logon-auth").unwrap(),
        ];
        let mut segs = Vec::new();
        for (i, stream) in streams.iter().enumerate() {
            let mut chain: Vec<Seg> = Vec::new();
            for seq in 0..5u64 {
                let instance = if i == 1 && seq >= 3 { &second } else { &first };
                let prev = chain.last().map(Seg::chain_hash);
                chain.push(make_seg(
                    &host,
                    stream,
                    seq,
                    prev,
                    raw_lines(stream, seq, ""),
                    instance,
                ));
            }
            segs.push(chain);
        }
        let mut digests: Vec<Dig> = Vec::new();
        for (seq, range) in [(0u64, 0..2usize), (1, 2..4), (2, 4..5)] {
            let mut entries: Vec<DigestEntry> = segs
                .iter()
                .flat_map(|chain| chain[range.clone()].iter().map(Seg::entry))
                .collect();
            // FORMAT.md §5.1: ordered by stream id, then seq.
            entries.sort_by(|a, b| (&a.stream_id, a.seq).cmp(&(&b.stream_id, b.seq)));
            let prev = digests.last().map(|d| Sha256::digest(&d.bytes));
            digests.push(make_digest(&host, &key, &second, seq, prev, entries));
        }
        let mut fx = Fixture {
            host,
            key,
            streams,
            segs,
            digests,
            store: MemSource::default(),
        };
        let pk = fx.key.public_key_line(fx.host.as_str());
        fx.store.0.insert(
            layout::public_key_key(&fx.host, &pk),
            format!("{pk}\n").into_bytes(),
        );
        for seg in fx.segs.iter().flatten().cloned().collect::<Vec<_>>() {
            fx.put_seg(&seg);
        }
        for d in fx.digests.clone() {
            fx.put_digest(&d, &fx.key.clone());
        }
        fx
    }

    pub fn seg(&self, stream: usize, seq: usize) -> &Seg {
        &self.segs[stream][seq]
    }

    pub fn put_seg(&mut self, seg: &Seg) {
        self.store
            .0
            .insert(seg.meta_key.clone(), seg.meta_bytes.clone());
        self.store
            .0
            .insert(seg.payload_key.clone(), seg.payload.clone());
    }

    pub fn remove_seg(&mut self, seg: &Seg) {
        self.store.0.remove(&seg.meta_key);
        self.store.0.remove(&seg.payload_key);
    }

    pub fn put_digest(&mut self, d: &Dig, signer: &HostKey) {
        let sig = signer.sign(DIGEST_NAMESPACE, &d.bytes).expect("sign");
        self.store.0.insert(d.key.clone(), d.bytes.clone());
        self.store.0.insert(d.sig_key.clone(), sig.into_bytes());
    }

    pub fn verify(&self) -> Report {
        verify_store(&self.store, &VerifyOptions::default()).expect("verification runs")
    }

    pub fn verify_with(&self, opts: &VerifyOptions) -> Report {
        verify_store(&self.store, opts).expect("verification runs")
    }
}

/// Renders a report for assertion messages.
pub fn show(report: &Report) -> String {
    report.findings.iter().map(|f| format!("  {f}\n")).collect()
}

/// The distinct kinds of Error findings, sorted.
pub fn error_kinds(report: &Report) -> Vec<FindingKind> {
    let mut kinds: Vec<FindingKind> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| f.kind)
        .collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// The one finding of `kind` (panics, with the report, if not exactly one).
pub fn only(report: &Report, kind: FindingKind) -> &Finding {
    let found: Vec<&Finding> = report.of_kind(kind).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind:?}, report:\n{}",
        show(report)
    );
    found[0]
}
