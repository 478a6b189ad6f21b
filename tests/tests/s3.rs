//! The agent shipping to S3 (`--store s3://BUCKET/PREFIX`), through the real
//! binary, against a real S3-protocol server: moto in server mode, started
//! per test on a free port. What is in the bucket is read with boto3
//! (tests/s3/s3check.py), a stock client, and checked the way an auditor
//! would: payloads through the real `zstd -d`, hashes against records,
//! bytes against the source files, Object Lock mode and retain-until on
//! every object, deletion of a locked version refused.
//!
//! These tests do not skip when moto is missing: they fail and say
//! "install moto[server] and boto3 (pip)" (.ci/run installs them).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use custody_evidence::digest::DigestBody;
use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::segment::SegmentMeta;
use custody_evidence::timefmt;
use custody_tests::moto::{s3check, Moto};
use custody_tests::*;
use serde_json::Value;

const PREFIX: &str = "site-a";

fn agent_options(env: &TestEnv, moto: &Moto, bucket: &str, level: &str) -> AgentOptions {
    let mut opts = AgentOptions::new(env)
        .source("app", &format!("{}/app.log", env.logs.display()))
        .flag("s3-endpoint", &moto.endpoint)
        .flag("s3-region", "us-east-1");
    opts.store = PathBuf::from(format!("s3://{bucket}/{PREFIX}"));
    opts.level = level.to_string();
    opts
}

/// Downloads the bucket into a fresh directory and reads `host`'s objects
/// under the prefix as a store (the layout is the same as on disk).
fn read_bucket(
    moto: &Moto,
    bucket: &str,
    env: &TestEnv,
    round: &str,
) -> (Value, StoreContents, PathBuf) {
    let dir = env.subdir(&format!("dump-{round}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dump dir");
    let dump = moto.dump(bucket, &dir);
    let root = dir.join(PREFIX);
    let contents = StoreContents::read(&root, &env.host_id).expect("bucket readable as a store");
    (dump, contents, root)
}

/// Waits until every id is in the bucket; returns the last dump.
fn wait_for_bucket_ids(
    moto: &Moto,
    bucket: &str,
    env: &TestEnv,
    ids: &[String],
    agent: &mut AgentProcess,
) -> (Value, StoreContents, PathBuf) {
    let mut round = 0u32;
    wait_for(
        &format!("all {} lines in s3://{bucket}/{PREFIX}", ids.len()),
        Duration::from_secs(90),
        || {
            if let Err(e) = agent.check_running() {
                panic!("{e}");
            }
            round += 1;
            let (dump, contents, root) = read_bucket(moto, bucket, env, &round.to_string());
            let found: HashSet<String> = contents.line_ids().into_iter().collect();
            let missing = ids.iter().filter(|id| !found.contains(*id)).count();
            if missing == 0 {
                Ok((dump, contents, root))
            } else {
                Err(format!("{missing} of {} missing", ids.len()))
            }
        },
    )
}

/// The retain-until S3 must hold for a time of `secs` + `nanos`: rounded
/// up to the whole second (never earlier than the record says).
fn lock_secs(secs: i64, nanos: u32) -> i64 {
    secs + i64::from(nanos > 0)
}

/// Unix seconds of an RFC 3339 time as s3check.py prints it.
fn secs_of(text: &Value) -> i64 {
    let t = text.as_str().unwrap_or_else(|| panic!("no time in {text}"));
    let parsed = timefmt::parse_utc(t).unwrap_or_else(|e| panic!("{t:?}: {e}"));
    assert_eq!(
        parsed.nanosecond(),
        0,
        "retain-until {t} is not whole seconds"
    );
    parsed.unix_timestamp()
}

fn sha256_b64(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every object the agent shipped: locked COMPLIANCE until the retention the
/// records and digests state, with our SHA-256; payloads decompress to
/// exactly the bytes written; a locked version cannot be deleted.
#[test]
fn agent_ships_locked_checksummed_objects_to_s3() {
    let env = TestEnv::new("s3e2e");
    let moto = Moto::start();
    let bucket = "custody-e2e";
    moto.create_bucket(bucket, true);
    let mut writer = LineWriter::new(env.log("app.log"), "s3e2e");
    writer.append(testdata_lines(), 300);
    let mut agent = AgentProcess::start(&agent_options(&env, &moto, bucket, "C"));
    agent.wait_started(&env.state, Duration::from_secs(60));
    writer.append(testdata_lines(), 300);
    wait_for_bucket_ids(&moto, bucket, &env, writer.ids(), &mut agent);
    agent.stop_clean(Duration::from_secs(30));

    let (dump, contents, root) = read_bucket(&moto, bucket, &env, "final");
    contents.assert_clean();
    assert_exactly_once(writer.ids(), &contents.line_ids());
    // Byte for byte: the whole source file, from offset 0 to its end.
    let source = std::fs::read(env.log("app.log")).expect("source file");
    assert_eq!(
        contents.files.len(),
        1,
        "one source file: {:?}",
        contents.files.len()
    );
    let file = &contents.files[0];
    assert_eq!((file.start, file.end()), (0, source.len() as u64));
    assert!(
        file.bytes == source,
        "reassembled bytes differ from app.log"
    );

    let policy = RetentionPolicy::new(Level::C, None).expect("level C policy");
    let objects = dump["objects"].as_array().expect("objects");
    let (mut segments, mut digests, mut keys) = (0, 0, 0);
    for o in objects {
        let key = o["key"].as_str().expect("key");
        let rel = key
            .strip_prefix(&format!("{PREFIX}/"))
            .expect("under the prefix");
        let bytes = std::fs::read(root.join(rel)).expect("downloaded object");
        assert_eq!(o["lock_mode"], "COMPLIANCE", "{o}");
        assert_eq!(
            o["checksum_sha256"].as_str(),
            Some(sha256_b64(&bytes).as_str()),
            "{o}"
        );
        let retain = secs_of(&o["retain_until"]);
        if rel.ends_with(".seg.json") || rel.ends_with(".zst") {
            let record_path = if rel.ends_with(".zst") {
                root.join(rel.replace(".zst", ".seg.json"))
            } else {
                root.join(rel)
            };
            let meta = SegmentMeta::decode(&std::fs::read(&record_path).expect("record"))
                .expect("record decodes");
            let want = meta.retain_until;
            assert_eq!(
                retain,
                lock_secs(want.unix_timestamp(), want.nanosecond()),
                "{o}"
            );
            segments += 1;
        } else if rel.ends_with(".digest.json") || rel.ends_with(".digest.json.sig") {
            let body_path = root.join(rel.trim_end_matches(".sig"));
            let body = DigestBody::decode(&std::fs::read(&body_path).expect("digest body"))
                .expect("digest decodes");
            let want = policy.retain_until(body.window_end);
            assert_eq!(
                retain,
                lock_secs(want.unix_timestamp(), want.nanosecond()),
                "{o}"
            );
            digests += 1;
        } else if rel.ends_with(".pub") {
            // Published at start-up with the policy's retention from then.
            let now = timefmt::now_utc_micros();
            let latest = policy.retain_until(now);
            assert!(
                retain <= lock_secs(latest.unix_timestamp(), latest.nanosecond()),
                "{o}"
            );
            assert!(retain > now.unix_timestamp() + 150 * 86_400, "{o}");
            keys += 1;
        } else {
            panic!("unexpected object {key}");
        }
    }
    assert!(
        segments >= 2 && digests >= 2 && keys == 1,
        "{segments} segment objects, {digests} digest objects, {keys} keys"
    );
    assert_eq!(
        dump["versions"].as_u64(),
        Some(objects.len() as u64),
        "one version per name: {dump}"
    );

    let payload = objects
        .iter()
        .filter_map(|o| o["key"].as_str())
        .find(|k| k.ends_with(".zst"))
        .expect("a payload");
    let refused = s3check(&["delete-version", &moto.endpoint, bucket, payload]);
    assert_eq!(
        refused["refused"], true,
        "deleting a locked version must be refused: {refused}"
    );
}

/// Level C refuses to start on a bucket without Object Lock, with the fix;
/// level D runs with a warning.
#[test]
fn a_bucket_without_object_lock_stops_level_c_and_warns_at_level_d() {
    let env = TestEnv::new("s3nolock");
    let moto = Moto::start();
    let bucket = "custody-unlocked";
    moto.create_bucket(bucket, false);
    let mut writer = LineWriter::new(env.log("app.log"), "s3nolock");
    writer.append(testdata_lines(), 50);

    let mut agent = AgentProcess::start(&agent_options(&env, &moto, bucket, "C"));
    let status = agent.wait_exit(Duration::from_secs(60));
    let log = agent.log();
    assert_eq!(
        status.code(),
        Some(1),
        "level C must refuse an unprotected bucket; log:\n{log}"
    );
    for needle in [
        "refusing to run",
        "aws --endpoint-url",
        "s3api create-bucket --bucket custody-unlocked --object-lock-enabled-for-bucket",
        "put-object-lock-configuration",
    ] {
        assert!(log.contains(needle), "missing {needle:?} in:\n{log}");
    }

    let mut agent = AgentProcess::start(&agent_options(&env, &moto, bucket, "D"));
    agent.wait_started(&env.state, Duration::from_secs(60));
    wait_for_bucket_ids(&moto, bucket, &env, writer.ids(), &mut agent);
    agent.stop_clean(Duration::from_secs(30));
    assert!(
        agent.log().contains("writing without Object Lock"),
        "{}",
        agent.log()
    );
}

/// The S3 server goes away under the agent: the status shows the error,
/// the spool grows, and after the server is back every line written during
/// the outage arrives exactly once.
///
/// moto keeps its data in memory, so the restarted server is empty (the
/// bucket is created again): objects shipped before the outage are lost
/// from the *server*, and only lines written during the outage are counted.
#[test]
fn s3_outage_spools_and_delivers_exactly_once_after() {
    let env = TestEnv::new("s3out");
    let mut moto = Moto::start();
    let bucket = "custody-outage";
    moto.create_bucket(bucket, true);
    let mut writer = LineWriter::new(env.log("app.log"), "s3out");
    writer.append(testdata_lines(), 100);
    let mut agent = AgentProcess::start(&agent_options(&env, &moto, bucket, "C"));
    agent.wait_started(&env.state, Duration::from_secs(60));
    let before = writer.take_ids();
    wait_for_bucket_ids(&moto, bucket, &env, &before, &mut agent);

    moto.stop();
    let mut during = Vec::new();
    let spool_at_outage = status::spool_bytes(&read_status(&env.state).expect("status"));
    for _ in 0..5 {
        writer.append(testdata_lines(), 60);
        std::thread::sleep(Duration::from_millis(150));
    }
    during.extend(writer.take_ids());
    let seen = wait_for(
        "the outage in status.json with a growing spool",
        Duration::from_secs(60),
        || {
            agent.check_running()?;
            let st = read_status(&env.state)?;
            let err = st
                .get("last_ship_error")
                .and_then(Value::as_str)
                .unwrap_or("");
            let spool = status::spool_bytes(&st);
            if !err.is_empty() && spool > spool_at_outage {
                Ok(st)
            } else {
                Err(format!(
                    "last_ship_error {err:?}, spool {spool} bytes (at outage {spool_at_outage})"
                ))
            }
        },
    );
    assert!(
        seen["last_ship_error"]
            .as_str()
            .unwrap_or("")
            .contains("s3://custody-outage"),
        "the error names the store: {seen}"
    );

    moto.restart();
    moto.create_bucket(bucket, true);
    writer.append(testdata_lines(), 40);
    during.extend(writer.take_ids());
    wait_for_bucket_ids(&moto, bucket, &env, &during, &mut agent);
    agent.stop_clean(Duration::from_secs(30));
    let (_, contents, _) = read_bucket(&moto, bucket, &env, "after");
    let wanted: HashSet<&str> = during.iter().map(String::as_str).collect();
    let found: Vec<String> = contents
        .line_ids()
        .into_iter()
        .filter(|id| wanted.contains(id.as_str()))
        .collect();
    assert_exactly_once(&during, &found);
    let st = read_status(&env.state).expect("status");
    assert_eq!(status::spool_bytes(&st), 0, "spool drained: {st}");
}

/// The longest retention of `level` (default months) in whole days, over
/// every day of eight years (leap years included): what the lifecycle
/// rule's `Expiration.Days` must at least wait.
fn longest_retention_days(level: Level) -> i64 {
    let policy = RetentionPolicy::new(level, None).expect("default policy");
    // 2024-01-01T12:00:00Z.
    let start = time::OffsetDateTime::from_unix_timestamp(1_704_110_400).expect("a date");
    (0..8 * 366)
        .map(|d| {
            let written = start + time::Duration::days(d);
            let kept = policy.retain_until(written) - written;
            // Whole days, rounded up.
            (kept.whole_seconds() + 86_399) / 86_400
        })
        .max()
        .expect("days")
}

/// docs/s3-lifecycle.json, the rule docs/s3.md shows: applied with a stock
/// client (boto3 `put_bucket_lifecycle_configuration`) it reads back
/// unchanged; its `Expiration.Days` waits at least the longest retention of
/// every level (evidence/src/retention.rs); and what it does to a locked
/// version before retain-until (a delete marker, then deleting the
/// noncurrent version by id) leaves the version in place, refused.
#[test]
fn the_lifecycle_rule_applies_and_never_deletes_locked_evidence() {
    let moto = Moto::start();
    let bucket = "custody-lifecycle";
    moto.create_bucket(bucket, true);
    let file = bins::workspace_root().join("docs/s3-lifecycle.json");
    let file_text = std::fs::read_to_string(&file).expect("docs/s3-lifecycle.json");
    let rule: Value = serde_json::from_str(&file_text).expect("docs/s3-lifecycle.json is JSON");

    // docs/s3.md shows the same rule.
    let doc =
        std::fs::read_to_string(bins::workspace_root().join("docs/s3.md")).expect("docs/s3.md");
    let start = doc
        .find("```json lifecycle")
        .expect("docs/s3.md has a ```json lifecycle block");
    let body = &doc[start..];
    let body = &body[body.find('\n').expect("block body") + 1..];
    let shown: Value = serde_json::from_str(&body[..body.find("```").expect("end of the block")])
        .expect("the documented rule is JSON");
    assert_eq!(shown, rule, "docs/s3.md and docs/s3-lifecycle.json differ");

    let back = s3check(&[
        "lifecycle",
        &moto.endpoint,
        bucket,
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        back, rule,
        "the rule read back differs from docs/s3-lifecycle.json"
    );

    // The days match the retention of every level.
    let rules = rule["Rules"].as_array().expect("Rules");
    let expire = rules
        .iter()
        .find(|r| r["Expiration"]["Days"].is_u64())
        .expect("a rule with Expiration.Days");
    assert_eq!(expire["Status"], "Enabled");
    let days = expire["Expiration"]["Days"].as_i64().expect("Days");
    let noncurrent = expire["NoncurrentVersionExpiration"]["NoncurrentDays"]
        .as_i64()
        .expect("NoncurrentVersionExpiration.NoncurrentDays");
    assert!(noncurrent >= 1, "{expire}");
    for level in Level::ALL {
        let longest = longest_retention_days(level);
        assert!(
            days >= longest,
            "Expiration.Days {days} is shorter than level {level}'s longest retention, {longest} days: \
             the delete marker would hide evidence still retained"
        );
        assert!(
            days <= longest + 14,
            "Expiration.Days {days} keeps level {level}'s evidence far beyond its {longest} days"
        );
    }
    assert!(
        rules
            .iter()
            .any(|r| r["Expiration"]["ExpiredObjectDeleteMarker"] == true
                && r["Status"] == "Enabled"),
        "a rule removes the delete markers left behind"
    );

    // A locked version, under the rule, before its retain-until date.
    let key = "v1/web01/segments/app/locked.zst";
    let put = s3check(&["put-locked", &moto.endpoint, bucket, key, "1"]);
    let version = put["version_id"].as_str().expect("version id").to_string();
    let early = s3check(&["expire-early", &moto.endpoint, bucket, key]);
    assert_eq!(early["delete_marker"], true, "{early}");
    let deletes = early["version_deletes"]
        .as_array()
        .expect("version_deletes");
    assert_eq!(deletes.len(), 1, "{early}");
    assert_eq!(
        deletes[0]["refused"], true,
        "a locked version was deleted: {early}"
    );
    assert_eq!(deletes[0]["code"], "AccessDenied", "{early}");
    assert_eq!(
        early["versions_left"],
        serde_json::json!([version]),
        "the locked version is still there: {early}"
    );
}
