//! The agent's collector store (`custody_store::CollectorStore`, reqwest)
//! against the real ingest server (`custody_collector::ingest::serve`) on a
//! real TLS socket, in process so the backing store can misbehave on cue
//! (`FaultyStore`): every HTTP answer maps onto the `ObjectStore` promise
//! the agent's shipper relies on.

use std::sync::Arc;

use custody_collector::app::{App, Limits};
use custody_collector::findings::FindingsLog;
use custody_collector::{ingest, pki, tls};
use custody_evidence::layout;
use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::segment::{
    compress_payload, ByteRange, Framing, SegmentMeta, SourceFile, Split, SEGMENT_FORMAT_V1,
};
use custody_evidence::timefmt::now_utc_micros;
use custody_evidence::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use custody_store::{
    CollectorSettings, CollectorStore, Fault, FaultyStore, MemoryStore, ObjectStore, PutOptions,
    PutOutcome, StoreError,
};
use time::{Duration, OffsetDateTime};

/// A payload and its record for `host`, stream `app.t`, seq 0.
fn segment(host: &HostId) -> (String, Vec<u8>, String, SegmentMeta) {
    let raw = b"one line\n";
    let payload = compress_payload(raw, 3).unwrap();
    let object = Sha256::digest(&payload);
    let stream = StreamId::new("app.t").unwrap();
    let now = now_utc_micros();
    let meta = SegmentMeta {
        format: SEGMENT_FORMAT_V1.into(),
        host_id: host.clone(),
        stream_id: stream.clone(),
        category: Category::App,
        seq: SegmentSeq(0),
        agent_instance: InstanceId::random(),
        framing: Framing::Lines,
        source: SourceFile {
            path: "/var/log/app.log".into(),
            device: 1,
            inode: 2,
            fingerprint: Sha256::digest(b"fp"),
            fingerprint_len: 2,
        }
        .into(),
        range: ByteRange {
            start: 0,
            end: raw.len() as u64,
        },
        split: Split::default(),
        first_read: now,
        last_read: now,
        raw_len: raw.len() as u64,
        raw_sha256: Sha256::digest(raw),
        object_len: payload.len() as u64,
        object_sha256: object,
        prev_segment: None,
        retain_until: now + Duration::days(10),
    };
    (
        layout::segment_payload_key(host, &stream, SegmentSeq(0), &object),
        payload,
        layout::segment_meta_key(host, &stream, SegmentSeq(0), &object),
        meta,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_maps_onto_the_store_promises() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki::ca_init(&ca, &[]).unwrap();
    let host = HostId::new("web01").unwrap();
    let enrollment = dir.path().join("enroll");
    pki::enroll(&ca, &host, &enrollment).unwrap();

    let backing = FaultyStore::new(MemoryStore::new());
    let store: Arc<dyn ObjectStore> = Arc::new(backing.clone());
    let policy = RetentionPolicy::new(Level::D, None).unwrap();
    let app = App::new(
        store,
        policy,
        FindingsLog::open(&dir.path().join("state")).unwrap(),
        Limits {
            max_body_bytes: 3 << 20,
            max_connections: 8,
            max_inflight_bytes: 4 << 20,
            idle_timeout: std::time::Duration::from_secs(30),
        },
        custody_collector::revocation::Revocations::none(),
    );
    let shared = app.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ingest::serve(
        listener,
        tls::server_config(&ca).unwrap(),
        app,
        async {
            let _ = stopped.await;
        },
    ));
    let client = CollectorStore::open(&CollectorSettings::from_enrollment_dir(
        format!("https://127.0.0.1:{port}"),
        &enrollment,
    ))
    .unwrap();

    let (pkey, payload, rkey, meta) = segment(&host);
    let asked = OffsetDateTime::now_utc() + Duration::days(1);
    let opts = PutOptions {
        retain_until: asked,
    };
    assert_eq!(
        client.put(&pkey, &payload, opts).await.unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        client.put(&pkey, &payload, opts).await.unwrap(),
        PutOutcome::AlreadyPresent
    );
    let record = meta.encode();
    assert_eq!(
        client.put(&rkey, &record, opts).await.unwrap(),
        PutOutcome::Created
    );
    // Read back: bytes, length, and the later of the asked retention and
    // the collector's policy (six months at level D by default).
    assert_eq!(client.get(&pkey).await.unwrap(), payload);
    let info = client.head(&pkey).await.unwrap().expect("stored");
    assert_eq!(info.len, payload.len() as u64);
    assert!(
        info.retain_until > asked + Duration::days(100),
        "{:?}",
        info.retain_until
    );
    assert!(client
        .head(&format!("{pkey}.nope"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        client.list(&layout::host_prefix(&host)).await.unwrap(),
        vec![rkey.clone(), pkey.clone()]
    );

    // Different bytes under an existing name: 409 → Conflict.
    let mut altered = meta.clone();
    if let custody_evidence::segment::Source::File(f) = &mut altered.source {
        f.path = "/var/log/other.log".into();
    }
    match client.put(&rkey, &altered.encode(), opts).await {
        Err(StoreError::Conflict { key }) => assert_eq!(key, rkey),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // Another host's namespace: 403 → Refused, not transient, with the reason.
    let other = HostId::new("web02").unwrap();
    let (foreign, fpayload, _, _) = segment(&other);
    let err = client.put(&foreign, &fpayload, opts).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { reason, .. } if reason.contains("403") && reason.contains("own namespace")),
        "{err}"
    );
    assert!(!err.is_transient());
    let err = client.list("v1/web02/").await.unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    // Garbage: 400 → Refused.
    let garbage = b"not zstd".to_vec();
    let gkey = layout::segment_payload_key(
        &host,
        &StreamId::new("app.g").unwrap(),
        SegmentSeq(0),
        &Sha256::digest(&garbage),
    );
    let err = client.put(&gkey, &garbage, opts).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { reason, .. } if reason.contains("400") && reason.contains("zstd")),
        "{err}"
    );

    // The backing store is down: 503 → Unavailable (transient), nothing
    // acknowledged; once it is back the same put succeeds.
    let (pkey2, payload2, _, _) = {
        let mut s = segment(&host);
        s.1 = compress_payload(b"two lines\n", 3).unwrap();
        s.0 = layout::segment_payload_key(
            &host,
            &StreamId::new("app.t").unwrap(),
            SegmentSeq(1),
            &Sha256::digest(&s.1),
        );
        s
    };
    backing.set(Fault::Unavailable);
    let err = client.put(&pkey2, &payload2, opts).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(msg) if msg.contains("503")),
        "{err}"
    );
    assert!(err.is_transient());
    backing.clear();
    assert_eq!(
        client.put(&pkey2, &payload2, opts).await.unwrap(),
        PutOutcome::Created
    );

    // Back-pressure: while a slow store holds one upload's bytes, another
    // that does not fit in max_inflight_bytes gets 503 (transient) at once.
    let big = |n: u8| {
        // Incompressible: a chain of SHA-256 blocks, 2.5 MiB.
        let raw: Vec<u8> = (0..81_920u32)
            .flat_map(|i| Sha256::digest(&[&i.to_le_bytes()[..], &[n]].concat()).0)
            .collect();
        let p = compress_payload(&raw, 1).unwrap();
        let k = layout::segment_payload_key(
            &host,
            &StreamId::new(format!("app.big{n}")).unwrap(),
            SegmentSeq(0),
            &Sha256::digest(&p),
        );
        (k, p)
    };
    let (k1, p1) = big(1);
    let (k2, p2) = big(2);
    assert!(
        p1.len() + p2.len() > 4 << 20 && p1.len() < 3 << 20,
        "payload sizes {} and {} do not exercise the budget",
        p1.len(),
        p2.len()
    );
    backing.set(Fault::Latency(std::time::Duration::from_secs(2)));
    let first = {
        let client = CollectorStore::open(&CollectorSettings::from_enrollment_dir(
            format!("https://127.0.0.1:{port}"),
            &enrollment,
        ))
        .unwrap();
        let (k1, p1) = (k1.clone(), p1.clone());
        tokio::spawn(async move { client.put(&k1, &p1, opts).await })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while shared.body_budget.available_permits() as u64 == 4 << 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "first upload never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let err = client.put(&k2, &p2, opts).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(msg) if msg.contains("busy") && msg.contains("503")),
        "{err}"
    );
    assert_eq!(first.await.unwrap().unwrap(), PutOutcome::Created);
    backing.clear();

    // Refusals before the body is read still reach a client that sends
    // the whole body first (reqwest): 413 with its reason, not a broken pipe.
    let oversized = vec![7u8; (3 << 20) + 10];
    let okey = layout::segment_payload_key(
        &host,
        &StreamId::new("app.o").unwrap(),
        SegmentSeq(0),
        &Sha256::digest(&oversized),
    );
    let err = client.put(&okey, &oversized, opts).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Refused { reason, .. } if reason.contains("413") && reason.contains("max_body_bytes")),
        "{err}"
    );

    // A host can never hold or prune.
    assert!(matches!(
        client.set_legal_hold(&pkey, true).await,
        Err(StoreError::Refused { .. })
    ));
    assert!(matches!(
        client.prune(OffsetDateTime::now_utc()).await,
        Err(StoreError::Refused { .. })
    ));

    // The collector down altogether: a connection failure, transient.
    let _ = stop.send(());
    server.await.unwrap();
    let err = client.get(&pkey).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}
