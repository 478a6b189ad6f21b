//! Real journal files for the journald tests: export-format input made by
//! a test, written by `systemd-journal-remote` as journald would keep it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `systemd-journal-remote` (Debian: package systemd-journal-remote, not on PATH).
pub fn journal_remote() -> PathBuf {
    ["/usr/lib/systemd/systemd-journal-remote", "/lib/systemd/systemd-journal-remote"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("systemd-journal-remote is not installed (apt-get install systemd-journal-remote; .ci/run does)")
}

/// Appends a binary export field (`NAME`, LF, u64 LE length, data, LF).
pub fn push_binary_field(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(data);
    out.push(b'\n');
}

/// Appends entries to `DIR/remote.journal` with systemd-journal-remote.
pub fn write_journal(dir: &Path, input: &[u8]) {
    let mut child = Command::new(journal_remote())
        .arg(format!("--output={}", dir.join("remote.journal").display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting systemd-journal-remote");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("feeding systemd-journal-remote");
    let out = child.wait_with_output().expect("systemd-journal-remote");
    assert!(
        out.status.success(),
        "systemd-journal-remote failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
