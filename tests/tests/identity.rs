//! File identity across restarts, end to end (issue 12, D2 and D3): a
//! followed file that cannot be opened when the agent starts keeps its
//! saved position; a file found under another name with a saved inode is
//! adopted only if it is still the same file and no other source's; a glob
//! that matches a FIFO says so. Each test runs the real `custody-agent`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custody_tests::status::read_status;
use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

fn chown_nobody(p: &Path) {
    std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY))
        .unwrap_or_else(|e| panic!("chown nobody {}: {e}", p.display()));
}

/// Opens the workspace to `nobody`: root and logs traversable, state and
/// store owned by nobody.
fn prepare_for_nobody(env: &TestEnv) {
    chmod(&env.root, 0o755);
    chmod(&env.logs, 0o755);
    chown_nobody(&env.state);
    chown_nobody(&env.store);
}

/// `custody-agent status --state-dir STATE` (the human form).
fn status_text(env: &TestEnv) -> String {
    let out = agent_output([
        "status".as_ref(),
        "--state-dir".as_ref(),
        env.state.as_os_str(),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `unreadable` entry of `status.json` for `path`, if any.
fn unreadable_entry(v: &Value, path: &str) -> Option<Value> {
    v["sources"]
        .as_array()?
        .iter()
        .flat_map(|s| s["unreadable"].as_array().cloned().unwrap_or_default())
        .find(|u| u["path"].as_str() == Some(path))
}

/// The saved offset the checkpoint holds for `path` (the JSON body after
/// the checksummed header line).
fn checkpoint_offset(env: &TestEnv, path: &str) -> Option<u64> {
    let bytes = fs::read(env.state.join("checkpoint")).ok()?;
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let v: Value = serde_json::from_slice(&bytes[nl + 1..]).ok()?;
    v["streams"]
        .as_object()?
        .values()
        .flat_map(|s| s["files"].as_array().cloned().unwrap_or_default())
        .find(|f| f["path"].as_str() == Some(path))
        .and_then(|f| f["offset"].as_u64())
}

/// Every stored byte of the file that was at `path`, in one piece
/// (panics when the store holds it in several pieces or none).
fn stored_bytes(store: &StoreContents, path: &str) -> Vec<u8> {
    let pieces: Vec<&ReassembledFile> = store
        .files
        .iter()
        .filter(|f| f.paths.contains(path))
        .collect();
    assert_eq!(
        pieces.len(),
        1,
        "{path} should be stored as one file from byte 0; pieces: {:?}",
        pieces
            .iter()
            .map(|f| (f.stream.clone(), f.start, f.end()))
            .collect::<Vec<_>>()
    );
    assert_eq!(pieces[0].start, 0, "{path} stored from byte 0");
    pieces[0].bytes.clone()
}

/// D2: `a.log` (200 lines) shipped, clean stop, `chmod 000`, start (as
/// nobody): the saved position must be kept (checkpoint and status), the
/// warning logged once (back-off, not every poll), and after `chmod 644`
/// and 10 more lines the store must hold exactly 210 lines, byte for byte.
#[test]
fn a_file_unreadable_at_start_keeps_its_position_and_is_retried_with_backoff() {
    let env = TestEnv::new("id-d2");
    prepare_for_nobody(&env);
    let log = env.log("a.log");
    let path = log.display().to_string();
    let mut w = LineWriter::new(&log, "d2");
    w.append(testdata_lines(), 200);
    chmod(&log, 0o644);
    let opts = AgentOptions::new(&env).source("app", &path).as_nobody(true);

    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    agent.stop_clean(WAIT);
    let size = fs::metadata(&log).expect("stat a.log").len();
    assert_eq!(checkpoint_offset(&env, &path), Some(size));

    chmod(&log, 0o000);
    let mut agent = AgentProcess::start(&opts);
    agent.wait_started(&env.state, WAIT);
    let entry = wait_for("status listing a.log as unreadable", WAIT, || {
        agent.check_running()?;
        let v = read_status(&env.state)?;
        unreadable_entry(&v, &path).ok_or_else(|| format!("{v:#}"))
    });
    assert_eq!(
        entry["saved_offset"].as_u64(),
        Some(size),
        "the saved position is kept: {entry:#}"
    );
    assert!(
        entry["error"]
            .as_str()
            .is_some_and(|e| e.contains("permission denied")),
        "{entry:#}"
    );
    // Twenty polls (200 ms each) and more: a warning per poll would show.
    std::thread::sleep(Duration::from_secs(5));
    let warnings = agent.log().matches("permission denied").count();
    assert!(
        (1..=2).contains(&warnings),
        "the permission warning should be logged once, then retried with back-off; \
         it was logged {warnings} times in 5 s:\n{}",
        agent.log_tail(30)
    );
    let human = status_text(&env);
    assert!(
        human.contains(&format!("unreadable: {path}"))
            && human.contains(&format!("saved offset {size} kept")),
        "custody-agent status should show the unreadable file and its kept position:\n{human}"
    );
    assert_eq!(
        checkpoint_offset(&env, &path),
        Some(size),
        "the checkpoint keeps the saved position while the file is unreadable"
    );

    chmod(&log, 0o644);
    w.append(testdata_lines(), 10);
    let store = wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    wait_for("the unreadable entry to clear", WAIT, || {
        let v = read_status(&env.state)?;
        match unreadable_entry(&v, &path) {
            Some(e) => Err(format!("{e:#}")),
            None => Ok(()),
        }
    });
    agent.stop_clean(WAIT);
    let log_text = agent.log();
    assert!(
        !log_text.contains("renamed while the agent was stopped"),
        "a file at its own path is not a rename:\n{log_text}"
    );
    let store = StoreContents::read(&env.store, &env.host_id).unwrap_or(store);
    store.assert_clean();
    assert_eq!(store.line_ids().len(), 210, "exactly 210 lines stored");
    assert_exactly_once(w.ids(), &store.line_ids());
    assert_eq!(
        stored_bytes(&store, &path),
        fs::read(&log).expect("read a.log"),
        "the store holds a.log byte for byte"
    );
}

/// D2, rotated copy: the glob names only the live file; while the agent is
/// stopped the live file gets 20 more lines, is renamed to `app.log.1` and
/// made unreadable, and a new `app.log` is created. The copy must wait with
/// its saved position and, once readable, be finished from there.
#[test]
fn an_unreadable_rotated_copy_is_finished_from_its_saved_position() {
    let env = TestEnv::new("id-d2rot");
    prepare_for_nobody(&env);
    let live = env.log("app.log");
    let rotated = env.log("app.log.1");
    let mut w = LineWriter::new(&live, "rot");
    w.append(testdata_lines(), 100);
    chmod(&live, 0o644);
    let opts = AgentOptions::new(&env)
        .source("app", &live.display().to_string())
        .as_nobody(true);
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    agent.stop_clean(WAIT);

    w.append(testdata_lines(), 20); // unread when the agent starts again
    fs::rename(&live, &rotated).expect("rotate");
    chmod(&rotated, 0o000);
    w.append(testdata_lines(), 10); // the new live file
    chmod(&live, 0o644);

    let mut agent = AgentProcess::start(&opts);
    let rotated_name = rotated.display().to_string();
    let entry = wait_for("status listing app.log.1 as unreadable", WAIT, || {
        agent.check_running()?;
        let v = read_status(&env.state)?;
        unreadable_entry(&v, &rotated_name).ok_or_else(|| format!("{v:#}"))
    });
    assert!(
        entry["saved_offset"].as_u64().is_some_and(|o| o > 0),
        "{entry:#}"
    );
    chmod(&rotated, 0o644);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    agent.stop_clean(WAIT);
    let store = StoreContents::read(&env.store, &env.host_id).expect("store");
    store.assert_clean();
    assert_exactly_once(w.ids(), &store.line_ids());
}

/// A small ext4 file system on a loop device with few inodes, so that a
/// freed inode is given to the next new file at once. Unmounted (and its
/// loop device freed) on drop.
struct SmallExt4 {
    dir: PathBuf,
}

impl SmallExt4 {
    fn new(env: &TestEnv) -> Self {
        let img = env.root.join("small.img");
        let dir = env.subdir("ext4");
        let run = |cmd: &mut Command| {
            let out = cmd
                .output()
                .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("truncate").arg("-s").arg("16M").arg(&img));
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-N", "64"])
            .arg(&img));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&dir));
        SmallExt4 { dir }
    }
}

impl Drop for SmallExt4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .ino()
}

/// The stream each line id was stored in, by writer tag (`a:…`, `b:…`).
fn streams_of(store: &StoreContents, tag: &str) -> Vec<String> {
    let mut out: Vec<String> = store
        .files
        .iter()
        .filter(|f| extract_ids(&f.bytes).iter().any(|id| id.starts_with(tag)))
        .map(|f| f.stream.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// D3: two sources in one directory; source A's file is deleted while
/// the agent is stopped and source B's new file gets its inode. On
/// restart nothing of B's file may go into A's stream, and B's file must be
/// in B's stream exactly once.
#[test]
fn another_sources_file_that_got_a_deleted_files_inode_stays_in_its_own_stream() {
    let env = TestEnv::new("id-d3");
    let fs4 = SmallExt4::new(&env);
    let a = fs4.dir.join("a.log");
    let b = fs4.dir.join("b.log");
    let mut wa = LineWriter::new(&a, "a");
    wa.append(testdata_lines(), 50);
    let opts = AgentOptions::new(&env)
        .source("app", &format!("{}/a*.log", fs4.dir.display()))
        .source("web", &format!("{}/b*.log", fs4.dir.display()));
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, wa.ids(), WAIT, || agent.check_running());
    agent.stop_clean(WAIT);

    let a_inode = inode(&a);
    fs::remove_file(&a).expect("delete a.log");
    let mut wb = LineWriter::new(&b, "b");
    wb.append(testdata_lines(), 30);
    assert_eq!(
        inode(&b),
        a_inode,
        "test premise: ext4 with 64 inodes gives b.log the inode a.log had"
    );

    let mut agent = AgentProcess::start(&opts);
    let all: Vec<String> = [wa.ids(), wb.ids()].concat();
    wait_for_ids(&env, &all, WAIT, || agent.check_running());
    // Time for a wrong adoption to show (it would ship within a second).
    std::thread::sleep(Duration::from_secs(2));
    agent.stop_clean(WAIT);
    let log_text = agent.log();
    let store = StoreContents::read(&env.store, &env.host_id).expect("store");
    store.assert_clean();
    assert_exactly_once(&all, &store.line_ids());
    let a_streams = streams_of(&store, "a:");
    let b_streams = streams_of(&store, "b:");
    assert_eq!(a_streams.len(), 1, "a.log in one stream: {a_streams:?}");
    assert_eq!(b_streams.len(), 1, "b.log in one stream: {b_streams:?}");
    assert_ne!(a_streams, b_streams, "b.log must not be in a.log's stream");
    assert!(
        !log_text.contains("renamed while the agent was stopped"),
        "b.log is not a.log renamed:\n{log_text}"
    );
    assert!(
        log_text.contains("disappeared while the agent was stopped"),
        "a.log's end is recorded as lost:\n{log_text}"
    );
}

/// The same source: `a-1.log` deleted while the agent is stopped, and
/// `a-2.log` (same glob, other content) gets its inode. It is a new file:
/// read from byte 0 into the source's own stream, once, and the old file's
/// loss is logged.
#[test]
fn a_reused_inode_under_another_name_of_the_same_source_is_a_new_file() {
    let env = TestEnv::new("id-d3same");
    let fs4 = SmallExt4::new(&env);
    let old = fs4.dir.join("a-1.log");
    let new = fs4.dir.join("a-2.log");
    let mut w1 = LineWriter::new(&old, "one");
    w1.append(testdata_lines(), 40);
    let opts = AgentOptions::new(&env).source("app", &format!("{}/a-*.log", fs4.dir.display()));
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, w1.ids(), WAIT, || agent.check_running());
    agent.stop_clean(WAIT);

    let old_inode = inode(&old);
    fs::remove_file(&old).expect("delete a-1.log");
    let mut w2 = LineWriter::new(&new, "two");
    w2.append(testdata_lines(), 25);
    assert_eq!(inode(&new), old_inode, "test premise: the inode is reused");

    let mut agent = AgentProcess::start(&opts);
    let all: Vec<String> = [w1.ids(), w2.ids()].concat();
    wait_for_ids(&env, &all, WAIT, || agent.check_running());
    agent.stop_clean(WAIT);
    let store = StoreContents::read(&env.store, &env.host_id).expect("store");
    store.assert_clean();
    assert_exactly_once(&all, &store.line_ids());
    let new_name = new.display().to_string();
    assert_eq!(
        stored_bytes(&store, &new_name),
        fs::read(&new).expect("read a-2.log"),
        "a-2.log stored from byte 0, byte for byte"
    );
    assert_eq!(streams_of(&store, "one:"), streams_of(&store, "two:"));
    let log_text = agent.log();
    assert!(
        log_text.contains("disappeared while the agent was stopped")
            && log_text.contains(&old.display().to_string()),
        "a-1.log's loss is recorded:\n{log_text}"
    );
}

/// A glob that matches a FIFO (and a directory) next to a log: each is
/// named once in the log, shown in status, never read; the log is shipped.
#[test]
fn a_glob_matching_a_fifo_or_a_directory_says_so_once() {
    let env = TestEnv::new("id-fifo");
    let log = env.log("app.log");
    let fifo = env.log("pipe.log");
    let dir = env.log("dir.log");
    let mut w = LineWriter::new(&log, "f");
    w.append(testdata_lines(), 20);
    let out = Command::new("mkfifo").arg(&fifo).output().expect("mkfifo");
    assert!(out.status.success(), "mkfifo: {out:?}");
    fs::create_dir(&dir).expect("mkdir");
    let opts = AgentOptions::new(&env).source("app", &format!("{}/*.log", env.logs.display()));
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    let fifo_name = fifo.display().to_string();
    let v = wait_for("status listing the FIFO as skipped", WAIT, || {
        let v = read_status(&env.state)?;
        let skipped = v["sources"][0]["skipped"].clone();
        let has = |p: &str, kind: &str| {
            skipped.as_array().is_some_and(|a| {
                a.iter().any(|s| {
                    s["path"].as_str() == Some(p)
                        && s["kind"].as_str().is_some_and(|k| k.contains(kind))
                })
            })
        };
        if has(&fifo_name, "FIFO") && has(&dir.display().to_string(), "directory") {
            Ok(v)
        } else {
            Err(format!("{v:#}"))
        }
    });
    // Several polls later, still said only once.
    std::thread::sleep(Duration::from_secs(2));
    w.append(testdata_lines(), 5);
    wait_for_ids(&env, w.ids(), WAIT, || agent.check_running());
    let human = status_text(&env);
    assert!(
        human.contains(&format!("skipped: {fifo_name} is a FIFO")),
        "custody-agent status shows the FIFO:\n{human}\n{v:#}"
    );
    agent.stop_clean(WAIT);
    let said = agent
        .log()
        .lines()
        .filter(|l| l.contains(&fifo_name) && l.contains("not a regular file"))
        .count();
    assert_eq!(said, 1, "the FIFO is named once:\n{}", agent.log());
    let store = StoreContents::read(&env.store, &env.host_id).expect("store");
    store.assert_clean();
    assert_exactly_once(w.ids(), &store.line_ids());
}
