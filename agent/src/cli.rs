//! The command line: clap definitions (the "raw" arguments, ripgrep's
//! `lowargs`), their conversion to a checked [`Config`] (`hiargs`), and the
//! small commands that are not the pipeline: `check-config`, `status`,
//! `key show`, `prune` and `hold`.
//!
//! Only the conversion to checked values can fail for reasons of
//! configuration; its errors name the flag or key and say what would be
//! valid. Malformed flags (a number that is not a number, a `--source`
//! without `=`) are usage errors, reported by clap with exit code 2.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::sync::Arc;

use custody_store::{CollectorStore, FsStore, ObjectStore, S3Store};
use time::OffsetDateTime;

use crate::config::{Config, RawConfig, RawSource, SourceFraming, StartAt, StoreTarget};
use crate::placement;
use crate::status::{self, Liveness};

/// Exit code: the command did what was asked and found nothing wrong.
pub const EXIT_OK: u8 = 0;
/// Exit code: a failure, or a report of problems.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: usage error (clap's own), or `status` without a status file.
pub const EXIT_USAGE_OR_NO_STATUS: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "custody-agent",
    version,
    about = "Keeps this host's logs the way evidence must be kept: segments, hashes, chains, signs and ships them to a store."
)]
pub struct Cli {
    /// Log more (debug; twice for trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Format of the agent's own log on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until SIGTERM or Ctrl-C.
    Run(ConfigArgs),
    /// Check a configuration (and the globs, state and store directories it names) without running.
    CheckConfig(ConfigArgs),
    /// Print what the running (or last) agent reports about itself.
    Status(StatusArgs),
    /// Host key commands.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Delete store objects past their retain-until time that are not under legal hold.
    Prune(PruneArgs),
    /// Set or release a legal hold on every object under some prefixes.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Freeze this host's volatile state and in-scope logs into one signed evidence bundle (a BagIt tar).
    Snapshot(SnapshotArgs),
    /// Append a signed custody event (exported, verified, …) to a bundle's custody log.
    CustodyEvent(CustodyEventArgs),
    /// Windows: install, remove, start or stop the agent as a service (Service Control Manager).
    #[cfg(windows)]
    Service {
        #[command(subcommand)]
        command: crate::winservice::ServiceCommand,
    },
}

/// What happened to the evidence (`collected` is written by `snapshot` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventAction {
    Uploaded,
    Received,
    Verified,
    Exported,
    Released,
}

#[derive(Debug, Clone, Args)]
pub struct CustodyEventArgs {
    /// The bundle tar file (rewritten in place: only its last member, custody.jsonl).
    #[arg(value_name = "FILE.tar")]
    pub bundle: PathBuf,
    #[arg(long, value_enum)]
    pub action: EventAction,
    /// Who hands the evidence on or checks it.
    #[arg(long, value_name = "NAME")]
    pub operator: String,
    /// Why (one line).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// Where [default: the host id].
    #[arg(long, value_name = "TEXT")]
    pub place: Option<String>,
    /// Configuration file, to find the state directory (host key) and host id.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
}

/// `snapshot`: the same configuration as `run`, plus who, why and where to.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Incident id (letters, digits, '.', '_', '-'; up to 64), as reported to the national portal.
    #[arg(long, value_name = "ID")]
    pub incident: String,
    /// Who collects the evidence (recorded in the custody manifest and the first custody event).
    #[arg(long, value_name = "NAME")]
    pub operator: String,
    /// Why (one line).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Under whose authority (one line), e.g. the CISO's instruction.
    #[arg(long, value_name = "TEXT")]
    pub authority: Option<String>,
    /// Write the bundle to this new file instead of the store (v1/<host>/bundles/<incident>/<evidence-id>.tar).
    #[arg(long, value_name = "FILE.tar")]
    pub out: Option<PathBuf>,
    /// A disk device or VM image to stream into the bundle, hashed on the way. Repeatable.
    #[arg(long = "image", value_name = "PATH")]
    pub images: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the host public key as an `allowed_signers` line (creating the key if there is none yet).
    Show(KeyShowArgs),
}

#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Put every object under each PREFIX under legal hold: prune will not delete them.
    Set(HoldArgs),
    /// Lift the legal hold from every object under each PREFIX.
    Release(HoldArgs),
}

/// Every configuration key as a flag; flags override the file.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store: a directory (filesystem store), s3://BUCKET/PREFIX or https://COLLECTOR:PORT. Required, here or in the file.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX|https://HOST:PORT")]
    pub store: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
    #[command(flatten)]
    pub collector: CollectorFlags,
    /// State directory: checkpoints, spool, host key, status [default: /var/lib/custody-agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Host id in object names [default: the hostname, sanitised].
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
    /// Responsibility level A|B|C|D|E [default: C].
    #[arg(long, value_name = "LEVEL")]
    pub level: Option<String>,
    /// Months to keep every object [default: 6; at least 6 for levels A, B, C].
    #[arg(long, value_name = "N")]
    pub retention_months: Option<u32>,
    /// A source: CATEGORY[:FRAMING]=GLOB, CATEGORY os|web|app|logon, FRAMING lines|utmp. Repeatable.
    #[arg(long = "source", value_name = "CATEGORY[:FRAMING]=GLOB", value_parser = RawSource::parse_flag)]
    pub sources: Vec<RawSource>,
    /// Close a segment at this many raw bytes [default: 4194304].
    #[arg(long, value_name = "N")]
    pub segment_max_bytes: Option<u64>,
    /// Close a segment when its first byte is this old, in milliseconds [default: 750].
    #[arg(long, value_name = "N")]
    pub segment_max_age_ms: Option<u64>,
    /// Sign a digest this often [default: 60000].
    #[arg(long, value_name = "N")]
    pub digest_interval_ms: Option<u64>,
    /// Rescan every source this often, as a safety net for missed events [default: 5000].
    #[arg(long, value_name = "N")]
    pub poll_interval_ms: Option<u64>,
    /// Hold an unterminated last line this long before shipping it [default: 5000].
    #[arg(long, value_name = "N")]
    pub partial_line_wait_ms: Option<u64>,
    /// Pause reading when the spool holds this many bytes [default: 1073741824].
    #[arg(long, value_name = "N")]
    pub spool_max_bytes: Option<u64>,
    /// Where to start in files present at the first start: beginning|end [default: beginning].
    #[arg(long, value_name = "WHERE")]
    pub start_at: Option<String>,
    /// zstd compression level, 1..=19 [default: 3].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub zstd_level: Option<i32>,
    /// On shutdown, keep shipping this long before leaving the rest in the spool [default: 10000].
    #[arg(long, value_name = "N")]
    pub shutdown_grace_ms: Option<u64>,
}

/// The S3 store's settings as flags (docs/s3.md); only with an s3:// store.
#[derive(Debug, Clone, Default, Args)]
pub struct S3Flags {
    /// S3 store: endpoint URL of an S3-compatible server (MinIO, Ceph RGW) [default: AWS].
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// S3 store: region [default: from AWS_REGION or the AWS profile].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// S3 store: path-style addressing (true|false) [default: true when --s3-endpoint is given].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub s3_path_style: Option<bool>,
    /// S3 store: upload objects larger than this many bytes in parts [default: 16777216].
    #[arg(long, value_name = "N")]
    pub s3_multipart_threshold: Option<u64>,
}

/// The collector store's enrollment material as flags; only with an
/// https:// store.
#[derive(Debug, Clone, Default, Args)]
pub struct CollectorFlags {
    /// Collector store: directory written by `custody-collector enroll` (ca.pem, client.pem, client.key).
    #[arg(long, value_name = "DIR")]
    pub enrollment_dir: Option<PathBuf>,
    /// Collector store: the collector's CA certificate [default: ENROLLMENT_DIR/ca.pem].
    #[arg(long, value_name = "FILE")]
    pub collector_ca: Option<PathBuf>,
    /// Collector store: this host's client certificate [default: ENROLLMENT_DIR/client.pem].
    #[arg(long, value_name = "FILE")]
    pub collector_cert: Option<PathBuf>,
    /// Collector store: the client certificate's key [default: ENROLLMENT_DIR/client.key].
    #[arg(long, value_name = "FILE")]
    pub collector_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct StatusArgs {
    /// Configuration file, to find the state directory.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// State directory [default: from the config, else /var/lib/custody-agent].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Print status.json as written by the agent.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct KeyShowArgs {
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Principal for the allowed_signers line [default: from the config, else the hostname].
    #[arg(long, value_name = "ID")]
    pub host_id: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct PruneArgs {
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
    /// Report what would be deleted without deleting anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Default, Args)]
pub struct HoldArgs {
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    pub store: Option<String>,
    #[command(flatten)]
    pub s3: S3Flags,
    /// Object name prefixes, for example v1/web01/ or v1/web01/streams/web-access.log/.
    #[arg(value_name = "PREFIX", required = true)]
    pub prefixes: Vec<String>,
}

/// Writes command output to stdout. A closed pipe (`status | head`) ends
/// the output quietly instead of panicking like `print!` does.
fn emit(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

macro_rules! out {
    ($($arg:tt)*) => { emit(&format!($($arg)*)) };
}
macro_rules! outln {
    () => { emit("\n") };
    ($($arg:tt)*) => { emit(&format!("{}\n", format_args!($($arg)*))) };
}

// ---------------------------------------------------------------------------
// Raw → checked.

/// A path given on the command line is taken relative to the working
/// directory (unlike one in the file, which must be absolute).
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    // Drop `.` components so messages and status show clean paths; `..` is
    // kept, because resolving it lexically is wrong across symlinks.
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

fn absolute_store(cwd: &Path, store: &str) -> String {
    if store.contains("://") {
        store.to_string()
    } else {
        absolute(cwd, Path::new(store))
            .to_string_lossy()
            .into_owned()
    }
}

fn current_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir()
        .context("cannot determine the working directory to resolve relative paths in flags")
}

impl ConfigArgs {
    /// The flags as a raw configuration (relative paths resolved against
    /// `cwd`), each value marked as coming from its flag.
    pub fn to_raw(&self, cwd: &Path) -> RawConfig {
        RawConfig::default().merge_flags(self.flags_only(cwd))
    }

    fn flags_only(&self, cwd: &Path) -> RawConfig {
        let sources = self
            .sources
            .iter()
            .cloned()
            .map(|mut s| {
                if let Some(paths) = &mut s.paths {
                    for p in paths.iter_mut() {
                        *p = absolute(cwd, Path::new(p.as_str()))
                            .to_string_lossy()
                            .into_owned();
                    }
                }
                s
            })
            .collect();
        RawConfig {
            host_id: self.host_id.clone(),
            state_dir: self.state_dir.as_deref().map(|p| absolute(cwd, p)),
            store: self.store.as_deref().map(|s| absolute_store(cwd, s)),
            level: self.level.clone(),
            retention_months: self.retention_months,
            segment_max_bytes: self.segment_max_bytes,
            segment_max_age_ms: self.segment_max_age_ms,
            digest_interval_ms: self.digest_interval_ms,
            poll_interval_ms: self.poll_interval_ms,
            partial_line_wait_ms: self.partial_line_wait_ms,
            spool_max_bytes: self.spool_max_bytes,
            start_at: self.start_at.clone(),
            zstd_level: self.zstd_level,
            shutdown_grace_ms: self.shutdown_grace_ms,
            s3_endpoint: self.s3.s3_endpoint.clone(),
            s3_region: self.s3.s3_region.clone(),
            s3_path_style: self.s3.s3_path_style,
            s3_multipart_threshold: self.s3.s3_multipart_threshold,
            enrollment_dir: self
                .collector
                .enrollment_dir
                .as_deref()
                .map(|p| absolute(cwd, p)),
            collector_ca: self
                .collector
                .collector_ca
                .as_deref()
                .map(|p| absolute(cwd, p)),
            collector_cert: self
                .collector
                .collector_cert
                .as_deref()
                .map(|p| absolute(cwd, p)),
            collector_key: self
                .collector
                .collector_key
                .as_deref()
                .map(|p| absolute(cwd, p)),
            sources,
            file: None,
            from_flags: Default::default(),
        }
    }

    /// The file (if any) with the flags laid over it.
    pub fn raw(&self) -> anyhow::Result<RawConfig> {
        load_raw(self.config.as_deref(), self.to_raw(&current_dir()?))
    }

    /// The checked configuration the agent runs with.
    pub fn checked(&self) -> anyhow::Result<Config> {
        Ok(self.raw()?.check()?)
    }
}

/// Reads `file` if given and lays `flags` over it.
pub fn load_raw(file: Option<&Path>, flags: RawConfig) -> anyhow::Result<RawConfig> {
    let base = match file {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    Ok(base.merge_flags(flags))
}

/// The raw configuration for the commands that need only the state
/// directory, host id or store: a file if given, plus those few flags.
fn partial_raw(
    config: Option<&Path>,
    state_dir: Option<&Path>,
    store: Option<&str>,
    host_id: Option<&str>,
) -> anyhow::Result<RawConfig> {
    partial_raw_s3(config, state_dir, store, host_id, &S3Flags::default())
}

/// [`partial_raw`] with the S3 flags too (`prune`, `hold`).
fn partial_raw_s3(
    config: Option<&Path>,
    state_dir: Option<&Path>,
    store: Option<&str>,
    host_id: Option<&str>,
    s3: &S3Flags,
) -> anyhow::Result<RawConfig> {
    let cwd = current_dir()?;
    let flags = ConfigArgs {
        state_dir: state_dir.map(Path::to_path_buf),
        store: store.map(str::to_string),
        host_id: host_id.map(str::to_string),
        s3: s3.clone(),
        ..ConfigArgs::default()
    }
    .to_raw(&cwd);
    load_raw(config, flags)
}

// ---------------------------------------------------------------------------
// check-config

/// What `check-config` found outside the configuration itself.
#[derive(Debug, Default)]
pub struct EnvironmentReport {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub problems: Vec<String>,
}

/// Checks the places a configuration names: how many files each glob
/// matches now (none is only a warning: files may appear later), and
/// whether the state and store directories exist or can be created, and
/// are writable. Creates nothing except a probe file it removes again.
pub fn check_environment(config: &Config) -> EnvironmentReport {
    let mut report = EnvironmentReport::default();
    for source in &config.sources {
        if let Some(journal) = &source.journal {
            report.lines.push(format!(
                "source {} (category {}, journal {} through {})",
                source.name,
                source.category,
                journal.describe(),
                journal.journalctl.display()
            ));
            continue;
        }
        let framing = match source.framing {
            SourceFraming::Lines => "lines".to_string(),
            SourceFraming::Records { size } => format!("utmp ({size}-byte records)"),
        };
        report.lines.push(format!(
            "source {} (category {}, framing {framing})",
            source.name, source.category
        ));
        for pattern in &source.paths {
            match glob::glob(pattern) {
                Err(e) => report
                    .problems
                    .push(format!("source {}: glob {pattern:?}: {e}", source.name)),
                Ok(paths) => {
                    let mut files = 0usize;
                    let mut unreadable = Vec::new();
                    for entry in paths {
                        match entry {
                            Ok(path) if path.is_file() => {
                                files += 1;
                                if let Err(e) = std::fs::File::open(&path) {
                                    unreadable.push(format!("{} ({e})", path.display()));
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                unreadable.push(format!("{} ({})", e.path().display(), e.error()))
                            }
                        }
                    }
                    report
                        .lines
                        .push(format!("  {pattern}: {files} file(s) now"));
                    if files == 0 {
                        report.warnings.push(format!(
                            "source {}: {pattern:?} matches no file now (it will be picked up when it appears)",
                            source.name
                        ));
                    }
                    if !unreadable.is_empty() {
                        report.warnings.push(format!(
                            "source {}: not readable by this user: {}",
                            source.name,
                            unreadable.join(", ")
                        ));
                    }
                }
            }
        }
    }
    if let Err(e) = check_writable_dir(&config.state_dir) {
        report
            .problems
            .push(format!("state_dir {}: {e}", config.state_dir.display()));
    }
    if let Err(e) = placement::check_state_outside_store(&config.state_dir, &config.store) {
        report.problems.push(e);
    }
    match &config.store {
        StoreTarget::Filesystem(dir) => {
            if let Err(e) = check_writable_dir(dir).and_then(|()| placement::check_store_dir(dir)) {
                report
                    .problems
                    .push(format!("store {}: {e}", dir.display()));
            }
        }
        StoreTarget::S3(settings) => check_s3_bucket(settings, &mut report),
        StoreTarget::Collector(settings) => match CollectorStore::open(settings) {
            Ok(_) => report.lines.push(format!(
                "collector {}: enrollment material readable (the collector is not contacted here)",
                settings.url
            )),
            Err(e) => report.problems.push(format!("store {}: {e}", settings.url)),
        },
    }
    report
}

/// Connects to the bucket and reads its protection: a bucket without
/// versioning and Object Lock is a problem where the level requires them
/// (the agent would refuse to start) and a warning otherwise. A server that
/// cannot be reached is a warning: the agent starts anyway and spools.
fn check_s3_bucket(settings: &custody_store::S3Settings, report: &mut EnvironmentReport) {
    let what = crate::run::describe_target(&StoreTarget::S3(settings.clone()));
    if tokio::runtime::Handle::try_current().is_ok() {
        report.warnings.push(format!(
            "{what}: not checked (called inside an async runtime)"
        ));
        return;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            report
                .warnings
                .push(format!("{what}: not checked (cannot start a runtime: {e})"));
            return;
        }
    };
    match runtime.block_on(S3Store::open(settings.clone())) {
        Err(e) => report.warnings.push(format!(
            "{what}: cannot be reached now ({e}); the agent would start, keep data in its spool and retry"
        )),
        Ok(store) => match store.protection().problem(settings) {
            None => report
                .lines
                .push(format!("{what}: versioning and Object Lock enabled")),
            Some(problem) if settings.require_object_lock => report.problems.push(format!(
                "{what}: {problem}; levels A, B and C require it (REQUIREMENTS.md §1)"
            )),
            Some(problem) => report.warnings.push(format!(
                "{what}: {problem}; objects would be written without Object Lock"
            )),
        },
    }
}

/// Whether `dir` is (or could be created as) a writable directory: probes
/// the directory itself or, if it does not exist, its nearest existing
/// ancestor, by creating and removing a file.
fn check_writable_dir(dir: &Path) -> Result<(), String> {
    let mut probe_dir = dir;
    loop {
        match std::fs::metadata(probe_dir) {
            Ok(meta) if meta.is_dir() => break,
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a directory",
                    probe_dir.display()
                ))
            }
            // ENOTDIR: some ancestor is a file; walking up finds and names it.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                match probe_dir.parent() {
                    Some(parent) => probe_dir = parent,
                    None => return Err("no existing ancestor directory".to_string()),
                }
            }
            Err(e) => return Err(format!("cannot stat {}: {e}", probe_dir.display())),
        }
    }
    let probe = probe_dir.join(format!(".custody-agent-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if probe_dir == dir => Err(format!("not writable: {e}")),
        Err(e) => Err(format!(
            "does not exist and cannot be created in {}: {e}",
            probe_dir.display()
        )),
    }
}

/// `check-config`: prints a summary and every problem; exit 0 when usable.
pub fn check_config(args: &ConfigArgs) -> anyhow::Result<u8> {
    let config = match args.checked() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(EXIT_FAILURE);
        }
    };
    let report = check_environment(&config);
    out!("{}", summary(&config))?;
    for line in &report.lines {
        outln!("{line}")?;
    }
    for warning in &report.warnings {
        outln!("warning: {warning}")?;
    }
    for problem in &report.problems {
        outln!("problem: {problem}")?;
    }
    if report.problems.is_empty() {
        outln!("configuration is usable")?;
        Ok(EXIT_OK)
    } else {
        outln!(
            "configuration is not usable: {} problem(s)",
            report.problems.len()
        )?;
        Ok(EXIT_FAILURE)
    }
}

/// The effective configuration, one key per line.
pub fn summary(config: &Config) -> String {
    let store = match &config.store {
        StoreTarget::Filesystem(dir) => format!("filesystem {}", dir.display()),
        StoreTarget::Collector(c) => format!(
            "collector {} (CA {}, certificate {}, key {})",
            c.url,
            c.ca.display(),
            c.cert.display(),
            c.key.display()
        ),
        StoreTarget::S3(s3) => format!(
            "{} (path-style {}, multipart above {} bytes, Object Lock {})",
            crate::run::describe_target(&config.store),
            s3.path_style,
            s3.multipart_threshold,
            if s3.require_object_lock {
                "required"
            } else {
                "optional"
            }
        ),
    };
    let start_at = match config.start_at {
        StartAt::Beginning => "beginning",
        StartAt::End => "end",
    };
    format!(
        "host_id: {}\nstate_dir: {}\nstore: {store}\nlevel: {} (retention {} months)\n\
         segment_max_bytes: {}\nsegment_max_age_ms: {}\ndigest_interval_ms: {}\npoll_interval_ms: {}\n\
         partial_line_wait_ms: {}\nspool_max_bytes: {}\nstart_at: {start_at}\nzstd_level: {}\nshutdown_grace_ms: {}\n",
        config.host_id,
        config.state_dir.display(),
        config.retention.level(),
        config.retention.months(),
        config.segment_max_bytes,
        config.segment_max_age.as_millis(),
        config.digest_interval.as_millis(),
        config.poll_interval.as_millis(),
        config.partial_line_wait.as_millis(),
        config.spool_max_bytes,
        config.zstd_level,
        config.shutdown_grace.as_millis(),
    )
}

// ---------------------------------------------------------------------------
// status

/// `status`: exit 0 if the agent runs and reports no errors, 1 if it
/// reports errors or does not run, 2 if there is no status file.
/// `pid_alive` answers whether a process id exists (the binary does the
/// `kill(pid, 0)`, which needs `unsafe`, outside this library).
pub fn status(args: &StatusArgs, pid_alive: &dyn Fn(u32) -> bool) -> anyhow::Result<u8> {
    let raw = partial_raw(
        args.config.as_deref(),
        args.state_dir.as_deref(),
        None,
        None,
    )?;
    let state_dir = raw.checked_state_dir()?;
    let Some(file) = status::read_status(&state_dir)? else {
        eprintln!(
            "no status file {}: the agent has not run with this state directory (give --state-dir or --config)",
            state_dir.join(status::STATUS_FILE).display()
        );
        return Ok(EXIT_USAGE_OR_NO_STATUS);
    };
    let now = OffsetDateTime::from(SystemTime::now());
    let liveness = status::liveness(&file.status, pid_alive(file.status.pid), now);
    if args.json {
        out!("{}", file.raw)?;
        if !file.raw.ends_with('\n') {
            outln!()?;
        }
    } else {
        out!("{}", status::render(&file.status, &liveness))?;
    }
    let healthy =
        matches!(liveness, Liveness::Running { .. }) && status::problems(&file.status).is_empty();
    Ok(if healthy { EXIT_OK } else { EXIT_FAILURE })
}

// ---------------------------------------------------------------------------
// key show

/// For the commands that create or read the host key with only part of a
/// configuration (`key show`, `custody-event`): when the configuration file
/// names a filesystem store, the state directory must not overlap it
/// ([`placement`]). Without a store nothing can be compared.
fn refuse_state_in_store(raw: &RawConfig, state_dir: &Path) -> anyhow::Result<()> {
    if let Ok(store) = raw.checked_store() {
        if let Err(why) = placement::check_state_outside_store(state_dir, &store) {
            bail!("refusing to use the host key: {why}");
        }
    }
    Ok(())
}

/// `key show`: the `allowed_signers` line for this host's key.
pub fn key_show(args: &KeyShowArgs) -> anyhow::Result<()> {
    let raw = partial_raw(
        args.config.as_deref(),
        args.state_dir.as_deref(),
        None,
        args.host_id.as_deref(),
    )?;
    let state_dir = raw.checked_state_dir()?;
    let host_id = raw.checked_host_id()?;
    refuse_state_in_store(&raw, &state_dir)?;
    let key = crate::key::load_or_create_for_host(&state_dir, &host_id)?;
    outln!("{}", crate::key::allowed_signers_entry(&key, &host_id))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// prune and hold

/// Opens the existing store a configuration names; never creates one, so
/// pruning or holding a mistyped path fails instead of making a new store.
/// An S3 bucket is opened whatever its protection (holds need Object Lock
/// and say so when it is missing).
async fn open_store(
    config: Option<&Path>,
    store: Option<&str>,
    s3: &S3Flags,
) -> anyhow::Result<(Arc<dyn ObjectStore>, StoreTarget)> {
    let raw = partial_raw_s3(config, None, store, None, s3)?;
    let target = raw.checked_store()?;
    let opened: Arc<dyn ObjectStore> = match &target {
        StoreTarget::Filesystem(dir) => {
            Arc::new(FsStore::open_existing(dir).with_context(|| {
                format!(
                    "cannot open the filesystem store {} (--store or store in the config)",
                    dir.display()
                )
            })?)
        }
        StoreTarget::Collector(settings) => Arc::new(CollectorStore::open(settings)?),
        StoreTarget::S3(settings) => {
            Arc::new(S3Store::open(settings.clone()).await.with_context(|| {
                format!(
                    "cannot open the {} (--store or store in the config)",
                    crate::run::describe_target(&target)
                )
            })?)
        }
    };
    Ok((opened, target))
}

/// What `prune` did (or, with `--dry-run`, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneSummary {
    pub dry_run: bool,
    pub deleted: Vec<String>,
    pub held: Vec<String>,
    pub retained: u64,
    /// Kept because their retention could not be proven (missing or
    /// damaged retention record): `key: why`. Never deleted.
    pub unproven: Vec<String>,
}

/// Computes what a prune at `now` would delete, without deleting.
pub async fn prune_plan(
    store: &dyn ObjectStore,
    now: OffsetDateTime,
) -> anyhow::Result<PruneSummary> {
    let mut summary = PruneSummary {
        dry_run: true,
        ..PruneSummary::default()
    };
    for key in store
        .list("")
        .await
        .with_context(|| format!("listing {}", store.describe()))?
    {
        let info = match store.head(&key).await {
            Ok(Some(info)) => info,
            Ok(None) => continue, // deleted meanwhile
            Err(e @ custody_store::StoreError::Corrupt { .. }) => {
                summary.unproven.push(format!("{key}: {e}"));
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading retention of {key}")),
        };
        if info.retain_until >= now {
            summary.retained += 1;
        } else if info.legal_hold {
            summary.held.push(key);
        } else {
            summary.deleted.push(key);
        }
    }
    Ok(summary)
}

pub async fn prune(args: &PruneArgs) -> anyhow::Result<()> {
    let (store, target) =
        open_store(args.config.as_deref(), args.store.as_deref(), &args.s3).await?;
    let now = OffsetDateTime::from(SystemTime::now());
    if matches!(target, StoreTarget::S3(_)) && !args.dry_run {
        // docs/s3.md: the lifecycle rule deletes expired versions; Object
        // Lock refuses anything earlier. --dry-run still shows what expired.
        outln!(
            "{}: S3 stores are pruned by the bucket's lifecycle rule, not by custody-agent (docs/s3.md); \
             nothing deleted. Use --dry-run to list what has passed its retention.",
            store.describe()
        )?;
        return Ok(());
    }
    let summary = if args.dry_run {
        prune_plan(store.as_ref(), now).await?
    } else {
        let report = store
            .prune(now)
            .await
            .with_context(|| format!("pruning {}", store.describe()))?;
        PruneSummary {
            dry_run: false,
            deleted: report.deleted,
            held: report.held,
            retained: report.retained,
            unproven: report
                .unproven
                .into_iter()
                .map(|(key, why)| format!("{key}: {why}"))
                .collect(),
        }
    };
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&summary).context("encoding the prune report")?
        )?;
    } else {
        let verb = if summary.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for key in &summary.deleted {
            outln!("{verb} {key}")?;
        }
        for key in &summary.held {
            outln!("held (legal hold, past retention) {key}")?;
        }
        for what in &summary.unproven {
            outln!("kept (retention not provable; check the store) {what}")?;
        }
        outln!(
            "{verb} {}, held {}, retained {}, kept unproven {} (store {})",
            summary.deleted.len(),
            summary.held.len(),
            summary.retained,
            summary.unproven.len(),
            store.describe()
        )?;
    }
    Ok(())
}

/// Sets (`hold`) or lifts the legal hold on every object under each prefix.
/// A prefix with no object is an error, so a typo does not pass silently.
pub async fn hold(args: &HoldArgs, hold: bool) -> anyhow::Result<()> {
    let (store, _) = open_store(args.config.as_deref(), args.store.as_deref(), &args.s3).await?;
    let verb = if hold {
        "set legal hold on"
    } else {
        "released legal hold on"
    };
    for prefix in &args.prefixes {
        let keys = store
            .list(prefix)
            .await
            .with_context(|| format!("listing {prefix:?} in {}", store.describe()))?;
        if keys.is_empty() {
            bail!(
                "no object under prefix {prefix:?} in {}; object names look like v1/<host>/…",
                store.describe()
            );
        }
        for key in &keys {
            store
                .set_legal_hold(key, hold)
                .await
                .with_context(|| format!("{verb} {key}"))?;
        }
        outln!("{verb} {} object(s) under {prefix}", keys.len())?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// snapshot and custody-event

/// `custody-event`: signs with the host key and appends.
pub fn custody_event(args: &CustodyEventArgs) -> anyhow::Result<u8> {
    use custody_evidence::bundle::custody_log::Action;
    let raw = partial_raw(
        args.config.as_deref(),
        args.state_dir.as_deref(),
        None,
        args.host_id.as_deref(),
    )?;
    let state_dir = raw.checked_state_dir()?;
    let host_id = raw.checked_host_id()?;
    refuse_state_in_store(&raw, &state_dir)?;
    let key = crate::key::load_or_create_for_host(&state_dir, &host_id)?;
    for (flag, v) in [
        ("--operator", Some(&args.operator)),
        ("--reason", Some(&args.reason)),
        ("--place", args.place.as_ref()),
    ] {
        if let Some(v) = v {
            if v.trim().is_empty() || v.chars().any(char::is_control) {
                bail!("{flag} must be one non-empty line");
            }
        }
    }
    let action = match args.action {
        EventAction::Uploaded => Action::Uploaded,
        EventAction::Received => Action::Received,
        EventAction::Verified => Action::Verified,
        EventAction::Exported => Action::Exported,
        EventAction::Released => Action::Released,
    };
    let place = args.place.clone().unwrap_or_else(|| host_id.to_string());
    let line = crate::snapshot::append::append_event(
        &args.bundle,
        &crate::snapshot::append::Append {
            action,
            actor: &args.operator,
            place: &place,
            purpose: &args.reason,
            key: &key,
        },
    )?;
    outln!(
        "appended custody event {} ({:?} by {}) to {}, signed by {}",
        line.event.seq,
        args.action,
        args.operator,
        args.bundle.display(),
        key.fingerprint()
    )?;
    Ok(EXIT_OK)
}

/// `snapshot`: takes the bundle and prints where it went.
pub async fn snapshot(args: &SnapshotArgs) -> anyhow::Result<u8> {
    let config = args.config.checked()?;
    // The snapshot signs with the host key in state_dir (creating it if
    // needed): never where the store's readers could take it.
    if let Err(why) = placement::check_state_outside_store(&config.state_dir, &config.store) {
        bail!("refusing to snapshot: {why}");
    }
    let cwd = current_dir()?;
    let req = crate::snapshot::Request {
        incident: args.incident.clone(),
        operator: args.operator.clone(),
        reason: args.reason.clone(),
        authority: args.authority.clone(),
        out: args.out.as_deref().map(|p| absolute(&cwd, p)),
        images: args.images.iter().map(|p| absolute(&cwd, p)).collect(),
        command_line: std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        progress: None,
    };
    let outcome = crate::snapshot::snapshot(&config, &req).await?;
    outln!(
        "evidence {}: {} file(s), {} bytes, tag manifest sha256 {}; written to {}",
        outcome.evidence_id,
        outcome.files,
        outcome.bytes,
        outcome.tagmanifest_sha256,
        outcome.location
    )?;
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("custody-agent").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn run_by_flags_alone() {
        let cli = parse(&[
            "run",
            "--store",
            "/srv/store",
            "--state-dir",
            "/tmp/state",
            "--host-id",
            "web01",
            "--level",
            "B",
            "--retention-months",
            "7",
            "--source",
            "web=/var/log/nginx/access.log*",
            "--source",
            "logon=/var/log/wtmp",
            "--source",
            "app:utmp=/srv/app/records*",
            "--zstd-level",
            "9",
            "--start-at",
            "end",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let config = args
            .to_raw(Path::new("/"))
            .check_with_hostname(None)
            .unwrap();
        assert_eq!(config.host_id.as_str(), "web01");
        assert_eq!(config.store, StoreTarget::Filesystem("/srv/store".into()));
        assert_eq!(config.retention.months(), 7);
        assert_eq!(config.zstd_level, 9);
        assert_eq!(config.start_at, StartAt::End);
        let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["web-access.log", "logon-wtmp", "app-records"]);
        assert_eq!(config.sources[0].framing, SourceFraming::Lines);
        assert_eq!(
            config.sources[1].framing,
            SourceFraming::Records { size: 384 }
        );
        assert_eq!(
            config.sources[2].framing,
            SourceFraming::Records { size: 384 }
        );
    }

    #[test]
    fn relative_flag_paths_resolve_against_the_working_directory() {
        let cli = parse(&[
            "run",
            "--store",
            "./store",
            "--state-dir",
            "st",
            "--source",
            "os=./logs/*.log",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let config = args
            .to_raw(Path::new("/home/op"))
            .check_with_hostname(Some("h"))
            .unwrap();
        assert_eq!(
            config.store,
            StoreTarget::Filesystem("/home/op/store".into())
        );
        assert_eq!(config.state_dir, PathBuf::from("/home/op/st"));
        assert_eq!(config.sources[0].paths, ["/home/op/logs/*.log"]);
    }

    #[test]
    fn flags_override_the_file_and_add_sources() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(
            &file,
            "store = \"/srv/a\"\nlevel = \"A\"\nzstd_level = 5\n[[sources]]\ncategory = \"os\"\npaths = [\"/var/log/syslog*\"]\n",
        )
        .unwrap();
        let cli = parse(&[
            "run",
            "--config",
            file.to_str().unwrap(),
            "--store",
            "/srv/b",
            "--source",
            "web=/w/access.log",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let config = load_raw(args.config.as_deref(), args.to_raw(Path::new("/")))
            .unwrap()
            .check_with_hostname(Some("h"))
            .unwrap();
        assert_eq!(config.store, StoreTarget::Filesystem("/srv/b".into()));
        assert_eq!(config.zstd_level, 5);
        assert_eq!(config.sources.len(), 2);
    }

    #[test]
    fn an_error_names_the_flag_when_a_flag_set_the_value() {
        let cli = parse(&[
            "run",
            "--store",
            "/s",
            "--zstd-level",
            "25",
            "--source",
            "weblog=/x",
        ]);
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        let err = args
            .to_raw(Path::new("/"))
            .check_with_hostname(Some("h"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--zstd-level: 25 is out of range; use 1 to 19"),
            "{err}"
        );
        assert!(
            err.contains("--source weblog=/x: \"weblog\" is not one of os, web, app, logon"),
            "{err}"
        );
    }

    #[test]
    fn malformed_source_flag_is_a_usage_error() {
        let err = Cli::try_parse_from(["custody-agent", "run", "--source", "os/var/log/syslog"])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn check_writable_dir_probes_the_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable_dir(&dir.path().join("a/b/c")).is_ok());
        assert!(
            !dir.path().join("a").exists(),
            "the check must not create directories"
        );
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let err = check_writable_dir(&file.join("sub")).unwrap_err();
        assert!(err.contains("is not a directory"), "{err}");
    }
}
