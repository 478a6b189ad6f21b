//! The collector's configuration: TOML file and flags → [`RawConfig`] →
//! checked [`Config`]. Only that conversion can fail, and every problem
//! names the key (or the flag that set it) and what would be valid. Every
//! problem is reported at once, not the first only.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::HostId;
use custody_store::s3::{S3Settings, DEFAULT_MULTIPART_THRESHOLD};

use crate::syslog::{RawDevice, RawSyslog, SyslogConfig};
use serde::Deserialize;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";
/// Loopback only: `/metrics` and `/healthz` need no client certificate, so
/// they are not exposed to the network unless configured.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/custody-collector";
pub const DEFAULT_LEVEL: Level = Level::C;
/// Largest accepted object. Agents' segments are 4 MiB raw by default and
/// compress well; 64 MiB leaves room for large segment settings.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Bytes of request bodies held in memory at once; beyond it uploads get
/// 503 + Retry-After (the agent keeps the data in its spool).
pub const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 512 * 1024 * 1024;
pub const DEFAULT_PRUNE_INTERVAL_S: u64 = 3600;
/// Agents keep a keep-alive connection between uploads (a segment every
/// second or so while logs flow); half a minute of silence frees the slot.
pub const DEFAULT_IDLE_TIMEOUT_S: u64 = 30;

/// Where received evidence is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreTarget {
    Filesystem(PathBuf),
    S3(S3Settings),
}

impl StoreTarget {
    pub fn describe(&self) -> String {
        match self {
            StoreTarget::Filesystem(dir) => format!("filesystem store at {}", dir.display()),
            StoreTarget::S3(s3) => {
                let loc = if s3.prefix.is_empty() {
                    format!("s3://{}", s3.bucket)
                } else {
                    format!("s3://{}/{}", s3.bucket, s3.prefix)
                };
                match &s3.endpoint {
                    Some(e) => format!("S3 store {loc} (endpoint {e})"),
                    None => format!("S3 store {loc} (AWS)"),
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    /// The operators' HTTPS API (issue 10); `None`: off. Needs `ca_dir`
    /// (operators authenticate with certificates from the collector CA).
    pub api_listen: Option<SocketAddr>,
    /// The CA of agents' client certificates; `None`: no HTTPS ingest
    /// (a collector for syslog devices only).
    pub ca_dir: Option<PathBuf>,
    pub store: StoreTarget,
    /// `findings.jsonl` lives here.
    pub state_dir: PathBuf,
    pub retention: RetentionPolicy,
    pub max_body_bytes: u64,
    pub max_connections: usize,
    pub max_inflight_bytes: u64,
    /// Connections with no request for this long are closed.
    pub idle_timeout: Duration,
    /// `None`: no scheduled prune (S3 stores are pruned by lifecycle rules).
    pub prune_interval: Option<Duration>,
    /// Syslog from devices, when any syslog listener is configured.
    pub syslog: Option<SyslogSetup>,
    /// When the console and `/api/v1/hosts` call a host quiet (yellow)
    /// and silent (red).
    pub host_thresholds: HostThresholds,
}

/// A host that last polled within `quiet_after` is green, within
/// `silent_after` yellow, else red. Agents poll about every 30 s, so the
/// defaults (5 min, 1 h) tolerate a restart but not an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostThresholds {
    pub quiet_after: Duration,
    pub silent_after: Duration,
}

impl Default for HostThresholds {
    fn default() -> Self {
        HostThresholds {
            quiet_after: Duration::from_secs(DEFAULT_HOST_QUIET_AFTER_S),
            silent_after: Duration::from_secs(DEFAULT_HOST_SILENT_AFTER_S),
        }
    }
}

pub const DEFAULT_HOST_QUIET_AFTER_S: u64 = 300;
pub const DEFAULT_HOST_SILENT_AFTER_S: u64 = 3600;

/// The syslog side: its settings and the collector's own host id, under
/// which device streams are stored and digests signed.
#[derive(Debug, Clone)]
pub struct SyslogSetup {
    pub config: SyslogConfig,
    pub host: HostId,
}

/// The configuration as written, every key optional, nothing checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub metrics_listen: Option<String>,
    /// The operators' API address (off unless set).
    pub api_listen: Option<String>,
    pub ca_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub level: Option<String>,
    pub retention_months: Option<u32>,
    pub max_body_bytes: Option<u64>,
    pub max_connections: Option<usize>,
    pub max_inflight_bytes: Option<u64>,
    /// Seconds a connection may go without a request before it is closed.
    pub idle_timeout_s: Option<u64>,
    /// Seconds between prunes of a filesystem store; 0 turns it off.
    pub prune_interval_s: Option<u64>,
    /// Seconds without a poll after which a host shows yellow (quiet).
    pub host_quiet_after_s: Option<u64>,
    /// Seconds without a poll after which a host shows red (silent).
    pub host_silent_after_s: Option<u64>,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    pub s3_path_style: Option<bool>,
    pub s3_multipart_threshold: Option<u64>,
    /// The collector's own host id: syslog device streams live under
    /// `v1/<host_id>/` and its digests are signed with its key.
    pub host_id: Option<String>,
    /// `[syslog]`: listeners, limits and `[[syslog.device]]` rules.
    pub syslog: Option<RawSyslog>,
    /// Device rules from `--devices FILE`, tried after the config's.
    #[serde(skip)]
    pub extra_devices: Vec<RawDevice>,
    #[serde(skip)]
    pub file: Option<PathBuf>,
    #[serde(skip)]
    pub from_flags: BTreeSet<&'static str>,
}

#[derive(Debug, thiserror::Error)]
#[error("{}", render(.file.as_deref(), .problems))]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub problems: Vec<String>,
}

fn render(file: Option<&Path>, problems: &[String]) -> String {
    let mut out = match file {
        Some(p) => format!("configuration {} is not valid", p.display()),
        None => "configuration is not valid".to_string(),
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(p);
    }
    out
}

impl RawConfig {
    pub fn from_file(path: &Path) -> anyhow::Result<RawConfig> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration file {}", path.display()))?;
        let mut raw: RawConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("configuration file {}: {}", path.display(), e))?;
        raw.file = Some(path.to_path_buf());
        Ok(raw)
    }

    /// Lays the values set by flags over the file's.
    pub fn merge_flags(mut self, flags: RawConfig) -> RawConfig {
        macro_rules! take {
            ($($f:ident),*) => {$(
                if flags.$f.is_some() {
                    self.$f = flags.$f;
                    self.from_flags.insert(stringify!($f));
                }
            )*};
        }
        take!(
            listen,
            metrics_listen,
            api_listen,
            ca_dir,
            store,
            state_dir,
            level,
            retention_months,
            max_body_bytes,
            max_connections,
            max_inflight_bytes,
            idle_timeout_s,
            prune_interval_s,
            host_quiet_after_s,
            host_silent_after_s,
            s3_endpoint,
            s3_region,
            s3_path_style,
            s3_multipart_threshold,
            host_id
        );
        if let Some(fs) = flags.syslog {
            let base = self.syslog.get_or_insert_with(RawSyslog::default);
            macro_rules! over {
                ($($f:ident),*) => {$( if fs.$f.is_some() { base.$f = fs.$f; } )*};
            }
            over!(
                udp,
                tcp,
                tls,
                tls_cert,
                tls_key,
                tls_client_ca,
                unknown_senders,
                digest_interval_secs
            );
        }
        self.extra_devices.extend(flags.extra_devices);
        self
    }

    fn key(&self, field: &'static str) -> String {
        if self.from_flags.contains(field) {
            format!("--{}", field.replace('_', "-"))
        } else {
            field.to_string()
        }
    }

    pub fn check(&self) -> Result<Config, ConfigError> {
        let mut problems = Vec::new();
        let mut bad =
            |field: &'static str, msg: String| problems.push(format!("{}: {msg}", self.key(field)));

        let addr = |field: &'static str,
                    value: Option<&str>,
                    default: &str,
                    bad: &mut dyn FnMut(&'static str, String)| {
            let text = value.unwrap_or(default);
            text.parse::<SocketAddr>()
                .map_err(|_| {
                    bad(
                        field,
                        format!("{text:?} is not an address:port such as {default}"),
                    )
                })
                .ok()
        };
        let listen = addr("listen", self.listen.as_deref(), DEFAULT_LISTEN, &mut bad);
        let metrics_listen = addr(
            "metrics_listen",
            self.metrics_listen.as_deref(),
            DEFAULT_METRICS_LISTEN,
            &mut bad,
        );
        let api_listen = match self.api_listen.as_deref() {
            None => Some(None),
            Some(text) => addr("api_listen", Some(text), "0.0.0.0:8444", &mut bad).map(Some),
        };
        if matches!(api_listen, Some(Some(_))) && self.ca_dir.is_none() {
            bad(
                "api_listen",
                "needs ca_dir: operators authenticate with client certificates from the collector CA                  (custody-collector operator add NAME --role ROLE)"
                    .into(),
            );
        }
        let syslog_wanted = self
            .syslog
            .as_ref()
            .is_some_and(|s| s.udp.is_some() || s.tcp.is_some() || s.tls.is_some());
        // `Some(None)`: valid, no HTTPS ingest.
        let ca_dir = match &self.ca_dir {
            Some(d) if d.is_absolute() => Some(Some(d.clone())),
            Some(d) => {
                bad(
                    "ca_dir",
                    format!("{} is relative; use an absolute path", d.display()),
                );
                None
            }
            None if syslog_wanted => Some(None),
            None => {
                bad(
                    "ca_dir",
                    "not set and no syslog listener either, so nothing to listen on: give the directory made by \
                     `custody-collector ca init --dir DIR` (agents over HTTPS) and/or syslog listeners \
                     (--syslog-udp, --syslog-tcp, --syslog-tls, or [syslog] udp/tcp/tls)"
                        .into(),
                );
                None
            }
        };
        let state_dir = match &self.state_dir {
            None => Some(PathBuf::from(DEFAULT_STATE_DIR)),
            Some(d) if d.is_absolute() => Some(d.clone()),
            Some(d) => {
                bad(
                    "state_dir",
                    format!(
                        "{} is relative; use an absolute path such as {DEFAULT_STATE_DIR}",
                        d.display()
                    ),
                );
                None
            }
        };
        let level = match &self.level {
            None => Some(DEFAULT_LEVEL),
            Some(t) => t
                .parse::<Level>()
                .map_err(|_| {
                    bad(
                        "level",
                        format!("{t:?} is not a responsibility level; use one of A, B, C, D, E"),
                    )
                })
                .ok(),
        };
        let retention = level.and_then(|level| {
            RetentionPolicy::new(level, self.retention_months)
                .map_err(|e| {
                    let f = if self.retention_months.is_some() {
                        "retention_months"
                    } else {
                        "level"
                    };
                    bad(f, e.to_string())
                })
                .ok()
        });
        let s3_keys = [
            ("s3_endpoint", self.s3_endpoint.is_some()),
            ("s3_region", self.s3_region.is_some()),
            ("s3_path_style", self.s3_path_style.is_some()),
            (
                "s3_multipart_threshold",
                self.s3_multipart_threshold.is_some(),
            ),
        ];
        let store = match self.store.as_deref() {
            None => {
                bad(
                    "store",
                    "not set; give a directory (store = \"/srv/custody\") or s3://BUCKET/PREFIX"
                        .into(),
                );
                None
            }
            Some(url) if url.starts_with("s3://") => match S3Settings::parse_url(url) {
                Err(why) => {
                    bad("store", why);
                    None
                }
                Ok((bucket, prefix)) => {
                    if let Some(e) = &self.s3_endpoint {
                        if !(e.starts_with("http://") || e.starts_with("https://")) {
                            bad(
                                "s3_endpoint",
                                format!("{e:?} is not an http:// or https:// URL"),
                            );
                        }
                    }
                    let threshold = self
                        .s3_multipart_threshold
                        .unwrap_or(DEFAULT_MULTIPART_THRESHOLD);
                    if threshold == 0 {
                        bad("s3_multipart_threshold", "must be greater than 0".into());
                    }
                    Some(StoreTarget::S3(S3Settings {
                        endpoint: self.s3_endpoint.clone(),
                        region: self.s3_region.clone(),
                        path_style: self.s3_path_style.unwrap_or(self.s3_endpoint.is_some()),
                        multipart_threshold: threshold,
                        require_object_lock: level.is_none_or(|l| l.six_months_required()),
                        ..S3Settings::new(bucket, prefix)
                    }))
                }
            },
            Some(other) if other.contains("://") => {
                bad("store", format!("{other:?} is not a known store kind; use an absolute directory or s3://BUCKET/PREFIX"));
                None
            }
            Some(dir) => {
                if let Some((field, _)) = s3_keys.iter().find(|(_, set)| *set) {
                    bad(
                        field,
                        format!("applies only to an S3 store, not to {dir:?}"),
                    );
                }
                if Path::new(dir).is_absolute() {
                    Some(StoreTarget::Filesystem(PathBuf::from(dir)))
                } else {
                    bad(
                        "store",
                        format!("{dir:?} is relative; use an absolute directory path"),
                    );
                    None
                }
            }
        };
        let mut positive = |field: &'static str, v: Option<u64>, default: u64| {
            let v = v.unwrap_or(default);
            if v == 0 {
                bad(field, "must be greater than 0".into());
            }
            v
        };
        let max_body_bytes = positive(
            "max_body_bytes",
            self.max_body_bytes,
            DEFAULT_MAX_BODY_BYTES,
        );
        let max_connections = positive(
            "max_connections",
            self.max_connections.map(|v| v as u64),
            DEFAULT_MAX_CONNECTIONS as u64,
        ) as usize;
        let max_inflight_bytes = positive(
            "max_inflight_bytes",
            self.max_inflight_bytes,
            DEFAULT_MAX_INFLIGHT_BYTES,
        );
        let idle_timeout = Duration::from_secs(positive(
            "idle_timeout_s",
            self.idle_timeout_s,
            DEFAULT_IDLE_TIMEOUT_S,
        ));
        let host_thresholds = HostThresholds {
            quiet_after: Duration::from_secs(positive(
                "host_quiet_after_s",
                self.host_quiet_after_s,
                DEFAULT_HOST_QUIET_AFTER_S,
            )),
            silent_after: Duration::from_secs(positive(
                "host_silent_after_s",
                self.host_silent_after_s,
                DEFAULT_HOST_SILENT_AFTER_S,
            )),
        };
        if host_thresholds.silent_after <= host_thresholds.quiet_after {
            bad(
                "host_silent_after_s",
                format!(
                    "{} is not longer than host_quiet_after_s ({}); a host turns yellow before it turns red",
                    host_thresholds.silent_after.as_secs(),
                    host_thresholds.quiet_after.as_secs()
                ),
            );
        }
        if max_inflight_bytes < max_body_bytes {
            bad(
                "max_inflight_bytes",
                format!("{max_inflight_bytes} is smaller than max_body_bytes ({max_body_bytes}); one upload must fit"),
            );
        }
        if max_inflight_bytes > u32::MAX as u64 {
            bad(
                "max_inflight_bytes",
                format!(
                    "{max_inflight_bytes} is too large; use at most {}",
                    u32::MAX
                ),
            );
        }
        let prune_interval = match self.prune_interval_s.unwrap_or(DEFAULT_PRUNE_INTERVAL_S) {
            0 => None,
            s => Some(Duration::from_secs(s)),
        };
        // `Some(None)`: valid, no syslog.
        let syslog = match (&self.syslog, &state_dir, retention) {
            (Some(raw), Some(state_dir), Some(retention)) if syslog_wanted => {
                let host = match &self.host_id {
                    None => {
                        bad(
                            "host_id",
                            "not set; syslog device streams are stored under v1/<host_id>/ \
                             (the collector's own name, e.g. collector01)"
                                .into(),
                        );
                        None
                    }
                    Some(h) => HostId::new(h.clone())
                        .map_err(|e| bad("host_id", format!("{h:?} {}", e.why)))
                        .ok(),
                };
                let config =
                    SyslogConfig::from_raw(raw, &self.extra_devices, state_dir.clone(), retention)
                        .map_err(|e| bad("syslog", format!("{e:#}")))
                        .ok();
                match (host, config) {
                    (Some(host), Some(config)) => Some(Some(SyslogSetup { config, host })),
                    _ => None,
                }
            }
            _ => Some(None),
        };
        match (
            (listen, api_listen),
            metrics_listen,
            ca_dir,
            state_dir,
            retention,
            store,
            syslog,
            problems.is_empty(),
        ) {
            (
                (Some(listen), Some(api_listen)),
                Some(metrics_listen),
                Some(ca_dir),
                Some(state_dir),
                Some(retention),
                Some(store),
                Some(syslog),
                true,
            ) => Ok(Config {
                listen,
                metrics_listen,
                api_listen,
                ca_dir,
                store,
                state_dir,
                retention,
                max_body_bytes,
                max_connections,
                max_inflight_bytes,
                idle_timeout,
                prune_interval,
                syslog,
                host_thresholds,
            }),
            _ => Err(ConfigError {
                file: self.file.clone(),
                problems,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> RawConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("collector.example.toml");
        let c = RawConfig::from_file(&path).unwrap().check().unwrap();
        assert_eq!(c.retention.level(), Level::B);
    }

    #[test]
    fn minimal_file_gets_defaults() {
        let c = parse("ca_dir = \"/etc/custody/ca\"\nstore = \"/srv/custody\"\n")
            .check()
            .unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(c.store, StoreTarget::Filesystem("/srv/custody".into()));
        assert_eq!(c.retention.level(), Level::C);
        assert_eq!(c.prune_interval, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn every_problem_names_its_key_or_flag() {
        let mut raw = parse("store = \"rel\"\nlisten = \"x\"\nlevel = \"Z\"\ns3_region = \"eu\"\n");
        raw = raw.merge_flags(RawConfig {
            max_body_bytes: Some(0),
            ..Default::default()
        });
        let err = raw.check().unwrap_err().to_string();
        for want in [
            "store: \"rel\" is relative",
            "listen: \"x\"",
            "level: \"Z\"",
            "ca_dir: not set",
            "s3_region: applies only",
            "--max-body-bytes: must be greater than 0",
        ] {
            assert!(err.contains(want), "{want} missing from {err}");
        }
    }

    #[test]
    fn host_thresholds_default_and_must_be_ordered() {
        let c = parse("ca_dir = \"/ca\"\nstore = \"/srv/custody\"\n")
            .check()
            .unwrap();
        assert_eq!(c.host_thresholds, HostThresholds::default());
        assert_eq!(c.host_thresholds.quiet_after, Duration::from_secs(300));
        let c = parse("ca_dir = \"/ca\"\nstore = \"/srv/custody\"\nhost_quiet_after_s = 60\nhost_silent_after_s = 600\n")
            .check()
            .unwrap();
        assert_eq!(c.host_thresholds.silent_after, Duration::from_secs(600));
        let err = parse("ca_dir = \"/ca\"\nstore = \"/srv/custody\"\nhost_quiet_after_s = 600\nhost_silent_after_s = 60\n")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("host_silent_after_s: 60 is not longer"),
            "{err}"
        );
    }

    #[test]
    fn the_operators_api_is_off_unless_set_and_needs_the_ca() {
        let c = parse("ca_dir = \"/ca\"\nstore = \"/srv/custody\"\n")
            .check()
            .unwrap();
        assert_eq!(c.api_listen, None);
        let c =
            parse("ca_dir = \"/ca\"\nstore = \"/srv/custody\"\napi_listen = \"127.0.0.1:8444\"\n")
                .check()
                .unwrap();
        assert_eq!(c.api_listen.map(|a| a.port()), Some(8444));
        let err = parse("host_id = \"c1\"\nstore = \"/srv/custody\"\napi_listen = \"127.0.0.1:8444\"\n[syslog]\nudp = \"127.0.0.1:5514\"\n")
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_listen: needs ca_dir"), "{err}");
        let err = parse("ca_dir = \"/ca\"\nstore = \"/srv/custody\"\napi_listen = \"nope\"\n")
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_listen: \"nope\""), "{err}");
    }

    #[test]
    fn s3_store_requires_object_lock_by_level() {
        let c = parse("ca_dir = \"/ca\"\nstore = \"s3://evidence/x\"\ns3_endpoint = \"http://127.0.0.1:1\"\nlevel = \"E\"\n").check().unwrap();
        let StoreTarget::S3(s3) = c.store else {
            panic!()
        };
        assert!(s3.path_style && !s3.require_object_lock);
    }
}
