//! With `CUSTODY_BIN_DIR` set (as `.ci/run` sets it after building the
//! binaries once), the harness takes the binaries from there and runs no
//! cargo: the paths it returns are that directory's, found at once. Its own
//! test process, so that no other test has filled the harness's cache.

use std::time::{Duration, Instant};

#[test]
fn custody_bin_dir_is_used_without_building() {
    let dir = tempfile::tempdir().expect("a temp dir");
    for name in [
        "custody-agent",
        "custody-verify",
        "custody-collector",
        "custody-report",
    ] {
        std::fs::write(dir.path().join(name), b"#!/bin/sh\n").expect("a stand-in binary");
    }
    std::env::set_var("CUSTODY_BIN_DIR", dir.path());
    let start = Instant::now();
    let bins = custody_tests::bins();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "bins() took {:?}: it ran a build",
        start.elapsed()
    );
    assert_eq!(bins.agent, dir.path().join("custody-agent"));
    assert_eq!(bins.verify, dir.path().join("custody-verify"));
    assert_eq!(bins.collector, dir.path().join("custody-collector"));
    assert_eq!(bins.report, dir.path().join("custody-report"));
}
