//! Running `custody-verify store` as an auditor would.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::bins::bins;

/// What `custody-verify store DIR --json` did.
#[derive(Debug)]
pub struct VerifyOutcome {
    /// 0 clean, 1 findings, 2 could not run; `None` if killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The parsed JSON report, if stdout was JSON.
    pub json: Option<Value>,
}

impl VerifyOutcome {
    /// The findings array of the report (empty if none or not JSON).
    pub fn findings(&self) -> Vec<Value> {
        self.json
            .as_ref()
            .and_then(|j| j.get("findings"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    /// Panics with the report unless the exit code is 0.
    pub fn assert_clean(&self) {
        assert_eq!(
            self.code,
            Some(0),
            "custody-verify store expected exit 0, found {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
    }
}

/// Runs `custody-verify store <store> --json [extra…]`.
pub fn run_verify(store: &Path, extra: &[&str]) -> VerifyOutcome {
    let out = Command::new(&bins().verify)
        .arg("store")
        .arg(store)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bins().verify.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    VerifyOutcome {
        code: out.status.code(),
        json: serde_json::from_str(&stdout).ok(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes the host's allowed_signers line (from `custody-agent key show`)
/// to `<env.root>/allowed_signers` for `custody-verify --allowed-signers`,
/// so the digests' signatures are checked against the host's own key.
pub fn allowed_signers(env: &crate::env::TestEnv) -> std::path::PathBuf {
    let out = crate::agent::agent_output([
        "key".as_ref(),
        "show".as_ref(),
        "--state-dir".as_ref(),
        env.state.as_os_str(),
        "--host-id".as_ref(),
        std::ffi::OsStr::new(&env.host_id),
    ]);
    assert!(
        out.status.success(),
        "custody-agent key show failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        line.starts_with(&env.host_id),
        "key show printed {line:?}, expected a line starting with the host id"
    );
    let path = env.root.join("allowed_signers");
    std::fs::write(&path, line).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}
