//! Re-deriving a report's evidence reference (store object, offset,
//! length, SHA-256s) with the stock tools the report's README names, as an
//! auditor would: `zstd -dc`, `tail -c`, `head -c`, `sha256sum`.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `sh -c SCRIPT sh ARGS…` and returns its stdout; panics naming the
/// script and its stderr when it fails.
pub fn sh(script: &str, args: &[&str]) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks one evidence entry of a report over `store` (`object`,
/// `offset`, `len`, `payload_raw_sha256`, `line_sha256`) with stock tools
/// only, and returns the cited bytes (lossily as text) for the caller's
/// own checks.
pub fn rederive_evidence(store: &Path, e: &Value) -> String {
    let object = store.join(e["object"].as_str().expect("object"));
    let object = object.to_str().expect("utf-8 path");
    let offset = e["offset"].as_u64().expect("offset").to_string();
    let len = e["len"].as_u64().expect("len").to_string();
    let whole = sh(r#"zstd -dc "$1" | sha256sum | cut -d' ' -f1"#, &[object]);
    assert_eq!(whole.trim(), e["payload_raw_sha256"], "{e:#}");
    let line = sh(
        r#"zstd -dc "$1" | tail -c +$(($2 + 1)) | head -c "$3" | sha256sum | cut -d' ' -f1"#,
        &[object, &offset, &len],
    );
    assert_eq!(line.trim(), e["line_sha256"], "{e:#}");
    sh(
        r#"zstd -dc "$1" | tail -c +$(($2 + 1)) | head -c "$3""#,
        &[object, &offset, &len],
    )
}
