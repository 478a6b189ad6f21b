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
//!    -> Result<SignerInfo, SignError>`; `SignerInfo { public_key_line: String (without comment),
//!    fingerprint: String }`. Distinct errors: malformed signature, wrong namespace,
//!    signed by a different key (with both fingerprints), bad signature.
//! - `pub fn signer_of(armored_sig: &str) -> Result<String /*public key line*/, SignError>`.
