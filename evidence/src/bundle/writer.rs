//! [`BagWriter`]: streams a bag into a tar, payload first, then the tag
//! files, the signature and the custody log, with fixed header rules so
//! the same inputs always give the same bytes (FORMAT.md §14.3).
//!
//! Memory stays bounded whatever the payload size: each payload file is
//! copied through a fixed buffer and hashed on the way; only the list of
//! names and hashes is kept.
//!
//! ```
//! use custody_evidence::bundle::bagit::BagInfo;
//! use custody_evidence::bundle::writer::{BagWriter, Seal};
//! # use custody_evidence::bundle::custody_manifest::*;
//! # use custody_evidence::digest::ClockState;
//! use custody_evidence::sign::HostKey;
//! use time::macros::datetime;
//!
//! let key = HostKey::generate();
//! let t = datetime!(2026-11-30 09:00 UTC);
//! let mut bag = BagWriter::new(Vec::new(), "INC-1_web01_20261130T090000000000Z", t).unwrap();
//! let copied = bag.add_bytes("data/volatile/uptime", b"12.5 3.0\n").unwrap();
//! # let manifest = CustodyManifest { format: CUSTODY_MANIFEST_FORMAT_V1.into(), evidence_id: "INC-1_web01_20261130T090000000000Z".into(),
//! #   incident_id: "INC-1".into(), authority: None, reason: None, collected_by: "alice".into(),
//! #   host: HostIdentity { host_id: "web01".parse().unwrap(), hostname: None, machine_id: None, boot_id: None },
//! #   tool: ToolIdentity { name: "t".into(), version: "0".into(), build_sha256: None }, command_line: vec![],
//! #   started: t, finished: t, clock: ClockState { synchronized: None, max_error_us: None, est_error_us: None }, clock_offset_us: None,
//! #   items: vec![], changes: vec![] };
//! let (tar, tagmanifest_sha256) = bag.finish(Seal {
//!     bag_info: BagInfo::default(),
//!     manifest: &manifest,
//!     allowed_signers: format!("web01 {}\n", key.public_key_line("")),
//!     key: &key,
//!     actor: "alice", place: "web01", purpose: "incident INC-1", time: t,
//! }).unwrap();
//! assert_eq!(&tar[257..262], b"ustar");
//! ```

use std::collections::BTreeSet;
use std::io::{self, Read, Write};

use time::OffsetDateTime;

use super::bagit::{self, BagInfo, ManifestEntry, PayloadOxum};
use super::custody_log::{Action, CustodyEvent, EventLine};
use super::custody_manifest::CustodyManifest;
use super::{
    check_bag_path, ALLOWED_SIGNERS, BAGIT_TXT, BAG_INFO_TXT, BUNDLE_NAMESPACE, CUSTODY_LOG,
    CUSTODY_MANIFEST_JSON, MANIFEST_TXT, TAGMANIFEST_SIG, TAGMANIFEST_TXT,
};
use crate::ids::Sha256;
use crate::sign::{HostKey, SignError};

/// Copy buffer: large enough for full-speed sequential reads, small enough
/// that memory stays flat for any file size.
const COPY_BUFFER: usize = 1 << 20;

/// Why a bag could not be written.
#[derive(Debug, thiserror::Error)]
pub enum BundleWriteError {
    #[error("writing the bundle: {0}")]
    Io(#[from] io::Error),
    #[error("bag path {path:?}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("{0}")]
    BagInfo(#[from] bagit::BagInfoError),
    #[error("signing the bundle: {0}")]
    Sign(#[from] SignError),
}

/// What was written for one payload file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub sha256: Sha256,
    /// Bytes in the bag (always the length announced).
    pub len: u64,
    /// Bytes that were zero-filled because the source ended early (it was
    /// truncated while being copied); 0 normally.
    pub short_by: u64,
}

/// The tar header every entry gets: GNU format, regular file, mode 0444,
/// uid/gid 0, empty user and group names, `mtime` = the collection's start
/// (whole seconds), so nothing about the collecting machine's users or
/// clock-at-write leaks into the bytes.
pub fn entry_header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o444);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h
}

/// The parts of a bag known only at the end.
pub struct Seal<'a> {
    /// Labels for `bag-info.txt`; `Payload-Oxum` is appended by the writer.
    pub bag_info: BagInfo,
    pub manifest: &'a CustodyManifest,
    /// The `allowed_signers` text to bundle (the host's key line).
    pub allowed_signers: String,
    pub key: &'a HostKey,
    /// The `collected` custody event's actor, place, purpose and time.
    pub actor: &'a str,
    pub place: &'a str,
    pub purpose: &'a str,
    pub time: OffsetDateTime,
}

/// Writes one bag into a tar stream.
pub struct BagWriter<W: Write> {
    tar: tar::Builder<W>,
    root: String,
    mtime: u64,
    payload: Vec<ManifestEntry>,
    oxum: PayloadOxum,
    names: BTreeSet<String>,
    evidence_id: String,
}

impl<W: Write> BagWriter<W> {
    /// Starts the bag `<evidence_id>/` and writes its `bagit.txt`.
    pub fn new(
        out: W,
        evidence_id: &str,
        started: OffsetDateTime,
    ) -> Result<Self, BundleWriteError> {
        check_bag_path(evidence_id).map_err(|why| BundleWriteError::BadPath {
            path: evidence_id.to_string(),
            why,
        })?;
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut w = BagWriter {
            tar,
            root: evidence_id.to_string(),
            mtime: started.unix_timestamp().max(0) as u64,
            payload: Vec::new(),
            oxum: PayloadOxum {
                octets: 0,
                files: 0,
            },
            names: BTreeSet::new(),
            evidence_id: evidence_id.to_string(),
        };
        w.put(BAGIT_TXT, bagit::BAGIT_TXT.as_bytes())?;
        Ok(w)
    }

    /// Whether `data_path` is already in the bag.
    pub fn contains(&self, data_path: &str) -> bool {
        self.names.contains(data_path)
    }

    fn claim(&mut self, path: &str, payload: bool) -> Result<(), BundleWriteError> {
        let bad = |why| {
            Err(BundleWriteError::BadPath {
                path: path.to_string(),
                why,
            })
        };
        if let Err(why) = check_bag_path(path) {
            return bad(why);
        }
        if payload != path.starts_with("data/") {
            return bad("payload files go under data/, tag files outside it");
        }
        if !self.names.insert(path.to_string()) {
            return bad("already in the bag");
        }
        Ok(())
    }

    fn put(&mut self, path: &str, bytes: &[u8]) -> Result<(), BundleWriteError> {
        self.claim(path, false)?;
        let mut h = entry_header(bytes.len() as u64, self.mtime);
        self.tar
            .append_data(&mut h, format!("{}/{path}", self.root), bytes)?;
        Ok(())
    }

    /// Adds a payload file held in memory.
    pub fn add_bytes(&mut self, data_path: &str, bytes: &[u8]) -> Result<Copied, BundleWriteError> {
        self.add_stream(data_path, bytes.len() as u64, bytes, &mut |_| {})
    }

    /// Adds a payload file of exactly `len` bytes read from `reader`,
    /// hashing on the way. A reader that ends early is zero-filled to `len`
    /// (tar needs the size up front) and the shortfall is returned, so the
    /// caller can record it; bytes past `len` are never read.
    pub fn add_stream<R: Read>(
        &mut self,
        data_path: &str,
        len: u64,
        reader: R,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Copied, BundleWriteError> {
        self.claim(data_path, true)?;
        let mut exact = Exact {
            inner: reader.take(len),
            left: len,
            short_by: 0,
            ended: false,
            hasher: <sha2::Sha256 as sha2::Digest>::new(),
            progress,
        };
        let mut h = entry_header(len, self.mtime);
        let path = format!("{}/{data_path}", self.root);
        self.tar.append_data(
            &mut h,
            path,
            io::BufReader::with_capacity(COPY_BUFFER, &mut exact),
        )?;
        let sha256 = Sha256::from_hasher(exact.hasher);
        self.payload.push(ManifestEntry {
            sha256,
            path: data_path.to_string(),
        });
        self.oxum.octets += len;
        self.oxum.files += 1;
        Ok(Copied {
            sha256,
            len,
            short_by: exact.short_by,
        })
    }

    /// The payload written so far (path and hash, in order).
    pub fn payload(&self) -> &[ManifestEntry] {
        &self.payload
    }

    /// Writes the manifests, `bag-info.txt`, the custody manifest,
    /// `allowed_signers`, the signature and the first custody event, ends
    /// the tar and returns the writer and the SHA-256 of the tag manifest.
    pub fn finish(mut self, seal: Seal<'_>) -> Result<(W, Sha256), BundleWriteError> {
        let manifest = bagit::encode_manifest(&self.payload);
        self.put(MANIFEST_TXT, manifest.as_bytes())?;
        let mut info = seal.bag_info.clone();
        info.push("Payload-Oxum", self.oxum.to_string());
        let info = info.encode()?;
        self.put(BAG_INFO_TXT, info.as_bytes())?;
        let custody = seal.manifest.encode();
        self.put(CUSTODY_MANIFEST_JSON, &custody)?;
        self.put(ALLOWED_SIGNERS, seal.allowed_signers.as_bytes())?;
        let tag_entries: Vec<ManifestEntry> = [
            (BAGIT_TXT, bagit::BAGIT_TXT.as_bytes()),
            (BAG_INFO_TXT, info.as_bytes()),
            (MANIFEST_TXT, manifest.as_bytes()),
            (CUSTODY_MANIFEST_JSON, &custody[..]),
            (ALLOWED_SIGNERS, seal.allowed_signers.as_bytes()),
        ]
        .into_iter()
        .map(|(path, bytes)| ManifestEntry {
            sha256: Sha256::digest(bytes),
            path: path.to_string(),
        })
        .collect();
        let tagmanifest = bagit::encode_manifest(&tag_entries);
        self.put(TAGMANIFEST_TXT, tagmanifest.as_bytes())?;
        let tag_sha = Sha256::digest(tagmanifest.as_bytes());
        let sig = seal.key.sign(BUNDLE_NAMESPACE, tagmanifest.as_bytes())?;
        self.put(TAGMANIFEST_SIG, sig.as_bytes())?;
        let event = CustodyEvent::first(
            &self.evidence_id,
            Action::Collected,
            seal.time,
            seal.actor,
            seal.place,
            seal.purpose,
            tag_sha,
            &seal.key.public_key_line(""),
        );
        let line = EventLine::sign(event, seal.key)?;
        self.put(CUSTODY_LOG, &line.encode())?;
        let out = self.tar.into_inner()?;
        Ok((out, tag_sha))
    }
}

/// The tail of a bundle holding `custody.jsonl` with `log` as its
/// content: the member (with the header rules of [`entry_header`], `mtime`
/// the bag's) followed by the end-of-archive blocks. Appending a custody
/// event means writing these bytes where the old `custody.jsonl` member
/// began (FORMAT.md §14.8): the bag before it is untouched.
pub fn custody_log_tail(evidence_id: &str, mtime: u64, log: &[u8]) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = entry_header(log.len() as u64, mtime);
    tar.append_data(&mut h, format!("{evidence_id}/{CUSTODY_LOG}"), log)?;
    tar.into_inner()
}

/// Reads exactly `left` bytes: the source's, then zeros if it ends early.
struct Exact<'p, R> {
    inner: io::Take<R>,
    left: u64,
    short_by: u64,
    ended: bool,
    hasher: sha2::Sha256,
    progress: &'p mut dyn FnMut(u64),
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = if self.ended {
            0
        } else {
            loop {
                match self.inner.read(&mut buf[..want]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        let n = if n == 0 {
            // The source ended before `len`: fill with zeros, and say so.
            if !self.ended {
                self.ended = true;
                self.short_by = self.left;
            }
            buf[..want].fill(0);
            want
        } else {
            n
        };
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        (self.progress)(n as u64);
        Ok(n)
    }
}
