//! Who is calling the operators' API: an operator certificate from the
//! collector CA (`custody-collector operator add`), not revoked, whose exact
//! certificate (SHA-256 of its DER) is the one recorded for the operator.
//! The role comes from that record, never from the client.
//!
//! Checked on every request (the operator list and the revocation list are
//! re-read when they change), so a revocation takes effect on the next
//! request of a connection already open.

use std::path::Path;

use sha2::Digest;

use crate::operators::{self, Role};
use crate::revocation::{serial_of_certificate, Revocations};

/// An authenticated operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub role: Role,
    /// The certificate's serial, or `session` for a password login.
    pub serial: String,
    pub via: Via,
}

/// How the operator authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    Certificate,
    /// A browser session: its cookie token and the CSRF token every change
    /// must echo.
    Session {
        token: String,
        csrf: String,
    },
}

/// Why a caller is not an operator; the text is sent back (it names no
/// secret) and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No client certificate: 401.
    NoCertificate,
    /// A certificate that is not an operator's, or revoked, or unknown: 403.
    Forbidden(String),
}

/// The operator `cert` (DER) belongs to.
pub fn operator_of(
    cert: Option<&[u8]>,
    ca_dir: &Path,
    revocations: &Revocations,
) -> Result<Operator, Refusal> {
    let Some(der) = cert else {
        return Err(Refusal::NoCertificate);
    };
    let name = operators::operator_of_certificate(der).map_err(|e| {
        Refusal::Forbidden(format!(
            "not an operator certificate ({e}); an operator's comes from custody-collector operator add"
        ))
    })?;
    let serial = serial_of_certificate(der)
        .map_err(|e| Refusal::Forbidden(format!("certificate serial: {e:#}")))?;
    if let Some(r) = revocations.check(&serial) {
        return Err(Refusal::Forbidden(format!(
            "the certificate of operator {name} was revoked at {}",
            r.revoked
        )));
    }
    let fingerprint = hex::encode(sha2::Sha256::digest(der));
    let listed = operators::list(ca_dir)
        .map_err(|e| Refusal::Forbidden(format!("the operator list cannot be read: {e:#}")))?;
    let record = listed
        .into_iter()
        .find(|l| l.operator.serial == serial && l.operator.name == name)
        .ok_or_else(|| {
            Refusal::Forbidden(format!(
                "operator {name}'s certificate (serial {serial}) is not in this collector's operator list"
            ))
        })?;
    if record.revoked.is_some() {
        return Err(Refusal::Forbidden(format!(
            "the certificate of operator {name} is revoked"
        )));
    }
    if !record
        .operator
        .fingerprint_sha256
        .eq_ignore_ascii_case(&fingerprint)
    {
        return Err(Refusal::Forbidden(format!(
            "operator {name}'s certificate is not the one recorded for serial {serial}"
        )));
    }
    Ok(Operator {
        name,
        role: record.operator.role,
        serial,
        via: Via::Certificate,
    })
}
