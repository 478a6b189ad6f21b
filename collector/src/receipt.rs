//! Verification on receipt, in two steps around the durable put:
//!
//! 1. [`Receipt::check`] decides whether an upload is acceptable at all. It
//!    refuses (HTTP 400) what cannot be evidence of anything: a payload
//!    whose SHA-256 is not the one in its name or that is not a zstd frame,
//!    a record or digest that does not decode or disagrees with its name,
//!    a record before its payload or a signature before its digest, a
//!    malformed signature or public key. For acceptable uploads it also
//!    works out the *findings* (FORMAT.md §10.1 kinds): a gap, fork or
//!    broken link in a stream's chain or the digest chain, a payload whose
//!    decompressed bytes do not match a well-formed record, a digest
//!    signature that does not verify with the host's published key.
//! 2. After the put, [`Receipt::stored`] records the findings (only when
//!    the object was newly created, so a retry does not report twice) and
//!    updates the per-stream caches that make the common case cheap.
//!
//! Findings never refuse an upload: the data is kept, because evidence of
//! tampering is evidence too. All reads go through the backing store, so a
//! collector restart loses nothing but the caches.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};

use custody_evidence::bundle::verify::{verify_bundle, BundleVerifyOptions};
use custody_evidence::digest::{DigestBody, DIGEST_NAMESPACE};
use custody_evidence::layout::{self, ParsedKey};
use custody_evidence::segment::{DecodeError, SegmentMeta};
use custody_evidence::sign::{self, SignError};
use custody_evidence::verify::{Finding, FindingKind, Severity, MAX_VERIFIED_RAW_LEN};
use custody_evidence::{HostId, Sha256, StreamId};
use custody_store::{ObjectStore, StoreError};
use sha2::Digest;

/// Why an upload is not accepted.
#[derive(Debug)]
pub enum Refusal {
    /// 400: the bytes cannot be what their name says.
    Invalid(String),
    /// 503: the backing store could not be read to check the upload.
    Unavailable(String),
}

impl Refusal {
    fn store(what: &str, e: StoreError) -> Refusal {
        if e.is_transient() {
            Refusal::Unavailable(format!("{what}: {e}"))
        } else {
            Refusal::Invalid(format!("{what}: {e}"))
        }
    }
}

/// Part of one stream as stored: records by seq, `(key, chain hash)`.
struct StreamView {
    records: HashMap<u64, Vec<(String, Sha256)>>,
    /// The highest seq stored below those asked for (to name a gap).
    highest_below: Option<u64>,
}

/// What [`Receipt::check`] learned, handed back to [`Receipt::stored`].
pub struct Checked {
    pub findings: Vec<Finding>,
    /// A segment payload (counted as one segment in the metrics).
    pub is_segment: bool,
    update: CacheUpdate,
}

enum CacheUpdate {
    None,
    Chain(HostId, StreamId, u64, Sha256),
    Digest(HostId, u64, Sha256),
    Keys(HostId),
}

/// The receipt checker: the backing store plus small caches of each
/// stream's and host's last accepted link.
pub struct Receipt {
    store: Arc<dyn ObjectStore>,
    chains: Mutex<HashMap<(HostId, StreamId), (u64, Sha256)>>,
    digests: Mutex<HashMap<HostId, (u64, Sha256)>>,
    keys: Mutex<HashMap<HostId, Vec<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Invalid(msg.into()))
}

fn decode_problem(what: &str, key: &str, e: DecodeError) -> Refusal {
    Refusal::Invalid(format!("{key} is not a valid {what}: {e}"))
}

/// The zstd magic number that starts every standard frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Decompresses `payload` as a stream, hashing as it goes, so memory stays
/// bounded whatever the record claims; reads at most `raw_len + 1` bytes.
fn raw_digest(payload: &[u8], raw_len: u64) -> Result<(u64, Sha256), String> {
    let dec = zstd::stream::read::Decoder::with_buffer(payload)
        .map_err(|e| e.to_string())?
        .single_frame();
    let mut limited = dec.take(raw_len + 1);
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = limited.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((total, Sha256::from_hasher(hasher)))
}

impl Receipt {
    pub fn new(store: Arc<dyn ObjectStore>) -> Receipt {
        Receipt {
            store,
            chains: Mutex::default(),
            digests: Mutex::default(),
            keys: Mutex::default(),
        }
    }

    /// Step 1; see the module documentation. `host` is the authenticated
    /// host, already checked to own `key`.
    pub async fn check(
        &self,
        host: &HostId,
        key: &str,
        parsed: &ParsedKey,
        bytes: &[u8],
    ) -> Result<Checked, Refusal> {
        let plain = |is_segment| Checked {
            findings: Vec::new(),
            is_segment,
            update: CacheUpdate::None,
        };
        match parsed {
            ParsedKey::SegmentPayload { object_sha256, .. } => {
                let found = Sha256::digest(bytes);
                if found != *object_sha256 {
                    return invalid(format!(
                        "payload SHA-256 is {found}, but its name says {object_sha256}: the upload was altered or truncated"
                    ));
                }
                if bytes.len() < 4 || bytes[..4] != ZSTD_MAGIC {
                    return invalid(format!("{key} is not a zstd frame (FORMAT.md §2.2)"));
                }
                if zstd::zstd_safe::get_frame_content_size(bytes).is_err() {
                    return invalid(format!(
                        "{key} does not start with a valid zstd frame header"
                    ));
                }
                Ok(plain(true))
            }
            ParsedKey::SegmentMeta {
                stream,
                seq,
                object_sha256,
                ..
            } => {
                let meta = SegmentMeta::decode(bytes)
                    .map_err(|e| decode_problem("segment record", key, e))?;
                if meta.host_id != *host
                    || meta.stream_id != *stream
                    || meta.seq != *seq
                    || meta.object_sha256 != *object_sha256
                {
                    return invalid(format!(
                        "record says host {} stream {} seq {} object {}, which is not its name {key}",
                        meta.host_id, meta.stream_id, meta.seq.0, meta.object_sha256
                    ));
                }
                let payload_key = layout::segment_payload_key(host, stream, *seq, object_sha256);
                let payload = match self.store.get(&payload_key).await {
                    Ok(p) => p,
                    Err(StoreError::NotFound { .. }) => {
                        return invalid(format!(
                            "payload {payload_key} is not stored: PUT the payload before its record"
                        ))
                    }
                    Err(e) => return Err(Refusal::store("reading the payload", e)),
                };
                let chain_hash = SegmentMeta::chain_hash(bytes);
                let mut findings = self.payload_findings(key, &meta, payload).await;
                findings.extend(self.chain_findings(key, &meta).await?);
                Ok(Checked {
                    findings,
                    is_segment: false,
                    update: CacheUpdate::Chain(host.clone(), stream.clone(), seq.0, chain_hash),
                })
            }
            ParsedKey::Digest {
                seq, body_sha256, ..
            } => {
                let found = Sha256::digest(bytes);
                if found != *body_sha256 {
                    return invalid(format!(
                        "digest SHA-256 is {found}, but its name says {body_sha256}"
                    ));
                }
                let body =
                    DigestBody::decode(bytes).map_err(|e| decode_problem("digest body", key, e))?;
                if body.host_id != *host || body.seq != *seq {
                    return invalid(format!(
                        "digest says host {} seq {}, which is not its name {key}",
                        body.host_id, body.seq
                    ));
                }
                let findings = self.digest_findings(key, host, &body).await?;
                Ok(Checked {
                    findings,
                    is_segment: false,
                    update: CacheUpdate::Digest(host.clone(), *seq, found),
                })
            }
            ParsedKey::DigestSig {
                seq, body_sha256, ..
            } => {
                let Ok(sig) = std::str::from_utf8(bytes) else {
                    return invalid(format!("{key} is not an armored SSH signature (not UTF-8)"));
                };
                if let Err(e) = sign::signer_of(sig) {
                    return invalid(format!("{key}: {e}"));
                }
                let body_key = layout::digest_key(host, *seq, body_sha256);
                let body = match self.store.get(&body_key).await {
                    Ok(b) => b,
                    Err(StoreError::NotFound { .. }) => {
                        return invalid(format!(
                            "digest {body_key} is not stored: PUT the digest before its signature"
                        ))
                    }
                    Err(e) => return Err(Refusal::store("reading the digest", e)),
                };
                let findings = self.signature_findings(key, host, *seq, &body, sig).await?;
                Ok(Checked {
                    findings,
                    is_segment: false,
                    update: CacheUpdate::None,
                })
            }
            ParsedKey::Bundle { .. } => {
                // Checked like an auditor would, against the keys the host
                // published; a bundle that fails is still kept (evidence of
                // tampering is evidence too) and reported.
                let keys = self.published_keys(host).await?;
                let trusted: Vec<(String, String)> =
                    keys.into_iter().map(|k| (host.to_string(), k)).collect();
                let opts = BundleVerifyOptions {
                    trusted_signers: Some(trusted),
                    ..Default::default()
                };
                let findings = match verify_bundle(bytes, &opts) {
                    Ok(report) if report.count(Severity::Error) == 0 => Vec::new(),
                    Ok(report) => {
                        let first: Vec<String> = report
                            .findings
                            .iter()
                            .filter(|f| f.severity == Severity::Error)
                            .take(5)
                            .map(|f| format!("{}: {}", f.kind.name(), f.message))
                            .collect();
                        vec![Finding::new(
                            Severity::Error,
                            FindingKind::BundleInvalid,
                            format!(
                                "bundle does not verify ({} errors): {}",
                                report.count(Severity::Error),
                                first.join("; ")
                            ),
                        )
                        .host(host)
                        .object(key)]
                    }
                    Err(e) => vec![Finding::new(
                        Severity::Error,
                        FindingKind::BundleInvalid,
                        format!("bundle could not be read: {e}"),
                    )
                    .host(host)
                    .object(key)],
                };
                Ok(Checked {
                    findings,
                    is_segment: false,
                    update: CacheUpdate::None,
                })
            }
            ParsedKey::BundleEvent { .. } => invalid(format!(
                "{key}: custody events beside a stored bundle are written by the collector only"
            )),
            ParsedKey::PublicKey { .. } => {
                let Ok(text) = std::str::from_utf8(bytes) else {
                    return invalid(format!(
                        "{key} is not an OpenSSH public key line (not UTF-8)"
                    ));
                };
                let line = text.strip_suffix('\n').unwrap_or(text);
                if line.contains('\n') {
                    return invalid(format!("{key} must hold one public key line"));
                }
                if let Err(e) = sign::normalize_public_key(line) {
                    return invalid(format!("{key}: {e}"));
                }
                let expected = layout::public_key_key(host, line);
                if expected != key {
                    return invalid(format!(
                        "a public key is named by the SHA-256 of its line: expected {expected}, not {key}"
                    ));
                }
                Ok(Checked {
                    findings: Vec::new(),
                    is_segment: false,
                    update: CacheUpdate::Keys(host.clone()),
                })
            }
        }
    }

    /// Step 2: the object is durable. Returns the findings to record (none
    /// for a retry of an object already stored).
    pub async fn stored(&self, checked: Checked, created: bool) -> Vec<Finding> {
        match checked.update {
            CacheUpdate::None => {}
            CacheUpdate::Chain(host, stream, seq, hash) => {
                let mut chains = lock(&self.chains);
                let e = chains.entry((host, stream)).or_insert((seq, hash));
                if seq >= e.0 {
                    *e = (seq, hash);
                }
            }
            CacheUpdate::Digest(host, seq, hash) => {
                let mut digests = lock(&self.digests);
                let e = digests.entry(host).or_insert((seq, hash));
                if seq >= e.0 {
                    *e = (seq, hash);
                }
            }
            CacheUpdate::Keys(host) => {
                lock(&self.keys).remove(&host);
                if created {
                    if let Ok(keys) = self.published_keys(&host).await {
                        if keys.len() > 1 {
                            return vec![Finding::new(
                                Severity::Warning,
                                FindingKind::MultiplePublishedKeys,
                                format!("host now publishes {} keys (key rotation, or a key added by someone else)", keys.len()),
                            )
                            .host(&host)];
                        }
                    }
                }
            }
        }
        if created {
            checked.findings
        } else {
            Vec::new()
        }
    }

    /// Payload against a well-formed record: lengths and hashes, and the
    /// decompressed bytes (streamed, in a blocking thread).
    async fn payload_findings(
        &self,
        key: &str,
        meta: &SegmentMeta,
        payload: Vec<u8>,
    ) -> Vec<Finding> {
        let base = |kind, msg: String| {
            Finding::new(Severity::Error, kind, msg)
                .host(&meta.host_id)
                .stream(&meta.stream_id)
                .seq(meta.seq.0)
                .object(key)
        };
        let object_sha = Sha256::digest(&payload);
        if payload.len() as u64 != meta.object_len || object_sha != meta.object_sha256 {
            return vec![base(
                FindingKind::PayloadHashMismatch,
                "stored payload differs from the record".into(),
            )
            .expected(format!(
                "len={} sha256={}",
                meta.object_len, meta.object_sha256
            ))
            .found(format!("len={} sha256={object_sha}", payload.len()))];
        }
        if meta.raw_len > MAX_VERIFIED_RAW_LEN {
            return vec![base(
                FindingKind::PayloadDecompressFailed,
                format!(
                    "raw_len {} is implausibly large; not decompressed",
                    meta.raw_len
                ),
            )];
        }
        let raw_len = meta.raw_len;
        let result = tokio::task::spawn_blocking(move || raw_digest(&payload, raw_len)).await;
        match result {
            Err(e) => vec![base(
                FindingKind::PayloadDecompressFailed,
                format!("check did not finish: {e}"),
            )],
            Ok(Err(e)) => vec![base(
                FindingKind::PayloadDecompressFailed,
                format!("payload does not decompress within raw_len: {e}"),
            )],
            Ok(Ok((len, sha))) if len != meta.raw_len || sha != meta.raw_sha256 => vec![base(
                FindingKind::RawHashMismatch,
                "decompressed bytes differ from the record".into(),
            )
            .expected(format!("len={} sha256={}", meta.raw_len, meta.raw_sha256))
            .found(format!("len={len} sha256={sha}"))],
            Ok(Ok(_)) => Vec::new(),
        }
    }

    /// The stored records of one stream with a seq in `seqs` (ascending),
    /// and the highest seq stored below them.
    async fn stream_records(
        &self,
        host: &HostId,
        stream: &StreamId,
        seqs: &[u64],
    ) -> Result<StreamView, Refusal> {
        let keys = self
            .store
            .list(&layout::stream_prefix(host, stream))
            .await
            .map_err(|e| Refusal::store("listing the stream", e))?;
        let mut out: HashMap<u64, Vec<(String, Sha256)>> = HashMap::new();
        let mut below: Option<u64> = None;
        for k in keys {
            if let Some(ParsedKey::SegmentMeta { seq, .. }) = layout::parse_key(&k) {
                if seqs.contains(&seq.0) {
                    let bytes = self
                        .store
                        .get(&k)
                        .await
                        .map_err(|e| Refusal::store("reading a record", e))?;
                    out.entry(seq.0)
                        .or_default()
                        .push((k, Sha256::digest(&bytes)));
                } else if seq.0 < seqs[0] {
                    below = Some(below.map_or(seq.0, |b: u64| b.max(seq.0)));
                }
            }
        }
        Ok(StreamView {
            records: out,
            highest_below: below,
        })
    }

    /// FORMAT.md §4: the record's link to seq − 1, and no second record with
    /// its seq.
    async fn chain_findings(&self, key: &str, meta: &SegmentMeta) -> Result<Vec<Finding>, Refusal> {
        let (host, stream, n) = (&meta.host_id, &meta.stream_id, meta.seq.0);
        let f = |kind, msg: String| {
            Finding::new(Severity::Error, kind, msg)
                .host(host)
                .stream(stream)
                .seq(n)
                .object(key)
        };
        if n == 0 {
            if let Some(p) = meta.prev_segment {
                return Ok(vec![f(
                    FindingKind::ChainBroken,
                    "seq 0 names a predecessor".into(),
                )
                .expected("null")
                .found(p)]);
            }
        }
        let cached = lock(&self.chains)
            .get(&(host.clone(), stream.clone()))
            .copied();
        if let (Some((last, hash)), Some(prev)) = (cached, meta.prev_segment) {
            if n > 0 && last == n - 1 {
                return Ok(if prev == hash {
                    Vec::new()
                } else {
                    vec![f(
                        FindingKind::ChainBroken,
                        format!("prev_segment is not the chain hash of seq {}", n - 1),
                    )
                    .expected(hash)
                    .found(prev)]
                });
            }
        }
        let seqs: Vec<u64> = if n == 0 { vec![0] } else { vec![n - 1, n] };
        let stored = self.stream_records(host, stream, &seqs).await?;
        let mut out = Vec::new();
        if let Some(same) = stored.records.get(&n) {
            for (other, _) in same.iter().filter(|(k, _)| k != key) {
                out.push(
                    f(
                        FindingKind::ChainFork,
                        format!("a different record with seq {n} is already stored"),
                    )
                    .expected(other)
                    .found(key),
                );
            }
        }
        if n > 0 {
            match (stored.records.get(&(n - 1)), meta.prev_segment) {
                (None, _) => {
                    let first_missing = stored.highest_below.map_or(0, |b| b + 1);
                    out.push(
                        f(
                            FindingKind::ChainGap,
                            format!(
                                "segments {first_missing}..={} of the stream are not stored",
                                n - 1
                            ),
                        )
                        .expected(format!("seq {first_missing}"))
                        .found(format!("seq {n}")),
                    );
                }
                (Some(prev_records), Some(prev)) => {
                    if !prev_records.iter().any(|(_, h)| *h == prev) {
                        out.push(
                            f(
                                FindingKind::ChainBroken,
                                format!(
                                    "prev_segment is not the chain hash of the stored seq {}",
                                    n - 1
                                ),
                            )
                            .expected(prev_records[0].1)
                            .found(prev),
                        );
                    }
                }
                (Some(_), None) => out.push(f(
                    FindingKind::ChainBroken,
                    format!("seq {n} has no prev_segment"),
                )),
            }
        }
        Ok(out)
    }

    /// FORMAT.md §5.4 for the new digest against the stored seq − 1.
    async fn digest_findings(
        &self,
        key: &str,
        host: &HostId,
        body: &DigestBody,
    ) -> Result<Vec<Finding>, Refusal> {
        let n = body.seq;
        let f = |kind, msg: String| {
            Finding::new(Severity::Error, kind, msg)
                .host(host)
                .seq(n)
                .object(key)
        };
        let mut out = Vec::new();
        if body.window_start > body.window_end {
            out.push(f(
                FindingKind::DigestWindowOrder,
                "window ends before it starts".into(),
            ));
        }
        if n == 0 {
            if body.prev_digest.is_some() {
                out.push(f(
                    FindingKind::DigestChainBroken,
                    "digest 0 names a predecessor".into(),
                ));
            }
            return Ok(out);
        }
        let cached = lock(&self.digests).get(host).copied();
        if let (Some((last, hash)), Some(prev)) = (cached, body.prev_digest) {
            if last == n - 1 {
                if prev != hash {
                    out.push(
                        f(
                            FindingKind::DigestChainBroken,
                            format!("prev_digest is not the hash of digest {}", n - 1),
                        )
                        .expected(hash)
                        .found(prev),
                    );
                }
                return Ok(out);
            }
        }
        let keys = self
            .store
            .list(&layout::digest_prefix(host))
            .await
            .map_err(|e| Refusal::store("listing digests", e))?;
        let mut prev_found = Vec::new();
        for k in keys {
            match layout::parse_key(&k) {
                Some(ParsedKey::Digest { seq, .. }) if seq == n && k != key => {
                    out.push(
                        f(
                            FindingKind::DigestFork,
                            format!("a different digest with seq {n} is already stored"),
                        )
                        .expected(k)
                        .found(key),
                    );
                }
                Some(ParsedKey::Digest {
                    seq, body_sha256, ..
                }) if seq == n - 1 => prev_found.push((k, body_sha256)),
                _ => {}
            }
        }
        match (prev_found.first(), body.prev_digest) {
            (None, _) => out.push(f(
                FindingKind::DigestGap,
                format!("digest {} is not stored", n - 1),
            )),
            (Some(_), None) => out.push(f(
                FindingKind::DigestChainBroken,
                format!("digest {n} has no prev_digest"),
            )),
            (Some((prev_key, prev_hash)), Some(prev)) => {
                if !prev_found.iter().any(|(_, h)| *h == prev) {
                    out.push(
                        f(
                            FindingKind::DigestChainBroken,
                            format!("prev_digest is not the hash of the stored digest {}", n - 1),
                        )
                        .expected(prev_hash)
                        .found(prev),
                    );
                } else if let Ok(bytes) = self.store.get(prev_key).await {
                    if let Ok(prev_body) = DigestBody::decode(&bytes) {
                        if body.window_start < prev_body.window_start
                            || body.window_end < prev_body.window_end
                        {
                            out.push(f(
                                FindingKind::DigestWindowOrder,
                                format!("window goes backwards from digest {}", n - 1),
                            ));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The host's published public key lines (cached until a new key arrives).
    async fn published_keys(&self, host: &HostId) -> Result<Vec<String>, Refusal> {
        if let Some(k) = lock(&self.keys).get(host) {
            return Ok(k.clone());
        }
        let names = self
            .store
            .list(&layout::key_prefix(host))
            .await
            .map_err(|e| Refusal::store("listing published keys", e))?;
        let mut keys = Vec::new();
        for name in names {
            let bytes = self
                .store
                .get(&name)
                .await
                .map_err(|e| Refusal::store("reading a published key", e))?;
            if let Ok(text) = String::from_utf8(bytes) {
                keys.push(text.trim_end().to_string());
            }
        }
        lock(&self.keys).insert(host.clone(), keys.clone());
        Ok(keys)
    }

    /// FORMAT.md §6: the signature against the host's published key(s).
    async fn signature_findings(
        &self,
        key: &str,
        host: &HostId,
        seq: u64,
        body: &[u8],
        sig: &str,
    ) -> Result<Vec<Finding>, Refusal> {
        let f =
            |sev, kind, msg: String| Finding::new(sev, kind, msg).host(host).seq(seq).object(key);
        let keys = self.published_keys(host).await?;
        if keys.is_empty() {
            return Ok(vec![f(
                Severity::Error,
                FindingKind::NoTrustedKey,
                format!(
                    "host has published no key under {}; the signature cannot be checked",
                    layout::key_prefix(host)
                ),
            )]);
        }
        let mut last_err = None;
        for k in &keys {
            match sign::verify(k, DIGEST_NAMESPACE, body, sig) {
                Ok(signer) => {
                    let claimed = DigestBody::decode(body)
                        .ok()
                        .and_then(|b| sign::normalize_public_key(&b.public_key).ok());
                    if claimed.is_some_and(|c| c != signer.public_key_line) {
                        return Ok(vec![f(
                            Severity::Warning,
                            FindingKind::DigestKeyMismatch,
                            "signature verifies, but the digest's public_key field names another key".into(),
                        )]);
                    }
                    return Ok(Vec::new());
                }
                Err(e) => last_err = Some(e),
            }
        }
        Ok(match last_err {
            Some(SignError::WrongKey {
                expected_fingerprint,
                found_fingerprint,
            }) => vec![f(
                Severity::Error,
                FindingKind::SignatureWrongKey,
                "signed by a key the host has not published".into(),
            )
            .expected(expected_fingerprint)
            .found(found_fingerprint)],
            Some(e) => vec![f(
                Severity::Error,
                FindingKind::SignatureInvalid,
                e.to_string(),
            )],
            None => Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_digest_is_bounded_and_exact() {
        let raw = b"line one\nline two\n".repeat(100);
        let payload = custody_evidence::segment::compress_payload(&raw, 3).unwrap();
        let (len, sha) = raw_digest(&payload, raw.len() as u64).unwrap();
        assert_eq!((len, sha), (raw.len() as u64, Sha256::digest(&raw)));
        // A record claiming fewer bytes sees one byte more than it claims.
        let (len, _) = raw_digest(&payload, 10).unwrap();
        assert_eq!(len, 11);
        assert!(raw_digest(b"garbage", 10).is_err());
    }
}
