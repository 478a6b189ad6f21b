//! Agents → collector → store, through the real binaries: `custody-collector
//! ca init`, `enroll` and `serve`, and `custody-agent run --store
//! https://…`. What arrives is read the way an auditor would (payloads
//! through the real `zstd -d`, `custody-verify store`), and compared byte
//! for byte with the source files. Requests an agent would never send
//! (refusals, tampering) are made with `curl`, a stock client.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use custody_evidence::digest::{ClockState, DigestBody, DIGEST_FORMAT_V1, DIGEST_NAMESPACE};
use custody_evidence::layout;
use custody_evidence::segment::{
    compress_payload, ByteRange, Framing, SegmentMeta, SourceFile, Split, SEGMENT_FORMAT_V1,
};
use custody_evidence::sign::HostKey;
use custody_evidence::timefmt::now_utc_micros;
use custody_evidence::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use custody_tests::collector::{agent_to, http_get};
use custody_tests::moto::Moto;
use custody_tests::*;

/// Waits until every id is stored for `host` in the collector's store.
fn wait_for_host_ids(
    setup: &CollectorSetup,
    host: &str,
    ids: &[String],
    timeout: Duration,
    agents: &mut [&mut AgentProcess],
) -> StoreContents {
    wait_for(
        &format!("all {} lines of {host} in the collector's store", ids.len()),
        timeout,
        || {
            for a in agents.iter_mut() {
                if let Err(e) = a.check_running() {
                    panic!("{e}");
                }
            }
            let contents = StoreContents::read(&setup.store, host)
                .map_err(|e| format!("store unreadable: {e:#}"))?;
            let found: std::collections::HashSet<String> =
                contents.line_ids().into_iter().collect();
            let missing = ids.iter().filter(|id| !found.contains(*id)).count();
            if missing == 0 {
                Ok(contents)
            } else {
                Err(format!(
                    "{missing} of {} missing; {} segments",
                    ids.len(),
                    contents.segment_count()
                ))
            }
        },
    )
}

/// Everything that ends up in the store equals what was written, exactly once.
fn assert_complete(setup: &CollectorSetup, env: &TestEnv, ids: &[String]) {
    let store = StoreContents::read(&setup.store, &env.host_id).expect("store readable");
    store.assert_clean();
    assert_exactly_once(ids, &store.line_ids());
    let check = store.check_against_sources(&[&env.logs]);
    assert!(
        check.mismatches.is_empty(),
        "bytes differ from the source: {:?}",
        check.mismatches
    );
    assert!(
        check.checked > 0,
        "no segment could be compared with its source file"
    );
}

#[test]
fn two_agents_ship_through_the_collector() {
    let env_a = TestEnv::new("col-a");
    let env_b = TestEnv::new("col-b");
    let setup = CollectorSetup::new(&env_a.subdir("collector"));
    let (enroll_a, enroll_b) = (setup.enroll(&env_a.host_id), setup.enroll(&env_b.host_id));
    let mut collector = CollectorProcess::start(&setup);

    let mut writer_a = LineWriter::new(env_a.log("app.log"), "ca");
    let mut writer_b = LineWriter::new(env_b.log("app.log"), "cb");
    writer_a.append(testdata_lines(), 500);
    writer_b.append(testdata_lines(), 500);
    let mut agent_a = AgentProcess::start(&agent_to(&env_a, &setup, &enroll_a));
    let mut agent_b = AgentProcess::start(&agent_to(&env_b, &setup, &enroll_b));
    for _ in 0..3 {
        writer_a.append(testdata_lines(), 700);
        writer_b.append(testdata_lines(), 300);
    }
    let ids_a = writer_a.ids().to_vec();
    let ids_b = writer_b.ids().to_vec();
    wait_for_host_ids(
        &setup,
        &env_a.host_id,
        &ids_a,
        Duration::from_secs(120),
        &mut [&mut agent_a, &mut agent_b],
    );
    wait_for_host_ids(
        &setup,
        &env_b.host_id,
        &ids_b,
        Duration::from_secs(120),
        &mut [&mut agent_a, &mut agent_b],
    );
    // A clean stop writes and ships the final digests.
    agent_a.stop_clean(Duration::from_secs(60));
    agent_b.stop_clean(Duration::from_secs(60));
    collector.check_running().unwrap();

    assert_complete(&setup, &env_a, &ids_a);
    assert_complete(&setup, &env_b, &ids_b);
    let verify = run_verify(&setup.store, &[]);
    verify.assert_clean();
    assert!(
        setup.findings().is_empty(),
        "a normal run must not raise findings on receipt: {:?}",
        setup.findings()
    );
    let segments_a = setup.metric(&format!(
        "custody_collector_received_segments_total{{host=\"{}\"}}",
        env_a.host_id
    ));
    assert!(
        segments_a >= 1.0,
        "metrics count no segments for host a:\n{:?}",
        setup.metrics()
    );
    let bytes_b = setup.metric(&format!(
        "custody_collector_received_bytes_total{{host=\"{}\"}}",
        env_b.host_id
    ));
    assert!(bytes_b > 0.0, "metrics count no bytes for host b");
    assert_eq!(
        collector.sigterm(Duration::from_secs(30)).code(),
        Some(0),
        "{}",
        collector.log()
    );
}

/// A well-formed segment of `host`'s stream `stream` at `seq`: `(payload
/// key, payload, record key, record)`.
fn segment(
    host: &str,
    stream: &str,
    seq: u64,
    prev: Option<Sha256>,
    raw: &[u8],
) -> (String, Vec<u8>, String, Vec<u8>) {
    let host = HostId::new(host).unwrap();
    let stream = StreamId::new(stream).unwrap();
    let payload = compress_payload(raw, 3).unwrap();
    let object = Sha256::digest(&payload);
    let now = now_utc_micros();
    let meta = SegmentMeta {
        format: SEGMENT_FORMAT_V1.into(),
        host_id: host.clone(),
        stream_id: stream.clone(),
        category: Category::App,
        seq: SegmentSeq(seq),
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
            start: seq * 1000,
            end: seq * 1000 + raw.len() as u64,
        },
        split: Split::default(),
        first_read: now,
        last_read: now,
        raw_len: raw.len() as u64,
        raw_sha256: Sha256::digest(raw),
        object_len: payload.len() as u64,
        object_sha256: object,
        prev_segment: prev,
        retain_until: now + time::Duration::days(200),
    };
    (
        layout::segment_payload_key(&host, &stream, SegmentSeq(seq), &object),
        payload,
        layout::segment_meta_key(&host, &stream, SegmentSeq(seq), &object),
        meta.encode(),
    )
}

fn assert_status(reply: &CurlReply, status: u16, contains: &str, what: &str) {
    assert_eq!(
        reply.status, status,
        "{what}: expected HTTP {status}, got {reply:?}"
    );
    assert!(
        reply.body.contains(contains),
        "{what}: reason {:?} does not contain {contains:?}",
        reply.body
    );
}

#[test]
fn refusals_are_clear_and_the_collector_keeps_serving() {
    let env = TestEnv::new("col-refuse");
    let scratch = env.subdir("scratch");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    setup.extra = vec![
        "--max-body-bytes".into(),
        "65536".into(),
        "--max-inflight-bytes".into(),
        "1048576".into(),
    ];
    let (host_a, host_b) = ("web-a", "web-b");
    let enroll_a = setup.enroll(host_a);
    let _enroll_b = setup.enroll(host_b);
    let mut collector = CollectorProcess::start(&setup);
    let a = Curl::new(&setup, Some(&enroll_a));
    let anonymous = Curl::new(&setup, None);
    let still_serving = |what: &str, collector: &mut CollectorProcess| {
        collector
            .check_running()
            .unwrap_or_else(|e| panic!("after {what}: {e}"));
        let r = a.request("GET", &format!("/v1/list?prefix=v1/{host_a}/"), None, &[]);
        assert_eq!(
            r.status, 200,
            "after {what} the collector no longer serves: {r:?}"
        );
    };

    let (pkey, payload, rkey, record) = segment(host_a, "app.x", 0, None, b"one line\n");
    // No client certificate.
    let r = anonymous.put(&pkey, &payload, &scratch);
    assert_status(
        &r,
        401,
        "client certificate required",
        "no client certificate",
    );
    still_serving("no certificate", &mut collector);
    // A certificate from another CA fails the TLS handshake.
    let other = CollectorSetup::new(&env.subdir("other-ca"));
    let foreign = Curl {
        ca: setup.ca_dir.join("ca.pem"),
        ..Curl::new(&other, Some(&other.enroll(host_a)))
    };
    let foreign = Curl {
        base: setup.url(),
        ..foreign
    };
    let r = foreign.put(&pkey, &payload, &scratch);
    assert_eq!(
        r.status, 0,
        "a certificate of another CA must not get an HTTP answer: {r:?}"
    );
    still_serving("a foreign CA's certificate", &mut collector);
    // Host A writing host B's namespace.
    let (pkey_b, payload_b, _, _) = segment(host_b, "app.x", 0, None, b"one line\n");
    let r = a.put(&pkey_b, &payload_b, &scratch);
    assert_status(
        &r,
        403,
        "may only use its own namespace",
        "host A writing host B's stream",
    );
    assert!(
        !setup.store.join(&pkey_b).exists(),
        "the foreign write was stored"
    );
    let r = a.request("GET", &format!("/v1/list?prefix=v1/{host_b}/"), None, &[]);
    assert_status(
        &r,
        403,
        "may only list its own namespace",
        "host A listing host B",
    );
    still_serving("a foreign namespace", &mut collector);

    // The real upload, and an identical retry.
    assert_status(&a.put(&pkey, &payload, &scratch), 201, "stored", "payload");
    assert_status(&a.put(&rkey, &record, &scratch), 201, "stored", "record");
    assert_status(
        &a.put(&rkey, &record, &scratch),
        200,
        "already stored",
        "identical retry",
    );
    // An altered record under the existing name: refused, stored bytes unchanged.
    let altered = String::from_utf8(record.clone())
        .unwrap()
        .replace("/var/log/app.log", "/var/log/app.LOG");
    let r = a.put(&rkey, altered.as_bytes(), &scratch);
    assert_status(&r, 409, "never overwritten", "altered record");
    assert_eq!(
        std::fs::read(setup.store.join(&rkey)).unwrap(),
        record,
        "stored record changed"
    );
    still_serving("an altered upload", &mut collector);
    // A host can never delete.
    let r = a.request("DELETE", &format!("/v1/objects/{rkey}"), None, &[]);
    assert_status(&r, 405, "never delete", "DELETE");
    assert!(setup.store.join(&rkey).exists());

    // Oversized body.
    let (big_key, big, _, _) = segment(
        host_a,
        "app.big",
        0,
        None,
        &(0..200_000u32)
            .flat_map(|i| i.to_le_bytes())
            .collect::<Vec<u8>>(),
    );
    assert!(big.len() > 65536, "test payload must exceed the limit");
    let r = a.put(&big_key, &big, &scratch);
    assert_status(&r, 413, "max_body_bytes", "oversized body");
    still_serving("an oversized body", &mut collector);
    // Garbage: not a zstd frame (named by its own hash), a payload that
    // does not match its name, a record that does not decode.
    let garbage = b"this is not zstd at all".to_vec();
    let gkey = layout::segment_payload_key(
        &HostId::new(host_a).unwrap(),
        &StreamId::new("app.g").unwrap(),
        SegmentSeq(0),
        &Sha256::digest(&garbage),
    );
    assert_status(
        &a.put(&gkey, &garbage, &scratch),
        400,
        "not a zstd frame",
        "garbage payload",
    );
    let (wrong_key, _, _, _) = segment(host_a, "app.w", 0, None, b"x\n");
    assert_status(
        &a.put(&wrong_key, &payload, &scratch),
        400,
        "but its name says",
        "payload under another hash",
    );
    let (_, _, bad_rkey, _) = segment(host_a, "app.x", 1, None, b"y\n");
    assert_status(
        &a.put(
            &bad_rkey,
            b"{\"format\":\"custody.segment.v1\",\"garbage\":1}\n",
            &scratch,
        ),
        400,
        "not a valid segment record",
        "record garbage",
    );
    assert_status(
        &a.put("v1/web-a/other/thing", b"x", &scratch),
        400,
        "not an object name of the v1 layout",
        "name outside the layout",
    );
    still_serving("garbage bodies", &mut collector);

    let log = collector.log();
    for want in [
        "client certificate required",
        "may only use its own namespace",
        "INTEGRITY ALARM",
        "TLS handshake failed",
    ] {
        assert!(
            log.contains(want),
            "collector log does not mention {want:?}:\n{log}"
        );
    }
    assert!(setup.metric("custody_collector_refused_total{status=\"403\"}") >= 2.0);
    assert!(setup.metric("custody_collector_tls_handshake_failures_total") >= 1.0);
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn findings_on_receipt_are_recorded_and_the_data_kept() {
    let env = TestEnv::new("col-find");
    let scratch = env.subdir("scratch");
    let setup = CollectorSetup::new(&env.subdir("collector"));
    let host = "db-1";
    let enroll = setup.enroll(host);
    let _collector = CollectorProcess::start(&setup);
    let c = Curl::new(&setup, Some(&enroll));
    let hid = HostId::new(host).unwrap();

    // The host's key, published as the agent does.
    let key = HostKey::generate();
    let line = key.public_key_line(host);
    assert_status(
        &c.put(
            &layout::public_key_key(&hid, &line),
            format!("{line}\n").as_bytes(),
            &scratch,
        ),
        201,
        "stored",
        "public key",
    );

    // Seq 0, then seq 2: seq 1 never arrives (a gap).
    let (p0, pay0, r0, rec0) = segment(host, "app.s", 0, None, b"first\n");
    for (k, b) in [(&p0, &pay0), (&r0, &rec0)] {
        assert_status(&c.put(k, b, &scratch), 201, "stored", "seq 0");
    }
    assert!(
        setup.findings().is_empty(),
        "seq 0 raised {:?}",
        setup.findings()
    );
    let (p2, pay2, r2, rec2) = segment(
        host,
        "app.s",
        2,
        Some(Sha256::digest(b"whatever")),
        b"third\n",
    );
    for (k, b) in [(&p2, &pay2), (&r2, &rec2)] {
        assert_status(&c.put(k, b, &scratch), 201, "stored", "seq 2 after a gap");
    }
    // A record whose payload decompresses to other bytes than it claims.
    let (p9, pay9, r9, rec9) = segment(host, "app.r", 0, None, b"claimed\n");
    let lied = String::from_utf8(rec9).unwrap().replace(
        &Sha256::digest(b"claimed\n").to_string(),
        &Sha256::digest(b"other\n").to_string(),
    );
    assert_status(&c.put(&p9, &pay9, &scratch), 201, "stored", "payload");
    assert_status(
        &c.put(&r9, lied.as_bytes(), &scratch),
        201,
        "stored",
        "record with a wrong raw hash",
    );

    // A digest whose signature is by the right key over other bytes.
    let now = now_utc_micros();
    let body = DigestBody {
        format: DIGEST_FORMAT_V1.into(),
        host_id: hid.clone(),
        agent_instance: InstanceId::random(),
        seq: 0,
        prev_digest: None,
        window_start: now,
        window_end: now,
        clock: ClockState {
            synchronized: None,
            max_error_us: None,
            est_error_us: None,
        },
        public_key: line.clone(),
        segments: Vec::new(),
    }
    .encode();
    let bhash = Sha256::digest(&body);
    let bad_sig = key.sign(DIGEST_NAMESPACE, b"not the body").unwrap();
    assert_status(
        &c.put(&layout::digest_key(&hid, 0, &bhash), &body, &scratch),
        201,
        "stored",
        "digest",
    );
    assert_status(
        &c.put(
            &layout::digest_sig_key(&hid, 0, &bhash),
            bad_sig.as_bytes(),
            &scratch,
        ),
        201,
        "stored",
        "bad signature",
    );

    let findings = setup.findings();
    let kinds: Vec<&str> = findings.iter().filter_map(|f| f["kind"].as_str()).collect();
    for want in ["chain_gap", "raw_hash_mismatch", "signature_invalid"] {
        assert!(
            kinds.contains(&want),
            "no {want} in findings.jsonl: {findings:?}"
        );
    }
    let gap = findings.iter().find(|f| f["kind"] == "chain_gap").unwrap();
    assert_eq!(
        (
            gap["host"].as_str(),
            gap["seq"].as_u64(),
            gap["object"].as_str()
        ),
        (Some(host), Some(2), Some(r2.as_str())),
        "{gap}"
    );
    assert!(
        gap["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{gap}"
    );
    // The data is kept, as sent.
    for (k, b) in [(&p2, &pay2), (&r2, &rec2), (&r9, &lied.as_bytes().to_vec())] {
        assert_eq!(
            &std::fs::read(setup.store.join(k)).unwrap(),
            b,
            "{k} not kept as sent"
        );
    }
    assert_eq!(
        std::fs::read(setup.store.join(layout::digest_sig_key(&hid, 0, &bhash))).unwrap(),
        bad_sig.as_bytes()
    );
    // An identical retry does not report the finding again.
    assert_status(&c.put(&r2, &rec2, &scratch), 200, "already stored", "retry");
    assert_eq!(
        setup.findings().len(),
        findings.len(),
        "a retry raised findings again"
    );
    assert_eq!(
        setup.metric("custody_collector_findings_total{kind=\"chain_gap\"}"),
        1.0
    );
    assert_eq!(
        setup.metric("custody_collector_findings_total{kind=\"signature_invalid\"}"),
        1.0
    );
    // And the auditor's verifier agrees the store holds evidence of it.
    let verify = run_verify(&setup.store, &[]);
    assert_eq!(verify.code, Some(1), "{}", verify.stdout);
}

/// How long the outages last: 3 minutes ("several minutes", issue 3);
/// `CUSTODY_TEST_OUTAGE_S` shortens it for a quick local run.
fn outage_length() -> Duration {
    let secs = std::env::var("CUSTODY_TEST_OUTAGE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(180);
    Duration::from_secs(secs)
}

/// Appends lines every 2 s for `outage` while checking the agent is alive
/// (the length of the outage is the scenario, so this is the one place
/// that waits on the clock).
fn keep_writing(writer: &mut LineWriter, agent: &mut AgentProcess, outage: Duration) {
    let start = Instant::now();
    while start.elapsed() < outage {
        writer.append(testdata_lines(), 40);
        agent.assert_running();
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// The agent of an outage scenario: digests every 5 s rather than the
/// harness's 0.5 s, so three minutes of outage leave a backlog of tens of
/// digests, not hundreds (each one a round trip to the store when it
/// drains).
fn outage_agent(env: &TestEnv, setup: &CollectorSetup, enroll: &Path) -> AgentProcess {
    AgentProcess::start(&agent_to(env, setup, enroll).flag("digest-interval-ms", 5000))
}

/// Waits until the agent's spool is empty: everything it read, digests
/// included, acknowledged by the collector.
fn wait_spool_drained(env: &TestEnv, agent: &mut AgentProcess) {
    wait_for(
        "the agent's spool to drain after the outage",
        Duration::from_secs(240),
        || {
            agent.check_running()?;
            let st = read_status(&env.state)?;
            match status::spool_bytes(&st) {
                0 => Ok(()),
                n => Err(format!("{n} bytes in the spool; {st}")),
            }
        },
    );
}

/// Both outages of issue 3, each several minutes long while the agent keeps
/// writing, run side by side so that CI pays for the minutes once.
#[test]
fn outages_of_minutes_lose_and_duplicate_nothing() {
    let outage = outage_length();
    let collector_down = std::thread::spawn(move || collector_outage(outage));
    let s3_down = std::thread::spawn(move || s3_outage_under_the_collector(outage));
    let (a, b) = (collector_down.join(), s3_down.join());
    if let Err(panic) = a {
        std::panic::resume_unwind(panic);
    }
    if let Err(panic) = b {
        std::panic::resume_unwind(panic);
    }
}

/// The collector is down for `outage` while the agent keeps writing; after
/// it returns every line is in the store exactly once, byte for byte.
fn collector_outage(outage: Duration) {
    let env = TestEnv::new("col-out");
    let setup = CollectorSetup::new(&env.subdir("collector"));
    let enroll = setup.enroll(&env.host_id);
    let mut collector = CollectorProcess::start(&setup);
    let mut writer = LineWriter::new(env.log("app.log"), "co");
    let mut agent = outage_agent(&env, &setup, &enroll);
    writer.append(testdata_lines(), 300);
    wait_for_host_ids(
        &setup,
        &env.host_id,
        writer.ids(),
        Duration::from_secs(60),
        &mut [&mut agent],
    );

    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
    drop(collector);
    let down = Instant::now();
    // The agent notices, and keeps reading into its spool meanwhile.
    writer.append(testdata_lines(), 200);
    wait_for(
        "the agent to report the collector unreachable",
        Duration::from_secs(60),
        || {
            agent.check_running()?;
            let st = read_status(&env.state)?;
            match st["last_ship_error"].as_str() {
                Some(e) if e.contains("collector") => Ok(()),
                other => Err(format!("last_ship_error {other:?}")),
            }
        },
    );
    keep_writing(
        &mut writer,
        &mut agent,
        outage.saturating_sub(down.elapsed()),
    );
    let stored = StoreContents::read(&setup.store, &env.host_id)
        .unwrap()
        .line_ids()
        .len();
    assert!(
        stored < writer.ids().len(),
        "lines arrived while the collector was down"
    );
    eprintln!("collector down for {:?}", down.elapsed());

    let collector = CollectorProcess::start(&setup);
    writer.append(testdata_lines(), 40);
    let ids = writer.ids().to_vec();
    wait_for_host_ids(
        &setup,
        &env.host_id,
        &ids,
        Duration::from_secs(120),
        &mut [&mut agent],
    );
    wait_spool_drained(&env, &mut agent);
    agent.stop_clean(Duration::from_secs(60));
    assert_complete(&setup, &env, &ids);
    run_verify(&setup.store, &[]).assert_clean();
    drop(collector);
}

/// The S3 server goes away under the collector for `outage` while the agent
/// keeps writing: uploads get 503, the agent keeps everything in its spool,
/// the collector keeps serving; after the server is back every line written
/// meanwhile is in the bucket exactly once.
///
/// moto keeps its data in memory, so the restarted server is empty (the
/// bucket is created again) and only lines written from the outage on are
/// counted.
fn s3_outage_under_the_collector(outage: Duration) {
    let env = TestEnv::new("col-s3out");
    let mut moto = Moto::start();
    let bucket = "custody-central-out";
    let setup = s3_collector(&env, &moto, bucket);
    let enroll = setup.enroll(&env.host_id);
    let mut collector = CollectorProcess::start(&setup);
    let mut writer = LineWriter::new(env.log("app.log"), "cso");
    writer.append(testdata_lines(), 100);
    let mut agent = outage_agent(&env, &setup, &enroll);
    let before = writer.take_ids();
    wait_for_bucket_ids(&moto, bucket, &env, &before, &mut agent);

    moto.stop();
    let down = Instant::now();
    writer.append(testdata_lines(), 60);
    wait_for(
        "the agent to see the collector's 503",
        Duration::from_secs(60),
        || {
            if let Err(e) = agent.check_running() {
                panic!("{e}");
            }
            let st = read_status(&env.state)?;
            match st["last_ship_error"].as_str() {
                Some(e) if e.contains("503") => Ok(()),
                other => Err(format!("last_ship_error {other:?}")),
            }
        },
    );
    keep_writing(
        &mut writer,
        &mut agent,
        outage.saturating_sub(down.elapsed()),
    );
    let mut during = writer.take_ids();
    collector.check_running().unwrap();
    let errors = setup.metric("custody_collector_store_errors_total{op=\"put\"}")
        + setup.metric("custody_collector_store_errors_total{op=\"read\"}");
    assert!(
        errors >= 1.0,
        "store errors not counted: {:?}",
        setup.metrics()
    );
    eprintln!("S3 down for {:?}", down.elapsed());

    // Back (moto keeps nothing across a restart: a new, empty bucket).
    moto.restart();
    moto.create_bucket(bucket, true);
    writer.append(testdata_lines(), 40);
    during.extend(writer.take_ids());
    wait_for_bucket_ids(&moto, bucket, &env, &during, &mut agent);
    wait_spool_drained(&env, &mut agent);
    agent.stop_clean(Duration::from_secs(60));
    let dir = env.subdir("dump-final");
    moto.dump(bucket, &dir);
    let contents = StoreContents::read(&dir.join("central"), &env.host_id).unwrap();
    let wanted: std::collections::HashSet<&str> = during.iter().map(String::as_str).collect();
    let found: Vec<String> = contents
        .line_ids()
        .into_iter()
        .filter(|id| wanted.contains(id.as_str()))
        .collect();
    assert_exactly_once(&during, &found);
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}

#[test]
fn scheduled_prune_deletes_only_expired_unheld_objects() {
    let env = TestEnv::new("col-prune");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    // Objects whose retention has passed, one of them under legal hold,
    // written with the store library as an earlier run would have left them.
    let store = custody_store::FsStore::open(&setup.store).unwrap();
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let opts = custody_store::PutOptions { retain_until: past };
    store
        .put_sync("v1/old/streams/app.x/expired", b"old", opts)
        .unwrap();
    store
        .put_sync("v1/old/streams/app.x/held", b"held", opts)
        .unwrap();
    store
        .set_legal_hold_sync("v1/old/streams/app.x/held", true)
        .unwrap();
    let future = custody_store::PutOptions {
        retain_until: time::OffsetDateTime::now_utc() + time::Duration::days(10),
    };
    store
        .put_sync("v1/old/streams/app.x/kept", b"kept", future)
        .unwrap();
    setup.extra = vec!["--prune-interval-s".into(), "1".into()];
    let _collector = CollectorProcess::start(&setup);
    wait_for(
        "a scheduled prune to delete the expired object",
        Duration::from_secs(60),
        || {
            let deleted = setup.metric("custody_collector_prune_deleted_total");
            if setup.store.join("v1/old/streams/app.x/expired").exists() || deleted < 1.0 {
                Err(format!(
                    "object still there or not counted yet (prune_deleted_total {deleted})"
                ))
            } else {
                Ok(())
            }
        },
    );
    assert!(
        setup.store.join("v1/old/streams/app.x/held").exists(),
        "a held object was pruned"
    );
    assert!(
        setup.store.join("v1/old/streams/app.x/kept").exists(),
        "an object within retention was pruned"
    );
    let health = http_get(setup.metrics_port, "/healthz").expect("healthz answers");
    assert_eq!(health.0, 200);
}

/// Waits until every id is in `s3://bucket/central` (read with boto3);
/// returns the last dump and the directory it was downloaded to.
fn wait_for_bucket_ids(
    moto: &Moto,
    bucket: &str,
    env: &TestEnv,
    ids: &[String],
    agent: &mut AgentProcess,
) -> (serde_json::Value, std::path::PathBuf) {
    let mut round = 0;
    wait_for(
        &format!("all {} lines in the bucket", ids.len()),
        Duration::from_secs(120),
        || {
            if let Err(e) = agent.check_running() {
                panic!("{e}");
            }
            round += 1;
            let dir = env.subdir(&format!("dump-{bucket}-{round}"));
            let dump = moto.dump(bucket, &dir);
            let root = dir.join("central");
            let found: std::collections::HashSet<String> = StoreContents::read(&root, &env.host_id)
                .map_err(|e| format!("{e:#}"))?
                .line_ids()
                .into_iter()
                .collect();
            let missing = ids.iter().filter(|id| !found.contains(*id)).count();
            if missing == 0 {
                Ok((dump, root))
            } else {
                Err(format!("{missing} missing"))
            }
        },
    )
}

/// A collector storing into `s3://bucket/central` on `moto` at level C.
fn s3_collector(env: &TestEnv, moto: &Moto, bucket: &str) -> CollectorSetup {
    moto.create_bucket(bucket, true);
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    setup.store = format!("s3://{bucket}/central").into();
    setup.level = "C".into();
    setup.extra = vec![
        "--s3-endpoint".into(),
        moto.endpoint.clone(),
        "--s3-region".into(),
        "us-east-1".into(),
    ];
    setup
}

#[test]
fn agents_to_collector_to_s3_with_object_lock() {
    let env = TestEnv::new("col-s3");
    let moto = Moto::start();
    let bucket = "custody-central";
    let setup = s3_collector(&env, &moto, bucket);
    let enroll = setup.enroll(&env.host_id);
    let collector = CollectorProcess::start(&setup);
    // The bucket has no lifecycle rule: a warning, not a refusal.
    assert!(
        collector.log().contains("no enabled lifecycle rule"),
        "{}",
        collector.log()
    );
    let mut writer = LineWriter::new(env.log("app.log"), "cs");
    writer.append(testdata_lines(), 400);
    let mut agent = AgentProcess::start(&agent_to(&env, &setup, &enroll));
    writer.append(testdata_lines(), 400);
    let ids = writer.ids().to_vec();
    let (dump, root) = wait_for_bucket_ids(&moto, bucket, &env, &ids, &mut agent);
    agent.stop_clean(Duration::from_secs(60));
    let store = StoreContents::read(&root, &env.host_id).unwrap();
    store.assert_clean();
    assert_exactly_once(&ids, &store.line_ids());
    let check = store.check_against_sources(&[&env.logs]);
    assert!(
        check.mismatches.is_empty() && check.checked > 0,
        "{:?}",
        check.mismatches
    );
    let objects = dump["objects"].as_array().expect("objects");
    assert!(!objects.is_empty());
    for o in objects {
        assert_eq!(o["lock_mode"], "COMPLIANCE", "{o}");
        assert!(o["retain_until"].is_string(), "{o}");
    }
    assert!(setup.findings().is_empty(), "{:?}", setup.findings());
}

#[test]
fn check_config_names_the_collector_keys_and_files() {
    let env = TestEnv::new("col-check");
    let setup = CollectorSetup::new(&env.subdir("collector"));
    let enroll = setup.enroll(&env.host_id);
    let base = |extra: &[&str]| {
        let mut args: Vec<String> = vec![
            "check-config".into(),
            "--store".into(),
            setup.url(),
            "--state-dir".into(),
            env.state.to_string_lossy().into_owned(),
            "--host-id".into(),
            env.host_id.clone(),
            "--source".into(),
            format!("app={}/app.log", env.logs.display()),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        agent_output(&args)
    };
    let out = base(&["--enrollment-dir", &enroll.to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("store: collector https://127.0.0.1:"),
        "{stdout}"
    );
    assert!(stdout.contains("enrollment material readable"), "{stdout}");

    let out = base(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("--collector-ca: not set") || stderr.contains("collector_ca: not set"),
        "{stderr}"
    );

    let empty = env.subdir("empty-enrollment");
    let out = base(&["--enrollment-dir", &empty.to_string_lossy()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("problem:") && stdout.contains("ca.pem"),
        "{stdout}"
    );
}

/// A snapshot stored through the collector is checked on receipt like an
/// auditor would check it: a sound bundle raises nothing; a bundle altered
/// on the way is kept (evidence of tampering is evidence too) and reported
/// as `bundle_invalid`.
#[test]
fn bundles_are_checked_on_receipt_and_kept() {
    let env = TestEnv::new("col-bundle");
    let setup = CollectorSetup::new(&env.subdir("collector"));
    let enroll = setup.enroll(&env.host_id);
    let mut collector = CollectorProcess::start(&setup);
    let mut writer = LineWriter::new(env.log("app.log"), "cbu");
    writer.append(testdata_lines(), 400);
    let opts = agent_to(&env, &setup, &enroll);
    // Run once so the host key is published and the lines are shipped.
    let mut agent = AgentProcess::start(&opts);
    wait_for_host_ids(
        &setup,
        &env.host_id,
        writer.ids(),
        Duration::from_secs(120),
        &mut [&mut agent],
    );
    agent.stop_clean(Duration::from_secs(60));

    let out = custody_tests::bundle::snapshot(
        &opts,
        &["--incident", "INC-7", "--operator", "Alice Chen"],
    );
    custody_tests::bundle::assert_success("snapshot into the collector", &out);
    let bundles_dir = setup
        .store
        .join("v1")
        .join(&env.host_id)
        .join("bundles")
        .join("INC-7");
    let stored: Vec<PathBuf> = fs::read_dir(&bundles_dir)
        .unwrap_or_else(|e| panic!("no bundle under {}: {e}", bundles_dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tar"))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let sound = fs::read(&stored[0]).unwrap();
    // Stored, so held (the filesystem store's hold marker, FORMAT.md §9) and
    // received: the collector's own custody event beside it (§15.3, §15.4).
    let bundle_key = stored[0]
        .strip_prefix(&setup.store)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        setup.store.join(".holds").join(&bundle_key).exists(),
        "no legal hold on {bundle_key}"
    );
    let received = setup.store.join(layout::bundle_event_key(&bundle_key, 1));
    assert!(
        received.is_file(),
        "no received event {}",
        received.display()
    );
    assert!(
        setup.findings().is_empty(),
        "a sound bundle must raise nothing: {:?}",
        setup.findings()
    );

    // The same bundle with one byte of a copied log flipped, under another
    // evidence id, uploaded with the host's own certificate.
    let mut altered = sound.clone();
    let at = altered
        .windows(5)
        .position(|w| w == b"#cust")
        .expect("a copied log line in the bundle");
    altered[at] ^= 0x20;
    let name = format!(
        "v1/{}/bundles/INC-7/INC-7_{}_forged.tar",
        env.host_id, env.host_id
    );
    let curl = Curl::new(&setup, Some(&enroll));
    let reply = curl.put(&name, &altered, &env.subdir("scratch"));
    assert_eq!(reply.status, 201, "{}{}", reply.body, reply.stderr);
    assert_eq!(
        fs::read(setup.store.join(&name)).unwrap(),
        altered,
        "the altered bundle is kept as sent"
    );
    let findings = setup.findings();
    let invalid: Vec<_> = findings
        .iter()
        .filter(|f| f["kind"] == "bundle_invalid")
        .collect();
    assert_eq!(invalid.len(), 1, "{findings:?}");
    assert_eq!(invalid[0]["object"].as_str(), Some(name.as_str()));
    assert!(
        invalid[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("payload_hash_mismatch") || m.contains("data/")),
        "{}",
        invalid[0]
    );
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
}

/// More idle keep-alive TLS connections than `--max-connections` (an
/// agent fleet larger than the limit, each keeping its connection): the
/// collector closes the longest idle ones to make room, so a new agent
/// still gets its segments stored. The idle timeout is set far beyond the
/// test, so only making room can let the agent in. Then, with a short
/// idle timeout, idle connections and a slowloris (a request head never
/// finished) are closed on their own.
#[test]
fn idle_connections_make_room_for_new_agents() {
    let env = TestEnv::new("col-idle");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    setup.extra = vec![
        "--max-connections".into(),
        "8".into(),
        "--idle-timeout-s".into(),
        "600".into(),
    ];
    let idle_enroll = setup.enroll("idle-fleet");
    let enroll = setup.enroll(&env.host_id);
    let mut collector = CollectorProcess::start(&setup);

    let mut idle: Vec<IdleTls> = (0..12)
        .map(|_| IdleTls::open(&setup, &idle_enroll, b""))
        .collect();
    let full = wait_for(
        "8 idle connections holding every slot, the older ones closed to make room",
        Duration::from_secs(60),
        || {
            collector.check_running()?;
            let open = setup.metric("custody_collector_connections");
            let made_room = setup.metric("custody_collector_connections_closed_for_room_total");
            let alive = idle.iter_mut().map(|c| c.is_open()).filter(|o| *o).count();
            if open == 8.0 && made_room >= 4.0 && alive == 8 {
                Ok(made_room)
            } else {
                Err(format!(
                    "{open} connections, {made_room} closed for room, {alive} s_clients alive"
                ))
            }
        },
    );

    let mut writer = LineWriter::new(env.log("app.log"), "idle");
    writer.append(testdata_lines(), 200);
    let started = Instant::now();
    let mut agent = AgentProcess::start(&agent_to(&env, &setup, &enroll));
    let ids = writer.ids().to_vec();
    wait_for_host_ids(
        &setup,
        &env.host_id,
        &ids,
        Duration::from_secs(90),
        &mut [&mut agent],
    );
    let took = started.elapsed();
    let made_room = setup.metric("custody_collector_connections_closed_for_room_total");
    assert!(
        made_room > full,
        "the agent got in without an idle connection being closed? {made_room} vs {full}"
    );
    assert_eq!(
        setup.metric("custody_collector_connections_closed_idle_total"),
        0.0,
        "nothing reached the 600 s idle timeout"
    );
    agent.stop_clean(Duration::from_secs(60));
    assert_complete(&setup, &env, &ids);
    eprintln!(
        "a new agent's {} lines stored {took:?} after it started, with every slot idle",
        ids.len()
    );
    assert_eq!(collector.sigterm(Duration::from_secs(30)).code(), Some(0));
    drop(collector);
    idle.clear();

    // A short idle timeout: idle connections and a slowloris are closed
    // without any pressure.
    setup.extra = vec!["--idle-timeout-s".into(), "2".into()];
    let collector = CollectorProcess::start(&setup);
    let mut quiet: Vec<IdleTls> = (0..3)
        .map(|_| IdleTls::open(&setup, &idle_enroll, b""))
        .collect();
    quiet.push(IdleTls::open(
        &setup,
        &idle_enroll,
        b"GET /v1/list HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
    ));
    wait_for(
        "idle connections and the slowloris closed by the 2 s idle timeout",
        Duration::from_secs(60),
        || {
            let alive = quiet.iter_mut().map(|c| c.is_open()).filter(|o| *o).count();
            let closed = setup.metric("custody_collector_connections_closed_idle_total");
            let open = setup.metric("custody_collector_connections");
            if alive == 0 && closed >= 4.0 && open == 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{alive} s_clients alive, {closed} closed idle, {open} open"
                ))
            }
        },
    );
    drop(collector);
}

/// `custody-collector revoke --host-id` while the collector serves: the
/// host's certificate is refused from the next request on (curl and the
/// real agent alike, with a reason, logged and counted), nothing the agent
/// wrote meanwhile is lost, and a certificate from enrolling the host
/// again works.
#[test]
fn revoked_certificates_are_refused_until_the_host_enrolls_again() {
    let env = TestEnv::new("col-revoke");
    let setup = CollectorSetup::new(&env.subdir("collector"));
    let enroll = setup.enroll(&env.host_id);
    let collector = CollectorProcess::start(&setup);
    let mut writer = LineWriter::new(env.log("app.log"), "rv");
    writer.append(testdata_lines(), 100);
    let mut agent = AgentProcess::start(&agent_to(&env, &setup, &enroll));
    wait_for_host_ids(
        &setup,
        &env.host_id,
        writer.ids(),
        Duration::from_secs(60),
        &mut [&mut agent],
    );
    let old = Curl::new(&setup, Some(&enroll));
    let list = format!("/v1/list?prefix=v1/{}/", env.host_id);
    assert_status(
        &old.request("GET", &list, None, &[]),
        200,
        "keys",
        "before revocation",
    );

    // Revoke by host id, with the stock tool's serial cross-checked.
    let serial = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(enroll.join("client.pem"))
        .output()
        .expect("openssl x509");
    let serial = String::from_utf8_lossy(&serial.stdout)
        .trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_lowercase();
    let out = std::process::Command::new(&bins().collector)
        .args(["revoke", "--ca-dir"])
        .arg(&setup.ca_dir)
        .args(["--host-id", &env.host_id])
        .output()
        .expect("custody-collector revoke");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("revoked serial {serial}")),
        "{stdout}"
    );

    let refused = old.request("GET", &list, None, &[]);
    assert_status(&refused, 403, "revoked", "a revoked certificate");
    assert!(refused.body.contains(&serial), "{}", refused.body);
    assert!(refused.body.contains("enroll"), "{}", refused.body);
    assert!(
        setup.metric("custody_collector_revoked_certificate_refusals_total") >= 1.0,
        "{:?}",
        setup.metrics()
    );
    assert!(
        collector.log().contains("was revoked"),
        "{}",
        collector.log()
    );

    // The running agent is refused too and keeps what it reads meanwhile.
    writer.append(testdata_lines(), 100);
    wait_for(
        "the agent to report the revocation",
        Duration::from_secs(60),
        || {
            agent.check_running()?;
            let st = read_status(&env.state)?;
            match st["last_ship_error"].as_str() {
                Some(e) if e.contains("revoked") => Ok(()),
                other => Err(format!("last_ship_error {other:?}")),
            }
        },
    );
    agent.sigterm(Duration::from_secs(60));

    // Enrolling again gives a certificate that works; the old one stays refused.
    let again = setup.enroll_into(&env.host_id, "enroll-again");
    let new = Curl::new(&setup, Some(&again));
    assert_status(
        &new.request("GET", &list, None, &[]),
        200,
        "keys",
        "the new certificate",
    );
    assert_status(
        &old.request("GET", &list, None, &[]),
        403,
        "revoked",
        "the old one still",
    );
    let mut agent = AgentProcess::start(&agent_to(&env, &setup, &again));
    writer.append(testdata_lines(), 50);
    let ids = writer.ids().to_vec();
    wait_for_host_ids(
        &setup,
        &env.host_id,
        &ids,
        Duration::from_secs(90),
        &mut [&mut agent],
    );
    agent.stop_clean(Duration::from_secs(60));
    assert_complete(&setup, &env, &ids);

    // Revoking what nobody recorded says how to do it instead.
    let out = std::process::Command::new(&bins().collector)
        .args(["revoke", "--ca-dir"])
        .arg(&setup.ca_dir)
        .args(["--host-id", "never-enrolled"])
        .output()
        .expect("custody-collector revoke");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--serial"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(collector);
}
