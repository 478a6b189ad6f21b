//! Back-pressure and outage: the real syslog service ([`syslog::serve`]) on
//! a real TCP socket, writing to a store that goes away. While the store is
//! down the collector holds at most its memory budget and stops reading, so
//! the sender blocks; when the store returns every message is stored once,
//! in order, and the store verifies.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_collector::syslog::{self, Listeners, RawSyslog, SyslogConfig, SyslogService};
use custody_evidence::layout::{self, ParsedKey};
use custody_evidence::octets::split_frames;
use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::segment::{decompress_payload, SegmentMeta};
use custody_evidence::sign::HostKey;
use custody_evidence::verify::{verify_store, ObjectSource, SourceError, VerifyOptions};
use custody_evidence::HostId;
use custody_store::{Fault, FaultyStore, MemoryStore, ObjectStore};
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `check` until it holds; panics with `what` after the deadline.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Snapshot(BTreeMap<String, Vec<u8>>);

impl ObjectSource for Snapshot {
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        Ok(self
            .0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        self.0
            .get(key)
            .cloned()
            .ok_or_else(|| SourceError::new(key, "missing"))
    }
}

async fn snapshot(store: &dyn ObjectStore) -> Snapshot {
    let mut out = BTreeMap::new();
    for key in store.list("v1/").await.unwrap() {
        let bytes = store.get(&key).await.unwrap();
        out.insert(key, bytes);
    }
    Snapshot(out)
}

/// The messages of every segment, in stream then seq order.
fn messages(snap: &Snapshot) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (key, bytes) in &snap.0 {
        if let Some(ParsedKey::SegmentMeta { .. }) = layout::parse_key(key) {
            let meta = SegmentMeta::decode(bytes).unwrap();
            let payload_key = layout::segment_payload_key(
                &meta.host_id,
                &meta.stream_id,
                meta.seq,
                &meta.object_sha256,
            );
            let raw = decompress_payload(&snap.0[&payload_key], meta.raw_len as usize).unwrap();
            out.extend(split_frames(&raw).unwrap().into_iter().map(<[u8]>::to_vec));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_sender_waits_while_the_store_is_down_and_nothing_is_lost() {
    let state = tempfile::tempdir().unwrap();
    let raw = RawSyslog {
        tcp: Some("127.0.0.1:0".into()),
        segment_max_bytes: Some(64 * 1024),
        max_buffered_bytes: Some(256 * 1024),
        max_message_tcp: Some(1000),
        max_message_udp: Some(1000),
        digest_interval_secs: Some(1),
        ..RawSyslog::default()
    };
    let policy = RetentionPolicy::new(Level::C, None).unwrap();
    let config = SyslogConfig::from_raw(&raw, &[], state.path().to_path_buf(), policy).unwrap();
    let budget = config.max_buffered_bytes as u64;
    let faulty = FaultyStore::new(MemoryStore::new());
    let store: Arc<dyn ObjectStore> = Arc::new(faulty.clone());
    let host = HostId::new("collector-bp").unwrap();
    let listeners = Listeners::bind(&config).await.unwrap();
    let addr = listeners.local_addrs().1.unwrap();
    let service = SyslogService::new(config, store.clone(), HostKey::generate(), host);
    let stats = service.stats.clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(syslog::serve(service, listeners, shutdown.clone()));

    // The key is published once the service runs; then the store goes away.
    wait_until("the public key", || !faulty.inner().is_empty()).await;
    faulty.set(Fault::Unavailable);

    // 32 MiB of octet-counted messages: far more than the budget plus what
    // the kernel's socket buffers can take.
    let total: u64 = 160_000;
    let sent = Arc::new(AtomicU64::new(0));
    let sent_w = sent.clone();
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut all = Vec::new();
        for i in 0..total {
            let msg = format!("<13>1 - dev app - - - message {i:08} {}", "x".repeat(150));
            let mut frame = format!("{} ", msg.len()).into_bytes();
            frame.extend_from_slice(msg.as_bytes());
            s.write_all(&frame).unwrap();
            sent_w.fetch_add(1, Ordering::Relaxed);
            all.push(msg.into_bytes());
        }
        all
    });

    // Several failed store writes (the retry backoff makes that more than a
    // second): a receiver that did not push back would have read all 32 MiB
    // from loopback by then.
    wait_until("failed store writes", || faulty.counts().injected >= 4).await;
    let received = stats.snapshot().messages;
    assert!(
        sent.load(Ordering::Relaxed) < total,
        "the sender finished while the store was down: no back-pressure"
    );
    assert!(
        received * 150 <= budget,
        "{received} messages taken in while the store was down, over the {budget}-byte budget"
    );
    assert_eq!(stats.snapshot().segments_stored, 0);
    let snap = stats.snapshot();
    assert_eq!(snap.max_buffered_bytes, budget);
    assert!(
        snap.buffered_bytes > 0 && snap.buffered_bytes <= budget,
        "{snap:?}"
    );

    faulty.clear();
    let all = tokio::task::spawn_blocking(move || client.join().unwrap())
        .await
        .unwrap();
    wait_until("every message stored", || {
        stats.snapshot().messages == total
            && stats
                .snapshot()
                .devices
                .values()
                .map(|d| d.messages)
                .sum::<u64>()
                == total
    })
    .await;
    shutdown.cancel();
    let summary = server.await.unwrap().unwrap();
    assert!(summary.stats.store_errors >= 4);

    let snap = snapshot(store.as_ref()).await;
    assert_eq!(
        messages(&snap),
        all,
        "stored messages differ from those sent"
    );
    let report = verify_store(&snap, &VerifyOptions::default()).unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
}
