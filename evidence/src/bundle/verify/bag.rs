//! Bag checks: the custody manifest against the payload, and `bag-info.txt`.

use std::collections::BTreeSet;

use super::{BundleFinding, BundleFindingKind, BundleReport, Collected};
use crate::bundle::bagit::{self, BagInfo, PayloadOxum};
use crate::bundle::custody_manifest::CustodyManifest;
use crate::bundle::{
    check_bag_path, BAG_INFO_TXT, CUSTODY_LOG, CUSTODY_MANIFEST_JSON, MANIFEST_TXT,
    SIGNED_TAG_FILES, TAGMANIFEST_SIG, TAGMANIFEST_TXT,
};
use crate::ids::Sha256;
use crate::verify::Severity;

pub(super) fn check_manifest_items(report: &mut BundleReport, c: &Collected, m: &CustodyManifest) {
    use BundleFindingKind as K;
    if c.root.as_deref() != Some(m.evidence_id.as_str()) {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::CustodyManifestMismatch,
                "the bag directory is named after the evidence id",
            )
            .file(CUSTODY_MANIFEST_JSON)
            .expected(&m.evidence_id)
            .found(c.root.clone().unwrap_or_default()),
        );
    }
    let mut items = BTreeSet::new();
    for item in &m.items {
        items.insert(item.path.clone());
        match c.data.get(&item.path) {
            None => report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyManifestMismatch,
                    "the custody manifest lists an item the bundle does not hold",
                )
                .file(&item.path)
                .expected(item.sha256),
            ),
            Some(seen) if seen.sha256 != item.sha256 || seen.size != item.len => report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyManifestMismatch,
                    "the item's hash or length differs from the custody manifest",
                )
                .file(&item.path)
                .expected(format!("{} ({} bytes)", item.sha256, item.len))
                .found(format!("{} ({} bytes)", seen.sha256, seen.size)),
            ),
            Some(_) => {}
        }
        if let Some(note) = &item.note {
            report.push(
                BundleFinding::new(Severity::Info, K::ItemNote, note.clone()).file(&item.path),
            );
        }
    }
    for path in c.data.keys() {
        if !items.contains(path) {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyManifestMismatch,
                    "a payload file the custody manifest does not list",
                )
                .file(path),
            );
        }
    }
}

pub(super) fn check_bag_info(
    report: &mut BundleReport,
    c: &Collected,
    info: &BagInfo,
    m: Option<&CustodyManifest>,
) {
    use BundleFindingKind as K;
    let actual = PayloadOxum {
        octets: c.data.values().map(|s| s.size).sum(),
        files: c.data.len() as u64,
    };
    match info.get("Payload-Oxum").map(|v| (v, PayloadOxum::parse(v))) {
        None => report.push(
            BundleFinding::new(Severity::Error, K::PayloadOxumMismatch, "no Payload-Oxum")
                .file(BAG_INFO_TXT)
                .expected(actual),
        ),
        Some((v, parsed)) if parsed != Some(actual) => report.push(
            BundleFinding::new(
                Severity::Error,
                K::PayloadOxumMismatch,
                "Payload-Oxum (bytes.files of data/) differs from the payload in the bundle",
            )
            .file(BAG_INFO_TXT)
            .expected(v)
            .found(actual),
        ),
        Some(_) => {}
    }
    if let Some(m) = m {
        let pairs = [
            ("Custody-Evidence-Id", m.evidence_id.as_str()),
            ("Custody-Incident", m.incident_id.as_str()),
            ("Custody-Host", m.host.host_id.as_str()),
            ("Custody-Operator", m.collected_by.as_str()),
        ];
        for (label, want) in pairs {
            let got = info.get(label);
            if got != Some(want) {
                report.push(
                    BundleFinding::new(
                        Severity::Error,
                        K::BagInfoMismatch,
                        format!("bag-info.txt {label} differs from the custody manifest"),
                    )
                    .file(BAG_INFO_TXT)
                    .expected(want)
                    .found(got.unwrap_or("(absent)")),
                );
            }
        }
    }
}

/// `manifest-sha256.txt` against the payload files: each listed file
/// present with its hash, each payload file listed.
pub(super) fn check_payload_manifest(report: &mut BundleReport, c: &Collected) {
    use BundleFindingKind as K;
    // Payload manifest.
    if let Some(text) = super::tag_text(
        report,
        c,
        MANIFEST_TXT,
        K::ManifestMissing,
        "no payload file can be checked",
    ) {
        match bagit::parse_manifest(text) {
            Err(e) => report.push(
                BundleFinding::new(Severity::Error, K::ManifestCorrupt, e.to_string())
                    .file(MANIFEST_TXT),
            ),
            Ok(entries) => {
                let mut listed = BTreeSet::new();
                for e in &entries {
                    if !e.path.starts_with("data/") || check_bag_path(&e.path).is_err() {
                        report.push(
                            BundleFinding::new(
                                Severity::Error,
                                K::ManifestCorrupt,
                                "a payload manifest entry outside data/ or with an unsafe path",
                            )
                            .file(&e.path),
                        );
                        continue;
                    }
                    listed.insert(e.path.clone());
                    match c.data.get(&e.path) {
                        None => report.push(
                            BundleFinding::new(
                                Severity::Error,
                                K::PayloadMissing,
                                "listed in manifest-sha256.txt but not in the bundle (deleted?)",
                            )
                            .file(&e.path)
                            .expected(e.sha256),
                            ),
                        Some(seen) if seen.sha256 != e.sha256 => report.push(
                            BundleFinding::new(
                                Severity::Error,
                                K::PayloadHashMismatch,
                                "the file's SHA-256 differs from manifest-sha256.txt: its bytes were altered",
                            )
                            .file(&e.path)
                            .expected(e.sha256)
                            .found(seen.sha256),
                        ),
                        Some(_) => {}
                    }
                }
                for path in c.data.keys() {
                    if !listed.contains(path) {
                        report.push(
                            BundleFinding::new(
                                Severity::Error,
                                K::PayloadUnlisted,
                                "a payload file manifest-sha256.txt does not list (added after sealing?)",
                            )
                            .file(path)
                            .found(c.data[path].sha256),
                        );
                    }
                }
            }
        }
    }
}

/// `tagmanifest-sha256.txt` against the tag files, the five signed tag
/// files listed, and files outside `data/` custody does not write.
pub(super) fn check_tag_manifest(report: &mut BundleReport, c: &Collected) {
    use BundleFindingKind as K;
    // Tag manifest.
    let tagmanifest = super::tag_text(
        report,
        c,
        TAGMANIFEST_TXT,
        K::TagmanifestMissing,
        "the tag files and the signature cannot be checked",
    );
    if let Some(text) = tagmanifest {
        match bagit::parse_manifest(text) {
            Err(e) => report.push(
                BundleFinding::new(Severity::Error, K::TagmanifestCorrupt, e.to_string())
                    .file(TAGMANIFEST_TXT),
            ),
            Ok(entries) => {
                for e in &entries {
                    match c.tags.get(&e.path) {
                        None => report.push(
                            BundleFinding::new(
                                Severity::Error,
                                K::TagFileMissing,
                                "listed in tagmanifest-sha256.txt but not in the bundle",
                            )
                            .file(&e.path)
                            .expected(e.sha256),
                        ),
                        Some(b) => {
                            let h = Sha256::digest(b);
                            if h != e.sha256 {
                                report.push(
                                    BundleFinding::new(
                                        Severity::Error,
                                        K::TagHashMismatch,
                                        "the tag file's SHA-256 differs from tagmanifest-sha256.txt: it was edited after sealing",
                                    )
                                    .file(&e.path)
                                    .expected(e.sha256)
                                    .found(h),
                                );
                            }
                        }
                    }
                }
                for required in SIGNED_TAG_FILES {
                    if !entries.iter().any(|e| e.path == required) {
                        report.push(
                            BundleFinding::new(
                                Severity::Error,
                                K::TagFileUnlisted,
                                "tagmanifest-sha256.txt must list this file, so the signature covers it",
                            )
                            .file(required),
                        );
                    }
                }
            }
        }
    }
    for name in c.tags.keys() {
        let known = SIGNED_TAG_FILES.contains(&name.as_str())
            || [TAGMANIFEST_TXT, TAGMANIFEST_SIG, CUSTODY_LOG].contains(&name.as_str());
        if !known {
            report.push(
                BundleFinding::new(
                    Severity::Warning,
                    K::UnrecognizedEntry,
                    "a file outside data/ that custody does not write; not covered by the signature unless listed",
                )
                .file(name),
            );
        }
    }
}
