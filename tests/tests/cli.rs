//! The operator's commands, through the real binary: `status` of a running
//! agent, `check-config` on the shipped example configurations, and
//! `prune` / `hold` on a filesystem store.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use custody_tests::bins::workspace_root;
use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn agent<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    agent_output(args)
}

/// Highest stored seq per stream id.
fn last_seqs(env: &TestEnv) -> BTreeMap<String, u64> {
    StoreContents::read(&env.store, &env.host_id)
        .map(|c| {
            c.streams
                .iter()
                .filter_map(|(id, segs)| Some((id.clone(), segs.last()?.meta.seq.0)))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn status_json_lists_every_source_file_with_offset_behind_and_last_segment() {
    let env = TestEnv::new("cli-status");
    let mut app1 = LineWriter::new(env.log("app-1.log"), "a1");
    let mut app2 = LineWriter::new(env.log("app-2.log"), "a2");
    let mut web = LineWriter::new(env.log("access.log"), "w");
    app1.append(testdata_lines(), 300);
    app2.append(testdata_lines(), 50);
    web.append(testdata_lines(), 200);
    let app_glob = format!("{}/app-*.log", env.logs.display());
    let web_path = env.log("access.log").display().to_string();
    let opts = AgentOptions::new(&env)
        .source("app", &app_glob)
        .source("web", &web_path)
        .flag("segment-max-bytes", 8192);
    let mut agent_proc = AgentProcess::start(&opts);
    let all: Vec<String> = [app1.ids(), app2.ids(), web.ids()].concat();
    wait_for_ids(&env, &all, WAIT, || agent_proc.check_running());

    // status.json catches up within about a second of the store.
    let sizes: BTreeMap<String, u64> = ["app-1.log", "app-2.log", "access.log"]
        .iter()
        .map(|n| {
            let p = env.log(n);
            (
                p.display().to_string(),
                fs::metadata(&p).expect("log exists").len(),
            )
        })
        .collect();
    let status = wait_for("status.json with every file read to its end", WAIT, || {
        agent_proc.check_running()?;
        let out = agent(&[
            "status".as_ref(),
            "--state-dir".as_ref(),
            env.state.as_os_str(),
            "--json".as_ref(),
        ]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("not JSON ({e}): {}", text(&out)))?;
        let seqs = last_seqs(&env);
        let sources = v["sources"].as_array().cloned().unwrap_or_default();
        let caught_up = sources.len() == 2
            && sources.iter().all(|s| {
                let last = s["last_segment_seq"].as_u64();
                let stream = s["stream_id"].as_str().unwrap_or("");
                last.is_some() && last == seqs.get(stream).copied()
            })
            && sizes.iter().all(|(path, size)| {
                sources
                    .iter()
                    .flat_map(|s| s["files"].as_array().cloned().unwrap_or_default())
                    .any(|f| {
                        f["path"].as_str() == Some(path.as_str())
                            && f["offset"].as_u64() == Some(*size)
                            && f["size"].as_u64() == Some(*size)
                            && f["behind"].as_u64() == Some(0)
                    })
            });
        if caught_up && out.status.code() == Some(0) {
            Ok(v)
        } else {
            Err(format!(
                "store last seqs {seqs:?}; sizes {sizes:?}; status {}",
                text(&out)
            ))
        }
    });
    assert_eq!(status["running"], Value::Bool(true), "status: {status:#}");
    assert_eq!(status["host_id"].as_str(), Some(env.host_id.as_str()));
    assert_eq!(
        status["pid"].as_u64(),
        Some(u64::from(agent_proc.pid())),
        "status names another pid: {status:#}"
    );
    let by_category: BTreeMap<&str, &Value> = status["sources"]
        .as_array()
        .expect("sources array")
        .iter()
        .map(|s| (s["category"].as_str().expect("category"), s))
        .collect();
    let app = by_category.get("app").expect("an app source in status");
    assert_eq!(
        app["files"].as_array().map(Vec::len),
        Some(2),
        "the app glob matches two files: {app:#}"
    );
    assert_eq!(app["patterns"][0].as_str(), Some(app_glob.as_str()));
    assert!(
        app["errors"].as_array().is_some_and(Vec::is_empty),
        "no errors expected: {app:#}"
    );
    assert!(
        app["last_segment_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "last_segment_at in UTC: {app:#}"
    );
    let web_status = by_category.get("web").expect("a web source in status");
    assert_eq!(
        web_status["files"][0]["path"].as_str(),
        Some(web_path.as_str())
    );

    // The human form names the same files.
    let out = agent(&[
        "status".as_ref(),
        "--state-dir".as_ref(),
        env.state.as_os_str(),
    ]);
    let human = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "status of a healthy agent: {}",
        text(&out)
    );
    for path in sizes.keys() {
        assert!(
            human.contains(path.as_str()),
            "status does not name {path}:\n{human}"
        );
    }

    agent_proc.stop_clean(Duration::from_secs(30));
    let out = agent(&[
        "status".as_ref(),
        "--state-dir".as_ref(),
        env.state.as_os_str(),
        "--json".as_ref(),
    ]);
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    assert_eq!(
        v["running"],
        Value::Bool(false),
        "after a clean stop: {v:#}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "status of a stopped agent must not report healthy: {}",
        text(&out)
    );

    // No status file at all: a different exit, and a message naming the file.
    let empty = env.subdir("no-state");
    let out = agent(&["status".as_ref(), "--state-dir".as_ref(), empty.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "status without status.json: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&empty.display().to_string()),
        "the message should name the state directory: {}",
        text(&out)
    );
}

/// The Linux example configurations under `packaging/`. The Windows example
/// (`packaging/windows/`) has Windows paths and Event Log sources, which a
/// Linux agent rightly refuses; `agent/tests/config_examples.rs` checks it
/// on Windows (under Wine in CI).
fn example_configs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        {
            let p = e.expect("listing packaging").path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "windows") {
                    continue;
                }
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let dir = workspace_root().join("packaging");
    let mut out = Vec::new();
    walk(&dir, &mut out);
    out.sort();
    assert!(
        !out.is_empty(),
        "no example configuration (*.toml) under {}",
        dir.display()
    );
    out
}

#[test]
fn check_config_accepts_the_packaged_examples() {
    for config in example_configs() {
        let out = agent(&[
            "check-config".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "check-config --config {}: {}",
            config.display(),
            text(&out)
        );
        let bad: Vec<&str> = stdout
            .lines()
            .filter(|l| {
                l.starts_with("problem:")
                    || (l.starts_with("warning:") && !l.contains("matches no file"))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "check-config --config {} should report at most missing-file warnings, reported:\n{}",
            config.display(),
            bad.join("\n")
        );
        assert!(
            stdout.contains("configuration is usable"),
            "{}: {}",
            config.display(),
            text(&out)
        );
    }
}

/// Sets the retain-until time in `key`'s retention record to 2001, as an
/// operator with root could; the record's other fields are left as written.
fn expire(store: &Path, key: &str) {
    let path = store.join(".retention").join(format!("{key}.json"));
    let record = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("retention record {} for {key}: {e}", path.display()));
    let v: Value = serde_json::from_str(&record)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let old = v["retain_until"]
        .as_str()
        .unwrap_or_else(|| panic!("{} has no retain_until: {record}", path.display()));
    let new = record.replace(old, "2001-01-01T00:00:00.000000Z");
    assert_ne!(new, record);
    fs::write(&path, new).unwrap_or_else(|e| panic!("cannot rewrite {}: {e}", path.display()));
}

/// Every object (not bookkeeping) in a store, as keys.
fn object_keys(store: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        {
            let p = e.expect("listing store").path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(
                    p.strip_prefix(root)
                        .expect("under root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(store, &store.join("v1"), &mut out);
    out.sort();
    out
}

fn prune(store: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "prune".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
        "--json".as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let out = agent(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "custody-agent prune: {}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("prune --json is not JSON ({e}): {}", text(&out)))
}

fn keys_of(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .unwrap_or_else(|| panic!("prune report has no {field} array: {v:#}"))
        .iter()
        .map(|k| k.as_str().expect("key string").to_string())
        .collect()
}

#[test]
fn prune_deletes_only_expired_objects_and_never_held_ones() {
    let env = TestEnv::new("cli-prune");
    let mut w = LineWriter::new(env.log("app.log"), "p");
    w.append(testdata_lines(), 300);
    let opts = AgentOptions::new(&env)
        .source("app", &env.log("app.log").display().to_string())
        .flag("segment-max-bytes", 8192);
    let mut agent_proc = AgentProcess::start(&opts);
    wait_for_ids(&env, w.ids(), WAIT, || agent_proc.check_running());
    agent_proc.stop_clean(Duration::from_secs(30));

    // Work on a copy: the original stays as the agent wrote it.
    let store = env.root.join("store-copy");
    let out = Command::new("cp")
        .arg("-a")
        .arg(&env.store)
        .arg(&store)
        .output()
        .expect("run cp");
    assert!(
        out.status.success(),
        "cp -a: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let before = object_keys(&store);
    let segments: Vec<&String> = before.iter().filter(|k| k.ends_with(".zst")).collect();
    assert!(segments.len() >= 3, "need ≥ 3 payloads, have {before:?}");
    let expired = segments[0].clone();
    let held = segments[1].clone();
    expire(&store, &expired);
    expire(&store, &held);

    // Nothing is past retention in the untouched store.
    let v = prune(&env.store, &["--dry-run"]);
    assert!(
        keys_of(&v, "deleted").is_empty(),
        "fresh store: nothing may be due: {v:#}"
    );

    let out = agent(&[
        "hold".as_ref(),
        "set".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
        held.as_ref(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "hold set {held}: {}",
        text(&out)
    );
    // A hold on a prefix with no object is an error, not a silent no-op.
    let out = agent(&[
        "hold".as_ref(),
        "set".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
        "v1/no-such-host/".as_ref(),
    ]);
    assert_ne!(
        out.status.code(),
        Some(0),
        "hold set on an empty prefix must fail: {}",
        text(&out)
    );

    let dry = prune(&store, &["--dry-run"]);
    assert_eq!(
        keys_of(&dry, "deleted"),
        vec![expired.clone()],
        "dry run: {dry:#}"
    );
    assert_eq!(object_keys(&store), before, "--dry-run deleted something");

    let v = prune(&store, &[]);
    assert_eq!(
        keys_of(&v, "deleted"),
        vec![expired.clone()],
        "prune report: {v:#}"
    );
    assert_eq!(
        keys_of(&v, "held"),
        vec![held.clone()],
        "prune report: {v:#}"
    );
    let after = object_keys(&store);
    let expected_after: Vec<String> = before.iter().filter(|k| **k != expired).cloned().collect();
    assert_eq!(
        after, expected_after,
        "prune must delete exactly the one expired, unheld object"
    );
    assert!(
        store.join(&held).is_file(),
        "held object {held} was deleted"
    );

    // Released, the held object goes at the next prune.
    let out = agent(&[
        "hold".as_ref(),
        "release".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
        held.as_ref(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "hold release {held}: {}",
        text(&out)
    );
    let v = prune(&store, &[]);
    assert_eq!(
        keys_of(&v, "deleted"),
        vec![held.clone()],
        "prune after release: {v:#}"
    );
    assert!(
        !store.join(&held).exists(),
        "released, expired object {held} still present"
    );

    // The verifier sees the deletions as evidence gone, not as a clean store.
    let out = run_verify(&store, &[]);
    assert_eq!(
        out.code,
        Some(1),
        "verify after pruning two payloads: {}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.findings()
            .iter()
            .any(|f| f["kind"] == "payload_missing"),
        "expected payload_missing findings: {}",
        out.stdout
    );
}
