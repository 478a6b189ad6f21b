//! Remote snapshots through a running collector (FORMAT.md §15), with the
//! real binaries: `custody-collector incident open | status | release`,
//! agents shipping to the collector and snapshotting when named, a real
//! S3-protocol server (moto) behind the collector, legal holds read back
//! with a stock client (boto3), and `custody-verify bundle --store s3://…`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use custody_evidence::bundle::custody_log::{Action, EventLine};
use custody_evidence::bundle::facts::BundleFacts;
use custody_evidence::timefmt::parse_utc;
use custody_tests::bundle::verify_bundle;
use custody_tests::collector::agent_to;
use custody_tests::moto::Moto;
use custody_tests::*;
use serde_json::Value;

/// Finishing a snapshot and its upload: generous (debug builds, a shared machine).
const FINISH: Duration = Duration::from_secs(90);

fn collector(args: &[&str]) -> Output {
    Command::new(&bins().collector)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run custody-collector: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `incident status ID --json`.
fn status(setup: &CollectorSetup, id: &str) -> Value {
    let out = collector(&[
        "incident",
        "status",
        id,
        "--json",
        "--state-dir",
        &setup.state.to_string_lossy(),
    ]);
    assert!(out.status.success(), "incident status {id}: {}", text(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status JSON: {e}: {}", text(&out)))
}

fn host_rows(status: &Value) -> BTreeMap<String, Value> {
    status["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .map(|h| (h["host"].as_str().expect("host").to_string(), h.clone()))
        .collect()
}

/// Waits until every host in `hosts` is `stored` (panics on `failed`).
fn wait_stored(
    setup: &CollectorSetup,
    id: &str,
    hosts: &[&str],
    agents: &mut [&mut AgentProcess],
) -> Value {
    wait_for(
        &format!("incident {id} stored on {hosts:?}"),
        FINISH,
        || {
            for a in agents.iter_mut() {
                if let Err(e) = a.check_running() {
                    panic!("{e}");
                }
            }
            let s = status(setup, id);
            let rows = host_rows(&s);
            for h in hosts {
                let row = rows.get(*h).ok_or(format!("no row for {h}"))?;
                match row["state"].as_str() {
                    Some("stored") => {}
                    Some("failed") => panic!("{h} failed: {row}"),
                    other => return Err(format!("{h} is {other:?}")),
                }
            }
            Ok(s)
        },
    )
}

/// Seconds from the incident's opening to a host's `started`.
fn start_delay(status: &Value, host: &str) -> f64 {
    let opened = parse_utc(status["incident"]["opened"].as_str().expect("opened")).unwrap();
    let row = &host_rows(status)[host];
    let started = parse_utc(
        row["started"]
            .as_str()
            .unwrap_or_else(|| panic!("{host} never reported started: {row}")),
    )
    .unwrap();
    (started - opened).as_seconds_f64()
}

/// The bucket's objects by key (prefix `central/` removed), downloaded into `dir`.
fn objects(moto: &Moto, bucket: &str, dir: &Path) -> BTreeMap<String, Value> {
    let dump = moto.dump(bucket, dir);
    dump["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            let key = o["key"].as_str().expect("key");
            (
                key.strip_prefix("central/").unwrap_or(key).to_string(),
                o.clone(),
            )
        })
        .collect()
}

fn bundles_of(objs: &BTreeMap<String, Value>, host: &str, id: &str) -> Vec<String> {
    let prefix = format!("v1/{host}/bundles/{id}/");
    objs.keys()
        .filter(|k| k.starts_with(&prefix) && k.ends_with(".tar"))
        .cloned()
        .collect()
}

fn event_at(dir: &Path, bundle_key: &str, seq: u64) -> EventLine {
    let key = custody_evidence::layout::bundle_event_key(bundle_key, seq);
    let bytes = std::fs::read(dir.join("central").join(&key))
        .unwrap_or_else(|e| panic!("custody event {key} not in the bucket: {e}"));
    let line = EventLine::decode(&bytes).unwrap_or_else(|e| panic!("{key}: {e}"));
    line.verify_signature()
        .unwrap_or_else(|e| panic!("{key}: signature: {e}"));
    line
}

#[test]
fn remote_snapshots_are_held_in_s3_verified_and_released() {
    let env = TestEnv::new("inc");
    let moto = Moto::start();
    let bucket = "custody-incidents";
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
    let hosts: Vec<TestEnv> = ["inc-a", "inc-b", "inc-c"]
        .iter()
        .map(|n| TestEnv::new(n))
        .collect();
    let names: Vec<&str> = hosts.iter().map(|e| e.host_id.as_str()).collect();
    let (a, b, c) = (names[0], names[1], names[2]);
    let _collector = CollectorProcess::start(&setup);
    let mut agents: Vec<AgentProcess> = hosts
        .iter()
        .map(|e| {
            let mut w = LineWriter::new(e.log("app.log"), "inc");
            w.append(testdata_lines(), 200);
            let enroll = setup.enroll(&e.host_id);
            AgentProcess::start(&agent_to(e, &setup, &enroll))
        })
        .collect();
    // Something shipped for every host, so the bundles reference objects.
    wait_for(
        "segments and digests of every host in the bucket",
        FINISH,
        || {
            let objs = objects(&moto, bucket, &env.subdir("dump-shipped"));
            for h in &names {
                let has = |suffix: &str| {
                    objs.keys()
                        .any(|k| k.starts_with(&format!("v1/{h}/")) && k.ends_with(suffix))
                };
                if !(has(".seg.json") && has(".digest.json.sig")) {
                    return Err(format!("{h} has not shipped yet"));
                }
            }
            Ok(())
        },
    );

    // Unknown incidents are refused clearly.
    let state = setup.state.to_string_lossy().into_owned();
    let out = collector(&["incident", "status", "INC-NOPE", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no incident INC-NOPE"),
        "{}",
        text(&out)
    );
    let s3_site = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = vec![
            "--state-dir".into(),
            state.clone(),
            "--ca-dir".into(),
            setup.ca_dir.to_string_lossy().into_owned(),
            "--store".into(),
            format!("s3://{bucket}/central"),
            "--s3-endpoint".into(),
            moto.endpoint.clone(),
            "--level".into(),
            "C".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let mut args = vec!["incident", "release", "INC-NOPE", "--operator", "bob"];
    let site = s3_site(&[]);
    args.extend(site.iter().map(String::as_str));
    let out = collector(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no incident INC-NOPE"),
        "{}",
        text(&out)
    );

    // Open for a and b only.
    let hosts_arg = format!("{a},{b}");
    let out = collector(&[
        "incident",
        "open",
        "--id",
        "INC-1",
        "--hosts",
        &hosts_arg,
        "--operator",
        "alice",
        "--reason",
        "suspected intrusion on the web tier",
        "--state-dir",
        &state,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("opened incident INC-1 for 2 host(s)"),
        "{}",
        text(&out)
    );
    let again = collector(&[
        "incident",
        "open",
        "--id",
        "INC-1",
        "--hosts",
        a,
        "--operator",
        "alice",
        "--reason",
        "x",
        "--state-dir",
        &state,
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{}",
        text(&again)
    );

    let mut refs: Vec<&mut AgentProcess> = agents.iter_mut().collect();
    let done = wait_stored(&setup, "INC-1", &[a, b], &mut refs);
    for h in [a, b] {
        let delay = start_delay(&done, h);
        assert!(
            delay <= 10.0,
            "{h} started {delay} s after the incident was opened (promise: 10 s)"
        );
    }
    let rows = host_rows(&done);
    assert!(!rows.contains_key(c), "a host not named has a row: {done}");
    let table = collector(&["incident", "status", "INC-1", "--state-dir", &state]);
    let table_text = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.status.success(), "{}", text(&table));
    assert!(
        table_text.contains("HOST") && table_text.contains("stored") && table_text.contains(a),
        "{table_text}"
    );
    assert!(table_text.contains("2 stored"), "{table_text}");

    // In the bucket: each bundle and everything it references is held.
    let dump_dir = env.subdir("dump-held");
    let objs = objects(&moto, bucket, &dump_dir);
    let mut bundle_keys = Vec::new();
    for h in [a, b] {
        let keys = bundles_of(&objs, h, "INC-1");
        assert_eq!(keys.len(), 1, "bundles of {h}: {keys:?}");
        let key = keys[0].clone();
        assert_eq!(objs[&key]["legal_hold"], "ON", "{key}: {}", objs[&key]);
        let file = dump_dir.join("central").join(&key);
        let facts = BundleFacts::read(std::fs::File::open(&file).unwrap()).unwrap();
        let referenced = facts.referenced_keys();
        assert!(
            referenced.iter().any(|k| k.ends_with(".zst")),
            "{key} references no segment: {referenced:?}"
        );
        assert!(
            referenced.iter().any(|k| k.ends_with(".digest.json")),
            "{key} references no digest"
        );
        for r in &referenced {
            let o = objs
                .get(r)
                .unwrap_or_else(|| panic!("{r} referenced by {key} is not in the bucket"));
            assert_eq!(o["legal_hold"], "ON", "{r}: {o}");
        }
        assert_eq!(
            rows[h]["held_objects"].as_u64(),
            Some(referenced.len() as u64 + 1),
            "{}",
            rows[h]
        );
        // The collector's own signed `received` event, chained to the bundle's log.
        let received = event_at(&dump_dir, &key, 1);
        assert_eq!(received.event.action, Action::Received);
        assert_eq!(
            received.event.prev_event,
            Some(custody_evidence::Sha256::digest(&facts.last_event.0))
        );
        // The auditors' verifier, against the S3 store itself.
        let v = verify_bundle(
            &file,
            &[
                "--store",
                &format!("s3://{bucket}/central"),
                "--s3-endpoint",
                &moto.endpoint,
                "--s3-region",
                "us-east-1",
            ],
        );
        assert_eq!(v.code, Some(0), "{}\n{}", v.stdout, v.stderr);
        let checked = v
            .json
            .as_ref()
            .and_then(|j| j["store_objects_checked"].as_u64())
            .unwrap_or(0);
        assert_eq!(checked, referenced.len() as u64, "{}", v.stdout);
        // The log checked is the bag's `collected` plus the collector's `received`.
        let events = v.json.as_ref().and_then(|j| j["custody_events"].as_u64());
        assert_eq!(events, Some(2), "{}", v.stdout);
        bundle_keys.push((key, referenced));
    }
    // The host not named took no snapshot.
    assert!(bundles_of(&objs, c, "INC-1").is_empty());
    assert!(
        !hosts[2].state.join("incidents.json").exists(),
        "host c acted on an incident"
    );
    assert!(!hosts[2].state.join("bundles").exists());

    // Release: every hold lifted, and a signed event records who and why.
    let mut args = vec![
        "incident",
        "release",
        "INC-1",
        "--operator",
        "bob",
        "--reason",
        "root-cause analysis complete",
    ];
    args.extend(site.iter().map(String::as_str));
    let out = collector(&args);
    assert!(out.status.success(), "{}", text(&out));
    let released_dir = env.subdir("dump-released");
    let objs = objects(&moto, bucket, &released_dir);
    for (key, referenced) in &bundle_keys {
        assert_eq!(objs[key]["legal_hold"], "OFF", "{key}: {}", objs[key]);
        for r in referenced {
            assert_eq!(objs[r]["legal_hold"], "OFF", "{r}: {}", objs[r]);
        }
        let ev = event_at(&released_dir, key, 2);
        assert_eq!(ev.event.action, Action::Released);
        assert_eq!(ev.event.actor, "bob");
        assert!(
            ev.event.purpose.contains("root-cause analysis complete"),
            "{}",
            ev.event.purpose
        );
        let file = dump_dir.join("central").join(key);
        let v = verify_bundle(
            &file,
            &[
                "--store",
                &format!("s3://{bucket}/central"),
                "--s3-endpoint",
                &moto.endpoint,
            ],
        );
        assert_eq!(v.code, Some(0), "{}\n{}", v.stdout, v.stderr);
        let events = v.json.as_ref().and_then(|j| j["custody_events"].as_u64());
        assert_eq!(
            events,
            Some(3),
            "collected, received, released: {}",
            v.stdout
        );
    }
    let after = status(&setup, "INC-1");
    assert_eq!(after["released"]["operator"], "bob", "{after}");
    let out = collector(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second release: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already released"),
        "{}",
        text(&out)
    );

    // --all: every enrolled host, c included.
    let ca = setup.ca_dir.to_string_lossy().into_owned();
    let out = collector(&[
        "incident",
        "open",
        "--id",
        "INC-2",
        "--all",
        "--operator",
        "alice",
        "--reason",
        "sweep",
        "--state-dir",
        &state,
        "--ca-dir",
        &ca,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("for 3 host(s)"),
        "{}",
        text(&out)
    );
    let mut refs: Vec<&mut AgentProcess> = agents.iter_mut().collect();
    let done = wait_stored(&setup, "INC-2", &[a, b, c], &mut refs);
    for h in [a, b, c] {
        let delay = start_delay(&done, h);
        assert!(
            delay <= 10.0,
            "{h} started {delay} s after the incident was opened"
        );
    }
    let objs = objects(&moto, bucket, &env.subdir("dump-all"));
    for h in [a, b, c] {
        let keys = bundles_of(&objs, h, "INC-2");
        assert_eq!(keys.len(), 1, "{h}: {keys:?}");
        assert_eq!(objs[&keys[0]]["legal_hold"], "ON");
    }
    for a in agents.iter_mut() {
        a.stop_clean(Duration::from_secs(60));
    }
}

/// A bundle larger than the collector accepts fails with a status that
/// says so (the bundle stays on the host).
#[test]
fn a_bundle_too_large_for_the_collector_fails_with_the_reason() {
    let env = TestEnv::new("inc-big");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    setup.extra = vec!["--max-body-bytes".into(), "1048576".into()];
    let enroll = setup.enroll(&env.host_id);
    let _collector = CollectorProcess::start(&setup);
    // The agent ships only app.log; the snapshot also copies its rotated
    // sibling app.log.1 (2 MiB), so the bundle exceeds 1 MiB.
    let mut rng = TestRng::new(7);
    let mut big = Vec::new();
    while big.len() < 2 << 20 {
        big.extend_from_slice(
            format!("{:016x}{:016x}\n", rng.next_u64(), rng.next_u64()).as_bytes(),
        );
    }
    std::fs::write(env.log("app.log.1"), &big).unwrap();
    let mut w = LineWriter::new(env.log("app.log"), "big");
    w.append(testdata_lines(), 50);
    let mut opts = AgentOptions::new(&env).source("app", &env.log("app.log").to_string_lossy());
    opts.store = setup.url().into();
    opts.extra_args = vec![
        "--enrollment-dir".into(),
        enroll.to_string_lossy().into_owned(),
    ];
    let mut agent = AgentProcess::start(&opts);
    let state = setup.state.to_string_lossy().into_owned();
    let out = collector(&[
        "incident",
        "open",
        "--id",
        "INC-BIG",
        "--hosts",
        &env.host_id,
        "--operator",
        "alice",
        "--reason",
        "large",
        "--state-dir",
        &state,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let row = wait_for("the large snapshot to fail", FINISH, || {
        if let Err(e) = agent.check_running() {
            panic!("{e}");
        }
        let s = status(&setup, "INC-BIG");
        let row = host_rows(&s)[&env.host_id].clone();
        match row["state"].as_str() {
            Some("failed") => Ok(row),
            Some("stored") => panic!("stored a bundle above max_body_bytes: {row}"),
            other => Err(format!("{other:?}")),
        }
    });
    let reason = row["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("413") && reason.contains("max_body_bytes"),
        "{reason}"
    );
    assert!(
        reason.contains("kept at"),
        "the reason must say where the bundle is: {reason}"
    );
    let table = collector(&["incident", "status", "INC-BIG", "--state-dir", &state]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("failed: "),
        "{}",
        text(&table)
    );
    agent.stop_clean(Duration::from_secs(60));
}

/// Without a collector: `custody-agent snapshot` into an S3 store places the
/// legal holds itself (FORMAT.md §15.3), seen with boto3.
#[test]
fn a_snapshot_straight_to_s3_holds_what_it_references() {
    let env = TestEnv::new("inc-s3");
    let moto = Moto::start();
    let bucket = "custody-direct";
    moto.create_bucket(bucket, true);
    let mut opts = AgentOptions::new(&env)
        .source("app", &format!("{}/app.log", env.logs.display()))
        .flag("s3-endpoint", &moto.endpoint)
        .flag("s3-region", "us-east-1");
    opts.store = format!("s3://{bucket}/central").into();
    let mut w = LineWriter::new(env.log("app.log"), "direct");
    w.append(testdata_lines(), 100);
    let mut agent = AgentProcess::start(&opts);
    wait_for("segments in the bucket", FINISH, || {
        if let Err(e) = agent.check_running() {
            panic!("{e}");
        }
        let objs = objects(&moto, bucket, &env.subdir("dump-direct-shipped"));
        let seg = objs.keys().any(|k| k.ends_with(".seg.json"));
        let sig = objs.keys().any(|k| k.ends_with(".digest.json.sig"));
        if seg && sig {
            Ok(())
        } else {
            Err("not shipped yet".into())
        }
    });
    agent.stop_clean(Duration::from_secs(60));
    let out =
        custody_tests::bundle::snapshot(&opts, &["--incident", "INC-S3", "--operator", "carol"]);
    custody_tests::bundle::assert_success("snapshot into S3", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("legal hold placed"), "{stdout}");
    let dir = env.subdir("dump-direct");
    let objs = objects(&moto, bucket, &dir);
    let keys = bundles_of(&objs, &env.host_id, "INC-S3");
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(objs[&keys[0]]["legal_hold"], "ON", "{}", objs[&keys[0]]);
    let facts = BundleFacts::read(std::fs::File::open(dir.join("central").join(&keys[0])).unwrap())
        .unwrap();
    let referenced = facts.referenced_keys();
    assert!(!referenced.is_empty());
    for r in &referenced {
        assert_eq!(objs[r]["legal_hold"], "ON", "{r}: {}", objs[r]);
    }
}
