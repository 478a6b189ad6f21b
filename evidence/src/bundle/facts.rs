//! What a custodian needs out of a bundle it already holds, without
//! verifying it again (the verifier in [`super::verify`] does that): the
//! evidence id, the hash of the tag manifest (which bag this is), the last
//! line of its custody log (to chain the next event to), and the shipped
//! objects it references (to place legal holds on, FORMAT.md §15.3).
//!
//! Read as a stream through the bounded tar reader; payload files are
//! skipped, tag files are read only up to [`super::MAX_TAG_FILE`].

use std::io::{self, Read};

use super::custody_log::{split_lines, EventLine};
use super::shipped::ShippedList;
use super::tar_read::{for_each_entry, EntryKind};
use super::{CUSTODY_LOG, MAX_TAG_FILE, SHIPPED_JSON, TAGMANIFEST_TXT};
use crate::ids::Sha256;

/// The facts; see the module documentation.
#[derive(Debug, Clone)]
pub struct BundleFacts {
    /// The bag directory's name.
    pub evidence_id: String,
    /// SHA-256 of `tagmanifest-sha256.txt`.
    pub bag_sha256: Sha256,
    /// The last line of `custody.jsonl` as stored (with its `\n`), decoded.
    pub last_event: (Vec<u8>, EventLine),
    /// `data/shipped.json`, when present and decodable.
    pub shipped: Option<ShippedList>,
    /// `custody.jsonl` as stored: every event the bag itself carries (a
    /// custodian shows them in its custody trail before the events it
    /// appended beside the bundle).
    pub custody_log: Vec<u8>,
}

/// Why a bundle's facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("reading the bundle: {0}")]
    Io(#[from] io::Error),
    #[error("the bundle is not a readable tar: {0}")]
    Tar(String),
    #[error("the bundle has no {0}")]
    Missing(&'static str),
    #[error("{what} of the bundle does not decode: {why}")]
    Corrupt { what: &'static str, why: String },
}

fn read_bounded(data: &mut dyn Read, size: u64) -> io::Result<Option<Vec<u8>>> {
    if size > MAX_TAG_FILE {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(size as usize);
    data.take(size).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

impl BundleFacts {
    /// Reads the facts of the bundle in `reader`.
    pub fn read<R: Read>(reader: R) -> Result<BundleFacts, FactsError> {
        let mut evidence_id: Option<String> = None;
        let mut tagmanifest: Option<Vec<u8>> = None;
        let mut log: Option<Vec<u8>> = None;
        let mut shipped: Option<Vec<u8>> = None;
        let ended = for_each_entry(reader, |info, data| {
            if info.kind != EntryKind::Regular {
                return Ok(());
            }
            let Ok(path) = std::str::from_utf8(&info.path) else {
                return Ok(());
            };
            let Some((bag, rest)) = path.split_once('/') else {
                return Ok(());
            };
            if evidence_id.is_none() {
                evidence_id = Some(bag.to_string());
            }
            if evidence_id.as_deref() != Some(bag) {
                return Ok(());
            }
            match rest {
                TAGMANIFEST_TXT => tagmanifest = read_bounded(data, info.size)?,
                CUSTODY_LOG => log = read_bounded(data, info.size)?,
                SHIPPED_JSON => shipped = read_bounded(data, info.size)?,
                _ => {}
            }
            Ok(())
        })?;
        if let Err(problem) = ended {
            return Err(FactsError::Tar(format!("{problem:?}")));
        }
        let evidence_id = evidence_id.ok_or(FactsError::Missing("bag directory"))?;
        let tagmanifest = tagmanifest.ok_or(FactsError::Missing(TAGMANIFEST_TXT))?;
        let log = log.ok_or(FactsError::Missing(CUSTODY_LOG))?;
        let last = split_lines(&log)
            .last()
            .map(|l| l.to_vec())
            .ok_or(FactsError::Missing("custody event"))?;
        let event = EventLine::decode(&last).map_err(|e| FactsError::Corrupt {
            what: "the last line of custody.jsonl",
            why: e.to_string(),
        })?;
        let shipped = shipped.and_then(|b| ShippedList::decode(&b).ok());
        Ok(BundleFacts {
            evidence_id,
            bag_sha256: Sha256::digest(&tagmanifest),
            last_event: (last, event),
            shipped,
            custody_log: log,
        })
    }

    /// Every store object the bundle lists as shipped (segment records and
    /// payloads, digests and their signatures), sorted, each once.
    pub fn referenced_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        if let Some(s) = &self.shipped {
            for seg in &s.segments {
                keys.push(seg.record_key.clone());
                keys.push(seg.payload_key.clone());
            }
            for d in &s.digests {
                keys.push(d.key.clone());
                if d.sig_sha256.is_some() {
                    keys.push(d.sig_key.clone());
                }
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}
