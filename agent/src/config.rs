//! Configuration: TOML (or command-line flags) → a raw struct → one checked
//! [`Config`]. Only the raw → checked conversion can fail, and its errors
//! name the key or flag and say what would be valid.
//!
//! CONTRACT: the checked types below are fixed (the pipeline uses them);
//! the raw structs, parsing, defaults and validation are the config
//! implementer's.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::{Category, HostId, StreamId};
use custody_store::https::CollectorSettings;
use custody_store::s3::{S3Settings, DEFAULT_MULTIPART_THRESHOLD};
use serde::Deserialize;

/// Where shipped objects go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    /// A directory: the filesystem store, the embedded default.
    Filesystem(PathBuf),
    /// `s3://BUCKET/PREFIX` with the `s3_*` settings (docs/s3.md).
    /// `require_object_lock` is set from the level: A, B and C refuse a
    /// bucket without versioning and Object Lock.
    S3(S3Settings),
    /// `https://HOST:PORT`: a custody collector, reached with this host's
    /// enrollment material (`collector_*` keys or `enrollment_dir`).
    Collector(CollectorSettings),
}

/// How a source's bytes are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFraming {
    Lines,
    /// Fixed-size binary records (utmp: 384 bytes).
    Records {
        size: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// Read a file seen for the first time from its first byte.
    Beginning,
    /// Start a file seen for the first time at its current end (only for
    /// files present at the agent's first start; later files from the start).
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Unique among sources; part of the stream id, so keep it stable.
    pub name: String,
    pub category: Category,
    /// Glob patterns (absolute). Rotated names (`auth.log.1`) may be
    /// included; compressed files (`.gz`, `.zst`, `.xz`, `.bz2`, by content) are never read.
    pub paths: Vec<String>,
    pub framing: SourceFraming,
    /// Set for a `kind = "journald"` source: the systemd journal, read
    /// through `journalctl -o export` instead of files (`paths` is empty).
    pub journal: Option<JournalConfig>,
    /// Set for a `kind = "eventlog"` source (Windows only, FORMAT.md §17):
    /// the channel path. `name` is then the whole stream id.
    pub eventlog: Option<String>,
    /// Set for a `kind = "webroot"` source (FORMAT.md §18): the web roots
    /// to inventory (`paths` is empty: nothing is tailed).
    pub webroot: Option<crate::webroot::WebrootConfig>,
}

/// Which journal a `kind = "journald"` source reads, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// `journalctl --directory`: a journal directory other than the
    /// system's (an auditor's copy, `systemd-journal-remote` output).
    pub directory: Option<PathBuf>,
    /// `journalctl --file` globs, instead of a directory.
    pub files: Vec<String>,
    /// journalctl match arguments (`_SYSTEMD_UNIT=ssh.service`, `+`).
    pub matches: Vec<String>,
    /// The journalctl program (default `journalctl`, looked up on PATH).
    pub journalctl: PathBuf,
}

impl JournalConfig {
    /// What is read, as recorded in every segment (FORMAT.md §16).
    pub fn describe(&self) -> String {
        let mut out = match (&self.directory, self.files.is_empty()) {
            (Some(d), _) => format!("directory:{}", d.display()),
            (None, false) => format!("files:{}", self.files.join(",")),
            (None, true) => "system".to_string(),
        };
        for m in &self.matches {
            out.push_str(" match:");
            out.push_str(m);
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host_id: HostId,
    pub state_dir: PathBuf,
    pub store: StoreTarget,
    pub retention: RetentionPolicy,
    pub sources: Vec<SourceConfig>,
    /// Close a segment when it reaches this many raw bytes (default 4 MiB).
    pub segment_max_bytes: usize,
    /// Close a segment when its first byte is this old (default 750 ms).
    pub segment_max_age: Duration,
    /// Stop reading when the spool holds this many bytes (default 1 GiB).
    pub spool_max_bytes: u64,
    /// Write a digest this often (default 60 s).
    pub digest_interval: Duration,
    /// Safety-net rescan of every source (default 5 s).
    pub poll_interval: Duration,
    /// How long an unterminated last line is held before it is shipped as a
    /// split unit (default 5 s).
    pub partial_line_wait: Duration,
    pub start_at: StartAt,
    /// zstd level (default 3).
    pub zstd_level: i32,
    /// On shutdown, how long to keep shipping before leaving the rest in the spool (default 10 s).
    pub shutdown_grace: Duration,
}

// ---------------------------------------------------------------------------
// Defaults. Each is documented in docs/configuration.md with its reason.

/// Where the agent keeps checkpoints, spool, host key and status by default.
#[cfg(not(windows))]
pub const DEFAULT_STATE_DIR: &str = "/var/lib/custody-agent";
/// Where the agent keeps checkpoints, spool, host key and status by default
/// (Windows: machine-wide program data, see docs/install-windows.md).
#[cfg(windows)]
pub const DEFAULT_STATE_DIR: &str = r"C:\ProgramData\custody-agent\state";
/// Responsibility level assumed when none is given (REQUIREMENTS.md §1: the
/// lowest level the retention table binds).
pub const DEFAULT_LEVEL: Level = Level::C;
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 4 * 1024 * 1024;
pub const DEFAULT_SEGMENT_MAX_AGE_MS: u64 = 750;
pub const DEFAULT_DIGEST_INTERVAL_MS: u64 = 60_000;
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 5_000;
pub const DEFAULT_PARTIAL_LINE_WAIT_MS: u64 = 5_000;
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Size of one utmp/wtmp/btmp record on Linux (glibc `struct utmp`).
pub const UTMP_RECORD_SIZE: u32 = 384;
/// Largest accepted segment: a segment is held in memory while it is cut,
/// hashed and compressed, so an absurd value would only exhaust memory.
pub const MAX_SEGMENT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// File-name prefixes that mean "binary login records" when no framing is given.
const UTMP_PREFIXES: [&str; 3] = ["wtmp", "btmp", "utmp"];

// ---------------------------------------------------------------------------
// Raw configuration: what the file and the flags say, unchecked.

/// Where a value came from, so that an error names what the user wrote: the
/// key in the file or the flag on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceOrigin {
    /// The `index`-th `[[sources]]` table of the file (from 0).
    File { index: usize },
    /// A `--source` flag, with its text as written.
    Flag { text: String },
}

impl Default for SourceOrigin {
    fn default() -> Self {
        SourceOrigin::File { index: 0 }
    }
}

/// One `[[sources]]` table or `--source` flag, unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// `"files"` (the default) or `"journald"`.
    pub kind: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub paths: Option<Vec<String>>,
    pub framing: Option<String>,
    /// journald only: read this journal directory instead of the system's.
    pub directory: Option<PathBuf>,
    /// journald only: read these journal files (globs) instead.
    pub files: Option<Vec<String>>,
    /// journald only: journalctl matches (`FIELD=value` or `+`).
    pub matches: Option<Vec<String>>,
    /// journald only: the journalctl program [default: journalctl on PATH].
    pub journalctl: Option<PathBuf>,
    /// eventlog only: the channel path (`Security`, `Microsoft-Windows-Sysmon/Operational`).
    pub channel: Option<String>,
    /// webroot only: seconds between inventories [default: 3600, hourly].
    pub interval_seconds: Option<u64>,
    #[serde(skip)]
    pub origin: SourceOrigin,
}

impl RawSource {
    /// Parses the `--source CATEGORY[:FRAMING]=GLOB` syntax. Only the shape is
    /// checked here (a malformed flag is a usage error); the category,
    /// framing and glob are checked with the rest of the configuration.
    pub fn parse_flag(text: &str) -> Result<RawSource, String> {
        let (left, glob) = text.split_once('=').ok_or_else(|| {
            format!("{text:?} is not CATEGORY[:FRAMING]=GLOB (for example os=/var/log/syslog*)")
        })?;
        if glob.is_empty() {
            return Err(format!("{text:?} has an empty GLOB after '='"));
        }
        let (category, framing) = match left.split_once(':') {
            Some((c, f)) => (c, Some(f.to_string())),
            None => (left, None),
        };
        Ok(RawSource {
            category: Some(category.to_string()),
            paths: Some(vec![glob.to_string()]),
            framing,
            origin: SourceOrigin::Flag {
                text: text.to_string(),
            },
            ..RawSource::default()
        })
    }

    /// The name a problem with `field` of this source is reported under.
    fn key(&self, field: &str) -> String {
        match &self.origin {
            SourceOrigin::File { index } => format!("sources[{index}].{field}"),
            SourceOrigin::Flag { text } => format!("--source {text}"),
        }
    }
}

/// The configuration as written in the TOML file, or assembled from flags:
/// every key optional, nothing checked yet. [`RawConfig::check`] turns it
/// into a [`Config`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub host_id: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub level: Option<String>,
    pub retention_months: Option<u32>,
    pub segment_max_bytes: Option<u64>,
    pub segment_max_age_ms: Option<u64>,
    pub digest_interval_ms: Option<u64>,
    pub poll_interval_ms: Option<u64>,
    pub partial_line_wait_ms: Option<u64>,
    pub spool_max_bytes: Option<u64>,
    pub start_at: Option<String>,
    pub zstd_level: Option<i32>,
    pub shutdown_grace_ms: Option<u64>,
    /// S3 store only: endpoint URL of an S3-compatible server.
    pub s3_endpoint: Option<String>,
    /// S3 store only: region [default: from the AWS configuration chain].
    pub s3_region: Option<String>,
    /// S3 store only: path-style addressing [default: true with an endpoint].
    pub s3_path_style: Option<bool>,
    /// S3 store only: upload objects larger than this in parts.
    pub s3_multipart_threshold: Option<u64>,
    /// Collector store only: directory written by `custody-collector enroll`
    /// (ca.pem, client.pem, client.key).
    pub enrollment_dir: Option<PathBuf>,
    /// Collector store only: the collector's CA certificate (PEM).
    pub collector_ca: Option<PathBuf>,
    /// Collector store only: this host's client certificate (PEM).
    pub collector_cert: Option<PathBuf>,
    /// Collector store only: the client certificate's private key (PEM).
    pub collector_key: Option<PathBuf>,
    #[serde(default)]
    pub sources: Vec<RawSource>,
    /// The file this came from, for error messages.
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// Top-level keys whose value came from a flag, so errors name the flag.
    #[serde(skip)]
    pub from_flags: BTreeSet<&'static str>,
}

/// A TOML document that could not be read as a configuration: the position
/// is given as line and column (from 1) so an editor can jump to it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration file {path}, line {line}, column {column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}", render_problems(file.as_deref(), problems))]
    Invalid {
        file: Option<PathBuf>,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with a configuration: the key or flag, and what is wrong
/// with it and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn render_problems(file: Option<&Path>, problems: &[Problem]) -> String {
    let mut out = match file {
        Some(path) => format!("configuration {} is not valid", path.display()),
        None => "configuration is not valid".to_string(),
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

/// Line and column (both from 1) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

impl RawConfig {
    /// Reads and parses a TOML configuration file.
    pub fn from_file(path: &Path) -> Result<RawConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        RawConfig::from_toml(&text, path)
    }

    /// Parses TOML `text`; `path` is only used in messages.
    pub fn from_toml(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim_end().to_string(),
            }
        })?;
        for (index, source) in raw.sources.iter_mut().enumerate() {
            source.origin = SourceOrigin::File { index };
        }
        raw.file = Some(path.to_path_buf());
        Ok(raw)
    }

    /// Lays `flags` over `self`: every value given by a flag replaces the
    /// file's, and sources given by flags are added after the file's.
    pub fn merge_flags(mut self, flags: RawConfig) -> RawConfig {
        macro_rules! take {
            ($($field:ident),*) => {$(
                if flags.$field.is_some() {
                    self.$field = flags.$field;
                    self.from_flags.insert(stringify!($field));
                }
            )*};
        }
        take!(
            host_id,
            state_dir,
            store,
            level,
            retention_months,
            segment_max_bytes,
            segment_max_age_ms,
            digest_interval_ms,
            poll_interval_ms,
            partial_line_wait_ms,
            spool_max_bytes,
            start_at,
            zstd_level,
            shutdown_grace_ms,
            s3_endpoint,
            s3_region,
            s3_path_style,
            s3_multipart_threshold,
            enrollment_dir,
            collector_ca,
            collector_cert,
            collector_key
        );
        self.sources.extend(flags.sources);
        self
    }

    /// The name a problem with top-level `field` is reported under: the flag
    /// if a flag set it, the TOML key otherwise.
    fn key(&self, field: &'static str) -> String {
        if self.from_flags.contains(field) {
            format!("--{}", field.replace('_', "-"))
        } else {
            field.to_string()
        }
    }

    fn invalid(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            problems,
        }
    }

    fn problem(&self, field: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            key: self.key(field),
            message: message.into(),
        }
    }

    /// The checked host id: the configured one, or this machine's hostname
    /// made safe for object names.
    pub fn checked_host_id(&self) -> Result<HostId, ConfigError> {
        self.host_id_with(system_hostname().as_deref())
            .map_err(|p| self.invalid(vec![p]))
    }

    fn host_id_with(&self, hostname: Option<&str>) -> Result<HostId, Problem> {
        match &self.host_id {
            Some(id) => HostId::new(id.clone()).map_err(|e| {
                self.problem(
                    "host_id",
                    format!("{:?} {}; it becomes part of every object name", id, e.why),
                )
            }),
            None => {
                let Some(hostname) = hostname else {
                    return Err(self.problem(
                        "host_id",
                        "not set and this machine's hostname could not be read; set host_id (letters, digits, '.', '_', '-')",
                    ));
                };
                let sanitized = sanitize_host_id(hostname);
                HostId::new(sanitized.clone()).map_err(|e| {
                    self.problem(
                        "host_id",
                        format!(
                            "not set, and the hostname {hostname:?} does not give a usable one ({:?} {}); set host_id explicitly",
                            sanitized, e.why
                        ),
                    )
                })
            }
        }
    }

    /// The checked state directory (absolute; default [`DEFAULT_STATE_DIR`]).
    pub fn checked_state_dir(&self) -> Result<PathBuf, ConfigError> {
        self.state_dir_problem().map_err(|p| self.invalid(vec![p]))
    }

    fn state_dir_problem(&self) -> Result<PathBuf, Problem> {
        match &self.state_dir {
            None => Ok(PathBuf::from(DEFAULT_STATE_DIR)),
            Some(dir) if dir.is_absolute() => Ok(dir.clone()),
            Some(dir) => Err(self.problem(
                "state_dir",
                format!(
                    "{} is relative; use an absolute path such as {DEFAULT_STATE_DIR}",
                    dir.display()
                ),
            )),
        }
    }

    /// The checked store target. There is no default: where evidence goes
    /// must be a deliberate choice (REQUIREMENTS.md §1: a physically
    /// separate system).
    pub fn checked_store(&self) -> Result<StoreTarget, ConfigError> {
        self.store_problem().map_err(|p| self.invalid(vec![p]))
    }

    fn store_problem(&self) -> Result<StoreTarget, Problem> {
        let Some(store) = &self.store else {
            return Err(self.problem(
                "store",
                "not set; give the directory of the filesystem store (store = \"/srv/custody\" or --store DIR), \
                 ideally on a physically separate system such as an NFS mount",
            ));
        };
        let scheme = store
            .split_once("://")
            .map(|(scheme, _)| scheme)
            .filter(|s| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
            });
        if scheme != Some("https") {
            if let Some(field) = self.collector_key_set() {
                return Err(self.problem(
                    field,
                    format!("applies only to a collector store (store = \"https://HOST:PORT\"), not to {store:?}"),
                ));
            }
        }
        if scheme == Some("s3") {
            return self.s3_problem(store);
        }
        if let Some(field) = self.s3_key_set() {
            return Err(self.problem(
                field,
                format!("applies only to an S3 store (store = \"s3://BUCKET/PREFIX\"), not to {store:?}"),
            ));
        }
        if scheme == Some("https") {
            return self.collector_problem(store);
        }
        if scheme.is_some() {
            return Err(self.problem(
                "store",
                format!("{store:?} is not a known store kind; use an absolute directory path, s3://BUCKET/PREFIX or https://COLLECTOR:PORT"),
            ));
        }
        let path = PathBuf::from(store);
        if !path.is_absolute() {
            return Err(self.problem(
                "store",
                format!(
                    "{store:?} is relative; use an absolute directory path such as /srv/custody"
                ),
            ));
        }
        Ok(StoreTarget::Filesystem(path))
    }

    /// The first collector key that is set, for refusing it with another store.
    fn collector_key_set(&self) -> Option<&'static str> {
        [
            ("enrollment_dir", self.enrollment_dir.is_some()),
            ("collector_ca", self.collector_ca.is_some()),
            ("collector_cert", self.collector_cert.is_some()),
            ("collector_key", self.collector_key.is_some()),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// `https://HOST:PORT` and the enrollment material: either
    /// `enrollment_dir`, or all three of `collector_ca`, `collector_cert`
    /// and `collector_key` (each also overrides the file from the directory).
    fn collector_problem(&self, url: &str) -> Result<StoreTarget, Problem> {
        CollectorSettings::check_url(url).map_err(|why| self.problem("store", why))?;
        let absolute = |field: &'static str, p: &PathBuf| -> Result<PathBuf, Problem> {
            if p.is_absolute() {
                Ok(p.clone())
            } else {
                Err(self.problem(
                    field,
                    format!("{} is relative; use an absolute path", p.display()),
                ))
            }
        };
        let base = match &self.enrollment_dir {
            Some(dir) => Some(CollectorSettings::from_enrollment_dir(
                url.trim_end_matches('/'),
                &absolute("enrollment_dir", dir)?,
            )),
            None => None,
        };
        let pick = |field: &'static str,
                    given: &Option<PathBuf>,
                    from_dir: Option<PathBuf>|
         -> Result<PathBuf, Problem> {
            match (given, from_dir) {
                (Some(p), _) => absolute(field, p),
                (None, Some(p)) => Ok(p),
                (None, None) => Err(self.problem(
                    field,
                    "not set; a collector store needs the host's enrollment material: set enrollment_dir \
                     (the directory written by `custody-collector enroll`) or collector_ca, collector_cert and collector_key",
                )),
            }
        };
        Ok(StoreTarget::Collector(CollectorSettings {
            url: url.trim_end_matches('/').to_string(),
            ca: pick(
                "collector_ca",
                &self.collector_ca,
                base.as_ref().map(|b| b.ca.clone()),
            )?,
            cert: pick(
                "collector_cert",
                &self.collector_cert,
                base.as_ref().map(|b| b.cert.clone()),
            )?,
            key: pick(
                "collector_key",
                &self.collector_key,
                base.as_ref().map(|b| b.key.clone()),
            )?,
        }))
    }

    /// The first `s3_*` key that is set, for refusing it with a non-S3 store.
    fn s3_key_set(&self) -> Option<&'static str> {
        [
            ("s3_endpoint", self.s3_endpoint.is_some()),
            ("s3_region", self.s3_region.is_some()),
            ("s3_path_style", self.s3_path_style.is_some()),
            (
                "s3_multipart_threshold",
                self.s3_multipart_threshold.is_some(),
            ),
        ]
        .into_iter()
        .find_map(|(field, set)| set.then_some(field))
    }

    /// `s3://BUCKET[/PREFIX]` and the `s3_*` keys. Object Lock is required
    /// here; [`RawConfig::check_with_hostname`] relaxes it for levels D, E.
    fn s3_problem(&self, url: &str) -> Result<StoreTarget, Problem> {
        let (bucket, prefix) =
            S3Settings::parse_url(url).map_err(|why| self.problem("store", why))?;
        if let Some(endpoint) = &self.s3_endpoint {
            let ok = ["http://", "https://"]
                .iter()
                .any(|p| endpoint.len() > p.len() && endpoint.starts_with(p));
            if !ok {
                return Err(self.problem(
                    "s3_endpoint",
                    format!("{endpoint:?} is not an http:// or https:// URL (for example http://minio.example:9000)"),
                ));
            }
        }
        if let Some(region) = &self.s3_region {
            let ok = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(self.problem(
                    "s3_region",
                    format!("{region:?} is not a region name (for example eu-central-1)"),
                ));
            }
        }
        let multipart_threshold = self
            .s3_multipart_threshold
            .unwrap_or(DEFAULT_MULTIPART_THRESHOLD);
        if multipart_threshold == 0 {
            return Err(self.problem("s3_multipart_threshold", "must be greater than 0"));
        }
        Ok(StoreTarget::S3(S3Settings {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()),
            multipart_threshold,
            require_object_lock: true,
            ..S3Settings::new(bucket, prefix)
        }))
    }

    fn retention_problem(&self) -> Result<RetentionPolicy, Problem> {
        let level = match &self.level {
            None => DEFAULT_LEVEL,
            Some(text) => text.parse::<Level>().map_err(|_| {
                self.problem(
                    "level",
                    format!("{text:?} is not a responsibility level; use one of A, B, C, D, E"),
                )
            })?,
        };
        RetentionPolicy::new(level, self.retention_months).map_err(|e| {
            let field = if self.retention_months.is_some() {
                "retention_months"
            } else {
                "level"
            };
            self.problem(field, e.to_string())
        })
    }

    fn check_sources(&self, problems: &mut Vec<Problem>) -> Vec<SourceConfig> {
        if self.sources.is_empty() {
            problems.push(Problem {
                key: "sources".to_string(),
                message: "no source configured; add a [[sources]] table or --source CATEGORY=GLOB \
                          (for example --source os=/var/log/syslog*)"
                    .to_string(),
            });
        }
        let mut checked = Vec::with_capacity(self.sources.len());
        // name -> the key of the source that first used it
        let mut seen: Vec<(String, String)> = Vec::new();
        for raw in &self.sources {
            let Some(source) = check_source(raw, problems) else {
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(name, _)| *name == source.name) {
                let how = if raw.name.is_some() {
                    "set here"
                } else {
                    "derived from the category and the first path"
                };
                problems.push(Problem {
                    key: raw.key("name"),
                    message: format!(
                        "{:?} ({how}) is already used by {first}; source names must be unique because they are part \
                         of the stream id: set a distinct name",
                        source.name
                    ),
                });
                continue;
            }
            seen.push((source.name.clone(), raw.key("name")));
            checked.push(source);
        }
        checked
    }

    /// Checks everything and returns the configuration the agent runs with,
    /// or every problem found (not only the first).
    pub fn check(&self) -> Result<Config, ConfigError> {
        self.check_with_hostname(system_hostname().as_deref())
    }

    /// [`RawConfig::check`] with the machine's hostname given, for tests.
    pub fn check_with_hostname(&self, hostname: Option<&str>) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let host_id = keep(self.host_id_with(hostname), &mut problems);
        let state_dir = keep(self.state_dir_problem(), &mut problems);
        let mut store = keep(self.store_problem(), &mut problems);
        let retention = keep(self.retention_problem(), &mut problems);
        if let (Some(StoreTarget::S3(settings)), Some(retention)) = (&mut store, &retention) {
            // REQUIREMENTS.md §1: levels A, B, C must keep six months, so
            // the bucket must be able to refuse deletion; D and E may not.
            settings.require_object_lock = retention.level().six_months_required();
        }

        let mut positive = |field: &'static str, value: Option<u64>, default: u64| -> Option<u64> {
            let v = value.unwrap_or(default);
            if v == 0 {
                problems.push(self.problem(field, "must be greater than 0"));
                return None;
            }
            Some(v)
        };
        let segment_max_bytes = positive(
            "segment_max_bytes",
            self.segment_max_bytes,
            DEFAULT_SEGMENT_MAX_BYTES,
        );
        let segment_max_age_ms = positive(
            "segment_max_age_ms",
            self.segment_max_age_ms,
            DEFAULT_SEGMENT_MAX_AGE_MS,
        );
        let digest_interval_ms = positive(
            "digest_interval_ms",
            self.digest_interval_ms,
            DEFAULT_DIGEST_INTERVAL_MS,
        );
        let poll_interval_ms = positive(
            "poll_interval_ms",
            self.poll_interval_ms,
            DEFAULT_POLL_INTERVAL_MS,
        );
        let spool_max_bytes = positive(
            "spool_max_bytes",
            self.spool_max_bytes,
            DEFAULT_SPOOL_MAX_BYTES,
        );
        let partial_line_wait_ms = self
            .partial_line_wait_ms
            .unwrap_or(DEFAULT_PARTIAL_LINE_WAIT_MS);
        let shutdown_grace_ms = self.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS);

        let segment_max_bytes = segment_max_bytes.and_then(|v| {
            if v > MAX_SEGMENT_MAX_BYTES {
                problems.push(self.problem(
                    "segment_max_bytes",
                    format!("{v} is too large; use at most {MAX_SEGMENT_MAX_BYTES} (a segment is held in memory)"),
                ));
                return None;
            }
            usize::try_from(v).ok()
        });
        if let (Some(seg), Some(spool)) = (segment_max_bytes, spool_max_bytes) {
            if (seg as u64) > spool {
                problems.push(self.problem(
                    "spool_max_bytes",
                    format!("{spool} is smaller than segment_max_bytes ({seg}); the spool must hold at least one segment"),
                ));
            }
        }
        let start_at = match self.start_at.as_deref() {
            None | Some("beginning") => Some(StartAt::Beginning),
            Some("end") => Some(StartAt::End),
            Some(other) => {
                problems.push(self.problem(
                    "start_at",
                    format!("{other:?} is not one of beginning, end"),
                ));
                None
            }
        };
        let zstd_level = match self.zstd_level.unwrap_or(DEFAULT_ZSTD_LEVEL) {
            level @ 1..=19 => Some(level),
            other => {
                problems.push(self.problem(
                    "zstd_level",
                    format!("{other} is out of range; use 1 to 19"),
                ));
                None
            }
        };
        let sources = self.check_sources(&mut problems);

        let (
            Some(host_id),
            Some(state_dir),
            Some(store),
            Some(retention),
            Some(segment_max_bytes),
            Some(segment_max_age_ms),
            Some(digest_interval_ms),
            Some(poll_interval_ms),
            Some(spool_max_bytes),
            Some(start_at),
            Some(zstd_level),
            true,
        ) = (
            host_id,
            state_dir,
            store,
            retention,
            segment_max_bytes,
            segment_max_age_ms,
            digest_interval_ms,
            poll_interval_ms,
            spool_max_bytes,
            start_at,
            zstd_level,
            problems.is_empty(),
        )
        else {
            return Err(self.invalid(problems));
        };
        Ok(Config {
            host_id,
            state_dir,
            store,
            retention,
            sources,
            segment_max_bytes,
            segment_max_age: Duration::from_millis(segment_max_age_ms),
            spool_max_bytes,
            digest_interval: Duration::from_millis(digest_interval_ms),
            poll_interval: Duration::from_millis(poll_interval_ms),
            partial_line_wait: Duration::from_millis(partial_line_wait_ms),
            start_at,
            zstd_level,
            shutdown_grace: Duration::from_millis(shutdown_grace_ms),
        })
    }
}

/// The value, or `None` with the problem recorded.
fn keep<T>(result: Result<T, Problem>, problems: &mut Vec<Problem>) -> Option<T> {
    result.map_err(|p| problems.push(p)).ok()
}

fn check_source(raw: &RawSource, problems: &mut Vec<Problem>) -> Option<SourceConfig> {
    match raw.kind.as_deref() {
        None | Some("files") => {}
        Some("journald") => return check_journal_source(raw, problems),
        Some("eventlog") => return check_eventlog_source(raw, problems),
        Some("webroot") => return check_webroot_source(raw, problems),
        Some(other) => {
            problems.push(Problem {
                key: raw.key("kind"),
                message: format!("{other:?} is not one of files, journald, eventlog, webroot"),
            });
            return None;
        }
    }
    if raw.channel.is_some() {
        problems.push(Problem {
            key: raw.key("channel"),
            message: "applies only to an event log source (kind = \"eventlog\", Windows)"
                .to_string(),
        });
    }
    for (field, set) in [
        ("directory", raw.directory.is_some()),
        ("files", raw.files.is_some()),
        ("matches", raw.matches.is_some()),
        ("journalctl", raw.journalctl.is_some()),
    ] {
        if set {
            problems.push(Problem {
                key: raw.key(field),
                message: "applies only to a journal source (kind = \"journald\")".to_string(),
            });
        }
    }
    if raw.interval_seconds.is_some() {
        problems.push(Problem {
            key: raw.key("interval_seconds"),
            message: "applies only to a web-root inventory (kind = \"webroot\")".to_string(),
        });
    }
    let before = problems.len();
    let category = match raw.category.as_deref() {
        None => {
            problems.push(Problem {
                key: raw.key("category"),
                message: "missing; use one of os, web, app, logon".to_string(),
            });
            None
        }
        Some(text) => match text.parse::<Category>() {
            Ok(c) => Some(c),
            Err(_) => {
                problems.push(Problem {
                    key: raw.key("category"),
                    message: format!("{text:?} is not one of os, web, app, logon"),
                });
                None
            }
        },
    };
    let paths = raw.paths.clone().unwrap_or_default();
    if paths.is_empty() {
        problems.push(Problem {
            key: raw.key("paths"),
            message:
                "must list at least one absolute path or glob, for example [\"/var/log/syslog*\"]"
                    .to_string(),
        });
    }
    for (i, pattern) in paths.iter().enumerate() {
        let key = match raw.origin {
            SourceOrigin::File { .. } => format!("{}[{i}]", raw.key("paths")),
            SourceOrigin::Flag { .. } => raw.key("paths"),
        };
        if !Path::new(pattern).is_absolute() {
            problems.push(Problem {
                key,
                message: format!("{pattern:?} is relative; use an absolute path or glob"),
            });
        } else if let Err(e) = glob::Pattern::new(pattern) {
            problems.push(Problem {
                key,
                message: format!(
                    "{pattern:?} is not a valid glob: {} at character {}",
                    e.msg,
                    e.pos + 1
                ),
            });
        }
    }
    let framing = match raw.framing.as_deref() {
        None => paths.first().map(|p| auto_framing(p)),
        Some("lines") => Some(SourceFraming::Lines),
        Some("utmp") => Some(SourceFraming::Records {
            size: UTMP_RECORD_SIZE,
        }),
        Some(other) => {
            problems.push(Problem {
                key: raw.key("framing"),
                message: format!("{other:?} is not one of lines, utmp"),
            });
            None
        }
    };
    let name = match (&raw.name, category, paths.first()) {
        (Some(name), _, _) => Some(name.clone()),
        (None, Some(category), Some(first)) => Some(derive_name(category, first)),
        _ => None,
    };
    if let Some(name) = &name {
        if let Err(e) = StreamId::new(name.clone()) {
            let message = if raw.name.is_some() {
                format!("{name:?} {}; the name is part of the stream id", e.why)
            } else {
                format!(
                    "the name derived from the first path, {name:?}, {}; set name explicitly",
                    e.why
                )
            };
            problems.push(Problem {
                key: raw.key("name"),
                message,
            });
        }
    }
    if problems.len() != before {
        return None;
    }
    let source = SourceConfig {
        name: name?,
        category: category?,
        paths,
        framing: framing?,
        journal: None,
        eventlog: None,
        webroot: None,
    };
    with_valid_stream_id(source, raw, problems)
}

/// A `kind = "eventlog"` source (FORMAT.md §17.1). The Event Log exists
/// only on Windows, so elsewhere the kind itself is the problem; on Windows
/// the channel, name and category are checked by [`crate::eventlog::config`]
/// and no file or journal key may be given.
fn check_eventlog_source(raw: &RawSource, problems: &mut Vec<Problem>) -> Option<SourceConfig> {
    if !cfg!(windows) {
        problems.push(Problem {
            key: raw.key("kind"),
            message: "eventlog sources exist only on Windows; use a journald or file source here"
                .to_string(),
        });
        return None;
    }
    let before = problems.len();
    for (field, set) in [
        ("paths", raw.paths.is_some()),
        ("framing", raw.framing.is_some()),
        ("directory", raw.directory.is_some()),
        ("files", raw.files.is_some()),
        ("matches", raw.matches.is_some()),
        ("journalctl", raw.journalctl.is_some()),
    ] {
        if set {
            problems.push(Problem {
                key: raw.key(field),
                message:
                    "does not apply to an event log source (kind = \"eventlog\"); give channel"
                        .to_string(),
            });
        }
    }
    let checked = crate::eventlog::config::check(
        raw.channel.as_deref(),
        raw.name.as_deref(),
        raw.category.as_deref(),
    );
    let checked = match checked {
        Ok(c) => Some(c),
        Err(list) => {
            problems.extend(list.into_iter().map(|(field, message)| Problem {
                key: raw.key(field),
                message,
            }));
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    let c = checked?;
    Some(SourceConfig {
        name: c.stream.to_string(),
        category: c.category,
        paths: Vec::new(),
        framing: SourceFraming::Lines,
        journal: None,
        eventlog: Some(c.channel),
        webroot: None,
    })
}

/// A `kind = "webroot"` source (FORMAT.md §18.1): the roots in `paths`,
/// checked by [`crate::webroot::config`]; no journal or event log key.
fn check_webroot_source(raw: &RawSource, problems: &mut Vec<Problem>) -> Option<SourceConfig> {
    let before = problems.len();
    for (field, set) in [
        ("framing", raw.framing.is_some()),
        ("directory", raw.directory.is_some()),
        ("files", raw.files.is_some()),
        ("matches", raw.matches.is_some()),
        ("journalctl", raw.journalctl.is_some()),
        ("channel", raw.channel.is_some()),
    ] {
        if set {
            problems.push(Problem {
                key: raw.key(field),
                message: "does not apply to a web-root inventory (kind = \"webroot\"); give paths and interval_seconds".to_string(),
            });
        }
    }
    let checked = crate::webroot::config::check(
        raw.paths.as_deref(),
        raw.name.as_deref(),
        raw.category.as_deref(),
        raw.interval_seconds,
    );
    let checked = match checked {
        Ok(c) => Some(c),
        Err(list) => {
            problems.extend(list.into_iter().map(|(field, message)| Problem {
                key: raw.key(field),
                message,
            }));
            None
        }
    };
    if problems.len() != before {
        return None;
    }
    let c = checked?;
    let source = SourceConfig {
        name: c.name,
        category: c.category,
        paths: Vec::new(),
        framing: SourceFraming::Lines,
        journal: None,
        eventlog: None,
        webroot: Some(c.webroot),
    };
    with_valid_stream_id(source, raw, problems)
}

/// A `kind = "journald"` source: category `os` unless given, named
/// `journald` unless given, no `paths`/`framing`, at most one of
/// `directory` and `files`, matches shaped as journalctl takes them.
fn check_journal_source(raw: &RawSource, problems: &mut Vec<Problem>) -> Option<SourceConfig> {
    let before = problems.len();
    let category = match raw.category.as_deref() {
        None => Some(Category::Os),
        Some(text) => match text.parse::<Category>() {
            Ok(c) => Some(c),
            Err(_) => {
                problems.push(Problem {
                    key: raw.key("category"),
                    message: format!("{text:?} is not one of os, web, app, logon"),
                });
                None
            }
        },
    };
    for (field, set) in [
        ("paths", raw.paths.is_some()),
        ("framing", raw.framing.is_some()),
    ] {
        if set {
            problems.push(Problem {
                key: raw.key(field),
                message: "does not apply to a journal source (kind = \"journald\"); use directory or files to read another journal".to_string(),
            });
        }
    }
    if raw.directory.is_some() && raw.files.is_some() {
        problems.push(Problem {
            key: raw.key("files"),
            message: "give either directory or files, not both".to_string(),
        });
    }
    if let Some(dir) = &raw.directory {
        if !dir.is_absolute() {
            problems.push(Problem {
                key: raw.key("directory"),
                message: format!("{} is relative; use an absolute path", dir.display()),
            });
        }
    }
    let files = raw.files.clone().unwrap_or_default();
    if raw.files.is_some() && files.is_empty() {
        problems.push(Problem {
            key: raw.key("files"),
            message:
                "is empty; list journal files (globs), or leave it out to read the system journal"
                    .to_string(),
        });
    }
    for f in &files {
        if !Path::new(f).is_absolute() {
            problems.push(Problem {
                key: raw.key("files"),
                message: format!("{f:?} is relative; use an absolute path or glob"),
            });
        }
    }
    let matches = raw.matches.clone().unwrap_or_default();
    for m in &matches {
        let ok = m == "+"
            || m.split_once('=').is_some_and(|(field, _)| {
                !field.is_empty()
                    && field
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            });
        if !ok {
            problems.push(Problem {
                key: raw.key("matches"),
                message: format!(
                    "{m:?} is not a journal match; use FIELD=value with an upper-case field name \
                     (for example _SYSTEMD_UNIT=ssh.service) or \"+\" between alternatives"
                ),
            });
        }
    }
    let journalctl = raw
        .journalctl
        .clone()
        .unwrap_or_else(|| PathBuf::from("journalctl"));
    let name = raw.name.clone().unwrap_or_else(|| "journald".to_string());
    if let Err(e) = StreamId::new(name.clone()) {
        problems.push(Problem {
            key: raw.key("name"),
            message: format!("{name:?} {}; the name is part of the stream id", e.why),
        });
    }
    if problems.len() != before {
        return None;
    }
    let source = SourceConfig {
        name,
        category: category?,
        paths: Vec::new(),
        framing: SourceFraming::Lines,
        journal: Some(JournalConfig {
            directory: raw.directory.clone(),
            files,
            matches,
            journalctl,
        }),
        eventlog: None,
        webroot: None,
    };
    with_valid_stream_id(source, raw, problems)
}

/// The pipeline builds the stream id from a source's category and name;
/// checking the result here (its length) means the agent cannot fail on it
/// at start.
fn with_valid_stream_id(
    source: SourceConfig,
    raw: &RawSource,
    problems: &mut Vec<Problem>,
) -> Option<SourceConfig> {
    if let Err(e) = crate::run::stream_id(&source) {
        problems.push(Problem {
            key: raw.key("name"),
            message: format!(
                "{:?} does not make a valid stream id: {e:#}; use a shorter name",
                source.name
            ),
        });
        return None;
    }
    Some(source)
}

/// utmp framing for files named like the login record files, lines otherwise.
fn auto_framing(pattern: &str) -> SourceFraming {
    let file = pattern.rsplit('/').next().unwrap_or(pattern);
    if UTMP_PREFIXES.iter().any(|p| file.starts_with(p)) {
        SourceFraming::Records {
            size: UTMP_RECORD_SIZE,
        }
    } else {
        SourceFraming::Lines
    }
}

/// `<category>-<file name of the glob without wildcards>`, for example
/// `os-syslog` for `/var/log/syslog*`: stable as long as the config is.
fn derive_name(category: Category, pattern: &str) -> String {
    let file = pattern.rsplit('/').next().unwrap_or(pattern);
    let mut stem = String::new();
    let mut in_class = false;
    for c in file.chars() {
        match c {
            '[' => in_class = true,
            ']' => in_class = false,
            '*' | '?' => {}
            _ if in_class => {}
            c if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' => stem.push(c),
            _ => stem.push('_'),
        }
    }
    let stem = stem.trim_matches(|c| c == '.' || c == '-' || c == '_');
    if stem.is_empty() {
        category.as_str().to_string()
    } else {
        format!("{category}-{stem}")
    }
}

/// The machine's hostname (Linux), or `None` if it cannot be read.
#[cfg(not(windows))]
pub fn system_hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
}

/// The computer name (Windows: `COMPUTERNAME`, which services see too),
/// or `None` if it is not set.
#[cfg(windows)]
pub fn system_hostname() -> Option<String> {
    std::env::var("COMPUTERNAME")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Makes a hostname usable as a host id: characters outside
/// `[A-Za-z0-9._-]` become `-`, leading `.`/`-` are dropped, at most 128.
pub fn sanitize_host_id(hostname: &str) -> String {
    let mapped: String = hostname
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    mapped
        .trim_start_matches(['.', '-'])
        .chars()
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        RawConfig::from_toml(text, Path::new("/etc/custody/agent.toml"))
    }

    /// Checks `text`; the error rendered as the user would see it.
    fn check(text: &str) -> Result<Config, String> {
        parse(text)
            .map_err(|e| e.to_string())?
            .check_with_hostname(Some("host"))
            .map_err(|e| e.to_string())
    }

    const MINIMAL: &str = r#"
store = "/srv/custody"
[[sources]]
category = "os"
paths = ["/var/log/syslog*"]
"#;

    #[test]
    fn minimal_config_gets_the_documented_defaults() {
        let config = check(MINIMAL).unwrap();
        assert_eq!(config.host_id.as_str(), "host");
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.store, StoreTarget::Filesystem("/srv/custody".into()));
        assert_eq!(config.retention.level(), Level::C);
        assert_eq!(config.retention.months(), 6);
        assert_eq!(config.segment_max_bytes, 4_194_304);
        assert_eq!(config.segment_max_age, Duration::from_millis(750));
        assert_eq!(config.digest_interval, Duration::from_millis(60_000));
        assert_eq!(config.poll_interval, Duration::from_millis(5000));
        assert_eq!(config.partial_line_wait, Duration::from_millis(5000));
        assert_eq!(config.spool_max_bytes, 1_073_741_824);
        assert_eq!(config.start_at, StartAt::Beginning);
        assert_eq!(config.zstd_level, 3);
        assert_eq!(config.shutdown_grace, Duration::from_millis(10_000));
        assert_eq!(
            config.sources,
            [SourceConfig {
                name: "os-syslog".into(),
                category: Category::Os,
                paths: vec!["/var/log/syslog*".into()],
                framing: SourceFraming::Lines,
                journal: None,
                eventlog: None,
                webroot: None,
            }]
        );
    }

    #[test]
    fn bad_category_names_the_key_and_the_valid_values() {
        let text = format!("{MINIMAL}\n[[sources]]\ncategory = \"web\"\npaths = [\"/a\"]\n[[sources]]\ncategory = \"weblog\"\npaths = [\"/b\"]\n");
        let err = check(&text).unwrap_err();
        assert!(
            err.contains("sources[2].category: \"weblog\" is not one of os, web, app, logon"),
            "{err}"
        );
        assert!(err.contains("/etc/custody/agent.toml"), "{err}");
    }

    #[test]
    fn duplicate_source_names_are_refused_explicit_or_derived() {
        let text = r#"
store = "/srv/custody"
[[sources]]
category = "web"
paths = ["/var/log/nginx/access.log*"]
[[sources]]
category = "web"
paths = ["/var/log/apache2/access.log*"]
[[sources]]
name = "x"
category = "os"
paths = ["/a"]
[[sources]]
name = "x"
category = "app"
paths = ["/b"]
"#;
        let err = check(text).unwrap_err();
        assert!(
            err.contains("sources[1].name: \"web-access.log\" (derived from the category and the first path) is already used by sources[0].name"),
            "{err}"
        );
        assert!(
            err.contains("sources[3].name: \"x\" (set here) is already used by sources[2].name"),
            "{err}"
        );
    }

    #[test]
    fn level_a_with_three_months_cites_the_rule() {
        let err = check(&format!("level = \"A\"\nretention_months = 3\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("retention_months:"), "{err}");
        assert!(err.contains("Taipei §24"), "{err}");
        // D may keep less; the table does not bind it.
        let config = check(&format!("level = \"D\"\nretention_months = 3\n{MINIMAL}")).unwrap();
        assert_eq!(config.retention.months(), 3);
    }

    #[test]
    fn unknown_key_is_an_error_naming_the_key_and_position() {
        let err = check(&format!("levle = \"A\"\n{MINIMAL}")).unwrap_err();
        assert!(err.contains("unknown field `levle`"), "{err}");
        assert!(
            err.contains("/etc/custody/agent.toml, line 1, column 1"),
            "{err}"
        );

        let err = check(&format!("{MINIMAL}framings = \"utmp\"\n")).unwrap_err();
        assert!(err.contains("unknown field `framings`"), "{err}");
        assert!(err.contains("line 6"), "{err}");
    }

    #[test]
    fn relative_paths_are_refused_naming_the_key() {
        let err = check("store = \"store\"\nstate_dir = \"state\"\n[[sources]]\ncategory = \"os\"\npaths = [\"/ok\", \"var/log/x\"]\n")
            .unwrap_err();
        assert!(err.contains("store: \"store\" is relative"), "{err}");
        assert!(err.contains("state_dir: state is relative"), "{err}");
        assert!(
            err.contains("sources[0].paths[1]: \"var/log/x\" is relative"),
            "{err}"
        );
    }

    #[test]
    fn empty_or_missing_paths_are_refused() {
        let err = check("store = \"/s\"\n[[sources]]\ncategory = \"os\"\npaths = []\n[[sources]]\ncategory = \"web\"\n")
            .unwrap_err();
        assert!(
            err.contains("sources[0].paths: must list at least one"),
            "{err}"
        );
        assert!(
            err.contains("sources[1].paths: must list at least one"),
            "{err}"
        );
    }

    #[test]
    fn every_problem_is_listed_not_only_the_first() {
        let err = check("zstd_level = 0\nstart_at = \"middle\"\nlevel = \"F\"\n").unwrap_err();
        for needle in [
            "zstd_level: 0 is out of range; use 1 to 19",
            "start_at: \"middle\" is not one of beginning, end",
            "level: \"F\" is not a responsibility level; use one of A, B, C, D, E",
            "store: not set",
            "sources: no source configured",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }

    #[test]
    fn unknown_store_kinds_are_refused_by_name() {
        let err = check(&MINIMAL.replace("/srv/custody", "ftp://example.org/store")).unwrap_err();
        assert!(
            err.contains("\"ftp://example.org/store\" is not a known store kind"),
            "{err}"
        );
    }

    #[test]
    fn collector_store_and_its_enrollment_keys() {
        let text = format!(
            "enrollment_dir = \"/etc/custody/enroll\"\n{}",
            MINIMAL.replace("/srv/custody", "https://collector.example:8443")
        );
        let config = check(&text).unwrap();
        let StoreTarget::Collector(c) = &config.store else {
            panic!("not a collector target: {:?}", config.store);
        };
        assert_eq!(c.url, "https://collector.example:8443");
        assert_eq!(c.ca, PathBuf::from("/etc/custody/enroll/ca.pem"));
        assert_eq!(c.cert, PathBuf::from("/etc/custody/enroll/client.pem"));
        assert_eq!(c.key, PathBuf::from("/etc/custody/enroll/client.key"));

        let text = format!(
            "collector_ca = \"/a/ca.pem\"\ncollector_cert = \"/a/c.pem\"\n{}",
            MINIMAL.replace("/srv/custody", "https://c:1")
        );
        let err = check(&text).unwrap_err();
        assert!(err.contains("collector_key: not set"), "{err}");

        let err = check(&MINIMAL.replace("/srv/custody", "https://c:1/path")).unwrap_err();
        assert!(
            err.contains("store: \"https://c:1/path\" must be only https://HOST:PORT"),
            "{err}"
        );

        let err = check(&format!("collector_cert = \"/a/c.pem\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.contains("collector_cert: applies only to a collector store"),
            "{err}"
        );

        let text = format!(
            "enrollment_dir = \"enroll\"\n{}",
            MINIMAL.replace("/srv/custody", "https://c:1")
        );
        let err = check(&text).unwrap_err();
        assert!(err.contains("enrollment_dir: enroll is relative"), "{err}");
    }

    #[test]
    fn s3_store_urls_and_keys() {
        let config = check(&MINIMAL.replace("/srv/custody", "s3://evidence-1/agents/")).unwrap();
        let StoreTarget::S3(s3) = &config.store else {
            panic!("not an S3 target: {:?}", config.store);
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("evidence-1", "agents")
        );
        assert_eq!((s3.endpoint.as_deref(), s3.region.as_deref()), (None, None));
        assert!(
            !s3.path_style,
            "virtual-hosted addressing on AWS by default"
        );
        assert_eq!(s3.multipart_threshold, DEFAULT_MULTIPART_THRESHOLD);
        assert!(s3.require_object_lock, "level C requires Object Lock");

        let text = format!(
            "level = \"D\"\ns3_endpoint = \"http://127.0.0.1:9000\"\ns3_region = \"eu-central-1\"\ns3_multipart_threshold = 1048576\n{}",
            MINIMAL.replace("/srv/custody", "s3://evidence-1")
        );
        let config = check(&text).unwrap();
        let StoreTarget::S3(s3) = &config.store else {
            panic!("not an S3 target");
        };
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region.as_deref(), Some("eu-central-1"));
        assert!(s3.path_style, "path-style by default with an endpoint");
        assert_eq!(s3.multipart_threshold, 1_048_576);
        assert!(
            !s3.require_object_lock,
            "level D may run without Object Lock"
        );
        let config = check(&format!("s3_path_style = false\n{text}")).unwrap();
        assert!(matches!(&config.store, StoreTarget::S3(s3) if !s3.path_style));

        let err = check(&MINIMAL.replace("/srv/custody", "s3://Evidence/x")).unwrap_err();
        assert!(
            err.contains(
                "store: \"s3://Evidence/x\": bucket name \"Evidence\" may contain only lower-case"
            ),
            "{err}"
        );
        let err = check(&format!(
            "s3_endpoint = \"minio:9000\"\n{}",
            MINIMAL.replace("/srv/custody", "s3://evidence-1")
        ))
        .unwrap_err();
        assert!(
            err.contains("s3_endpoint: \"minio:9000\" is not an http:// or https:// URL"),
            "{err}"
        );
        let err = check(&format!("s3_region = \"eu-central-1\"\n{MINIMAL}")).unwrap_err();
        assert!(
            err.contains("s3_region: applies only to an S3 store"),
            "{err}"
        );
    }

    #[test]
    fn framing_is_automatic_for_login_record_files_and_can_be_forced() {
        let text = r#"
store = "/s"
[[sources]]
category = "logon"
paths = ["/var/log/wtmp", "/var/log/wtmp.1"]
[[sources]]
category = "logon"
paths = ["/var/log/btmp*"]
[[sources]]
name = "forced"
category = "logon"
paths = ["/var/log/wtmp-copy"]
framing = "lines"
[[sources]]
category = "app"
paths = ["/srv/app/state.bin"]
framing = "utmp"
"#;
        let config = check(text).unwrap();
        let framings: Vec<_> = config.sources.iter().map(|s| s.framing).collect();
        let utmp = SourceFraming::Records {
            size: UTMP_RECORD_SIZE,
        };
        assert_eq!(framings, [utmp, utmp, SourceFraming::Lines, utmp]);
        let err = check(&format!("{MINIMAL}framing = \"json\"\n")).unwrap_err();
        assert!(
            err.contains("sources[0].framing: \"json\" is not one of lines, utmp"),
            "{err}"
        );
    }

    #[test]
    fn invalid_names_and_globs_are_refused() {
        let err = check("store = \"/s\"\n[[sources]]\nname = \"a/b\"\ncategory = \"os\"\npaths = [\"/var/log/[x\"]\n")
            .unwrap_err();
        assert!(
            err.contains("sources[0].name: \"a/b\" may contain only"),
            "{err}"
        );
        assert!(
            err.contains("sources[0].paths[0]: \"/var/log/[x\" is not a valid glob"),
            "{err}"
        );
    }

    #[test]
    fn names_too_long_for_a_stream_id_are_refused() {
        let name = "n".repeat(126);
        let err = check(&format!("store = \"/s\"\n[[sources]]\nname = \"{name}\"\ncategory = \"logon\"\npaths = [\"/a\"]\n"))
            .unwrap_err();
        assert!(err.contains("sources[0].name:"), "{err}");
        assert!(err.contains("does not make a valid stream id"), "{err}");
    }

    #[test]
    fn spool_must_hold_a_segment() {
        let err = check(&format!(
            "segment_max_bytes = 2048\nspool_max_bytes = 1024\n{MINIMAL}"
        ))
        .unwrap_err();
        assert!(
            err.contains("spool_max_bytes: 1024 is smaller than segment_max_bytes (2048)"),
            "{err}"
        );
    }

    #[test]
    fn parse_errors_give_line_and_column() {
        let err = check("store = \"/s\"\nzstd_level = \"high\"\n").unwrap_err();
        assert!(err.contains("line 2, column 14"), "{err}");
    }

    #[test]
    fn derived_names_drop_wildcards() {
        assert_eq!(derive_name(Category::Os, "/var/log/syslog*"), "os-syslog");
        assert_eq!(
            derive_name(Category::Logon, "/var/log/auth.log.[0-9]"),
            "logon-auth.log"
        );
        assert_eq!(derive_name(Category::App, "/srv/*.log"), "app-log");
        assert_eq!(derive_name(Category::App, "/srv/*"), "app");
        assert_eq!(
            derive_name(Category::Web, "/srv/my app.log"),
            "web-my_app.log"
        );
    }

    #[test]
    fn hostnames_are_sanitised_into_host_ids() {
        assert_eq!(sanitize_host_id("web01.example.org\n"), "web01.example.org");
        assert_eq!(sanitize_host_id("-weird host!"), "weird-host-");
        let raw = parse(MINIMAL).unwrap();
        let config = raw.check_with_hostname(Some("db 1")).unwrap();
        assert_eq!(config.host_id.as_str(), "db-1");
        let err = raw.check_with_hostname(None).unwrap_err().to_string();
        assert!(
            err.contains("host_id: not set and this machine's hostname could not be read"),
            "{err}"
        );
    }

    #[test]
    fn source_flag_syntax() {
        let s = RawSource::parse_flag("logon:utmp=/var/log/wtmp").unwrap();
        assert_eq!(s.category.as_deref(), Some("logon"));
        assert_eq!(s.framing.as_deref(), Some("utmp"));
        assert_eq!(s.paths, Some(vec!["/var/log/wtmp".to_string()]));
        assert!(RawSource::parse_flag("os").is_err());
        assert!(RawSource::parse_flag("os=").is_err());
        // A glob may itself contain '=' and ':'; only the first '=' splits.
        let s = RawSource::parse_flag("app=/srv/a=b:c.log").unwrap();
        assert_eq!(s.paths, Some(vec!["/srv/a=b:c.log".to_string()]));
        assert_eq!(s.framing, None);
    }

    #[test]
    fn journald_sources_default_their_category_and_name_and_check_their_keys() {
        let config = check(
            r#"
store = "/srv/custody"
[[sources]]
kind = "journald"
[[sources]]
kind = "journald"
name = "remote"
directory = "/var/log/journal/remote"
matches = ["_SYSTEMD_UNIT=ssh.service", "+", "_TRANSPORT=kernel"]
"#,
        )
        .unwrap();
        let s = &config.sources[0];
        assert_eq!((s.name.as_str(), s.category), ("journald", Category::Os));
        let j = s.journal.as_ref().unwrap();
        assert_eq!(j.describe(), "system");
        assert_eq!(j.journalctl, PathBuf::from("journalctl"));
        let j = config.sources[1].journal.as_ref().unwrap();
        assert_eq!(
            j.describe(),
            "directory:/var/log/journal/remote match:_SYSTEMD_UNIT=ssh.service match:+ match:_TRANSPORT=kernel"
        );

        let err = check(
            r#"
store = "/srv/custody"
[[sources]]
kind = "journald"
paths = ["/var/log/x"]
directory = "rel"
files = ["/a/*.journal"]
matches = ["lower=1"]
[[sources]]
kind = "journal"
[[sources]]
category = "os"
paths = ["/var/log/syslog"]
directory = "/x"
"#,
        )
        .unwrap_err();
        for want in [
            "sources[0].paths: does not apply to a journal source",
            "sources[0].files: give either directory or files",
            "sources[0].directory: rel is relative",
            "sources[0].matches: \"lower=1\" is not a journal match",
            "sources[1].kind: \"journal\" is not one of files, journald",
            "sources[2].directory: applies only to a journal source",
        ] {
            assert!(err.contains(want), "{want:?} missing from\n{err}");
        }
    }
}
