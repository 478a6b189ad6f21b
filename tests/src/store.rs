//! Reading a store the way an auditor would, independently of the agent's
//! code: every payload is decompressed by the real `zstd -d -c`, hashed and
//! compared with its record, records are chained in seq order, and the raw
//! bytes are put back together per source file by byte range.
//!
//! Reading returns a report: integrity problems are collected in
//! [`StoreContents::problems`] (each naming the object, what was expected
//! and what was found) rather than failing at the first; `Err` means the
//! store could not be read at all. Tests call [`StoreContents::assert_clean`].

use std::collections::HashMap;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{bail, Context};
use custody_evidence::layout::{self, ParsedKey};
use custody_evidence::segment::SegmentMeta;
use custody_evidence::Sha256;

use crate::lines::extract_ids;

/// One segment as stored: its record (decoded and as the exact stored
/// bytes) and its payload decompressed by `zstd`.
#[derive(Debug, Clone)]
pub struct StoredSegment {
    pub stream: String,
    pub meta: SegmentMeta,
    /// The record exactly as stored (the chain hashes these bytes).
    pub meta_bytes: Vec<u8>,
    pub meta_path: PathBuf,
    pub payload_path: PathBuf,
    /// The payload as `zstd -d -c` printed it.
    pub raw: Vec<u8>,
}

/// The identity of a source file as the records state it: device, inode and
/// the content fingerprint of the piece's first segment. Paths are not
/// identity (rotation renames files).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileKey {
    pub device: u64,
    pub inode: u64,
    pub fingerprint: Sha256,
}

impl std::fmt::Display for FileKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "dev {} inode {} fp {}",
            self.device,
            self.inode,
            &self.fingerprint.to_hex()[..12]
        )
    }
}

/// The bytes of one source file recovered from the store: consecutive
/// segments of one stream whose ranges join without gap or overlap.
///
/// Segments are joined by device and inode. A new piece starts when that
/// file's segments begin again at offset 0 (a reused inode, or a file
/// truncated by copytruncate) — counted in `incarnation` — or after a
/// discontinuity, which is also a problem in [`StoreContents::problems`].
#[derive(Debug, Clone)]
pub struct ReassembledFile {
    pub stream: String,
    pub key: FileKey,
    /// 0 for the first piece of this identity, then 1, 2, …
    pub incarnation: u32,
    /// Every path the records name for these bytes.
    pub paths: BTreeSet<String>,
    /// Offset in the source file of `bytes[0]`.
    pub start: u64,
    pub bytes: Vec<u8>,
    /// Seqs of the segments that make up this piece, in order.
    pub seqs: Vec<u64>,
}

impl ReassembledFile {
    /// Offset just past the last byte recovered.
    pub fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Result of [`StoreContents::check_against_sources`].
#[derive(Debug, Default)]
pub struct SourceCheck {
    /// Segments whose source file was found and long enough to compare.
    pub checked: usize,
    /// Segments whose source no longer exists (deleted, truncated, rotated
    /// away, or its first bytes changed).
    pub skipped: usize,
    pub mismatches: Vec<String>,
}

/// Everything one host has in a store.
#[derive(Debug, Default)]
pub struct StoreContents {
    /// Segments per stream id, in seq order.
    pub streams: BTreeMap<String, Vec<StoredSegment>>,
    /// Source files put back together, per stream in order of first segment.
    pub files: Vec<ReassembledFile>,
    /// Integrity problems: every one is a test failure in `assert_clean`.
    pub problems: Vec<String>,
    /// Files in the stream directories that are not part of the layout
    /// (for example temporary files), listed for information.
    pub ignored: Vec<PathBuf>,
}

impl StoreContents {
    /// Reads all streams of `host` in the filesystem store at `store`. A
    /// host with no `v1/<host>` directory yet reads as empty.
    pub fn read(store: &Path, host: &str) -> anyhow::Result<Self> {
        let mut out = StoreContents::default();
        let streams_dir = store.join(layout::ROOT).join(host).join("streams");
        if !streams_dir.exists() {
            return Ok(out);
        }
        let mut stream_names: Vec<String> = Vec::new();
        for entry in fs::read_dir(&streams_dir)
            .with_context(|| format!("listing {}", streams_dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", streams_dir.display()))?;
            stream_names.push(entry.file_name().to_string_lossy().into_owned());
        }
        stream_names.sort();
        for stream in stream_names {
            let segments = out.read_stream(store, host, &stream)?;
            out.streams.insert(stream, segments);
        }
        out.reassemble();
        Ok(out)
    }

    fn read_stream(
        &mut self,
        store: &Path,
        host: &str,
        stream: &str,
    ) -> anyhow::Result<Vec<StoredSegment>> {
        let dir = store
            .join(layout::ROOT)
            .join(host)
            .join("streams")
            .join(stream);
        // stem "<seq>-<sha>" -> (payload, record)
        let mut pairs: BTreeMap<String, (Option<PathBuf>, Option<PathBuf>)> = BTreeMap::new();
        for entry in fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = format!("{}/{host}/streams/{stream}/{name}", layout::ROOT);
            match layout::parse_key(&key) {
                Some(ParsedKey::SegmentPayload { .. }) => {
                    let stem = name.trim_end_matches(".zst").to_string();
                    pairs.entry(stem).or_default().0 = Some(entry.path());
                }
                Some(ParsedKey::SegmentMeta { .. }) => {
                    let stem = name.trim_end_matches(".seg.json").to_string();
                    pairs.entry(stem).or_default().1 = Some(entry.path());
                }
                _ => self.ignored.push(entry.path()),
            }
        }
        let mut segments = Vec::new();
        for (stem, pair) in pairs {
            match pair {
                (Some(payload), Some(record)) => {
                    if let Some(seg) = self.read_segment(stream, &stem, payload, record)? {
                        segments.push(seg);
                    }
                }
                (Some(payload), None) => self.problems.push(format!(
                    "stream {stream}: payload {} has no record",
                    payload.display()
                )),
                (None, Some(record)) => self.problems.push(format!(
                    "stream {stream}: record {} has no payload",
                    record.display()
                )),
                (None, None) => unreachable!("a pair is created with one side set"),
            }
        }
        segments.sort_by_key(|s| s.meta.seq.0);
        self.check_chain(stream, &segments);
        Ok(segments)
    }

    /// Reads and checks one payload/record pair. `Ok(None)` when the pair
    /// is too damaged to use (a problem is recorded); `Err` only when a
    /// tool needed for reading is missing.
    fn read_segment(
        &mut self,
        stream: &str,
        stem: &str,
        payload_path: PathBuf,
        meta_path: PathBuf,
    ) -> anyhow::Result<Option<StoredSegment>> {
        let meta_bytes = match fs::read(&meta_path) {
            Ok(b) => b,
            Err(e) => {
                self.problems
                    .push(format!("cannot read record {}: {e}", meta_path.display()));
                return Ok(None);
            }
        };
        let meta = match SegmentMeta::decode(&meta_bytes) {
            Ok(m) => m,
            Err(e) => {
                self.problems.push(format!(
                    "record {} does not decode: {e}",
                    meta_path.display()
                ));
                return Ok(None);
            }
        };
        let name = format!("{}: ", meta_path.display());
        let expected_stem = format!("{:020}-{}", meta.seq.0, meta.object_sha256);
        if stem != expected_stem {
            self.problems.push(format!(
                "{name}name says {stem}, record says {expected_stem}"
            ));
        }
        if meta.stream_id.as_str() != stream {
            self.problems.push(format!(
                "{name}stored under stream {stream}, record says {}",
                meta.stream_id
            ));
        }
        let object = match fs::read(&payload_path) {
            Ok(b) => b,
            Err(e) => {
                self.problems.push(format!(
                    "cannot read payload {}: {e}",
                    payload_path.display()
                ));
                return Ok(None);
            }
        };
        let object_sha = Sha256::digest(&object);
        if object_sha != meta.object_sha256 || object.len() as u64 != meta.object_len {
            self.problems.push(format!(
                "{name}payload expected sha256 {} len {}, found sha256 {object_sha} len {}",
                meta.object_sha256,
                meta.object_len,
                object.len()
            ));
        }
        let raw = match zstd_decompress_cached(&payload_path, &object, object_sha)? {
            Ok(raw) => raw,
            Err(msg) => {
                self.problems
                    .push(format!("{}: zstd -d failed: {msg}", payload_path.display()));
                return Ok(None);
            }
        };
        let raw_sha = Sha256::digest(&raw);
        if raw_sha != meta.raw_sha256 || raw.len() as u64 != meta.raw_len {
            self.problems.push(format!(
                "{name}raw bytes expected sha256 {} len {}, found sha256 {raw_sha} len {}",
                meta.raw_sha256,
                meta.raw_len,
                raw.len()
            ));
        }
        let range_len = meta.range.end.checked_sub(meta.range.start);
        if range_len != Some(meta.raw_len) {
            self.problems.push(format!(
                "{name}range {}..{} does not span raw_len {}",
                meta.range.start, meta.range.end, meta.raw_len
            ));
        }
        Ok(Some(StoredSegment {
            stream: stream.to_string(),
            meta,
            meta_bytes,
            meta_path,
            payload_path,
            raw,
        }))
    }

    /// Seqs must run 0, 1, 2, … and each record must name the chain hash
    /// of the one before.
    fn check_chain(&mut self, stream: &str, segments: &[StoredSegment]) {
        let mut prev: Option<&StoredSegment> = None;
        for (i, seg) in segments.iter().enumerate() {
            let seq = seg.meta.seq.0;
            if seq != i as u64 {
                self.problems.push(format!(
                    "stream {stream}: expected seq {i}, found seq {seq} (gap or duplicate)"
                ));
            }
            let expected = prev.map(|p| SegmentMeta::chain_hash(&p.meta_bytes));
            if seg.meta.prev_segment != expected {
                self.problems.push(format!(
                    "stream {stream} seq {seq}: prev_segment expected {}, found {}",
                    expected.map_or("none".into(), |h| h.to_hex()),
                    seg.meta.prev_segment.map_or("none".into(), |h| h.to_hex())
                ));
            }
            prev = Some(seg);
        }
    }

    /// Puts each stream's bytes back together per source file.
    fn reassemble(&mut self) {
        let mut files: Vec<ReassembledFile> = Vec::new();
        let mut problems = Vec::new();
        for (stream, segments) in &self.streams {
            // (device, inode) -> index in `files` of its current piece. The
            // fingerprint is left out on purpose: a file keeps its inode as
            // it grows, and a reused inode shows as a restart at offset 0.
            let mut open: BTreeMap<(u64, u64), usize> = BTreeMap::new();
            for seg in segments {
                // Syslog device streams have no file to reassemble.
                let Some(src) = seg.meta.source.as_file() else {
                    continue;
                };
                let key = FileKey {
                    device: src.device,
                    inode: src.inode,
                    fingerprint: src.fingerprint,
                };
                let range = seg.meta.range;
                let mut incarnation = 0;
                if let Some(&idx) = open.get(&(key.device, key.inode)) {
                    let file = &mut files[idx];
                    if range.start == file.end() {
                        file.bytes.extend_from_slice(&seg.raw);
                        file.paths.insert(src.path.clone());
                        file.seqs.push(seg.meta.seq.0);
                        continue;
                    }
                    // A reused inode holding other content (a copytruncate
                    // copy on a deleted copy's inode) may start anywhere.
                    let reused = file.key.fingerprint != key.fingerprint;
                    if range.start != 0 && !reused {
                        let what = if range.start > file.end() {
                            "gap"
                        } else {
                            "overlap"
                        };
                        problems.push(format!(
                            "stream {stream} seq {}: {what} in {} ({key}): previous segment (seq {}) ended at {}, this one starts at {}",
                            seg.meta.seq,
                            src.path,
                            file.seqs.last().copied().unwrap_or_default(),
                            file.end(),
                            range.start
                        ));
                    }
                    incarnation = file.incarnation + 1;
                }
                open.insert((key.device, key.inode), files.len());
                files.push(ReassembledFile {
                    stream: stream.clone(),
                    key,
                    incarnation,
                    paths: BTreeSet::from([src.path.clone()]),
                    start: range.start,
                    bytes: seg.raw.clone(),
                    seqs: vec![seg.meta.seq.0],
                });
            }
        }
        self.files = files;
        self.problems.extend(problems);
    }

    /// Every segment, all streams, in stream then seq order.
    pub fn segments(&self) -> impl Iterator<Item = &StoredSegment> {
        self.streams.values().flatten()
    }

    pub fn segment_count(&self) -> usize {
        self.streams.values().map(Vec::len).sum()
    }

    /// The ids of every complete tagged line in the reassembled files, in
    /// store order, duplicates included (that is what the accounting checks).
    pub fn line_ids(&self) -> Vec<String> {
        self.files
            .iter()
            .flat_map(|f| extract_ids(&f.bytes))
            .collect()
    }

    /// Panics listing the problems (the first 20) if there are any.
    pub fn assert_clean(&self) {
        if self.problems.is_empty() {
            return;
        }
        let shown: Vec<&String> = self.problems.iter().take(20).collect();
        panic!(
            "store has {} problem(s); first {}:\n  {}",
            self.problems.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }

    /// Compares each segment's raw bytes with the source file at its
    /// recorded range, where that file still exists: a file in one of
    /// `dirs` with the recorded device and inode whose first bytes still
    /// hash to the recorded fingerprint and which is long enough.
    pub fn check_against_sources(&self, dirs: &[&Path]) -> SourceCheck {
        let mut candidates: Vec<(PathBuf, u64, u64)> = Vec::new();
        for dir in dirs {
            let Ok(entries) = fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Ok(md) = entry.metadata() {
                    if md.is_file() {
                        candidates.push((entry.path(), md.dev(), md.ino()));
                    }
                }
            }
        }
        let mut check = SourceCheck::default();
        for seg in self.segments() {
            let Some(src) = seg.meta.source.as_file() else {
                check.skipped += 1;
                continue;
            };
            let found = candidates
                .iter()
                .filter(|(_, dev, ino)| *dev == src.device && *ino == src.inode)
                .find_map(|(path, _, _)| {
                    let bytes = fs::read(path).ok()?;
                    let fp_len = (src.fingerprint_len as usize).min(bytes.len());
                    (fp_len == src.fingerprint_len as usize
                        && Sha256::digest(&bytes[..fp_len]) == src.fingerprint)
                        .then_some((path.clone(), bytes))
                });
            let Some((path, bytes)) = found else {
                check.skipped += 1;
                continue;
            };
            let (start, end) = (seg.meta.range.start as usize, seg.meta.range.end as usize);
            if end > bytes.len() || start > end {
                check.skipped += 1;
                continue;
            }
            check.checked += 1;
            if bytes[start..end] != seg.raw[..] {
                check.mismatches.push(format!(
                    "stream {} seq {}: bytes {start}..{end} differ from {} (recorded path {})",
                    seg.stream,
                    seg.meta.seq,
                    path.display(),
                    src.path
                ));
            }
        }
        check
    }
}

/// [`zstd_decompress_file`] with a process-wide cache keyed by the payload's
/// SHA-256: tests poll the store many times while it grows, stored objects
/// never change, and running `zstd` once per object per poll would make
/// the polling itself the bottleneck. A changed (tampered) payload has a
/// different hash and is decompressed afresh.
fn zstd_decompress_cached(
    path: &Path,
    object: &[u8],
    sha: Sha256,
) -> anyhow::Result<Result<Vec<u8>, String>> {
    type Decompressed = Result<Vec<u8>, String>;
    static CACHE: OnceLock<Mutex<HashMap<Sha256, Decompressed>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&sha) {
        return Ok(hit.clone());
    }
    // Decompress what was hashed, not a re-read that may have changed since.
    let result = zstd_decompress_bytes(object)
        .with_context(|| format!("decompressing {}", path.display()))?;
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(sha, result.clone());
    Ok(result)
}

/// Runs `zstd -d -c` on `object` fed through stdin.
fn zstd_decompress_bytes(object: &[u8]) -> anyhow::Result<Result<Vec<u8>, String>> {
    use std::io::Write as _;
    let mut child = match Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the `zstd` tool is not installed (Debian package: zstd)")
        }
        Err(e) => return Err(e).context("running zstd -d -c"),
    };
    let mut stdin = child.stdin.take().context("zstd stdin")?;
    let input = object.to_vec();
    // Feed stdin from a thread so a large output cannot deadlock the pipe.
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().context("waiting for zstd -d -c")?;
    let _ = feeder.join();
    if out.status.success() {
        Ok(Ok(out.stdout))
    } else {
        Ok(Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Decompresses one payload with the `zstd` command-line tool, so the
/// store is checked with the tool an auditor would use, not our library.
/// The inner `Err` is a per-object failure; the outer one a missing tool.
pub fn zstd_decompress_file(path: &Path) -> anyhow::Result<Result<Vec<u8>, String>> {
    let out = match Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("the `zstd` tool is not installed (Debian package: zstd)")
        }
        Err(e) => return Err(e).with_context(|| format!("running zstd -d -c {}", path.display())),
    };
    if out.status.success() {
        Ok(Ok(out.stdout))
    } else {
        Ok(Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// SHA-256 of a whole file, for tests that compare files with the store.
pub fn sha256_file(path: &Path) -> std::io::Result<Sha256> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(Sha256::from_hasher(h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_evidence::segment::compress_payload;

    /// Writes segments of one file into a store laid out like the agent's;
    /// `ranges` are (start, end) into `source`. Returns the store dir.
    fn write_store(
        dir: &Path,
        source: &[u8],
        ranges: &[(usize, usize)],
        break_chain_at: Option<usize>,
    ) {
        let mut prev: Option<Sha256> = None;
        let stream_dir = dir.join("v1/h1/streams/app-s1");
        fs::create_dir_all(&stream_dir).unwrap();
        for (seq, &(start, end)) in ranges.iter().enumerate() {
            let raw = &source[start..end];
            let object = compress_payload(raw, 3).unwrap();
            let object_sha = Sha256::digest(&object);
            let json = serde_json::json!({
                "format": "custody.segment.v1", "host_id": "h1", "stream_id": "app-s1", "category": "app",
                "seq": seq, "agent_instance": "00000000-0000-4000-8000-000000000000",
                "framing": {"kind": "lines"},
                "source": {"path": "/var/log/app.log", "device": 1, "inode": 2,
                           "fingerprint": Sha256::digest(&source[..8]).to_hex(), "fingerprint_len": 8},
                "range": {"start": start, "end": end},
                "split": {"starts_mid_unit": false, "ends_mid_unit": false},
                "first_read": "2026-01-01T00:00:00.000000Z", "last_read": "2026-01-01T00:00:00.000000Z",
                "raw_len": raw.len(), "raw_sha256": Sha256::digest(raw).to_hex(),
                "object_len": object.len(), "object_sha256": object_sha.to_hex(),
                "prev_segment": if break_chain_at == Some(seq) { Some(Sha256::digest(b"x")) } else { prev },
                "retain_until": "2027-01-01T00:00:00.000000Z",
            });
            let meta: SegmentMeta = serde_json::from_value(json).unwrap();
            let bytes = meta.encode();
            prev = Some(SegmentMeta::chain_hash(&bytes));
            let stem = format!("{seq:020}-{object_sha}");
            fs::write(stream_dir.join(format!("{stem}.zst")), &object).unwrap();
            fs::write(stream_dir.join(format!("{stem}.seg.json")), &bytes).unwrap();
        }
    }

    fn source() -> Vec<u8> {
        let mut w = crate::lines::LineWriter::new("/unused", "t");
        w.render(&["line".to_string()], 6)
    }

    #[test]
    fn contiguous_segments_reassemble_to_the_source() {
        let dir = tempfile::tempdir().unwrap();
        let src = source();
        let third = src.len() / 3;
        write_store(
            dir.path(),
            &src,
            &[(0, third), (third, 2 * third), (2 * third, src.len())],
            None,
        );
        let c = StoreContents::read(dir.path(), "h1").unwrap();
        c.assert_clean();
        assert_eq!(c.files.len(), 1);
        assert_eq!(c.files[0].bytes, src);
        assert_eq!(c.line_ids().len(), 6);
    }

    #[test]
    fn gaps_overlaps_and_chain_breaks_are_reported() {
        let src = source();
        type Case<'a> = (&'a [(usize, usize)], Option<usize>, &'a str);
        let cases: [Case; 3] = [
            (&[(0, 10), (12, 30)], None, "gap"),
            (&[(0, 10), (8, 30)], None, "overlap"),
            (&[(0, 10), (10, 30)], Some(1), "prev_segment"),
        ];
        for (ranges, brk, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            write_store(dir.path(), &src, ranges, brk);
            let c = StoreContents::read(dir.path(), "h1").unwrap();
            assert!(
                c.problems.iter().any(|p| p.contains(want)),
                "expected a {want} problem, found {:?}",
                c.problems
            );
        }
    }

    #[test]
    fn a_tampered_payload_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let src = source();
        write_store(dir.path(), &src, &[(0, src.len())], None);
        let stream_dir = dir.path().join("v1/h1/streams/app-s1");
        let payload = fs::read_dir(&stream_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|x| x == "zst"))
            .unwrap();
        let other = compress_payload(&src[..src.len() - 1], 3).unwrap();
        fs::write(&payload, other).unwrap();
        let c = StoreContents::read(dir.path(), "h1").unwrap();
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("payload expected sha256")),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems
                .iter()
                .any(|p| p.contains("raw bytes expected sha256")),
            "{:?}",
            c.problems
        );
    }
}
