//! Issue 12, D1: clients that are only ever refused (no client
//! certificate, a revoked one) must never hold the ingest connection slots
//! an enrolled agent needs. Real TLS clients (`openssl s_client`, many of
//! them, reconnecting as soon as they are closed) against the real
//! `custody-collector` with `--max-connections 8` send the head of a `PUT`
//! with a 1 GiB `Content-Length` and then nothing, or trickle its body;
//! meanwhile an mTLS client with an enrolled certificate (`curl`) and the
//! real agent must be served.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use custody_tests::collector::agent_to;
use custody_tests::*;

/// The slots of the collector under test.
const SLOTS: usize = 8;
/// More squatters than slots, as an attacker would open.
const SQUATTERS: usize = 12;
/// The acceptance bound of the issue for an enrolled client's request.
const SERVED_WITHIN: Duration = Duration::from_secs(2);
/// How many enrolled requests are timed while the slots are squatted.
const PROBES: usize = 10;

/// The head of a `PUT` whose body never (or only slowly) comes.
const PUT_HEAD: &[u8] = b"PUT /v1/objects/v1/squatter/app/0000000000000000.zst HTTP/1.1\r\n\
Host: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n\
custody-retain-until: 2027-01-01T00:00:00Z\r\nContent-Length: 1073741824\r\n\r\n";

/// What a squatter does after the request head.
#[derive(Clone, Copy, Debug)]
enum Body {
    /// Nothing at all.
    Silent,
    /// 16 bytes every 200 ms: a body that progresses, slowly.
    Trickle,
}

/// `SQUATTERS` threads, each keeping one `openssl s_client` connection to
/// the collector that sends [`PUT_HEAD`] and then `body`; a connection the
/// collector closes is opened again 100 ms later. Stopped (every s_client
/// killed and reaped) on drop.
struct Squatters {
    stop: Arc<AtomicBool>,
    /// Connections opened so far (s_client processes started).
    opened: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Squatters {
    /// `identity`: a `(certificate, key)` to present, or none.
    fn start(
        setup: &CollectorSetup,
        identity: Option<(PathBuf, PathBuf)>,
        body: Body,
    ) -> Squatters {
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        let threads = (0..SQUATTERS)
            .map(|_| {
                let (stop, opened) = (stop.clone(), opened.clone());
                let (port, ca) = (setup.port, setup.ca_dir.join("ca.pem"));
                let identity = identity.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let mut child = s_client(port, &ca, identity.as_ref());
                        opened.fetch_add(1, Ordering::Relaxed);
                        hold(&mut child, body, &stop);
                        let _ = child.kill();
                        let _ = child.wait();
                        std::thread::sleep(Duration::from_millis(100));
                    }
                })
            })
            .collect();
        Squatters {
            stop,
            opened,
            threads,
        }
    }

    fn opened(&self) -> usize {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Squatters {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn s_client(port: u16, ca: &Path, identity: Option<&(PathBuf, PathBuf)>) -> Child {
    let mut c = Command::new("openssl");
    c.args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(ca);
    if let Some((cert, key)) = identity {
        c.arg("-cert").arg(cert).arg("-key").arg(key);
    }
    c.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run openssl s_client (apt: openssl): {e}"))
}

/// Sends the head and then `body` until the collector closes the
/// connection (s_client exits) or the test stops.
fn hold(child: &mut Child, body: Body, stop: &AtomicBool) {
    let Some(mut stdin) = child.stdin.take() else {
        return;
    };
    if stdin
        .write_all(PUT_HEAD)
        .and_then(|()| stdin.flush())
        .is_err()
    {
        return;
    }
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if matches!(body, Body::Trickle) && last.elapsed() >= Duration::from_millis(200) {
            last = Instant::now();
            if stdin
                .write_all(&[b'x'; 16])
                .and_then(|()| stdin.flush())
                .is_err()
            {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request of an enrolled client, timed: `GET /v1/list` of its own
/// namespace with `curl` and its client certificate (at most 20 s).
fn enrolled_request(setup: &CollectorSetup, enroll: &Path, host: &str) -> (u16, Duration, String) {
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--cacert")
        .arg(setup.ca_dir.join("ca.pem"))
        .arg("--cert")
        .arg(enroll.join("client.pem"))
        .arg("--key")
        .arg(enroll.join("client.key"))
        .arg(format!("{}/v1/list?prefix=v1/{host}/", setup.url()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (apt: curl): {e}"));
    let took = started.elapsed();
    let status = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (
        status,
        took,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `SQUATTERS` squatters, waits until they have taken every slot
/// (or, once refused clients are closed first, been closed for trying),
/// then times [`PROBES`] requests of an enrolled client, each of which
/// must be served within [`SERVED_WITHIN`], while the squatters keep
/// reconnecting. Returns the squatters, still running.
fn assert_served_while_squatted(
    setup: &CollectorSetup,
    collector: &mut CollectorProcess,
    identity: Option<(PathBuf, PathBuf)>,
    body: Body,
    enroll: &Path,
    host: &str,
) -> Squatters {
    // An enrolled client's idle keep-alive connection, open before them:
    // refused clients must never close it.
    let mut keepalive = IdleTls::open(setup, enroll, b"");
    wait_for(
        "the enrolled keep-alive connection to hold a slot",
        Duration::from_secs(30),
        || match setup.metric("custody_collector_connections") {
            n if n >= 1.0 && keepalive.is_open() => Ok(()),
            n => Err(format!(
                "{n} connections; s_client open: {}",
                keepalive.is_open()
            )),
        },
    );
    let squatters = Squatters::start(setup, identity, body);
    wait_for(
        "the squatters to take every slot (or be closed for trying)",
        Duration::from_secs(60),
        || {
            collector.check_running()?;
            let open = setup.metric("custody_collector_connections");
            let closed = setup.metric("custody_collector_refused_connections_closed_total");
            if squatters.opened() >= SQUATTERS && (open >= SLOTS as f64 || closed >= SLOTS as f64) {
                Ok(())
            } else {
                Err(format!(
                    "{} s_clients started, {open} connections open, {closed} refused ones closed",
                    squatters.opened()
                ))
            }
        },
    );
    let opened_before = squatters.opened();
    let mut took = Vec::new();
    for probe in 0..PROBES {
        let (status, t, stderr) = enrolled_request(setup, enroll, host);
        assert!(
            status == 200 && t <= SERVED_WITHIN,
            "{body:?} squatters: enrolled request {probe} got {status} after {t:?} (must be 200 within \
             {SERVED_WITHIN:?}); curl: {stderr}; metrics:\n{}",
            setup.metrics().unwrap_or_default()
        );
        took.push(t);
        std::thread::sleep(Duration::from_millis(300));
    }
    let evicted = setup.metric("custody_collector_refused_connections_closed_total");
    assert!(
        evicted >= 1.0,
        "{body:?} squatters never filled the door (no refused connection closed for room)"
    );
    assert!(
        keepalive.is_open(),
        "{body:?} squatters closed an enrolled client's idle connection"
    );
    assert!(
        squatters.opened() > opened_before,
        "the squatters stopped reconnecting during the probes; the test proved nothing"
    );
    eprintln!(
        "{body:?} squatters ({} connections opened): enrolled requests served in {took:?}",
        squatters.opened()
    );
    squatters
}

fn collector_with_slots(env: &TestEnv) -> CollectorSetup {
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    setup.extra = vec!["--max-connections".into(), SLOTS.to_string()];
    setup
}

/// Refusals of the squatters are logged once per address, not once per
/// connection.
fn assert_log_not_flooded(collector: &CollectorProcess, squatters: &Squatters, want: &str) {
    let log = collector.log();
    let lines = log.lines().filter(|l| l.contains("refused client")).count();
    assert!(
        log.contains(want),
        "the log does not say why the squatters are refused ({want:?}):\n{log}"
    );
    assert!(
        (1..=3).contains(&lines) && squatters.opened() > 3 * lines,
        "{lines} 'refused client' lines for {} connections from one address:\n{log}",
        squatters.opened()
    );
}

#[test]
fn clients_without_a_certificate_never_lock_out_an_enrolled_client() {
    let env = TestEnv::new("slots-anon");
    let setup = collector_with_slots(&env);
    let host = "enrolled-a";
    let enroll = setup.enroll(host);
    let mut collector = CollectorProcess::start(&setup);

    let squatters =
        assert_served_while_squatted(&setup, &mut collector, None, Body::Silent, &enroll, host);
    assert!(
        setup.metric("custody_collector_refused_connections_total{reason=\"no_certificate\"}")
            >= SQUATTERS as f64,
        "{:?}",
        setup.metrics()
    );
    assert_log_not_flooded(&collector, &squatters, "client certificate required");

    // The real agent ships while they keep at it.
    let mut writer = LineWriter::new(env.log("app.log"), "slots");
    writer.append(testdata_lines(), 100);
    let mut agent = AgentProcess::start(&agent_to(&env, &setup, &setup.enroll(&env.host_id)));
    let ids = writer.ids().to_vec();
    let started = Instant::now();
    wait_for(
        "the agent's lines in the collector's store while squatted",
        Duration::from_secs(60),
        || {
            agent.check_running()?;
            collector.check_running()?;
            let contents = StoreContents::read(&setup.store, &env.host_id)
                .map_err(|e| format!("store unreadable: {e:#}"))?;
            let found: std::collections::HashSet<String> =
                contents.line_ids().into_iter().collect();
            let missing = ids.iter().filter(|id| !found.contains(*id)).count();
            if missing == 0 {
                Ok(())
            } else {
                Err(format!("{missing} of {} lines missing", ids.len()))
            }
        },
    );
    eprintln!(
        "the agent's {} lines stored {:?} after it started",
        ids.len(),
        started.elapsed()
    );
    drop(squatters);
    agent.stop_clean(Duration::from_secs(60));
    let store = StoreContents::read(&setup.store, &env.host_id).expect("store readable");
    store.assert_clean();
    assert_exactly_once(&ids, &store.line_ids());
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn clients_trickling_a_body_without_a_certificate_never_lock_out_an_enrolled_client() {
    let env = TestEnv::new("slots-trickle");
    let setup = collector_with_slots(&env);
    let host = "enrolled-b";
    let enroll = setup.enroll(host);
    let mut collector = CollectorProcess::start(&setup);
    let squatters =
        assert_served_while_squatted(&setup, &mut collector, None, Body::Trickle, &enroll, host);
    assert_log_not_flooded(&collector, &squatters, "client certificate required");
    drop(squatters);

    // A misconfigured agent without a certificate, uploading more than
    // the refusal reads (curl sends `Expect: 100-continue` for it), still
    // reads why it is refused.
    let scratch = env.subdir("scratch");
    let big = vec![b'x'; 3 << 20];
    let r = Curl::new(&setup, None).put("v1/enrolled-b/keys/big.pub", &big, &scratch);
    assert!(
        r.status == 401 && r.body.contains("client certificate required"),
        "{r:?}"
    );
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn clients_with_a_revoked_certificate_never_lock_out_an_enrolled_client() {
    let env = TestEnv::new("slots-revoked");
    let setup = collector_with_slots(&env);
    let host = "enrolled-c";
    let enroll = setup.enroll(host);
    let stolen = setup.enroll("stolen");
    let out = Command::new(&bins().collector)
        .args(["revoke", "--ca-dir"])
        .arg(&setup.ca_dir)
        .args(["--host-id", "stolen"])
        .output()
        .expect("custody-collector revoke");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut collector = CollectorProcess::start(&setup);
    let identity = Some((stolen.join("client.pem"), stolen.join("client.key")));
    for body in [Body::Silent, Body::Trickle] {
        let squatters = assert_served_while_squatted(
            &setup,
            &mut collector,
            identity.clone(),
            body,
            &enroll,
            host,
        );
        assert_log_not_flooded(&collector, &squatters, "was revoked");
    }
    assert!(
        setup.metric("custody_collector_refused_connections_total{reason=\"revoked\"}")
            >= SQUATTERS as f64,
        "{:?}",
        setup.metrics()
    );
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}

/// An enrolled client whose `PUT` body stops coming holds a slot and its
/// share of `max_inflight_bytes`; with no body byte for `idle_timeout_s`
/// it gets 408 and its connection is closed, nothing stored.
#[test]
fn an_enrolled_client_whose_body_stalls_is_cut_off_after_idle_timeout() {
    let env = TestEnv::new("slots-stall");
    let mut setup = collector_with_slots(&env);
    setup
        .extra
        .extend(["--idle-timeout-s".to_string(), "2".to_string()]);
    let host = "enrolled-d";
    let enroll = setup.enroll(host);
    let mut collector = CollectorProcess::start(&setup);
    let key = custody_evidence::layout::public_key_key(
        &host.parse().expect("host id"),
        "ssh-ed25519 AAAA stalled",
    );
    let head = format!(
        "PUT /v1/objects/{key} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         custody-retain-until: 2027-01-01T00:00:00Z\r\nContent-Length: 1000\r\n\r\nssh-ed25519 "
    );
    let mut stalled = s_client(
        setup.port,
        &setup.ca_dir.join("ca.pem"),
        Some(&(enroll.join("client.pem"), enroll.join("client.key"))),
    );
    let mut stdin = stalled.stdin.take().expect("s_client stdin");
    stdin.write_all(head.as_bytes()).expect("write the head");
    stdin.flush().expect("flush");
    let started = Instant::now();
    wait_for(
        "the stalled upload's connection closed by the collector",
        Duration::from_secs(30),
        || {
            collector.check_running()?;
            match stalled.try_wait() {
                Ok(Some(_)) => Ok(()),
                other => Err(format!("s_client still connected ({other:?})")),
            }
        },
    );
    eprintln!(
        "a stalled body was cut off {:?} after its head",
        started.elapsed()
    );
    assert_eq!(
        setup.metric("custody_collector_refused_total{status=\"408\"}"),
        1.0,
        "{:?}",
        setup.metrics()
    );
    assert!(
        collector.log().contains("no body bytes"),
        "{}",
        collector.log()
    );
    assert!(
        !setup.store.join(&key).exists(),
        "a partial body was stored"
    );
    drop(stdin);
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}
