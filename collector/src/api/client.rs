//! `custody-collector incident … --url`: the incident commands as clients
//! of the operators' API, so a responder runs them from a laptop with the
//! files `operator add` wrote (`ca.pem`, `operator.pem`, `operator.key`),
//! without a shell on the collector host. Who the operator is comes from
//! the certificate, never from a flag.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use crate::operators::{OPERATOR_CA_FILE, OPERATOR_CERT_FILE, OPERATOR_KEY_FILE};

/// An HTTPS client of one collector's operators' API.
pub struct ApiClient {
    client: reqwest::Client,
    base: String,
}

impl ApiClient {
    /// For the API at `url` (`https://collector:8444`) with the operator
    /// files in `operator_dir`.
    pub fn new(url: &str, operator_dir: &Path) -> anyhow::Result<ApiClient> {
        if !url.starts_with("https://") {
            bail!("--url {url:?}: the operators' API is HTTPS only (https://HOST:PORT)");
        }
        let file = |name: &str| operator_dir.join(name);
        let mut roots = rustls::RootCertStore::empty();
        let ca = file(OPERATOR_CA_FILE);
        for c in CertificateDer::pem_file_iter(&ca)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .with_context(|| {
                format!("reading the collector CA {} (--operator-dir)", ca.display())
            })?
        {
            roots
                .add(c)
                .with_context(|| format!("{} is not a usable CA certificate", ca.display()))?;
        }
        let cert_path = file(OPERATOR_CERT_FILE);
        let certs = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading the operator certificate {}", cert_path.display()))?;
        let key_path = file(OPERATOR_KEY_FILE);
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .with_context(|| format!("reading the operator key {}", key_path.display()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .with_context(|| {
                format!(
                    "{} does not belong to {}",
                    key_path.display(),
                    cert_path.display()
                )
            })?;
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .context("building the HTTPS client")?;
        Ok(ApiClient {
            client,
            base: url.trim_end_matches('/').to_string(),
        })
    }

    /// `GET path`: the JSON answer of a 2xx, else the API's error.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req, path).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).context("encoding the request")?);
        self.send(req, path).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let resp = req.send().await.map_err(|e| {
            let mut msg = format!("{}{path}: {e}", self.base);
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                source = s.source();
            }
            anyhow::anyhow!(msg)
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .with_context(|| format!("{}{path}: reading the answer", self.base))?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let why = value["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            bail!("the collector refused ({status}): {why}");
        }
        Ok(value)
    }
}
