//! Syslog settings: the raw TOML form (`[syslog]` with `[[syslog.device]]`
//! tables, or a devices file of `[[device]]` tables) and the checked form
//! the service runs with. Only the raw → checked conversion can fail, and
//! its messages name the key and say what would be valid.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use custody_evidence::retention::RetentionPolicy;
use custody_evidence::{Category, StreamId};
use serde::Deserialize;

use super::devices::{parse_address, Device, DeviceMap, DeviceRule, UnknownSenders};

/// Default largest UDP message: a datagram cannot be larger anyway.
pub const DEFAULT_MAX_MESSAGE_UDP: usize = 64 * 1024;
/// Default largest TCP/TLS message (RFC 5425 receivers SHOULD accept 8 KiB;
/// firewalls with long URLs exceed that).
pub const DEFAULT_MAX_MESSAGE_TCP: usize = 1024 * 1024;
/// Same segment limits as the agent (FORMAT.md §2.1).
pub const DEFAULT_SEGMENT_MAX_BYTES: usize = 4 * 1024 * 1024;
pub const DEFAULT_SEGMENT_MAX_AGE: Duration = Duration::from_secs(1);
pub const DEFAULT_DIGEST_INTERVAL: Duration = Duration::from_secs(60);
/// Messages received but not yet in the store, over all devices. When it is
/// full, TCP and TLS connections are not read (back-pressure) and UDP
/// datagrams are dropped and counted.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// 4 MiB: some seconds of a busy firewall's syslog. The kernel caps it at
/// `net.core.rmem_max`.
pub const DEFAULT_UDP_RECEIVE_BUFFER: usize = 4 * 1024 * 1024;

/// One `[[syslog.device]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub name: String,
    pub category: String,
    #[serde(default)]
    pub core_system: bool,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub hostnames: Vec<String>,
}

/// The `[syslog]` table of the collector's configuration file. Every key is
/// optional; flags override it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyslog {
    pub udp: Option<String>,
    pub tcp: Option<String>,
    pub tls: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    /// `accept` (default) or `refuse`.
    pub unknown_senders: Option<String>,
    pub unknown_category: Option<String>,
    pub unknown_core_system: Option<bool>,
    pub max_message_udp: Option<usize>,
    pub max_message_tcp: Option<usize>,
    pub segment_max_bytes: Option<usize>,
    pub segment_max_age_ms: Option<u64>,
    pub digest_interval_secs: Option<u64>,
    pub max_buffered_bytes: Option<usize>,
    pub max_connections: Option<usize>,
    pub udp_receive_buffer: Option<usize>,
    pub zstd_level: Option<i32>,
    #[serde(default)]
    pub device: Vec<RawDevice>,
}

/// A devices file (`--devices FILE`): `[[device]]` tables only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevicesFile {
    #[serde(default)]
    pub device: Vec<RawDevice>,
}

/// Where the TLS listener's certificate and key are (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PEM CA certificate(s): when given, every TLS client must present a
    /// certificate issued by one of them (RFC 5425 §5.2 certificate path
    /// validation); without it, clients are not authenticated.
    pub client_ca: Option<PathBuf>,
}

/// The checked settings the syslog service runs with.
#[derive(Debug, Clone)]
pub struct SyslogConfig {
    /// The collector's state directory; syslog keeps its files under
    /// `STATE/syslog/`.
    pub state_dir: PathBuf,
    pub retention: RetentionPolicy,
    pub udp: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub tls: Option<SocketAddr>,
    pub tls_files: Option<TlsFiles>,
    pub devices: Arc<DeviceMap>,
    pub max_message_udp: usize,
    pub max_message_tcp: usize,
    pub segment_max_bytes: usize,
    pub segment_max_age: Duration,
    pub digest_interval: Duration,
    pub max_buffered_bytes: usize,
    pub max_connections: usize,
    /// SO_RCVBUF asked for on the UDP socket: datagrams that arrive while
    /// the reader is busy wait there instead of being dropped by the kernel.
    pub udp_receive_buffer: usize,
    pub zstd_level: i32,
    /// After shutdown is asked for, how long a store that refuses writes is
    /// retried before the messages still in memory are given up.
    pub shutdown_grace: Duration,
}

fn parse_addr(key: &str, text: &str) -> anyhow::Result<SocketAddr> {
    text.parse().with_context(|| {
        format!("{key}: {text:?} is not an address with a port, e.g. 0.0.0.0:514 or [::]:6514")
    })
}

/// Checks one device table; `where_` names the file for messages.
pub fn check_device(raw: &RawDevice, where_: &str) -> anyhow::Result<DeviceRule> {
    let name = StreamId::new(raw.name.clone()).with_context(|| {
        format!(
            "{where_}: device name {:?} (it becomes the stream id)",
            raw.name
        )
    })?;
    let category: Category = raw
        .category
        .parse()
        .with_context(|| format!("{where_}: device {:?} category", raw.name))?;
    if raw.addresses.is_empty() && raw.hostnames.is_empty() {
        bail!(
            "{where_}: device {:?} has neither addresses nor hostnames: give at least one, or every sender would \
             match it",
            raw.name
        );
    }
    let addresses = raw
        .addresses
        .iter()
        .map(|a| parse_address(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{where_}: device {:?} addresses: {e}", raw.name))?;
    Ok(DeviceRule {
        device: Arc::new(Device {
            name,
            category,
            core_system: raw.core_system,
        }),
        addresses,
        hostnames: raw.hostnames.iter().map(|h| h.to_lowercase()).collect(),
    })
}

impl SyslogConfig {
    /// Checks the raw settings. `extra_devices` are the rules of a devices file,
    /// tried after those in `raw.device`.
    pub fn from_raw(
        raw: &RawSyslog,
        extra_devices: &[RawDevice],
        state_dir: PathBuf,
        retention: RetentionPolicy,
    ) -> anyhow::Result<Self> {
        let mut rules = Vec::new();
        let mut names = BTreeSet::new();
        for d in raw.device.iter().chain(extra_devices) {
            let rule = check_device(d, "[[syslog.device]]")?;
            if !names.insert(rule.device.name.clone()) {
                bail!(
                    "[[syslog.device]]: device name {:?} is used twice: each device is one stream; give the \
                     second rule the same addresses/hostnames under one name",
                    d.name
                );
            }
            if rule.device.name.as_str().starts_with("unknown-") {
                bail!("[[syslog.device]]: device name {:?} starts with \"unknown-\", which is reserved for unmapped senders", d.name);
            }
            rules.push(rule);
        }
        let unknown = match raw.unknown_senders.as_deref().unwrap_or("accept") {
            "accept" => UnknownSenders::Accept {
                category: raw
                    .unknown_category
                    .as_deref()
                    .unwrap_or("os")
                    .parse()
                    .context("syslog.unknown_category")?,
                core_system: raw.unknown_core_system.unwrap_or(false),
            },
            "refuse" => UnknownSenders::Refuse,
            other => bail!("syslog.unknown_senders: {other:?}: use \"accept\" or \"refuse\""),
        };
        let udp = raw
            .udp
            .as_deref()
            .map(|a| parse_addr("syslog.udp", a))
            .transpose()?;
        let tcp = raw
            .tcp
            .as_deref()
            .map(|a| parse_addr("syslog.tcp", a))
            .transpose()?;
        let tls = raw
            .tls
            .as_deref()
            .map(|a| parse_addr("syslog.tls", a))
            .transpose()?;
        let tls_files = match (&raw.tls_cert, &raw.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: raw.tls_client_ca.clone(),
            }),
            (None, None) => None,
            _ => bail!("syslog.tls_cert and syslog.tls_key (--syslog-tls-cert/--syslog-tls-key) go together: give both"),
        };
        if raw.tls_client_ca.is_some() && tls_files.is_none() {
            bail!("syslog.tls_client_ca (--syslog-tls-client-ca) needs the TLS listener: give --syslog-tls, --syslog-tls-cert and --syslog-tls-key");
        }
        if tls.is_some() && tls_files.is_none() {
            bail!("syslog.tls (--syslog-tls) needs a certificate and key: give --syslog-tls-cert FILE and --syslog-tls-key FILE (PEM)");
        }
        let segment_max_bytes = raw.segment_max_bytes.unwrap_or(DEFAULT_SEGMENT_MAX_BYTES);
        let max_message_udp = raw.max_message_udp.unwrap_or(DEFAULT_MAX_MESSAGE_UDP);
        let max_message_tcp = raw.max_message_tcp.unwrap_or(DEFAULT_MAX_MESSAGE_TCP);
        let largest = custody_evidence::octets::framed_len(max_message_udp.max(max_message_tcp));
        if !(1024..=64 * 1024 * 1024).contains(&segment_max_bytes) {
            bail!("syslog.segment_max_bytes: {segment_max_bytes} is out of range; use 1024 to 67108864");
        }
        if max_message_udp == 0 || max_message_tcp == 0 || largest > segment_max_bytes {
            bail!(
                "syslog.max_message_udp/max_message_tcp ({max_message_udp}/{max_message_tcp}) must be at least 1 and \
                 a framed message must fit in one segment (segment_max_bytes {segment_max_bytes}): a message is never \
                 split"
            );
        }
        let max_buffered_bytes = raw.max_buffered_bytes.unwrap_or(DEFAULT_MAX_BUFFERED_BYTES);
        if max_buffered_bytes < 2 * segment_max_bytes {
            bail!(
                "syslog.max_buffered_bytes: {max_buffered_bytes} is less than two segments ({}); raise it",
                2 * segment_max_bytes
            );
        }
        let zstd_level = raw.zstd_level.unwrap_or(3);
        if !(1..=19).contains(&zstd_level) {
            bail!("syslog.zstd_level: {zstd_level} is out of range; use 1 to 19");
        }
        let age_ms = raw.segment_max_age_ms.unwrap_or(1000);
        if !(10..=60_000).contains(&age_ms) {
            bail!("syslog.segment_max_age_ms: {age_ms} is out of range; use 10 to 60000");
        }
        let digest_secs = raw.digest_interval_secs.unwrap_or(60);
        if !(1..=3600).contains(&digest_secs) {
            bail!("syslog.digest_interval_secs: {digest_secs} is out of range; use 1 to 3600");
        }
        Ok(SyslogConfig {
            state_dir,
            retention,
            udp,
            tcp,
            tls,
            tls_files,
            devices: Arc::new(DeviceMap::new(rules, unknown)),
            max_message_udp,
            max_message_tcp,
            segment_max_bytes,
            segment_max_age: Duration::from_millis(age_ms),
            digest_interval: Duration::from_secs(digest_secs),
            max_buffered_bytes,
            max_connections: raw
                .max_connections
                .unwrap_or(DEFAULT_MAX_CONNECTIONS)
                .max(1),
            udp_receive_buffer: raw.udp_receive_buffer.unwrap_or(DEFAULT_UDP_RECEIVE_BUFFER),
            zstd_level,
            shutdown_grace: Duration::from_secs(30),
        })
    }

    /// Where syslog keeps its checkpoint and in-flight records.
    pub fn syslog_dir(&self) -> PathBuf {
        self.state_dir.join("syslog")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_evidence::retention::Level;

    fn policy() -> RetentionPolicy {
        RetentionPolicy::new(Level::C, None).unwrap()
    }

    #[test]
    fn parses_a_config_table() {
        let text = r#"
udp = "127.0.0.1:5514"
unknown_senders = "refuse"
[[device]]
name = "fw01"
category = "os"
core_system = true
addresses = ["192.0.2.1", "198.51.100.0/24"]
[[device]]
name = "web01"
category = "web"
hostnames = ["web01.example"]
"#;
        let raw: RawSyslog = toml::from_str(text).unwrap();
        let cfg = SyslogConfig::from_raw(&raw, &[], "/tmp/x".into(), policy()).unwrap();
        assert_eq!(cfg.udp, Some("127.0.0.1:5514".parse().unwrap()));
        assert_eq!(cfg.devices.rules().len(), 2);
        assert!(cfg.devices.rules()[0].device.core_system);
    }

    #[test]
    fn refusals_name_the_key() {
        let check = |text: &str| -> String {
            let raw: RawSyslog = toml::from_str(text).unwrap();
            format!(
                "{:#}",
                SyslogConfig::from_raw(&raw, &[], "/tmp/x".into(), policy()).unwrap_err()
            )
        };
        assert!(check("udp = \"514\"").contains("syslog.udp"));
        assert!(check("tls = \"0.0.0.0:6514\"").contains("--syslog-tls-cert"));
        assert!(check("unknown_senders = \"maybe\"").contains("accept"));
        assert!(
            check("[[device]]\nname = \"a b\"\ncategory = \"os\"\naddresses = [\"10.0.0.1\"]")
                .contains("device name")
        );
        assert!(
            check("[[device]]\nname = \"fw\"\ncategory = \"fw\"\naddresses = [\"10.0.0.1\"]")
                .contains("category")
        );
        assert!(check("[[device]]\nname = \"fw\"\ncategory = \"os\"").contains("neither addresses"));
        assert!(check("max_message_tcp = 5000000").contains("fit in one segment"));
    }
}
