//! Interoperability with OpenSSH: signatures made by [`HostKey`] verify with
//! `ssh-keygen -Y verify`, and signatures made by `ssh-keygen -Y sign`
//! verify with [`verify`]. The format promises that auditors need nothing
//! but OpenSSH, so these tests fail (never skip) when `ssh-keygen` is absent.
//! Unix only: they drive the system's `ssh-keygen` (the Windows build of
//! the crate is tested under Wine, which has none).
#![cfg(unix)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use custody_evidence::digest::DIGEST_NAMESPACE;
use custody_evidence::sign::{allowed_signers_line, verify, HostKey, SignError};

fn ssh_keygen() -> PathBuf {
    let candidates = [
        std::env::var_os("SSH_KEYGEN").map(PathBuf::from),
        Some(PathBuf::from("/usr/bin/ssh-keygen")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return c;
        }
    }
    panic!(
        "ssh-keygen not found at /usr/bin/ssh-keygen (or $SSH_KEYGEN): install openssh-client; \
         these tests prove OpenSSH interoperability and must not be skipped"
    );
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh-keygen");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for ssh-keygen")
}

fn write_private(dir: &Path, name: &str, pem: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, pem).unwrap();
    // ssh-keygen refuses private keys readable by others.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn keygen_verify(
    dir: &Path,
    principal: &str,
    allowed: &str,
    msg: &[u8],
    sig: &str,
    namespace: &str,
) -> Output {
    let allowed_path = dir.join("allowed_signers");
    fs::write(&allowed_path, allowed).unwrap();
    let sig_path = dir.join("msg.sig");
    fs::write(&sig_path, sig).unwrap();
    run(
        Command::new(ssh_keygen())
            .args(["-Y", "verify", "-f"])
            .arg(&allowed_path)
            .args(["-I", principal, "-n", namespace, "-s"])
            .arg(&sig_path),
        msg,
    )
}

#[test]
fn ssh_keygen_verifies_our_signature() {
    let dir = tempfile::tempdir().unwrap();
    let key = HostKey::generate();
    let msg = b"{\"format\":\"custody.digest.v1\"}\n";
    let sig = key.sign(DIGEST_NAMESPACE, msg).unwrap();
    let allowed = allowed_signers_line("web01", &[DIGEST_NAMESPACE], &key.public_key_line("web01"));

    let out = keygen_verify(
        dir.path(),
        "web01",
        &format!("{allowed}\n"),
        msg,
        &sig,
        DIGEST_NAMESPACE,
    );
    assert!(
        out.status.success(),
        "ssh-keygen -Y verify refused our signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("Good \"custody-digest\" signature for web01"),
        "{said}"
    );

    // And it must refuse an altered message: the test can fail.
    let out = keygen_verify(
        dir.path(),
        "web01",
        &format!("{allowed}\n"),
        b"altered\n",
        &sig,
        DIGEST_NAMESPACE,
    );
    assert!(
        !out.status.success(),
        "ssh-keygen accepted a signature over different bytes"
    );
}

#[test]
fn we_verify_ssh_keygen_signature() {
    let dir = tempfile::tempdir().unwrap();
    let key = HostKey::generate();
    let key_path = write_private(dir.path(), "host_key", &key.to_openssh());
    let msg_path = dir.path().join("body.json");
    let msg = b"{\"seq\":0}\n";
    fs::write(&msg_path, msg).unwrap();
    let out = run(
        Command::new(ssh_keygen())
            .args(["-Y", "sign", "-f"])
            .arg(&key_path)
            .args(["-n", DIGEST_NAMESPACE])
            .arg(&msg_path),
        b"",
    );
    assert!(
        out.status.success(),
        "ssh-keygen -Y sign failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sig = fs::read_to_string(dir.path().join("body.json.sig")).unwrap();

    let info = verify(&key.public_key_line(""), DIGEST_NAMESPACE, msg, &sig).unwrap();
    assert_eq!(info.fingerprint, key.fingerprint());
    assert!(matches!(
        verify(&key.public_key_line(""), DIGEST_NAMESPACE, b"other", &sig),
        Err(SignError::BadSignature { .. })
    ));
    // Our armor is byte-identical in layout to ssh-keygen's (Ed25519 is
    // deterministic, so the whole signature is identical).
    assert_eq!(key.sign(DIGEST_NAMESPACE, msg).unwrap(), sig);
}

#[test]
fn keys_made_by_ssh_keygen_load_and_fingerprints_agree() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id_ed25519");
    let out = run(
        Command::new(ssh_keygen())
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
            .arg(&key_path),
        b"",
    );
    assert!(
        out.status.success(),
        "ssh-keygen -t ed25519 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = HostKey::from_openssh(&fs::read_to_string(&key_path).unwrap()).unwrap();
    let public = fs::read_to_string(dir.path().join("id_ed25519.pub")).unwrap();
    assert_eq!(key.public_key_line("test"), public.trim_end());

    let out = run(
        Command::new(ssh_keygen())
            .arg("-l")
            .arg("-f")
            .arg(dir.path().join("id_ed25519.pub")),
        b"",
    );
    assert!(out.status.success());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains(&key.fingerprint()),
        "ssh-keygen -l printed {listed}, we computed {}",
        key.fingerprint()
    );

    // An RSA key is refused with a clear error.
    let rsa_path = dir.path().join("id_rsa");
    let out = run(
        Command::new(ssh_keygen())
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-f"])
            .arg(&rsa_path),
        b"",
    );
    assert!(out.status.success());
    match HostKey::from_openssh(&fs::read_to_string(&rsa_path).unwrap()) {
        Err(SignError::NotEd25519 { .. }) | Err(SignError::MalformedPrivateKey(_)) => {}
        other => panic!("RSA key accepted or wrong error: {other:?}"),
    }
}
