//! `custody-verify`: checks a custody store offline and prints what it found.
//!
//! ```text
//! custody-verify store DIR [--json] [--allowed-signers FILE]
//! custody-verify bundle FILE.tar [--json] [--trusted-key KEY|--allowed-signers FILE] [--store DIR|s3://BUCKET/PREFIX]
//! custody-verify evtx FILE.evtx [--json]
//! ```
//!
//! Exit codes: 0 every check held (warnings and info may be printed),
//! 1 at least one Error finding (for `evtx`: a chunk checksum mismatch),
//! 2 the check could not run (bad arguments, unreadable store or
//! allowed_signers file, an .evtx that does not read whole).
//!
//! The filesystem store keeps each object at `DIR/<key>` as a plain file,
//! and its own bookkeeping in dot-directories at the root (`.retention/`,
//! `.holds/`), which are not evidence and are not read. Only `DIR/v1` is
//! walked, without following symlinks: a symlink where an object should be
//! is itself a finding, since it could point anywhere.

#[path = "custody-verify/evtx.rs"]
mod evtx;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use custody_evidence::bundle::verify::{verify_bundle, BundleVerifyOptions};
use custody_evidence::bundle::BUNDLE_NAMESPACE;
use custody_evidence::digest::DIGEST_NAMESPACE;
use custody_evidence::layout;
use custody_evidence::sign::{normalize_public_key, parse_allowed_signers};
use custody_evidence::verify::{
    verify_store, Finding, FindingKind, ObjectSource, Report, Severity, SourceError, VerifyOptions,
};

#[derive(Parser, Debug)]
#[command(
    name = "custody-verify",
    version,
    about = "Verify a custody evidence store offline"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify every host, stream, segment and digest in a filesystem store.
    Store {
        /// The store directory (the agent's filesystem store path).
        dir: PathBuf,
        /// Print the report as JSON instead of one line per finding.
        #[arg(long)]
        json: bool,
        /// OpenSSH allowed_signers file: `host-id [namespaces="custody-digest"] ssh-ed25519 AAAA…`.
        /// Without it, signatures are checked against keys the hosts published in the store.
        #[arg(long, value_name = "FILE")]
        allowed_signers: Option<PathBuf>,
    },
    /// Verify an evidence bundle (a tar made by `custody-agent snapshot`) offline.
    Bundle {
        /// The bundle tar file (`-` for standard input).
        file: PathBuf,
        /// Print the report as JSON instead of one line per finding.
        #[arg(long)]
        json: bool,
        /// A trusted public key: an OpenSSH public key line, or a file holding one (host_key.pub). Repeatable.
        #[arg(long, value_name = "KEY")]
        trusted_key: Vec<String>,
        /// OpenSSH allowed_signers file of trusted keys: `host-id [namespaces="custody-bundle"] ssh-ed25519 AAAA…`.
        #[arg(long, value_name = "FILE", conflicts_with = "trusted_key")]
        allowed_signers: Option<PathBuf>,
        /// A filesystem store (DIR) or an S3 store (s3://BUCKET/PREFIX): check that the segments and digests
        /// the bundle lists as shipped are there, unchanged.
        #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
        store: Option<PathBuf>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// List the logon (4624, 4625) and log-cleared (1102, 104) events of a Windows .evtx file.
    Evtx {
        /// The .evtx file (as EvtExportLog or wevtutil epl wrote it, or from a bundle).
        file: PathBuf,
        /// Print the events as JSON instead of one line each.
        #[arg(long)]
        json: bool,
    },
}

/// How to reach an `s3://` store: the same options as the agent's (docs/s3.md).
#[derive(clap::Args, Debug, Default)]
struct S3Args {
    /// S3 store: endpoint URL of an S3-compatible server [default: AWS].
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 store: region [default: AWS_REGION or the AWS profile, else us-east-1].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// S3 store: path-style addressing [default: true with --s3-endpoint].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    s3_path_style: Option<bool>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("custody-verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Returns whether everything verified.
fn run(args: Args) -> Result<bool> {
    match args.command {
        Command::Store {
            dir,
            json,
            allowed_signers,
        } => run_store(dir, json, allowed_signers),
        Command::Bundle {
            file,
            json,
            trusted_key,
            allowed_signers,
            store,
            s3,
        } => run_bundle(file, json, trusted_key, allowed_signers, store, s3),
        Command::Evtx { file, json } => evtx::run_evtx(&file, json),
    }
}

/// `custody-verify bundle`: reads the tar once, as a stream (never
/// extracted), and prints the report.
fn run_bundle(
    file: PathBuf,
    json: bool,
    trusted_keys: Vec<String>,
    allowed_signers: Option<PathBuf>,
    store: Option<PathBuf>,
    s3: S3Args,
) -> Result<bool> {
    let trusted_signers = if let Some(path) = &allowed_signers {
        Some(read_signers_for(path, BUNDLE_NAMESPACE)?)
    } else if !trusted_keys.is_empty() {
        Some(
            trusted_keys
                .iter()
                .map(|k| read_trusted_key(k))
                .collect::<Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .map(|k| ("*".to_string(), k))
                .collect(),
        )
    } else {
        None
    };
    let store_text = store.as_ref().map(|p| p.to_string_lossy().into_owned());
    let given_s3 = s3.s3_endpoint.is_some() || s3.s3_region.is_some() || s3.s3_path_style.is_some();
    let source: Option<Box<dyn ObjectSource>> = match &store_text {
        Some(url) if url.starts_with("s3://") => Some(open_s3(url, s3)?),
        Some(other) if other.contains("://") => {
            bail!("--store {other}: give a store directory or s3://BUCKET/PREFIX")
        }
        Some(_) if given_s3 => {
            bail!("--s3-endpoint, --s3-region and --s3-path-style apply only to --store s3://…")
        }
        Some(_) => store
            .as_deref()
            .map(FsSource::open)
            .transpose()?
            .map(|s| Box::new(s) as Box<dyn ObjectSource>),
        None if given_s3 => {
            bail!("--s3-endpoint, --s3-region and --s3-path-style need --store s3://BUCKET/PREFIX")
        }
        None => None,
    };
    let opts = BundleVerifyOptions {
        trusted_signers,
        store: source.as_deref(),
        inspector: Some(&evtx::EvtxInspector),
    };
    let name = file.display().to_string();
    let report = if name == "-" {
        verify_bundle(std::io::stdin().lock(), &opts)
    } else {
        let meta = fs::symlink_metadata(&file)
            .with_context(|| format!("bundle {name}: cannot access it; pass the .tar file custody-agent snapshot wrote"))?;
        if !meta.is_file() {
            bail!("bundle {name} is not a regular file (a link or directory); pass the bundle tar file itself");
        }
        let f = fs::File::open(&file)
            .with_context(|| format!("bundle {name}: cannot open it; check permissions"))?;
        verify_bundle(std::io::BufReader::with_capacity(1 << 20, f), &opts)
    }
    .with_context(|| format!("could not finish reading {name}; nothing was verified"))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report as JSON")?
        );
    } else {
        for f in &report.findings {
            println!("{f}");
        }
        let signer = match (&report.signer, report.signer_trusted) {
            (Some(fp), true) => format!("signed by {fp} (trusted)"),
            (Some(fp), false) => {
                format!("signed by {fp} (key from the bundle itself; not independently trusted)")
            }
            (None, _) => "signature NOT verified".to_string(),
        };
        println!(
            "{name}: evidence {} (incident {}, host {}); {} payload file(s), {} bytes; {signer}; {} custody event(s); \
             {} shipped range(s) and {} store object(s) cross-checked; {} error(s), {} warning(s), {} info: {}",
            report.evidence_id.as_deref().unwrap_or("?"),
            report.incident_id.as_deref().unwrap_or("?"),
            report.host_id.as_deref().unwrap_or("?"),
            report.payload_files,
            report.payload_bytes,
            report.custody_events,
            report.shipped_ranges_checked,
            report.store_objects_checked,
            report.count(Severity::Error),
            report.count(Severity::Warning),
            report.count(Severity::Info),
            if report.is_clean() { "OK" } else { "FAILED" }
        );
    }
    Ok(report.is_clean())
}

/// A `--trusted-key` value: a public key line, or a file of them.
fn read_trusted_key(value: &str) -> Result<Vec<String>> {
    let text = if value.trim_start().starts_with("ssh-") {
        value.to_string()
    } else {
        fs::read_to_string(value).with_context(|| {
            format!("--trusted-key {value}: neither a public key line (ssh-ed25519 AAAA…) nor a readable file")
        })?
    };
    let keys: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            normalize_public_key(l)
                .with_context(|| format!("--trusted-key {value}: not an OpenSSH public key line"))
        })
        .collect::<Result<_>>()?;
    if keys.is_empty() {
        bail!("--trusted-key {value}: no public key in it");
    }
    Ok(keys)
}

fn run_store(dir: PathBuf, json: bool, allowed_signers: Option<PathBuf>) -> Result<bool> {
    let opts = VerifyOptions {
        trusted_signers: allowed_signers
            .as_deref()
            .map(read_allowed_signers)
            .transpose()?,
        ..VerifyOptions::default()
    };
    let source = FsSource::open(&dir)?;
    let mut report = verify_store(&source, &opts).with_context(|| {
        format!(
            "could not finish reading store {}; nothing was verified",
            dir.display()
        )
    })?;
    // Filesystem anomalies first: they explain findings that follow.
    let mut findings = source.anomalies;
    findings.append(&mut report.findings);
    report.findings = findings;

    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report as JSON")?
        );
    } else {
        print_human(&report, &dir);
    }
    Ok(report.is_clean())
}

fn print_human(report: &Report, dir: &Path) {
    for f in &report.findings {
        println!("{f}");
    }
    let (e, w, i) = (
        report.count(Severity::Error),
        report.count(Severity::Warning),
        report.count(Severity::Info),
    );
    println!(
        "{}: {} host(s), {} stream(s), {} segment(s), {} digest(s), {} raw bytes verified; {e} error(s), {w} warning(s), {i} info: {}",
        dir.display(),
        report.hosts,
        report.streams,
        report.segments,
        report.digests,
        report.raw_bytes,
        if report.is_clean() { "OK" } else { "FAILED" }
    );
}

/// `(principal, key line)` for every principal whose entry may vouch for
/// digest signatures.
fn read_allowed_signers(path: &Path) -> Result<Vec<(String, String)>> {
    read_signers_for(path, DIGEST_NAMESPACE)
}

/// `(principal, key line)` for every principal whose entry may vouch for
/// signatures in `namespace`.
fn read_signers_for(path: &Path, namespace: &str) -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("--allowed-signers {}: cannot read the file", path.display()))?;
    let entries = parse_allowed_signers(&text)
        .with_context(|| format!("--allowed-signers {}", path.display()))?;
    let pairs: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e.allows_namespace(namespace))
        .flat_map(|e| {
            e.principals
                .iter()
                .map(|p| (p.clone(), e.public_key_line.clone()))
        })
        .collect();
    if pairs.is_empty() {
        bail!(
            "--allowed-signers {}: no entry allows namespace {namespace:?}; add lines like \
             `web01 namespaces=\"{namespace}\" ssh-ed25519 AAAA…` (principal = host id)",
            path.display()
        );
    }
    Ok(pairs)
}

/// The filesystem store marks its root with this file (store/src/fs.rs).
const STORE_MARKER: &str = ".custody-store.json";
/// The filesystem store's temporary files, never objects (store/src/fs.rs).
const TMP_PREFIX: &str = ".tmp-";

/// A filesystem store directory, listed once up front.
struct FsSource {
    root: PathBuf,
    /// Regular files under `v1/`, as object names, sorted.
    keys: Vec<String>,
    /// What the walk found that is not a regular file or not a valid name.
    anomalies: Vec<Finding>,
}

impl FsSource {
    fn open(root: &Path) -> Result<FsSource> {
        let meta = fs::metadata(root).with_context(|| {
            format!("store directory {}: cannot access it; pass the directory the agent writes to (its store path)", root.display())
        })?;
        if !meta.is_dir() {
            bail!(
                "store {} is not a directory; pass the store directory itself",
                root.display()
            );
        }
        let v1 = root.join(layout::ROOT);
        let mut source = FsSource {
            root: root.to_path_buf(),
            keys: Vec::new(),
            anomalies: Vec::new(),
        };
        match fs::symlink_metadata(&v1) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{} is not a directory: this is not a custody store (or it was tampered with)",
                v1.display()
            ),
            // A store that exists but was never shipped to: nothing to check.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && root.join(STORE_MARKER).is_file() =>
            {
                return Ok(source)
            }
            Err(e) => bail!(
                "{}: {e}; {} is not a custody store (no {STORE_MARKER} and no {}/): check the path",
                v1.display(),
                root.display(),
                layout::ROOT
            ),
        }
        source.walk(&v1, layout::ROOT)?;
        source.keys.sort();
        Ok(source)
    }

    fn walk(&mut self, dir: &Path, prefix: &str) -> Result<()> {
        let entries = fs::read_dir(dir)
            .with_context(|| format!("cannot list {}; check permissions", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            let path = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                self.anomalies.push(
                    Finding::new(
                        Severity::Warning,
                        FindingKind::UnrecognizedObject,
                        "file name is not UTF-8; not part of the layout, not checked",
                    )
                    .object(&path.to_string_lossy()),
                );
                continue;
            };
            let key = format!("{prefix}/{name}");
            if name.starts_with(TMP_PREFIX) {
                self.anomalies.push(
                    Finding::new(
                        Severity::Info,
                        FindingKind::UnrecognizedObject,
                        "a store write in progress or interrupted (the store never lists it); not evidence, not checked",
                    )
                    .object(&key),
                );
                continue;
            }
            // symlink_metadata: never follow a link out of the store.
            let ft = fs::symlink_metadata(&path)
                .with_context(|| format!("cannot stat {}", path.display()))?
                .file_type();
            if ft.is_dir() {
                self.walk(&path, &key)?;
            } else if ft.is_file() {
                self.keys.push(key);
            } else {
                let what = if ft.is_symlink() {
                    match fs::read_link(&path) {
                        Ok(t) => format!("symlink to {}", t.display()),
                        Err(_) => "symlink".to_string(),
                    }
                } else {
                    "special file".to_string()
                };
                self.anomalies.push(
                    Finding::new(
                        Severity::Error,
                        FindingKind::NotARegularFile,
                        "objects are plain files; a link or special file in a store was not written by the store and was not followed",
                    )
                    .object(&key)
                    .expected("regular file")
                    .found(what),
                );
            }
        }
        Ok(())
    }
}

impl ObjectSource for FsSource {
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        Ok(self
            .keys
            .iter()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        let path = self.root.join(key);
        let err = |why: String| SourceError::new(path.display().to_string(), why);
        // Re-check: the file may have been replaced by a link since the walk.
        let meta = fs::symlink_metadata(&path).map_err(|e| err(e.to_string()))?;
        if !meta.file_type().is_file() {
            return Err(err(
                "no longer a regular file (changed during verification)".into(),
            ));
        }
        fs::read(&path).map_err(|e| err(e.to_string()))
    }
}

/// An `s3://BUCKET/PREFIX` store, read through custody's S3 store (the
/// same client, endpoint and credential rules as the agent's).
#[cfg(feature = "s3")]
struct S3Source {
    store: custody_store::S3Store,
    runtime: tokio::runtime::Runtime,
    url: String,
}

#[cfg(feature = "s3")]
impl ObjectSource for S3Source {
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        use custody_store::ObjectStore;
        self.runtime
            .block_on(self.store.list(prefix))
            .map_err(|e| SourceError::new(format!("{}/{prefix}", self.url), e.to_string()))
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        use custody_store::ObjectStore;
        self.runtime
            .block_on(self.store.get(key))
            .map_err(|e| SourceError::new(format!("{}/{key}", self.url), e.to_string()))
    }
}

#[cfg(feature = "s3")]
fn open_s3(url: &str, args: S3Args) -> Result<Box<dyn ObjectSource>> {
    let (bucket, prefix) = custody_store::S3Settings::parse_url(url)
        .map_err(|why| anyhow::anyhow!("--store {url}: {why}"))?;
    let mut settings = custody_store::S3Settings::new(bucket, prefix);
    settings.path_style = args.s3_path_style.unwrap_or(args.s3_endpoint.is_some());
    settings.endpoint = args.s3_endpoint;
    settings.region = args.s3_region;
    // Reading only: an unprotected bucket is still checked (and the
    // protection is not this verifier's question).
    settings.require_object_lock = false;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime for S3")?;
    let store = runtime
        .block_on(custody_store::S3Store::open(settings))
        .with_context(|| format!("--store {url}: cannot open the bucket"))?;
    Ok(Box::new(S3Source {
        store,
        runtime,
        url: url.trim_end_matches('/').to_string(),
    }))
}

#[cfg(not(feature = "s3"))]
fn open_s3(url: &str, _args: S3Args) -> Result<Box<dyn ObjectSource>> {
    bail!("--store {url}: this custody-verify was built without S3 support (feature `s3`); copy the objects to a directory (aws s3 sync) and pass it")
}
