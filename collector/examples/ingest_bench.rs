//! Collector ingest benchmark: figures, not a test.
//!
//! Drives the real `custody-collector serve` (the release binary next to
//! this example) over mutually authenticated HTTPS with real client
//! certificates, from many simulated agents, into a fresh filesystem store:
//!
//! 1. `ca init`, `enroll` one client certificate per simulated host, `serve`
//!    on free ports with a fresh store and state directory;
//! 2. builds every segment beforehand (real zstd payloads of log lines,
//!    records chained by `prev_segment`), so the timed phase is only upload;
//! 3. uploads payload then record of every segment with the agent's own
//!    client (`custody_store::CollectorStore`), one task per stream, the
//!    segments of a stream in order, at most `--concurrency` segments in
//!    flight in all and `--per-host` per host (more idle keep-alive
//!    connections than the collector's `--max-connections` stall connects);
//! 4. prints wall time, segments/s, MB/s of raw log, the collector's CPU
//!    seconds (/proc/PID/stat) and peak RSS (VmHWM), and the proof that
//!    nothing was lost: every object sent is in the store directory with the
//!    same SHA-256, nothing else is, `custody-verify store` agrees, and the
//!    collector's findings.jsonl is empty.
//!
//! ```text
//! cargo build --release -p custody-collector -p custody-evidence --example ingest_bench
//! target/release/examples/ingest_bench            # 50 hosts x 20 streams x 5 segments
//! target/release/examples/ingest_bench --help
//! ```
//!
//! No digests are shipped (the collector does not need the hosts' keys for
//! segments), so `custody-verify store` reports every stream's last
//! segments as `segment_pending_digest` warnings: expected, and counted
//! separately from errors.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Parser;
use custody_evidence::layout;
use custody_evidence::segment::{
    compress_payload, ByteRange, Framing, SegmentMeta, SourceFile, Split, SEGMENT_FORMAT_V1,
};
use custody_evidence::timefmt::now_utc_micros;
use custody_evidence::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use custody_store::{CollectorSettings, CollectorStore, ObjectStore, PutOptions, PutOutcome};

#[derive(Parser, Debug)]
#[command(
    about = "Collector ingest benchmark: simulated agents against the real custody-collector"
)]
struct Args {
    /// Simulated hosts (one client certificate each).
    #[arg(long, default_value_t = 50)]
    hosts: usize,
    /// Streams per host.
    #[arg(long, default_value_t = 20)]
    streams: usize,
    /// Segments per stream.
    #[arg(long, default_value_t = 5)]
    segments: u64,
    /// Raw log bytes per segment (whole lines, at least this many).
    #[arg(long, default_value_t = 32 * 1024)]
    segment_bytes: usize,
    /// Segments in flight at once in all (each is a payload PUT then a record PUT).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Segments in flight at once per host (an agent ships over one or two
    /// connections; the collector takes one host's uploads one at a time).
    #[arg(long, default_value_t = 2)]
    per_host: usize,
    /// zstd level of the payloads (the agent's default is 3).
    #[arg(long, default_value_t = 3)]
    zstd_level: i32,
    /// Log files whose lines make the raw content (*.log in this directory).
    #[arg(long, default_value = "/work/shared/testdata/linux")]
    corpus: PathBuf,
    /// Where the CA, enrollments, store and state go [default: a new temp dir, removed unless --keep].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Directory holding custody-collector and custody-verify [default: this example's ../].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// One segment ready to upload.
struct Seg {
    payload_key: String,
    payload: Vec<u8>,
    record_key: String,
    record: Vec<u8>,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run_ok(bin: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    ensure!(
        out.status.success(),
        "{} {args:?}: {}: {}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `GET path` over plain HTTP: the status line, or None if nothing answers.
fn http_status(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.lines().next().map(str::to_owned)
}

/// One unlabelled series from `GET /metrics`, 0 if absent.
fn metric(port: u16, name: &str) -> u64 {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid` in clock ticks.
fn cpu_ticks(pid: &str) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("/proc stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Ok(f[11].parse::<u64>()? + f[12].parse::<u64>()?)
}

/// A `/proc/PID/status` field in kB.
fn status_kb(pid: &str, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .with_context(|| format!("{field} in /proc/{pid}/status"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The corpus lines (newline included); generated lines if there is none.
fn corpus_lines(dir: &Path) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut files: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        files.sort();
        for f in files {
            if let Ok(bytes) = std::fs::read(&f) {
                lines.extend(
                    bytes
                        .split_inclusive(|b| *b == b'\n')
                        .map(<[u8]>::to_vec)
                        .filter(|l| l.len() > 1),
                );
            }
        }
    }
    if lines.is_empty() {
        for i in 0..8000u64 {
            lines.push(
                format!(
                    "Jun {:2} {:02}:{:02}:{:02} web{:02} sshd[{}]: Accepted publickey for user{} from 10.0.{}.{} port {} ssh2\n",
                    1 + i % 28, i % 24, i % 60, (i * 7) % 60, i % 50, 1000 + i, i % 97,
                    i % 256, (i * 13) % 256, 30000 + i % 30000
                )
                .into_bytes(),
            );
        }
    }
    lines
}

/// All segments of one stream, chained.
fn build_stream(
    args: &Args,
    lines: &[Vec<u8>],
    host: &HostId,
    stream: &StreamId,
    salt: usize,
) -> Result<(Vec<Seg>, u64)> {
    let agent = InstanceId::random();
    let mut prev: Option<Sha256> = None;
    let mut offset = 0u64;
    let mut raw_total = 0u64;
    let mut out = Vec::new();
    let mut line = salt.wrapping_mul(7919) % lines.len();
    for seq in 0..args.segments {
        let mut raw = Vec::with_capacity(args.segment_bytes + 512);
        while raw.len() < args.segment_bytes {
            raw.extend_from_slice(&lines[line]);
            line = (line + 1) % lines.len();
        }
        let payload = compress_payload(&raw, args.zstd_level)?;
        let object = Sha256::digest(&payload);
        let now = now_utc_micros();
        let meta = SegmentMeta {
            format: SEGMENT_FORMAT_V1.into(),
            host_id: host.clone(),
            stream_id: stream.clone(),
            category: Category::App,
            seq: SegmentSeq(seq),
            agent_instance: agent.clone(),
            framing: Framing::Lines,
            source: SourceFile {
                path: format!("/var/log/{}.log", stream.as_str()),
                device: 1,
                inode: 2 + salt as u64,
                fingerprint: Sha256::digest(&raw[..raw.len().min(64)]),
                fingerprint_len: raw.len().min(64) as u32,
            }
            .into(),
            range: ByteRange {
                start: offset,
                end: offset + raw.len() as u64,
            },
            split: Split::default(),
            first_read: now,
            last_read: now,
            raw_len: raw.len() as u64,
            raw_sha256: Sha256::digest(&raw),
            object_len: payload.len() as u64,
            object_sha256: object,
            prev_segment: prev,
            retain_until: now + time::Duration::days(200),
        };
        let record = meta.encode();
        prev = Some(SegmentMeta::chain_hash(&record));
        offset += raw.len() as u64;
        raw_total += raw.len() as u64;
        out.push(Seg {
            payload_key: layout::segment_payload_key(host, stream, SegmentSeq(seq), &object),
            payload,
            record_key: layout::segment_meta_key(host, stream, SegmentSeq(seq), &object),
            record,
        });
    }
    Ok((out, raw_total))
}

#[derive(Default)]
struct Counts {
    created: AtomicU64,
    already: AtomicU64,
    retries: AtomicU64,
    failed: AtomicU64,
    bytes_sent: AtomicU64,
}

/// PUT with the shipper's answer to transient errors: retry (here after a
/// short pause, up to 100 times).
async fn put(store: &CollectorStore, key: &str, body: &[u8], counts: &Counts) -> bool {
    let opts = PutOptions {
        retain_until: time::OffsetDateTime::now_utc() + time::Duration::days(200),
    };
    for attempt in 0..100u64 {
        match store.put(key, body, opts).await {
            Ok(PutOutcome::Created) => {
                counts.created.fetch_add(1, Ordering::Relaxed);
                counts
                    .bytes_sent
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
                return true;
            }
            Ok(PutOutcome::AlreadyPresent) => {
                counts.already.fetch_add(1, Ordering::Relaxed);
                return true;
            }
            Err(e) if e.is_transient() => {
                if counts.retries.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("PUT {key}: transient, retrying: {e}");
                }
                tokio::time::sleep(Duration::from_millis(20 * (attempt + 1).min(25))).await;
            }
            Err(e) => {
                eprintln!("PUT {key}: {e}");
                break;
            }
        }
    }
    counts.failed.fetch_add(1, Ordering::Relaxed);
    false
}

/// Every file under the store root that is an object (not `.retention`,
/// `.holds`, the marker or a temp file), by key.
fn store_objects(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = e.path();
            if e.file_type()?.is_dir() {
                todo.push(path);
            } else {
                let key = path
                    .strip_prefix(root)?
                    .to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/");
                out.insert(key, path);
            }
        }
    }
    Ok(out)
}

struct Collector {
    child: Child,
    pid: String,
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.hosts > 0
            && args.streams > 0
            && args.segments > 0
            && args.concurrency > 0
            && args.per_host > 0,
        "--hosts, --streams, --segments, --concurrency and --per-host must be positive"
    );
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(Path::parent)
            .context("the example's directory")?
            .to_path_buf(),
    };
    let collector_bin = bin_dir.join("custody-collector");
    let verify_bin = bin_dir.join("custody-verify");
    for b in [&collector_bin, &verify_bin] {
        ensure!(
            b.is_file(),
            "{} not found: cargo build --release -p custody-collector -p custody-evidence",
            b.display()
        );
    }
    let mut temp = None;
    let root = match &args.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            ensure!(
                std::fs::read_dir(d)?.next().is_none(),
                "{} is not empty",
                d.display()
            );
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("custody-ingest-bench-")
                .tempdir()?;
            let p = t.path().to_path_buf();
            temp = Some(t);
            p
        }
    };
    let (ca, store_dir, state) = (root.join("ca"), root.join("store"), root.join("state"));

    // Setup: CA, enrollments, the collector.
    let t = Instant::now();
    run_ok(
        &collector_bin,
        &["ca", "init", "--dir", &ca.to_string_lossy()],
    )?;
    let hosts: Vec<HostId> = (0..args.hosts)
        .map(|h| HostId::new(format!("bench-h{h:04}")).context("host id"))
        .collect::<Result<_>>()?;
    let mut enrollments = Vec::new();
    for h in &hosts {
        let out = root.join(format!("enroll-{}", h.as_str()));
        run_ok(
            &collector_bin,
            &[
                "enroll",
                "--ca-dir",
                &ca.to_string_lossy(),
                "--host-id",
                h.as_str(),
                "--out",
                &out.to_string_lossy(),
            ],
        )?;
        enrollments.push(out);
    }
    let (port, metrics_port) = (free_port()?, free_port()?);
    let log = std::fs::File::create(root.join("collector.log"))?;
    let child = Command::new(&collector_bin)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--ca-dir",
            &ca.to_string_lossy(),
            "--store",
            &store_dir.to_string_lossy(),
            "--state-dir",
            &state.to_string_lossy(),
            "--level",
            "D",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting custody-collector serve")?;
    let mut collector = Collector {
        pid: child.id().to_string(),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_status(metrics_port, "/healthz").is_some_and(|s| s.contains(" 200")) {
            break;
        }
        if let Some(st) = collector.child.try_wait()? {
            bail!(
                "collector exited ({st}): {}",
                std::fs::read_to_string(root.join("collector.log")).unwrap_or_default()
            );
        }
        ensure!(Instant::now() < deadline, "collector not healthy in 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let setup_s = t.elapsed().as_secs_f64();

    // Build every segment beforehand.
    let t = Instant::now();
    let lines = corpus_lines(&args.corpus);
    let mut streams: Vec<(usize, Vec<Seg>)> = Vec::new();
    let mut raw_bytes = 0u64;
    for (hi, h) in hosts.iter().enumerate() {
        for s in 0..args.streams {
            let stream = StreamId::new(format!("app.s{s:03}")).context("stream id")?;
            let (segs, raw) = build_stream(&args, &lines, h, &stream, hi * args.streams + s)?;
            raw_bytes += raw;
            streams.push((hi, segs));
        }
    }
    let build_s = t.elapsed().as_secs_f64();
    let mut expected: BTreeMap<String, Sha256> = BTreeMap::new();
    let mut payload_bytes = 0u64;
    let mut record_bytes = 0u64;
    for (_, segs) in &streams {
        for s in segs {
            expected.insert(s.payload_key.clone(), Sha256::digest(&s.payload));
            expected.insert(s.record_key.clone(), Sha256::digest(&s.record));
            payload_bytes += s.payload.len() as u64;
            record_bytes += s.record.len() as u64;
        }
    }
    let n_streams = streams.len();
    let n_segments = n_streams as u64 * args.segments;
    ensure!(
        expected.len() as u64 == 2 * n_segments,
        "object names collide"
    );

    // Upload, timed.
    let url = format!("https://127.0.0.1:{port}");
    let clients: Vec<Arc<CollectorStore>> = enrollments
        .iter()
        .map(|e| {
            CollectorStore::open(&CollectorSettings::from_enrollment_dir(url.clone(), e))
                .map(Arc::new)
                .map_err(anyhow::Error::from)
        })
        .collect::<Result<_>>()?;
    let ticks = clock_ticks();
    let cpu0 = cpu_ticks(&collector.pid)?;
    let self_cpu0 = cpu_ticks("self")?;
    let counts = Arc::new(Counts::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
        let host_sems: Vec<Arc<tokio::sync::Semaphore>> = (0..args.hosts)
            .map(|_| Arc::new(tokio::sync::Semaphore::new(args.per_host)))
            .collect();
        let mut tasks = tokio::task::JoinSet::new();
        for (hi, segs) in streams {
            let (client, sem, counts) = (clients[hi].clone(), sem.clone(), counts.clone());
            let host_sem = host_sems[hi].clone();
            tasks.spawn(async move {
                for s in segs {
                    let _host_permit = host_sem.acquire().await.expect("semaphore");
                    let _permit = sem.acquire().await.expect("semaphore");
                    // Payload first, then the record, as the agent ships.
                    if !put(&client, &s.payload_key, &s.payload, &counts).await {
                        return;
                    }
                    if !put(&client, &s.record_key, &s.record, &counts).await {
                        return;
                    }
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("upload task");
        }
    });
    let wall = t.elapsed().as_secs_f64();
    let cpu_s = (cpu_ticks(&collector.pid)? - cpu0) as f64 / ticks;
    let self_cpu_s = (cpu_ticks("self")? - self_cpu0) as f64 / ticks;
    let hwm_kb = status_kb(&collector.pid, "VmHWM:")?;
    let rss_kb = status_kb(&collector.pid, "VmRSS:")?;
    let closed_for_room = metric(
        metrics_port,
        "custody_collector_connections_closed_for_room_total",
    );
    let closed_idle = metric(
        metrics_port,
        "custody_collector_connections_closed_idle_total",
    );
    drop(rt);

    // Stop the collector as systemd would (SIGTERM) and wait for it.
    let _ = Command::new("kill")
        .args(["-TERM", &collector.pid])
        .status();
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(st) = collector.child.try_wait()? {
            break Some(st);
        }
        if Instant::now() > stop_deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    // Proof that nothing was lost.
    let t = Instant::now();
    let found = store_objects(&store_dir)?;
    let mut missing = 0u64;
    let mut mismatched = 0u64;
    for (key, sha) in &expected {
        match found.get(key) {
            None => missing += 1,
            Some(p) => {
                if Sha256::digest(&std::fs::read(p)?) != *sha {
                    mismatched += 1;
                }
            }
        }
    }
    let expected_keys: BTreeSet<&String> = expected.keys().collect();
    let unexpected = found.keys().filter(|k| !expected_keys.contains(k)).count();
    let verify = Command::new(&verify_bin)
        .args(["store", "--json"])
        .arg(&store_dir)
        .output()?;
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).with_context(|| {
        format!(
            "custody-verify output: {}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        )
    })?;
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors = 0u64;
    for f in report["findings"].as_array().into_iter().flatten() {
        let sev = f["severity"].as_str().unwrap_or("?");
        if sev == "error" {
            errors += 1;
        }
        *kinds
            .entry(format!("{sev} {}", f["kind"].as_str().unwrap_or("?")))
            .or_default() += 1;
    }
    let findings_lines = std::fs::read_to_string(state.join("findings.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count();
    let proof_s = t.elapsed().as_secs_f64();

    let c = &counts;
    let (created, already, retries, failed) = (
        c.created.load(Ordering::Relaxed),
        c.already.load(Ordering::Relaxed),
        c.retries.load(Ordering::Relaxed),
        c.failed.load(Ordering::Relaxed),
    );
    let mb = |b: u64| b as f64 / 1e6;
    println!("custody-collector ingest benchmark");
    println!(
        "  machine: {} CPUs, load before/after: see `uptime`",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("  work dir                     {}", root.display());
    println!(
        "  hosts x streams x segments   {} x {} x {} = {} streams, {} segments",
        args.hosts, args.streams, args.segments, n_streams, n_segments
    );
    println!(
        "  segment raw size             >= {} B (log lines), zstd level {}, {} in flight ({} per host)",
        args.segment_bytes, args.zstd_level, args.concurrency, args.per_host
    );
    println!("  setup (ca, enroll, serve)    {setup_s:.2} s");
    println!("  build segments (untimed)     {build_s:.2} s");
    println!("  -- ingest --");
    println!("  wall time                    {wall:.2} s");
    println!(
        "  segments/s                   {:.0}",
        n_segments as f64 / wall
    );
    println!(
        "  HTTPS PUTs/s                 {:.0}",
        (created + already) as f64 / wall
    );
    println!(
        "  raw log                      {:.1} MB, {:.1} MB/s",
        mb(raw_bytes),
        mb(raw_bytes) / wall
    );
    println!(
        "  sent (payloads + records)    {:.1} MB + {:.1} MB, {:.1} MB/s (ratio {:.1}x)",
        mb(payload_bytes),
        mb(record_bytes),
        mb(payload_bytes + record_bytes) / wall,
        raw_bytes as f64 / payload_bytes as f64
    );
    println!(
        "  collector CPU                {cpu_s:.2} s ({:.0}% of one core)",
        100.0 * cpu_s / wall
    );
    println!("  load generator CPU           {self_cpu_s:.2} s");
    println!(
        "  collector peak RSS (VmHWM)   {:.1} MiB (VmRSS after {:.1} MiB)",
        hwm_kb as f64 / 1024.0,
        rss_kb as f64 / 1024.0
    );
    println!(
        "  PUT outcomes                 {created} created, {already} already present, {retries} retried, {failed} failed"
    );
    println!(
        "  idle connections closed      {closed_for_room} to make room at max_connections, {closed_idle} after idle_timeout_s"
    );
    println!(
        "  collector exit on SIGTERM    {}",
        exit.map_or("did not stop in 30 s".into(), |s| s.to_string())
    );
    println!("  -- proof ({proof_s:.1} s) --");
    println!(
        "  objects expected / in store  {} / {} ({missing} missing, {mismatched} with other bytes, {unexpected} unexpected)",
        expected.len(),
        found.len()
    );
    println!(
        "  custody-verify store         exit {}, {} hosts, {} streams, {} segments, {:.1} MB raw re-hashed, {errors} errors",
        verify.status.code().map_or("signal".into(), |c| c.to_string()),
        report["hosts"],
        report["streams"],
        report["segments"],
        report["raw_bytes"].as_u64().map_or(0.0, mb)
    );
    for (k, n) in &kinds {
        println!("    {n:6}  {k}");
    }
    println!("  findings.jsonl lines         {findings_lines}");
    let lossless = missing == 0
        && mismatched == 0
        && unexpected == 0
        && failed == 0
        && errors == 0
        && findings_lines == 0
        && report["segments"].as_u64() == Some(n_segments)
        && report["raw_bytes"].as_u64() == Some(raw_bytes);
    println!(
        "  NOTHING LOST                 {}",
        if lossless { "yes" } else { "NO" }
    );
    if args.keep || args.work_dir.is_some() {
        println!("  (kept {})", root.display());
        if let Some(t) = temp.take() {
            std::mem::forget(t);
        }
    }
    ensure!(lossless, "something was lost or refused: see above");
    Ok(())
}
