//! Host keys and signatures: Ed25519 keys in OpenSSH format and detached
//! `sshsig` signatures, so that `ssh-keygen -Y verify` checks them with
//! nothing but OpenSSH.
//!
//! CONTRACT (implementer fills in; signatures fixed):
//! - `pub struct HostKey` wrapping `ssh_key::PrivateKey` (Ed25519 only).
//!   `HostKey::generate() -> HostKey`; `HostKey::from_openssh(&str) -> Result<HostKey, SignError>`;
//!   `to_openssh(&self) -> String` (unencrypted OpenSSH private key PEM);
//!   `public_key_line(&self, comment: &str) -> String` ("ssh-ed25519 AAAA… comment");
//!   `fingerprint(&self) -> String` ("SHA256:…" as ssh-keygen -l prints);
//!   `sign(&self, namespace: &str, msg: &[u8]) -> Result<String, SignError>` (armored
//!   "-----BEGIN SSH SIGNATURE-----" text, hash sha512, as ssh-keygen -Y sign writes).
//! - `pub fn allowed_signers_line(principal: &str, namespaces: &[&str], public_key_line: &str) -> String`
//!   e.g. `web01 namespaces="custody-digest,custody-bundle" ssh-ed25519 AAAA…`.
//! - `pub fn verify(public_key_line: &str, namespace: &str, msg: &[u8], armored_sig: &str)
//!   -> Result<SignerInfo, SignError>`; `SignerInfo { public_key_line: String (without comment),
//!   fingerprint: String }`. Distinct errors: malformed signature, wrong namespace,
//!   signed by a different key (with both fingerprints), bad signature.
//! - `pub fn signer_of(armored_sig: &str) -> Result<String /*public key line*/, SignError>`.
//!
//! The signature is OpenSSH's `PROTOCOL.sshsig`: the message is hashed with
//! SHA-512, the hash is signed together with the namespace, and the result
//! is armored between `-----BEGIN SSH SIGNATURE-----` lines. The namespace
//! keeps a digest signature from being replayed as some other kind of
//! statement by the same key.

use std::fmt;

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

/// Why a key could not be used or a signature did not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("not an OpenSSH private key: {0}")]
    MalformedPrivateKey(String),
    #[error("private key is encrypted with a passphrase; host keys must be stored unencrypted (protect the file by permissions)")]
    EncryptedKey,
    #[error("host keys must be Ed25519, found {found}")]
    NotEd25519 { found: String },
    #[error("not an OpenSSH public key line {line:?}: {why}")]
    MalformedPublicKey { line: String, why: String },
    #[error("not an armored SSH signature: {0}")]
    MalformedSignature(String),
    #[error("signature is for namespace {found:?}, expected {expected:?}")]
    WrongNamespace { expected: String, found: String },
    #[error("signed by a different key: expected {expected_fingerprint}, signature is by {found_fingerprint}")]
    WrongKey {
        expected_fingerprint: String,
        found_fingerprint: String,
    },
    #[error("signature by {fingerprint} does not match the message (the signed bytes were altered or the signature is forged)")]
    BadSignature { fingerprint: String },
    #[error("signing failed: {0}")]
    Signing(String),
}

/// A host's Ed25519 signing key.
#[derive(Clone)]
pub struct HostKey {
    key: PrivateKey,
}

/// Never prints the secret half.
impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl HostKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> HostKey {
        // Only an OS without a random source makes this fail; no key can be
        // made safely there, so stopping is the only correct outcome.
        let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .expect("the operating system random source failed while generating an Ed25519 key");
        HostKey { key }
    }

    /// Reads an unencrypted OpenSSH private key (`ssh-keygen -t ed25519 -N ''`).
    pub fn from_openssh(pem: &str) -> Result<HostKey, SignError> {
        let key = PrivateKey::from_openssh(pem)
            .map_err(|e| SignError::MalformedPrivateKey(e.to_string()))?;
        if key.is_encrypted() {
            return Err(SignError::EncryptedKey);
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(SignError::NotEd25519 {
                found: key.algorithm().to_string(),
            });
        }
        Ok(HostKey { key })
    }

    /// The unencrypted OpenSSH private key file text (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn to_openssh(&self) -> String {
        self.key
            .to_openssh(LineEnding::LF)
            .map(|s| s.to_string())
            .expect("an in-memory Ed25519 key always encodes")
    }

    /// `ssh-ed25519 AAAA… comment` (without the comment if it is empty).
    pub fn public_key_line(&self, comment: &str) -> String {
        let mut public = self.key.public_key().clone();
        public.set_comment(comment);
        public
            .to_openssh()
            .expect("an Ed25519 public key always encodes")
    }

    /// `SHA256:…` exactly as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }

    /// A detached, armored `sshsig` signature over `msg` (SHA-512), the same
    /// text `ssh-keygen -Y sign -n NAMESPACE` writes.
    pub fn sign(&self, namespace: &str, msg: &[u8]) -> Result<String, SignError> {
        let sig = self
            .key
            .sign(namespace, HashAlg::Sha512, msg)
            .map_err(|e| SignError::Signing(e.to_string()))?;
        sig.to_pem(LineEnding::LF)
            .map_err(|e| SignError::Signing(e.to_string()))
    }
}

/// Who made a signature that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerInfo {
    /// `ssh-ed25519 AAAA…`, without a comment.
    pub public_key_line: String,
    pub fingerprint: String,
}

/// One line of an OpenSSH `allowed_signers` file, restricted to the given
/// namespaces so the key is not trusted for other kinds of statement.
pub fn allowed_signers_line(principal: &str, namespaces: &[&str], public_key_line: &str) -> String {
    let key = public_key_line.trim();
    if namespaces.is_empty() {
        format!("{principal} {key}")
    } else {
        format!("{principal} namespaces=\"{}\" {key}", namespaces.join(","))
    }
}

fn parse_public_key(line: &str) -> Result<PublicKey, SignError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| SignError::MalformedPublicKey {
        line: line.trim().to_string(),
        why: e.to_string(),
    })
}

fn parse_signature(armored: &str) -> Result<SshSig, SignError> {
    SshSig::from_pem(armored.trim_end()).map_err(|e| SignError::MalformedSignature(e.to_string()))
}

fn key_data_line(key: &ssh_key::public::KeyData) -> String {
    PublicKey::new(key.clone(), "")
        .to_openssh()
        .unwrap_or_else(|e| format!("<unencodable key: {e}>"))
}

/// The `SHA256:…` fingerprint of a public key line.
pub fn fingerprint_of(public_key_line: &str) -> Result<String, SignError> {
    Ok(parse_public_key(public_key_line)?
        .fingerprint(HashAlg::Sha256)
        .to_string())
}

/// The public key line (without comment) that a public key line denotes, so
/// two lines differing only in comment compare equal.
pub fn normalize_public_key(public_key_line: &str) -> Result<String, SignError> {
    Ok(key_data_line(parse_public_key(public_key_line)?.key_data()))
}

/// Checks `armored_sig` over `msg` against exactly `public_key_line` and
/// `namespace`. The checks run in the order that gives the most useful
/// error: malformed, other key, other namespace, then the cryptography.
pub fn verify(
    public_key_line: &str,
    namespace: &str,
    msg: &[u8],
    armored_sig: &str,
) -> Result<SignerInfo, SignError> {
    let expected = parse_public_key(public_key_line)?;
    let sig = parse_signature(armored_sig)?;
    let expected_fingerprint = expected.fingerprint(HashAlg::Sha256).to_string();
    if expected.key_data() != sig.public_key() {
        return Err(SignError::WrongKey {
            expected_fingerprint,
            found_fingerprint: sig.public_key().fingerprint(HashAlg::Sha256).to_string(),
        });
    }
    if sig.namespace() != namespace {
        return Err(SignError::WrongNamespace {
            expected: namespace.to_string(),
            found: sig.namespace().to_string(),
        });
    }
    expected
        .verify(namespace, msg, &sig)
        .map_err(|_| SignError::BadSignature {
            fingerprint: expected_fingerprint.clone(),
        })?;
    Ok(SignerInfo {
        public_key_line: key_data_line(expected.key_data()),
        fingerprint: expected_fingerprint,
    })
}

/// The public key line (without comment) a signature claims to be made by.
/// Claims only: use [`verify`] with a trusted key before believing it.
pub fn signer_of(armored_sig: &str) -> Result<String, SignError> {
    Ok(key_data_line(parse_signature(armored_sig)?.public_key()))
}

/// One usable entry of an OpenSSH `allowed_signers` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedSigner {
    /// Principals as written (comma-separated patterns split apart).
    pub principals: Vec<String>,
    /// `None` when the line has no `namespaces=` option (any namespace).
    pub namespaces: Option<Vec<String>>,
    /// `keytype base64` (comment dropped).
    pub public_key_line: String,
}

impl AllowedSigner {
    /// Whether this entry may vouch for signatures in `namespace`.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(ns) => ns.iter().any(|n| n == namespace),
        }
    }
}

/// Why an `allowed_signers` text was refused, with its 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allowed_signers line {line}: {why}")]
pub struct AllowedSignersError {
    pub line: usize,
    pub why: String,
}

/// Parses the OpenSSH `allowed_signers` format (`ssh-keygen(1)`, "ALLOWED
/// SIGNERS"): `principals [options] keytype base64 [comment]`; `#` comments
/// and blank lines are skipped. `cert-authority` lines are refused: custody
/// trusts host keys directly, and accepting them silently would trust
/// nothing. `valid-after`/`valid-before` are refused too, because this
/// verifier does not evaluate them and must not pretend to.
pub fn parse_allowed_signers(text: &str) -> Result<Vec<AllowedSigner>, AllowedSignersError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |why: String| AllowedSignersError { line: i + 1, why };
        let fields = split_fields(line).map_err(|w| err(w.to_string()))?;
        let mut it = fields.into_iter();
        let principals_field = it.next().ok_or_else(|| err("empty line".into()))?;
        let mut next = it
            .next()
            .ok_or_else(|| err("missing key type and key".into()))?;
        let mut namespaces = None;
        if !looks_like_key_type(&next) {
            for opt in split_options(&next).map_err(|w| err(w.to_string()))? {
                let (name, value) = match opt.split_once('=') {
                    Some((n, v)) => (
                        n.to_ascii_lowercase(),
                        Some(v.trim_matches('"').to_string()),
                    ),
                    None => (opt.to_ascii_lowercase(), None),
                };
                match (name.as_str(), value) {
                    ("namespaces", Some(v)) => {
                        namespaces = Some(
                            v.split(',')
                                .map(|s| s.trim().to_string())
                                .filter(|s| !s.is_empty())
                                .collect(),
                        )
                    }
                    ("cert-authority", _) => return Err(err(
                        "cert-authority entries are not supported: list the host keys themselves"
                            .into(),
                    )),
                    (other, _) => {
                        return Err(err(format!(
                            "option {other:?} is not supported (only namespaces=\"...\")"
                        )))
                    }
                }
            }
            next = it
                .next()
                .ok_or_else(|| err("missing key type and key after options".into()))?;
        }
        let key_type = next;
        let key_b64 = it
            .next()
            .ok_or_else(|| err(format!("missing base64 key after {key_type:?}")))?;
        let key_line = format!("{key_type} {key_b64}");
        let public_key_line = normalize_public_key(&key_line).map_err(|e| err(e.to_string()))?;
        let principals = principals_field
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        out.push(AllowedSigner {
            principals,
            namespaces,
            public_key_line,
        });
    }
    Ok(out)
}

fn looks_like_key_type(field: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-", "rsa-"]
        .iter()
        .any(|p| field.starts_with(p))
}

/// Whitespace-separated fields, where double quotes protect whitespace.
fn split_fields(line: &str) -> Result<Vec<String>, &'static str> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !cur.is_empty() {
                    fields.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote");
    }
    if !cur.is_empty() {
        fields.push(cur);
    }
    Ok(fields)
}

/// Comma-separated options, where double quotes protect commas.
fn split_options(field: &str) -> Result<Vec<String>, &'static str> {
    let mut opts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in field.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => opts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quote in options");
    }
    opts.push(cur);
    Ok(opts.into_iter().filter(|o| !o.is_empty()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "custody-digest";

    #[test]
    fn sign_then_verify_round_trip() {
        let key = HostKey::generate();
        let sig = key.sign(NS, b"hello\n").unwrap();
        assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----\n"), "{sig}");
        assert!(
            sig.trim_end().ends_with("-----END SSH SIGNATURE-----"),
            "{sig}"
        );
        let info = verify(&key.public_key_line("web01"), NS, b"hello\n", &sig).unwrap();
        assert_eq!(info.fingerprint, key.fingerprint());
        assert_eq!(info.public_key_line, key.public_key_line(""));
        assert_eq!(signer_of(&sig).unwrap(), key.public_key_line(""));
        assert!(key.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn distinct_errors() {
        let key = HostKey::generate();
        let other = HostKey::generate();
        let sig = key.sign(NS, b"msg").unwrap();
        let pk = key.public_key_line("");
        assert_eq!(
            verify(&pk, NS, b"msG", &sig).unwrap_err(),
            SignError::BadSignature {
                fingerprint: key.fingerprint()
            }
        );
        assert_eq!(
            verify(&pk, "custody-bundle", b"msg", &sig).unwrap_err(),
            SignError::WrongNamespace {
                expected: "custody-bundle".into(),
                found: NS.into()
            }
        );
        assert_eq!(
            verify(&other.public_key_line(""), NS, b"msg", &sig).unwrap_err(),
            SignError::WrongKey {
                expected_fingerprint: other.fingerprint(),
                found_fingerprint: key.fingerprint()
            }
        );
        assert!(matches!(
            verify(&pk, NS, b"msg", "not a signature"),
            Err(SignError::MalformedSignature(_))
        ));
        assert!(matches!(
            verify("ssh-ed25519 !!!", NS, b"msg", &sig),
            Err(SignError::MalformedPublicKey { .. })
        ));
    }

    #[test]
    fn private_key_round_trip_and_debug_hides_secret() {
        let key = HostKey::generate();
        let pem = key.to_openssh();
        assert!(pem.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let back = HostKey::from_openssh(&pem).unwrap();
        assert_eq!(back.fingerprint(), key.fingerprint());
        let dbg = format!("{key:?}");
        assert!(
            dbg.contains(&key.fingerprint()) && !dbg.contains("PRIVATE"),
            "{dbg}"
        );
        assert!(matches!(
            HostKey::from_openssh("garbage"),
            Err(SignError::MalformedPrivateKey(_))
        ));
    }

    #[test]
    fn allowed_signers_lines_parse_back() {
        let key = HostKey::generate();
        let line =
            allowed_signers_line("web01", &[NS, "custody-bundle"], &key.public_key_line("c"));
        assert!(
            line.starts_with("web01 namespaces=\"custody-digest,custody-bundle\" ssh-ed25519 "),
            "{line}"
        );
        let text = format!(
            "# comment\n\n{line}\nweb02,db01 {} some comment\n",
            key.public_key_line("")
        );
        let parsed = parse_allowed_signers(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].principals, vec!["web01"]);
        assert!(parsed[0].allows_namespace(NS) && !parsed[0].allows_namespace("other"));
        assert_eq!(parsed[0].public_key_line, key.public_key_line(""));
        assert_eq!(parsed[1].principals, vec!["web02", "db01"]);
        assert!(parsed[1].allows_namespace("anything"));
        let err = parse_allowed_signers(&format!(
            "x\nweb01 cert-authority {}\n",
            key.public_key_line("")
        ))
        .unwrap_err();
        assert_eq!(err.line, 1, "{err}");
        let err = parse_allowed_signers(&format!(
            "web01 cert-authority {}\n",
            key.public_key_line("")
        ))
        .unwrap_err();
        assert!(err.why.contains("cert-authority"), "{err}");
    }
}
