//! Named tamper vectors: a valid store with one thing done to it, and the
//! finding that must name it. Each vector also pins the full set of Error
//! kinds it causes, so a change in what the verifier reports is a visible,
//! reviewed change.

mod support;

use custody_evidence::digest::DIGEST_NAMESPACE;
use custody_evidence::layout;
use custody_evidence::segment::{compress_payload, SegmentMeta, Source};
use custody_evidence::sign::HostKey;
use custody_evidence::verify::{FindingKind as K, Severity, VerifyOptions};
use custody_evidence::{SegmentSeq, Sha256};
use support::*;

const S0: usize = 0; // os-syslog
const S1: usize = 1; // logon-auth

#[test]
fn valid_store_verifies_clean() {
    let fx = Fixture::valid();
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    assert_eq!(r.count(Severity::Warning), 0, "{}", show(&r));
    assert_eq!((r.hosts, r.streams, r.segments, r.digests), (1, 2, 10, 3));
    let raw: u64 = fx.segs.iter().flatten().map(|s| s.raw.len() as u64).sum();
    assert_eq!(r.raw_bytes, raw);
    // The restart in logon-auth is visible, and is not an error.
    let restart = only(&r, K::AgentRestart);
    assert_eq!(
        (restart.stream.as_deref(), restart.seq),
        (Some("logon-auth"), Some(3))
    );
    assert_eq!(restart.severity, Severity::Info);
    only(&r, K::KeysFromStore);
    assert_eq!(r.findings.len(), 2, "{}", show(&r));
}

#[test]
fn valid_store_verifies_clean_against_allowed_signers() {
    let fx = Fixture::valid();
    let opts = VerifyOptions {
        trusted_signers: Some(vec![("web01".into(), fx.key.public_key_line("x"))]),
        ..VerifyOptions::default()
    };
    let r = fx.verify_with(&opts);
    assert!(r.is_clean(), "{}", show(&r));
    assert_eq!(r.of_kind(K::KeysFromStore).count(), 0);
}

#[test]
fn untrusted_key_in_allowed_signers() {
    let fx = Fixture::valid();
    let other = HostKey::generate();
    let opts = VerifyOptions {
        trusted_signers: Some(vec![("web01".into(), other.public_key_line(""))]),
        ..VerifyOptions::default()
    };
    let r = fx.verify_with(&opts);
    assert_eq!(r.of_kind(K::SignatureWrongKey).count(), 3, "{}", show(&r));
    let f = r.of_kind(K::SignatureWrongKey).next().unwrap();
    assert_eq!(f.expected.as_deref(), Some(other.fingerprint().as_str()));
    assert_eq!(f.found.as_deref(), Some(fx.key.fingerprint().as_str()));
    // Nothing is signed by a trusted key, so nothing counts as covered yet.
    assert_eq!(error_kinds(&r), vec![K::SignatureWrongKey]);

    let opts = VerifyOptions {
        trusted_signers: Some(vec![("db01".into(), fx.key.public_key_line(""))]),
        ..VerifyOptions::default()
    };
    let r = fx.verify_with(&opts);
    assert_eq!(only(&r, K::NoTrustedKey).host.as_deref(), Some("web01"));
}

#[test]
fn payload_flipped_byte() {
    let mut fx = Fixture::valid();
    let seg = fx.seg(S0, 2).clone();
    let payload = fx.store.0.get_mut(&seg.payload_key).unwrap();
    let mid = payload.len() / 2;
    payload[mid] ^= 0x01;
    let r = fx.verify();
    let f = only(&r, K::PayloadHashMismatch);
    assert_eq!(
        (f.stream.as_deref(), f.seq, f.object.as_deref()),
        (Some("os-syslog"), Some(2), Some(seg.payload_key.as_str()))
    );
    assert!(f
        .expected
        .as_deref()
        .unwrap()
        .contains(&seg.meta.object_sha256.to_string()));
    // zstd's own checksum (or the raw hash) catches it again on decompression.
    let kinds = error_kinds(&r);
    assert!(
        kinds == vec![K::PayloadHashMismatch, K::PayloadDecompressFailed]
            || kinds == vec![K::PayloadHashMismatch, K::RawHashMismatch],
        "{}",
        show(&r)
    );
}

#[test]
fn segment_deleted() {
    let mut fx = Fixture::valid();
    let seg = fx.seg(S0, 2).clone();
    fx.remove_seg(&seg);
    let r = fx.verify();
    let f = only(&r, K::ChainGap);
    assert_eq!((f.stream.as_deref(), f.seq), (Some("os-syslog"), Some(2)));
    assert_eq!(
        f.object.as_deref(),
        Some(fx.seg(S0, 3).meta_key.as_str()),
        "the record that reveals the gap"
    );
    let f = only(&r, K::DigestEntryMissingSegment);
    assert_eq!((f.stream.as_deref(), f.seq), (Some("os-syslog"), Some(2)));
    assert_eq!(f.object.as_deref(), Some(fx.digests[1].key.as_str()));
    assert_eq!(
        error_kinds(&r),
        vec![K::ChainGap, K::DigestEntryMissingSegment]
    );
}

#[test]
fn segments_swapped() {
    // Segments 1 and 2 change places: each is rewritten with the other's
    // seq and stored under the name its new content implies.
    let mut fx = Fixture::valid();
    let (a, b) = (fx.seg(S0, 1).clone(), fx.seg(S0, 2).clone());
    fx.remove_seg(&a);
    fx.remove_seg(&b);
    let mut a_meta = a.meta.clone();
    let mut b_meta = b.meta.clone();
    a_meta.seq = SegmentSeq(2);
    b_meta.seq = SegmentSeq(1);
    let b_at_1 = seg_from_meta(b_meta, b.raw.clone(), b.payload.clone());
    let a_at_2 = seg_from_meta(a_meta, a.raw.clone(), a.payload.clone());
    fx.put_seg(&b_at_1);
    fx.put_seg(&a_at_2);
    let r = fx.verify();
    let broken: Vec<_> = r.of_kind(K::ChainBroken).collect();
    let seqs: Vec<u64> = broken.iter().filter_map(|f| f.seq).collect();
    assert_eq!(seqs, vec![1, 2, 3], "{}", show(&r));
    assert_eq!(broken[0].stream.as_deref(), Some("os-syslog"));
    assert_eq!(broken[0].object.as_deref(), Some(b_at_1.meta_key.as_str()));
    assert_eq!(
        broken[0].expected.as_deref(),
        Some(fx.seg(S0, 0).chain_hash().to_string().as_str())
    );
    assert_eq!(
        broken[0].found.as_deref(),
        Some(a.chain_hash().to_string().as_str())
    );
    assert_eq!(
        error_kinds(&r),
        vec![K::ChainBroken, K::DigestEntryMismatch, K::SegmentNotCovered]
    );
}

#[test]
fn digest_other_key() {
    let mut fx = Fixture::valid();
    let other = HostKey::generate();
    let d = fx.digests[1].clone();
    fx.put_digest(&d, &other);
    let r = fx.verify();
    let f = only(&r, K::SignatureWrongKey);
    assert_eq!(
        (f.seq, f.object.as_deref()),
        (Some(1), Some(d.sig_key.as_str()))
    );
    assert_eq!(f.expected.as_deref(), Some(fx.key.fingerprint().as_str()));
    assert_eq!(f.found.as_deref(), Some(other.fingerprint().as_str()));
    // Digest 1's segments are no longer covered by a signed digest.
    let uncovered: Vec<(Option<&str>, Option<u64>)> = r
        .of_kind(K::SegmentNotCovered)
        .map(|f| (f.stream.as_deref(), f.seq))
        .collect();
    assert_eq!(
        uncovered,
        vec![
            (Some("logon-auth"), Some(2)),
            (Some("logon-auth"), Some(3)),
            (Some("os-syslog"), Some(2)),
            (Some("os-syslog"), Some(3))
        ]
    );
    assert_eq!(
        error_kinds(&r),
        vec![K::SignatureWrongKey, K::SegmentNotCovered]
    );
}

#[test]
fn digest_removed() {
    let mut fx = Fixture::valid();
    let d = fx.digests[1].clone();
    fx.store.0.remove(&d.key);
    fx.store.0.remove(&d.sig_key);
    let r = fx.verify();
    let f = only(&r, K::DigestGap);
    assert_eq!((f.host.as_deref(), f.seq), (Some("web01"), Some(1)));
    assert_eq!(
        f.object.as_deref(),
        Some(fx.digests[2].key.as_str()),
        "the digest that reveals the gap"
    );
    assert_eq!(r.of_kind(K::SegmentNotCovered).count(), 4, "{}", show(&r));
    assert_eq!(error_kinds(&r), vec![K::DigestGap, K::SegmentNotCovered]);
}

#[test]
fn digest_replayed() {
    // An old digest (body and signature) stored again as if it were a new one.
    let mut fx = Fixture::valid();
    let d0 = fx.digests[0].clone();
    let sha = Sha256::digest(&d0.bytes);
    let replay_key = layout::digest_key(&fx.host, 3, &sha);
    fx.store.0.insert(replay_key.clone(), d0.bytes.clone());
    fx.store
        .0
        .insert(format!("{replay_key}.sig"), fx.store.0[&d0.sig_key].clone());
    let r = fx.verify();
    let f = only(&r, K::DigestReplayed);
    assert_eq!(
        (f.seq, f.object.as_deref()),
        (Some(3), Some(replay_key.as_str()))
    );
    assert!(f.found.as_deref().unwrap().contains(&d0.key));
    let f = only(&r, K::DigestNameMismatch);
    assert_eq!(
        (f.expected.as_deref(), f.found.as_deref()),
        (Some("3"), Some("0"))
    );
    assert_eq!(
        error_kinds(&r),
        vec![K::DigestNameMismatch, K::DigestReplayed]
    );
}

#[test]
fn digest_window_goes_back() {
    // A validly signed digest 3 whose window precedes digest 2's (as if a
    // host with a wrong clock, or an old statement re-signed, were accepted).
    let mut fx = Fixture::valid();
    let prev = Sha256::digest(&fx.digests[2].bytes);
    let mut d = make_digest(
        &fx.host,
        &fx.key,
        &fx.digests[2].body.agent_instance,
        3,
        Some(prev),
        Vec::new(),
    );
    d.body.window_start = T0;
    d.body.window_end = T0 + time::Duration::seconds(30);
    let d = resign(&fx, d.body);
    fx.put_digest(&d, &fx.key.clone());
    let r = fx.verify();
    let f = only(&r, K::DigestWindowOrder);
    assert_eq!(
        (f.seq, f.object.as_deref()),
        (Some(3), Some(d.key.as_str()))
    );
    assert_eq!(error_kinds(&r), vec![K::DigestWindowOrder]);
}

fn resign(fx: &Fixture, body: custody_evidence::digest::DigestBody) -> Dig {
    let bytes = body.encode();
    let sha = Sha256::digest(&bytes);
    Dig {
        key: layout::digest_key(&fx.host, body.seq, &sha),
        sig_key: layout::digest_sig_key(&fx.host, body.seq, &sha),
        body,
        bytes,
    }
}

#[test]
fn record_edited() {
    // The record of logon-auth seq 1 rewritten canonically with another
    // source path, under its own (unchanged) name.
    let mut fx = Fixture::valid();
    let seg = fx.seg(S1, 1).clone();
    let mut meta = seg.meta.clone();
    if let custody_evidence::segment::Source::File(f) = &mut meta.source {
        f.path = "/var/log/other.log".into();
    }
    let edited = seg_from_meta(meta, seg.raw.clone(), seg.payload.clone());
    assert_eq!(edited.meta_key, seg.meta_key);
    fx.put_seg(&edited);
    let r = fx.verify();
    let f = only(&r, K::DigestEntryMismatch);
    assert_eq!(
        (f.stream.as_deref(), f.seq, f.object.as_deref()),
        (Some("logon-auth"), Some(1), Some(seg.meta_key.as_str()))
    );
    let f = only(&r, K::ChainBroken);
    assert_eq!((f.stream.as_deref(), f.seq), (Some("logon-auth"), Some(2)));
    assert_eq!(
        f.expected.as_deref(),
        Some(edited.chain_hash().to_string().as_str())
    );
    assert_eq!(
        f.found.as_deref(),
        Some(seg.chain_hash().to_string().as_str())
    );
    let f = only(&r, K::SegmentNotCovered);
    assert_eq!((f.stream.as_deref(), f.seq), (Some("logon-auth"), Some(1)));
    assert_eq!(
        error_kinds(&r),
        vec![K::ChainBroken, K::DigestEntryMismatch, K::SegmentNotCovered]
    );
}

#[test]
fn record_not_canonical() {
    let mut fx = Fixture::valid();
    let seg = fx.seg(S1, 4).clone();
    let pretty = serde_json::to_vec_pretty(&seg.meta).unwrap();
    fx.store.0.insert(seg.meta_key.clone(), pretty);
    let r = fx.verify();
    let f = only(&r, K::RecordNotCanonical);
    assert_eq!(
        (f.stream.as_deref(), f.seq, f.object.as_deref()),
        (Some("logon-auth"), Some(4), Some(seg.meta_key.as_str()))
    );
    // Its payload is claimed by the (unreadable) record, not reported as lone.
    assert_eq!(r.of_kind(K::PayloadWithoutRecord).count(), 0);
    assert_eq!(
        error_kinds(&r),
        vec![
            K::RecordNotCanonical,
            K::DigestEntryMismatch,
            K::SegmentNotCovered
        ]
    );
}

#[test]
fn record_of_unknown_version() {
    let mut fx = Fixture::valid();
    let seg = fx.seg(S0, 4).clone();
    let text = String::from_utf8(seg.meta_bytes.clone())
        .unwrap()
        .replace("custody.segment.v1", "custody.segment.v2");
    fx.store.0.insert(seg.meta_key.clone(), text.into_bytes());
    let r = fx.verify();
    let f = only(&r, K::UnknownFormat);
    assert_eq!((f.stream.as_deref(), f.seq), (Some("os-syslog"), Some(4)));
    assert_eq!(
        (f.expected.as_deref(), f.found.as_deref()),
        (Some("custody.segment.v1"), Some("custody.segment.v2"))
    );
    assert_eq!(
        r.of_kind(K::RecordCorrupt).count(),
        0,
        "a newer version is not corruption"
    );
}

#[test]
fn payload_without_record() {
    let mut fx = Fixture::valid();
    let payload = compress_payload(b"injected line\n", 3).unwrap();
    let key = layout::segment_payload_key(
        &fx.host,
        &fx.streams[S1],
        SegmentSeq(7),
        &Sha256::digest(&payload),
    );
    fx.store.0.insert(key.clone(), payload);
    let r = fx.verify();
    let f = only(&r, K::PayloadWithoutRecord);
    assert_eq!(
        (f.stream.as_deref(), f.seq, f.object.as_deref()),
        (Some("logon-auth"), Some(7), Some(key.as_str()))
    );
    assert_eq!(error_kinds(&r), vec![K::PayloadWithoutRecord]);
}

#[test]
fn record_without_payload() {
    let mut fx = Fixture::valid();
    let seg = fx.seg(S0, 0).clone();
    fx.store.0.remove(&seg.payload_key);
    let r = fx.verify();
    let f = only(&r, K::PayloadMissing);
    assert_eq!(
        (f.stream.as_deref(), f.seq, f.object.as_deref()),
        (Some("os-syslog"), Some(0), Some(seg.meta_key.as_str()))
    );
    assert_eq!(error_kinds(&r), vec![K::PayloadMissing]);
}

#[test]
fn fork() {
    // A second, different seq 3 chained to the genuine seq 2.
    let mut fx = Fixture::valid();
    let prev = fx.seg(S0, 2).chain_hash();
    let instance = fx.seg(S0, 2).meta.agent_instance.clone();
    let alt = make_seg(
        &fx.host,
        &fx.streams[S0],
        3,
        Some(prev),
        raw_lines(&fx.streams[S0], 3, " (forged)"),
        &instance,
    );
    fx.put_seg(&alt);
    let r = fx.verify();
    let f = only(&r, K::ChainFork);
    assert_eq!((f.stream.as_deref(), f.seq), (Some("os-syslog"), Some(3)));
    assert!(
        f.message.contains(&alt.meta_key) && f.message.contains(&fx.seg(S0, 3).meta_key),
        "{}",
        f.message
    );
    let f = only(&r, K::SegmentNotCovered);
    assert_eq!(
        (f.seq, f.object.as_deref()),
        (Some(3), Some(alt.meta_key.as_str()))
    );
    assert_eq!(error_kinds(&r), vec![K::ChainFork, K::SegmentNotCovered]);
}

#[test]
fn signature_missing_and_bad() {
    let mut fx = Fixture::valid();
    fx.store.0.remove(&fx.digests[2].sig_key.clone());
    // Digest 0 signed in another namespace by the right key.
    let sig = fx.key.sign("custody-bundle", &fx.digests[0].bytes).unwrap();
    fx.store
        .0
        .insert(fx.digests[0].sig_key.clone(), sig.into_bytes());
    let r = fx.verify();
    let f = only(&r, K::SignatureMissing);
    assert_eq!(
        (f.seq, f.object.as_deref()),
        (Some(2), Some(fx.digests[2].key.as_str()))
    );
    let f = only(&r, K::SignatureInvalid);
    assert_eq!(
        (f.seq, f.object.as_deref()),
        (Some(0), Some(fx.digests[0].sig_key.as_str()))
    );
    assert!(f.message.contains("namespace"), "{}", f.message);
    let _ = DIGEST_NAMESPACE;
}

#[test]
fn segments_after_last_digest_are_info() {
    let mut fx = Fixture::valid();
    let last = fx.seg(S0, 4).clone();
    let s5 = make_seg(
        &fx.host,
        &fx.streams[S0],
        5,
        Some(last.chain_hash()),
        raw_lines(&fx.streams[S0], 5, ""),
        &last.meta.agent_instance,
    );
    let s6 = make_seg(
        &fx.host,
        &fx.streams[S0],
        6,
        Some(s5.chain_hash()),
        raw_lines(&fx.streams[S0], 6, ""),
        &last.meta.agent_instance,
    );
    fx.put_seg(&s5);
    fx.put_seg(&s6);
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    let f = only(&r, K::SegmentPendingDigest);
    assert_eq!(
        (f.stream.as_deref(), f.seq, f.severity),
        (Some("os-syslog"), Some(5), Severity::Info)
    );
    assert!(f.message.contains("5..=6"), "{}", f.message);
}

#[test]
fn second_published_key_is_a_warning() {
    let mut fx = Fixture::valid();
    let other = HostKey::generate().public_key_line("");
    fx.store
        .0
        .insert(layout::public_key_key(&fx.host, &other), other.into_bytes());
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    assert_eq!(
        only(&r, K::MultiplePublishedKeys).severity,
        Severity::Warning
    );
}

#[test]
fn unknown_objects_are_warnings_and_chain_hash_is_over_stored_bytes() {
    let mut fx = Fixture::valid();
    fx.store
        .0
        .insert("v1/web01/notes.txt".into(), b"hello".to_vec());
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    assert_eq!(
        only(&r, K::UnrecognizedObject).object.as_deref(),
        Some("v1/web01/notes.txt")
    );
    // The chain hash is the SHA-256 of the stored record bytes.
    let s = fx.seg(S0, 1);
    assert_eq!(
        fx.seg(S0, 2).meta.prev_segment,
        Some(Sha256::digest(&fx.store.0[&s.meta_key]))
    );
    assert_eq!(SegmentMeta::chain_hash(&s.meta_bytes), s.chain_hash());
}

#[test]
fn digest_entries_out_of_order_is_a_warning() {
    let mut fx = Fixture::valid();
    let prev = Sha256::digest(&fx.digests[2].bytes);
    let mut entries = vec![fx.seg(S1, 4).entry(), fx.seg(S0, 4).entry()];
    entries.sort_by(|a, b| (&b.stream_id, b.seq).cmp(&(&a.stream_id, a.seq))); // descending: wrong
    let d = make_digest(
        &fx.host,
        &fx.key,
        &fx.digests[2].body.agent_instance,
        3,
        Some(prev),
        entries,
    );
    fx.put_digest(&d, &fx.key.clone());
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    let f = only(&r, K::DigestCorrupt);
    assert_eq!(
        (f.severity, f.seq, f.object.as_deref()),
        (Severity::Warning, Some(3), Some(d.key.as_str()))
    );
}

/// Appends seq 5 to `logon-auth` whose record claims the file and range of
/// `claimed` (another stream's segment), holding `raw`, chained and covered
/// by a new digest 3 signed with the host key: consistent in every respect
/// but the cross-stream one. `fingerprint` replaces the claimed file's.
fn append_claiming(
    fx: &mut Fixture,
    claimed: &Seg,
    raw: Vec<u8>,
    fingerprint: Option<Sha256>,
) -> Seg {
    let payload = compress_payload(&raw, 3).expect("compress");
    let last = fx.seg(S1, 4).clone();
    let mut meta = claimed.meta.clone();
    meta.stream_id = fx.streams[S1].clone();
    meta.seq = SegmentSeq(5);
    meta.agent_instance = last.meta.agent_instance.clone();
    meta.prev_segment = Some(last.chain_hash());
    meta.range.end = meta.range.start + raw.len() as u64;
    meta.raw_len = raw.len() as u64;
    meta.raw_sha256 = Sha256::digest(&raw);
    meta.object_len = payload.len() as u64;
    meta.object_sha256 = Sha256::digest(&payload);
    if let (Some(fp), Source::File(file)) = (fingerprint, &mut meta.source) {
        file.fingerprint = fp;
    }
    let seg = seg_from_meta(meta, raw, payload);
    fx.put_seg(&seg);
    let prev = Sha256::digest(&fx.digests[2].bytes);
    let instance = fx.digests[2].body.agent_instance.clone();
    let key = fx.key.clone();
    let d = make_digest(&fx.host, &key, &instance, 3, Some(prev), vec![seg.entry()]);
    fx.put_digest(&d, &key);
    seg
}

#[test]
fn a_segment_claiming_another_streams_file_with_other_bytes_is_an_error() {
    let mut fx = Fixture::valid();
    let claimed = fx.seg(S0, 1).clone();
    let own = raw_lines(&fx.streams[S1], 5, " (forged)");
    let forged = append_claiming(&mut fx, &claimed, own, None);
    let r = fx.verify();
    assert_eq!(error_kinds(&r), [K::CrossStreamConflict], "{}", show(&r));
    let f = only(&r, K::CrossStreamConflict);
    // Which of the two is wrong cannot be told from the store: the finding
    // is at one of them and names the other.
    let keys = [claimed.meta_key.as_str(), forged.meta_key.as_str()];
    let object = f.object.as_deref().unwrap_or_default();
    assert!(keys.contains(&object), "{f}");
    let other = keys.iter().find(|k| **k != object).unwrap();
    assert!(f.message.contains(other), "{f}");
    let first_diff = claimed
        .raw
        .iter()
        .zip(&forged.raw)
        .position(|(a, b)| a != b)
        .unwrap() as u64;
    assert!(
        f.found.as_deref().unwrap_or_default().contains(&format!(
            "file offset {}",
            claimed.meta.range.start + first_diff
        )),
        "{f}"
    );
}

#[test]
fn the_same_bytes_of_one_file_in_two_streams_are_a_warning() {
    // Two sources whose globs match the same file: both streams hold its
    // bytes, faithfully. Not wrong evidence, but worth a look.
    let mut fx = Fixture::valid();
    let claimed = fx.seg(S0, 1).clone();
    append_claiming(&mut fx, &claimed, claimed.raw.clone(), None);
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    let f = only(&r, K::CrossStreamDuplicate);
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.message.contains("os-syslog") && f.message.contains("logon-auth"),
        "{f}"
    );
}

#[test]
fn a_reused_inode_with_another_fingerprint_is_not_a_finding() {
    // Same device and inode, another fingerprint: the inode was freed and
    // reused by a different file, which another source read.
    let mut fx = Fixture::valid();
    let claimed = fx.seg(S0, 1).clone();
    let other = raw_lines(&fx.streams[S1], 5, " (another file)");
    append_claiming(
        &mut fx,
        &claimed,
        other,
        Some(Sha256::digest(b"another file's first line")),
    );
    let r = fx.verify();
    assert!(r.is_clean(), "{}", show(&r));
    assert_eq!(r.of_kind(K::CrossStreamConflict).count(), 0);
    assert_eq!(r.of_kind(K::CrossStreamDuplicate).count(), 0);
}
