//! The small commands, run as the real binary: exit codes and output are
//! what operators and scripts rely on.

use std::path::Path;
use std::process::{Command, Output};

use custody_agent::status::{AgentStatus, SpoolStatus, STATUS_FILE, STATUS_FORMAT_V1};
use custody_evidence::timefmt;
use custody_store::{FsStore, PutOptions};
use time::{Duration, OffsetDateTime};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody-agent"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run custody-agent")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_status(
    state: &Path,
    pid: u32,
    running: bool,
    updated: OffsetDateTime,
    errors: Vec<String>,
) {
    let status = AgentStatus {
        format: STATUS_FORMAT_V1.to_string(),
        host_id: "web01".into(),
        pid,
        agent_instance: "i".into(),
        updated: timefmt::format_utc(updated),
        running,
        store: "/srv/custody".into(),
        spool: SpoolStatus {
            max_bytes: 1 << 30,
            ..SpoolStatus::default()
        },
        last_ship_error: errors.first().cloned(),
        ..AgentStatus::default()
    };
    std::fs::write(
        state.join(STATUS_FILE),
        serde_json::to_string_pretty(&status).unwrap(),
    )
    .unwrap();
}

#[test]
fn status_exit_codes_follow_liveness_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();

    let o = agent(&["status", "--state-dir", state]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    // This test process is alive: a fresh "running" file with our pid is a running agent.
    let now = OffsetDateTime::now_utc();
    write_status(dir.path(), std::process::id(), true, now, vec![]);
    let o = agent(&["status", "--state-dir", state]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).starts_with("agent: running"), "{}", stdout(&o));

    write_status(
        dir.path(),
        std::process::id(),
        true,
        now,
        vec!["store unavailable".into()],
    );
    let o = agent(&["status", "--state-dir", state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("last ship error: store unavailable"),
        "{}",
        stdout(&o)
    );

    // A pid that cannot exist (above the kernel's pid_max limit of 2^22).
    write_status(dir.path(), 4_194_305, true, now, vec![]);
    let o = agent(&["status", "--state-dir", state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("not running (pid 4194305 is gone"),
        "{}",
        stdout(&o)
    );

    write_status(
        dir.path(),
        std::process::id(),
        true,
        now - Duration::minutes(10),
        vec![],
    );
    let o = agent(&["status", "--state-dir", state]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("not responding"), "{}", stdout(&o));

    // --json prints the file exactly as written (plus a final newline if it lacks one).
    let o = agent(&["status", "--state-dir", state, "--json"]);
    let written = std::fs::read_to_string(dir.path().join(STATUS_FILE)).unwrap();
    assert_eq!(stdout(&o), format!("{written}\n"));
}

#[test]
fn key_show_creates_the_key_once_and_prints_an_allowed_signers_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let state = state.to_str().unwrap();
    let first = agent(&["key", "show", "--state-dir", state, "--host-id", "web01"]);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let line = stdout(&first);
    assert!(
        line.starts_with("web01 namespaces=\"custody-digest,custody-bundle\" ssh-ed25519 AAAA"),
        "{line}"
    );
    assert!(line.trim_end().ends_with(" custody-agent@web01"), "{line}");
    let second = agent(&["key", "show", "--state-dir", state, "--host-id", "web01"]);
    assert_eq!(
        stdout(&second),
        line,
        "the key must not change between calls"
    );
}

#[test]
fn prune_deletes_only_expired_objects_not_under_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = FsStore::open(&root).unwrap();
    let past = PutOptions {
        retain_until: OffsetDateTime::now_utc() - Duration::days(1),
    };
    let future = PutOptions {
        retain_until: OffsetDateTime::now_utc() + Duration::days(180),
    };
    store.put_sync("v1/h/old/a", b"a", past).unwrap();
    store.put_sync("v1/h/old/b", b"b", past).unwrap();
    store.put_sync("v1/h/held/c", b"c", past).unwrap();
    store.put_sync("v1/h/new/d", b"d", future).unwrap();
    let root_s = root.to_str().unwrap();

    let o = agent(&["hold", "set", "--store", root_s, "v1/h/held/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("set legal hold on 1 object(s) under v1/h/held/"),
        "{}",
        stdout(&o)
    );
    let o = agent(&["hold", "set", "--store", root_s, "v1/typo/"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no object under prefix \"v1/typo/\""),
        "{}",
        stderr(&o)
    );

    let o = agent(&["prune", "--store", root_s, "--dry-run", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        plan["deleted"],
        serde_json::json!(["v1/h/old/a", "v1/h/old/b"])
    );
    assert_eq!(plan["held"], serde_json::json!(["v1/h/held/c"]));
    assert_eq!(plan["retained"], 1);
    assert_eq!(
        store.list_sync("").unwrap().len(),
        4,
        "dry run deleted something"
    );

    let o = agent(&["prune", "--store", root_s]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("deleted 2, held 1, retained 1"),
        "{}",
        stdout(&o)
    );
    assert_eq!(store.list_sync("").unwrap(), ["v1/h/held/c", "v1/h/new/d"]);

    let o = agent(&["hold", "release", "--store", root_s, "v1/h/held/"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = agent(&["prune", "--store", root_s]);
    assert!(
        stdout(&o).contains("deleted 1, held 0, retained 1"),
        "{}",
        stdout(&o)
    );

    // A mistyped store path is an error, not a new empty store.
    let missing = dir.path().join("nostore");
    let o = agent(&["prune", "--store", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!missing.exists());
}

#[test]
fn check_config_lists_every_problem_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(
        &file,
        "store = \"/srv/s\"\nlevel = \"A\"\nretention_months = 3\n[[sources]]\ncategory = \"weblog\"\npaths = [\"/x\"]\n",
    )
    .unwrap();
    let o = agent(&["check-config", "--config", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("retention_months: retention of 3 months"),
        "{err}"
    );
    assert!(
        err.contains("sources[0].category: \"weblog\" is not one of os, web, app, logon"),
        "{err}"
    );

    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::write(logs.join("a.log"), "x\n").unwrap();
    let glob = format!("os={}/*.log", logs.display());
    let store = dir.path().join("store");
    let state = dir.path().join("state");
    let o = agent(&[
        "check-config",
        "--store",
        store.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--source",
        &glob,
        "--source",
        "web=/nonexistent-dir/*.log",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("/*.log: 1 file(s) now"), "{out}");
    assert!(
        out.contains("warning: source web-log: \"/nonexistent-dir/*.log\" matches no file now"),
        "{out}"
    );
    assert!(
        !store.exists() && !state.exists(),
        "check-config must not create directories"
    );

    let o = agent(&[
        "check-config",
        "--store",
        "s3://Bad_Bucket",
        "--source",
        "os=/x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("--store") && stderr(&o).contains("Bad_Bucket"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        agent(&["run", "--segment-max-bytes", "lots"]).status.code(),
        Some(2)
    );
    assert_eq!(agent(&["run", "--source", "os"]).status.code(), Some(2));
    assert_eq!(agent(&["frobnicate"]).status.code(), Some(2));
}
