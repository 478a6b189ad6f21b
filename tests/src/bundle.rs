//! Evidence bundles, driven as a responder and an auditor would: the real
//! `custody-agent snapshot`, the real `custody-verify bundle`, and the stock
//! tools (`tar`, `bagit.py`, `sha256sum`, `ssh-keygen`, `zstd`, `python3`'s
//! `tarfile` for hand-made hostile archives).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::agent::AgentOptions;
use crate::bins::bins;
use crate::verify::VerifyOutcome;

/// Runs `custody-agent snapshot` with `opts`' configuration flags (the
/// same as `run`'s) and `extra` (`--incident …`), to completion.
pub fn snapshot(opts: &AgentOptions, extra: &[&str]) -> Output {
    let mut args: Vec<OsString> = opts.args("snapshot");
    args.extend(extra.iter().map(OsString::from));
    opts.command(&args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bins().agent.display()))
}

/// Panics with the output unless the command exited 0.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed with {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `custody-verify bundle FILE --json [extra…]`.
pub fn verify_bundle(file: &Path, extra: &[&str]) -> VerifyOutcome {
    let out = Command::new(&bins().verify)
        .arg("bundle")
        .arg(file)
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

/// Whether the report has a finding of `kind` about `file` (any file if `None`).
pub fn has_finding(outcome: &VerifyOutcome, kind: &str, file: Option<&str>) -> bool {
    outcome.findings().iter().any(|f| {
        f.get("kind").and_then(Value::as_str) == Some(kind)
            && match file {
                Some(w) => f
                    .get("file")
                    .and_then(Value::as_str)
                    .is_some_and(|x| x == w),
                None => true,
            }
    })
}

/// Runs a program and panics with its output unless it exits 0.
pub fn run_ok(program: &str, args: &[&str], dir: &Path) -> Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} (is it installed? .ci/run installs it): {e}")
        });
    assert_success(&format!("{program} {}", args.join(" ")), &out);
    out
}

/// `tar xf BUNDLE -C DIR` with GNU tar, as an auditor extracts it; returns the bag directory.
pub fn extract(bundle: &Path, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    run_ok(
        "tar",
        &[
            "xf",
            &bundle.to_string_lossy(),
            "-C",
            &dir.to_string_lossy(),
        ],
        dir,
    );
    let mut bags: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        bags.len(),
        1,
        "one bag directory expected in {}",
        dir.display()
    );
    bags.remove(0)
}

/// Packs a bag directory back into a tar (GNU tar, sorted names), the way
/// someone who edited an extracted bundle would.
pub fn repack(bag: &Path, out: &Path) {
    let parent = bag.parent().expect("bag has a parent");
    let name = bag.file_name().expect("bag has a name").to_string_lossy();
    run_ok(
        "tar",
        &["--sort=name", "-cf", &out.to_string_lossy(), &name],
        parent,
    );
}

/// Appends one hand-made member to a tar with Python's `tarfile` (which,
/// unlike GNU tar, writes whatever name and type it is given).
pub fn python_append(bundle: &Path, name: &str, kind: &str, target: &str) {
    let script = r#"
import io, sys, tarfile
path, name, kind, target = sys.argv[1:5]
with tarfile.open(path, "a", format=tarfile.GNU_FORMAT) as t:
    ti = tarfile.TarInfo(name)
    if kind == "symlink":
        ti.type = tarfile.SYMTYPE
        ti.linkname = target
        t.addfile(ti)
    else:
        data = target.encode()
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
"#;
    let out = Command::new(crate::python::python3())
        .args(["-c", script])
        .arg(bundle)
        .args([name, kind, target])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert_success("python3 tarfile append", &out);
}
