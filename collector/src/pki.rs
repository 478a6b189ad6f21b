//! The collector's own certificate authority: `ca init` makes it and the
//! collector's server certificate, `enroll` issues one agent's client
//! certificate. Keys are ECDSA P-256 (rcgen with ring), written mode 0600.
//!
//! A client certificate names its host twice: as the subject common name
//! (for people reading it) and as the SAN URI `custody://host/<ID>`, which
//! is what the collector trusts. A host may write only `v1/<ID>/…`.
//!
//! CA directory (`--ca-dir`):
//! ```text
//! ca.pem       the CA certificate (give it to every agent)
//! ca.key       the CA private key (0600; keep it offline if you can)
//! server.pem   the collector's server certificate, signed by the CA
//! server.key   its private key (0600)
//! issued.jsonl every client certificate `enroll` issued (serial, host)
//! revoked.jsonl revoked client certificates (`revoke`)
//! ```
//! (see [`crate::revocation`]). Enrollment directory (`enroll --out`):
//! `ca.pem`, `client.pem`, `client.key` (0600).

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use custody_evidence::HostId;
use custody_store::https::{ENROLL_CA_FILE, ENROLL_CERT_FILE, ENROLL_KEY_FILE};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";
/// The SAN URI prefix that carries a client's host id.
pub const HOST_URI_PREFIX: &str = "custody://host/";

/// How long certificates are valid. Long, because an expired agent
/// certificate stops shipping (data waits in the spool); rotate by
/// enrolling again.
const CA_VALIDITY_DAYS: i64 = 20 * 365;
const LEAF_VALIDITY_DAYS: i64 = 5 * 365;

/// Writes a file that must not be readable by others (a private key):
/// created with mode 0600, refusing to replace an existing file.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_public(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for agents whose clock is a little behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Creates `dir` (if needed) with a new CA and a server certificate for
/// `server_names` (DNS names or IP addresses). Refuses to overwrite an
/// existing CA: re-running by mistake must not orphan every enrolled agent.
pub fn ca_init(dir: &Path, server_names: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for f in [CA_CERT_FILE, CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE] {
        if dir.join(f).exists() {
            bail!(
                "{} already exists: this directory already holds a CA; agents enrolled with it would be cut off. \
                 Use another --dir, or remove the files deliberately",
                dir.join(f).display()
            );
        }
    }
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "custody collector CA");
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca, CA_VALIDITY_DAYS);
    let ca_cert = ca
        .self_signed(&ca_key)
        .context("signing the CA certificate")?;
    let issuer = Issuer::new(ca, &ca_key);

    let server_key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the server key")?;
    let names: Vec<String> = if server_names.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into()]
    } else {
        server_names.to_vec()
    };
    let mut server = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, names[0].clone());
    server.distinguished_name = dn;
    for name in &names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.clone().try_into().with_context(|| {
                format!("--server-name {name:?} is not a DNS name or IP address")
            })?),
        };
        server.subject_alt_names.push(san);
    }
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.use_authority_key_identifier_extension = true;
    validity(&mut server, LEAF_VALIDITY_DAYS);
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .context("signing the server certificate")?;

    let files = vec![
        dir.join(CA_KEY_FILE),
        dir.join(CA_CERT_FILE),
        dir.join(SERVER_KEY_FILE),
        dir.join(SERVER_CERT_FILE),
    ];
    write_private(&files[0], &ca_key.serialize_pem())?;
    write_public(&files[1], &ca_cert.pem())?;
    write_private(&files[2], &server_key.serialize_pem())?;
    write_public(&files[3], &server_cert.pem())?;
    Ok(files)
}

/// Issues a client certificate for `host` signed by the CA in `ca_dir` and
/// writes what the agent needs into `out` (`ca.pem`, `client.pem`,
/// `client.key`).
pub fn enroll(ca_dir: &Path, host: &HostId, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (files, client) = issue_client(
        ca_dir,
        out,
        [ENROLL_KEY_FILE, ENROLL_CERT_FILE, ENROLL_CA_FILE],
        host.as_str(),
        &format!("{HOST_URI_PREFIX}{host}"),
    )?;
    record_enrollment(ca_dir, host)?;
    crate::revocation::record_issued(
        ca_dir,
        &crate::revocation::Issued {
            serial: client.serial.clone(),
            host: host.to_string(),
            issued: custody_evidence::timefmt::format_utc(OffsetDateTime::now_utc()),
            not_after: client.not_after.clone(),
        },
    )?;
    Ok(files)
}

/// Signs a client certificate with the CA in `ca_dir` and writes its key,
/// the certificate and the CA's certificate into `out` under the names
/// `[key, cert, ca]` (none may exist yet: a client's files are never
/// replaced). Returns those paths and what was signed, for the caller's
/// records (agents and operators record different things).
pub(crate) fn issue_client(
    ca_dir: &Path,
    out: &Path,
    names: [&str; 3],
    common_name: &str,
    uri: &str,
) -> anyhow::Result<(Vec<PathBuf>, SignedClient)> {
    let (issuer, ca_pem) = load_issuer(ca_dir)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let files: Vec<PathBuf> = names.iter().map(|n| out.join(n)).collect();
    if let Some(f) = files.iter().find(|f| f.exists()) {
        bail!(
            "{} already exists; give an empty output directory",
            f.display()
        );
    }
    let client = sign_client(&issuer, common_name, uri)?;
    write_private(&files[0], &client.key_pem)?;
    write_public(&files[1], &client.cert_pem)?;
    write_public(&files[2], &ca_pem)?;
    Ok((files, client))
}

/// The CA in `ca_dir` as an rcgen issuer, and its certificate (PEM).
fn load_issuer(ca_dir: &Path) -> anyhow::Result<(Issuer<'static, KeyPair>, String)> {
    let ca_pem = std::fs::read_to_string(ca_dir.join(CA_CERT_FILE)).with_context(|| {
        format!(
            "reading {} (make the CA first: custody-collector ca init --dir {})",
            ca_dir.join(CA_CERT_FILE).display(),
            ca_dir.display()
        )
    })?;
    let ca_key_pem = std::fs::read_to_string(ca_dir.join(CA_KEY_FILE))
        .with_context(|| format!("reading {}", ca_dir.join(CA_KEY_FILE).display()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem).with_context(|| {
        format!(
            "{} is not a private key",
            ca_dir.join(CA_KEY_FILE).display()
        )
    })?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).with_context(|| {
        format!(
            "{} is not a CA certificate",
            ca_dir.join(CA_CERT_FILE).display()
        )
    })?;
    Ok((issuer, ca_pem))
}

/// A client certificate just signed, with what the CA directory records.
pub(crate) struct SignedClient {
    pub key_pem: String,
    pub cert_pem: String,
    /// DER of the certificate (for its fingerprint).
    pub cert_der: Vec<u8>,
    /// Normalized hex serial (see [`crate::revocation::normalize_serial`]).
    pub serial: String,
    /// RFC 3339 UTC.
    pub not_after: String,
}

/// Signs a new client certificate (ClientAuth EKU) with subject common
/// name `common_name` and one SAN URI `uri`, which is the identity the
/// collector trusts (`custody://host/…` or `custody://operator/…`).
fn sign_client(
    issuer: &Issuer<'_, KeyPair>,
    common_name: &str,
    uri: &str,
) -> anyhow::Result<SignedClient> {
    let key =
        KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).context("generating the client key")?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(
        uri.to_string()
            .try_into()
            .with_context(|| format!("{uri:?} is not a valid URI"))?,
    )];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    // A random serial, recorded by the caller, so revocation can name
    // exactly the certificates this client was given.
    let mut serial = *uuid::Uuid::new_v4().as_bytes();
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    validity(&mut params, LEAF_VALIDITY_DAYS);
    let not_after = params.not_after;
    let cert = params
        .signed_by(&key, issuer)
        .context("signing the client certificate")?;
    Ok(SignedClient {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        serial: crate::revocation::normalize_serial(&hex::encode(serial))
            .context("the serial just made")?,
        not_after: custody_evidence::timefmt::format_utc(not_after),
    })
}

/// Where `enroll` notes each host it issued a certificate for, so that
/// `incident open --all` can name every enrolled host.
const ENROLLED_DIR: &str = "enrolled";

fn record_enrollment(ca_dir: &Path, host: &HostId) -> anyhow::Result<()> {
    let dir = ca_dir.join(ENROLLED_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(host.as_str());
    let line = format!(
        "{} enrolled {}\n",
        host,
        custody_evidence::timefmt::format_utc(custody_evidence::timefmt::now_utc_micros())
    );
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_all()))
        .with_context(|| format!("recording the enrollment in {}", path.display()))
}

/// The hosts `enroll` issued certificates for with the CA in `ca_dir`.
pub fn enrolled_hosts(ca_dir: &Path) -> anyhow::Result<Vec<String>> {
    let dir = ca_dir.join(ENROLLED_DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if HostId::new(name.as_str()).is_ok() {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Why a client certificate does not identify a host.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("client certificate does not parse: {0}")]
    Unparsable(String),
    #[error("client certificate has no SAN URI {HOST_URI_PREFIX}<host id>; enroll the host with custody-collector enroll")]
    NoHostUri,
    #[error("client certificate names more than one host ({0}); refusing to guess")]
    SeveralHosts(String),
    #[error("client certificate names host {0:?}, which is not a valid host id")]
    BadHostId(String),
}

/// The host id a (CA-verified) client certificate speaks for: its one SAN
/// URI `custody://host/<ID>`.
pub fn host_of_certificate(der: &[u8]) -> Result<HostId, IdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
    let mut hosts = Vec::new();
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(HOST_URI_PREFIX) {
                    hosts.push(id.to_string());
                }
            }
        }
    }
    match hosts.as_slice() {
        [] => Err(IdentityError::NoHostUri),
        [one] => HostId::new(one.clone()).map_err(|_| IdentityError::BadHostId(one.clone())),
        many => Err(IdentityError::SeveralHosts(many.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn enrolled_certificate_carries_the_host_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        ca_init(&ca, &[]).unwrap();
        assert!(
            ca_init(&ca, &[]).is_err(),
            "an existing CA is never replaced"
        );
        let out = dir.path().join("web01");
        enroll(&ca, &HostId::new("web01").unwrap(), &out).unwrap();
        let pem = std::fs::read(out.join(ENROLL_CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert_eq!(host_of_certificate(&der).unwrap().as_str(), "web01");
        for key in [
            ca.join(CA_KEY_FILE),
            ca.join(SERVER_KEY_FILE),
            out.join(ENROLL_KEY_FILE),
        ] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        // The server certificate is not a client identity.
        let pem = std::fs::read(ca.join(SERVER_CERT_FILE)).unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        assert!(matches!(
            host_of_certificate(&der),
            Err(IdentityError::NoHostUri)
        ));
    }
}
