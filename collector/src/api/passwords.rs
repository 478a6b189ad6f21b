//! Operator passwords (issue 10), for people at a browser without a client
//! certificate: `custody-collector operator passwd NAME` stores an argon2id
//! hash (PHC string, random salt; never the password) in
//! `CA/operator-passwords.jsonl` (0600). The last line for a name is the
//! one in force. A password belongs to an operator `operator add` made: the
//! role is that record's, and revoking the operator's certificate ends
//! password logins too.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};

use crate::operators::{self, Role};
use crate::revocation;

pub const PASSWORDS_FILE: &str = "operator-passwords.jsonl";
/// Shorter passwords are refused (NIST SP 800-63B asks for at least 8;
/// a console that can lift legal holds asks for more).
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    /// argon2id PHC string.
    phc: String,
    /// RFC 3339 UTC.
    set: String,
}

/// Sets `name`'s password (an operator with an unrevoked certificate).
pub fn set(ca_dir: &Path, name: &str, password: &str) -> anyhow::Result<()> {
    live_role(ca_dir, name)?;
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!("the password is shorter than {MIN_PASSWORD_CHARS} characters");
    }
    let salt = SaltString::generate(&mut rand_core::OsRng);
    let phc = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string();
    let entry = Entry {
        name: name.to_string(),
        phc,
        set: custody_evidence::timefmt::format_utc(custody_evidence::timefmt::now_utc_micros()),
    };
    let mut line = serde_json::to_string(&entry).context("encoding the entry")?;
    line.push('\n');
    let path = ca_dir.join(PASSWORDS_FILE);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// The role of `name` when it has an unrevoked certificate record.
pub fn live_role(ca_dir: &Path, name: &str) -> anyhow::Result<Role> {
    operators::check_name(name)?;
    let listed = operators::list(ca_dir)?;
    listed
        .iter()
        .rev()
        .find(|l| l.operator.name == name && l.revoked.is_none())
        .map(|l| l.operator.role)
        .with_context(|| {
            format!("no operator {name} with an unrevoked certificate (custody-collector operator add {name} --role ROLE first)")
        })
}

/// Whether `password` is `name`'s; the role when it is. Always runs one
/// argon2 verification, so a name without a password takes as long as a
/// wrong password.
pub fn check(ca_dir: &Path, name: &str, password: &str) -> Option<Role> {
    let entries: Vec<Entry> =
        revocation::read_lines(&ca_dir.join(PASSWORDS_FILE)).unwrap_or_default();
    let phc = entries
        .iter()
        .rev()
        .find(|e| e.name == name)
        .map(|e| e.phc.clone());
    // A fixed dummy hash for unknown names (same cost parameters).
    const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$J0cCeCKAVdIZZzz3tLvPq4mz6FiPBWJLYb2LKlRdkS4";
    let text = phc.as_deref().unwrap_or(DUMMY);
    let ok = PasswordHash::new(text)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false);
    if !ok || phc.is_none() {
        return None;
    }
    live_role(ca_dir, name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_stored_hashed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca");
        crate::pki::ca_init(&ca, &[]).unwrap();
        operators::add(&ca, "rita", Role::Responder, &dir.path().join("op")).unwrap();
        assert!(set(&ca, "rita", "short").is_err());
        assert!(set(&ca, "nobody", "a long enough password").is_err());
        set(&ca, "rita", "correct horse battery").unwrap();
        let stored = std::fs::read_to_string(ca.join(PASSWORDS_FILE)).unwrap();
        assert!(stored.contains("$argon2id$") && !stored.contains("correct horse"));
        assert_eq!(
            check(&ca, "rita", "correct horse battery"),
            Some(Role::Responder)
        );
        assert_eq!(check(&ca, "rita", "correct horse batterY"), None);
        assert_eq!(check(&ca, "nobody", "correct horse battery"), None);
        operators::revoke(&ca, "rita").unwrap();
        assert_eq!(
            check(&ca, "rita", "correct horse battery"),
            None,
            "revoked: no login"
        );
    }
}
