//! Running the real agent: its command line ([`AgentOptions`]) and a guard
//! ([`AgentProcess`]) that never leaves a stray process behind — dropping
//! it sends SIGKILL and reaps the child.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bins::bins;
use crate::env::TestEnv;
use crate::signal;

/// The `custody-agent run` command line. [`AgentOptions::new`] sets short
/// intervals suited to tests; override any flag with [`AgentOptions::flag`].
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub host_id: String,
    pub store: PathBuf,
    pub state_dir: PathBuf,
    pub level: String,
    /// `CATEGORY[:FRAMING]=GLOB` values for `--source`.
    pub sources: Vec<String>,
    /// Tuning flags without the leading `--`, in order; later values of the
    /// same flag replace earlier ones.
    pub flags: Vec<(String, String)>,
    /// Appended verbatim after everything else.
    pub extra_args: Vec<String>,
    /// Run as `nobody` (uid/gid 65534) through `setpriv`, so file modes
    /// apply (root ignores them).
    pub as_nobody: bool,
    /// Where each start appends the agent's stdout and stderr.
    pub log_file: PathBuf,
    /// Extra environment variables for the agent (e.g. `NOTIFY_SOCKET`).
    pub env: Vec<(String, OsString)>,
}

impl AgentOptions {
    /// Store, state dir and host id from `env`; level D; no sources yet;
    /// segment age 300 ms, digest 500 ms, poll 200 ms, partial-line wait
    /// 1000 ms, shutdown grace 10 s.
    pub fn new(env: &TestEnv) -> Self {
        Self {
            host_id: env.host_id.clone(),
            store: env.store.clone(),
            state_dir: env.state.clone(),
            level: "D".into(),
            sources: Vec::new(),
            flags: [
                ("segment-max-age-ms", "300"),
                ("digest-interval-ms", "500"),
                ("poll-interval-ms", "200"),
                ("partial-line-wait-ms", "1000"),
                ("shutdown-grace-ms", "10000"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            extra_args: Vec::new(),
            as_nobody: false,
            log_file: env.root.join("agent.log"),
            env: Vec::new(),
        }
    }

    /// Adds a line-framed source: `--source CATEGORY=GLOB`.
    pub fn source(mut self, category: &str, glob: &str) -> Self {
        self.sources.push(format!("{category}={glob}"));
        self
    }

    /// Adds a source with explicit framing: `--source CATEGORY:FRAMING=GLOB`.
    pub fn source_framed(mut self, category: &str, framing: &str, glob: &str) -> Self {
        self.sources.push(format!("{category}:{framing}={glob}"));
        self
    }

    /// Sets `--NAME VALUE`, replacing an earlier value.
    pub fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.flags.retain(|(k, _)| k != name);
        self.flags.push((name.to_string(), value.to_string()));
        self
    }

    /// Removes `--NAME` so the agent's default applies.
    pub fn without_flag(mut self, name: &str) -> Self {
        self.flags.retain(|(k, _)| k != name);
        self
    }

    /// Sets an environment variable for the agent, replacing an earlier value.
    pub fn env(mut self, name: &str, value: impl Into<OsString>) -> Self {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn as_nobody(mut self, yes: bool) -> Self {
        self.as_nobody = yes;
        self
    }

    /// The arguments after the binary name for `command` (`run` or
    /// `check-config`).
    pub fn args(&self, command: &str) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![command.into()];
        a.extend(["--store".into(), self.store.clone().into_os_string()]);
        a.extend([
            "--state-dir".into(),
            self.state_dir.clone().into_os_string(),
        ]);
        a.extend(["--host-id".into(), self.host_id.clone().into()]);
        a.extend(["--level".into(), self.level.clone().into()]);
        for s in &self.sources {
            a.extend(["--source".into(), s.into()]);
        }
        for (k, v) in &self.flags {
            a.extend([format!("--{k}").into(), v.into()]);
        }
        a.extend(self.extra_args.iter().map(OsString::from));
        a
    }

    /// A `Command` for the agent binary with `args`, through `setpriv` when
    /// [`AgentOptions::as_nobody`] is set.
    pub fn command(&self, args: &[OsString]) -> Command {
        let mut c = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bins().agent)
                .args(args);
            c
        } else {
            let mut c = Command::new(&bins().agent);
            c.args(args);
            c
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// Runs `custody-agent ARGS…` to completion (for `status`, `key show`,
/// `check-config`, …) and returns its output.
pub fn agent_output<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(&bins().agent)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bins().agent.display()))
}

/// A running `custody-agent run`. Dropping it kills the agent with SIGKILL
/// and reaps it, so a failing test leaves no process behind.
pub struct AgentProcess {
    child: Option<Child>,
    pid: u32,
    log_file: PathBuf,
    /// Byte offset in the log file where this run's output begins.
    log_start: u64,
    exit: Option<ExitStatus>,
}

impl AgentProcess {
    /// Starts `custody-agent run` with `opts`, appending its output to
    /// `opts.log_file` after a header line.
    pub fn start(opts: &AgentOptions) -> Self {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&opts.log_file)
            .unwrap_or_else(|e| panic!("cannot open agent log {}: {e}", opts.log_file.display()));
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let args = opts.args("run");
        let _ = writeln!(log, "===== custody-agent {:?}", args);
        let err_log = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot dup agent log handle: {e}"));
        let child = opts
            .command(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err_log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bins().agent.display()));
        let pid = child.id();
        Self {
            child: Some(child),
            pid,
            log_file: opts.log_file.clone(),
            log_start,
            exit: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// This run's output so far.
    pub fn log(&self) -> String {
        read_from(&self.log_file, self.log_start)
    }

    /// The last `n` lines of this run's output, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The exit status if the agent has exited (reaping it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.exit = Some(status);
                }
            }
        }
        self.exit
    }

    /// `Err` describing the exit (with the log tail) if the agent is no
    /// longer running; for use inside [`crate::wait_for`] closures.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.try_exit() {
            None => Ok(()),
            Some(status) => Err(format!(
                "agent pid {} exited with {status}; log tail:\n{}",
                self.pid,
                self.log_tail(30)
            )),
        }
    }

    /// Panics if the agent has exited.
    pub fn assert_running(&mut self) {
        if let Err(e) = self.check_running() {
            panic!("{e}");
        }
    }

    /// Waits until `<state_dir>/status.json` was written by this process
    /// and says `running: true`: the agent has finished starting (signal
    /// handlers installed, sources set up). Panics if it exits first or the
    /// deadline passes.
    pub fn wait_started(&mut self, state_dir: &Path, timeout: Duration) -> serde_json::Value {
        let pid = u64::from(self.pid);
        crate::wait::wait_for(
            &format!("agent pid {pid} to report running in status.json"),
            timeout,
            || {
                if let Err(e) = self.check_running() {
                    panic!("{e}");
                }
                let st = crate::status::read_status(state_dir)?;
                let st_pid = st.get("pid").and_then(serde_json::Value::as_u64);
                if st_pid == Some(pid) && crate::status::is_running(&st) {
                    Ok(st)
                } else {
                    Err(format!(
                        "status.json has pid {st_pid:?}, running {}",
                        crate::status::is_running(&st)
                    ))
                }
            },
        )
    }

    /// `kill -9` and reap: the crash the agent must survive.
    pub fn kill9(&mut self) {
        if self.try_exit().is_some() {
            panic!(
                "kill -9 requested but {}",
                self.check_running().err().unwrap_or_default()
            );
        }
        if let Some(child) = self.child.as_mut() {
            // Child::kill sends SIGKILL.
            child
                .kill()
                .unwrap_or_else(|e| panic!("kill -9 of agent pid {}: {e}", self.pid));
            self.exit = Some(
                child
                    .wait()
                    .unwrap_or_else(|e| panic!("reaping agent pid {}: {e}", self.pid)),
            );
        }
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`) without waiting.
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.try_exit().is_none() {
            signal::send(self.pid, sig)
                .unwrap_or_else(|e| panic!("signal {sig} to agent pid {}: {e}", self.pid));
        }
    }

    /// Waits up to `timeout` for the agent to exit; on timeout kills it
    /// with SIGKILL and panics with the log tail.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if start.elapsed() >= timeout {
                let tail = self.log_tail(30);
                self.kill9();
                panic!(
                    "agent pid {} did not exit within {timeout:?}; killed it. log tail:\n{tail}",
                    self.pid
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit (see
    /// [`AgentProcess::wait_exit`]).
    pub fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(timeout)
    }

    /// SIGTERM and asserts a clean exit (code 0), with the log on failure.
    pub fn stop_clean(&mut self, timeout: Duration) {
        let status = self.sigterm(timeout);
        assert_eq!(
            status.code(),
            Some(0),
            "agent pid {} exited with {status} after SIGTERM; log tail:\n{}",
            self.pid,
            self.log_tail(30)
        );
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if self.exit.is_none() && matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut s = Vec::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_end(&mut s);
        }
    }
    String::from_utf8_lossy(&s).into_owned()
}
