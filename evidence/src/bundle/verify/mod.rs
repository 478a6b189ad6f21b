//! Bundle verification: reads a bundle tar once, as a stream, and returns a
//! [`BundleReport`] of findings (FORMAT.md §14.10), not the first error.
//! `Err` means only that the bundle could not be read at all (an I/O error
//! of the file, or of the store when one is given).
//!
//! Nothing is extracted: payload files are hashed as they stream past; tag
//! files (bounded by [`super::MAX_TAG_FILE`]) are held in memory. Paths
//! that are absolute, contain `..`, or lie outside the bag, and entries
//! that are links or devices, are findings and are never followed.

mod bag;
mod custody;
mod shipped;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};

use serde::Serialize;
use sha2::Digest as _;

use super::bagit::{self, BagInfo};
use super::custody_manifest::CustodyManifest;
use super::shipped::ShippedList;
use super::tar_read::{for_each_entry, EntryKind, TarProblem};
use super::{
    check_bag_path, BAGIT_TXT, BAG_INFO_TXT, CUSTODY_MANIFEST_JSON, MAX_TAG_FILE, SHIPPED_JSON,
};
use crate::ids::Sha256;
use crate::segment::DecodeError;
use crate::verify::{ObjectSource, Severity, SourceError};

/// Every kind of bundle finding; FORMAT.md §14.10 gives each its meaning.
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
    LogCleared,
    EventLogUnreadable,
    EventLogChecksumMismatch,
    EventLogSummary,
    PayloadNotInspected,
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
    /// Looks inside payload files of a format it knows (custody-verify
    /// plugs in its .evtx reader); `None`: payloads are only hashed.
    pub inspector: Option<&'a dyn PayloadInspector>,
}

/// Reads the content of some payload files and reports what an examiner
/// should notice (FORMAT.md §14.10: `log_cleared`, …). The bytes are the
/// ones that were hashed; an inspector never changes the verdict on the
/// bundle's integrity, so it may only report warnings and information.
pub trait PayloadInspector {
    /// Whether this payload file (path inside the bag, `data/…`) is of a
    /// format this inspector reads.
    fn wants(&self, path: &str) -> bool;
    /// The largest file it reads into memory; larger ones get a
    /// `payload_not_inspected` finding.
    fn max_bytes(&self) -> u64;
    /// What it found in `bytes`, the whole payload file.
    fn inspect(&self, path: &str, bytes: &[u8]) -> Vec<PayloadNote>;
}

/// One thing an inspector found in a payload file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadNote {
    /// `LogCleared`, `EventLogUnreadable` or `EventLogSummary`.
    pub kind: BundleFindingKind,
    /// Warning or Info: an error is raised to a warning (an inspector
    /// reports content, not integrity).
    pub severity: Severity,
    pub message: String,
    pub found: Option<String>,
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

/// Verifies the bundle read from `reader` (FORMAT.md §14.10).
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
            let inspector = opts.inspector.filter(|i| i.wants(&rel));
            let inspect = match inspector {
                Some(i) if info.size > i.max_bytes() => {
                    found.push(
                        BundleFinding::new(
                            Severity::Info,
                            BundleFindingKind::PayloadNotInspected,
                            "larger than the verifier reads into memory; hashed and checked, but its content was not read",
                        )
                        .file(&rel)
                        .expected(format!("at most {} bytes", i.max_bytes()))
                        .found(info.size),
                    );
                    None
                }
                other => other,
            };
            let keep = (rel == SHIPPED_JSON && info.size <= MAX_TAG_FILE) || inspect.is_some();
            if rel == SHIPPED_JSON && !keep {
                found.push(
                    BundleFinding::new(
                        Severity::Warning,
                        BundleFindingKind::ShippedRangeUnchecked,
                        "the shipped list is larger than a verifier holds in memory; the cross-checks were skipped",
                    )
                    .file(&rel)
                    .expected(format!("at most {MAX_TAG_FILE} bytes"))
                    .found(info.size),
                );
            }
            let (seen, kept, hashes) = hash_stream(data, plan.as_ref(), keep)?;
            for (idx, h) in hashes {
                c.range_hashes.insert(idx, h);
            }
            if let (Some(i), Some(bytes)) = (inspect, kept.as_ref()) {
                for note in i.inspect(&rel, bytes) {
                    let severity = match note.severity {
                        Severity::Error => Severity::Warning,
                        s => s,
                    };
                    let mut f = BundleFinding::new(severity, note.kind, note.message).file(&rel);
                    f.found = note.found;
                    found.push(f);
                }
            }
            if let Some(bytes) = kept.filter(|_| rel == SHIPPED_JSON) {
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

    bag::check_payload_manifest(report, c);
    bag::check_tag_manifest(report, c);

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
        bag::check_manifest_items(report, c, m);
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
            Ok(info) => bag::check_bag_info(report, c, &info, manifest.as_ref()),
        }
    }

    // Signature.
    let bag_signer = custody::check_signature(report, c, host_id.as_deref(), opts);

    // Custody log.
    custody::check_custody_log(report, c, bag_signer.as_deref(), opts)?;

    // Shipped objects.
    shipped::check_shipped(report, c, host_id.as_deref(), opts)?;
    Ok(())
}
