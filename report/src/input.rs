//! Reading a store for a report: open it through `custody-store` (the
//! filesystem store, or S3 with the same settings as the agent), verify it
//! with `custody_evidence::verify::verify_store`, and keep a compact
//! summary of every segment record and digest body the verifier read.
//!
//! The summaries are taken from the very bytes the verifier checked (the
//! [`ObjectSource`] below decodes each record and digest as it passes), so
//! a report never describes bytes other than the ones verified, and each
//! object is read once.

use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use custody_evidence::digest::DigestBody;
use custody_evidence::layout::{self, ParsedKey};
use custody_evidence::segment::{SegmentMeta, Source};
use custody_evidence::verify::{verify_store, ObjectSource, Report, SourceError, VerifyOptions};
use custody_store::{FsStore, ObjectStore, S3Settings, S3Store, StoreError};
use time::OffsetDateTime;

/// How a segment's bytes reached the store, from its record's `source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    File,
    Journal,
    Syslog,
    Eventlog,
    /// A `.evtx` file (a bundle's copy of a Windows Event Log channel):
    /// read record by record, not by its framing.
    EvtxFile,
    /// An inventory of web roots (FORMAT.md §18): compared, not parsed.
    Inventory,
}

/// How a bundle's rotated copy is compressed, named by the stock tool
/// that decompresses it (`TOOL -dc`), which is what an auditor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyCompression {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
}

impl CopyCompression {
    const ALL: [(&'static str, CopyCompression); 4] = [
        (".gz", CopyCompression::Gzip),
        (".zst", CopyCompression::Zstd),
        (".bz2", CopyCompression::Bzip2),
        (".xz", CopyCompression::Xz),
    ];

    /// By the copy's name (`auth.log.2.gz`), lower-cased.
    pub fn of_name(lower_name: &str) -> Option<CopyCompression> {
        Self::ALL
            .into_iter()
            .find(|(ext, _)| lower_name.ends_with(ext))
            .map(|(_, c)| c)
    }

    /// The tool, as the report's `decompress` field names it.
    pub fn tool(self) -> &'static str {
        match self {
            CopyCompression::Gzip => "gzip",
            CopyCompression::Zstd => "zstd",
            CopyCompression::Bzip2 => "bzip2",
            CopyCompression::Xz => "xz",
        }
    }

    /// The name without its compression suffix (`auth.log.2`).
    pub fn strip(self, lower_name: &str) -> &str {
        let ext = Self::ALL
            .into_iter()
            .find(|(_, c)| *c == self)
            .map_or("", |(e, _)| e);
        lower_name.strip_suffix(ext).unwrap_or(lower_name)
    }

    /// A reader of the decompressed bytes of `inner` (every member or
    /// frame, as `TOOL -dc` gives them).
    pub fn decoder<'a>(
        self,
        inner: &'a mut dyn std::io::Read,
    ) -> std::io::Result<Box<dyn std::io::Read + 'a>> {
        Ok(match self {
            CopyCompression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(inner)),
            CopyCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(inner)?),
            CopyCompression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(inner)),
            CopyCompression::Xz => Box::new(xz2::read::XzDecoder::new_multi_decoder(inner)),
        })
    }
}

/// Which inventory a webroot segment is part of (FORMAT.md §18).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryPart {
    pub taken: OffsetDateTime,
    pub part: u32,
    pub last_part: bool,
    pub roots: Vec<String>,
}

/// What a coverage report needs from one segment record.
#[derive(Debug, Clone)]
pub struct SegmentSummary {
    pub host: String,
    pub stream: String,
    /// The record's `category` (os, web, app, logon).
    pub category: String,
    pub seq: u64,
    pub source_kind: SourceKind,
    /// A file's path, a journal's description, an Event Log channel, or a
    /// syslog device and peer: from the log side, so attacker-controlled.
    pub source_label: String,
    pub first_read: OffsetDateTime,
    pub last_read: OffsetDateTime,
    pub raw_len: u64,
    pub retain_until: OffsetDateTime,
    /// The journal cursor lost before this segment (FORMAT.md §16.4).
    pub lost_cursor: Option<String>,
    pub agent_instance: String,
    /// The payload object's key (`….zst`), for reports that read payloads.
    pub payload_key: String,
    /// The record's SHA-256 of the stored (compressed) payload object.
    pub object_sha256: custody_evidence::ids::Sha256,
    /// The record's SHA-256 of the raw (decompressed) bytes.
    pub raw_sha256: custody_evidence::ids::Sha256,
    /// How the raw bytes are cut into units (lines, records, frames,
    /// journal entries): which parser reads them.
    pub framing: custody_evidence::segment::Framing,
    /// For file sources, the file's (device, inode): with `range`, what
    /// shows a file truncated in place (read again from byte 0).
    pub file_identity: Option<(u64, u64)>,
    /// The record's `range` (bytes of the file, or of the stream).
    pub range: (u64, u64),
    /// For a copy inside an evidence bundle: the bundle's path
    /// (`payload_key` is then the member's path inside it).
    pub archive: Option<String>,
    /// The copy is compressed (a rotated `….gz`, `.zst`, `.bz2`, `.xz`):
    /// offsets are in its decompressed bytes, `raw_sha256` is of the copy
    /// as kept.
    pub compression: Option<CopyCompression>,
    /// For a webroot segment: the inventory it is a part of.
    pub inventory: Option<InventoryPart>,
}

/// A segment summary for unit tests: a file source, read at `at`.
#[cfg(test)]
pub(crate) fn sample_segment(
    host: &str,
    stream: &str,
    seq: u64,
    at: OffsetDateTime,
) -> SegmentSummary {
    SegmentSummary {
        host: host.into(),
        stream: stream.into(),
        category: "logon".into(),
        seq,
        source_kind: SourceKind::File,
        source_label: "/var/log/auth.log".into(),
        first_read: at,
        last_read: at,
        raw_len: 0,
        retain_until: at,
        lost_cursor: None,
        agent_instance: "i".into(),
        payload_key: format!("v1/{host}/streams/{stream}/{seq}.zst"),
        object_sha256: custody_evidence::Sha256::digest(b""),
        raw_sha256: custody_evidence::Sha256::digest(b""),
        framing: custody_evidence::segment::Framing::Lines,
        file_identity: Some((1, 2)),
        range: (0, 0),
        archive: None,
        compression: None,
        inventory: None,
    }
}

/// What a coverage report needs from one digest body.
#[derive(Debug, Clone)]
pub struct DigestSummary {
    pub host: String,
    pub seq: u64,
    pub window_start: OffsetDateTime,
    pub window_end: OffsetDateTime,
    pub agent_instance: String,
    pub entries: u64,
}

/// A verified read of a store.
#[derive(Debug)]
pub struct Input {
    /// Where the store is (a path or URL), for the report's header.
    pub store: String,
    pub segments: Vec<SegmentSummary>,
    pub digests: Vec<DigestSummary>,
    /// The findings of `custody_evidence::verify::verify_store`.
    pub verification: Report,
    /// Whether payloads were read and checked (never for coverage).
    pub payloads_read: bool,
    /// Objects listed (for the report's "what was read").
    pub objects_listed: u64,
}

/// How to reach an `s3://` store: the same options as `custody-verify
/// bundle --store s3://…` and the agent (docs/s3.md).
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub path_style: Option<bool>,
}

/// Why a store could not be read at all (the report could not run).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("--store {store}: {why}")]
    Open { store: String, why: String },
    #[error("store {store}: {source}")]
    Read {
        store: String,
        #[source]
        source: SourceError,
    },
}

/// The store behind an [`ObjectSource`]: the filesystem store is read with
/// its synchronous calls (no thread hand-off per object, which matters over
/// millions of records), any other store through the async trait.
enum Backend {
    Fs(FsStore),
    Async {
        store: Box<dyn ObjectStore>,
        runtime: tokio::runtime::Runtime,
    },
}

impl Backend {
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        match self {
            Backend::Fs(s) => s.list_sync(prefix),
            Backend::Async { store, runtime } => runtime.block_on(store.list(prefix)),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        match self {
            Backend::Fs(s) => read_listed(s, key),
            Backend::Async { store, runtime } => runtime.block_on(store.get(key)),
        }
    }
}

/// Reads an object the filesystem store just listed. The listing walked
/// the tree without following links and kept only regular files under
/// valid names, so this re-checks only the object itself (still a regular
/// file, not replaced by a link since) instead of every leading directory
/// as `FsStore::get_sync` does: over a million records those checks were a
/// sixth of the run. Any doubt falls back to `get_sync`.
fn read_listed(store: &FsStore, key: &str) -> Result<Vec<u8>, StoreError> {
    let path = store.root().join(key);
    match std::fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_file() => {
            std::fs::read(&path).map_err(|cause| StoreError::Io {
                op: "read",
                path: path.display().to_string(),
                cause,
            })
        }
        _ => store.get_sync(key),
    }
}

/// Opens `DIR` or `s3://BUCKET/PREFIX` for reading; never writes.
fn open_backend(store: &str, s3: &S3Options) -> Result<Backend, InputError> {
    let open_err = |why: String| InputError::Open {
        store: store.to_string(),
        why,
    };
    let given_s3 = s3.endpoint.is_some() || s3.region.is_some() || s3.path_style.is_some();
    if store.starts_with("s3://") {
        let (bucket, prefix) = S3Settings::parse_url(store).map_err(|w| open_err(w.to_string()))?;
        let mut settings = S3Settings::new(bucket, prefix);
        settings.path_style = s3.path_style.unwrap_or(s3.endpoint.is_some());
        settings.endpoint = s3.endpoint.clone();
        settings.region = s3.region.clone();
        // Reading only: the bucket's protection is not this report's question.
        settings.require_object_lock = false;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| open_err(format!("cannot start the async runtime for S3: {e}")))?;
        let opened = runtime
            .block_on(S3Store::open(settings))
            .map_err(|e| open_err(format!("cannot open the bucket: {e}")))?;
        return Ok(Backend::Async {
            store: Box::new(opened),
            runtime,
        });
    }
    if store.contains("://") {
        return Err(open_err(
            "give a store directory or s3://BUCKET/PREFIX (for the collector's store, its --store directory or bucket)".into(),
        ));
    }
    if given_s3 {
        return Err(open_err(
            "--s3-endpoint, --s3-region and --s3-path-style apply only to --store s3://…".into(),
        ));
    }
    FsStore::open_existing(Path::new(store))
        .map(Backend::Fs)
        .map_err(|e| open_err(e.to_string()))
}

/// The verifier's view of the store: every record and digest it reads is
/// also summarised here, and a progress bar advances on a terminal.
struct Tap<'a> {
    backend: &'a Backend,
    store: &'a str,
    segments: RefCell<Vec<SegmentSummary>>,
    digests: RefCell<Vec<DigestSummary>>,
    progress: Progress,
}

impl ObjectSource for Tap<'_> {
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        let keys = self
            .backend
            .list(prefix)
            .map_err(|e| SourceError::new(format!("{}/{prefix}", self.store), e.to_string()))?;
        let to_read = keys
            .iter()
            .filter(|k| {
                k.ends_with(".seg.json") || k.ends_with(".digest.json") || k.ends_with(".sig")
            })
            .count();
        self.progress.set_total(to_read as u64);
        Ok(keys)
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        let bytes = self
            .backend
            .get(key)
            .map_err(|e| SourceError::new(format!("{}/{key}", self.store), e.to_string()))?;
        self.progress.tick();
        match layout::parse_key(key) {
            Some(ParsedKey::SegmentMeta { .. }) => {
                // A record that does not decode is the verifier's finding;
                // it has no times to report.
                // The verifier decodes it too, with the canonical-encoding
                // check; a plain decode is enough for the summary.
                if let Ok(meta) = serde_json::from_slice::<SegmentMeta>(&bytes) {
                    self.segments.borrow_mut().push(summarise_segment(&meta));
                }
            }
            Some(ParsedKey::Digest { .. }) => {
                if let Ok(body) = serde_json::from_slice::<DigestBody>(&bytes) {
                    self.digests.borrow_mut().push(DigestSummary {
                        host: body.host_id.to_string(),
                        seq: body.seq,
                        window_start: body.window_start,
                        window_end: body.window_end,
                        agent_instance: body.agent_instance.to_string(),
                        entries: body.segments.len() as u64,
                    });
                }
            }
            _ => {}
        }
        Ok(bytes)
    }
}

fn summarise_segment(meta: &SegmentMeta) -> SegmentSummary {
    let (source_kind, source_label, lost_cursor) = match &meta.source {
        Source::File(f) => (SourceKind::File, f.path.clone(), None),
        Source::Journal(j) => (
            SourceKind::Journal,
            j.journal.clone(),
            j.lost_cursor.clone(),
        ),
        Source::Syslog(s) => (
            SourceKind::Syslog,
            format!("{} ({} from {})", s.device, s.transport.as_str(), s.peer),
            None,
        ),
        Source::EventLog(e) => (SourceKind::Eventlog, e.channel.clone(), None),
        Source::Inventory(i) => (SourceKind::Inventory, i.roots.join(", "), None),
    };
    SegmentSummary {
        host: meta.host_id.to_string(),
        stream: meta.stream_id.to_string(),
        category: meta.category.to_string(),
        seq: meta.seq.0,
        source_kind,
        source_label,
        first_read: meta.first_read,
        last_read: meta.last_read,
        raw_len: meta.raw_len,
        retain_until: meta.retain_until,
        lost_cursor,
        agent_instance: meta.agent_instance.to_string(),
        payload_key: layout::segment_payload_key(
            &meta.host_id,
            &meta.stream_id,
            meta.seq,
            &meta.object_sha256,
        ),
        object_sha256: meta.object_sha256,
        raw_sha256: meta.raw_sha256,
        framing: meta.framing,
        file_identity: match &meta.source {
            Source::File(f) => Some((f.device, f.inode)),
            _ => None,
        },
        range: (meta.range.start, meta.range.end),
        archive: None,
        compression: None,
        inventory: meta.source.as_inventory().map(|i| InventoryPart {
            taken: i.taken,
            part: i.part,
            last_part: i.last_part,
            roots: i.roots.clone(),
        }),
    }
}

/// Read access to a store's objects for reports that read payloads
/// (`findings`): the same backends as [`read_store_records`], read-only.
pub struct Objects {
    backend: Backend,
    store: String,
}

impl Objects {
    /// Opens `DIR` or `s3://BUCKET/PREFIX` for reading; never writes.
    pub fn open(store: &str, s3: &S3Options) -> Result<Objects, InputError> {
        Ok(Objects {
            backend: open_backend(store, s3)?,
            store: store.to_string(),
        })
    }

    /// The object's bytes; the error names the store and key.
    pub fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        self.backend
            .get(key)
            .map_err(|e| format!("{}/{key}: {e}", self.store))
    }
}

/// Reads and verifies a store for `coverage`: records, chains, digests and
/// signatures are checked; payloads are not read (their presence is
/// checked against the listing). `trusted_signers` as in
/// [`VerifyOptions::trusted_signers`].
pub fn read_store_records(
    store: &str,
    s3: &S3Options,
    trusted_signers: Option<Vec<(String, String)>>,
) -> Result<Input, InputError> {
    let backend = open_backend(store, s3)?;
    let tap = Tap {
        backend: &backend,
        store,
        segments: RefCell::new(Vec::new()),
        digests: RefCell::new(Vec::new()),
        progress: Progress::new(),
    };
    let opts = VerifyOptions {
        trusted_signers,
        skip_payloads: true,
    };
    let verification = verify_store(&tap, &opts).map_err(|source| InputError::Read {
        store: store.to_string(),
        source,
    })?;
    tap.progress.finish();
    let objects_listed = tap.progress.total();
    Ok(Input {
        store: store.to_string(),
        segments: tap.segments.into_inner(),
        digests: tap.digests.into_inner(),
        verification,
        payloads_read: false,
        objects_listed,
    })
}

/// A progress bar on stderr, shown only on a terminal and only once the
/// work has taken more than a second ("quiet otherwise").
struct Progress {
    bar: indicatif::ProgressBar,
    started: Instant,
    shown: std::cell::Cell<bool>,
    terminal: bool,
    total: std::cell::Cell<u64>,
}

impl Progress {
    fn new() -> Self {
        let bar = indicatif::ProgressBar::hidden();
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} reading records and digests {pos}/{len} [{elapsed}, {eta} left]",
        ) {
            bar.set_style(style);
        }
        Self {
            bar,
            started: Instant::now(),
            shown: std::cell::Cell::new(false),
            terminal: std::io::stderr().is_terminal(),
            total: std::cell::Cell::new(0),
        }
    }

    fn set_total(&self, n: u64) {
        self.total.set(self.total.get() + n);
        self.bar.set_length(self.total.get());
    }

    fn total(&self) -> u64 {
        self.total.get()
    }

    fn tick(&self) {
        self.bar.inc(1);
        if self.terminal && !self.shown.get() && self.started.elapsed() > Duration::from_secs(1) {
            self.shown.set(true);
            self.bar
                .set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }

    fn finish(&self) {
        if self.shown.get() {
            self.bar.finish_and_clear();
        }
    }
}
