//! Syslog over TLS (RFC 5425): rustls with the ring provider, server
//! authentication by a PEM certificate chain and key. Clients are not asked
//! for certificates (RFC 5425 §5.2 lets the operator choose; the devices
//! this serves rarely have one), so the mapping by address is what
//! identifies a device. After the handshake the stream is read exactly like
//! TCP (octet-counted frames, which RFC 5425 requires; LF framing is
//! accepted too, as rsyslog does).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from PEM files, naming the file that is wrong.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--syslog-tls-cert {}: cannot read", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "--syslog-tls-cert {}: not a PEM certificate chain",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        bail!(
            "--syslog-tls-cert {}: no CERTIFICATE block found; give the server certificate (then any intermediates) in PEM",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "--syslog-tls-key {}: no usable PEM private key (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "--syslog-tls-cert {} and --syslog-tls-key: the key does not match the certificate or is unsupported",
                cert.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
