//! The binaries under test, built once per test process.
//!
//! Tests run the real `custody-agent`, `custody-verify` and `custody-collector`, not library
//! calls, so that flag parsing, signal handling and exit codes are covered.
//! `cargo test -p custody-tests` does not build other crates' binaries, so
//! the first caller runs `cargo build` for them (serialized by cargo's own
//! lock against concurrent builds) and everyone shares the result.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    pub agent: PathBuf,
    pub verify: PathBuf,
    pub collector: PathBuf,
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate lives inside the workspace")
        .to_path_buf()
}

/// The target directory cargo uses for this workspace.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// Builds `custody-agent`, `custody-verify` and `custody-collector` (debug) on first use and
/// returns their paths. Panics with cargo's exit status if the build fails:
/// no test can mean anything without the binaries.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "custody-agent",
                "-p",
                "custody-evidence",
                "-p",
                "custody-collector",
                "--bins",
            ])
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {} build: {e}", env!("CARGO")));
        assert!(
            status.success(),
            "cargo build of custody-agent, custody-verify and custody-collector failed: {status}"
        );
        let dir = target_dir().join("debug");
        let bins = Bins {
            agent: dir.join("custody-agent"),
            verify: dir.join("custody-verify"),
            collector: dir.join("custody-collector"),
        };
        for path in [&bins.agent, &bins.verify, &bins.collector] {
            assert!(
                path.is_file(),
                "binary {} missing after a successful build",
                path.display()
            );
        }
        bins
    })
}
