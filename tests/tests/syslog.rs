//! Syslog from devices through the real `custody-collector serve`, with real
//! clients: util-linux `logger` (UDP, TCP, RFC 5424 and RFC 3164, octet
//! counting and LF framing), rsyslog forwarding over TCP, `openssl
//! s_client` over TLS, and raw sockets for bytes `logger` cannot send (NUL)
//! and for malformed frames. Every store is checked with `custody-verify
//! store`, and every device stream's payloads (decompressed with the stock
//! `zstd`) must hold exactly the messages sent, each once, per the mapping.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use custody_evidence::octets::split_frames;
use custody_evidence::segment::{Framing, SyslogTransport};
use custody_tests::collector::{http_get, metric_value};
use custody_tests::{run_verify, wait_for, StoreContents, TestEnv};

const WAIT: Duration = Duration::from_secs(60);

/// The collector binary, from the harness's one build of the binaries.
fn collector_bin() -> &'static Path {
    &custody_tests::bins().collector
}

/// Ports outside the ephemeral range (`collector::free_port`): a port the
/// kernel handed out with port 0 may be taken again by a client's connect
/// before the collector binds it ("Address already in use" under load).
fn free_tcp_port() -> u16 {
    custody_tests::collector::free_port()
}

fn free_udp_port() -> u16 {
    loop {
        let port = custody_tests::collector::free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A running collector; killed (SIGKILL) on drop if still running.
struct Collector {
    child: Child,
    log: PathBuf,
    udp: u16,
    tcp: u16,
    tls: u16,
    /// `/metrics` and `/healthz`.
    metrics: u16,
}

struct Options<'a> {
    env: &'a TestEnv,
    host: &'a str,
    devices: Option<&'a str>,
    tls: Option<(&'a Path, &'a Path)>,
    extra: Vec<String>,
}

impl<'a> Options<'a> {
    fn new(env: &'a TestEnv) -> Self {
        Options {
            env,
            host: &env.host_id,
            devices: None,
            tls: None,
            extra: Vec::new(),
        }
    }
}

impl Collector {
    fn start(o: &Options) -> Collector {
        Self::start_on(o, free_udp_port(), free_tcp_port(), free_tcp_port())
    }

    fn start_on(o: &Options, udp: u16, tcp: u16, tls: u16) -> Collector {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = o.env.root.join(format!("collector-{n}.log"));
        let metrics = free_tcp_port();
        let mut cmd = Command::new(collector_bin());
        cmd.arg("serve")
            .arg("--store")
            .arg(&o.env.store)
            .arg("--state-dir")
            .arg(&o.env.state)
            .args(["--host-id", o.host])
            .args(["--syslog-udp", &format!("127.0.0.1:{udp}")])
            .args(["--syslog-tcp", &format!("127.0.0.1:{tcp}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
            .args(&o.extra)
            .env("RUST_LOG", "info,custody_collector=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"));
        if let Some(devices) = o.devices {
            let path = o.env.root.join(format!("devices-{n}.toml"));
            std::fs::write(&path, devices).expect("devices file");
            cmd.arg("--devices").arg(path);
        }
        if let Some((cert, key)) = o.tls {
            cmd.args(["--syslog-tls", &format!("127.0.0.1:{tls}")])
                .arg("--syslog-tls-cert")
                .arg(cert)
                .arg("--syslog-tls-key")
                .arg(key);
        }
        let child = cmd.spawn().expect("cannot start custody-collector");
        let mut c = Collector {
            child,
            log,
            udp,
            tcp,
            tls,
            metrics,
        };
        wait_for("the collector to listen", WAIT, || {
            if let Ok(Some(status)) = c.child.try_wait() {
                panic!("collector exited with {status} at start:\n{}", c.log_text());
            }
            let text = c.log_text();
            if text.contains("syslog: listening") {
                Ok(())
            } else {
                Err(text)
            }
        });
        c
    }

    fn log_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("collector exited with {status}:\n{}", self.log_text());
        }
    }

    /// SIGTERM, then wait for the exit (bounded).
    fn sigterm(&mut self) -> ExitStatus {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                start.elapsed() < WAIT,
                "collector did not exit within {WAIT:?} of SIGTERM:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// One message as stored.
#[derive(Debug, Clone)]
struct Stored {
    transport: SyslogTransport,
    peer: String,
    core_system: bool,
    category: String,
    bytes: Vec<u8>,
}

/// Every stored message per device stream, checking on the way that each
/// segment is octet-counted, names its device, and splits into whole frames.
fn stored_messages(store: &Path, host: &str) -> Result<BTreeMap<String, Vec<Stored>>, String> {
    let contents = StoreContents::read(store, host).map_err(|e| format!("{e:#}"))?;
    if !contents.problems.is_empty() {
        return Err(format!("store problems: {:?}", contents.problems));
    }
    let mut out: BTreeMap<String, Vec<Stored>> = BTreeMap::new();
    for (stream, segs) in &contents.streams {
        for seg in segs {
            assert_eq!(seg.meta.framing, Framing::OctetCounted, "{stream}");
            let src = seg
                .meta
                .source
                .as_syslog()
                .unwrap_or_else(|| panic!("stream {stream}: not a syslog source"));
            assert_eq!(&src.device, stream);
            assert!(!seg.meta.split.starts_mid_unit && !seg.meta.split.ends_mid_unit);
            let frames = split_frames(&seg.raw)
                .unwrap_or_else(|e| panic!("stream {stream} seq {}: {e}", seg.meta.seq.0));
            for f in frames {
                out.entry(stream.clone()).or_default().push(Stored {
                    transport: src.transport,
                    peer: src.peer.clone(),
                    core_system: src.core_system,
                    category: seg.meta.category.to_string(),
                    bytes: f.to_vec(),
                });
            }
        }
    }
    Ok(out)
}

fn count_of(msgs: &BTreeMap<String, Vec<Stored>>) -> usize {
    msgs.values().map(Vec::len).sum()
}

/// Waits until the store holds at least `n` messages for `host`.
fn wait_messages(
    c: &mut Collector,
    store: &Path,
    host: &str,
    n: usize,
) -> BTreeMap<String, Vec<Stored>> {
    wait_for(&format!("{n} syslog messages in the store"), WAIT, || {
        c.assert_alive();
        let msgs = stored_messages(store, host)?;
        if count_of(&msgs) >= n {
            Ok(msgs)
        } else {
            Err(format!("{} messages: {:?}", count_of(&msgs), msgs.keys()))
        }
    })
}

/// Runs `logger` with `--stderr`, which prints the exact message it sends
/// (with `--octet-count`, the frame: `LEN SP MSG`); returns the messages
/// (one per line of output, without the LF and the octet count).
fn logger(args: &[&str], stdin: Option<&[u8]>) -> Vec<Vec<u8>> {
    let mut cmd = Command::new("logger");
    cmd.arg("--stderr").args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("logger (util-linux) must be installed: .ci/run installs it");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().expect("logger");
    assert!(
        out.status.success(),
        "logger {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let octets = args.contains(&"--octet-count");
    out.stderr
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            if !octets {
                return l.to_vec();
            }
            let frames = split_frames(l).unwrap_or_else(|e| panic!("logger printed {l:?}: {e}"));
            assert_eq!(frames.len(), 1);
            frames[0].to_vec()
        })
        .collect()
}

fn assert_verifies(store: &Path) {
    let v = run_verify(store, &[]);
    v.assert_clean();
}

fn bytes_of(msgs: &[Stored]) -> Vec<Vec<u8>> {
    msgs.iter().map(|m| m.bytes.clone()).collect()
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// `logger` over UDP and TCP in both RFC formats and both TCP framings,
/// plus raw clients from other loopback addresses: each message stored once,
/// byte for byte, in the stream of the device the mapping names.
#[test]
fn logger_udp_tcp_both_formats_mapped_to_devices() {
    let env = TestEnv::new("sl-logger");
    let devices = r#"
[[device]]
name = "relayed-fw"
category = "os"
core_system = true
addresses = ["127.0.0.0/8"]
hostnames = ["fw-relayed"]

[[device]]
name = "lo-logger"
category = "logon"
addresses = ["127.0.0.1"]
"#;
    let mut o = Options::new(&env);
    o.devices = Some(devices);
    let mut c = Collector::start(&o);
    let udp = c.udp.to_string();
    let tcp = c.tcp.to_string();
    let base = ["--server", "127.0.0.1", "--tag", "custody-test"];
    let mut sent_lo: Vec<(SyslogTransport, Vec<u8>)> = Vec::new();
    for (port, transport, extra) in [
        (&udp, SyslogTransport::Udp, &["--udp", "--rfc5424"][..]),
        (&udp, SyslogTransport::Udp, &["--udp", "--rfc3164"][..]),
        (&tcp, SyslogTransport::Tcp, &["--tcp", "--rfc5424"][..]),
        (&tcp, SyslogTransport::Tcp, &["--tcp", "--rfc3164"][..]),
        (
            &tcp,
            SyslogTransport::Tcp,
            &["--tcp", "--rfc5424", "--octet-count"][..],
        ),
        (
            &tcp,
            SyslogTransport::Tcp,
            &["--tcp", "--rfc3164", "--octet-count"][..],
        ),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(["--port", port]);
        args.extend(extra);
        let label = format!("{extra:?}");
        // Two lines on stdin become two messages; one is not UTF-8.
        let input = format!("first {label}\ncaf\u{e9} second {label} ").into_bytes();
        let mut input = input;
        input.extend_from_slice(b"\xff\xfe\x01 not utf-8\n");
        for m in logger(&args, Some(&input)) {
            sent_lo.push((transport, m));
        }
        args.push(&label);
        for m in logger(&args, None) {
            sent_lo.push((transport, m));
        }
    }
    assert_eq!(sent_lo.len(), 18);

    // Raw clients: a relay at 127.0.0.2 forwarding for "fw-relayed" (mapped
    // by hostname), and an unmapped sender at 127.0.0.3.
    let relayed: Vec<Vec<u8>> = vec![
        b"<34>1 2026-11-30T08:00:00Z fw-relayed fw - - - deny \x00 nul and \xff byte".to_vec(),
        b"<34>Nov 30 08:00:01 fw-relayed fw: line\nwith an LF inside".to_vec(),
    ];
    let relay = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    relay
        .send_to(&relayed[0], ("127.0.0.1", c.udp))
        .expect("send");
    // An empty connection holds no message and must not disturb anything.
    drop(TcpStream::connect(("127.0.0.1", c.tcp)).unwrap());
    relay
        .send_to(&relayed[1], ("127.0.0.1", c.udp))
        .expect("send");
    let unknown = UdpSocket::bind("127.0.0.3:0").expect("bind 127.0.0.3");
    let unknown_msg = b"<13>1 - - - - - - from an unmapped sender".to_vec();
    unknown
        .send_to(&unknown_msg, ("127.0.0.1", c.udp))
        .expect("send");
    // And octet-counted TCP with NUL, CR, LF and invalid UTF-8 from 127.0.0.1.
    let binary = b"<13>1 - fw-relayed x - - - \x00\r\n\xc3\x28 end".to_vec();
    let mut t = TcpStream::connect(("127.0.0.1", c.tcp)).unwrap();
    t.write_all(format!("{} ", binary.len()).as_bytes())
        .unwrap();
    t.write_all(&binary).unwrap();
    drop(t);

    let total = sent_lo.len() + relayed.len() + 2;
    wait_messages(&mut c, &env.store, &env.host_id, total);

    // /metrics counts what the loggers sent, per device, and the queue
    // is empty once everything is stored.
    let lo_bytes: usize = sent_lo.iter().map(|(_, b)| b.len()).sum();
    let fw_bytes: usize = relayed.iter().map(Vec::len).sum::<usize>() + binary.len();
    // Segments hold the messages octet-counted: "LEN SP MSG".
    let framed = |b: &[u8]| b.len() + b.len().to_string().len() + 1;
    let fw_framed: usize = relayed.iter().map(|b| framed(b)).sum::<usize>() + framed(&binary);
    let all_bytes = lo_bytes + fw_bytes + unknown_msg.len();
    let want: Vec<(String, f64)> =
        vec![
        ("custody_collector_syslog_messages_total".into(), total as f64),
        ("custody_collector_syslog_bytes_total".into(), all_bytes as f64),
        (
            "custody_collector_syslog_device_received_messages_total{device=\"lo-logger\"}".into(),
            sent_lo.len() as f64,
        ),
        (
            "custody_collector_syslog_device_received_bytes_total{device=\"lo-logger\"}".into(),
            lo_bytes as f64,
        ),
        (
            "custody_collector_syslog_device_stored_messages_total{device=\"relayed-fw\"}".into(),
            3.0,
        ),
        (
            "custody_collector_syslog_device_stored_bytes_total{device=\"relayed-fw\"}".into(),
            fw_framed as f64,
        ),
        (
            "custody_collector_syslog_device_stored_messages_total{device=\"unknown-127.0.0.3\"}"
                .into(),
            1.0,
        ),
        ("custody_collector_syslog_queue_bytes".into(), 0.0),
    ];
    wait_for("/metrics to count every message sent", WAIT, || {
        let text = http_get(c.metrics, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        let wrong: Vec<String> = want
            .iter()
            .filter(|(series, v)| metric_value(c.metrics, series) != *v)
            .map(|(series, v)| format!("{series} != {v}"))
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("{wrong:?} in\n{text}"))
        }
    });
    assert!(
        metric_value(c.metrics, "custody_collector_syslog_queue_max_bytes") > 0.0,
        "the queue's budget is shown"
    );
    assert!(
        metric_value(c.metrics, "custody_collector_syslog_connections_total") >= 5.0,
        "TCP connections counted"
    );
    assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
    let msgs = stored_messages(&env.store, &env.host_id).unwrap();
    assert_eq!(count_of(&msgs), total, "{:?}", msgs.keys());

    let lo = &msgs["lo-logger"];
    assert!(lo
        .iter()
        .all(|m| m.category == "logon" && !m.core_system && m.peer == "127.0.0.1"));
    assert_eq!(
        sorted(bytes_of(lo)),
        sorted(sent_lo.iter().map(|(_, b)| b.clone()).collect())
    );
    for (transport, bytes) in &sent_lo {
        let found = lo.iter().find(|m| &m.bytes == bytes).unwrap();
        assert_eq!(
            found.transport,
            *transport,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let fw = &msgs["relayed-fw"];
    assert!(fw.iter().all(|m| m.category == "os" && m.core_system));
    let mut want = relayed.clone();
    want.push(binary);
    assert_eq!(sorted(bytes_of(fw)), sorted(want));
    assert_eq!(bytes_of(&msgs["unknown-127.0.0.3"]), vec![unknown_msg]);
    assert_eq!(msgs.len(), 3, "{:?}", msgs.keys());
    assert_verifies(&env.store);
}

/// A restart continues every device's chain (from the checkpoint after a
/// clean stop, from the store after kill -9), so the store still verifies.
#[test]
fn restart_continues_chains() {
    let env = TestEnv::new("sl-restart");
    let o = Options::new(&env);
    let mut all = Vec::new();
    for round in 0..3 {
        let mut c = Collector::start(&o);
        let port = c.tcp.to_string();
        for i in 0..3 {
            let msg = format!("round {round} message {i}");
            all.extend(logger(
                &[
                    "--server",
                    "127.0.0.1",
                    "--port",
                    &port,
                    "--tcp",
                    "--octet-count",
                    "--rfc5424",
                    &msg,
                ],
                None,
            ));
        }
        wait_messages(&mut c, &env.store, &env.host_id, all.len());
        if round == 2 {
            let log = c.log_text();
            assert!(
                log.contains("syslog chain state rolled forward over a stored segment"),
                "the start after kill -9 did not roll the chain forward from the store:\n{log}"
            );
        }
        if round == 1 {
            // Segments stored, no digest yet: the next start must roll the
            // chain forward from the store, not fork it.
            c.kill9();
        } else {
            assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
        }
    }
    let msgs = stored_messages(&env.store, &env.host_id).unwrap();
    assert_eq!(sorted(bytes_of(&msgs["unknown-127.0.0.1"])), sorted(all));
    let contents = StoreContents::read(&env.store, &env.host_id).unwrap();
    assert!(contents.streams["unknown-127.0.0.1"].len() >= 3);
    // Checked against the collector's key from its state directory (as an
    // auditor would, from an independent record), not the published one:
    // one key over all restarts, every restart visible as information.
    let public = std::fs::read_to_string(env.state.join("host_key.pub")).unwrap();
    let signers = env.root.join("allowed_signers");
    std::fs::write(
        &signers,
        format!(
            "{} namespaces=\"custody-digest\" {}",
            env.host_id,
            public.trim_end()
        ),
    )
    .unwrap();
    let v = run_verify(
        &env.store,
        &["--allowed-signers", signers.to_str().unwrap()],
    );
    v.assert_clean();
    let kinds: Vec<String> = v
        .findings()
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "agent_restart").count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.iter().all(|k| k == "agent_restart"),
        "unexpected findings: {}",
        v.stdout
    );
}

/// Malformed frames close only their own connection, with the reason in
/// the log; messages before the bad frame are kept; others keep working.
#[test]
fn malformed_frames_close_the_connection_and_the_collector_keeps_serving() {
    let env = TestEnv::new("sl-malformed");
    let mut o = Options::new(&env);
    o.extra = vec![
        "--config".into(),
        env.root.join("c.toml").display().to_string(),
    ];
    std::fs::write(
        env.root.join("c.toml"),
        "[syslog]\nmax_message_tcp = 1000\nmax_message_udp = 500\n",
    )
    .unwrap();
    let mut c = Collector::start(&o);
    let good_conn = TcpStream::connect(("127.0.0.1", c.tcp)).unwrap();
    let mut kept = vec![b"<13>1 - h a - - - before the garbage".to_vec()];
    let cases: [(&[u8], &str); 4] = [
        (b"\x16\x03\x01\x00\xa5garbage", "neither an octet count"),
        (b"0012 <13>x", "leading zero"),
        (b"2000 <13>", "more than the maximum message size of 1000"),
        (b"12x<13>", "not followed by a space"),
    ];
    for (i, (bad, why)) in cases.iter().enumerate() {
        let mut s = TcpStream::connect(("127.0.0.1", c.tcp)).unwrap();
        if i == 0 {
            s.write_all(format!("{} ", kept[0].len()).as_bytes())
                .unwrap();
            s.write_all(&kept[0]).unwrap();
        }
        s.write_all(bad).unwrap();
        // The collector closes the connection: reading sees EOF or a reset.
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        wait_for(&format!("the log to say {why:?}"), WAIT, || {
            let t = c.log_text();
            if t.contains(why) {
                Ok(())
            } else {
                Err(t)
            }
        });
    }
    let line = b"<13>Nov 30 08:00:00 h a: a long line without its end".repeat(30);
    let mut s = TcpStream::connect(("127.0.0.1", c.tcp)).unwrap();
    s.write_all(&line).unwrap();
    let mut buf = [0u8; 16];
    s.set_read_timeout(Some(WAIT)).unwrap();
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    // Oversize UDP datagrams are dropped and counted, never cut.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.send_to(&[b'x'; 600], ("127.0.0.1", c.udp)).unwrap();
    wait_for("the oversize datagram to be logged", WAIT, || {
        let t = c.log_text();
        if t.contains("larger than max_message_udp") {
            Ok(())
        } else {
            Err(t)
        }
    });
    // The connection opened before all this still works, and so do new ones.
    let after = b"<13>1 - h a - - - after the garbage".to_vec();
    let mut g = good_conn;
    g.write_all(&after).unwrap();
    g.write_all(b"\n").unwrap();
    drop(g);
    kept.push(after);
    kept.extend(logger(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &c.tcp.to_string(),
            "--tcp",
            "--rfc3164",
            "still serving",
        ],
        None,
    ));
    wait_messages(&mut c, &env.store, &env.host_id, kept.len());
    // Every refusal counted in /metrics by its reason.
    for reason in [
        "frame_garbage",
        "frame_leading_zero",
        "frame_too_large",
        "frame_no_space",
        "frame_line_too_long",
        "udp_oversize",
    ] {
        let series = format!("custody_collector_syslog_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(
            metric_value(c.metrics, &series),
            1.0,
            "{series}:\n{:?}",
            http_get(c.metrics, "/metrics")
        );
    }
    assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
    let msgs = stored_messages(&env.store, &env.host_id).unwrap();
    assert_eq!(sorted(bytes_of(&msgs["unknown-127.0.0.1"])), sorted(kept));
    let log = c.log_text();
    assert!(log.contains("malformed frame after 1 message(s)"), "{log}");
    assert!(
        log.contains("line of more than 1000 bytes without LF"),
        "{log}"
    );
    assert_verifies(&env.store);
}

fn make_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl must be installed: .ci/run installs it");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// RFC 5425: octet-counted frames over TLS from `openssl s_client`; garbage
/// on the TLS port fails the handshake, is logged, and changes nothing else.
#[test]
fn tls_with_openssl_client_and_garbage_refused() {
    let env = TestEnv::new("sl-tls");
    let (cert, key) = make_cert(&env.root);
    let mut o = Options::new(&env);
    o.tls = Some((&cert, &key));
    let mut c = Collector::start(&o);
    // Plain syslog to the TLS port: the handshake fails, the reason is logged.
    let mut plain = TcpStream::connect(("127.0.0.1", c.tls)).unwrap();
    plain.write_all(b"<13>1 - h a - - - not tls\n").unwrap();
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    let _ = plain.read(&mut buf);
    wait_for("the failed handshake in the log", WAIT, || {
        let t = c.log_text();
        if t.contains("TLS handshake failed") {
            Ok(())
        } else {
            Err(t)
        }
    });
    let msgs: Vec<Vec<u8>> = vec![
        b"<165>1 2026-11-30T08:00:00.000Z fw01 ips - ID1 [x@1 a=\"b\"] alert \x00\xff".to_vec(),
        b"<13>Nov 30 08:00:00 fw01 ips: second\nline".to_vec(),
    ];
    let mut input = Vec::new();
    for m in &msgs {
        custody_evidence::octets::append_frame(&mut input, m);
    }
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{}", c.tls),
            "-quiet",
            "-no_ign_eof",
            "-servername",
            "localhost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    client.stdin.take().unwrap().write_all(&input).unwrap();
    let out = client.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = wait_messages(&mut c, &env.store, &env.host_id, msgs.len());
    assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
    let stored = &got["unknown-127.0.0.1"];
    assert!(stored.iter().all(|m| m.transport == SyslogTransport::Tls));
    assert_eq!(bytes_of(stored), msgs);
    assert_verifies(&env.store);
}

/// rsyslog as a relay: it receives from `logger` over UDP and forwards
/// over TCP with octet counting and with LF framing (two actions).
#[test]
fn rsyslog_forwarding_over_tcp() {
    if Command::new("rsyslogd").arg("-v").output().is_err() {
        panic!("rsyslogd is not installed: .ci/run installs the rsyslog package");
    }
    let env = TestEnv::new("sl-rsyslog");
    let devices = r#"
[[device]]
name = "relay"
category = "os"
core_system = true
addresses = ["127.0.0.1"]
"#;
    let mut o = Options::new(&env);
    o.devices = Some(devices);
    let mut c = Collector::start(&o);
    let work = env.subdir("rsyslog");
    let in_port = free_udp_port();
    let conf = work.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{in_port}")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" TCP_Framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format")
action(type="omfwd" target="127.0.0.1" port="{tcp}" protocol="tcp" template="RSYSLOG_ForwardFormat")
"#,
            work = work.display(),
            tcp = c.tcp
        ),
    )
    .unwrap();
    let pid = work.join("rsyslogd.pid");
    let mut rsyslog = Command::new("rsyslogd")
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(&pid)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.join("rsyslogd.log")).unwrap())
        .spawn()
        .expect("rsyslogd");
    // rsyslog has no readiness signal; resend until the first marker arrives.
    let port = in_port.to_string();
    wait_for("rsyslog to forward a first message", WAIT, || {
        logger(
            &[
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--udp",
                "--rfc3164",
                "custody-probe",
            ],
            None,
        );
        let m = stored_messages(&env.store, &env.host_id)?;
        if m.values()
            .flatten()
            .any(|s| s.bytes.windows(13).any(|w| w == b"custody-probe"))
        {
            Ok(())
        } else {
            Err(format!("{} messages", count_of(&m)))
        }
    });
    let markers: Vec<String> = (0..20)
        .map(|i| format!("custody-rsyslog-{i:03}-end"))
        .collect();
    for m in &markers {
        logger(
            &[
                "--server",
                "127.0.0.1",
                "--port",
                &port,
                "--udp",
                "--rfc5424",
                m,
            ],
            None,
        );
    }
    let count = |msgs: &BTreeMap<String, Vec<Stored>>, marker: &str| {
        msgs.values()
            .flatten()
            .filter(|s| {
                s.bytes
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes())
            })
            .count()
    };
    let msgs = wait_for("every marker twice (two forwarding actions)", WAIT, || {
        c.assert_alive();
        let m = stored_messages(&env.store, &env.host_id)?;
        let missing: Vec<&String> = markers.iter().filter(|k| count(&m, k) < 2).collect();
        if missing.is_empty() {
            Ok(m)
        } else {
            Err(format!("missing {missing:?}"))
        }
    });
    let _ = Command::new("kill")
        .args(["-TERM", &rsyslog.id().to_string()])
        .status();
    let _ = rsyslog.wait();
    assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
    for m in &markers {
        assert_eq!(count(&msgs, m), 2, "{m}");
    }
    let relay = &msgs["relay"];
    assert!(relay
        .iter()
        .all(|m| m.transport == SyslogTransport::Tcp && m.core_system));
    // One action forwards RFC 5424 with octet counting (its template ends
    // in LF, which is then part of the message and kept), the other the
    // traditional format with LF framing (the LF is the trailer, not kept).
    let (v1, bsd): (Vec<&Stored>, Vec<&Stored>) =
        relay.iter().partition(|m| m.bytes.starts_with(b"<13>1 "));
    assert!(v1.len() >= markers.len() && bsd.len() >= markers.len());
    assert!(v1.iter().all(|m| m.bytes.ends_with(b"\n")));
    assert!(bsd
        .iter()
        .all(|m| m.bytes.starts_with(b"<13>") && !m.bytes.ends_with(b"\n")));
    assert_verifies(&env.store);
}

/// `--unknown-senders refuse`: only mapped senders are kept; a refused TCP
/// sender's connection is closed at once, and each refusal is logged.
#[test]
fn unknown_senders_refused() {
    let env = TestEnv::new("sl-refuse");
    let mut o = Options::new(&env);
    o.devices =
        Some("[[device]]\nname = \"sw01\"\ncategory = \"os\"\naddresses = [\"127.0.0.2\"]\n");
    o.extra = vec!["--unknown-senders".into(), "refuse".into()];
    let mut c = Collector::start(&o);
    let port = c.udp.to_string();
    logger(
        &[
            "--server",
            "127.0.0.1",
            "--port",
            &port,
            "--udp",
            "--rfc5424",
            "from an unmapped sender",
        ],
        None,
    );
    let mut s = TcpStream::connect(("127.0.0.1", c.tcp)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let _ = s.write_all(b"<13>1 - - - - - - refused over tcp\n");
    let mut buf = [0u8; 8];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    let mapped = b"<13>1 - sw01 - - - - kept".to_vec();
    let sock = UdpSocket::bind("127.0.0.2:0").unwrap();
    sock.send_to(&mapped, ("127.0.0.1", c.udp)).unwrap();
    wait_messages(&mut c, &env.store, &env.host_id, 1);
    wait_for("both refusals in the log", WAIT, || {
        let t = c.log_text();
        if t.contains("refused a syslog message") && t.contains("connection refused") {
            Ok(())
        } else {
            Err(t)
        }
    });
    assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
    let msgs = stored_messages(&env.store, &env.host_id).unwrap();
    assert_eq!(msgs.len(), 1, "{:?}", msgs.keys());
    assert_eq!(bytes_of(&msgs["sw01"]), vec![mapped]);
    assert_verifies(&env.store);
}

/// Bad settings stop the collector before it listens, naming the flag or key.
#[test]
fn bad_settings_are_refused_naming_the_flag() {
    let env = TestEnv::new("sl-flags");
    let devices = env.root.join("bad-devices.toml");
    std::fs::write(
        &devices,
        "[[device]]\nname = \"fw01\"\ncategory = \"firewall\"\naddresses = [\"10.0.0.1\"]\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--syslog-tls".into(), "127.0.0.1:0".into()],
            "--syslog-tls-cert",
        ),
        (vec![], "nothing to listen on"),
        (vec!["--syslog-udp".into(), "514".into()], "syslog.udp"),
        (
            vec![
                "--syslog-udp".into(),
                "127.0.0.1:0".into(),
                "--devices".into(),
                devices.display().to_string(),
            ],
            "must be one of os, web, app, logon",
        ),
        (
            vec![
                "--syslog-udp".into(),
                "127.0.0.1:0".into(),
                "--unknown-senders".into(),
                "drop".into(),
            ],
            "use \"accept\" or \"refuse\"",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(collector_bin())
            .arg("serve")
            .arg("--store")
            .arg(&env.store)
            .arg("--state-dir")
            .arg(&env.state)
            .args(["--host-id", &env.host_id])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{args:?}: expected {want:?} in:\n{stderr}"
        );
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends octet-counted frames with `openssl s_client`; the extra arguments
/// choose the client certificate. Returns whether s_client succeeded.
fn s_client(port: u16, msgs: &[Vec<u8>], extra: &[&str], dir: &Path) -> bool {
    let mut input = Vec::new();
    for m in msgs {
        custody_evidence::octets::append_frame(&mut input, m);
    }
    let mut client = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-quiet",
            "-no_ign_eof",
        ])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_client");
    client.stdin.take().unwrap().write_all(&input).unwrap();
    client.wait().unwrap().success()
}

/// With `--syslog-tls-client-ca`, a client without a certificate from that
/// CA fails the handshake (logged, nothing stored); one with it is kept.
#[test]
fn tls_client_certificates_required_with_a_client_ca() {
    let env = TestEnv::new("sl-mtls");
    let (cert, key) = make_cert(&env.root);
    let d = env.root.as_path();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-days",
        "2",
        "-subj",
        "/CN=custody test device CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(d, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-subj",
        "/CN=fw01",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
    ]);
    openssl(d, &csr);
    std::fs::write(d.join("ext.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "client.pem",
        ],
    );
    let mut o = Options::new(&env);
    o.tls = Some((&cert, &key));
    o.extra = vec![
        "--syslog-tls-client-ca".into(),
        d.join("ca.pem").display().to_string(),
    ];
    let mut c = Collector::start(&o);
    let refused = vec![b"<13>1 - fw01 a - - - no certificate".to_vec()];
    let _ = s_client(c.tls, &refused, &[], d);
    // A certificate the CA did not issue (the server's own self-signed one).
    let _ = s_client(
        c.tls,
        &refused,
        &["-cert", "cert.pem", "-key", "key.pem"],
        d,
    );
    wait_for("two failed handshakes in the log", WAIT, || {
        let t = c.log_text();
        if t.matches("TLS handshake failed").count() >= 2 {
            Ok(())
        } else {
            Err(t)
        }
    });
    let kept = vec![b"<13>1 - fw01 a - - - with a certificate".to_vec()];
    assert!(s_client(
        c.tls,
        &kept,
        &["-cert", "client.pem", "-key", "client.key"],
        d
    ));
    let got = wait_messages(&mut c, &env.store, &env.host_id, 1);
    assert_eq!(c.sigterm().code(), Some(0), "{}", c.log_text());
    assert_eq!(bytes_of(&got["unknown-127.0.0.1"]), kept);
    assert_eq!(
        count_of(&stored_messages(&env.store, &env.host_id).unwrap()),
        1
    );
    assert_verifies(&env.store);
}
