//! Bundle verification: reads a bundle tar once, as a stream, and returns a
//! [`BundleReport`] of findings (FORMAT.md §12.8), not the first error.
//! `Err` means only that the bundle could not be read at all (an I/O error
//! of the file, or of the store when one is given).
//!
//! Nothing is extracted: payload files are hashed as they stream past; tag
//! files (bounded by [`super::MAX_TAG_FILE`]) are held in memory. Paths
//! that are absolute, contain `..`, or lie outside the bag, and entries
//! that are links or devices, are findings and are never followed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{self, Read};

use serde::Serialize;
use sha2::Digest as _;

use super::bagit::{self, BagInfo, PayloadOxum};
use super::custody_log::{split_lines, Action, EventLine};
use super::custody_manifest::CustodyManifest;
use super::shipped::ShippedList;
use super::tar_read::{for_each_entry, EntryKind, TarProblem};
use super::{
    check_bag_path, ALLOWED_SIGNERS, BAGIT_TXT, BAG_INFO_TXT, BUNDLE_NAMESPACE, CUSTODY_LOG,
    CUSTODY_MANIFEST_JSON, MANIFEST_TXT, MAX_TAG_FILE, SHIPPED_JSON, SIGNED_TAG_FILES,
    TAGMANIFEST_SIG, TAGMANIFEST_TXT,
};
use crate::ids::Sha256;
use crate::segment::DecodeError;
use crate::sign::{self, SignError};
use crate::verify::{ObjectSource, Severity, SourceError};

/// Every kind of bundle finding; FORMAT.md §12.8 gives each its meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BundleFindingKind {
    ArchiveTruncated,
    ArchiveCorrupt,
    UnsafePath,
    EntryOutsideBag,
    LinkOrSpecialEntry,
    DuplicateEntry,
    TagFileTooLarge,
    UnrecognizedEntry,
    BagitDeclaration,
    ManifestMissing,
    ManifestCorrupt,
    PayloadMissing,
    PayloadHashMismatch,
    PayloadUnlisted,
    TagmanifestMissing,
    TagmanifestCorrupt,
    TagFileMissing,
    TagHashMismatch,
    TagFileUnlisted,
    BagInfoCorrupt,
    PayloadOxumMismatch,
    BagInfoMismatch,
    SignatureMissing,
    SignatureInvalid,
    SignatureWrongKey,
    NoTrustedKey,
    KeysFromBundle,
    SignedBy,
    UnknownFormat,
    CustodyManifestMissing,
    CustodyManifestCorrupt,
    CustodyManifestMismatch,
    ItemNote,
    CustodyLogMissing,
    CustodyEventCorrupt,
    CustodyChainBroken,
    CustodyEventSignatureInvalid,
    CustodyEventUntrustedKey,
    ShippedCorrupt,
    ShippedRangeMismatch,
    ShippedRangeUnchecked,
    ShippedObjectMissing,
    ShippedObjectMismatch,
}

impl BundleFindingKind {
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{self:?}"))
    }
}

/// One thing found: the file (path inside the bag, or a store object),
/// what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFinding {
    pub severity: Severity,
    pub kind: BundleFindingKind,
    pub file: Option<String>,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub message: String,
}

impl BundleFinding {
    fn new(severity: Severity, kind: BundleFindingKind, message: impl Into<String>) -> Self {
        BundleFinding {
            severity,
            kind,
            file: None,
            expected: None,
            found: None,
            message: message.into(),
        }
    }
    fn file(mut self, f: impl Into<String>) -> Self {
        self.file = Some(f.into());
        self
    }
    fn expected(mut self, v: impl fmt::Display) -> Self {
        self.expected = Some(v.to_string());
        self
    }
    fn found(mut self, v: impl fmt::Display) -> Self {
        self.found = Some(v.to_string());
        self
    }
}

impl fmt::Display for BundleFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.severity.label(), self.kind.name())?;
        if let Some(x) = &self.file {
            write!(f, " file={x}")?;
        }
        if let Some(x) = &self.expected {
            write!(f, " expected={x}")?;
        }
        if let Some(x) = &self.found {
            write!(f, " found={x}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The result of verifying one bundle.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BundleReport {
    pub findings: Vec<BundleFinding>,
    pub evidence_id: Option<String>,
    pub incident_id: Option<String>,
    pub host_id: Option<String>,
    /// `SHA256:…` of the key whose signature over the tag manifest verified.
    pub signer: Option<String>,
    /// Whether that key was given as trusted (not only found in the bundle).
    pub signer_trusted: bool,
    pub payload_files: u64,
    pub payload_bytes: u64,
    pub custody_events: u64,
    /// Shipped segments whose byte range was checked against a bundled copy.
    pub shipped_ranges_checked: u64,
    /// Store objects checked (with a store).
    pub store_objects_checked: u64,
}

impl BundleReport {
    pub fn is_clean(&self) -> bool {
        !self.findings.iter().any(|f| f.severity == Severity::Error)
    }
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
    pub fn of_kind(&self, kind: BundleFindingKind) -> Vec<&BundleFinding> {
        self.findings.iter().filter(|f| f.kind == kind).collect()
    }
    fn push(&mut self, f: BundleFinding) {
        self.findings.push(f);
    }
}

/// What to trust and what to compare with.
#[derive(Default)]
pub struct BundleVerifyOptions<'a> {
    /// `(principal, public key line)` pairs allowed for namespace
    /// `custody-bundle`; principal `*` matches any host. `None`: only the
    /// bundle's own `allowed_signers` (self-consistency, reported).
    pub trusted_signers: Option<Vec<(String, String)>>,
    /// The store the shipped segments should be in.
    pub store: Option<&'a dyn ObjectSource>,
}

/// Errors that stop verification: the bundle or the store could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BundleVerifyError {
    #[error("reading the bundle: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Store(#[from] SourceError),
}

/// A data file as it streamed past.
struct Seen {
    size: u64,
    sha256: Sha256,
}

/// Byte ranges of one bundled copy to hash while it streams (from the shipped list).
struct RangePlan {
    /// (start, end, index into the shipped segments), sorted by start.
    ranges: Vec<(u64, u64, usize)>,
}

#[derive(Default)]
struct Collected {
    root: Option<String>,
    data: BTreeMap<String, Seen>,
    tags: BTreeMap<String, Vec<u8>>,
    order: Vec<String>,
    shipped: Option<(Vec<u8>, Result<ShippedList, DecodeError>)>,
    plans: BTreeMap<String, RangePlan>,
    /// shipped segment index → SHA-256 of the range in the copy.
    range_hashes: BTreeMap<usize, Sha256>,
}

fn utf8_path(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| String::from_utf8_lossy(bytes).into_owned())
}

/// Verifies the bundle read from `reader` (FORMAT.md §12.8).
pub fn verify_bundle<R: Read>(
    reader: R,
    opts: &BundleVerifyOptions<'_>,
) -> Result<BundleReport, BundleVerifyError> {
    let mut report = BundleReport::default();
    let mut c = Collected::default();
    let mut found: Vec<BundleFinding> = Vec::new();
    let outcome = for_each_entry(reader, |info, data| {
        let raw = String::from_utf8_lossy(&info.path).into_owned();
        let path = match utf8_path(&info.path) {
            // `./bag/…`, as `tar cf x.tar ./bag` writes it, is the same path.
            Ok(p) => p
                .strip_prefix("./")
                .unwrap_or(&p)
                .trim_end_matches('/')
                .to_string(),
            Err(lossy) => {
                found.push(
                    BundleFinding::new(
                        Severity::Error,
                        BundleFindingKind::UnsafePath,
                        "entry name is not UTF-8; not read",
                    )
                    .file(lossy),
                );
                return Ok(());
            }
        };
        if path.is_empty() && info.kind == EntryKind::Directory {
            return Ok(()); // `./` itself
        }
        if let Err(why) = check_bag_path(&path) {
            found.push(
                BundleFinding::new(
                    Severity::Error,
                    BundleFindingKind::UnsafePath,
                    format!("{why}: an entry that would be written outside the bag (or nowhere) on extraction; not read"),
                )
                .file(raw)
                .expected("a relative path inside the bag directory"),
            );
            return Ok(());
        }
        let (first, rest) = match path.split_once('/') {
            Some((f, r)) => (f.to_string(), Some(r.to_string())),
            None => (path.clone(), None),
        };
        match &c.root {
            None => c.root = Some(first.clone()),
            Some(root) if *root != first => {
                found.push(
                    BundleFinding::new(
                        Severity::Error,
                        BundleFindingKind::EntryOutsideBag,
                        "a bundle holds one bag directory; this entry is outside it; not read",
                    )
                    .file(raw)
                    .expected(format!("{root}/…")),
                );
                return Ok(());
            }
            Some(_) => {}
        }
        match info.kind {
            EntryKind::Regular => {}
            EntryKind::Directory => return Ok(()),
            kind => {
                let target = info
                    .link
                    .as_ref()
                    .map(|l| format!(" -> {}", String::from_utf8_lossy(l)))
                    .unwrap_or_default();
                found.push(
                    BundleFinding::new(
                        Severity::Error,
                        BundleFindingKind::LinkOrSpecialEntry,
                        "bundles hold regular files only; links and devices are never followed or extracted",
                    )
                    .file(raw)
                    .expected("regular file")
                    .found(format!("{}{target}", kind.describe())),
                );
                return Ok(());
            }
        }
        let Some(rel) = rest else {
            found.push(
                BundleFinding::new(
                    Severity::Error,
                    BundleFindingKind::EntryOutsideBag,
                    "a file at the top level of the tar, outside the bag directory; not read",
                )
                .file(raw),
            );
            return Ok(());
        };
        if c.data.contains_key(&rel) || c.tags.contains_key(&rel) {
            found.push(
                BundleFinding::new(
                    Severity::Error,
                    BundleFindingKind::DuplicateEntry,
                    "the same path twice in the tar: extraction would keep only the last; the first was verified",
                )
                .file(rel),
            );
            return Ok(());
        }
        if rel.starts_with("data/") {
            let plan = c.plans.remove(&rel);
            let keep = rel == SHIPPED_JSON && info.size <= MAX_TAG_FILE;
            let (seen, kept, hashes) = hash_stream(data, plan.as_ref(), keep)?;
            for (idx, h) in hashes {
                c.range_hashes.insert(idx, h);
            }
            if let Some(bytes) = kept {
                let parsed = ShippedList::decode(&bytes);
                if let Ok(list) = &parsed {
                    c.plans = plans_for(list);
                }
                c.shipped = Some((bytes, parsed));
            }
            c.order.push(rel.clone());
            c.data.insert(rel, seen);
        } else {
            if info.size > MAX_TAG_FILE {
                found.push(
                    BundleFinding::new(
                        Severity::Error,
                        BundleFindingKind::TagFileTooLarge,
                        "tag files are small text; this one was not read",
                    )
                    .file(rel)
                    .expected(format!("at most {MAX_TAG_FILE} bytes"))
                    .found(info.size),
                );
                return Ok(());
            }
            let mut v = Vec::new();
            data.read_to_end(&mut v)?;
            c.order.push(rel.clone());
            c.tags.insert(rel, v);
        }
        Ok(())
    })?;
    report.findings.append(&mut found);
    match outcome {
        Ok(()) => {}
        Err(TarProblem::Truncated { after, why }) => report.push(
            BundleFinding::new(
                Severity::Error,
                BundleFindingKind::ArchiveTruncated,
                format!("the tar ends early ({why}); whatever followed is missing"),
            )
            .file(after.unwrap_or_else(|| "(start of archive)".into()))
            .expected("a complete tar ending in two zero blocks"),
        ),
        Err(TarProblem::Corrupt { after, why }) => report.push(
            BundleFinding::new(
                Severity::Error,
                BundleFindingKind::ArchiveCorrupt,
                format!("the tar cannot be read past this point ({why})"),
            )
            .file(after.unwrap_or_else(|| "(start of archive)".into())),
        ),
    }
    check_bag(&mut report, &c, opts)?;
    Ok(report)
}

type StreamHashes = (Seen, Option<Vec<u8>>, Vec<(usize, Sha256)>);

/// Hashes a data entry, optionally keeping its bytes, and hashes the
/// planned byte ranges on the way.
fn hash_stream(
    data: &mut dyn Read,
    plan: Option<&RangePlan>,
    keep: bool,
) -> io::Result<StreamHashes> {
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    let mut kept = keep.then(Vec::new);
    let ranges = plan.map(|p| p.ranges.as_slice()).unwrap_or(&[]);
    let mut range_hashers: Vec<Option<sha2::Sha256>> = ranges.iter().map(|_| None).collect();
    let mut done: Vec<(usize, Sha256)> = Vec::new();
    let mut cursor = 0usize;
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = &buf[..n];
        hasher.update(chunk);
        if let Some(k) = kept.as_mut() {
            k.extend_from_slice(chunk);
        }
        let end = off + n as u64;
        // Ranges are sorted by start; those ending before `off` are done.
        while cursor < ranges.len() && ranges[cursor].1 <= off {
            cursor += 1;
        }
        for (i, &(s, e, idx)) in ranges.iter().enumerate().skip(cursor) {
            if s >= end {
                break;
            }
            if e <= off {
                continue;
            }
            let a = s.max(off) - off;
            let b = e.min(end) - off;
            let h = range_hashers[i].get_or_insert_with(sha2::Sha256::new);
            h.update(&chunk[a as usize..b as usize]);
            if e <= end {
                if let Some(h) = range_hashers[i].take() {
                    done.push((idx, Sha256::from_hasher(h)));
                }
            }
        }
        off = end;
    }
    Ok((
        Seen {
            size: off,
            sha256: Sha256::from_hasher(hasher),
        },
        kept,
        done,
    ))
}

fn plans_for(list: &ShippedList) -> BTreeMap<String, RangePlan> {
    let mut plans: BTreeMap<String, RangePlan> = BTreeMap::new();
    for (i, s) in list.segments.iter().enumerate() {
        if let Some(p) = &s.bag_path {
            if s.range.start < s.range.end {
                plans
                    .entry(p.clone())
                    .or_insert_with(|| RangePlan { ranges: Vec::new() })
                    .ranges
                    .push((s.range.start, s.range.end, i));
            }
        }
    }
    for p in plans.values_mut() {
        p.ranges.sort();
    }
    plans
}

fn tag_text<'c>(
    report: &mut BundleReport,
    c: &'c Collected,
    name: &str,
    missing: BundleFindingKind,
    why: &str,
) -> Option<&'c str> {
    let Some(bytes) = c.tags.get(name) else {
        report.push(
            BundleFinding::new(
                Severity::Error,
                missing,
                format!("{name} is missing: {why}"),
            )
            .file(name),
        );
        return None;
    };
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s),
        Err(_) => {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    missing,
                    format!("{name} is not UTF-8 text"),
                )
                .file(name),
            );
            None
        }
    }
}

fn check_bag(
    report: &mut BundleReport,
    c: &Collected,
    opts: &BundleVerifyOptions<'_>,
) -> Result<(), BundleVerifyError> {
    use BundleFindingKind as K;
    report.evidence_id = c.root.clone();
    report.payload_files = c.data.len() as u64;
    report.payload_bytes = c.data.values().map(|s| s.size).sum();

    // bagit.txt
    match c.tags.get(BAGIT_TXT) {
        None => report.push(
            BundleFinding::new(
                Severity::Error,
                K::BagitDeclaration,
                "bagit.txt is missing: this is not a BagIt bag",
            )
            .file(BAGIT_TXT),
        ),
        Some(b) if b.as_slice() != bagit::BAGIT_TXT.as_bytes() => report.push(
            BundleFinding::new(
                Severity::Error,
                K::BagitDeclaration,
                "bagit.txt is not the BagIt 1.0, UTF-8 declaration custody writes",
            )
            .file(BAGIT_TXT)
            .expected(format!("{:?}", bagit::BAGIT_TXT))
            .found(format!("{:?}", String::from_utf8_lossy(b))),
        ),
        Some(_) => {}
    }

    // Payload manifest.
    if let Some(text) = tag_text(
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

    // Tag manifest.
    let tagmanifest = tag_text(
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

    // Custody manifest.
    let manifest = match c.tags.get(CUSTODY_MANIFEST_JSON) {
        None => {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyManifestMissing,
                    "custody-manifest.json is missing: no chain-of-custody record",
                )
                .file(CUSTODY_MANIFEST_JSON),
            );
            None
        }
        Some(bytes) => match CustodyManifest::decode(bytes) {
            Ok(m) => Some(m),
            Err(DecodeError::UnknownFormat { expected, found }) => {
                report.push(
                    BundleFinding::new(
                        Severity::Error,
                        K::UnknownFormat,
                        "a custody manifest of a version this verifier does not read: use a newer custody-verify",
                    )
                    .file(CUSTODY_MANIFEST_JSON)
                    .expected(expected)
                    .found(found),
                );
                None
            }
            Err(e) => {
                report.push(
                    BundleFinding::new(Severity::Error, K::CustodyManifestCorrupt, e.to_string())
                        .file(CUSTODY_MANIFEST_JSON),
                );
                None
            }
        },
    };
    let host_id = manifest.as_ref().map(|m| m.host.host_id.to_string());
    report.host_id = host_id.clone();
    report.incident_id = manifest.as_ref().map(|m| m.incident_id.clone());
    if let Some(m) = &manifest {
        check_manifest_items(report, c, m);
    }

    // bag-info.txt
    if let Some(text) = tag_text(
        report,
        c,
        BAG_INFO_TXT,
        K::BagInfoCorrupt,
        "no incident, host or Payload-Oxum to check",
    ) {
        match BagInfo::parse(text) {
            Err(e) => report.push(
                BundleFinding::new(Severity::Error, K::BagInfoCorrupt, e.to_string())
                    .file(BAG_INFO_TXT),
            ),
            Ok(info) => check_bag_info(report, c, &info, manifest.as_ref()),
        }
    }

    // Signature.
    let bag_signer = check_signature(report, c, host_id.as_deref(), opts);

    // Custody log.
    check_custody_log(report, c, bag_signer.as_deref(), opts);

    // Shipped objects.
    check_shipped(report, c, host_id.as_deref(), opts)?;
    Ok(())
}

fn check_manifest_items(report: &mut BundleReport, c: &Collected, m: &CustodyManifest) {
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

fn check_bag_info(
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

/// Checks the tag-manifest signature; returns the signer's key line when it verified.
fn check_signature(
    report: &mut BundleReport,
    c: &Collected,
    host: Option<&str>,
    opts: &BundleVerifyOptions<'_>,
) -> Option<String> {
    use BundleFindingKind as K;
    let tagmanifest = c.tags.get(TAGMANIFEST_TXT)?;
    let Some(sig_bytes) = c.tags.get(TAGMANIFEST_SIG) else {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::SignatureMissing,
                "no signature over the tag manifest: nothing in the bundle is signed",
            )
            .file(TAGMANIFEST_SIG),
        );
        return None;
    };
    let sig = String::from_utf8_lossy(sig_bytes).into_owned();
    let claimed = match sign::signer_of(&sig) {
        Ok(k) => k,
        Err(e) => {
            report.push(
                BundleFinding::new(Severity::Error, K::SignatureInvalid, e.to_string())
                    .file(TAGMANIFEST_SIG),
            );
            return None;
        }
    };
    let claimed_fp = sign::fingerprint_of(&claimed).unwrap_or_else(|_| claimed.clone());
    let principal_ok = |p: &str| p == "*" || Some(p) == host;
    let (candidates, trusted): (Vec<String>, bool) = match &opts.trusted_signers {
        Some(list) => (
            list.iter()
                .filter(|(p, _)| principal_ok(p))
                .map(|(_, k)| k.clone())
                .collect(),
            true,
        ),
        None => {
            let bundled = c
                .tags
                .get(ALLOWED_SIGNERS)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            match sign::parse_allowed_signers(&bundled) {
                Ok(entries) => (
                    entries
                        .into_iter()
                        .filter(|e| e.allows_namespace(BUNDLE_NAMESPACE))
                        .filter(|e| e.principals.iter().any(|p| principal_ok(p)))
                        .map(|e| e.public_key_line)
                        .collect(),
                    false,
                ),
                Err(e) => {
                    report.push(
                        BundleFinding::new(
                            Severity::Error,
                            K::NoTrustedKey,
                            format!("the bundled allowed_signers is unusable ({e}) and no trusted key was given"),
                        )
                        .file(ALLOWED_SIGNERS),
                    );
                    return None;
                }
            }
        }
    };
    if candidates.is_empty() {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::NoTrustedKey,
                format!(
                    "no key for host {} in namespace {BUNDLE_NAMESPACE} to check the signature with ({})",
                    host.unwrap_or("(unknown)"),
                    if trusted { "the trusted keys given" } else { "the bundled allowed_signers" }
                ),
            )
            .file(TAGMANIFEST_SIG)
            .found(&claimed_fp),
        );
        return None;
    }
    let mut last_err = None;
    for key in &candidates {
        match sign::verify(key, BUNDLE_NAMESPACE, tagmanifest, &sig) {
            Ok(info) => {
                report.signer = Some(info.fingerprint.clone());
                report.signer_trusted = trusted;
                report.push(
                    BundleFinding::new(
                        Severity::Info,
                        K::SignedBy,
                        if trusted {
                            "the tag manifest is signed by a trusted key".to_string()
                        } else {
                            "the tag manifest is signed by the key in the bundle's own allowed_signers".to_string()
                        },
                    )
                    .file(TAGMANIFEST_SIG)
                    .found(&info.fingerprint),
                );
                if !trusted {
                    report.push(
                        BundleFinding::new(
                            Severity::Info,
                            K::KeysFromBundle,
                            "the signature was checked against the key the bundle carries, which proves only that the \
                             bundle is consistent with itself; give --trusted-key or --allowed-signers from an \
                             independent record to know who signed it",
                        )
                        .file(ALLOWED_SIGNERS),
                    );
                }
                return Some(info.public_key_line);
            }
            Err(e) => last_err = Some(e),
        }
    }
    let expected = candidates
        .iter()
        .map(|k| sign::fingerprint_of(k).unwrap_or_else(|_| k.clone()))
        .collect::<Vec<_>>()
        .join(",");
    let finding = match last_err {
        Some(SignError::WrongKey { .. }) => BundleFinding::new(
            Severity::Error,
            K::SignatureWrongKey,
            if trusted {
                "the tag manifest is signed by a key that is not trusted for this host"
            } else {
                "the tag manifest is signed by a key other than the one in the bundle's allowed_signers"
            },
        )
        .expected(expected)
        .found(claimed_fp),
        Some(e) => BundleFinding::new(
            Severity::Error,
            K::SignatureInvalid,
            format!("{e}: the tag manifest (or a file it lists) changed after signing"),
        )
        .found(claimed_fp),
        None => BundleFinding::new(Severity::Error, K::SignatureInvalid, "no key to check"),
    };
    report.push(finding.file(TAGMANIFEST_SIG));
    None
}

fn check_custody_log(
    report: &mut BundleReport,
    c: &Collected,
    bag_signer: Option<&str>,
    opts: &BundleVerifyOptions<'_>,
) {
    use BundleFindingKind as K;
    let Some(bytes) = c.tags.get(CUSTODY_LOG) else {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::CustodyLogMissing,
                "custody.jsonl is missing: no record of who handled the evidence",
            )
            .file(CUSTODY_LOG),
        );
        return;
    };
    let bag_sha = c.tags.get(TAGMANIFEST_TXT).map(|t| Sha256::digest(t));
    let lines = split_lines(bytes);
    if lines.is_empty() {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::CustodyChainBroken,
                "custody.jsonl is empty: the `collected` event was removed",
            )
            .file(CUSTODY_LOG)
            .expected("event 0 (collected)")
            .found("no events"),
        );
        return;
    }
    let trusted_keys: Option<Vec<String>> = opts.trusted_signers.as_ref().map(|l| {
        l.iter()
            .filter_map(|(_, k)| sign::normalize_public_key(k).ok())
            .collect()
    });
    let mut prev: Option<&[u8]> = None;
    for (i, line) in lines.iter().enumerate() {
        let file = format!("{CUSTODY_LOG}:{}", i + 1);
        let ev = match EventLine::decode(line) {
            Ok(ev) => ev,
            Err(e) => {
                report.push(
                    BundleFinding::new(
                        Severity::Error,
                        match e {
                            DecodeError::UnknownFormat { .. } => K::UnknownFormat,
                            _ => K::CustodyEventCorrupt,
                        },
                        e.to_string(),
                    )
                    .file(file),
                );
                prev = Some(line);
                continue;
            }
        };
        report.custody_events += 1;
        let e = &ev.event;
        if e.seq != i as u64 {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "custody events out of sequence: an event was removed or the events were reordered",
                )
                .file(&file)
                .expected(format!("seq {i}"))
                .found(format!("seq {}", e.seq)),
            );
        }
        let want_prev = prev.map(Sha256::digest);
        if e.prev_event != want_prev {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "prev_event is not the hash of the line before: an event was removed, reordered or edited",
                )
                .file(&file)
                .expected(
                    want_prev
                        .map(|h| h.to_hex())
                        .unwrap_or_else(|| "null".into()),
                )
                .found(
                    e.prev_event
                        .map(|h| h.to_hex())
                        .unwrap_or_else(|| "null".into()),
                ),
            );
        }
        if i == 0 && e.action != Action::Collected {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "the first custody event must be `collected`",
                )
                .file(&file)
                .expected("collected")
                .found(format!("{:?}", e.action).to_lowercase()),
            );
        }
        if c.root.as_deref() != Some(e.evidence_id.as_str()) {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "a custody event about another bundle",
                )
                .file(&file)
                .expected(c.root.clone().unwrap_or_default())
                .found(&e.evidence_id),
            );
        }
        if let Some(h) = bag_sha {
            if e.bag_sha256 != h {
                report.push(
                    BundleFinding::new(
                        Severity::Error,
                        K::CustodyChainBroken,
                        "the event names another tag manifest: it is about a different (or altered) bag",
                    )
                    .file(&file)
                    .expected(h)
                    .found(e.bag_sha256),
                );
            }
        }
        match ev.verify_signature() {
            Err(err) => report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyEventSignatureInvalid,
                    format!("{err}: the event was altered after signing"),
                )
                .file(&file),
            ),
            Ok(info) => {
                let signer = info.public_key_line;
                let trusted = match &trusted_keys {
                    Some(keys) => keys.contains(&signer),
                    None => Some(signer.as_str()) == bag_signer,
                };
                if i == 0 && bag_signer.is_some() && Some(signer.as_str()) != bag_signer {
                    report.push(
                        BundleFinding::new(
                            Severity::Error,
                            K::CustodyEventSignatureInvalid,
                            "the `collected` event must be signed by the key that signed the bag",
                        )
                        .file(&file)
                        .expected(
                            bag_signer
                                .and_then(|k| sign::fingerprint_of(k).ok())
                                .unwrap_or_default(),
                        )
                        .found(&info.fingerprint),
                    );
                } else if !trusted {
                    report.push(
                        BundleFinding::new(
                            Severity::Warning,
                            K::CustodyEventUntrustedKey,
                            format!(
                                "event {:?} by {:?} is signed by a key not among the trusted keys (another custodian?)",
                                format!("{:?}", e.action).to_lowercase(),
                                e.actor
                            ),
                        )
                        .file(&file)
                        .found(&info.fingerprint),
                    );
                }
            }
        }
        prev = Some(line);
    }
}

fn check_shipped(
    report: &mut BundleReport,
    c: &Collected,
    host: Option<&str>,
    opts: &BundleVerifyOptions<'_>,
) -> Result<(), BundleVerifyError> {
    use BundleFindingKind as K;
    let Some((_, parsed)) = &c.shipped else {
        return Ok(());
    };
    let list = match parsed {
        Ok(l) => l,
        Err(e) => {
            report.push(
                BundleFinding::new(Severity::Error, K::ShippedCorrupt, e.to_string())
                    .file(SHIPPED_JSON),
            );
            return Ok(());
        }
    };
    if host.is_some() && Some(list.host_id.as_str()) != host {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::ShippedCorrupt,
                "the shipped list is another host's",
            )
            .file(SHIPPED_JSON)
            .expected(host.unwrap_or_default())
            .found(&list.host_id),
        );
    }
    for (i, s) in list.segments.iter().enumerate() {
        let Some(bag_path) = &s.bag_path else {
            continue;
        };
        let what = format!("{} seq {} ({})", s.stream_id, s.seq, s.record_key);
        match (c.data.get(bag_path), c.range_hashes.get(&i)) {
            (Some(_), Some(h)) => {
                report.shipped_ranges_checked += 1;
                if *h != s.raw_sha256 {
                    report.push(
                        BundleFinding::new(
                            Severity::Warning,
                            K::ShippedRangeMismatch,
                            format!(
                                "bytes {}..{} of the bundled copy differ from what segment {what} shipped: the file \
                                 on the host changed after it was shipped (edited, or truncated and rewritten)",
                                s.range.start, s.range.end
                            ),
                        )
                        .file(bag_path)
                        .expected(s.raw_sha256)
                        .found(h),
                    );
                }
            }
            (Some(seen), None) => report.push(
                BundleFinding::new(
                    Severity::Info,
                    K::ShippedRangeUnchecked,
                    if s.range.end > seen.size {
                        format!("segment {what} covers bytes up to {}, past the copy's end: the file was truncated or replaced since", s.range.end)
                    } else {
                        format!("segment {what}: the shipped list came after the copy in the tar, so its range was not hashed")
                    },
                )
                .file(bag_path),
            ),
            (None, _) => {}
        }
    }
    let Some(store) = opts.store else {
        return Ok(());
    };
    // One listing of the host's objects, then lookups by name.
    let listed: BTreeSet<String> = store
        .list(&crate::layout::host_prefix(&list.host_id))?
        .into_iter()
        .collect();
    let check = |key: &str,
                 want: Sha256,
                 report: &mut BundleReport|
     -> Result<(), BundleVerifyError> {
        report.store_objects_checked += 1;
        if !listed.contains(key) {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::ShippedObjectMissing,
                    "the bundle lists this object as shipped, but the store does not hold it (deleted?)",
                )
                .file(key)
                .expected(want),
            );
            return Ok(());
        }
        let got = Sha256::digest(&store.read(key)?);
        if got != want {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::ShippedObjectMismatch,
                    "the store object's SHA-256 differs from the bundle's shipped list",
                )
                .file(key)
                .expected(want)
                .found(got),
            );
        }
        Ok(())
    };
    for s in &list.segments {
        check(&s.record_key, s.meta_sha256, report)?;
        check(&s.payload_key, s.object_sha256, report)?;
    }
    for d in &list.digests {
        check(&d.key, d.sha256, report)?;
        if let Some(sig) = d.sig_sha256 {
            check(&d.sig_key, sig, report)?;
        }
    }
    Ok(())
}
