//! The rotation matrix, through the real binary: every way logrotate (and
//! applications) replace a log file, each crossed with random `kill -9` of
//! the agent, and afterwards the proof that every written line is in the
//! store exactly once, every segment matches its source bytes, and
//! `custody-verify` accepts the store.
//!
//! Scenarios: rename-and-create, copytruncate, inode reuse (including a new
//! file that begins with the same bytes as the old one), compressed
//! rotation (delaycompress), a restart in the middle of a rotation (glob on
//! the live name only, and on `name*`), and a file deleted while open.
//!
//! Kill points are drawn from a seeded RNG (printed; `CUSTODY_TEST_SEED`
//! replays). The default run has at least 20 kill cycles in total;
//! `CUSTODY_TEST_CYCLES=300` is the long mode (cycles spread over the
//! scenarios). The writer never leaves lines the agent could not possibly
//! recover: a deleted file's lines, or a rotated file's before it is
//! compressed or dropped, are confirmed in the store first.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custody_tests::*;

/// Generous: a slow CI machine must not fail a correct agent.
const DEADLINE: Duration = Duration::from_secs(60);
const SCENARIOS: usize = 6;
/// Default total kill cycles over all scenarios (at least 20 required;
/// 60 keeps the file under a minute on 2 cores).
const DEFAULT_CYCLES: usize = 60;

/// Kill cycles for one scenario: the total spread evenly, at least 2.
fn kills_per_scenario() -> usize {
    cycles_from_env(DEFAULT_CYCLES).div_ceil(SCENARIOS).max(2)
}

/// One scenario's world: workspace, agent, RNG and kill count.
struct Ctx {
    name: String,
    env: TestEnv,
    opts: AgentOptions,
    agent: Option<AgentProcess>,
    rng: TestRng,
    kills: usize,
}

impl Ctx {
    /// `glob` is relative to the logs directory.
    fn new(name: &str, glob: &str) -> Self {
        let env = TestEnv::new(name);
        let opts = AgentOptions::new(&env).source("app", &format!("{}/{glob}", env.logs.display()));
        let rng = TestRng::from_env(name);
        Self {
            name: name.to_string(),
            env,
            opts,
            agent: None,
            rng,
            kills: 0,
        }
    }

    fn running(&mut self) -> bool {
        self.agent.as_mut().is_some_and(|a| a.try_exit().is_none())
    }

    fn ensure_started(&mut self) {
        if let Some(agent) = self.agent.as_mut() {
            if agent.try_exit().is_none() {
                return;
            }
            panic!(
                "{}: agent exited on its own: {}",
                self.name,
                agent.check_running().unwrap_err()
            );
        }
        self.agent = Some(AgentProcess::start(&self.opts));
    }

    /// `kill -9` the agent if it runs.
    fn kill9(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.assert_running();
            agent.kill9();
            self.kills += 1;
            eprintln!(
                "{}: kill -9 #{} (pid {})",
                self.name,
                self.kills,
                agent.pid()
            );
        }
    }

    /// A random pause of up to `max_ms`, so kills land at varied points of
    /// the agent's work (reading, sealing, shipping, digesting). This picks
    /// a moment; it never waits for an outcome.
    fn jitter(&mut self, max_ms: u64) {
        std::thread::sleep(Duration::from_millis(self.rng.range(0, max_ms)));
    }

    /// Restarts the agent if needed and waits until every id is stored.
    fn wait_ids<S: AsRef<str>>(&mut self, ids: &[S]) -> StoreContents {
        self.ensure_started();
        let agent = self.agent.as_mut().expect("started above");
        wait_for_ids(&self.env, ids, DEADLINE, || agent.check_running())
    }

    /// With a glob that matches only the live name, the agent can follow a
    /// rotated file only if it knew the file before the rename. Before
    /// rotating, wait until the live file's first line is stored (so the
    /// agent has committed a checkpoint for it); the rest may still be
    /// unread, which is the interesting case.
    fn wait_known(&mut self, log: &RotatingLog) {
        let first: Vec<String> = log
            .gens
            .last()
            .map(|g| g.writer.ids().iter().take(1).cloned().collect())
            .unwrap_or_default();
        self.wait_ids(&first);
    }

    /// The final run: restart, catch up, SIGTERM, then check everything.
    /// Returns the store for scenario-specific checks.
    fn finish(mut self, written: &[String], sources_expected: bool) -> StoreContents {
        self.wait_ids(written);
        let mut agent = self.agent.take().expect("running after wait_ids");
        // SIGTERM only once the agent is up (its status names its pid), so
        // the signal tests the shutdown path, not start-up.
        agent.wait_started(&self.env.state, DEADLINE);
        agent.stop_clean(DEADLINE);
        let store =
            StoreContents::read(&self.env.store, &self.env.host_id).expect("store readable");
        store.assert_clean();
        assert_exactly_once(written, &store.line_ids());
        let check = store.check_against_sources(&[&self.env.logs]);
        assert!(
            check.mismatches.is_empty(),
            "{}: segments differ from their sources: {:#?}",
            self.name,
            check.mismatches
        );
        if sources_expected {
            assert!(
                check.checked > 0,
                "{}: no segment could be compared with a source file still present",
                self.name
            );
        }
        let signers = allowed_signers(&self.env);
        run_verify(
            &self.env.store,
            &[
                "--allowed-signers",
                signers.to_str().expect("utf-8 temp path"),
            ],
        )
        .assert_clean();
        eprintln!(
            "{}: ok: {} lines, {} segments, {} kill cycles, {} segments compared with sources (seed {})",
            self.name,
            written.len(),
            store.segment_count(),
            self.kills,
            check.checked,
            self.rng.seed()
        );
        assert!(
            self.kills >= 2,
            "{}: only {} kill cycles ran",
            self.name,
            self.kills
        );
        store
    }
}

/// A few bursts of lines with random sizes and random gaps between them.
fn write_bursts(ctx: &mut Ctx, log: &mut RotatingLog) {
    for _ in 0..ctx.rng.range(1, 4) {
        let n = ctx.rng.range(20, 200) as usize;
        log.append(n);
        ctx.jitter(80);
    }
}

#[test]
fn rename_and_create() {
    let mut ctx = Ctx::new("rot-create", "app.log");
    let mut log = RotatingLog::new(&ctx.env.logs, "app.log");
    log.create_live();
    let target = kills_per_scenario();
    ctx.ensure_started();
    while ctx.kills < target {
        write_bursts(&mut ctx, &mut log);
        if ctx.rng.chance(0.6) {
            ctx.wait_known(&log);
            log.append(ctx.rng.range(0, 100) as usize);
            log.rotate_create();
            write_bursts(&mut ctx, &mut log);
        }
        if ctx.rng.chance(0.6) {
            ctx.jitter(300);
            ctx.kill9();
            // Lines written while the agent is dead go to a file that stays
            // in place: recoverable, so they must arrive.
            let n = ctx.rng.range(0, 100) as usize;
            log.append(n);
            ctx.ensure_started();
        }
        let store = ctx.env.store.clone();
        let host = ctx.env.host_id.clone();
        log.drop_oldest(2, |ids| stored_now(&store, &host, ids));
    }
    let ids = log.all_ids();
    ctx.finish(&ids, true);
}

#[test]
fn copytruncate() {
    let mut ctx = Ctx::new("rot-copytrunc", "app.log*");
    let mut log = RotatingLog::new(&ctx.env.logs, "app.log");
    log.create_live();
    let target = kills_per_scenario();
    ctx.ensure_started();
    while ctx.kills < target {
        write_bursts(&mut ctx, &mut log);
        if ctx.rng.chance(0.3) {
            // Kill first, so that some copytruncates happen while the agent
            // is down and it must find the unread tail in the copy.
            ctx.jitter(300);
            ctx.kill9();
        }
        if ctx.rng.chance(0.7) {
            log.rotate_copytruncate();
            write_bursts(&mut ctx, &mut log);
        }
        if ctx.running() && ctx.rng.chance(0.5) {
            ctx.jitter(300);
            ctx.kill9();
        }
        ctx.ensure_started();
        let store = ctx.env.store.clone();
        let host = ctx.env.host_id.clone();
        log.drop_oldest(2, |ids| stored_now(&store, &host, ids));
    }
    let ids = log.all_ids();
    ctx.finish(&ids, true);
}

/// Untagged lines of at least `min` bytes starting at `from` in the test
/// data: a header that can begin several files identically.
fn header(from: usize, min: usize) -> Vec<u8> {
    let pool = testdata_lines();
    let mut out = Vec::new();
    let mut i = from;
    while out.len() < min {
        out.extend_from_slice(pool[i % pool.len()].as_bytes());
        out.push(b'\n');
        i += 1;
    }
    out
}

/// The filesystem type of `path` (`stat -f -c %T`), to know whether inode
/// reuse is to be expected (ext2/3/4 reuse a freed inode at once).
fn fs_type(path: &Path) -> String {
    let out = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(path)
        .output()
        .expect("run stat -f");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Creates `path` (with `content`) trying to get inode `want`: files that
/// get another inode are parked under hidden names (outside the glob) so
/// the allocator moves on, and removed afterwards. Returns whether `want`
/// was obtained.
fn create_with_inode(path: &Path, want: u64, content: &[u8]) -> bool {
    let dir = path.parent().expect("log path has a parent");
    let mut parked = Vec::new();
    let mut got = false;
    for i in 0..32 {
        fs::write(path, content).expect("create new file");
        if fs::metadata(path).expect("stat new file").ino() == want {
            got = true;
            break;
        }
        let park = dir.join(format!(".parked-{i}"));
        fs::rename(path, &park).expect("park file");
        parked.push(park);
    }
    if !got {
        fs::write(path, content).expect("create new file");
    }
    for p in parked {
        fs::remove_file(p).expect("remove parked file");
    }
    got
}

#[test]
fn inode_reuse() {
    let mut ctx = Ctx::new("rot-inode", "app.log");
    let headers = [header(0, 1500), header(700, 1500)];
    let live = ctx.env.log("app.log");
    let mut gen = 0u32;
    let mut header_idx = 0usize;
    let mut writer = LineWriter::new(&live, "i0");
    fs::write(&live, &headers[header_idx]).expect("create app.log");
    let mut written: Vec<String> = Vec::new();
    let (mut reused_same, mut reused_diff, mut rounds) = (0, 0, 0);
    let target = kills_per_scenario().max(4);
    ctx.ensure_started();
    while ctx.kills < target || reused_same == 0 || reused_diff == 0 {
        assert!(
            rounds < target * 4 + 8,
            "after {rounds} rounds: {} kills, inode reuse with identical first bytes {reused_same}, with different {reused_diff}",
            ctx.kills
        );
        rounds += 1;
        write_bursts_to(&mut ctx, &mut writer);
        if ctx.rng.chance(0.3) {
            // A crash mid-file: the file stays, so everything is recoverable.
            ctx.jitter(300);
            ctx.kill9();
            ctx.ensure_started();
            write_bursts_to(&mut ctx, &mut writer);
        }
        // The old file must be fully read before it is deleted.
        ctx.wait_ids(writer.ids());
        written.extend(writer.take_ids());
        let md = fs::metadata(&live).expect("stat app.log");
        let (old_ino, old_len) = (md.ino(), md.len());
        // Mostly with the agent dead (it holds no descriptor, so the inode
        // can be reused and only its checkpoint remembers the old file);
        // sometimes while it runs.
        let dead = ctx.rng.chance(0.75);
        if dead {
            ctx.jitter(200);
            ctx.kill9();
        }
        let identical = rounds % 2 == 0;
        if !identical {
            header_idx = 1 - header_idx;
        }
        fs::remove_file(&live).expect("delete app.log");
        let reused = create_with_inode(&live, old_ino, &headers[header_idx]);
        gen += 1;
        writer = LineWriter::new(&live, &format!("i{gen}"));
        // New content differs from the old before the old offset (ids
        // differ) and is sometimes shorter, sometimes longer than it.
        let lines = ctx.rng.range(5, 80) as usize;
        writer.append(testdata_lines(), lines);
        let new_len = fs::metadata(&live).expect("stat app.log").len();
        eprintln!(
            "rot-inode: round {rounds}: agent {}, first bytes {}, inode {} (old {old_ino}), new len {new_len} vs old offset {old_len}",
            if dead { "dead" } else { "running" },
            if identical { "identical" } else { "different" },
            if reused { "reused" } else { "not reused" },
        );
        if reused && dead {
            if identical {
                reused_same += 1;
            } else {
                reused_diff += 1;
            }
        }
        ctx.ensure_started();
        // ext4 usually hands a freed inode out again at once, but not
        // always (it skips recently deleted inodes in some cases), so reuse
        // is counted here and required only over the whole run (the loop
        // condition and its round cap).
        if !fs_type(&ctx.env.logs).starts_with("ext")
            && rounds >= 2
            && reused_same + reused_diff == 0
        {
            eprintln!(
                "rot-inode: {} does not reuse inodes; the reuse cases are not exercised here",
                fs_type(&ctx.env.logs)
            );
            reused_same = 1;
            reused_diff = 1;
        }
    }
    written.extend(writer.take_ids());
    ctx.finish(&written, true);
}

fn write_bursts_to(ctx: &mut Ctx, writer: &mut LineWriter) {
    for _ in 0..ctx.rng.range(1, 3) {
        let n = ctx.rng.range(20, 150) as usize;
        writer.append(testdata_lines(), n);
        ctx.jitter(80);
    }
}

#[test]
fn compressed_rotation() {
    let mut ctx = Ctx::new("rot-gzip", "app.log*");
    let mut log = RotatingLog::new(&ctx.env.logs, "app.log");
    log.create_live();
    let target = kills_per_scenario();
    let mut compressed = 0;
    ctx.ensure_started();
    while ctx.kills < target || compressed < 2 {
        write_bursts(&mut ctx, &mut log);
        if ctx.rng.chance(0.6) {
            ctx.jitter(300);
            ctx.kill9();
            let n = ctx.rng.range(0, 100) as usize;
            log.append(n);
            ctx.ensure_started();
        }
        // delaycompress: `.1` is compressed at the next rotation, once the
        // agent has shipped it (else its unread lines would be lost).
        let first = log.ids_of("app.log.1");
        ctx.wait_ids(&first);
        log.shift();
        if log.compress_second() {
            compressed += 1;
        }
        let live = log.live_path();
        fs::rename(&live, log.path("app.log.1")).expect("rotate live file");
        log.live().name = "app.log.1".into();
        log.push_live();
        log.create_live();
        write_bursts(&mut ctx, &mut log);
        log.drop_oldest(3, |_| false);
    }
    let ids = log.all_ids();
    let store = ctx.finish(&ids, true);
    for seg in store.segments() {
        assert!(
            !seg.meta
                .source
                .as_file()
                .expect("file source")
                .path
                .ends_with(".gz"),
            "segment {} of stream {} was read from compressed file {}",
            seg.meta.seq,
            seg.stream,
            seg.meta.source.as_file().expect("file source").path
        );
        assert!(
            !seg.raw.starts_with(&[0x1f, 0x8b]),
            "segment {} holds gzip data from {}",
            seg.meta.seq,
            seg.meta.source.as_file().expect("file source").path
        );
    }
}

/// Kill, rotate while the agent is down (once or twice), write to the new
/// live file, restart: the unread tail of the rotated file must still be
/// read, whether or not the glob matches its new name.
///
/// With `live_only`, a file created and rotated away while the agent is
/// down was never seen by it and no glob names it: its lines would be
/// unrecoverable by design, so the writer leaves such a file empty.
fn restart_during_rotation(name: &str, glob: &str, live_only: bool) {
    let mut ctx = Ctx::new(name, glob);
    let mut log = RotatingLog::new(&ctx.env.logs, "app.log");
    log.create_live();
    let target = kills_per_scenario();
    ctx.ensure_started();
    while ctx.kills < target {
        write_bursts(&mut ctx, &mut log);
        ctx.wait_known(&log);
        // Write right up to the kill, so the agent dies with unread data.
        log.append(ctx.rng.range(50, 300) as usize);
        ctx.jitter(250);
        ctx.kill9();
        let rotations = ctx.rng.range(1, 2);
        for r in 1..=rotations {
            log.rotate_create();
            if r == rotations || !live_only {
                log.append(ctx.rng.range(1, 100) as usize);
            }
        }
        ctx.ensure_started();
        write_bursts(&mut ctx, &mut log);
        let store = ctx.env.store.clone();
        let host = ctx.env.host_id.clone();
        log.drop_oldest(3, |ids| stored_now(&store, &host, ids));
    }
    let ids = log.all_ids();
    ctx.finish(&ids, true);
}

#[test]
fn restart_during_rotation_live_name_glob() {
    restart_during_rotation("rot-restart-live", "app.log", true);
}

#[test]
fn restart_during_rotation_name_star_glob() {
    restart_during_rotation("rot-restart-star", "app.log*", false);
}

/// Whether the process `pid` has `path` open (from `/proc/PID/fd`).
fn holds_open(pid: u32, path: &Path) -> Result<(), String> {
    let dir = format!("/proc/{pid}/fd");
    let entries = fs::read_dir(&dir).map_err(|e| format!("cannot list {dir}: {e}"))?;
    let mut open = Vec::new();
    for e in entries.flatten() {
        if let Ok(target) = fs::read_link(e.path()) {
            if target == path {
                return Ok(());
            }
            open.push(target.display().to_string());
        }
    }
    Err(format!("pid {pid} has open: {open:?}"))
}

#[test]
fn deleted_while_open() {
    let mut ctx = Ctx::new("rot-deleted", "burst-*.log");
    let target = kills_per_scenario();
    let mut written: Vec<String> = Vec::new();
    let mut n = 0;
    ctx.ensure_started();
    while ctx.kills < target {
        let path = ctx.env.log(&format!("burst-{n}.log"));
        let mut writer = LineWriter::new(&path, &format!("d{n}"));
        n += 1;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("create burst file");
        // /proc shows resolved paths.
        let path = fs::canonicalize(&path).expect("canonical burst path");
        writer.append_to(&mut file, testdata_lines(), 5);
        if ctx.rng.chance(0.4) {
            // A crash while the file still exists: recoverable.
            ctx.jitter(300);
            ctx.kill9();
        }
        ctx.ensure_started();
        // The burst and unlink must come only once the agent holds the
        // file open: lines in a file deleted before anyone opened it exist
        // nowhere to be read.
        let pid = ctx.agent.as_ref().expect("started").pid();
        wait_for(
            &format!("agent pid {pid} to open {}", path.display()),
            DEADLINE,
            || holds_open(pid, &path),
        );
        let burst = ctx.rng.range(300, 3000) as usize;
        writer.append_to(&mut file, testdata_lines(), burst);
        fs::remove_file(&path).expect("unlink burst file");
        drop(file);
        ctx.wait_ids(writer.ids());
        written.extend(writer.take_ids());
        if ctx.rng.chance(0.7) {
            ctx.jitter(300);
            ctx.kill9();
            ctx.ensure_started();
        }
    }
    ctx.finish(&written, false);
}

/// Whether every id is in the store now (no waiting).
fn stored_now(store: &Path, host: &str, ids: &[String]) -> bool {
    let Ok(contents) = StoreContents::read(store, host) else {
        return false;
    };
    let found: HashSet<String> = contents.line_ids().into_iter().collect();
    ids.iter().all(|id| found.contains(id))
}
