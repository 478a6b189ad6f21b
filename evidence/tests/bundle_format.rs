//! Evidence bundles at the format level: the exact bytes of a bundle made
//! from fixed inputs are pinned (same inputs, same bytes), and the
//! verifier's report on the untouched bundle and on a few damaged copies.
//! The end-to-end tamper vectors through the real binaries are in
//! tests/tests/bundle.rs.

use custody_evidence::bundle::bagit::BagInfo;
use custody_evidence::bundle::custody_manifest::*;
use custody_evidence::bundle::verify::{verify_bundle, BundleFindingKind, BundleVerifyOptions};
use custody_evidence::bundle::writer::{BagWriter, Seal};
use custody_evidence::digest::ClockState;
use custody_evidence::sign::{allowed_signers_line, HostKey};
use custody_evidence::{HostId, Sha256};
use time::macros::datetime;

/// A fixed key, so the signature (Ed25519 is deterministic) and with it
/// the whole bundle is the same on every run.
const KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACBpUSwAoycAhD8zwQeITEN5SpiswVPmNIy2rOCrZqxWFQAAAIgDNYBwAzWA
cAAAAAtzc2gtZWQyNTUxOQAAACBpUSwAoycAhD8zwQeITEN5SpiswVPmNIy2rOCrZqxWFQ
AAAEDDzMzqOpukSszcREGABNfCNBuikue5Me72JRwPXeMEvmlRLACjJwCEPzPBB4hMQ3lK
mKzBU+Y0jLas4KtmrFYVAAAAAAECAwQF
-----END OPENSSH PRIVATE KEY-----
";

const EVIDENCE_ID: &str = "INC-7_web01_20261130T090000000000Z";

/// The pinned SHA-256 of the bundle [`build`] makes. A change here is a
/// format change (FORMAT.md §14), never a quiet edit.
const GOLDEN_SHA256: &str = "edfe89c4830c29804637c6980515b524b5573782f469685e9766ae5d08c7673c";

/// (bag path, original path, bytes, kind, volatility class)
type FixedItem = (
    &'static str,
    Option<&'static str>,
    &'static [u8],
    ItemKind,
    u8,
);

fn build() -> Vec<u8> {
    let key = HostKey::from_openssh(KEY).unwrap();
    let t0 = datetime!(2026-11-30 09:00 UTC);
    let t1 = datetime!(2026-11-30 09:00:05.25 UTC);
    let mut bag = BagWriter::new(Vec::new(), EVIDENCE_ID, t0).unwrap();
    let mut items = Vec::new();
    let files: [FixedItem; 3] = [
        (
            "data/volatile/proc/uptime",
            Some("/proc/uptime"),
            b"350.12 690.40\n",
            ItemKind::Volatile,
            2,
        ),
        (
            "data/logs/var/log/auth.log",
            Some("/var/log/auth.log"),
            b"Nov 30 08:59:59 web01 sshd[1]: Accepted publickey for root\n",
            ItemKind::Log,
            4,
        ),
        (
            "data/logs/var/log/auth.log.1",
            Some("/var/log/auth.log.1"),
            b"Nov 29 23:00:00 web01 CRON[2]: session opened\n",
            ItemKind::Log,
            4,
        ),
    ];
    for (path, original, bytes, kind, volatility) in files {
        let copied = bag.add_bytes(path, bytes).unwrap();
        items.push(Item {
            path: path.into(),
            kind,
            volatility,
            original_path: original.map(str::to_string),
            len: copied.len,
            sha256: copied.sha256,
            file: None,
            note: None,
        });
    }
    let manifest = CustodyManifest {
        format: CUSTODY_MANIFEST_FORMAT_V1.into(),
        evidence_id: EVIDENCE_ID.into(),
        incident_id: "INC-7".into(),
        authority: Some("CISO".into()),
        reason: Some("suspected intrusion".into()),
        collected_by: "alice".into(),
        host: HostIdentity {
            host_id: HostId::new("web01").unwrap(),
            hostname: Some("web01".into()),
            machine_id: Some("0123456789abcdef0123456789abcdef".into()),
            boot_id: None,
        },
        tool: ToolIdentity {
            name: "custody-agent".into(),
            version: "0.1.0".into(),
            build_sha256: None,
        },
        command_line: vec!["custody-agent".into(), "snapshot".into()],
        started: t0,
        finished: t1,
        clock: ClockState {
            synchronized: Some(true),
            max_error_us: Some(1000),
            est_error_us: Some(10),
        },
        clock_offset_us: Some(-250),
        items,
        changes: vec![],
    };
    let mut info = BagInfo::default();
    info.push("Custody-Evidence-Id", EVIDENCE_ID);
    info.push("Custody-Incident", "INC-7");
    info.push("Custody-Host", "web01");
    info.push("Custody-Operator", "alice");
    let signers = format!(
        "{}\n",
        allowed_signers_line("web01", &["custody-bundle"], &key.public_key_line(""))
    );
    let (tar, _) = bag
        .finish(Seal {
            bag_info: info,
            manifest: &manifest,
            allowed_signers: signers,
            key: &key,
            actor: "alice",
            place: "web01",
            purpose: "incident INC-7",
            time: t1,
        })
        .unwrap();
    tar
}

#[test]
fn same_inputs_same_bytes() {
    let a = build();
    let b = build();
    assert_eq!(a, b, "two builds from the same inputs differ");
    assert_eq!(a.len() % 512, 0);
    assert_eq!(Sha256::digest(&a).to_hex(), GOLDEN_SHA256);
}

#[test]
fn untouched_bundle_verifies() {
    let tar = build();
    let report = verify_bundle(&tar[..], &BundleVerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.evidence_id.as_deref(), Some(EVIDENCE_ID));
    assert_eq!(report.payload_files, 3);
    assert_eq!(report.custody_events, 1);
    assert!(!report.signer_trusted);
    assert_eq!(report.of_kind(BundleFindingKind::KeysFromBundle).len(), 1);

    let key = HostKey::from_openssh(KEY).unwrap();
    let trusted = BundleVerifyOptions {
        trusted_signers: Some(vec![("web01".into(), key.public_key_line(""))]),
        ..Default::default()
    };
    let report = verify_bundle(&tar[..], &trusted).unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert!(report.signer_trusted);
    assert_eq!(report.signer.as_deref(), Some(key.fingerprint().as_str()));

    let other = BundleVerifyOptions {
        trusted_signers: Some(vec![(
            "web01".into(),
            HostKey::generate().public_key_line(""),
        )]),
        ..Default::default()
    };
    let report = verify_bundle(&tar[..], &other).unwrap();
    assert_eq!(
        report.of_kind(BundleFindingKind::SignatureWrongKey).len(),
        1
    );
}

#[test]
fn flipped_byte_and_truncation_are_found() {
    let tar = build();
    let needle = b"Accepted publickey";
    let at = tar.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut flipped = tar.clone();
    flipped[at] ^= 0x01;
    let report = verify_bundle(&flipped[..], &BundleVerifyOptions::default()).unwrap();
    let f = report.of_kind(BundleFindingKind::PayloadHashMismatch);
    assert_eq!(f.len(), 1, "{:#?}", report.findings);
    assert_eq!(f[0].file.as_deref(), Some("data/logs/var/log/auth.log"));

    let cut = &tar[..tar.len() - 1024 - 100];
    let report = verify_bundle(cut, &BundleVerifyOptions::default()).unwrap();
    assert_eq!(
        report.of_kind(BundleFindingKind::ArchiveTruncated).len(),
        1,
        "{:#?}",
        report.findings
    );
    // Cut at a block boundary, without the end-of-archive blocks.
    let cut = &tar[..tar.len() - 1024];
    let report = verify_bundle(cut, &BundleVerifyOptions::default()).unwrap();
    assert_eq!(report.of_kind(BundleFindingKind::ArchiveTruncated).len(), 1);
}

#[test]
fn a_short_source_is_zero_filled_and_reported() {
    let mut bag = BagWriter::new(Vec::new(), EVIDENCE_ID, datetime!(2026-11-30 09:00 UTC)).unwrap();
    let copied = bag
        .add_stream("data/logs/x", 10, &b"abcd"[..], &mut |_| {})
        .unwrap();
    assert_eq!(copied.short_by, 6);
    assert_eq!(copied.sha256, Sha256::digest(b"abcd\0\0\0\0\0\0"));
    let copied = bag
        .add_stream("data/logs/y", 3, &b"abcdef"[..], &mut |_| {})
        .unwrap();
    assert_eq!(
        (copied.short_by, copied.sha256),
        (0, Sha256::digest(b"abc"))
    );
    assert!(bag.add_bytes("data/logs/y", b"again").is_err());
    assert!(bag.add_bytes("data/../etc/passwd", b"x").is_err());
}
