//! `custody-agent snapshot`: freezes what this host holds into one signed,
//! self-verifying evidence bundle (FORMAT.md §14), in RFC 3227 order of
//! volatility:
//!
//! 1. the time and the clock's state, then the volatile state
//!    ([`volatile`]: connections, routes, processes, logged-in users,
//!    kernel state, host identity), read into memory at once;
//! 2. every in-scope log file and its rotated siblings ([`files`]), opened
//!    read-only and measured before any is copied, then copied byte for
//!    byte up to that measured length, hashed on the way;
//! 3. the shipped segments and digests that cover those files ([`shipped`]);
//! 4. optionally disk images (`--image`), streamed and hashed.
//!
//! The tar is written as it goes (bounded memory whatever the sizes), then
//! sealed: manifests, custody manifest, signature by the host key, and the
//! `collected` custody event.

pub mod append;
pub mod eventlog;
pub mod files;
pub mod shipped;
pub mod volatile;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, IsTerminal, Read, Seek, SeekFrom, Write};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use custody_evidence::bundle::bagit::BagInfo;
use custody_evidence::bundle::custody_manifest::{
    Change, CustodyManifest, FileFacts, HostIdentity, Item, ItemKind, ToolIdentity,
    CUSTODY_MANIFEST_FORMAT_V1,
};
use custody_evidence::bundle::writer::{BagWriter, Seal};
use custody_evidence::bundle::{
    bag_path_for, bundle_store_key, check_incident_id, evidence_id, unique_path, BUNDLE_FORMAT_V1,
    SHIPPED_JSON,
};
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::Sha256;
use custody_store::{FsStore, ObjectStore, PutOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use time::OffsetDateTime;

use crate::config::{Config, StoreTarget};
use crate::platform::Stat;

/// A path's bytes for naming its copy in the bag: the raw bytes on Unix;
/// on Windows (UTF-16 names) the UTF-8 of the name, unpaired surrogates
/// replaced (the original path is also recorded as text in the manifest).
pub(crate) fn path_bytes(p: &std::ffi::OsStr) -> Vec<u8> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        p.as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    {
        p.to_string_lossy().into_owned().into_bytes()
    }
}

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub incident: String,
    pub operator: String,
    pub reason: Option<String>,
    pub authority: Option<String>,
    /// Write the bundle here instead of to the store.
    pub out: Option<PathBuf>,
    /// Disk devices or VM images to stream into the bundle.
    pub images: Vec<PathBuf>,
    /// The command line, for the custody manifest.
    pub command_line: Vec<String>,
    /// Told when the bundle is sealed and its upload begins (remote
    /// snapshots report it to the collector).
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<Stage>>,
}

/// A step of a snapshot worth telling whoever asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The bundle is sealed; its upload to the store begins.
    Uploading { evidence_id: String, key: String },
}

/// What was made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub evidence_id: String,
    /// The file written (with `--out`), or the store key.
    pub location: String,
    pub bytes: u64,
    pub tagmanifest_sha256: Sha256,
    pub files: usize,
}

/// Text the operator typed goes into one-line tag fields: refuse control
/// characters with the flag's name instead of altering it.
fn check_text(flag: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        bail!("{flag} must not be empty");
    }
    if value.chars().any(char::is_control) {
        bail!("{flag} must be one line without control characters (it is written to bag-info.txt)");
    }
    if value.trim() != value {
        bail!("{flag} must not begin or end with spaces");
    }
    Ok(())
}

impl Request {
    pub fn check(&self) -> anyhow::Result<()> {
        check_incident_id(&self.incident).context("--incident")?;
        check_text("--operator", &self.operator)?;
        if let Some(r) = &self.reason {
            check_text("--reason", r)?;
        }
        if let Some(a) = &self.authority {
            check_text("--authority", a)?;
        }
        Ok(())
    }
}

/// The file's facts for the custody manifest. On Windows `device` and
/// `inode` are the volume serial number and file index, `ctime` the
/// ChangeTime, and `uid`, `gid` and `mode` are 0 (access is by ACL).
fn facts(meta: &Stat, size_at_end: u64) -> FileFacts {
    let t = |secs: i64, nsec: i64| {
        OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(secs) * 1_000_000_000 + i128::from(nsec / 1000 * 1000),
        )
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    FileFacts {
        size_at_start: meta.len,
        size_at_end,
        mtime: t(meta.mtime.0, meta.mtime.1),
        ctime: t(meta.ctime.0, meta.ctime.1),
        device: meta.key.device,
        inode: meta.key.inode,
        uid: meta.uid,
        gid: meta.gid,
        mode: meta.mode,
    }
}

/// SHA-256 of the running executable: the "build hash" an examiner can
/// compare with a release.
fn own_build_hash() -> Option<Sha256> {
    let mut f = File::open(std::env::current_exe().ok()?).ok()?;
    let mut h = <sha2::Sha256 as sha2::Digest>::new();
    std::io::copy(&mut f, &mut h).ok()?;
    Some(Sha256::from_hasher(h))
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// The store the configuration names, opened without creating anything.
async fn open_store(target: &StoreTarget) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match target {
        StoreTarget::Filesystem(dir) => Arc::new(
            FsStore::open_existing(dir)
                .with_context(|| format!("opening the filesystem store {}", dir.display()))?,
        ),
        StoreTarget::S3(s) => Arc::new(
            custody_store::S3Store::open(s.clone())
                .await
                .context("opening the S3 store")?,
        ),
        StoreTarget::Collector(settings) => Arc::new(
            custody_store::CollectorStore::open(settings).context("opening the collector store")?,
        ),
    })
}

/// Size of an image: regular files by `fstat`, block devices by seeking to the end.
fn image_size(file: &mut File, meta: &Stat) -> std::io::Result<u64> {
    if meta.is_file {
        return Ok(meta.len);
    }
    let n = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(n)
}

/// Why access times may have changed.
#[cfg(unix)]
const ATIME_REASON: &str =
    "O_NOATIME was refused: the snapshot ran as neither the files' owner nor with CAP_FOWNER";
#[cfg(not(unix))]
const ATIME_REASON: &str =
    "Windows has no way to open a file without updating its access time (NTFS usually does not update it)";

/// Takes the snapshot.
pub async fn snapshot(config: &Config, req: &Request) -> anyhow::Result<Outcome> {
    req.check()?;
    // 1. Time first: everything after is relative to it.
    let started = now_utc_micros();
    let clock = crate::clock::clock_state();
    let clock_offset_us = crate::clock::clock_offset_us();
    let (volatile, identity) = volatile::capture(Path::new("/"));

    // 2. Open and measure every in-scope file before copying any; a second
    //    pass picks up names that appeared through a rotation meanwhile.
    let mut known = BTreeSet::new();
    let (mut logs, mut unopened) = files::open_all(&config.sources, &mut known);
    let (more, more_failed) = files::open_all(&config.sources, &mut known);
    logs.extend(more);
    unopened.extend(more_failed);
    let mut images = Vec::new();
    for path in &req.images {
        let (mut file, atime) = files::open_evidence(path).with_context(|| {
            format!(
                "--image {}: cannot open it read-only; check the path and permissions",
                path.display()
            )
        })?;
        let meta = crate::platform::stat_file(&file)
            .with_context(|| format!("--image {}: fstat", path.display()))?;
        let size = image_size(&mut file, &meta)
            .with_context(|| format!("--image {}: cannot determine its size", path.display()))?;
        images.push((path.clone(), file, meta, size, atime));
    }

    let key = crate::key::load_or_create_for_host(&config.state_dir, &config.host_id)?;
    let evidence = evidence_id(&req.incident, config.host_id.as_str(), started);

    // Bag paths for the copies, unique and in bundle order.
    let mut taken: BTreeSet<String> = volatile.iter().map(|c| c.bag_path.clone()).collect();
    taken.insert(SHIPPED_JSON.to_string());
    let mut log_paths = Vec::new();
    for l in &logs {
        let p = unique_path(
            bag_path_for("data/logs/", &path_bytes(l.path.as_os_str())),
            &|p| taken.contains(p),
        );
        taken.insert(p.clone());
        log_paths.push(p);
    }
    let by_identity: BTreeMap<(u64, u64), String> = logs
        .iter()
        .zip(&log_paths)
        .map(|(l, p)| ((l.meta.key.device, l.meta.key.inode), p.clone()))
        .collect();

    // 3. The shipped side (the store may be slow or down: never fatal).
    let store = open_store(&config.store).await;
    let shipped = match &store {
        Ok(s) => shipped::list(s.as_ref(), &config.host_id, &by_identity, now_utc_micros()).await,
        Err(e) => custody_evidence::bundle::shipped::ShippedList {
            format: custody_evidence::bundle::shipped::SHIPPED_FORMAT_V1.into(),
            host_id: config.host_id.clone(),
            store: crate::run::describe_target(&config.store),
            listed_at: now_utc_micros(),
            segments: Vec::new(),
            digests: Vec::new(),
            note: Some(format!(
                "the store could not be opened ({e:#}); nothing listed"
            )),
        },
    };

    // Where the tar goes.
    let (out_path, to_store) = match &req.out {
        Some(p) => (p.clone(), false),
        None => {
            let dir = config.state_dir.join("bundles");
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.join(format!("{evidence}.tar")), true)
        }
    };
    let mut out_options = OpenOptions::new();
    out_options.write(true).create_new(true);
    #[cfg(unix)]
    out_options.mode(0o600);
    let out_file = out_options.open(&out_path).with_context(|| {
        format!(
            "cannot create {} (it must not exist yet: bundles are never overwritten)",
            out_path.display()
        )
    })?;

    let total: u64 = volatile.iter().map(|c| c.bytes.len() as u64).sum::<u64>()
        + logs.iter().map(|l| l.meta.len).sum::<u64>()
        + images.iter().map(|i| i.3).sum::<u64>();
    let bar = progress_bar(total);

    let mut bag = BagWriter::new(
        BufWriter::with_capacity(1 << 20, out_file),
        &evidence,
        started,
    )?;
    let mut items = Vec::new();
    let mut changes = vec![Change {
        item: None,
        what: "the snapshot's own process appears in data/volatile (its /proc entries and open files)".into(),
        reason: "reading /proc from inside the system being examined cannot avoid observing itself (RFC 3227 §2.2)".into(),
    }];

    bar.set_message("volatile state");
    for c in &volatile {
        let copied = bag.add_bytes(&c.bag_path, &c.bytes)?;
        bar.inc(copied.len);
        items.push(Item {
            path: c.bag_path.clone(),
            kind: ItemKind::Volatile,
            volatility: c.volatility,
            original_path: c.original.clone(),
            len: copied.len,
            sha256: copied.sha256,
            file: None,
            note: c.note.clone(),
        });
    }

    let shipped_bytes = shipped.encode();
    let copied = bag.add_bytes(SHIPPED_JSON, &shipped_bytes)?;
    items.push(Item {
        path: SHIPPED_JSON.into(),
        kind: ItemKind::Shipped,
        volatility: 5,
        original_path: None,
        len: copied.len,
        sha256: copied.sha256,
        file: None,
        note: Some(match &shipped.note {
            Some(n) => n.clone(),
            None => format!(
                "{} shipped segment(s) and {} digest(s) covering the copied files, from {}",
                shipped.segments.len(),
                shipped.digests.len(),
                shipped.store
            ),
        }),
    });

    let mut atime_files = Vec::new();
    for (l, bag_path) in logs.iter().zip(&log_paths) {
        bar.set_message(l.path.display().to_string());
        let len = l.meta.len;
        let copied = bag.add_stream(bag_path, len, &l.file, &mut |n| bar.inc(n))?;
        let end = l.file.metadata().map(|m| m.len()).unwrap_or(len);
        let mut notes = Vec::new();
        if end > len {
            notes.push(format!(
                "grew from {len} to {end} bytes during the snapshot; the {len} bytes present at the start were copied"
            ));
        }
        if copied.short_by > 0 {
            notes.push(format!(
                "shrank during the copy (truncated?): the last {} of {len} bytes could not be read and are zeros in the bundle",
                copied.short_by
            ));
        }
        if l.atime_may_change {
            atime_files.push(bag_path.clone());
        }
        items.push(Item {
            path: bag_path.clone(),
            kind: ItemKind::Log,
            volatility: 4,
            original_path: Some(l.path.to_string_lossy().into_owned()),
            len: copied.len,
            sha256: copied.sha256,
            file: Some(facts(&l.meta, end)),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        });
    }
    if !atime_files.is_empty() {
        changes.push(Change {
            item: None,
            what: format!(
                "the access time of {} file(s) may have been updated ({})",
                atime_files.len(),
                atime_files.join(", ")
            ),
            reason: ATIME_REASON.into(),
        });
    }
    for u in &unopened {
        changes.push(Change {
            item: None,
            what: format!("{} was not copied: {}", u.path.display(), u.why),
            reason: "the file matched a source but could not be opened read-only".into(),
        });
    }

    for (path, file, meta, size, atime) in &images {
        bar.set_message(format!("image {}", path.display()));
        let base = path
            .file_name()
            .map(path_bytes)
            .unwrap_or_else(|| b"image".to_vec());
        let bag_path = unique_path(bag_path_for("data/image/", &base), &|p| bag.contains(p));
        let copied = bag.add_stream(&bag_path, *size, file, &mut |n| bar.inc(n))?;
        if *atime {
            changes.push(Change {
                item: Some(bag_path.clone()),
                what: "the access time may have been updated".into(),
                reason: "O_NOATIME was refused for this image".into(),
            });
        }
        items.push(Item {
            path: bag_path,
            kind: ItemKind::Image,
            volatility: 4,
            original_path: Some(path.to_string_lossy().into_owned()),
            len: copied.len,
            sha256: copied.sha256,
            file: Some(facts(meta, *size)),
            note: (copied.short_by > 0).then(|| {
                format!(
                    "the last {} bytes could not be read and are zeros in the bundle",
                    copied.short_by
                )
            }),
        });
    }
    // Windows Event Log channels (FORMAT.md §17.5).
    eventlog::add_channels(config, &mut bag, &mut items, &mut changes, &mut |_| {})?;
    bar.set_message("sealing");
    let finished = now_utc_micros();
    let manifest = CustodyManifest {
        format: CUSTODY_MANIFEST_FORMAT_V1.into(),
        evidence_id: evidence.clone(),
        incident_id: req.incident.clone(),
        authority: req.authority.clone(),
        reason: req.reason.clone(),
        collected_by: req.operator.clone(),
        host: HostIdentity {
            host_id: config.host_id.clone(),
            hostname: identity.hostname.clone(),
            machine_id: identity.machine_id.clone(),
            boot_id: identity.boot_id.clone(),
        },
        tool: ToolIdentity {
            name: "custody-agent".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            build_sha256: own_build_hash(),
        },
        command_line: req.command_line.clone(),
        started,
        finished,
        clock,
        clock_offset_us,
        items,
        changes,
    };
    let mut info = BagInfo::default();
    info.push(
        "Bag-Software-Agent",
        format!("custody-agent {}", env!("CARGO_PKG_VERSION")),
    );
    info.push("Bagging-Date", format_utc(finished)[..10].to_string());
    info.push("External-Identifier", evidence.clone());
    info.push("Contact-Name", req.operator.clone());
    if let Some(r) = &req.reason {
        info.push("External-Description", r.clone());
    }
    info.push("Custody-Bundle-Format", BUNDLE_FORMAT_V1);
    info.push("Custody-Evidence-Id", evidence.clone());
    info.push("Custody-Incident", req.incident.clone());
    info.push("Custody-Host", config.host_id.to_string());
    info.push("Custody-Operator", req.operator.clone());
    info.push("Custody-Started", format_utc(started));
    info.push("Custody-Finished", format_utc(finished));
    let signers = format!(
        "{}\n",
        crate::key::allowed_signers_entry(&key, &config.host_id)
    );
    let purpose = req
        .reason
        .clone()
        .unwrap_or_else(|| format!("incident {}", req.incident));
    let files = manifest.items.len();
    let (writer, tag_sha) = bag.finish(Seal {
        bag_info: info,
        manifest: &manifest,
        allowed_signers: signers,
        key: &key,
        actor: &req.operator,
        place: config.host_id.as_str(),
        purpose: &purpose,
        time: finished,
    })?;
    let file = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", out_path.display()))?;
    file.sync_all()
        .with_context(|| format!("fsync {}", out_path.display()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    bar.finish_and_clear();

    if !to_store {
        return Ok(Outcome {
            evidence_id: evidence,
            location: out_path.display().to_string(),
            bytes,
            tagmanifest_sha256: tag_sha,
            files,
        });
    }
    let store = store.with_context(|| {
        format!(
            "the bundle is complete at {} but the store cannot be opened; copy it off the host by hand or retry",
            out_path.display()
        )
    })?;
    let key_name = bundle_store_key(config.host_id.as_str(), &req.incident, &evidence);
    if let Some(tx) = &req.progress {
        let _ = tx.send(Stage::Uploading {
            evidence_id: evidence.clone(),
            key: key_name.clone(),
        });
    }
    upload(store.as_ref(), &key_name, &out_path, config).await?;
    // The store has it durably; the local copy is no longer needed.
    let _ = fs::remove_file(&out_path);
    let mut location = format!("{} in {}", key_name, store.describe());
    if matches!(config.store, StoreTarget::S3(_)) {
        location.push_str(&hold_shipped(store.as_ref(), &key_name, &shipped).await);
    }
    Ok(Outcome {
        evidence_id: evidence,
        location,
        bytes,
        tagmanifest_sha256: tag_sha,
        files,
    })
}

/// Straight to S3 (no collector to do it): places a legal hold on the
/// bundle and every object its shipped list references (FORMAT.md §15.3).
/// Needs `s3:PutObjectLegalHold`, which agents usually lack, so a refusal
/// is reported, never fatal: the bundle is stored either way. Returns the
/// sentence to add to the outcome.
async fn hold_shipped(
    store: &dyn ObjectStore,
    bundle_key: &str,
    shipped: &custody_evidence::bundle::shipped::ShippedList,
) -> String {
    let mut keys = vec![bundle_key.to_string()];
    for s in &shipped.segments {
        keys.push(s.record_key.clone());
        keys.push(s.payload_key.clone());
    }
    for d in &shipped.digests {
        keys.push(d.key.clone());
        if d.sig_sha256.is_some() {
            keys.push(d.sig_key.clone());
        }
    }
    keys.sort();
    keys.dedup();
    let mut failed = Vec::new();
    for k in &keys {
        if let Err(e) = store.set_legal_hold(k, true).await {
            failed.push(format!("{k}: {e}"));
        }
    }
    if failed.is_empty() {
        format!(
            "; legal hold placed on it and the {} object(s) it references",
            keys.len() - 1
        )
    } else {
        tracing::warn!("legal holds not placed: {}", failed.join("; "));
        format!(
            "; WARNING: {} of {} legal hold(s) could not be placed (first: {}); place them with `custody-agent hold` \
             using credentials allowed s3:PutObjectLegalHold",
            failed.len(),
            keys.len(),
            failed[0]
        )
    }
}

/// Largest bundle uploaded through the store's in-memory `put` (2 GiB);
/// larger ones stay in the state directory with instructions.
const MAX_STORE_UPLOAD: u64 = 2 << 30;

async fn upload(
    store: &dyn ObjectStore,
    key_name: &str,
    path: &Path,
    config: &Config,
) -> anyhow::Result<()> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len > MAX_STORE_UPLOAD {
        bail!(
            "the bundle {} is {len} bytes, more than the {MAX_STORE_UPLOAD} this version uploads to the store in one \
             piece; it is complete and kept there: copy it off the host (or run again with --out on removable media)",
            path.display()
        );
    }
    let mut bytes = Vec::with_capacity(len as usize);
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(|| format!("reading back {}", path.display()))?;
    let retain_until = config.retention.retain_until(now_utc_micros());
    store
        .put(key_name, &bytes, PutOptions { retain_until })
        .await
        .with_context(|| {
            format!(
                "uploading the bundle to {} as {key_name}; it is complete and kept at {}",
                store.describe(),
                path.display()
            )
        })?;
    let _ = std::io::stderr().flush();
    Ok(())
}
