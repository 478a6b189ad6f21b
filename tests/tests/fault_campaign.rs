//! The fault campaign, through the real binary: four sources whose files
//! share ONE directory (a small ext4 that reuses a freed inode at once),
//! every rotation style mixed across sources and cycles, the agent running
//! as `nobody`, `kill -9` at random moments, a file unreadable (mode 000)
//! across a restart, and at the end a count of every line per stream: each
//! line present once, in the stream of the source that wrote it, byte for
//! byte as written; plus `custody-verify store` exit 0.
//!
//! This is where defects like "a file unreadable at start is re-shipped
//! from byte 0 once readable" (D2) and "after kill -9 a source adopts
//! another source's new file on a reused inode as its own renamed file"
//! (D3) must show first: the rotation matrix (`rotation.rs`) tails one
//! source per directory, where neither can happen.
//!
//! Knobs (all optional): `CUSTODY_CAMPAIGN_CYCLES` (default 60; the long
//! mode is `bench/fault_campaign.sh`, 300), `CUSTODY_CAMPAIGN_SOURCES`
//! (1–4), `CUSTODY_CAMPAIGN_KILL=0` (clean SIGTERM restarts instead of
//! `kill -9`), `CUSTODY_CAMPAIGN_UNREADABLE=0` (no mode-000 phase),
//! `CUSTODY_TEST_SEED` (replays a run; the seed is printed), and
//! `CUSTODY_TEST_KEEP=1` (keep the workspace; the ext4 image is unmounted
//! and removed all the same).
//!
//! The writer never leaves a line the agent could not possibly read: a file
//! is deleted, compressed or recreated only once its lines are confirmed in
//! the store; every rotated name stays in its source's glob (`base*`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use custody_tests::campaign::{account_store, chmod, open_to_nobody, LoopExt4, SourceLines};
use custody_tests::*;

/// Generous: a loaded 2-core machine must not fail a correct agent.
const DEADLINE: Duration = Duration::from_secs(90);
/// Default kill cycles: well under 3 minutes on a loaded 2-core machine.
const DEFAULT_CYCLES: usize = 60;
/// Category and live file name of each source; the glob is `<dir>/<base>*`
/// (so `base.1`, `base.2.gz` stay in it). No glob matches another's files.
const SOURCES: [(&str, &str); 4] = [
    ("os", "sys.log"),
    ("web", "access.log"),
    ("app", "app.log"),
    ("logon", "auth.log"),
];
/// The ext4 under the log directory: small, with few inodes, so a freed
/// inode is the next one handed out.
const FS_SIZE: &str = "64M";
const FS_INODES: u32 = 128;

/// What one run does.
#[derive(Debug, Clone, Copy)]
struct Config {
    cycles: usize,
    sources: usize,
    /// `kill -9` between cycles; else SIGTERM and a clean exit.
    kill: bool,
    /// Make a live file mode 000 across a restart in some cycles.
    unreadable: bool,
}

impl Config {
    fn from_env() -> Self {
        Self {
            cycles: env_num("CUSTODY_CAMPAIGN_CYCLES", DEFAULT_CYCLES),
            sources: env_num("CUSTODY_CAMPAIGN_SOURCES", SOURCES.len()).clamp(1, SOURCES.len()),
            kill: env_num("CUSTODY_CAMPAIGN_KILL", 1) != 0,
            unreadable: env_num("CUSTODY_CAMPAIGN_UNREADABLE", 1) != 0,
        }
    }
}

fn env_num(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a number")),
        Err(_) => default,
    }
}

/// The rotation styles, mixed across sources and cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Create,
    CopyTruncate,
    Compress,
    Recreate,
}

const STYLES: [Style; 4] = [
    Style::Create,
    Style::CopyTruncate,
    Style::Compress,
    Style::Recreate,
];

/// What happened, for the summary line (and to show the faults really
/// occurred).
#[derive(Debug, Default)]
struct Stats {
    kills: usize,
    clean_stops: usize,
    starts: usize,
    rotations: HashMap<&'static str, usize>,
    deleted: usize,
    /// New files that got an inode last held by another source's file.
    cross_reuse: usize,
    /// Starts with a live file unreadable.
    unreadable_starts: usize,
}

/// One campaign: fields drop in order, so the agent dies before the file
/// system is unmounted and the workspace removed.
struct Campaign {
    name: String,
    agent: Option<AgentProcess>,
    fs: LoopExt4,
    env: TestEnv,
    opts: AgentOptions,
    rng: TestRng,
    cfg: Config,
    logs: Vec<RotatingLog>,
    cats: Vec<&'static str>,
    stats: Stats,
    /// Inode -> index of the source whose file last had it.
    inode_owner: HashMap<u64, usize>,
    /// Inodes present at the last look.
    inodes_seen: HashSet<u64>,
}

impl Campaign {
    fn new(name: &str, cfg: Config) -> Self {
        let env = TestEnv::new(name);
        let fs = LoopExt4::mount(&env.root.join("logs.img"), &env.logs, FS_SIZE, FS_INODES);
        open_to_nobody(&env);
        let mut opts = AgentOptions::new(&env).as_nobody(true);
        let mut logs = Vec::new();
        let mut cats = Vec::new();
        for (cat, base) in SOURCES.iter().take(cfg.sources) {
            opts = opts.source(cat, &format!("{}/{base}*", fs.dir().display()));
            let mut log = RotatingLog::with_prefix(fs.dir(), base, cat);
            log.create_live();
            logs.push(log);
            cats.push(*cat);
        }
        let rng = TestRng::from_env(name);
        eprintln!("{name}: {cfg:?}");
        let mut c = Self {
            name: name.to_string(),
            agent: None,
            fs,
            env,
            opts,
            rng,
            cfg,
            logs,
            cats,
            stats: Stats::default(),
            inode_owner: HashMap::new(),
            inodes_seen: HashSet::new(),
        };
        c.track_inodes();
        c
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
        self.stats.starts += 1;
    }

    /// `kill -9`, or SIGTERM and a clean exit when kills are off.
    fn stop(&mut self) {
        let Some(mut agent) = self.agent.take() else {
            return;
        };
        agent.assert_running();
        if self.cfg.kill {
            agent.kill9();
            self.stats.kills += 1;
        } else {
            agent.wait_started(&self.env.state, DEADLINE);
            agent.stop_clean(DEADLINE);
            self.stats.clean_stops += 1;
        }
    }

    /// A random pause of up to `max_ms`: picks a moment, waits for nothing.
    fn jitter(&mut self, max_ms: u64) {
        std::thread::sleep(Duration::from_millis(self.rng.range(0, max_ms)));
    }

    fn pick_source(&mut self) -> usize {
        self.rng.range(0, self.logs.len() as u64 - 1) as usize
    }

    /// The sources in a random order.
    fn shuffled(&mut self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.logs.len()).collect();
        for i in (1..order.len()).rev() {
            let j = self.rng.range(0, i as u64) as usize;
            order.swap(i, j);
        }
        order
    }

    /// A few bursts of lines (5–120 each, the line lengths vary with the
    /// test data) into source `si`'s live file.
    fn write_bursts(&mut self, si: usize) {
        for _ in 0..self.rng.range(1, 3) {
            let n = self.rng.range(5, 120) as usize;
            self.logs[si].append(n);
            self.jitter(40);
        }
    }

    /// Every id in the store now (no waiting).
    fn stored_set(&self) -> HashSet<String> {
        StoreContents::read(&self.env.store, &self.env.host_id)
            .map(|c| c.line_ids().into_iter().collect())
            .unwrap_or_default()
    }

    /// Restarts the agent if needed and waits until every id is stored.
    fn wait_ids(&mut self, ids: &[String]) {
        self.ensure_started();
        let agent = self.agent.as_mut().expect("started above");
        wait_for_ids(&self.env, ids, DEADLINE, || agent.check_running());
    }

    fn count(&mut self, style: &'static str) {
        *self.stats.rotations.entry(style).or_default() += 1;
    }

    /// Looks at the directory: a file on an inode that was absent at the
    /// last look and last belonged to another source is a cross-source
    /// inode reuse (the D3 setting).
    fn track_inodes(&mut self) {
        let mut now = HashSet::new();
        let entries = fs::read_dir(self.fs.dir())
            .unwrap_or_else(|e| panic!("list {}: {e}", self.fs.dir().display()));
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(si) = self.logs.iter().position(|l| name.starts_with(&l.base)) else {
                continue;
            };
            let Ok(md) = e.metadata() else { continue };
            let ino = md.ino();
            now.insert(ino);
            if !self.inodes_seen.contains(&ino) {
                if let Some(&prev) = self.inode_owner.get(&ino) {
                    if prev != si {
                        self.stats.cross_reuse += 1;
                    }
                }
            }
            self.inode_owner.insert(ino, si);
        }
        self.stats.deleted += self.inodes_seen.difference(&now).count();
        self.inodes_seen = now;
    }

    /// A rotation while the agent runs: styles that need lines stored
    /// first wait for them.
    fn rotate_running(&mut self, si: usize) {
        let style = STYLES[self.rng.range(0, STYLES.len() as u64 - 1) as usize];
        match style {
            Style::Create => {
                self.logs[si].rotate_create();
                self.count("create");
            }
            Style::CopyTruncate => {
                self.logs[si].rotate_copytruncate();
                self.count("copytruncate");
            }
            Style::Compress => {
                // delaycompress: `.1` becomes `.2` and is compressed, once
                // its lines are stored.
                let first = self.logs[si].ids_of(&format!("{}.1", self.logs[si].base));
                self.wait_ids(&first);
                self.logs[si].rotate_create();
                if self.logs[si].compress_second_if(|_| true) {
                    self.count("compress");
                } else {
                    self.count("create");
                }
            }
            Style::Recreate => {
                let live = self.logs[si]
                    .gens
                    .last()
                    .expect("live")
                    .writer
                    .ids()
                    .to_vec();
                self.wait_ids(&live);
                assert!(self.logs[si].recreate(|_| true));
                self.count("recreate");
            }
        }
        self.track_inodes();
        self.logs[si].append(self.rng.range(0, 60) as usize);
    }

    /// A rotation while the agent is down; deleting styles only for lines
    /// `stored` confirms.
    fn rotate_dead(&mut self, si: usize, stored: &HashSet<String>) {
        let is_stored = |ids: &[String]| ids.iter().all(|id| stored.contains(id));
        let style = STYLES[self.rng.range(0, STYLES.len() as u64 - 1) as usize];
        match style {
            Style::Create => {
                self.logs[si].rotate_create();
                self.count("create");
            }
            Style::CopyTruncate => {
                self.logs[si].rotate_copytruncate();
                self.count("copytruncate");
            }
            Style::Compress => {
                self.logs[si].rotate_create();
                if self.logs[si].compress_second_if(is_stored) {
                    self.count("compress");
                } else {
                    self.count("create");
                }
            }
            Style::Recreate => {
                if self.logs[si].recreate(is_stored) {
                    self.count("recreate");
                } else {
                    self.logs[si].rotate_create();
                    self.count("create");
                }
            }
        }
        self.track_inodes();
    }

    /// One kill cycle.
    fn cycle(&mut self) {
        self.ensure_started();
        if self.cfg.kill && self.rng.chance(0.15) {
            // A crash during start-up, right after the previous restart.
            self.jitter(150);
            self.stop();
            self.ensure_started();
        }
        for si in self.shuffled() {
            self.write_bursts(si);
        }
        for _ in 0..self.rng.range(0, 2) {
            let si = self.pick_source();
            self.rotate_running(si);
        }
        self.jitter(400);
        self.stop();

        // Down: deletions first, so the freed inodes are the next ones the
        // creations below get (another source's, often).
        let stored = self.stored_set();
        let is_stored = |ids: &[String]| ids.iter().all(|id| stored.contains(id));
        for si in self.shuffled() {
            if self.rng.chance(0.6) {
                let keep = self.rng.range(0, 2) as usize;
                self.logs[si].drop_oldest(keep, is_stored);
            }
        }
        self.track_inodes();
        for si in self.shuffled() {
            if self.rng.chance(0.5) {
                self.rotate_dead(si, &stored);
            }
            if self.rng.chance(0.7) {
                self.logs[si].append(self.rng.range(1, 80) as usize);
            }
        }
        self.ensure_started();
        if self.cfg.unreadable && self.rng.chance(0.3) {
            let si = self.pick_source();
            self.unreadable_restart(si);
        }
    }

    /// The live file of `si`, read up to its end (so the checkpoint holds
    /// a position in it), is mode 000 when the agent starts again (perhaps
    /// twice, with a `kill -9` in between), sometimes gets lines meanwhile,
    /// and is readable again later: its lines must arrive once, not again
    /// from byte 0.
    fn unreadable_restart(&mut self, si: usize) {
        let live = self.logs[si].live_path();
        let ids = self.logs[si]
            .gens
            .last()
            .expect("live")
            .writer
            .ids()
            .to_vec();
        self.wait_ids(&ids);
        self.stop();
        chmod(&live, 0o000);
        let restarts = if self.cfg.kill && self.rng.chance(0.5) {
            2
        } else {
            1
        };
        for r in 0..restarts {
            if r > 0 {
                self.jitter(200);
                self.stop();
            }
            self.ensure_started();
            self.stats.unreadable_starts += 1;
            self.wait_unreadable_seen(&live);
            if self.rng.chance(0.5) {
                self.logs[si].append(self.rng.range(1, 50) as usize);
            }
        }
        chmod(&live, 0o644);
        self.logs[si].append(self.rng.range(1, 50) as usize);
    }

    /// Waits (up to 20 s, then goes on) until the agent's status names the
    /// unreadable file, so the file really was unreadable while it ran.
    fn wait_unreadable_seen(&mut self, path: &Path) {
        let agent = self.agent.as_mut().expect("started");
        agent.wait_started(&self.env.state, DEADLINE);
        let name = path.display().to_string();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(st) = read_status(&self.env.state) {
                let named = st["sources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|s| {
                        s.to_string()
                            .split('"')
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .any(|e| e.contains(&name) && e.contains("permission denied"));
                if named {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "{}: note: status never named the unreadable {name}",
            self.name
        );
    }

    /// Polls the store until every written id is in it or `DEADLINE`
    /// passes; the accounting afterwards says what is missing.
    fn settle(&mut self, ids: &[String]) {
        let start = Instant::now();
        loop {
            if let Some(agent) = self.agent.as_mut() {
                agent.assert_running();
            }
            let stored = self.stored_set();
            let missing = ids.iter().filter(|id| !stored.contains(*id)).count();
            if missing == 0 {
                return;
            }
            if start.elapsed() >= DEADLINE {
                eprintln!(
                    "{}: {missing} of {} lines still not in the store after {DEADLINE:?}",
                    self.name,
                    ids.len()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Catch up, drain the spool, stop cleanly, then count every line per
    /// stream and run `custody-verify`. Panics with the table and findings.
    fn finish(mut self) {
        self.ensure_started();
        for si in 0..self.logs.len() {
            self.logs[si].append(20);
        }
        let all: Vec<String> = self.logs.iter().flat_map(|l| l.all_ids()).collect();
        self.settle(&all);
        let state = self.env.state.clone();
        let agent = self.agent.as_mut().expect("running");
        agent.wait_started(&state, DEADLINE);
        wait_for("the spool to drain", DEADLINE, || {
            let st = read_status(&state)?;
            match st.pointer("/spool/segments").and_then(|v| v.as_u64()) {
                Some(0) => Ok(()),
                n => Err(format!("spool segments {n:?}")),
            }
        });
        agent.stop_clean(DEADLINE);
        self.agent = None;

        let store =
            StoreContents::read(&self.env.store, &self.env.host_id).expect("store readable");
        let sources: Vec<SourceLines> = self
            .logs
            .iter()
            .zip(&self.cats)
            .map(|(l, cat)| SourceLines {
                name: cat.to_string(),
                stream_prefix: format!("{cat}."),
                ids: l.all_ids(),
            })
            .collect();
        let report = account_store(&store, &sources, testdata_lines());
        let signers = allowed_signers(&self.env);
        let verify = run_verify(
            &self.env.store,
            &[
                "--allowed-signers",
                signers.to_str().expect("utf-8 temp path"),
            ],
        );
        let mut rotations: Vec<_> = self.stats.rotations.iter().collect();
        rotations.sort();
        eprintln!(
            "{}: seed {} (replay with CUSTODY_TEST_SEED={}); {} cycles, {} kill -9, {} clean stops, {} starts ({} with a file unreadable); rotations {:?}; {} files deleted, {} cross-source inode reuses; {} lines written, {} segments; custody-verify exit {:?}\n{}",
            self.name,
            self.rng.seed(),
            self.rng.seed(),
            self.cfg.cycles,
            self.stats.kills,
            self.stats.clean_stops,
            self.stats.starts,
            self.stats.unreadable_starts,
            rotations,
            self.stats.deleted,
            self.stats.cross_reuse,
            report.written(),
            store.segment_count(),
            verify.code,
            report.table()
        );
        report.assert_clean();
        verify.assert_clean();
        if self.cfg.kill {
            assert!(
                self.stats.kills >= self.cfg.cycles,
                "{}: only {} kill cycles ran",
                self.name,
                self.stats.kills
            );
        }
    }
}

fn run_campaign(name: &str, cfg: Config) {
    let mut c = Campaign::new(name, cfg);
    for _ in 0..cfg.cycles {
        c.cycle();
    }
    c.finish();
}

/// The campaign: four sources in one directory, every fault at once.
#[test]
fn four_sources_one_directory_kill9_rotations_unreadable() {
    run_campaign("campaign", Config::from_env());
}

/// The harness itself, with no fault that crosses sources or restarts
/// uncleanly: one source, clean restarts, no unreadable file. A failure
/// here is a harness (or plain rotation) defect, not D2/D3.
#[test]
fn harness_one_source_clean_restarts() {
    run_campaign(
        "campaign-calm",
        Config {
            cycles: 6,
            sources: 1,
            kill: false,
            unreadable: false,
        },
    );
}
