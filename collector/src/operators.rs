//! Operators: the people who will use the collector's operators' API
//! (issue 10), each with a role and a client certificate from the
//! collector's own CA.
//!
//! An operator certificate names its operator in one SAN URI
//! `custody://operator/<NAME>` and carries no `custody://host/` URI, so
//! agent ingest refuses it ([`crate::pki::host_of_certificate`] finds no
//! host) and an agent certificate is never taken for an operator
//! ([`operator_of_certificate`] finds none). FORMAT.md §12 states the
//! convention.
//!
//! `operator add` records each operator in `operators.jsonl` in the CA
//! directory (name, role, serial, SHA-256 fingerprint of the certificate's
//! DER) and its serial in `issued.jsonl` as host `operator:<NAME>` (a
//! string no host id can be); `operator revoke` appends the serials to
//! `revoked.jsonl`, the list the serving collector already re-reads on
//! every request ([`crate::revocation`]).
//!
//! Files written by `operator add --out DIR`: `ca.pem`, `operator.pem`,
//! `operator.key` (0600).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::pki::issue_client;
use crate::revocation::{self, Issued, Revoked, Target, REVOKED_FILE};

/// The SAN URI prefix that carries an operator's name.
pub const OPERATOR_URI_PREFIX: &str = "custody://operator/";
/// Every operator `operator add` issued a certificate to.
pub const OPERATORS_FILE: &str = "operators.jsonl";
pub const OPERATOR_CERT_FILE: &str = "operator.pem";
pub const OPERATOR_KEY_FILE: &str = "operator.key";
pub const OPERATOR_CA_FILE: &str = "ca.pem";
/// Held (an OS file lock, released when the process ends, even by a
/// crash) while `add` or `revoke` reads and appends the operator list, so
/// two runs at once cannot both give one name a live certificate.
const OPERATORS_LOCK_FILE: &str = "operators.lock";

/// Takes the operators lock of `ca_dir`, waiting for another run's.
fn lock_operators(ca_dir: &Path) -> anyhow::Result<std::fs::File> {
    if !ca_dir.is_dir() {
        bail!(
            "{} is not a directory: give the collector's CA directory (made by custody-collector ca init)",
            ca_dir.display()
        );
    }
    let path = ca_dir.join(OPERATORS_LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the operators lock {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// What an operator may do (issue 10): read, read and download, open and
/// release incidents, everything including operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Auditor,
    Responder,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// One certificate issued to an operator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    pub serial: String,
    /// SHA-256 of the certificate's DER, lowercase hex (what
    /// `openssl x509 -noout -fingerprint -sha256` prints, without colons).
    pub fingerprint_sha256: String,
    /// RFC 3339 UTC.
    pub issued: String,
    pub not_after: String,
}

/// An operator as listed: its record and whether it is revoked.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Listed {
    #[serde(flatten)]
    pub operator: Operator,
    pub revoked: Option<String>,
}

/// Checks an operator name: 1–64 of `A–Z a–z 0–9 . _ -`, not starting
/// with `.` or `-` (it is a file-free identifier, but also shown to
/// people and written into custody events).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        bail!(
            "operator name {name:?} is not allowed: use 1 to 64 of A-Z a-z 0-9 . _ - \
             (not starting with . or -)"
        );
    }
    Ok(())
}

fn issued_host(name: &str) -> String {
    format!("operator:{name}")
}

/// Every operator certificate recorded in `ca_dir`, with its revocation.
pub fn list(ca_dir: &Path) -> anyhow::Result<Vec<Listed>> {
    let operators: Vec<Operator> = revocation::read_lines(&ca_dir.join(OPERATORS_FILE))?;
    let revoked: Vec<Revoked> = revocation::read_lines(&ca_dir.join(REVOKED_FILE))?;
    Ok(operators
        .into_iter()
        .map(|operator| Listed {
            revoked: revoked
                .iter()
                .find(|r| r.serial == operator.serial)
                .map(|r| r.revoked.clone()),
            operator,
        })
        .collect())
}

/// Issues a certificate for operator `name` with `role`, writes
/// `ca.pem`, `operator.pem`, `operator.key` into `out` and records it.
/// Refuses a name that already has an unrevoked certificate: a role is
/// changed by revoking and adding again, so the trail shows it.
pub fn add(ca_dir: &Path, name: &str, role: Role, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    check_name(name)?;
    let _lock = lock_operators(ca_dir)?;
    if let Some(live) = list(ca_dir)?
        .into_iter()
        .find(|l| l.operator.name == name && l.revoked.is_none())
    {
        bail!(
            "operator {name:?} already has a certificate (serial {}, role {}); \
             revoke it first (custody-collector operator revoke --ca-dir {} {name})",
            live.operator.serial,
            live.operator.role.as_str(),
            ca_dir.display()
        );
    }
    let (files, client) = issue_client(
        ca_dir,
        out,
        [OPERATOR_KEY_FILE, OPERATOR_CERT_FILE, OPERATOR_CA_FILE],
        name,
        &format!("{OPERATOR_URI_PREFIX}{name}"),
    )?;
    let issued = custody_evidence::timefmt::format_utc(time::OffsetDateTime::now_utc());
    revocation::record_issued(
        ca_dir,
        &Issued {
            serial: client.serial.clone(),
            host: issued_host(name),
            issued: issued.clone(),
            not_after: client.not_after.clone(),
        },
    )?;
    revocation::append_line(
        &ca_dir.join(OPERATORS_FILE),
        &Operator {
            name: name.to_string(),
            role,
            serial: client.serial,
            fingerprint_sha256: hex::encode(sha2::Sha256::digest(&client.cert_der)),
            issued,
            not_after: client.not_after,
        },
    )?;
    Ok(files)
}

/// Revokes every certificate issued to operator `name`; returns what was
/// newly revoked (empty: all were already).
pub fn revoke(ca_dir: &Path, name: &str) -> anyhow::Result<Vec<Revoked>> {
    check_name(name)?;
    let _lock = lock_operators(ca_dir)?;
    let mine: Vec<Listed> = list(ca_dir)?
        .into_iter()
        .filter(|l| l.operator.name == name)
        .collect();
    if mine.is_empty() {
        bail!(
            "no operator {name:?} is recorded in {}; see custody-collector operator list",
            ca_dir.join(OPERATORS_FILE).display()
        );
    }
    let mut done = Vec::new();
    for l in mine.iter().filter(|l| l.revoked.is_none()) {
        done.extend(revocation::revoke(
            ca_dir,
            Target::Serial(&l.operator.serial),
        )?);
    }
    Ok(done)
}

/// Why a client certificate does not identify an operator.
#[derive(Debug, thiserror::Error)]
pub enum OperatorIdentityError {
    #[error("client certificate does not parse: {0}")]
    Unparsable(String),
    #[error("client certificate has no SAN URI {OPERATOR_URI_PREFIX}<name> (an agent's certificate is not an operator's); issue one with custody-collector operator add")]
    NotAnOperator,
    #[error("client certificate names more than one operator or also a host; refusing to guess")]
    Ambiguous,
    #[error("client certificate names operator {0:?}, which is not a valid operator name")]
    BadName(String),
}

/// The operator a (CA-verified) client certificate speaks for: its one
/// SAN URI `custody://operator/<NAME>`, with no host URI beside it.
pub fn operator_of_certificate(der: &[u8]) -> Result<String, OperatorIdentityError> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| OperatorIdentityError::Unparsable(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| OperatorIdentityError::Unparsable(e.to_string()))?;
    let mut names = Vec::new();
    let mut hosts = 0;
    if let Some(san) = san {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(n) = uri.strip_prefix(OPERATOR_URI_PREFIX) {
                    names.push(n.to_string());
                } else if uri.starts_with(crate::pki::HOST_URI_PREFIX) {
                    hosts += 1;
                }
            }
        }
    }
    match (names.as_slice(), hosts) {
        ([], _) => Err(OperatorIdentityError::NotAnOperator),
        ([one], 0) => match check_name(one) {
            Ok(()) => Ok(one.clone()),
            Err(_) => Err(OperatorIdentityError::BadName(one.clone())),
        },
        _ => Err(OperatorIdentityError::Ambiguous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use custody_evidence::HostId;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use std::os::unix::fs::PermissionsExt;

    fn der(path: &Path) -> Vec<u8> {
        let pem = std::fs::read(path).unwrap();
        CertificateDer::from_pem_slice(&pem).unwrap().to_vec()
    }

    #[test]
    fn operator_and_agent_certificates_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        crate::pki::ca_init(&ca, &[]).unwrap();
        let op = dir.path().join("alice");
        add(&ca, "alice", Role::Responder, &op).unwrap();
        let agent = dir.path().join("web01");
        crate::pki::enroll(&ca, &HostId::new("web01").unwrap(), &agent).unwrap();

        let op_der = der(&op.join(OPERATOR_CERT_FILE));
        assert_eq!(operator_of_certificate(&op_der).unwrap(), "alice");
        assert!(matches!(
            crate::pki::host_of_certificate(&op_der),
            Err(crate::pki::IdentityError::NoHostUri)
        ));
        let agent_der = der(&agent.join(custody_store::https::ENROLL_CERT_FILE));
        assert!(matches!(
            operator_of_certificate(&agent_der),
            Err(OperatorIdentityError::NotAnOperator)
        ));
        let mode = std::fs::metadata(op.join(OPERATOR_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);

        let listed = list(&ca).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].operator.role, Role::Responder);
        assert_eq!(
            listed[0].operator.fingerprint_sha256,
            hex::encode(sha2::Sha256::digest(&op_der))
        );
        assert_eq!(
            listed[0].operator.serial,
            revocation::serial_of_certificate(&op_der).unwrap()
        );
    }

    #[test]
    fn simultaneous_adds_of_one_name_give_one_live_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        crate::pki::ca_init(&ca, &[]).unwrap();
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let (ca, out) = (ca.clone(), dir.path().join(format!("out{i}")));
                std::thread::spawn(move || add(&ca, "carol", Role::Viewer, &out).is_ok())
            })
            .collect();
        let ok = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count();
        assert_eq!(ok, 1);
        assert_eq!(list(&ca).unwrap().len(), 1);
    }

    #[test]
    fn a_missing_ca_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = add(
            &dir.path().join("nope"),
            "dave",
            Role::Viewer,
            &dir.path().join("o"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope") && err.contains("ca init"), "{err}");
    }

    #[test]
    fn revoke_marks_the_serial_and_allows_a_new_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        crate::pki::ca_init(&ca, &[]).unwrap();
        add(&ca, "bob", Role::Viewer, &dir.path().join("b1")).unwrap();
        let again = add(&ca, "bob", Role::Admin, &dir.path().join("b2"));
        assert!(format!("{:#}", again.unwrap_err()).contains("revoke it first"));
        assert!(!dir.path().join("b2").join(OPERATOR_KEY_FILE).exists());

        let done = revoke(&ca, "bob").unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].host.as_deref(), Some("operator:bob"));
        assert!(revoke(&ca, "bob").unwrap().is_empty(), "already revoked");
        assert!(list(&ca).unwrap()[0].revoked.is_some());
        // The serving collector's list sees it.
        let rev = revocation::Revocations::watch(&ca).unwrap();
        let serial = list(&ca).unwrap()[0].operator.serial.clone();
        assert!(rev.check(&serial).is_some());

        add(&ca, "bob", Role::Admin, &dir.path().join("b2")).unwrap();
        let listed = list(&ca).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed[1].revoked.is_none());
        assert!(revoke(&ca, "carol").is_err(), "unknown operator named");
        for bad in ["", "../x", "-x", "a b", "<script>"] {
            assert!(
                add(&ca, bad, Role::Viewer, &dir.path().join("bad")).is_err(),
                "{bad:?}"
            );
        }
    }
}
