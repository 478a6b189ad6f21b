//! Where the Python test tools live: the virtual environment `.ci/run`
//! makes (`.venv/` in the checkout, from `.ci/requirements.txt`), so the
//! tests never depend on, or change, the system's Python.
//!
//! `CUSTODY_TEST_PYTHON` names another interpreter (one whose environment
//! has moto, boto3 and bagit); without it and without `.venv/`, plain
//! `python3` from `PATH` is used and the tests that need a package say
//! which one is missing.

use std::path::PathBuf;

/// The Python interpreter for test tools (moto, boto3, bagit).
pub fn python3() -> PathBuf {
    if let Some(p) = std::env::var_os("CUSTODY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = venv_bin().join("python3");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A script the virtual environment installed (e.g. `bagit.py`), or the
/// bare name, found on `PATH`, when there is no `.venv/`.
pub fn venv_script(name: &str) -> PathBuf {
    let dir = match std::env::var_os("CUSTODY_TEST_PYTHON") {
        Some(p) => PathBuf::from(p)
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(venv_bin),
        None => venv_bin(),
    };
    let path = dir.join(name);
    if path.is_file() {
        path
    } else {
        PathBuf::from(name)
    }
}

fn venv_bin() -> PathBuf {
    crate::bins::workspace_root().join(".venv").join("bin")
}
