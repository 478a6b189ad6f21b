//! The collector store: an agent ships to a `custody-collector` over HTTPS,
//! authenticated by the client certificate the collector's CA issued for
//! this host (`custody-collector enroll`). The protocol is FORMAT.md,
//! "Collector ingest protocol"; the constants below are its names, shared
//! with the collector so both sides spell them the same way.
//!
//! How the [`ObjectStore`] promises map onto HTTP:
//! - `put` is `PUT /v1/objects/<key>` with the retain-until time in
//!   [`RETAIN_UNTIL_HEADER`]. 201 is [`PutOutcome::Created`], 200
//!   [`PutOutcome::AlreadyPresent`] (an identical retry), 409
//!   [`StoreError::Conflict`] (different bytes under an existing name, never
//!   overwritten). The collector answers only once the object is durable in
//!   its own store.
//! - 503, other 5xx, timeouts and connection failures are
//!   [`StoreError::Unavailable`] (transient: the agent keeps the data in its
//!   spool and retries). 400, 401, 403 and 413 are [`StoreError::Refused`]
//!   with the collector's reason: sending the same request again cannot
//!   succeed.
//! - A host can never delete, hold or prune through the collector:
//!   [`ObjectStore::set_legal_hold`] and [`ObjectStore::prune`] are refused
//!   here without a request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::{
    check_key, format_utc, parse_utc, ObjectInfo, ObjectStore, PruneReport, PutOptions, PutOutcome,
    StoreError,
};

/// Objects live under this path: `PUT /v1/objects/v1/web01/streams/…`.
pub const OBJECTS_PATH: &str = "/v1/objects/";
/// `GET /v1/list?prefix=v1/web01/` answers `{"keys":[…]}`, sorted.
pub const LIST_PATH: &str = "/v1/list";
/// Request header of a `PUT` and response header of a `HEAD`: the object's
/// retain-until time, RFC 3339 UTC.
pub const RETAIN_UNTIL_HEADER: &str = "custody-retain-until";
/// Response header of a `HEAD`: `true` when the object is under legal hold.
pub const LEGAL_HOLD_HEADER: &str = "custody-legal-hold";
/// `GET /v1/incidents`: the open incidents that name the calling host and
/// that it has not acted on yet ([`IncidentNotices`]). `POST
/// /v1/incidents/<id>/status` with an [`IncidentReport`]: the host's
/// progress (FORMAT.md §15.2).
pub const INCIDENTS_PATH: &str = "/v1/incidents";

/// One incident a host is asked to snapshot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentNotice {
    pub id: String,
    /// Who opened it (`incident open --operator`).
    pub operator: String,
    pub reason: Option<String>,
    /// When it was opened, RFC 3339 UTC.
    pub opened: String,
}

/// The answer to `GET /v1/incidents`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentNotices {
    pub incidents: Vec<IncidentNotice>,
}

/// A host's progress on one incident, as it reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IncidentReport {
    /// `started`, `uploading`, `stored` or `failed`.
    pub state: String,
    pub evidence_id: Option<String>,
    pub bundle_key: Option<String>,
    /// Why it failed (`failed` only).
    pub reason: Option<String>,
}

/// Files `custody-collector enroll` writes into an enrollment directory.
pub const ENROLL_CA_FILE: &str = "ca.pem";
pub const ENROLL_CERT_FILE: &str = "client.pem";
pub const ENROLL_KEY_FILE: &str = "client.key";

/// Where the collector is and the enrollment material to reach it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorSettings {
    /// `https://HOST:PORT` (no path).
    pub url: String,
    /// The collector's CA certificate (PEM): the only root trusted.
    pub ca: PathBuf,
    /// This host's client certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl CollectorSettings {
    /// Settings from an enrollment directory as written by
    /// `custody-collector enroll --out DIR`.
    pub fn from_enrollment_dir(url: impl Into<String>, dir: &Path) -> CollectorSettings {
        CollectorSettings {
            url: url.into(),
            ca: dir.join(ENROLL_CA_FILE),
            cert: dir.join(ENROLL_CERT_FILE),
            key: dir.join(ENROLL_KEY_FILE),
        }
    }

    /// Checks `https://HOST[:PORT]` (no path, query or credentials); the
    /// message says what would be valid.
    pub fn check_url(url: &str) -> Result<(), String> {
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            format!("{url:?} does not start with https:// (the collector is only reached over TLS)")
        })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Err(format!("{url:?} names no host; use https://HOST:PORT"));
        }
        if rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "{url:?} must be only https://HOST:PORT, without a path, query or user"
            ));
        }
        reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a valid URL: {e}"))?;
        Ok(())
    }
}

/// An [`ObjectStore`] that is a collector reached over mutually
/// authenticated HTTPS. See the module documentation.
pub struct CollectorStore {
    client: reqwest::Client,
    base: String,
}

fn pem_err(path: &Path, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Refused {
        what: format!("collector enrollment file {}", path.display()),
        reason: format!(
            "cannot read {what}: {e}; give the files written by `custody-collector enroll`"
        ),
    }
}

impl CollectorStore {
    /// Reads the enrollment material and builds the TLS client. No request
    /// is made: a collector that is down is found (and retried) at the
    /// first `put`.
    pub fn open(settings: &CollectorSettings) -> Result<CollectorStore, StoreError> {
        CollectorSettings::check_url(&settings.url).map_err(|reason| StoreError::Refused {
            what: "collector URL".into(),
            reason,
        })?;
        let mut roots = rustls::RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(&settings.ca)
            .map_err(|e| pem_err(&settings.ca, "the collector CA certificate", e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&settings.ca, "the collector CA certificate", e))?;
        if cas.is_empty() {
            return Err(pem_err(
                &settings.ca,
                "the collector CA certificate",
                "no CERTIFICATE in the file",
            ));
        }
        for ca in cas {
            roots
                .add(ca)
                .map_err(|e| pem_err(&settings.ca, "the collector CA certificate", e))?;
        }
        let certs = CertificateDer::pem_file_iter(&settings.cert)
            .map_err(|e| pem_err(&settings.cert, "the client certificate", e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_err(&settings.cert, "the client certificate", e))?;
        if certs.is_empty() {
            return Err(pem_err(
                &settings.cert,
                "the client certificate",
                "no CERTIFICATE in the file",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&settings.key)
            .map_err(|e| pem_err(&settings.key, "the client private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Refused {
                what: "TLS set-up".into(),
                reason: e.to_string(),
            })?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(|e| {
                pem_err(
                    &settings.key,
                    "the client key",
                    format!("{e} (does it belong to {}?)", settings.cert.display()),
                )
            })?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| StoreError::Refused {
                what: "HTTPS client set-up".into(),
                reason: e.to_string(),
            })?;
        Ok(CollectorStore {
            client,
            base: settings.url.trim_end_matches('/').to_string(),
        })
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}{OBJECTS_PATH}{key}", self.base)
    }

    /// A failure to talk to the collector at all: always transient.
    fn unreachable(&self, op: &str, key: &str, e: reqwest::Error) -> StoreError {
        let mut msg = format!("{op} {key} at collector {}: {e}", self.base);
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        StoreError::Unavailable(msg)
    }

    /// Maps a status the operation does not expect onto a store error.
    async fn unexpected(&self, op: &str, key: &str, resp: reqwest::Response) -> StoreError {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let reason = resp.text().await.unwrap_or_default();
        let reason = reason.trim();
        let reason = if reason.is_empty() {
            status.canonical_reason().unwrap_or("no reason given")
        } else {
            reason
        };
        let what = format!("{op} {key} at collector {}", self.base);
        match status.as_u16() {
            409 => StoreError::Conflict {
                key: key.to_string(),
            },
            404 => StoreError::NotFound {
                key: key.to_string(),
            },
            s if s >= 500 || s == 408 || s == 429 => StoreError::Unavailable(match retry_after {
                Some(after) => format!("{what}: HTTP {s}: {reason} (retry after {after} s)"),
                None => format!("{what}: HTTP {s}: {reason}"),
            }),
            s => StoreError::Refused {
                what,
                reason: format!("HTTP {s}: {reason}"),
            },
        }
    }
}

/// Incidents: not part of [`ObjectStore`], because only an agent shipping
/// to a collector can be asked for a snapshot remotely.
impl CollectorStore {
    /// The open incidents naming this host that it has not acted on yet.
    pub async fn open_incidents(&self) -> Result<Vec<IncidentNotice>, StoreError> {
        let resp = self
            .client
            .get(format!("{}{INCIDENTS_PATH}", self.base))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .map_err(|e| self.unreachable("GET", INCIDENTS_PATH, e))?;
        if resp.status().as_u16() != 200 {
            return Err(self.unexpected("GET", INCIDENTS_PATH, resp).await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.unreachable("GET", INCIDENTS_PATH, e))?;
        let notices: IncidentNotices =
            serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
                what: format!("incident list from collector {}", self.base),
                why: e.to_string(),
            })?;
        Ok(notices.incidents)
    }

    /// Reports this host's progress on incident `id`.
    pub async fn report_incident(
        &self,
        id: &str,
        report: &IncidentReport,
    ) -> Result<(), StoreError> {
        let path = format!("{INCIDENTS_PATH}/{id}/status");
        let body = serde_json::to_vec(report).map_err(|e| StoreError::Corrupt {
            what: "incident report".into(),
            why: e.to_string(),
        })?;
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(20))
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable("POST", &path, e))?;
        if !resp.status().is_success() {
            return Err(self.unexpected("POST", &path, resp).await);
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for CollectorStore {
    fn describe(&self) -> String {
        format!("collector {}", self.base)
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        check_key(key)?;
        let resp = self
            .client
            .put(self.object_url(key))
            .header(RETAIN_UNTIL_HEADER, format_utc(opts.retain_until))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .map_err(|e| self.unreachable("PUT", key, e))?;
        match resp.status().as_u16() {
            201 => Ok(PutOutcome::Created),
            200 => Ok(PutOutcome::AlreadyPresent),
            _ => Err(self.unexpected("PUT", key, resp).await),
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        check_key(key)?;
        let resp = self
            .client
            .get(self.object_url(key))
            .send()
            .await
            .map_err(|e| self.unreachable("GET", key, e))?;
        if resp.status().as_u16() != 200 {
            return Err(self.unexpected("GET", key, resp).await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.unreachable("GET", key, e))?;
        Ok(body.to_vec())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        check_key(key)?;
        let resp = self
            .client
            .head(self.object_url(key))
            .send()
            .await
            .map_err(|e| self.unreachable("HEAD", key, e))?;
        match resp.status().as_u16() {
            404 => return Ok(None),
            200 => {}
            _ => return Err(self.unexpected("HEAD", key, resp).await),
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let bad = |why: String| StoreError::Corrupt {
            what: format!("HEAD {key} answer of collector {}", self.base),
            why,
        };
        let len = header("content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("no Content-Length".into()))?;
        let retain_until = header(RETAIN_UNTIL_HEADER)
            .ok_or_else(|| bad(format!("no {RETAIN_UNTIL_HEADER} header")))?;
        let retain_until = parse_utc(&retain_until)
            .map_err(|e| bad(format!("{RETAIN_UNTIL_HEADER} {retain_until:?}: {e}")))?;
        let legal_hold = header(LEGAL_HOLD_HEADER).as_deref() == Some("true");
        Ok(Some(ObjectInfo {
            key: key.to_string(),
            len,
            retain_until,
            legal_hold,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        #[derive(serde::Deserialize)]
        struct Listing {
            keys: Vec<String>,
        }
        let resp = self
            .client
            .get(format!("{}{LIST_PATH}", self.base))
            .query(&[("prefix", prefix)])
            .send()
            .await
            .map_err(|e| self.unreachable("LIST", prefix, e))?;
        if resp.status().as_u16() != 200 {
            return Err(self.unexpected("LIST", prefix, resp).await);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.unreachable("LIST", prefix, e))?;
        let listing: Listing = serde_json::from_slice(&body).map_err(|e| StoreError::Corrupt {
            what: format!("listing of {prefix} from collector {}", self.base),
            why: e.to_string(),
        })?;
        Ok(listing.keys)
    }

    async fn set_legal_hold(&self, key: &str, _hold: bool) -> Result<(), StoreError> {
        Err(StoreError::Refused {
            what: format!("legal hold on {key} through collector {}", self.base),
            reason: "a host cannot place or lift holds; run `custody-agent hold` against the collector's own store".into(),
        })
    }

    async fn prune(&self, _now: OffsetDateTime) -> Result<PruneReport, StoreError> {
        Err(StoreError::Refused {
            what: format!("prune through collector {}", self.base),
            reason: "a host can never delete; the collector prunes its own store on a schedule"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_only_scheme_host_and_port() {
        CollectorSettings::check_url("https://collector.example:8443").unwrap();
        CollectorSettings::check_url("https://127.0.0.1:8443/").unwrap();
        for bad in [
            "http://collector:8443",
            "https://",
            "https://c:1/path",
            "https://u@c:1",
            "https://c:1?x",
        ] {
            assert!(CollectorSettings::check_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn missing_enrollment_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let settings = CollectorSettings::from_enrollment_dir("https://c:1", dir.path());
        let err = CollectorStore::open(&settings).err().expect("no files");
        let msg = err.to_string();
        assert!(msg.contains("ca.pem"), "{msg}");
        assert!(!err.is_transient());
    }
}
