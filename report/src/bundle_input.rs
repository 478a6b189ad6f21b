//! An evidence bundle (`.tar`, FORMAT.md §14) as a report's input: the
//! responder's snapshot, read without a store. The bundle is verified with
//! the same code as `custody-verify bundle` (signature, tag and payload
//! manifests, custody manifest, custody log, shipped ranges); its custody
//! manifest names the log copies, and each copy is streamed through the
//! same parsers as a store's payloads, hashed as it passes and checked
//! against the manifest's SHA-256.
//!
//! A bundled copy is cited like a payload: its member path inside the tar
//! (`object`), the copy's SHA-256 (`payload_raw_sha256`), and the offset
//! and length inside the copy, so `tar -xOf BUNDLE MEMBER | tail -c
//! +OFF+1 | head -c LEN | sha256sum` re-derives every citation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use custody_evidence::bundle::custody_manifest::{CustodyManifest, ItemKind};
use custody_evidence::bundle::shipped::ShippedList;
use custody_evidence::bundle::tar_read::{for_each_entry, EntryKind};
use custody_evidence::bundle::verify::{verify_bundle, BundleReport, BundleVerifyOptions};
use custody_evidence::segment::Framing;
use custody_evidence::verify::Severity;

use crate::input::{SegmentSummary, SourceKind};

/// Tag and listing files read into memory: at most this (the verifier's
/// own limit for tag files).
const MAX_META: u64 = 64 * 1024 * 1024;

/// A verified read of one bundle.
pub struct Bundle {
    pub path: PathBuf,
    pub report: BundleReport,
    pub manifest: CustodyManifest,
    /// The bag directory (the evidence id), the first part of every member.
    pub root: String,
    /// Bag path (`data/logs/…`) → the stream the agent shipped it as.
    pub streams: BTreeMap<String, String>,
}

/// What keeps a bundled copy's lines from counting as verified: the
/// bundle's own errors that name it, or that name no payload file (a bad
/// signature or manifest leaves every copy unproven).
pub struct Doubt {
    pub check: String,
    pub message: String,
}

impl Bundle {
    /// Verifies the bundle at `path` and reads its custody manifest and
    /// shipped list. Errors only when it cannot be read at all or has no
    /// readable custody manifest; a bundle that does not verify is read,
    /// and its copies marked by [`Bundle::doubt`].
    pub fn open(path: &Path, trusted: Option<Vec<(String, String)>>) -> Result<Bundle, String> {
        let open = || {
            File::open(path)
                .map(BufReader::new)
                .map_err(|e| format!("--bundle {}: {e}", path.display()))
        };
        let report = verify_bundle(
            open()?,
            &BundleVerifyOptions {
                trusted_signers: trusted,
                store: None,
                inspector: None,
            },
        )
        .map_err(|e| format!("--bundle {}: {e}", path.display()))?;
        let mut root = None;
        let mut manifest = None;
        let mut shipped = None;
        let walked = for_each_entry(open()?, |info, data| {
            let Ok(name) = std::str::from_utf8(&info.path) else {
                return Ok(());
            };
            let name = name.strip_prefix("./").unwrap_or(name);
            let Some((first, rest)) = name.split_once('/') else {
                return Ok(());
            };
            root.get_or_insert_with(|| first.to_string());
            if info.kind != EntryKind::Regular || info.size > MAX_META {
                return Ok(());
            }
            let slot = match rest {
                "custody-manifest.json" => &mut manifest,
                "data/shipped.json" => &mut shipped,
                _ => return Ok(()),
            };
            let mut bytes = Vec::with_capacity(info.size as usize);
            data.read_to_end(&mut bytes)?;
            *slot = Some(bytes);
            Ok(())
        })
        .map_err(|e| format!("--bundle {}: {e}", path.display()))?;
        let what = path.display();
        let manifest: CustodyManifest = match manifest {
            Some(b) => serde_json::from_slice(&b).map_err(|e| {
                format!("--bundle {what}: custody-manifest.json does not parse ({e}); run custody-verify bundle {what} for the full check")
            })?,
            None => {
                let why = match walked {
                    Err(p) => format!(" (the archive is damaged: {p:?})"),
                    Ok(()) => String::new(),
                };
                return Err(format!(
                    "--bundle {what}: no custody-manifest.json in the bag{why}: not an evidence bundle, or one cut short; run custody-verify bundle {what}"
                ));
            }
        };
        let mut streams = BTreeMap::new();
        if let Some(list) = shipped.and_then(|b| serde_json::from_slice::<ShippedList>(&b).ok()) {
            for s in list.segments {
                if let Some(bag) = s.bag_path {
                    streams
                        .entry(bag)
                        .or_insert_with(|| s.stream_id.to_string());
                }
            }
        }
        Ok(Bundle {
            path: path.to_path_buf(),
            report,
            root: root.unwrap_or_else(|| manifest.evidence_id.clone()),
            manifest,
            streams,
        })
    }

    /// Why a bag path's bytes are not proven, if they are not.
    pub fn doubt(&self, bag_path: &str) -> Option<Doubt> {
        let errors: Vec<_> = self
            .report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .filter(|f| match f.file.as_deref() {
                Some(file) if file.starts_with("data/") => file == bag_path,
                _ => true,
            })
            .collect();
        let first = errors.first()?;
        Some(Doubt {
            check: "bundle".into(),
            message: format!(
                "{}: {} error(s) verifying the bundle bear on this copy, first {}: {} (custody-verify bundle reports the same)",
                self.path.display(),
                errors.len(),
                first.kind.name(),
                first.message
            ),
        })
    }

    /// One summary per bundled log copy the parsers read (text logs,
    /// login records, `.evtx` files, gzip-, zstd-, bzip2- or xz-compressed
    /// rotated copies of any of them), and a note for each copy they do
    /// not (other compression).
    pub fn log_copies(&self) -> (Vec<SegmentSummary>, Vec<String>) {
        let m = &self.manifest;
        let mut segs = Vec::new();
        let mut skipped = Vec::new();
        for item in m.items.iter().filter(|i| i.kind == ItemKind::Log) {
            let name = item.path.rsplit('/').next().unwrap_or(&item.path);
            let lower = name.to_ascii_lowercase();
            let compression = crate::input::CopyCompression::of_name(&lower);
            if [".zip", ".7z", ".lz4", ".z"]
                .iter()
                .any(|x| lower.ends_with(x))
            {
                skipped.push(format!(
                    "{}: a compressed copy this report does not parse (`tar -xOf {} {}/{}` gives it as kept); its SHA-256 is verified with the bundle",
                    item.path,
                    self.path.display(),
                    self.root,
                    item.path
                ));
                continue;
            }
            let framing = if ["wtmp", "btmp", "utmp"]
                .iter()
                .any(|p| lower.starts_with(p))
            {
                Framing::Records {
                    size: crate::parse::utmp::RECORD as u32,
                }
            } else {
                Framing::Lines
            };
            let plain = compression.map_or(lower.as_str(), |c| c.strip(&lower));
            let source_kind = if plain.ends_with(".evtx") {
                SourceKind::EvtxFile
            } else {
                SourceKind::File
            };
            let stream = self
                .streams
                .get(&item.path)
                .cloned()
                .unwrap_or_else(|| item.path.clone());
            let category = match stream.split_once('.') {
                Some((c, _)) if ["os", "web", "app", "logon"].contains(&c) => c.to_string(),
                _ => "log".to_string(),
            };
            segs.push(SegmentSummary {
                host: m.host.host_id.to_string(),
                stream,
                category,
                seq: 0,
                source_kind,
                source_label: item
                    .original_path
                    .clone()
                    .unwrap_or_else(|| item.path.clone()),
                first_read: m.started,
                last_read: m.finished,
                raw_len: item.len,
                retain_until: m.finished,
                lost_cursor: None,
                agent_instance: m.evidence_id.clone(),
                payload_key: format!("{}/{}", self.root, item.path),
                object_sha256: item.sha256,
                raw_sha256: item.sha256,
                framing,
                file_identity: None,
                range: (0, item.len),
                archive: Some(self.path.display().to_string()),
                compression,
                inventory: None,
            });
        }
        (segs, skipped)
    }

    /// Streams the tar once, handing each member that is one of `segs`'
    /// copies (by `payload_key`) to `scan` with its index and a reader of
    /// its bytes.
    pub fn each_copy(
        &self,
        segs: &[SegmentSummary],
        scan: &mut dyn FnMut(usize, &mut dyn Read),
    ) -> Result<(), String> {
        let by_member: BTreeMap<&str, usize> = segs
            .iter()
            .enumerate()
            .map(|(i, s)| (s.payload_key.as_str(), i))
            .collect();
        let file =
            File::open(&self.path).map_err(|e| format!("--bundle {}: {e}", self.path.display()))?;
        for_each_entry(BufReader::new(file), |info, data| {
            let Ok(name) = std::str::from_utf8(&info.path) else {
                return Ok(());
            };
            let name = name.strip_prefix("./").unwrap_or(name);
            if info.kind == EntryKind::Regular {
                if let Some(&i) = by_member.get(name) {
                    scan(i, data);
                }
            }
            Ok(())
        })
        .map_err(|e| format!("--bundle {}: {e}", self.path.display()))?
        .ok();
        Ok(())
    }
}
