//! The binaries under test, built once per test process.
//!
//! Tests run the real `custody-agent`, `custody-verify` and `custody-collector`, not library
//! calls, so that flag parsing, signal handling and exit codes are covered.
//! `cargo test -p custody-tests` does not build other crates' binaries, so
//! the first caller runs `cargo build` for them (serialized by cargo's own
//! lock against concurrent builds) and everyone shares the result; with
//! `CUSTODY_BIN_DIR` set (as `.ci/run` does, after building them once) the
//! binaries are taken from there and no test runs cargo at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Paths of the built binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    pub agent: PathBuf,
    pub verify: PathBuf,
    pub collector: PathBuf,
    pub report: PathBuf,
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

/// Builds `custody-agent`, `custody-verify`, `custody-collector` and `custody-report` (debug) on first use and
/// returns their paths. Panics with cargo's exit status if the build fails:
/// no test can mean anything without the binaries.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        if let Some(dir) = std::env::var_os(PREBUILT_ENV) {
            return located(PathBuf::from(dir));
        }
        let mut build = Command::new(env!("CARGO"));
        // Cargo gives the test process its package's CARGO_PKG_*, CARGO_MANIFEST_*
        // (…) variables. Build scripts such as ring's declare
        // `rerun-if-env-changed` on some of them, so passing them on made this
        // build and the `cargo test` build invalidate each other's ring (and
        // everything above it) on every run.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || matches!(
                    name.as_ref(),
                    "CARGO_CRATE_NAME" | "CARGO_PRIMARY_PACKAGE" | "CARGO_TARGET_TMPDIR"
                )
            {
                build.env_remove(name.as_ref());
            }
        }
        let status = build
            .args([
                "build",
                "-p",
                "custody-agent",
                "-p",
                "custody-evidence",
                "-p",
                "custody-collector",
                "-p",
                "custody-report",
                "--bins",
            ])
            .current_dir(workspace_root())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {} build: {e}", env!("CARGO")));
        assert!(
            status.success(),
            "cargo build of custody-agent, custody-verify, custody-collector and custody-report failed: {status}"
        );
        located(target_dir().join("debug"))
    })
}

/// `CUSTODY_BIN_DIR`: a directory holding binaries already built (by
/// `.ci/run`, before `cargo test`), so that no test process runs cargo.
const PREBUILT_ENV: &str = "CUSTODY_BIN_DIR";

/// The binaries in `dir`, each checked to exist.
fn located(dir: PathBuf) -> Bins {
    let bins = Bins {
        agent: dir.join("custody-agent"),
        verify: dir.join("custody-verify"),
        collector: dir.join("custody-collector"),
        report: dir.join("custody-report"),
    };
    for path in [&bins.agent, &bins.verify, &bins.collector, &bins.report] {
        assert!(
            path.is_file(),
            "binary {} missing (built by cargo, or in {PREBUILT_ENV})",
            path.display()
        );
    }
    bins
}
