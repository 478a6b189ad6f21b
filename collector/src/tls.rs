//! The TLS side of the ingest listener: the server certificate from the CA
//! directory, and client certificates checked against the collector's CA.
//!
//! A connection *without* a client certificate is allowed through the
//! handshake on purpose: it is then refused at the HTTP level with 401 and
//! a reason a person can act on ("enroll this host"), which a TLS alert
//! cannot carry. A certificate that does not chain to the CA still fails
//! the handshake.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::pki::{CA_CERT_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE};

fn certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no CERTIFICATE", path.display());
    }
    Ok(certs)
}

/// The rustls server configuration for `ca_dir` (as made by `ca init`).
pub fn server_config(ca_dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in certs(&ca_dir.join(CA_CERT_FILE)).with_context(|| {
        format!(
            "the collector CA (make one with custody-collector ca init --dir {})",
            ca_dir.display()
        )
    })? {
        roots.add(ca).with_context(|| {
            format!("{} is not a usable CA", ca_dir.join(CA_CERT_FILE).display())
        })?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .context("building the client certificate verifier")?;
    let chain = certs(&ca_dir.join(SERVER_CERT_FILE))?;
    let key_path = ca_dir.join(SERVER_KEY_FILE);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading the server key {}", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "{} does not match {}",
                key_path.display(),
                ca_dir.join(SERVER_CERT_FILE).display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
