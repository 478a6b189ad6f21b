//! The host key: the Ed25519 key that signs this host's digests, kept in the
//! state directory as an OpenSSH private key so that an administrator can
//! inspect it with `ssh-keygen` and an auditor can verify signatures with
//! nothing but OpenSSH.
//!
//! Files:
//! - `STATE/host_key`: unencrypted OpenSSH private key, mode 0600. A key
//!   file that group or others may read is refused: anyone who can read it
//!   can sign digests in this host's name.
//! - `STATE/host_key.pub`: the public key line, mode 0644, for the
//!   administrator to copy into the auditors' `allowed_signers`.
//!
//! On Windows files have ACLs, not modes: the state directory is created
//! with an ACL that lets only SYSTEM and Administrators in
//! ([`crate::platform::create_private_dir`]), and the key inherits it.
//!
//! The key is created once, at the first start (or the first
//! `custody-agent key show`), with `create_new` so two processes racing to
//! create it cannot end up with different keys, and fsynced before use so a
//! crash cannot leave digests signed by a key that was never stored.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
#[cfg(unix)]
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use custody_evidence::digest::DIGEST_NAMESPACE;
use custody_evidence::sign::{self, HostKey};
use custody_evidence::HostId;

pub const HOST_KEY_FILE: &str = "host_key";
pub const HOST_PUBLIC_KEY_FILE: &str = "host_key.pub";
/// Namespaces the host key is trusted for in `allowed_signers`: digests, and
/// the evidence bundles exported from this host's records.
pub const ALLOWED_NAMESPACES: [&str; 2] = [DIGEST_NAMESPACE, "custody-bundle"];

/// The comment written after the public key, naming the host it belongs to.
pub fn key_comment(host_id: &HostId) -> String {
    format!("custody-agent@{host_id}")
}

/// The `allowed_signers` line an auditor needs to verify this host's
/// signatures: `<host-id> namespaces="custody-digest,custody-bundle" ssh-ed25519 AAAA… custody-agent@<host-id>`.
pub fn allowed_signers_entry(key: &HostKey, host_id: &HostId) -> String {
    sign::allowed_signers_line(
        host_id.as_str(),
        &ALLOWED_NAMESPACES,
        &key.public_key_line(&key_comment(host_id)),
    )
}

/// Loads `STATE/host_key`, creating it (and the state directory) if absent.
/// The public key file gets the comment `custody-agent`.
pub fn load_or_create(state_dir: &Path) -> anyhow::Result<HostKey> {
    load_or_create_with_comment(state_dir, "custody-agent")
}

/// [`load_or_create`], writing `host_key.pub` with the comment
/// `custody-agent@<host-id>` when it has to be written.
pub fn load_or_create_for_host(state_dir: &Path, host_id: &HostId) -> anyhow::Result<HostKey> {
    load_or_create_with_comment(state_dir, &key_comment(host_id))
}

/// [`load_or_create`] with the comment written into `host_key.pub` when it is
/// created (the collector uses `custody-collector@<host-id>`).
pub fn load_or_create_with_comment(state_dir: &Path, comment: &str) -> anyhow::Result<HostKey> {
    create_state_dir(state_dir)?;
    let key_path = state_dir.join(HOST_KEY_FILE);
    let key = match load(&key_path)? {
        Some(key) => key,
        None => match create(state_dir, &key_path)? {
            Some(key) => {
                tracing::info!(path = %key_path.display(), fingerprint = %key.fingerprint(), "created a new host key");
                key
            }
            // Another process created it between our look and our create.
            None => load(&key_path)?.with_context(|| {
                format!(
                    "host key {} vanished while it was being created",
                    key_path.display()
                )
            })?,
        },
    };
    ensure_public_key_file(state_dir, &key, comment)?;
    Ok(key)
}

/// The state directory holds the private key, so it is created 0700.
fn create_state_dir(state_dir: &Path) -> anyhow::Result<()> {
    crate::platform::create_private_dir(state_dir).with_context(|| {
        format!(
            "cannot create state directory {} (state_dir)",
            state_dir.display()
        )
    })
}

/// `Ok(None)` if the file does not exist.
fn load(key_path: &Path) -> anyhow::Result<Option<HostKey>> {
    let meta = match fs::metadata(key_path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot stat host key {}", key_path.display()))
        }
    };
    if !meta.is_file() {
        bail!("host key {} is not a regular file", key_path.display());
    }
    #[cfg(unix)]
    let mode = meta.permissions().mode() & 0o777;
    #[cfg(unix)]
    if mode & 0o077 != 0 {
        bail!(
            "host key {} has mode {mode:04o}: it is accessible by group or others, who could sign digests in this \
             host's name; run `chmod 600 {}` (and consider whether the key has leaked)",
            key_path.display(),
            key_path.display()
        );
    }
    let text = fs::read_to_string(key_path)
        .with_context(|| format!("cannot read host key {}", key_path.display()))?;
    let key = HostKey::from_openssh(&text).with_context(|| {
        format!(
            "host key {} is not a usable OpenSSH Ed25519 private key; if it is damaged, move it away and a new key \
             will be created (auditors must then be given the new public key)",
            key_path.display()
        )
    })?;
    Ok(Some(key))
}

/// Writes a fresh key with `create_new`; `Ok(None)` if the file appeared
/// meanwhile.
fn create(state_dir: &Path, key_path: &Path) -> anyhow::Result<Option<HostKey>> {
    let key = HostKey::generate();
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = match options.open(key_path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot create host key {}", key_path.display()))
        }
    };
    // The umask cannot widen 0600, but a pre-set default ACL might; make sure.
    #[cfg(unix)]
    file.set_permissions(fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot set mode 0600 on {}", key_path.display()))?;
    file.write_all(key.to_openssh().as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write host key {}", key_path.display()))?;
    sync_dir(state_dir)?;
    Ok(Some(key))
}

/// Writes `host_key.pub` if it is missing; refuses one that names another key.
fn ensure_public_key_file(state_dir: &Path, key: &HostKey, comment: &str) -> anyhow::Result<()> {
    let pub_path = state_dir.join(HOST_PUBLIC_KEY_FILE);
    match fs::read_to_string(&pub_path) {
        Ok(text) => {
            let found = sign::normalize_public_key(&text)
                .with_context(|| format!("{} is not a public key line", pub_path.display()))?;
            let expected = sign::normalize_public_key(&key.public_key_line(""))
                .context("the host key's own public key line does not parse")?;
            if found != expected {
                bail!(
                    "{} holds a different public key than {} ({} expected): remove the stale .pub file and it will \
                     be rewritten from the private key",
                    pub_path.display(),
                    state_dir.join(HOST_KEY_FILE).display(),
                    key.fingerprint()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            write_public_key_file(state_dir, &pub_path, key, comment)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", pub_path.display())),
    }
}

/// Temp file, fsync, rename, fsync the directory: never a torn .pub file.
fn write_public_key_file(
    state_dir: &Path,
    pub_path: &Path,
    key: &HostKey,
    comment: &str,
) -> anyhow::Result<()> {
    let tmp: PathBuf = state_dir.join(format!(
        ".{HOST_PUBLIC_KEY_FILE}.tmp-{}",
        std::process::id()
    ));
    let line = format!("{}\n", key.public_key_line(comment));
    let result = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o644);
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        file.set_permissions(fs::Permissions::from_mode(0o644))?;
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, pub_path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", pub_path.display()));
    }
    sync_dir(state_dir)
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    crate::platform::sync_dir(dir)
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let host = HostId::new("web01").unwrap();
        let first = load_or_create_for_host(&state, &host).unwrap();
        let second = load_or_create(&state).unwrap();
        assert_eq!(first.fingerprint(), second.fingerprint());
        #[cfg(unix)]
        check_modes(&state);
        let pub_line = fs::read_to_string(state.join(HOST_PUBLIC_KEY_FILE)).unwrap();
        assert_eq!(
            pub_line.trim_end(),
            first.public_key_line("custody-agent@web01")
        );
    }

    #[cfg(unix)]
    fn check_modes(state: &Path) {
        let key_mode = fs::metadata(state.join(HOST_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(key_mode, 0o600);
        let pub_mode = fs::metadata(state.join(HOST_PUBLIC_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(pub_mode, 0o644);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let key_path = dir.path().join(HOST_KEY_FILE);
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:#}", load_or_create(dir.path()).unwrap_err());
        assert!(err.contains("chmod 600"), "{err}");
        assert!(err.contains("0644"), "{err}");
    }

    #[test]
    fn refuses_a_damaged_key_and_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join(HOST_KEY_FILE);
        fs::write(&key_path, "-----BEGIN OPENSSH PRIVATE KEY-----\ntruncated").unwrap();
        #[cfg(unix)]
        fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = format!("{:#}", load_or_create(dir.path()).unwrap_err());
        assert!(err.contains("not a usable OpenSSH"), "{err}");
        assert!(fs::read_to_string(&key_path)
            .unwrap()
            .ends_with("truncated"));
    }

    #[test]
    fn refuses_a_public_key_file_for_another_key() {
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let other = HostKey::generate();
        fs::write(
            dir.path().join(HOST_PUBLIC_KEY_FILE),
            other.public_key_line("x"),
        )
        .unwrap();
        let err = format!("{:#}", load_or_create(dir.path()).unwrap_err());
        assert!(err.contains("different public key"), "{err}");
    }

    #[test]
    fn allowed_signers_entry_names_host_and_namespaces() {
        let key = HostKey::generate();
        let host = HostId::new("db-2.example").unwrap();
        let line = allowed_signers_entry(&key, &host);
        let expected_prefix =
            "db-2.example namespaces=\"custody-digest,custody-bundle\" ssh-ed25519 AAAA";
        assert!(line.starts_with(expected_prefix), "{line}");
        assert!(line.ends_with(" custody-agent@db-2.example"), "{line}");
    }
}
