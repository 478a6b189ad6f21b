//! Store verification: reads every object of a store through an
//! [`ObjectSource`] and returns a [`Report`] of findings, not the first
//! error (like rustic's `check`). `Err` means only that the check itself
//! could not run (the store could not be listed or read).
//!
//! What is checked is written down in FORMAT.md, "Verification"; each
//! [`FindingKind`] is listed there with its meaning and severity. All hashes
//! are taken over the bytes as stored, never over a re-encoding.
//!
//! ```
//! use std::collections::BTreeMap;
//! use custody_evidence::verify::{verify_store, ObjectSource, SourceError, VerifyOptions};
//!
//! struct Empty;
//! impl ObjectSource for Empty {
//!     fn list(&self, _prefix: &str) -> Result<Vec<String>, SourceError> { Ok(Vec::new()) }
//!     fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
//!         Err(SourceError::new(key, "no such object"))
//!     }
//! }
//! let report = verify_store(&Empty, &VerifyOptions::default()).unwrap();
//! assert!(report.is_clean());
//! assert_eq!(report.hosts, 0);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::digest::{DigestBody, DIGEST_NAMESPACE};
use crate::ids::{HostId, SegmentSeq, Sha256, StreamId};
use crate::layout::{self, ParsedKey};
use crate::segment::{decompress_payload, DecodeError, SegmentMeta};
use crate::sign::{self, SignError};

mod cross_stream;
use cross_stream::{Agreement, Claim, FileIdentity};

/// Where the verifier reads objects from: a filesystem store directory, an
/// in-memory map in tests, a remote store.
pub trait ObjectSource {
    /// All object names starting with `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError>;
    /// The stored bytes of one object.
    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError>;
}

/// The store could not be read, so the check could not run (or finish).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {key}: {reason}")]
pub struct SourceError {
    /// The object name or prefix (or path) that failed.
    pub key: String,
    pub reason: String,
}

impl SourceError {
    pub fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

/// What to trust.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// `(principal, public key line)` pairs, principal = host id, as from an
    /// OpenSSH `allowed_signers` file. `None`: trust the keys each host
    /// published in the store (`v1/<host>/keys/*.pub`), which proves only
    /// that the digests are consistent with the store, not who wrote them.
    pub trusted_signers: Option<Vec<(String, String)>>,
    /// Check records, chains, digests and signatures but read no payload:
    /// a payload's presence is still checked against the listing, its
    /// length and hashes are not (`custody-report coverage`, which reports
    /// from records and digests and must stay fast over months of data,
    /// says so in its output). `false` (the default) checks everything.
    pub skip_payloads: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Evidence is missing, altered, out of order or unsigned.
    Error,
    /// Something an auditor should look at that does not by itself break
    /// the evidence (an unknown object, a second published key).
    Warning,
    /// A fact worth knowing (an agent restart, segments not yet signed).
    Info,
}

impl Severity {
    pub fn label(&self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        }
    }
}

/// Every kind of finding; FORMAT.md, "Verification findings", gives the
/// meaning of each. Serialized in snake_case (`chain_gap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// An object name outside the layout.
    UnrecognizedObject,
    /// Something that is not a regular file where an object should be (a
    /// symlink, a device); reported by the source's driver.
    NotARegularFile,
    /// A record or digest of a format version this verifier does not read.
    UnknownFormat,
    /// A segment record that does not decode.
    RecordCorrupt,
    /// A segment record that decodes but is not in its canonical encoding.
    RecordNotCanonical,
    /// A segment record whose name disagrees with its content.
    RecordNameMismatch,
    /// A segment record without its payload.
    PayloadMissing,
    /// A payload without a segment record.
    PayloadWithoutRecord,
    /// Payload length or SHA-256 differs from the record.
    PayloadHashMismatch,
    /// The payload does not decompress (within the recorded raw length).
    PayloadDecompressFailed,
    /// Decompressed length or SHA-256 differs from the record.
    RawHashMismatch,
    /// The payload is not one zstd frame with the content size recorded.
    PayloadFrameNonstandard,
    /// Segment sequence numbers missing from a stream.
    ChainGap,
    /// Two different records with the same sequence number.
    ChainFork,
    /// A record's `prev_segment` is not the chain hash of its predecessor.
    ChainBroken,
    /// The agent instance changed between consecutive segments.
    AgentRestart,
    /// A journal stream's agent could not find the cursor it was to resume
    /// from and read again from the oldest entry (FORMAT.md §16.4).
    JournalCursorLost,
    /// Two streams of a host claim the same bytes of one file (same device,
    /// inode and fingerprint, overlapping ranges) and hold different bytes
    /// there: one segment's bytes did not come from the file it names.
    CrossStreamConflict,
    /// Two streams of a host hold the same bytes of one file: two sources
    /// read it (overlapping globs) or a segment was copied between streams.
    CrossStreamDuplicate,
    /// A digest body that does not decode or is not canonical.
    DigestCorrupt,
    /// A digest whose name disagrees with its content (seq, hash, host).
    DigestNameMismatch,
    /// Digest sequence numbers missing.
    DigestGap,
    /// Two different digest bodies with the same sequence number.
    DigestFork,
    /// The same digest body stored under more than one name.
    DigestReplayed,
    /// A digest's `prev_digest` is not the hash of its predecessor.
    DigestChainBroken,
    /// Digest windows going backwards, or a window ending before it starts.
    DigestWindowOrder,
    /// A digest body without its `.sig`.
    SignatureMissing,
    /// A `.sig` without its digest body.
    SignatureWithoutDigest,
    /// A signature that is malformed, for another namespace or does not verify.
    SignatureInvalid,
    /// A signature made by a key other than the host's.
    SignatureWrongKey,
    /// A digest's `public_key` field names another key than the one that verified it.
    DigestKeyMismatch,
    /// No key to verify a host's digests with.
    NoTrustedKey,
    /// Keys were taken from the store itself, not from an allowed_signers file.
    KeysFromStore,
    /// A published key object that does not parse or is misnamed.
    PublicKeyInvalid,
    /// More than one key published for a host.
    MultiplePublishedKeys,
    /// A host that has segments but no digests.
    NoDigests,
    /// A digest lists a segment that is not in the store.
    DigestEntryMissingSegment,
    /// A digest lists a segment with other hashes than the stored one.
    DigestEntryMismatch,
    /// A segment at or below its stream's highest signed seq that no signed digest lists.
    SegmentNotCovered,
    /// Segments after the last signed digest (not yet covered).
    SegmentPendingDigest,
    /// An evidence bundle in the store (checked by `custody-verify bundle`, not here).
    BundlePresent,
    /// An evidence bundle that a collector received and that does not
    /// verify (`custody-verify bundle` would report errors); kept anyway.
    BundleInvalid,
}

impl FindingKind {
    /// The snake_case name used in output and in FORMAT.md.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{self:?}"))
    }
}

/// One thing found, with what a person needs to look at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub kind: FindingKind,
    pub host: Option<String>,
    pub stream: Option<String>,
    pub seq: Option<u64>,
    pub object: Option<String>,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub message: String,
}

impl Finding {
    pub fn new(severity: Severity, kind: FindingKind, message: impl Into<String>) -> Self {
        Finding {
            severity,
            kind,
            host: None,
            stream: None,
            seq: None,
            object: None,
            expected: None,
            found: None,
            message: message.into(),
        }
    }
    pub fn host(mut self, host: &HostId) -> Self {
        self.host = Some(host.to_string());
        self
    }
    pub fn stream(mut self, stream: &StreamId) -> Self {
        self.stream = Some(stream.to_string());
        self
    }
    pub fn seq(mut self, seq: u64) -> Self {
        self.seq = Some(seq);
        self
    }
    pub fn object(mut self, key: &str) -> Self {
        self.object = Some(key.to_string());
        self
    }
    pub fn expected(mut self, v: impl fmt::Display) -> Self {
        self.expected = Some(v.to_string());
        self
    }
    pub fn found(mut self, v: impl fmt::Display) -> Self {
        self.found = Some(v.to_string());
        self
    }
}

/// `ERROR chain_gap host=h stream=s seq=5 object=… expected=… found=…: message`
impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.severity.label(), self.kind.name())?;
        if let Some(h) = &self.host {
            write!(f, " host={h}")?;
        }
        if let Some(s) = &self.stream {
            write!(f, " stream={s}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " seq={s}")?;
        }
        if let Some(o) = &self.object {
            write!(f, " object={o}")?;
        }
        if let Some(e) = &self.expected {
            write!(f, " expected={e}")?;
        }
        if let Some(x) = &self.found {
            write!(f, " found={x}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of a verification run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub hosts: u64,
    pub streams: u64,
    /// Segment records read.
    pub segments: u64,
    /// Digest bodies read.
    pub digests: u64,
    /// Raw (decompressed) bytes whose SHA-256 matched their record.
    pub raw_bytes: u64,
}

impl Report {
    /// No finding of severity [`Severity::Error`]: every check held.
    pub fn is_clean(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// Findings of one kind, for tests and for tools that act on one kind.
    pub fn of_kind(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    fn push(&mut self, f: Finding) {
        self.findings.push(f);
    }
}

/// A forged `raw_len` must not make the verifier allocate without bound:
/// segments are at most a few MiB (FORMAT.md), so anything above this is
/// refused without decompressing.
pub const MAX_VERIFIED_RAW_LEN: u64 = 1 << 30;

/// Checks every host under `v1/`. See the module documentation.
pub fn verify_store(src: &dyn ObjectSource, opts: &VerifyOptions) -> Result<Report, SourceError> {
    let prefix = format!("{}/", layout::ROOT);
    let mut report = Report::default();
    let mut hosts: BTreeMap<HostId, HostObjects> = BTreeMap::new();
    for key in src.list(&prefix)? {
        let Some(parsed) = layout::parse_key(&key) else {
            report.push(
                Finding::new(
                    Severity::Warning,
                    FindingKind::UnrecognizedObject,
                    "object name is not part of the v1 layout (FORMAT.md, \"Store layout\"); it is not evidence and was not checked",
                )
                .object(&key),
            );
            continue;
        };
        match parsed {
            ParsedKey::SegmentMeta {
                host,
                stream,
                seq,
                object_sha256,
            } => hosts.entry(host).or_default().metas.push(NamedSeg {
                key,
                stream,
                seq,
                object_sha256,
            }),
            ParsedKey::SegmentPayload {
                host,
                stream,
                seq,
                object_sha256,
            } => {
                hosts.entry(host).or_default().payloads.insert(
                    key.clone(),
                    NamedSeg {
                        key,
                        stream,
                        seq,
                        object_sha256,
                    },
                );
            }
            ParsedKey::Digest {
                host,
                seq,
                body_sha256,
            } => hosts.entry(host).or_default().digests.push(NamedDigest {
                key,
                seq,
                body_sha256,
            }),
            ParsedKey::DigestSig { host, .. } => {
                hosts.entry(host).or_default().sigs.insert(key);
            }
            ParsedKey::PublicKey { host } => hosts.entry(host).or_default().keys.push(key),
            ParsedKey::BundleEvent { host, .. } => report.push(
                Finding::new(
                    Severity::Info,
                    FindingKind::BundlePresent,
                    "a custody event appended to a stored bundle (FORMAT.md §15.4); `custody-verify bundle --store` checks it",
                )
                .host(&host)
                .object(&key),
            ),
            ParsedKey::Bundle { host } => report.push(
                Finding::new(
                    Severity::Info,
                    FindingKind::BundlePresent,
                    "an evidence bundle (FORMAT.md §14); check it with `custody-verify bundle`",
                )
                .host(&host)
                .object(&key),
            ),
        }
    }
    report.hosts = hosts.len() as u64;
    for (host, objects) in hosts {
        HostCheck {
            src,
            opts,
            host: &host,
            report: &mut report,
        }
        .run(objects)?;
    }
    Ok(report)
}

/// A segment object as its name describes it.
#[derive(Debug, Clone)]
struct NamedSeg {
    key: String,
    stream: StreamId,
    seq: SegmentSeq,
    object_sha256: Sha256,
}

#[derive(Debug, Clone)]
struct NamedDigest {
    key: String,
    seq: u64,
    body_sha256: Sha256,
}

#[derive(Debug, Default)]
struct HostObjects {
    metas: Vec<NamedSeg>,
    payloads: BTreeMap<String, NamedSeg>,
    digests: Vec<NamedDigest>,
    sigs: BTreeSet<String>,
    keys: Vec<String>,
}

/// One stored segment record, placed in its stream at its seq.
struct SegSlot {
    key: String,
    /// SHA-256 of the stored record bytes.
    chain_hash: Sha256,
    /// `None` when the record did not decode (it still occupies its seq,
    /// taken from its name, so the chain around it can be checked).
    meta: Option<SegmentMeta>,
}

/// One stored digest body, placed in the digest chain at its seq.
struct DigestSlot {
    key: String,
    body_sha256: Sha256,
    body: Option<DigestBody>,
}

type StreamSlots = BTreeMap<u64, Vec<SegSlot>>;

/// The last few decompressed payloads, so comparing one segment with the
/// several segments of another stream it overlaps decompresses it once.
#[derive(Default)]
struct RawCache {
    entries: Vec<(String, std::rc::Rc<Vec<u8>>)>,
}

impl RawCache {
    const CAPACITY: usize = 8;

    fn get(&self, key: &str) -> Option<std::rc::Rc<Vec<u8>>> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn put(&mut self, key: String, raw: Vec<u8>) -> std::rc::Rc<Vec<u8>> {
        let raw = std::rc::Rc::new(raw);
        if self.entries.len() == Self::CAPACITY {
            self.entries.remove(0);
        }
        self.entries.push((key, raw.clone()));
        raw
    }
}

struct HostCheck<'a> {
    src: &'a dyn ObjectSource,
    opts: &'a VerifyOptions,
    host: &'a HostId,
    report: &'a mut Report,
}

impl HostCheck<'_> {
    fn finding(
        &self,
        severity: Severity,
        kind: FindingKind,
        message: impl Into<String>,
    ) -> Finding {
        Finding::new(severity, kind, message).host(self.host)
    }

    fn run(mut self, objects: HostObjects) -> Result<(), SourceError> {
        let streams = self.check_segments(&objects)?;
        self.report.streams += streams.len() as u64;
        for (stream, slots) in &streams {
            self.check_chain(stream, slots);
        }
        self.check_cross_stream(&streams, &objects)?;
        let digests = self.check_digest_objects(&objects)?;
        let has_segments = streams.values().any(|s| !s.is_empty());
        if digests.is_empty() {
            if has_segments {
                let f = self.finding(
                    Severity::Warning,
                    FindingKind::NoDigests,
                    "host has segments but no digests: nothing it wrote is signed yet",
                );
                self.report.push(f);
            }
            self.check_coverage(&streams, &[]);
            return Ok(());
        }
        self.check_digest_chain(&digests);
        let keys = self.candidate_keys(&objects)?;
        let verified = self.check_signatures(&digests, &objects.sigs, keys.as_deref())?;
        let signed: Vec<&DigestBody> = digests
            .values()
            .flatten()
            .filter(|d| verified.contains(&d.body_sha256))
            .filter_map(|d| d.body.as_ref())
            .collect();
        for slot in digests.values().flatten() {
            if let Some(body) = &slot.body {
                self.check_entries(slot, body, &streams);
            }
        }
        self.check_coverage(&streams, &signed);
        Ok(())
    }

    // ----- the same file in two streams -----

    /// FORMAT.md §10 item 6: segments of different streams that claim the
    /// same bytes of one file. Different bytes there are an error per pair;
    /// the same bytes a warning per stream pair and file (two sources whose
    /// globs match one file do this legitimately, segment after segment).
    fn check_cross_stream(
        &mut self,
        streams: &BTreeMap<StreamId, StreamSlots>,
        objects: &HostObjects,
    ) -> Result<(), SourceError> {
        let claims: Vec<Claim> = streams
            .values()
            .flat_map(|slots| slots.values().flatten())
            .filter_map(|slot| {
                let meta = slot.meta.as_ref()?;
                let payload_key = layout::segment_payload_key(
                    self.host,
                    &meta.stream_id,
                    meta.seq,
                    &meta.object_sha256,
                );
                // A missing payload is reported already; nothing to compare.
                objects
                    .payloads
                    .contains_key(&payload_key)
                    .then(|| Claim::of(meta, &slot.key, payload_key))
                    .flatten()
            })
            .collect();
        let pairs = cross_stream::overlapping_pairs(&claims);
        let mut cache = RawCache::default();
        // (stream a, stream b, file) → pairs, bytes in both, first pair.
        let mut duplicates: BTreeMap<(&StreamId, &StreamId, &FileIdentity), (u64, u64, &Claim)> =
            BTreeMap::new();
        for (a, b) in pairs {
            let agreement = if cross_stream::same_by_records(a, b) {
                Agreement::Same
            } else {
                let (Some(raw_a), Some(raw_b)) =
                    (self.raw_of(&mut cache, a)?, self.raw_of(&mut cache, b)?)
                else {
                    continue; // a payload that does not check out is reported already
                };
                cross_stream::compare(a, &raw_a, b, &raw_b)
            };
            let (from, to) = a.overlap(b);
            match agreement {
                Agreement::Same => {
                    let e = duplicates
                        .entry((&a.stream, &b.stream, &a.identity))
                        .or_insert((0, 0, b));
                    e.0 += 1;
                    e.1 += to - from;
                }
                Agreement::Differs {
                    first_offset,
                    a_sha256,
                    b_sha256,
                } => {
                    let f = self
                        .finding(
                            Severity::Error,
                            FindingKind::CrossStreamConflict,
                            format!(
                                "segments of two streams claim the same bytes of one file (same device, inode and \
                                 fingerprint) but hold different bytes there: one of them did not come from the file \
                                 it names (copied or forged from another stream's file); compare with {} (stream {} seq {})",
                                a.record_key, a.stream, a.seq
                            ),
                        )
                        .stream(&b.stream)
                        .seq(b.seq)
                        .object(&b.record_key)
                        .expected(format!(
                            "bytes {from}..{to} of {} (device {}, inode {}) as stream {} seq {} holds them: sha256 {a_sha256}",
                            a.path, a.identity.device, a.identity.inode, a.stream, a.seq
                        ))
                        .found(format!(
                            "sha256 {b_sha256}, first different byte at file offset {first_offset}"
                        ));
                    self.report.push(f);
                }
            }
        }
        for ((a_stream, b_stream, identity), (count, bytes, first)) in duplicates {
            let f = self
                .finding(
                    Severity::Warning,
                    FindingKind::CrossStreamDuplicate,
                    format!(
                        "{count} segment pair(s) of streams {a_stream} and {b_stream} hold the same {bytes} bytes of \
                         {} (device {}, inode {}, same fingerprint): two sources read the same file (their globs \
                         overlap, or a rotated name matches another source's glob), or segments were copied between \
                         streams. The bytes agree, so nothing is altered; give each file one source",
                        first.path, identity.device, identity.inode
                    ),
                )
                .stream(b_stream)
                .seq(first.seq)
                .object(&first.record_key);
            self.report.push(f);
        }
        Ok(())
    }

    /// The raw bytes of a claim's payload if they check out against the
    /// record (what does not is reported by the segment checks).
    fn raw_of(
        &self,
        cache: &mut RawCache,
        claim: &Claim,
    ) -> Result<Option<std::rc::Rc<Vec<u8>>>, SourceError> {
        if let Some(raw) = cache.get(&claim.payload_key) {
            return Ok(Some(raw));
        }
        if claim.raw_len > MAX_VERIFIED_RAW_LEN {
            return Ok(None);
        }
        let object = self.src.read(&claim.payload_key)?;
        let Ok(raw) = decompress_payload(&object, claim.raw_len as usize) else {
            return Ok(None);
        };
        if raw.len() as u64 != claim.raw_len || Sha256::digest(&raw) != claim.raw_sha256 {
            return Ok(None);
        }
        Ok(Some(cache.put(claim.payload_key.clone(), raw)))
    }

    // ----- segments -----

    fn check_segments(
        &mut self,
        objects: &HostObjects,
    ) -> Result<BTreeMap<StreamId, StreamSlots>, SourceError> {
        let mut streams: BTreeMap<StreamId, StreamSlots> = BTreeMap::new();
        let mut claimed: BTreeSet<String> = BTreeSet::new();
        for named in &objects.metas {
            self.report.segments += 1;
            let bytes = self.src.read(&named.key)?;
            let chain_hash = SegmentMeta::chain_hash(&bytes);
            // A record always claims the payload its name points at, so a
            // misnamed record is not also reported as a lone payload.
            claimed.insert(layout::segment_payload_key(
                self.host,
                &named.stream,
                named.seq,
                &named.object_sha256,
            ));
            let meta = match SegmentMeta::decode(&bytes) {
                Ok(meta) => Some(meta),
                Err(e) => {
                    self.report_decode_error(&e, named);
                    None
                }
            };
            let (stream, seq) = match &meta {
                Some(meta) => {
                    self.check_record_name(named, meta);
                    let payload_key = layout::segment_payload_key(
                        self.host,
                        &meta.stream_id,
                        meta.seq,
                        &meta.object_sha256,
                    );
                    claimed.insert(payload_key.clone());
                    if objects.payloads.contains_key(&payload_key) {
                        if !self.opts.skip_payloads {
                            self.check_payload(&payload_key, meta)?;
                        }
                    } else {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::PayloadMissing,
                                "segment record has no payload: the logged bytes it describes are gone",
                            )
                            .stream(&meta.stream_id)
                            .seq(meta.seq.0)
                            .object(&named.key)
                            .expected(&payload_key)
                            .found("absent");
                        self.report.push(f);
                    }
                    (meta.stream_id.clone(), meta.seq.0)
                }
                None => (named.stream.clone(), named.seq.0),
            };
            streams
                .entry(stream)
                .or_default()
                .entry(seq)
                .or_default()
                .push(SegSlot {
                    key: named.key.clone(),
                    chain_hash,
                    meta,
                });
        }
        for (key, named) in &objects.payloads {
            if !claimed.contains(key) {
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::PayloadWithoutRecord,
                        "payload has no segment record: its bytes are not in any chain and cannot be attributed",
                    )
                    .stream(&named.stream)
                    .seq(named.seq.0)
                    .object(key);
                self.report.push(f);
                streams.entry(named.stream.clone()).or_default();
            }
        }
        Ok(streams)
    }

    fn report_decode_error(&mut self, e: &DecodeError, named: &NamedSeg) {
        let (kind, expected, found, message) = match e {
            DecodeError::UnknownFormat { expected, found } => (
                FindingKind::UnknownFormat,
                expected.to_string(),
                found.clone(),
                "segment record of a format this verifier does not read; use a custody-verify that supports it".to_string(),
            ),
            DecodeError::Corrupt(why) => (
                FindingKind::RecordCorrupt,
                "a custody.segment.v1 record".to_string(),
                "undecodable bytes".to_string(),
                format!("segment record does not decode: {why}"),
            ),
            DecodeError::NotCanonical => (
                FindingKind::RecordNotCanonical,
                "canonical encoding".to_string(),
                "other JSON layout".to_string(),
                "segment record decodes but is not in its single canonical encoding: it was re-written by something other than an agent".to_string(),
            ),
        };
        let f = self
            .finding(Severity::Error, kind, message)
            .stream(&named.stream)
            .seq(named.seq.0)
            .object(&named.key)
            .expected(expected)
            .found(found);
        self.report.push(f);
    }

    fn check_record_name(&mut self, named: &NamedSeg, meta: &SegmentMeta) {
        let mut diffs = Vec::new();
        if &meta.host_id != self.host {
            diffs.push(("host", self.host.to_string(), meta.host_id.to_string()));
        }
        if meta.stream_id != named.stream {
            diffs.push((
                "stream",
                named.stream.to_string(),
                meta.stream_id.to_string(),
            ));
        }
        if meta.seq != named.seq {
            diffs.push(("seq", named.seq.to_string(), meta.seq.to_string()));
        }
        if meta.object_sha256 != named.object_sha256 {
            diffs.push((
                "object_sha256",
                named.object_sha256.to_string(),
                meta.object_sha256.to_string(),
            ));
        }
        for (field, expected, found) in diffs {
            let f = self
                .finding(
                    Severity::Error,
                    FindingKind::RecordNameMismatch,
                    format!("segment record's {field} differs from the one in its object name (moved, renamed or copied from elsewhere)"),
                )
                .stream(&named.stream)
                .seq(named.seq.0)
                .object(&named.key)
                .expected(expected)
                .found(found);
            self.report.push(f);
        }
    }

    fn check_payload(&mut self, key: &str, meta: &SegmentMeta) -> Result<(), SourceError> {
        let object = self.src.read(key)?;
        let base = |me: &Self, kind, msg: String| {
            me.finding(Severity::Error, kind, msg)
                .stream(&meta.stream_id)
                .seq(meta.seq.0)
                .object(key)
        };
        let object_sha = Sha256::digest(&object);
        if object.len() as u64 != meta.object_len || object_sha != meta.object_sha256 {
            let f = base(
                self,
                FindingKind::PayloadHashMismatch,
                "stored payload is not the one the record describes".into(),
            )
            .expected(format!(
                "len={} sha256={}",
                meta.object_len, meta.object_sha256
            ))
            .found(format!("len={} sha256={}", object.len(), object_sha));
            self.report.push(f);
        }
        if meta.raw_len > MAX_VERIFIED_RAW_LEN {
            let f = base(
                self,
                FindingKind::PayloadDecompressFailed,
                format!("recorded raw_len is larger than any valid segment; not decompressed (limit {MAX_VERIFIED_RAW_LEN} bytes)"),
            )
            .found(format!("raw_len={}", meta.raw_len));
            self.report.push(f);
            return Ok(());
        }
        let raw = match decompress_payload(&object, meta.raw_len as usize) {
            Ok(raw) => raw,
            Err(e) => {
                let f = base(
                    self,
                    FindingKind::PayloadDecompressFailed,
                    format!("payload does not decompress as zstd: {e}"),
                )
                .expected(format!("a zstd frame of {} bytes", meta.raw_len));
                self.report.push(f);
                return Ok(());
            }
        };
        let raw_sha = Sha256::digest(&raw);
        if raw.len() as u64 != meta.raw_len || raw_sha != meta.raw_sha256 {
            let f = base(
                self,
                FindingKind::RawHashMismatch,
                "decompressed bytes are not the logged bytes the record describes".into(),
            )
            .expected(format!("len={} sha256={}", meta.raw_len, meta.raw_sha256))
            .found(format!("len={} sha256={}", raw.len(), raw_sha));
            self.report.push(f);
            return Ok(());
        }
        self.report.raw_bytes += meta.raw_len;
        let single =
            zstd::zstd_safe::find_frame_compressed_size(&object).ok() == Some(object.len());
        let sized = zstd::zstd_safe::get_frame_content_size(&object)
            .ok()
            .flatten()
            == Some(meta.raw_len);
        if !single || !sized {
            let f = base(
                self,
                FindingKind::PayloadFrameNonstandard,
                "payload decompresses to the right bytes but is not one zstd frame with the content size recorded".into(),
            )
            .expected("one frame, content size present")
            .found(format!("single_frame={single} content_size_matches={sized}"));
            self.report.push(f);
        }
        Ok(())
    }

    fn check_chain(&mut self, stream: &StreamId, slots: &StreamSlots) {
        let Some(&max) = slots.keys().next_back() else {
            return;
        };
        // Gaps, one finding per run of missing seqs.
        let mut expected_next = 0u64;
        for (&seq, here) in slots {
            if seq > expected_next {
                let revealed_by = here.first().map(|s| s.key.as_str());
                self.push_gap(stream, expected_next, seq - 1, revealed_by);
            }
            expected_next = seq + 1;
        }
        debug_assert_eq!(expected_next, max + 1);
        for (&seq, here) in slots {
            if here.len() > 1 {
                let keys: Vec<&str> = here.iter().map(|s| s.key.as_str()).collect();
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::ChainFork,
                        format!(
                            "{} different records claim this seq: {}",
                            here.len(),
                            keys.join(", ")
                        ),
                    )
                    .stream(stream)
                    .seq(seq)
                    .object(keys[1])
                    .expected("one record")
                    .found(format!("{} records", here.len()));
                self.report.push(f);
            }
            let prev = seq.checked_sub(1).and_then(|p| slots.get(&p));
            for slot in here {
                let Some(meta) = &slot.meta else { continue };
                if let Some(lost) = meta
                    .source
                    .as_journal()
                    .and_then(|j| j.lost_cursor.as_ref())
                {
                    let f = self
                        .finding(
                            Severity::Warning,
                            FindingKind::JournalCursorLost,
                            "the journal no longer had the cursor the agent was to resume from (vacuumed or \
                             rotated away): reading began again at the oldest entry, so entries between may be \
                             missing and earlier ones stored twice",
                        )
                        .stream(stream)
                        .seq(seq)
                        .object(&slot.key)
                        .expected(lost)
                        .found(
                            meta.source
                                .as_journal()
                                .map(|j| j.first_cursor.as_str())
                                .unwrap_or_default(),
                        );
                    self.report.push(f);
                }
                if seq == 0 {
                    if let Some(found) = meta.prev_segment {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::ChainBroken,
                                "first segment of a stream must not name a predecessor",
                            )
                            .stream(stream)
                            .seq(seq)
                            .object(&slot.key)
                            .expected("prev_segment=null")
                            .found(found);
                        self.report.push(f);
                    }
                    continue;
                }
                let Some(prev) = prev else { continue }; // reported as a gap
                let ok = meta
                    .prev_segment
                    .is_some_and(|p| prev.iter().any(|s| s.chain_hash == p));
                if !ok {
                    let expected = prev
                        .iter()
                        .map(|s| s.chain_hash.to_string())
                        .collect::<Vec<_>>()
                        .join("|");
                    let found = meta
                        .prev_segment
                        .map_or_else(|| "null".to_string(), |p| p.to_string());
                    let f = self
                        .finding(
                            Severity::Error,
                            FindingKind::ChainBroken,
                            format!(
                                "prev_segment is not the SHA-256 of the stored record of seq {}: that record was altered, replaced or reordered",
                                seq - 1
                            ),
                        )
                        .stream(stream)
                        .seq(seq)
                        .object(&slot.key)
                        .expected(expected)
                        .found(found);
                    self.report.push(f);
                }
                if let [one] = prev.as_slice() {
                    if let Some(pm) = &one.meta {
                        if pm.agent_instance != meta.agent_instance {
                            let f = self
                                .finding(
                                    Severity::Info,
                                    FindingKind::AgentRestart,
                                    "agent restarted between these segments; the chain continues across the restart",
                                )
                                .stream(stream)
                                .seq(seq)
                                .object(&slot.key)
                                .expected(&pm.agent_instance)
                                .found(&meta.agent_instance);
                            self.report.push(f);
                        }
                    }
                }
            }
        }
    }

    /// `revealed_by`: the record after the gap, whose `prev_segment` names
    /// the missing one; it is the object an auditor looks at first.
    fn push_gap(&mut self, stream: &StreamId, first: u64, last: u64, revealed_by: Option<&str>) {
        let range = if first == last {
            format!("{first}")
        } else {
            format!("{first}..={last}")
        };
        let mut f = self
            .finding(
                Severity::Error,
                FindingKind::ChainGap,
                format!("segment(s) {range} missing from the stream: deleted or never shipped"),
            )
            .stream(stream)
            .seq(first)
            .expected(format!("seq {range} present"))
            .found("absent");
        if let Some(key) = revealed_by {
            f = f.object(key);
        }
        self.report.push(f);
    }

    // ----- digests -----

    fn check_digest_objects(
        &mut self,
        objects: &HostObjects,
    ) -> Result<BTreeMap<u64, Vec<DigestSlot>>, SourceError> {
        let mut by_seq: BTreeMap<u64, Vec<DigestSlot>> = BTreeMap::new();
        let mut seen: BTreeMap<Sha256, String> = BTreeMap::new();
        for named in &objects.digests {
            self.report.digests += 1;
            let bytes = self.src.read(&named.key)?;
            let body_sha256 = Sha256::digest(&bytes);
            if body_sha256 != named.body_sha256 {
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::DigestNameMismatch,
                        "digest body's SHA-256 differs from the one in its name: the body was altered",
                    )
                    .seq(named.seq)
                    .object(&named.key)
                    .expected(named.body_sha256)
                    .found(body_sha256);
                self.report.push(f);
            }
            let body = match DigestBody::decode(&bytes) {
                Ok(b) => Some(b),
                Err(e) => {
                    let (kind, expected, found) = match &e {
                        DecodeError::UnknownFormat { expected, found } => (
                            FindingKind::UnknownFormat,
                            expected.to_string(),
                            found.clone(),
                        ),
                        DecodeError::Corrupt(_) => (
                            FindingKind::DigestCorrupt,
                            "a custody.digest.v1 body".into(),
                            "undecodable bytes".into(),
                        ),
                        DecodeError::NotCanonical => (
                            FindingKind::DigestCorrupt,
                            "canonical encoding".into(),
                            "other JSON layout".into(),
                        ),
                    };
                    let f = self
                        .finding(Severity::Error, kind, format!("digest body: {e}"))
                        .seq(named.seq)
                        .object(&named.key)
                        .expected(expected)
                        .found(found);
                    self.report.push(f);
                    None
                }
            };
            if let Some(first) = seen.get(&body_sha256) {
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::DigestReplayed,
                        format!("this digest body is a copy of {first}: an old digest was stored again under another name"),
                    )
                    .seq(named.seq)
                    .object(&named.key)
                    .expected("each digest body stored once")
                    .found(format!("copy of {first}"));
                self.report.push(f);
            }
            let seq = match &body {
                Some(b) => {
                    if &b.host_id != self.host {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::DigestNameMismatch,
                                "digest was written by another host",
                            )
                            .seq(named.seq)
                            .object(&named.key)
                            .expected(self.host)
                            .found(&b.host_id);
                        self.report.push(f);
                    }
                    if b.seq != named.seq {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::DigestNameMismatch,
                                "digest's seq differs from the one in its name",
                            )
                            .seq(named.seq)
                            .object(&named.key)
                            .expected(named.seq)
                            .found(b.seq);
                        self.report.push(f);
                    }
                    b.seq
                }
                None => named.seq,
            };
            if seen.contains_key(&body_sha256) {
                continue; // a replayed copy does not take a second place in the chain
            }
            seen.insert(body_sha256, named.key.clone());
            by_seq.entry(seq).or_default().push(DigestSlot {
                key: named.key.clone(),
                body_sha256,
                body,
            });
        }
        for sig in &objects.sigs {
            let body_key = sig.strip_suffix(".sig").unwrap_or(sig);
            if !objects.digests.iter().any(|d| d.key == body_key) {
                let f = self
                    .finding(
                        Severity::Warning,
                        FindingKind::SignatureWithoutDigest,
                        "signature without its digest body (the body may have been deleted; see digest_gap)",
                    )
                    .object(sig)
                    .expected(body_key)
                    .found("absent");
                self.report.push(f);
            }
        }
        Ok(by_seq)
    }

    fn check_digest_chain(&mut self, by_seq: &BTreeMap<u64, Vec<DigestSlot>>) {
        let mut expected_next = 0u64;
        for (&seq, here) in by_seq {
            if seq > expected_next {
                let range = if seq - 1 == expected_next {
                    format!("{expected_next}")
                } else {
                    format!("{expected_next}..={}", seq - 1)
                };
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::DigestGap,
                        format!("digest(s) {range} missing: a signed statement of what the host wrote was removed"),
                    )
                    .seq(expected_next)
                    .expected(format!("digest seq {range} present"))
                    .found("absent");
                // The digest after the gap names the missing one in prev_digest.
                let f = match here.first() {
                    Some(next) => f.object(&next.key),
                    None => f,
                };
                self.report.push(f);
            }
            expected_next = seq + 1;
        }
        for (&seq, here) in by_seq {
            if here.len() > 1 {
                let keys: Vec<&str> = here.iter().map(|s| s.key.as_str()).collect();
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::DigestFork,
                        format!(
                            "{} different digest bodies claim this seq: {}",
                            here.len(),
                            keys.join(", ")
                        ),
                    )
                    .seq(seq)
                    .object(keys[1])
                    .expected("one digest")
                    .found(format!("{} digests", here.len()));
                self.report.push(f);
            }
            let prev = seq.checked_sub(1).and_then(|p| by_seq.get(&p));
            for slot in here {
                let Some(body) = &slot.body else { continue };
                if body.window_start > body.window_end {
                    let f = self
                        .finding(
                            Severity::Error,
                            FindingKind::DigestWindowOrder,
                            "digest window ends before it starts",
                        )
                        .seq(seq)
                        .object(&slot.key)
                        .expected("window_start <= window_end")
                        .found(format!(
                            "{} > {}",
                            crate::timefmt::format_utc(body.window_start),
                            crate::timefmt::format_utc(body.window_end)
                        ));
                    self.report.push(f);
                }
                if seq == 0 {
                    if let Some(p) = body.prev_digest {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::DigestChainBroken,
                                "first digest must not name a predecessor",
                            )
                            .seq(seq)
                            .object(&slot.key)
                            .expected("prev_digest=null")
                            .found(p);
                        self.report.push(f);
                    }
                    continue;
                }
                let Some(prev) = prev else { continue };
                if !body
                    .prev_digest
                    .is_some_and(|p| prev.iter().any(|s| s.body_sha256 == p))
                {
                    let f = self
                        .finding(
                            Severity::Error,
                            FindingKind::DigestChainBroken,
                            format!("prev_digest is not the SHA-256 of digest {}", seq - 1),
                        )
                        .seq(seq)
                        .object(&slot.key)
                        .expected(
                            prev.iter()
                                .map(|s| s.body_sha256.to_string())
                                .collect::<Vec<_>>()
                                .join("|"),
                        )
                        .found(
                            body.prev_digest
                                .map_or_else(|| "null".to_string(), |p| p.to_string()),
                        );
                    self.report.push(f);
                }
                for p in prev.iter().filter_map(|s| s.body.as_ref()) {
                    if body.window_start < p.window_start || body.window_end < p.window_end {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::DigestWindowOrder,
                                format!("digest window goes back in time relative to digest {}: reordered or replayed", seq - 1),
                            )
                            .seq(seq)
                            .object(&slot.key)
                            .expected(format!(
                                "window at or after {}..{}",
                                crate::timefmt::format_utc(p.window_start),
                                crate::timefmt::format_utc(p.window_end)
                            ))
                            .found(format!(
                                "{}..{}",
                                crate::timefmt::format_utc(body.window_start),
                                crate::timefmt::format_utc(body.window_end)
                            ));
                        self.report.push(f);
                    }
                }
            }
        }
    }

    /// The keys this host's digests may be signed with, normalized (no
    /// comment); `None` when there are none (already reported).
    fn candidate_keys(
        &mut self,
        objects: &HostObjects,
    ) -> Result<Option<Vec<String>>, SourceError> {
        if let Some(trusted) = &self.opts.trusted_signers {
            let mut keys = Vec::new();
            for (principal, line) in trusted {
                if principal != self.host.as_str() {
                    continue;
                }
                match sign::normalize_public_key(line) {
                    Ok(k) if !keys.contains(&k) => keys.push(k),
                    Ok(_) => {}
                    Err(e) => {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::PublicKeyInvalid,
                                format!("trusted signer entry unusable: {e}"),
                            )
                            .found(line);
                        self.report.push(f);
                    }
                }
            }
            if keys.is_empty() {
                let f = self
                    .finding(
                        Severity::Error,
                        FindingKind::NoTrustedKey,
                        "no trusted key for this host: add a line for it to the allowed_signers file",
                    )
                    .expected(format!("an allowed_signers entry with principal {}", self.host))
                    .found("none");
                self.report.push(f);
                return Ok(None);
            }
            return Ok(Some(keys));
        }
        let mut keys: Vec<String> = Vec::new();
        for key in &objects.keys {
            let bytes = self.src.read(key)?;
            let parsed = std::str::from_utf8(&bytes)
                .map_err(|e| format!("not UTF-8: {e}"))
                .and_then(|text| {
                    sign::normalize_public_key(text)
                        .map(|k| (text.to_string(), k))
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok((text, k)) => {
                    let expected_name = layout::public_key_key(self.host, &text);
                    if &expected_name != key {
                        let f = self
                            .finding(
                                Severity::Warning,
                                FindingKind::PublicKeyInvalid,
                                "published key is not stored under the SHA-256 of its line",
                            )
                            .object(key)
                            .expected(&expected_name)
                            .found(key);
                        self.report.push(f);
                    }
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                Err(why) => {
                    let f = self
                        .finding(
                            Severity::Warning,
                            FindingKind::PublicKeyInvalid,
                            format!("published key unusable: {why}"),
                        )
                        .object(key);
                    self.report.push(f);
                }
            }
        }
        if keys.is_empty() {
            let f = self
                .finding(
                    Severity::Error,
                    FindingKind::NoTrustedKey,
                    "no usable public key published for this host and no allowed_signers given: digests cannot be checked",
                )
                .expected(layout::key_prefix(self.host))
                .found("no usable key");
            self.report.push(f);
            return Ok(None);
        }
        if keys.len() > 1 {
            let fps: Vec<String> = keys
                .iter()
                .filter_map(|k| sign::fingerprint_of(k).ok())
                .collect();
            let f = self
                .finding(
                    Severity::Warning,
                    FindingKind::MultiplePublishedKeys,
                    "more than one key published for this host (key rotation, or a key added by someone else); digests signed by any of them are accepted",
                )
                .found(fps.join(","));
            self.report.push(f);
        }
        let f = self
            .finding(
                Severity::Info,
                FindingKind::KeysFromStore,
                "signatures checked against keys published in the store itself; pass --allowed-signers to check them against keys you trust",
            )
            .found(keys.iter().filter_map(|k| sign::fingerprint_of(k).ok()).collect::<Vec<_>>().join(","));
        self.report.push(f);
        Ok(Some(keys))
    }

    /// Returns the body hashes whose signature verified.
    fn check_signatures(
        &mut self,
        by_seq: &BTreeMap<u64, Vec<DigestSlot>>,
        sigs: &BTreeSet<String>,
        keys: Option<&[String]>,
    ) -> Result<BTreeSet<Sha256>, SourceError> {
        let mut verified = BTreeSet::new();
        for (&seq, slots) in by_seq {
            for slot in slots {
                let sig_key = format!("{}.sig", slot.key);
                if !sigs.contains(&sig_key) {
                    let f = self
                        .finding(
                            Severity::Error,
                            FindingKind::SignatureMissing,
                            "digest has no signature",
                        )
                        .seq(seq)
                        .object(&slot.key)
                        .expected(&sig_key)
                        .found("absent");
                    self.report.push(f);
                    continue;
                }
                let Some(keys) = keys else { continue };
                let body_bytes = self.src.read(&slot.key)?;
                let sig_bytes = self.src.read(&sig_key)?;
                let Ok(sig_text) = String::from_utf8(sig_bytes) else {
                    let f = self
                        .finding(
                            Severity::Error,
                            FindingKind::SignatureInvalid,
                            "signature is not text (armored sshsig expected)",
                        )
                        .seq(seq)
                        .object(&sig_key);
                    self.report.push(f);
                    continue;
                };
                let mut last_err = None;
                let mut good = None;
                for k in keys {
                    match sign::verify(k, DIGEST_NAMESPACE, &body_bytes, &sig_text) {
                        Ok(info) => {
                            good = Some(info);
                            break;
                        }
                        Err(e) => last_err = Some(e),
                    }
                }
                if let Some(info) = good {
                    verified.insert(slot.body_sha256);
                    if let Some(body) = &slot.body {
                        if sign::normalize_public_key(&body.public_key).ok().as_deref()
                            != Some(info.public_key_line.as_str())
                        {
                            let f = self
                                .finding(
                                    Severity::Warning,
                                    FindingKind::DigestKeyMismatch,
                                    "digest verified, but its public_key field names another key than the one that signed it",
                                )
                                .seq(seq)
                                .object(&slot.key)
                                .expected(&info.fingerprint)
                                .found(sign::fingerprint_of(&body.public_key).unwrap_or_else(|_| body.public_key.clone()));
                            self.report.push(f);
                        }
                    }
                    continue;
                }
                let f = match last_err {
                    Some(SignError::WrongKey {
                        found_fingerprint, ..
                    }) => {
                        let expected: Vec<String> = keys
                            .iter()
                            .filter_map(|k| sign::fingerprint_of(k).ok())
                            .collect();
                        self.finding(
                            Severity::Error,
                            FindingKind::SignatureWrongKey,
                            "digest is signed by a key that is not this host's",
                        )
                        .expected(expected.join(","))
                        .found(found_fingerprint)
                    }
                    Some(e) => self.finding(
                        Severity::Error,
                        FindingKind::SignatureInvalid,
                        format!("signature does not verify: {e}"),
                    ),
                    None => self.finding(
                        Severity::Error,
                        FindingKind::SignatureInvalid,
                        "no key to check the signature with",
                    ),
                };
                let f = f.seq(seq).object(&sig_key);
                self.report.push(f);
            }
        }
        Ok(verified)
    }

    fn check_entries(
        &mut self,
        slot: &DigestSlot,
        body: &DigestBody,
        streams: &BTreeMap<StreamId, StreamSlots>,
    ) {
        let ordered = body
            .segments
            .windows(2)
            .all(|w| (&w[0].stream_id, w[0].seq) < (&w[1].stream_id, w[1].seq));
        if !ordered {
            let f = self
                .finding(
                    Severity::Warning,
                    FindingKind::DigestCorrupt,
                    "digest entries are not ordered by stream then seq, or list a segment twice (a writer bug; the digest is still signed)",
                )
                .seq(body.seq)
                .object(&slot.key)
                .expected("entries strictly ordered by (stream_id, seq)");
            self.report.push(f);
        }
        for entry in &body.segments {
            let here = streams
                .get(&entry.stream_id)
                .and_then(|s| s.get(&entry.seq.0));
            let base = |me: &Self, kind, msg: &str| {
                me.finding(
                    Severity::Error,
                    kind,
                    format!("{msg} (listed in digest {})", body.seq),
                )
                .stream(&entry.stream_id)
                .seq(entry.seq.0)
            };
            let Some(here) = here.filter(|h| !h.is_empty()) else {
                let f = base(
                    self,
                    FindingKind::DigestEntryMissingSegment,
                    "signed digest lists a segment that is not in the store",
                )
                .object(&slot.key)
                .expected(format!("record with sha256 {}", entry.meta_sha256))
                .found("absent");
                self.report.push(f);
                continue;
            };
            let matches = |s: &SegSlot| {
                s.chain_hash == entry.meta_sha256
                    && s.meta.as_ref().is_some_and(|m| {
                        m.object_sha256 == entry.object_sha256 && m.raw_sha256 == entry.raw_sha256
                    })
            };
            if !here.iter().any(matches) {
                let found = &here[0];
                let f = base(
                    self,
                    FindingKind::DigestEntryMismatch,
                    "stored segment differs from the one the signed digest lists",
                )
                .object(&found.key)
                .expected(format!(
                    "meta={} object={} raw={}",
                    entry.meta_sha256, entry.object_sha256, entry.raw_sha256
                ))
                .found(format!(
                    "meta={} object={} raw={}",
                    found.chain_hash,
                    found
                        .meta
                        .as_ref()
                        .map_or("?".to_string(), |m| m.object_sha256.to_string()),
                    found
                        .meta
                        .as_ref()
                        .map_or("?".to_string(), |m| m.raw_sha256.to_string()),
                ));
                self.report.push(f);
            }
        }
    }

    fn check_coverage(
        &mut self,
        streams: &BTreeMap<StreamId, StreamSlots>,
        signed: &[&DigestBody],
    ) {
        let mut listed: BTreeMap<&StreamId, BTreeSet<(u64, Sha256)>> = BTreeMap::new();
        for body in signed {
            for e in &body.segments {
                listed
                    .entry(&e.stream_id)
                    .or_default()
                    .insert((e.seq.0, e.meta_sha256));
            }
        }
        for (stream, slots) in streams {
            let listed_here = listed.get(stream);
            let high = listed_here.and_then(|l| l.iter().map(|(s, _)| *s).max());
            let mut pending: Vec<u64> = Vec::new();
            for (&seq, here) in slots {
                // After the last signed digest of this stream (or none yet).
                if !matches!(high, Some(h) if h >= seq) {
                    pending.push(seq);
                    continue;
                }
                for slot in here {
                    let covered = listed_here.is_some_and(|l| l.contains(&(seq, slot.chain_hash)));
                    if !covered {
                        let f = self
                            .finding(
                                Severity::Error,
                                FindingKind::SegmentNotCovered,
                                "no signed digest lists this segment, though later ones in its stream are: it was added, altered or its digest is lost",
                            )
                            .stream(stream)
                            .seq(seq)
                            .object(&slot.key)
                            .expected("listed in a signed digest")
                            .found(format!("record sha256 {} not listed", slot.chain_hash));
                        self.report.push(f);
                    }
                }
            }
            if let (Some(&first), Some(&last)) = (pending.first(), pending.last()) {
                let range = if first == last {
                    format!("{first}")
                } else {
                    format!("{first}..={last}")
                };
                let f = self
                    .finding(
                        Severity::Info,
                        FindingKind::SegmentPendingDigest,
                        format!("segment(s) {range} written after the last signed digest: not yet covered by a digest"),
                    )
                    .stream(stream)
                    .seq(first);
                self.report.push(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_line_format() {
        let host = HostId::new("web01").unwrap();
        let stream = StreamId::new("os-syslog").unwrap();
        let f = Finding::new(
            Severity::Error,
            FindingKind::ChainGap,
            "segment(s) 5 missing",
        )
        .host(&host)
        .stream(&stream)
        .seq(5)
        .expected("seq 5 present")
        .found("absent");
        assert_eq!(
            f.to_string(),
            "ERROR chain_gap host=web01 stream=os-syslog seq=5 expected=seq 5 present found=absent: segment(s) 5 missing"
        );
        let json = serde_json::to_string(&f).unwrap();
        assert!(
            json.starts_with("{\"severity\":\"error\",\"kind\":\"chain_gap\",\"host\":\"web01\""),
            "{json}"
        );
    }

    #[test]
    fn kind_names_are_snake_case() {
        assert_eq!(
            FindingKind::PayloadWithoutRecord.name(),
            "payload_without_record"
        );
        assert_eq!(FindingKind::SignatureWrongKey.name(), "signature_wrong_key");
    }

    #[test]
    fn unparsable_names_are_warnings() {
        struct One;
        impl ObjectSource for One {
            fn list(&self, _: &str) -> Result<Vec<String>, SourceError> {
                Ok(vec!["v1/web01/streams/s/not-a-segment".into()])
            }
            fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
                Err(SourceError::new(key, "unexpected read"))
            }
        }
        let r = verify_store(&One, &VerifyOptions::default()).unwrap();
        assert!(r.is_clean());
        assert_eq!(r.of_kind(FindingKind::UnrecognizedObject).count(), 1);
        assert_eq!(r.count(Severity::Warning), 1);
    }
}
