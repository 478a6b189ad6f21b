//! Syslog over TLS (RFC 5425): rustls with the ring provider, server
//! authentication by a PEM certificate chain and key. With a client CA
//! (`--syslog-tls-client-ca`) every client must present a certificate that
//! CA issued (RFC 5425 §5.2, certificate path validation), and a client
//! without one fails the handshake; without it clients are not asked for
//! certificates (many devices have none), and the mapping by address is
//! what identifies a device. After the handshake the stream is read exactly like
//! TCP (octet-counted frames, which RFC 5425 requires; LF framing is
//! accepted too, as rsyslog does).

use std::path::Path;

use super::config::TlsFiles;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

/// Builds the acceptor from PEM files, naming the file that is wrong.
pub fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let (cert, key) = (files.cert.as_path(), files.key.as_path());
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
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
    };
    let config = builder
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "--syslog-tls-cert {} and --syslog-tls-key: the key does not match the certificate or is unsupported",
                cert.display()
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts only client certificates issued by the CA(s) in `ca`.
fn client_verifier(
    ca: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> anyhow::Result<Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("--syslog-tls-client-ca {}: cannot read", ca.display()))?
    {
        let cert = cert.with_context(|| {
            format!(
                "--syslog-tls-client-ca {}: not a PEM certificate",
                ca.display()
            )
        })?;
        roots.add(cert).with_context(|| {
            format!(
                "--syslog-tls-client-ca {}: not a usable CA certificate",
                ca.display()
            )
        })?;
    }
    if roots.is_empty() {
        bail!(
            "--syslog-tls-client-ca {}: no CERTIFICATE block found; give the CA that issues the devices' certificates",
            ca.display()
        );
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("--syslog-tls-client-ca {}", ca.display()))
}
