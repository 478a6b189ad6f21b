//! A per-test workspace: its own directories and its own host id, so tests
//! running in parallel never share a store, a state directory or a stream.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Temp directories for one test. `logs` holds the files the agent tails,
/// `store` is the filesystem store, `state` the agent's state directory.
///
/// The whole tree is removed on drop unless `CUSTODY_TEST_KEEP=1`, in which
/// case its path is printed so a failure can be inspected.
pub struct TestEnv {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub logs: PathBuf,
    pub store: PathBuf,
    pub state: PathBuf,
    /// Unique per test and process: `<name>-<pid>-<n>`.
    pub host_id: String,
}

impl TestEnv {
    /// Creates the directories. `name` becomes part of the host id, so it
    /// should be short and use only letters, digits, `-` and `_`.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let host_id = format!("{name}-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("custody-{host_id}-"))
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir for {host_id}: {e}"));
        let root = dir.path().to_path_buf();
        let env = Self {
            logs: root.join("logs"),
            store: root.join("store"),
            state: root.join("state"),
            root,
            dir: Some(dir),
            host_id,
        };
        for d in [&env.logs, &env.store, &env.state] {
            std::fs::create_dir_all(d)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        }
        env
    }

    /// A fresh subdirectory of the workspace (created).
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.root.join(name);
        std::fs::create_dir_all(&p)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", p.display()));
        p
    }

    /// A path in the logs directory.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(name)
    }

    /// The store's host directory, `store/v1/<host>`.
    pub fn host_dir(&self) -> PathBuf {
        self.store.join("v1").join(&self.host_id)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let keep = std::env::var("CUSTODY_TEST_KEEP")
            .map(|v| v == "1")
            .unwrap_or(false);
        if let Some(dir) = self.dir.take() {
            if keep {
                let path = dir.keep();
                eprintln!("CUSTODY_TEST_KEEP: kept {}", path.display());
            } else if let Err(e) = dir.close() {
                // Store files are 0444 but root removes them; anything else
                // left behind is only a leak in /tmp, not a test failure.
                eprintln!("warning: could not remove {}: {e}", self.root.display());
            }
        }
    }
}
