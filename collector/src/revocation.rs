//! Client certificate revocation: `enroll` records every certificate it
//! issues in `issued.jsonl`, `revoke` appends to `revoked.jsonl` (both in
//! the CA directory, one JSON object a line), and the serving collector
//! refuses revoked certificates.
//!
//! The serving collector checks the certificate of every request, not only
//! at the handshake, so a revocation also cuts off connections already
//! open. Before each check it compares `revoked.jsonl`'s modification time,
//! size and inode with what it last read (one `stat`), and reads the file
//! again when they changed: `revoke` takes effect on the next request,
//! without a restart or a signal.
//!
//! A refusal is an HTTP 403 whose body names the serial, the host and what
//! to do (re-enroll), not a TLS alert, which could carry no reason (the
//! same choice as for a missing certificate, see [`crate::tls`]).
//!
//! Serials are compared as lowercase hex without leading zeros or colons,
//! so the form `openssl x509 -noout -serial` prints is accepted as is.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{bail, Context};
use custody_evidence::HostId;
use serde::{Deserialize, Serialize};

pub const ISSUED_FILE: &str = "issued.jsonl";
pub const REVOKED_FILE: &str = "revoked.jsonl";

/// One certificate `enroll` issued.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Issued {
    pub serial: String,
    pub host: String,
    /// RFC 3339 UTC.
    pub issued: String,
    pub not_after: String,
}

/// One revoked certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Revoked {
    pub serial: String,
    /// The host it was issued to, when known.
    pub host: Option<String>,
    /// RFC 3339 UTC.
    pub revoked: String,
}

/// `serial` as compared: lowercase hex, no colons, no leading zeros.
pub fn normalize_serial(serial: &str) -> Option<String> {
    let hex: String = serial
        .trim()
        .trim_start_matches("serial=")
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let trimmed = hex.trim_start_matches('0');
    Some(if trimmed.is_empty() { "0" } else { trimmed }.to_string())
}

/// The serial of a DER certificate, normalized.
pub fn serial_of_certificate(der: &[u8]) -> anyhow::Result<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("client certificate does not parse: {e}"))?;
    normalize_serial(&hex::encode(cert.raw_serial()))
        .context("client certificate has an empty serial")
}

/// The entries of a JSON Lines file of the CA directory (none when it
/// does not exist yet), naming the file and line of a bad one.
pub(crate) fn read_lines<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{} line {}: not a valid entry", path.display(), i + 1))
        })
        .collect()
}

/// Appends one entry to a JSON Lines file of the CA directory, synced.
pub(crate) fn append_line<T: Serialize>(path: &Path, entry: &T) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(entry).context("encoding an entry")?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Records a certificate `enroll` issued.
pub fn record_issued(ca_dir: &Path, entry: &Issued) -> anyhow::Result<()> {
    append_line(&ca_dir.join(ISSUED_FILE), entry)
}

/// What to revoke.
pub enum Target<'a> {
    /// Every certificate issued to the host so far (as `issued.jsonl`
    /// records); certificates enrolled later are not affected.
    Host(&'a HostId),
    Serial(&'a str),
}

/// Revokes `target` in `ca_dir`; returns what was newly revoked.
pub fn revoke(ca_dir: &Path, target: Target<'_>) -> anyhow::Result<Vec<Revoked>> {
    if !ca_dir.join(crate::pki::CA_CERT_FILE).exists() {
        bail!(
            "{} holds no CA ({} missing); give the directory made by `custody-collector ca init`",
            ca_dir.display(),
            crate::pki::CA_CERT_FILE
        );
    }
    let issued: Vec<Issued> = read_lines(&ca_dir.join(ISSUED_FILE))?;
    let already: Vec<Revoked> = read_lines(&ca_dir.join(REVOKED_FILE))?;
    let is_revoked = |s: &str| already.iter().any(|r| r.serial == s);
    let now = custody_evidence::timefmt::format_utc(time::OffsetDateTime::now_utc());
    let wanted: Vec<Revoked> = match target {
        Target::Host(host) => {
            let serials: Vec<&Issued> = issued.iter().filter(|i| i.host == host.as_str()).collect();
            if serials.is_empty() {
                bail!(
                    "no certificate issued to host {host:?} is recorded in {}; revoke it by serial \
                     (--serial, as `openssl x509 -noout -serial -in client.pem` prints it)",
                    ca_dir.join(ISSUED_FILE).display()
                );
            }
            serials
                .into_iter()
                .filter(|i| !is_revoked(&i.serial))
                .map(|i| Revoked {
                    serial: i.serial.clone(),
                    host: Some(i.host.clone()),
                    revoked: now.clone(),
                })
                .collect()
        }
        Target::Serial(text) => {
            let serial = normalize_serial(text).with_context(|| {
                format!("--serial {text:?} is not a hexadecimal serial such as 4A3F09 or 4a:3f:09")
            })?;
            if is_revoked(&serial) {
                Vec::new()
            } else {
                vec![Revoked {
                    host: issued
                        .iter()
                        .find(|i| i.serial == serial)
                        .map(|i| i.host.clone()),
                    serial,
                    revoked: now,
                }]
            }
        }
    };
    for r in &wanted {
        append_line(&ca_dir.join(REVOKED_FILE), r)?;
    }
    Ok(wanted)
}

/// The serving collector's view of `revoked.jsonl`, read again whenever
/// the file changes.
pub struct Revocations {
    path: Option<PathBuf>,
    state: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    /// (mtime, size, inode) of the file as last read; `None`: absent.
    seen: Option<(SystemTime, u64, u64)>,
    revoked: HashMap<String, Revoked>,
}

impl Revocations {
    /// No revocation list (a collector without HTTPS ingest, unit tests).
    pub fn none() -> Revocations {
        Revocations {
            path: None,
            state: Mutex::default(),
        }
    }

    /// Watches `ca_dir/revoked.jsonl`; reads it now, so a broken file stops
    /// the start-up instead of being found at the first request.
    pub fn watch(ca_dir: &Path) -> anyhow::Result<Revocations> {
        let r = Revocations {
            path: Some(ca_dir.join(REVOKED_FILE)),
            state: Mutex::default(),
        };
        r.refresh()?;
        Ok(r)
    }

    /// Reads the file again if it changed since it was last read.
    fn refresh(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let now = match std::fs::metadata(path) {
            Ok(m) => Some((
                m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                m.len(),
                m.ino(),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.seen == now {
            return Ok(());
        }
        let entries: Vec<Revoked> = read_lines(path)?;
        let count = entries.len();
        state.revoked = entries.into_iter().map(|r| (r.serial.clone(), r)).collect();
        state.seen = now;
        tracing::info!(file = %path.display(), revoked = count, "revocation list read");
        Ok(())
    }

    /// The revocation of `serial`, if it is revoked. A revocation list that
    /// cannot be read counts as revoking nothing new: the entries read
    /// before are kept, and the problem is logged.
    pub fn check(&self, serial: &str) -> Option<Revoked> {
        if let Err(e) = self.refresh() {
            tracing::error!("revocation list unreadable, using the last one read: {e:#}");
        }
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.revoked.get(serial).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_compare_in_any_usual_spelling() {
        assert_eq!(normalize_serial("serial=04A3F0").as_deref(), Some("4a3f0"));
        assert_eq!(normalize_serial("04:a3:f0").as_deref(), Some("4a3f0"));
        assert_eq!(normalize_serial("xyz"), None);
        assert_eq!(normalize_serial(""), None);
    }

    #[test]
    fn revoking_a_host_revokes_what_it_was_issued_and_is_seen_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        crate::pki::ca_init(&ca, &[]).unwrap();
        let host = HostId::new("web01").unwrap();
        crate::pki::enroll(&ca, &host, &dir.path().join("e1")).unwrap();
        let serial = read_lines::<Issued>(&ca.join(ISSUED_FILE)).unwrap()[0]
            .serial
            .clone();
        let watch = Revocations::watch(&ca).unwrap();
        assert!(watch.check(&serial).is_none());
        let done = revoke(&ca, Target::Host(&host)).unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(watch.check(&serial).unwrap().host.as_deref(), Some("web01"));
        assert!(revoke(&ca, Target::Host(&host)).unwrap().is_empty(), "once");
        let other = HostId::new("db01").unwrap();
        let err = revoke(&ca, Target::Host(&other)).unwrap_err().to_string();
        assert!(err.contains("--serial"), "{err}");
    }
}
