//! The systemd notify protocol (sd_notify(3)), through the real binary: the
//! test plays systemd's part by binding the `NOTIFY_SOCKET` datagram socket
//! and setting `WATCHDOG_USEC`, as `Type=notify` with `WatchdogSec=` does
//! (packaging/systemd/custody-agent.service).
//! - `READY=1` arrives once the agent has started, with a `STATUS=` line,
//!   and by then the agent reads: a line written before start-up reaches
//!   the store.
//! - `WATCHDOG=1` keeps arriving, each ping within the watchdog timeout of
//!   the previous one (the contract systemd enforces).
//! - SIGTERM brings `STOPPING=1` before the process exits, and the agent
//!   exits 0 with everything shipped.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use custody_tests::*;

const DEADLINE: Duration = Duration::from_secs(60);

/// One notification as received, with when it arrived.
struct Message {
    at: Instant,
    text: String,
}

impl Message {
    fn has(&self, assignment: &str) -> bool {
        self.text.lines().any(|l| l == assignment)
    }

    fn status(&self) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix("STATUS="))
    }
}

/// systemd's end of the notify socket.
struct NotifySocket {
    sock: UnixDatagram,
    seen: Vec<Message>,
}

impl NotifySocket {
    fn bind(path: &std::path::Path) -> Self {
        let sock = UnixDatagram::bind(path)
            .unwrap_or_else(|e| panic!("cannot bind notify socket {}: {e}", path.display()));
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        NotifySocket {
            sock,
            seen: Vec::new(),
        }
    }

    /// Receives until a message satisfies `want` (returning its index in
    /// `seen`), failing when `agent` exits first or `timeout` passes.
    fn wait_for(
        &mut self,
        what: &str,
        agent: &mut AgentProcess,
        timeout: Duration,
        want: impl Fn(&Message) -> bool,
    ) -> usize {
        let start = Instant::now();
        let mut buf = vec![0u8; 4096];
        loop {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = Message {
                        at: Instant::now(),
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    };
                    let hit = want(&msg);
                    self.seen.push(msg);
                    if hit {
                        return self.seen.len() - 1;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if let Err(e) = agent.check_running() {
                        panic!(
                            "waiting for {what}: {e}\nnotifications so far: {}",
                            self.dump()
                        );
                    }
                }
                Err(e) => panic!("reading the notify socket: {e}"),
            }
            if start.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; notifications so far: {}\nagent log:\n{}",
                    self.dump(),
                    agent.log_tail(30)
                );
            }
        }
    }

    fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|m| format!("{:?}", m.text))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[test]
fn ready_watchdog_and_stopping_reach_systemd() {
    let env = TestEnv::new("svc-notify");
    let log = env.log("app.log");
    let mut writer = LineWriter::new(&log, "n");
    writer.append(testdata_lines(), 20);
    let socket_path = env.root.join("notify.sock");
    let mut systemd = NotifySocket::bind(&socket_path);
    // A 4 s watchdog: the agent must ping at least every 4 s (it aims for
    // every 2 s). Long enough for a loaded CI machine, short enough to see
    // several pings in a few seconds.
    let watchdog = Duration::from_secs(4);
    let opts = AgentOptions::new(&env)
        .source("app", log.to_str().expect("utf-8 temp path"))
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string());
    let mut agent = AgentProcess::start(&opts);

    // READY=1, with a status line that says what runs.
    let ready = systemd.wait_for("READY=1", &mut agent, DEADLINE, |m| m.has("READY=1"));
    let status = systemd.seen[ready]
        .status()
        .unwrap_or_else(|| panic!("READY=1 without STATUS=: {:?}", systemd.seen[ready].text))
        .to_string();
    assert!(
        status.contains("1 sources") && status.contains(&env.store.display().to_string()),
        "the ready status should name the sources and the store: {status:?}"
    );
    assert!(
        systemd.seen[..ready]
            .iter()
            .all(|m| !m.has("WATCHDOG=1") && !m.has("STOPPING=1")),
        "notifications before READY=1: {}",
        systemd.dump()
    );
    // Ready means reading: the lines written before start-up arrive.
    wait_for_ids(&env, writer.ids(), DEADLINE, || agent.check_running());

    // Pings keep coming, each within the watchdog timeout of the last.
    let mut pings = vec![systemd.seen[ready].at];
    for n in 1..=4 {
        let i = systemd.wait_for(&format!("watchdog ping {n}"), &mut agent, DEADLINE, |m| {
            m.has("WATCHDOG=1")
        });
        pings.push(systemd.seen[i].at);
    }
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap <= watchdog,
            "a watchdog ping came {gap:?} after the previous one, beyond WATCHDOG_USEC ({watchdog:?}); systemd would have killed the agent"
        );
    }
    // The periodic status line reports progress.
    let summary = systemd
        .seen
        .iter()
        .rev()
        .find_map(|m| m.status().filter(|s| s.contains("files followed")))
        .unwrap_or_else(|| panic!("no progress STATUS= line: {}", systemd.dump()))
        .to_string();
    assert!(
        summary.contains("1 files followed") && summary.contains("last shipped"),
        "{summary:?}"
    );

    // SIGTERM: STOPPING=1 while the agent still runs, then a clean exit.
    agent.signal(libc::SIGTERM);
    let stopping = systemd.wait_for("STOPPING=1", &mut agent, DEADLINE, |m| m.has("STOPPING=1"));
    assert!(
        systemd.seen[stopping]
            .status()
            .is_some_and(|s| s.starts_with("shutting down")),
        "STOPPING=1 should come with a shutdown status: {:?}",
        systemd.seen[stopping].text
    );
    let exit = agent.wait_exit(DEADLINE);
    assert_eq!(
        exit.code(),
        Some(0),
        "agent exited with {exit} after SIGTERM; log:\n{}",
        agent.log_tail(30)
    );
    // Whatever was sent after STOPPING=1 is already queued on the socket.
    let mut buf = vec![0u8; 4096];
    let mut after = Vec::new();
    while let Ok(n) = systemd.sock.recv(&mut buf) {
        after.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        after.iter().all(|m| !m.lines().any(|l| l == "READY=1")),
        "READY=1 after STOPPING=1: {after:?}"
    );
    assert!(
        after
            .iter()
            .any(|m| m.lines().any(|l| l.starts_with("STATUS=stopped"))),
        "no final STATUS=stopped line after STOPPING=1: {after:?}"
    );
    let store = StoreContents::read(&env.store, &env.host_id).expect("store readable");
    store.assert_clean();
    assert_exactly_once(writer.ids(), &store.line_ids());
}

#[test]
fn a_start_up_failure_is_reported_as_status() {
    let env = TestEnv::new("svc-fail");
    let socket_path = env.root.join("notify.sock");
    let systemd = NotifySocket::bind(&socket_path);
    // The state directory is a file: the agent cannot start.
    let not_a_dir = env.root.join("state-file");
    std::fs::write(&not_a_dir, b"not a directory").expect("write state-file");
    let mut opts = AgentOptions::new(&env)
        .source("app", &format!("{}/*.log", env.logs.display()))
        .env("NOTIFY_SOCKET", &socket_path);
    opts.state_dir = not_a_dir;
    let mut agent = AgentProcess::start(&opts);
    let exit = agent.wait_exit(DEADLINE);
    assert_eq!(exit.code(), Some(1), "log:\n{}", agent.log_tail(20));
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while let Ok(n) = systemd.sock.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        got.iter().all(|m| !m.lines().any(|l| l == "READY=1")),
        "READY=1 from an agent that could not start: {got:?}"
    );
    let failed = got
        .iter()
        .flat_map(|m| m.lines())
        .find_map(|l| l.strip_prefix("STATUS=failed: "))
        .unwrap_or_else(|| panic!("no STATUS=failed line: {got:?}"));
    assert!(
        failed.contains("state-file"),
        "the failure status should name the state directory: {failed:?}"
    );
}
