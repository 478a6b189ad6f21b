//! The agent's `status.json`, read as JSON rather than through the agent
//! crate's types, so these tests see exactly what an operator's tools see
//! and keep compiling while the agent is being changed.

use std::path::Path;

use serde_json::Value;

/// File name of the agent's status in its state directory.
pub const STATUS_FILE: &str = "status.json";

/// Reads and parses `<state_dir>/status.json`; `Err` says why it is not
/// (yet) readable, for use inside [`crate::wait_for`].
pub fn read_status(state_dir: &Path) -> Result<Value, String> {
    let path = state_dir.join(STATUS_FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// `running` from a status value (false if absent).
pub fn is_running(status: &Value) -> bool {
    status
        .get("running")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `spool.backpressure` from a status value (false if absent).
pub fn backpressure(status: &Value) -> bool {
    status
        .pointer("/spool/backpressure")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// `spool.bytes` from a status value (0 if absent).
pub fn spool_bytes(status: &Value) -> u64 {
    status
        .pointer("/spool/bytes")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// Total `behind` over every file of every source: bytes not yet in a
/// segment.
pub fn total_behind(status: &Value) -> u64 {
    status
        .get("sources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.get("files").and_then(Value::as_array))
        .flatten()
        .filter_map(|f| f.get("behind").and_then(Value::as_u64))
        .sum()
}
