//! Configurations the agent must refuse before it writes anything, end to
//! end through the real binary (issue 12, D4 and the "not a custody store"
//! refusal at start):
//!
//! - a state directory that is the filesystem store, lies inside it, or
//!   contains it, also when reached through a symlink or `..`, and when the
//!   store does not exist yet (resolved through its nearest existing
//!   ancestor). The state directory holds the private host key: in the
//!   store, every reader of the store could take it and forge digests.
//!   `check-config`, `run`, `snapshot` and `key show` must exit 1 naming
//!   both paths, why and what to do, and leave no host key behind;
//! - a store directory that is not a custody store (not empty, no marker):
//!   `run` must refuse at start like `check-config`, not retry forever.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use custody_tests::*;

/// A refusal is immediate; this only bounds a command that was (wrongly)
/// accepted and keeps running, on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `custody-agent ARGS` to completion, or kills it after [`DEADLINE`]
/// and says so (an accepted `run` never ends by itself).
fn run_bounded(args: &[OsString], scratch: &Path) -> Result<Output, String> {
    fs::create_dir_all(scratch).expect("scratch dir");
    let out_path = scratch.join("cmd.out");
    let err_path = scratch.join("cmd.err");
    let mut child = Command::new(&bins().agent)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out_path).expect("stdout file"))
        .stderr(fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start custody-agent");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "still running after {DEADLINE:?} (the configuration was accepted); killed it. stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    })
}

fn all_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Checks that `out` is exit 1 with every one of `words` in its output;
/// returns what is wrong otherwise.
fn expect_refusal(what: &str, out: Result<Output, String>, words: &[String]) -> Option<String> {
    let out = match out {
        Ok(out) => out,
        Err(e) => return Some(format!("{what}: {e}")),
    };
    let text = all_text(&out);
    let missing: Vec<&String> = words
        .iter()
        .filter(|w| !text.contains(w.as_str()))
        .collect();
    if out.status.code() != Some(1) || !missing.is_empty() {
        return Some(format!(
            "{what}: expected exit 1 naming {words:?} (missing {missing:?}); got {}:\n{text}",
            out.status
        ));
    }
    None
}

/// The command line for `command` with this store and state directory.
fn args(env: &TestEnv, command: &str, store: &Path, state: &Path) -> Vec<OsString> {
    let mut opts = AgentOptions::new(env).source("app", &format!("{}/*.log", env.logs.display()));
    opts.store = store.to_path_buf();
    opts.state_dir = state.to_path_buf();
    opts.args(command)
}

/// Files named `host_key` anywhere under `dir` (the key must not have been
/// written into the store by a refused command).
fn host_keys_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name() == Some(OsStr::new("host_key")) {
                found.push(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    found
}

/// Makes `dir` an existing, valid (empty) filesystem store, as a first
/// agent run would leave it.
fn make_store(dir: &Path) {
    fs::create_dir_all(dir).expect("store dir");
    fs::write(
        dir.join(".custody-store.json"),
        "{\"format\":\"custody.fsstore.v1\"}",
    )
    .expect("store marker");
}

struct Case {
    name: &'static str,
    store: PathBuf,
    state: PathBuf,
    /// Where a host key must not appear.
    guarded: PathBuf,
}

/// Every way the state directory can overlap the store, each in its own
/// workspace so nothing one case writes affects another.
fn cases() -> Vec<(TestEnv, Case)> {
    let mut v = Vec::new();
    let mut add = |name: &'static str, build: &dyn Fn(&TestEnv) -> (PathBuf, PathBuf)| {
        let env = TestEnv::new(&format!("refuse-{name}"));
        let (store, state) = build(&env);
        let guarded = env.root.clone();
        v.push((
            env,
            Case {
                name,
                store,
                state,
                guarded,
            },
        ));
    };
    add("same", &|env| {
        make_store(&env.store);
        (env.store.clone(), env.store.clone())
    });
    add("state-inside-store", &|env| {
        make_store(&env.store);
        (env.store.clone(), env.store.join("state"))
    });
    add("store-inside-state", &|env| {
        (env.state.join("store"), env.state.clone())
    });
    add("symlink-to-store", &|env| {
        make_store(&env.store);
        let alias = env.root.join("alias");
        symlink(&env.store, &alias).expect("symlink");
        (env.store.clone(), alias)
    });
    add("symlink-into-store", &|env| {
        make_store(&env.store);
        let alias = env.root.join("alias");
        symlink(&env.store, &alias).expect("symlink");
        (env.store.clone(), alias.join("agent-state"))
    });
    add("dotdot", &|env| {
        make_store(&env.store);
        (env.store.clone(), env.logs.join("../store/state"))
    });
    add("store-not-yet-created", &|env| {
        // Neither exists; both are below a symlinked ancestor that does.
        let real = env.subdir("real");
        let link = env.root.join("link");
        symlink(&real, &link).expect("symlink");
        (link.join("new/store"), real.join("new/store/state"))
    });
    add("dangling-symlink-store", &|env| {
        // The store is a symlink to a directory not created yet; the state
        // directory is that directory.
        let target = env.root.join("later");
        let link = env.root.join("store-link");
        symlink(&target, &link).expect("symlink");
        (link, target)
    });
    v
}

#[test]
fn a_state_dir_that_overlaps_the_store_is_refused_by_check_config_and_run() {
    let mut failures = Vec::new();
    for (env, case) in cases() {
        let words = vec![
            case.store.display().to_string(),
            case.state.display().to_string(),
            "host_key".to_string(),
            "readable by the store's readers".to_string(),
            "Keep them apart".to_string(),
        ];
        let state_existed = case.state.exists();
        for command in ["check-config", "run"] {
            let out = run_bounded(
                &args(&env, command, &case.store, &case.state),
                &env.root.join(format!("scratch-{command}")),
            );
            if let Some(f) = expect_refusal(&format!("{} {command}", case.name), out, &words) {
                failures.push(f);
            }
        }
        let keys = host_keys_under(&case.guarded);
        if !keys.is_empty() {
            failures.push(format!(
                "{}: a refused command left a host key behind: {keys:?}",
                case.name
            ));
        }
        if !state_existed && case.state.exists() {
            failures.push(format!(
                "{}: the refused run created state_dir {}",
                case.name,
                case.state.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn separate_state_and_store_are_still_accepted() {
    // The control: the same workspace layout with state and store apart
    // (siblings with a common prefix in their names, too).
    let env = TestEnv::new("refuse-control");
    let store = env.root.join("store");
    let state = env.root.join("store-state");
    let out = run_bounded(&args(&env, "check-config", &store, &state), &env.root)
        .expect("check-config ends");
    assert_eq!(
        out.status.code(),
        Some(0),
        "separate directories must pass:\n{}",
        all_text(&out)
    );
    assert!(
        all_text(&out).contains("configuration is usable"),
        "{}",
        all_text(&out)
    );
}

#[test]
fn snapshot_and_key_show_refuse_a_state_dir_in_the_store() {
    let env = TestEnv::new("refuse-snapshot");
    make_store(&env.store);
    let state = env.store.join("state");
    let words = vec![
        env.store.display().to_string(),
        state.display().to_string(),
        "host_key".to_string(),
        "readable by the store's readers".to_string(),
    ];
    let mut failures = Vec::new();

    let mut snap = args(&env, "snapshot", &env.store, &state);
    snap.extend(
        [
            "--incident",
            "INC-1",
            "--operator",
            "tester",
            "--out",
            &env.root.join("bundle.tar").display().to_string(),
        ]
        .map(OsString::from),
    );
    let out = run_bounded(&snap, &env.root.join("scratch-snapshot"));
    failures.extend(expect_refusal("snapshot", out, &words));

    // `key show` takes the store from the configuration file.
    let config = env.root.join("agent.toml");
    fs::write(
        &config,
        format!(
            "store = \"{}\"\nstate_dir = \"{}\"\nhost_id = \"{}\"\n",
            env.store.display(),
            state.display(),
            env.host_id
        ),
    )
    .expect("write config");
    let out = run_bounded(
        &["key", "show", "--config"]
            .map(OsString::from)
            .into_iter()
            .chain([config.into_os_string()])
            .collect::<Vec<_>>(),
        &env.root.join("scratch-key"),
    );
    failures.extend(expect_refusal("key show", out, &words));

    let keys = host_keys_under(&env.store);
    if !keys.is_empty() {
        failures.push(format!("host key written into the store: {keys:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn run_refuses_a_store_directory_that_is_not_a_custody_store_like_check_config() {
    let env = TestEnv::new("refuse-notstore");
    // A directory with someone else's files and no marker: a typo in the
    // store path, for example the logs directory.
    let store = env.subdir("srv-data");
    fs::write(store.join("notes.txt"), "not evidence\n").expect("write");
    let state = env.root.join("fresh-state");
    let words = vec![
        store.display().to_string(),
        "not a custody store".to_string(),
    ];
    let mut failures = Vec::new();
    for command in ["check-config", "run"] {
        let out = run_bounded(
            &args(&env, command, &store, &state),
            &env.root.join(format!("scratch-{command}")),
        );
        failures.extend(expect_refusal(command, out, &words));
    }
    let mut names: Vec<String> = fs::read_dir(&store)
        .expect("list store")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names != ["notes.txt"] {
        failures.push(format!(
            "the refused directory was written to: it now holds {names:?}"
        ));
    }
    if state.exists() {
        failures.push(format!(
            "the refused run created its state directory {}",
            state.display()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
