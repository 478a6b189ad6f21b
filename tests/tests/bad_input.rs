//! Bad input and broken surroundings, end to end: each case must give a
//! clear error (in the agent's log and/or `status --json`, naming the file
//! or key and what to do), and once the cause is fixed nothing that was
//! accepted may be lost or duplicated.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use custody_tests::status::{backpressure, read_status};
use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown nobody {}: {e}", p.display()));
}

/// Opens the workspace to `nobody`: the temp root and logs traversable,
/// the state directory owned by nobody. The store is left to the caller.
fn prepare_for_nobody(env: &TestEnv) {
    chmod(&env.root, 0o755);
    chmod(&env.logs, 0o755);
    chown_nobody(&env.state);
}

/// All errors `status.json` reports: per source, the spool's, the last
/// shipping error.
fn status_errors(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["sources"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["errors"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    for p in ["/spool/error", "/last_ship_error"] {
        if let Some(e) = v.pointer(p).and_then(Value::as_str) {
            out.push(e.to_string());
        }
    }
    out
}

/// Waits for the store to hold exactly `content` as the bytes of the file
/// at `path` (all of it, from offset 0).
fn wait_for_file_bytes(
    env: &TestEnv,
    path: &Path,
    content: &[u8],
    agent: &mut AgentProcess,
) -> StoreContents {
    let want = path.display().to_string();
    wait_for(
        &format!("the {} bytes of {want} in the store", content.len()),
        WAIT,
        || {
            agent.check_running()?;
            let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
            let got: Vec<(u64, usize)> = c
                .files
                .iter()
                .filter(|f| f.paths.contains(&want))
                .map(|f| (f.start, f.bytes.len()))
                .collect();
            if c.files
                .iter()
                .any(|f| f.paths.contains(&want) && f.start == 0 && f.bytes == content)
            {
                Ok(c)
            } else {
                Err(format!(
                    "pieces (start, len) {got:?}; problems {:?}",
                    c.problems
                ))
            }
        },
    )
}

// ---------------------------------------------------------------------------

#[test]
fn invalid_utf8_and_nul_bytes_are_stored_byte_for_byte() {
    let env = TestEnv::new("bad-bytes");
    let log = env.log("app.log");
    let mut content: Vec<u8> = Vec::new();
    for line in testdata_lines().iter().take(20) {
        content.extend_from_slice(line.as_bytes());
        content.push(b'\n');
    }
    content.extend_from_slice(
        b"invalid utf-8 \xff\xfe\x80 lone continuation, caf\xe9 latin-1, cut \xe4\xb8\n",
    );
    content.extend_from_slice(b"nul\x00in\x00the middle\x00\n\x00\x00\x00\n");
    content.extend_from_slice(b"crlf line\r\n\x1b[31mansi escape\x1b[0m\n");
    content.extend_from_slice(&(0u8..=255).filter(|b| *b != b'\n').collect::<Vec<u8>>());
    content.push(b'\n');
    fs::write(&log, &content).expect("write log");

    let opts = AgentOptions::new(&env).source("app", &log.display().to_string());
    let mut agent = AgentProcess::start(&opts);
    wait_for_file_bytes(&env, &log, &content, &mut agent);

    // More of the same later arrives too, after the odd bytes.
    let more = b"after \x00\xff the odd bytes\n";
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(more))
        .expect("append");
    content.extend_from_slice(more);
    let c = wait_for_file_bytes(&env, &log, &content, &mut agent);
    c.assert_clean();
    agent.stop_clean(Duration::from_secs(30));
    let status = read_status(&env.state).expect("status.json");
    assert!(
        status_errors(&status).is_empty(),
        "odd bytes are not an error: {status:#}"
    );
    run_verify(&env.store, &[]).assert_clean();
}

#[test]
fn a_10_mb_line_without_newline_arrives_exactly_split_across_segments() {
    const SEG: usize = 1 << 20;
    let env = TestEnv::new("bad-longline");
    let log = env.log("app.log");
    let pool: Vec<u8> = testdata_lines().join(" ").into_bytes();
    let mut content: Vec<u8> = pool
        .iter()
        .copied()
        .cycle()
        .take(10 * 1024 * 1024)
        .collect();
    assert!(!content.contains(&b'\n'));
    fs::write(&log, &content).expect("write log");

    let opts = AgentOptions::new(&env)
        .source("app", &log.display().to_string())
        .flag("segment-max-bytes", SEG)
        .flag("partial-line-wait-ms", 500);
    let mut agent = AgentProcess::start(&opts);
    let c = wait_for_file_bytes(&env, &log, &content, &mut agent);
    c.assert_clean();

    let segs: Vec<&StoredSegment> = c.segments().collect();
    assert!(
        segs.len() >= 10,
        "10 MiB in segments of ≤ 1 MiB needs ≥ 10 segments, found {}",
        segs.len()
    );
    for (i, s) in segs.iter().enumerate() {
        let split = s.meta.split;
        assert!(
            s.raw.len() <= SEG,
            "segment {} holds {} bytes, more than --segment-max-bytes {SEG}",
            s.meta.seq,
            s.raw.len()
        );
        assert_eq!(
            split.starts_mid_unit,
            i > 0,
            "segment {}: starts_mid_unit {split:?}",
            s.meta.seq
        );
        assert!(
            split.ends_mid_unit,
            "segment {} ends inside the one line: {split:?}",
            s.meta.seq
        );
    }

    // The line's end and more lines come later: nothing lost, nothing twice.
    let mut w = LineWriter::new(&log, "ll");
    let tail = [b"\n".to_vec(), w.render(testdata_lines(), 20)].concat();
    fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(&tail))
        .expect("append");
    content.extend_from_slice(&tail);
    let c = wait_for_file_bytes(&env, &log, &content, &mut agent);
    c.assert_clean();
    assert_exactly_once(w.ids(), &c.line_ids());
    agent.stop_clean(Duration::from_secs(30));
    run_verify(&env.store, &[]).assert_clean();
}

#[test]
fn an_empty_file_gives_no_segment_and_no_error_until_written() {
    let env = TestEnv::new("bad-empty");
    let log = env.log("empty.log");
    fs::write(&log, b"").expect("create");
    let opts = AgentOptions::new(&env).source("os", &log.display().to_string());
    let mut agent = AgentProcess::start(&opts);
    // Seen, and at least two digests written since: the agent has looked.
    let status = wait_for(
        "status listing the empty file after ≥ 2 digests",
        WAIT,
        || {
            agent.check_running()?;
            let v = read_status(&env.state)?;
            let listed = v["sources"][0]["files"][0]["path"].as_str()
                == Some(log.display().to_string().as_str());
            if listed && v["last_digest_seq"].as_u64() >= Some(1) {
                Ok(v)
            } else {
                Err(format!("{v:#}"))
            }
        },
    );
    assert!(
        status_errors(&status).is_empty(),
        "an empty file is not an error: {status:#}"
    );
    assert_eq!(status["sources"][0]["files"][0]["size"].as_u64(), Some(0));
    let c = StoreContents::read(&env.store, &env.host_id).expect("store");
    assert_eq!(c.segment_count(), 0, "an empty file must give no segment");

    let mut w = LineWriter::new(&log, "e");
    w.append(testdata_lines(), 30);
    let c = wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    assert_exactly_once(w.ids(), &c.line_ids());
    agent.stop_clean(Duration::from_secs(30));
}

#[test]
fn an_unreadable_file_is_reported_and_read_once_permitted() {
    let env = TestEnv::new("bad-perm");
    prepare_for_nobody(&env);
    chown_nobody(&env.store);
    let open_log = env.log("open.log");
    let secret = env.log("secret.log");
    let mut open_w = LineWriter::new(&open_log, "o");
    let mut secret_w = LineWriter::new(&secret, "s");
    open_w.append(testdata_lines(), 20);
    secret_w.append(testdata_lines(), 20);
    chmod(&open_log, 0o644);
    chmod(&secret, 0o600); // root's; nobody may not read it

    let opts = AgentOptions::new(&env)
        .source("web", &open_log.display().to_string())
        .source("logon", &secret.display().to_string())
        .as_nobody(true);
    let mut agent = AgentProcess::start(&opts);
    let secret_name = secret.display().to_string();
    let err = wait_for("status naming the unreadable file", WAIT, || {
        agent.check_running()?;
        let v = read_status(&env.state)?;
        status_errors(&v)
            .into_iter()
            .find(|e| e.contains(&secret_name))
            .ok_or_else(|| format!("{v:#}"))
    });
    assert!(
        err.to_lowercase().contains("permission"),
        "the error should say permission is missing: {err}"
    );
    assert!(
        agent.log().contains(&secret_name),
        "the agent log should name {secret_name}:\n{}",
        agent.log_tail(20)
    );

    // The other source keeps shipping meanwhile.
    wait_for_ids(&env, open_w.ids(), WAIT, || agent.check_running());
    open_w.append(testdata_lines(), 20);
    wait_for_ids(&env, open_w.ids(), WAIT, || agent.check_running());

    chmod(&secret, 0o644);
    let all: Vec<String> = [open_w.ids(), secret_w.ids()].concat();
    let c = wait_for_ids(&env, &all, WAIT, || agent.check_running());
    assert_exactly_once(&all, &c.line_ids());
    wait_for("the permission error to clear", WAIT, || {
        let v = read_status(&env.state)?;
        match status_errors(&v)
            .into_iter()
            .find(|e| e.contains(&secret_name))
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    });
    agent.stop_clean(Duration::from_secs(30));
}

#[test]
fn a_glob_matching_nothing_is_reported_and_picked_up_later() {
    let env = TestEnv::new("bad-glob");
    let glob = format!("{}/later-*.log", env.logs.display());
    let opts = AgentOptions::new(&env).source("app", &glob);

    let out = Command::new(&bins().agent)
        .args(opts.args("check-config"))
        .output()
        .expect("run check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "a glob matching nothing is a warning, not a failure: {}",
        text(&out)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("warning:") && l.contains(&glob)),
        "check-config should warn that {glob} matches nothing: {}",
        text(&out)
    );

    let mut agent = AgentProcess::start(&opts);
    wait_for("status reporting the empty glob", WAIT, || {
        agent.check_running()?;
        let v = read_status(&env.state)?;
        if status_errors(&v).iter().any(|e| e.contains(&glob)) {
            Ok(())
        } else {
            Err(format!("{v:#}"))
        }
    });
    let mut w = LineWriter::new(env.log("later-1.log"), "g");
    w.append(testdata_lines(), 25);
    let c = wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    assert_exactly_once(w.ids(), &c.line_ids());
    wait_for("the empty-glob error to clear", WAIT, || {
        let v = read_status(&env.state)?;
        let errs = status_errors(&v);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(format!("{errs:?}"))
        }
    });
    agent.stop_clean(Duration::from_secs(30));
}

/// `chown -R UID:UID`, so a store can be taken from and given back to
/// the agent's user while it runs.
fn chown_recursive(p: &Path, uid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(uid))
        .unwrap_or_else(|e| panic!("chown {uid} {}: {e}", p.display()));
    if p.is_dir() {
        for e in fs::read_dir(p).unwrap_or_else(|e| panic!("list {}: {e}", p.display())) {
            chown_recursive(&e.expect("listing").path(), uid);
        }
    }
}

#[test]
fn a_store_unwritable_at_start_is_reported_and_data_waits_in_the_spool() {
    // A store that cannot be opened at start-up (an NFS mount not up yet, a
    // permission to fix) must not stop the agent: it reads into its spool,
    // says what is wrong, and ships once the store is fixed.
    let env = TestEnv::new("bad-store0");
    prepare_for_nobody(&env);
    chmod(&env.store, 0o755); // root's: nobody cannot write it
    let log = env.log("app.log");
    let mut w = LineWriter::new(&log, "s0");
    w.append(testdata_lines(), 40);
    chmod(&log, 0o644);
    let opts = AgentOptions::new(&env)
        .source("app", &log.display().to_string())
        .as_nobody(true);
    let mut agent = AgentProcess::start(&opts);
    let store_name = env.store.display().to_string();
    let v = wait_for(
        "status naming the unwritable store, with data in the spool",
        WAIT,
        || {
            agent.check_running()?;
            let v = read_status(&env.state)?;
            let err = v["last_ship_error"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if err.contains(&store_name)
                && v.pointer("/spool/segments").and_then(Value::as_u64) > Some(0)
            {
                Ok(err)
            } else {
                Err(format!("{v:#}"))
            }
        },
    );
    assert!(
        v.contains("writable"),
        "the error should say the store must be writable: {v}"
    );
    assert!(
        agent.log().contains(&store_name),
        "the agent log should name the store:\n{}",
        agent.log_tail(20)
    );
    // Fixed: everything arrives exactly once.
    chown_nobody(&env.store);
    let c = wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    assert_exactly_once(w.ids(), &c.line_ids());
    agent.stop_clean(Duration::from_secs(30));
    run_verify(&env.store, &[]).assert_clean();
}

#[test]
fn a_store_that_becomes_unwritable_keeps_data_in_the_spool_until_fixed() {
    let env = TestEnv::new("bad-store");
    prepare_for_nobody(&env);
    chown_nobody(&env.store);
    let log = env.log("app.log");
    let mut w = LineWriter::new(&log, "st");
    w.append(testdata_lines(), 50);
    chmod(&log, 0o644);
    let opts = AgentOptions::new(&env)
        .source("app", &log.display().to_string())
        .flag("segment-max-bytes", 8192)
        .as_nobody(true);
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());

    // Taken away: every directory of the store belongs to root again.
    chown_recursive(&env.store, 0);
    let stored_before = StoreContents::read(&env.store, &env.host_id)
        .expect("store")
        .segment_count();
    w.append(testdata_lines(), 200);
    let v = wait_for(
        "a shipping error saying why, with segments in the spool",
        WAIT,
        || {
            agent.check_running()?;
            let v = read_status(&env.state)?;
            let err = v["last_ship_error"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase();
            if err.contains("permission")
                && v.pointer("/spool/segments").and_then(Value::as_u64) > Some(0)
            {
                Ok(v)
            } else {
                Err(format!("{v:#}"))
            }
        },
    );
    let err = v["last_ship_error"].as_str().unwrap_or_default();
    let store_name = env.store.display().to_string();
    assert!(
        err.contains(&store_name) && err.contains("writable"),
        "the shipping error should name the store {store_name} and what to do: {err}"
    );
    assert!(
        agent.log().to_lowercase().contains("permission"),
        "the agent log should report the refused writes:\n{}",
        agent.log_tail(20)
    );

    // Fixed: the store is given back; the spool drains.
    chown_recursive(&env.store, NOBODY);
    w.append(testdata_lines(), 50);
    let c = wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    assert!(c.segment_count() > stored_before);
    assert_exactly_once(w.ids(), &c.line_ids());
    wait_for(
        "the shipping error to clear and the spool to empty",
        WAIT,
        || {
            let v = read_status(&env.state)?;
            if v["last_ship_error"].is_null()
                && v.pointer("/spool/segments").and_then(Value::as_u64) == Some(0)
            {
                Ok(())
            } else {
                Err(format!("{v:#}"))
            }
        },
    );
    agent.stop_clean(Duration::from_secs(30));
    c.assert_clean();
    run_verify(&env.store, &[]).assert_clean();
}

/// A tmpfs mounted for one test, unmounted (lazily if busy) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Self {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {} (tests must run as root): {}",
            dir.display(),
            text(&out)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {} size={size}: {}",
            self.0.display(),
            text(&out)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Lines that compress poorly, so the spooled payloads are about as large
/// as the raw bytes.
fn incompressible_pool(n: usize) -> Vec<String> {
    let mut rng = TestRng::new(0x5eed);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..n)
        .map(|_| {
            let body: String = (0..400)
                .map(|_| ALPHABET[rng.range(0, 63) as usize] as char)
                .collect();
            format!("Nov 22 03:00:00 host app[42]: blob={body}")
        })
        .collect()
}

#[test]
fn a_full_spool_disk_pauses_reading_and_loses_nothing() {
    let env = TestEnv::new("bad-diskfull");
    let state = env.subdir("state-tmpfs");
    // Declared before the agent so that it is dropped after it: the agent
    // must be gone before the file system can be unmounted.
    let tmpfs = Tmpfs::mount(&state, "2m");
    let log = env.log("app.log");
    // Distinct lines throughout: repeats would compress away.
    let pool = incompressible_pool(14_010);
    let mut w = LineWriter::new(&log, "df");
    w.append(&pool[..10], 10);
    let mut opts = AgentOptions::new(&env)
        .source("app", &log.display().to_string())
        .flag("segment-max-bytes", 4 * 1024 * 1024);
    opts.state_dir = state.clone();
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());

    // About 6 MB at once: one 4 MiB segment cannot fit on a 2 MiB disk.
    w.append(&pool[10..], 14_000);
    let deadline = Instant::now();
    let v = wait_for("a disk-full error and back-pressure", WAIT, || {
        agent.check_running()?;
        let log = agent.log().to_lowercase();
        let logged = log.contains("no space left")
            || log.contains("disk full")
            || log.contains("disk is full");
        let v = read_status(&state).unwrap_or(Value::Null);
        let reported = v
            .pointer("/spool/error")
            .and_then(Value::as_str)
            .is_some_and(|e| {
                e.to_lowercase().contains("full") || e.to_lowercase().contains("no space")
            });
        if logged && (reported || backpressure(&v)) {
            Ok(v)
        } else {
            Err(format!("logged={logged} status={v:#}"))
        }
    });
    // status.json documents `offset` as the bytes committed in a spooled
    // segment. With nothing in the spool, that cannot be past the end of
    // what the store holds: the rest must show as `behind` until it fits.
    if v.pointer("/spool/segments").and_then(Value::as_u64) == Some(0) {
        let stored_end = StoreContents::read(&env.store, &env.host_id)
            .expect("store")
            .segments()
            .map(|s| s.meta.range.end)
            .max()
            .unwrap_or(0);
        let offset = v["sources"][0]["files"][0]["offset"]
            .as_u64()
            .unwrap_or(u64::MAX);
        assert!(
            offset <= stored_end,
            "status reports offset {offset} committed, but the store ends at {stored_end} and the spool is empty \
             (the segment after it could not be spooled): {v:#}"
        );
    }
    let behind: u64 = custody_tests::status::total_behind(&v);
    assert!(
        behind > 0,
        "reading should pause while the spool's disk is full, leaving the file behind: {v:#}"
    );
    eprintln!("disk full reported after {:?}", deadline.elapsed());

    tmpfs.resize("64m");
    let c = wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    assert_exactly_once(w.ids(), &c.line_ids());
    c.assert_clean();
    wait_for("the spool error to clear", WAIT, || {
        let v = read_status(&state)?;
        match v.pointer("/spool/error").and_then(Value::as_str) {
            Some(e) => Err(e.to_string()),
            None => Ok(()),
        }
    });
    agent.stop_clean(Duration::from_secs(30));
    drop(agent);
    drop(tmpfs);
    run_verify(&env.store, &[]).assert_clean();
}

// ---------------------------------------------------------------------------
// Malformed configuration files.

/// Runs `custody-agent ARGS` with a deadline: a `run` that wrongly accepts
/// its configuration would otherwise never return.
fn run_with_deadline(args: &[&OsStr], dir: &Path) -> Output {
    let out_path = dir.join("cmd.out");
    let err_path = dir.join("cmd.err");
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
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "custody-agent {args:?} still running after 30 s: the configuration was accepted; stderr:\n{}",
                fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: fs::read(&out_path).unwrap_or_default(),
        stderr: fs::read(&err_path).unwrap_or_default(),
    }
}

#[test]
fn malformed_config_files_are_refused_naming_the_key() {
    let env = TestEnv::new("bad-config");
    let log = env.log("app.log");
    fs::write(&log, b"x\n").expect("write log");
    let base = format!(
        "host_id = \"{}\"\nstate_dir = \"{}\"\nstore = \"{}\"\n",
        env.host_id,
        env.state.display(),
        env.store.display()
    );
    let source = |category: &str| {
        format!(
            "\n[[sources]]\ncategory = \"{category}\"\npaths = [\"{}\"]\n",
            log.display()
        )
    };
    // (name, file text, words the message must contain)
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "unknown-key",
            format!(
                "{base}level = \"D\"\nsegmnet_max_bytes = 4096\n{}",
                source("app")
            ),
            vec!["segmnet_max_bytes"],
        ),
        (
            "bad-category",
            format!("{base}level = \"D\"\n{}", source("firewall")),
            vec!["category", "firewall"],
        ),
        (
            "level-a-three-months",
            format!(
                "{base}level = \"A\"\nretention_months = 3\n{}",
                source("app")
            ),
            vec!["retention_months", "six months"],
        ),
        (
            // The Windows Event Log does not exist here: the kind is
            // refused by name with what to use instead (FORMAT.md §17.1).
            "eventlog-off-windows",
            format!(
                "{base}level = \"D\"\n{}\n[[sources]]\nkind = \"eventlog\"\nchannel = \"Security\"\n",
                source("app")
            ),
            vec![
                "sources[1].kind",
                "eventlog sources exist only on Windows; use a journald or file source here",
            ],
        ),
    ];
    // The base itself is valid, so each failure is the one line changed.
    let good = env.root.join("good.toml");
    fs::write(&good, format!("{base}level = \"D\"\n{}", source("app"))).expect("write config");
    let out = run_with_deadline(
        &[
            "check-config".as_ref(),
            "--config".as_ref(),
            good.as_os_str(),
        ],
        &env.root,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "the unbroken config must pass: {}",
        text(&out)
    );

    let mut failures = Vec::new();
    for (name, toml, words) in &cases {
        let file = env.root.join(format!("{name}.toml"));
        fs::write(&file, toml).expect("write config");
        for command in ["check-config", "run"] {
            let out = run_with_deadline(
                &[command.as_ref(), "--config".as_ref(), file.as_os_str()],
                &env.root,
            );
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let missing: Vec<&&str> = words
                .iter()
                .filter(|w| !all.to_lowercase().contains(&w.to_lowercase()))
                .collect();
            if out.status.code() != Some(1) || !missing.is_empty() {
                failures.push(format!(
                    "{command} with {name}: expected exit 1 and a message containing {words:?} (missing {missing:?}); {}",
                    text(&out)
                ));
            }
        }
    }
    assert!(
        !env.host_dir().exists(),
        "a refused configuration must not ship anything"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
