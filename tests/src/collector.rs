//! Running the real `custody-collector`: its CA and enrollments
//! ([`CollectorSetup`]), the server process ([`CollectorProcess`], killed
//! on drop), and a stock HTTPS client (`curl`) for requests the agent would
//! never send (refusal tests).

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::bins::bins;
use crate::signal;

/// A port that was free a moment ago, for a server the test starts next.
///
/// Chosen below Linux's ephemeral range (32768–60999 by default), so that
/// no outgoing connection of this or any other test can take it in the
/// moment between this check and the server's bind (port 0 would hand out
/// an ephemeral port, which a client's connect could then reuse: seen as
/// "Address already in use" under load). Each test process walks its own
/// stretch of the range, from its pid.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = std::process::id().wrapping_mul(997);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + base.wrapping_add(n.wrapping_mul(7)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// One collector's directories, ports and CA.
#[derive(Debug, Clone)]
pub struct CollectorSetup {
    pub root: PathBuf,
    pub ca_dir: PathBuf,
    /// A directory, or `s3://…` (as a path) for an S3 store.
    pub store: PathBuf,
    pub state: PathBuf,
    pub port: u16,
    pub metrics_port: u16,
    pub log_file: PathBuf,
    /// `--level` (default D).
    pub level: String,
    /// Flags added to every `serve` (after the defaults).
    pub extra: Vec<String>,
}

fn run_ok(args: &[&str]) -> String {
    let out = Command::new(&bins().collector)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run custody-collector: {e}"));
    assert!(
        out.status.success(),
        "custody-collector {args:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl CollectorSetup {
    /// `custody-collector ca init` in `root/ca` (server names localhost and
    /// 127.0.0.1); store and state under `root`.
    pub fn new(root: &Path) -> CollectorSetup {
        std::fs::create_dir_all(root).expect("collector root");
        let setup = CollectorSetup {
            root: root.to_path_buf(),
            ca_dir: root.join("ca"),
            store: root.join("store"),
            state: root.join("state"),
            port: free_port(),
            metrics_port: free_port(),
            log_file: root.join("collector.log"),
            level: "D".into(),
            extra: Vec::new(),
        };
        run_ok(&["ca", "init", "--dir", &setup.ca_dir.to_string_lossy()]);
        setup
    }

    /// `custody-collector enroll` for `host` into `root/enroll-<host>`.
    pub fn enroll(&self, host: &str) -> PathBuf {
        self.enroll_into(host, &format!("enroll-{host}"))
    }

    /// `custody-collector enroll` for `host` into `root/<dir>` (enrolling
    /// the same host again needs a new directory).
    pub fn enroll_into(&self, host: &str, dir: &str) -> PathBuf {
        let out = self.root.join(dir);
        run_ok(&[
            "enroll",
            "--ca-dir",
            &self.ca_dir.to_string_lossy(),
            "--host-id",
            host,
            "--out",
            &out.to_string_lossy(),
        ]);
        out
    }

    /// The URL agents ship to.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", self.metrics_port),
            "--ca-dir".into(),
            self.ca_dir.to_string_lossy().into_owned(),
            "--store".into(),
            self.store.to_string_lossy().into_owned(),
            "--state-dir".into(),
            self.state.to_string_lossy().into_owned(),
            "--level".into(),
            self.level.clone(),
        ];
        a.extend(self.extra.iter().cloned());
        a
    }

    /// `STATE/findings.jsonl`, parsed (empty if absent).
    pub fn findings(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.state.join("findings.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("findings line {l:?}: {e}")))
            .collect()
    }

    /// `GET /metrics` (plain HTTP), or `None` if nothing answers.
    pub fn metrics(&self) -> Option<String> {
        http_get(self.metrics_port, "/metrics").map(|(_, body)| body)
    }

    /// The value of one metric series line (`name{labels}`), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(self.metrics_port, series)
    }
}

/// The value of one series (`name{labels}`) in `GET /metrics` on
/// 127.0.0.1:`port`; 0 if absent or nothing answers.
pub fn metric_value(port: u16, series: &str) -> f64 {
    http_get(port, "/metrics")
        .map(|(_, body)| body)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A plain HTTP/1.1 GET on 127.0.0.1:`port`: `(status, body)`.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A running `custody-collector serve`; SIGKILLed and reaped on drop.
pub struct CollectorProcess {
    child: Option<Child>,
    pub pid: u32,
    log_file: PathBuf,
    log_start: u64,
}

impl CollectorProcess {
    /// Starts the collector and waits until `/healthz` answers.
    pub fn start(setup: &CollectorSetup) -> CollectorProcess {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&setup.log_file)
            .expect("collector log");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let args = setup.args();
        let _ = writeln!(log, "===== custody-collector {args:?}");
        let err = log.try_clone().expect("dup log");
        let child = Command::new(&bins().collector)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start custody-collector: {e}"));
        let mut p = CollectorProcess {
            pid: child.id(),
            child: Some(child),
            log_file: setup.log_file.clone(),
            log_start,
        };
        let start = Instant::now();
        loop {
            if let Err(e) = p.check_running() {
                panic!("{e}");
            }
            if matches!(http_get(setup.metrics_port, "/healthz"), Some((200, _)))
                && TcpStream::connect(("127.0.0.1", setup.port)).is_ok()
            {
                return p;
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "collector did not answer /healthz within 60 s; log:\n{}",
                    p.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        let mut s = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_file) {
            use std::io::{Seek, SeekFrom};
            if f.seek(SeekFrom::Start(self.log_start)).is_ok() {
                let _ = f.read_to_end(&mut s);
            }
        }
        String::from_utf8_lossy(&s).into_owned()
    }

    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            other => Err(format!(
                "collector pid {} is not running ({other:?}); log:\n{}",
                self.pid,
                self.log()
            )),
        }
    }

    /// SIGTERM and wait for the exit (SIGKILL and panic after `timeout`).
    pub fn sigterm(&mut self, timeout: Duration) -> ExitStatus {
        let _ = signal::send(self.pid, libc::SIGTERM);
        let start = Instant::now();
        let child = self.child.as_mut().expect("collector started");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status;
            }
            if start.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                panic!("collector did not stop within {timeout:?} after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CollectorProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What one `curl` request got: the HTTP status (0 if there was no HTTP
/// answer, e.g. a refused TLS handshake), the body, and curl's exit code.
#[derive(Debug)]
pub struct CurlReply {
    pub status: u16,
    pub body: String,
    pub exit: Option<i32>,
    pub stderr: String,
}

/// A stock HTTPS client: `curl` with the collector's CA and optionally a
/// client certificate.
pub struct Curl {
    pub ca: PathBuf,
    /// `(certificate, key)`.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub base: String,
}

impl Curl {
    /// A client for `setup` with the enrollment in `enroll_dir` (or none).
    pub fn new(setup: &CollectorSetup, enroll_dir: Option<&Path>) -> Curl {
        Curl {
            ca: setup.ca_dir.join("ca.pem"),
            identity: enroll_dir.map(|d| (d.join("client.pem"), d.join("client.key"))),
            base: setup.url(),
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Path>,
        headers: &[(&str, &str)],
    ) -> CurlReply {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ]);
        c.arg("--cacert").arg(&self.ca);
        if let Some((cert, key)) = &self.identity {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(b) = body {
            c.arg("--data-binary").arg(format!("@{}", b.display()));
            c.args(["-H", "Content-Type: application/octet-stream"]);
        }
        if method == "HEAD" {
            c.arg("-I");
        }
        for (k, v) in headers {
            c.arg("-H").arg(format!("{k}: {v}"));
        }
        c.arg(format!("{}{path}", self.base));
        let out = c
            .output()
            .unwrap_or_else(|e| panic!("cannot run curl (apt: curl): {e}"));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        CurlReply {
            status: code.trim().parse().unwrap_or(0),
            body: body.to_string(),
            exit: out.status.code(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `PUT /v1/objects/<key>` with `bytes` and a retain-until header.
    pub fn put(&self, key: &str, bytes: &[u8], scratch: &Path) -> CurlReply {
        let file = scratch.join(format!("body-{}", key.replace('/', "_")));
        std::fs::write(&file, bytes).expect("scratch body");
        self.request(
            "PUT",
            &format!("/v1/objects/{key}"),
            Some(&file),
            &[("custody-retain-until", "2027-01-01T00:00:00Z")],
        )
    }
}

/// An `openssl s_client` connection to the collector that completes the TLS
/// handshake (with `enroll_dir`'s certificate) and then sends nothing more
/// than `first_bytes`: an idle keep-alive connection, or with a partial
/// request head a slowloris. Killed on drop.
pub struct IdleTls {
    child: Child,
    /// Kept open so s_client does not close the connection itself.
    _stdin: std::process::ChildStdin,
}

impl IdleTls {
    pub fn open(setup: &CollectorSetup, enroll_dir: &Path, first_bytes: &[u8]) -> IdleTls {
        let mut child = Command::new("openssl")
            .args(["s_client", "-quiet", "-connect"])
            .arg(format!("127.0.0.1:{}", setup.port))
            .arg("-CAfile")
            .arg(setup.ca_dir.join("ca.pem"))
            .arg("-cert")
            .arg(enroll_dir.join("client.pem"))
            .arg("-key")
            .arg(enroll_dir.join("client.key"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run openssl s_client (apt: openssl): {e}"));
        let mut stdin = child.stdin.take().expect("s_client stdin");
        if !first_bytes.is_empty() {
            stdin.write_all(first_bytes).expect("write to s_client");
            stdin.flush().expect("flush s_client");
        }
        IdleTls {
            child,
            _stdin: stdin,
        }
    }

    /// Whether the connection is still open (s_client exits when the
    /// server closes it).
    pub fn is_open(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for IdleTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agent of `env` shipping `logs/app.log*` to the collector of `setup`
/// with the enrollment material in `enroll`.
pub fn agent_to(
    env: &crate::TestEnv,
    setup: &CollectorSetup,
    enroll: &Path,
) -> crate::AgentOptions {
    let mut opts =
        crate::AgentOptions::new(env).source("app", &format!("{}/app.log*", env.logs.display()));
    opts.store = setup.url().into();
    opts.extra_args = vec![
        "--enrollment-dir".into(),
        enroll.to_string_lossy().into_owned(),
    ];
    opts
}
