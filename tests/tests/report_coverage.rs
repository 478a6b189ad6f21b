//! `custody-report coverage` over a store the real agent wrote: hosts,
//! streams, bytes, first and last preserved times, the form's bucket, and
//! the gap left by stopping the agent for longer than `--gap-threshold`
//! (a quiet interval in each stream, and the agent-down window in the
//! host's digests). The generated six-month stores (buckets, the A–C flag,
//! HTML escaping) are in report/tests/coverage_synth.rs.

use std::process::Command;
use std::time::{Duration, Instant};

use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
/// How long the agent is stopped; the threshold below is well under it,
/// and the pauses of a running agent (300 ms segments, writes every
/// 200 ms) are well under the threshold even on a loaded machine.
const STOPPED: Duration = Duration::from_secs(8);
const THRESHOLD: &str = "4s";

fn write_for(writers: &mut [LineWriter], how_long: Duration) {
    let start = Instant::now();
    while start.elapsed() < how_long {
        for w in writers.iter_mut() {
            w.append(testdata_lines(), 3);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn coverage(env: &TestEnv, args: &[&str]) -> (Option<i32>, Value) {
    let out = Command::new(&bins().report)
        .arg("coverage")
        .arg("--store")
        .arg(&env.store)
        .args(args)
        .output()
        .expect("run custody-report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "custody-report did not print JSON ({e}); stderr:\n{}\nstdout:\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

fn time_of(v: &Value) -> time::OffsetDateTime {
    custody_evidence::timefmt::parse_utc(v.as_str().expect("a time"))
        .unwrap_or_else(|e| panic!("{v}: {e}"))
}

#[test]
fn coverage_of_an_agent_store_with_a_stop() {
    let env = TestEnv::new("report_coverage");
    let web = env.log("access.log");
    let auth = env.log("auth.log");
    let mut writers = vec![LineWriter::new(&web, "rw"), LineWriter::new(&auth, "ra")];
    let opts = AgentOptions::new(&env)
        .source("web", &web.display().to_string())
        .source("logon", &auth.display().to_string());

    let t0 = time::OffsetDateTime::now_utc();
    write_for(&mut writers, Duration::from_millis(10));
    let mut agent = AgentProcess::start(&opts);
    write_for(&mut writers, Duration::from_secs(3));
    let n = writers.iter().map(|w| w.ids().len()).sum();
    wait_for_lines(&env, n, WAIT);
    agent.stop_clean(WAIT);
    let stopped_at = time::OffsetDateTime::now_utc();

    // The gap: the agent is down, nothing is written.
    std::thread::sleep(STOPPED);

    let restarted_at = time::OffsetDateTime::now_utc();
    let mut agent = AgentProcess::start(&opts);
    write_for(&mut writers, Duration::from_secs(3));
    let n = writers.iter().map(|w| w.ids().len()).sum();
    wait_for_lines(&env, n, WAIT);
    agent.stop_clean(WAIT);
    let t1 = time::OffsetDateTime::now_utc();

    let (code, v) = coverage(&env, &["--level", "D", "--gap-threshold", THRESHOLD]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["schema"], "custody-report/coverage/v1");
    assert_eq!(v["verification"]["payloads_read"], false);
    assert_eq!(v["verification"]["errors"], 0, "{:#}", v["verification"]);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{v:#}");
    let host = &hosts[0];
    assert_eq!(host["host"], env.host_id.as_str());
    assert_eq!(host["verified"], true);
    assert_eq!(host["digests"]["agent_runs"], 2);
    let streams = host["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{streams:#?}");

    for (file, category) in [(&web, "web"), (&auth, "logon")] {
        let s = streams
            .iter()
            .find(|s| s["category"] == category)
            .unwrap_or_else(|| panic!("no {category} stream: {streams:#?}"));
        assert_eq!(s["verified"], true);
        assert_eq!(s["sources"][0], file.display().to_string());
        // Every byte of the file, by the records' raw_len.
        let len = std::fs::metadata(file).unwrap().len();
        assert_eq!(s["bytes"].as_u64(), Some(len), "{category}: {s:#}");
        assert_eq!(s["lines"], Value::Null);
        let first = time_of(&s["first_preserved"]);
        let last = time_of(&s["last_preserved"]);
        assert!(
            t0 <= first && first <= stopped_at,
            "{category}: first {first}"
        );
        assert!(
            restarted_at <= last && last <= t1,
            "{category}: last {last}"
        );
        assert_eq!(s["bucket"], "under_1_month");
        assert_eq!(s["normally_active"], true, "{s:#}");
        // The stop shows as one quiet interval spanning it.
        let quiet: Vec<&Value> = s["gaps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["kind"] == "quiet")
            .collect();
        assert_eq!(quiet.len(), 1, "{category}: {s:#}");
        let g = quiet[0];
        assert!(time_of(&g["from"]) <= stopped_at, "{g}");
        assert!(time_of(&g["to"]) >= restarted_at, "{g}");
        assert!(
            g["seconds"].as_i64().unwrap() >= STOPPED.as_secs() as i64,
            "{g}"
        );
    }
    // ...and as the agent down in the host's digests: the restarted
    // agent's first window reaches back to the last one before the stop.
    let down: Vec<&Value> = host["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["kind"] == "agent_down")
        .collect();
    assert_eq!(down.len(), 1, "{:#}", host["gaps"]);
    assert!(down[0]["seconds"].as_i64().unwrap() >= STOPPED.as_secs() as i64);
    assert!(time_of(&down[0]["from"]) <= stopped_at);
    assert!(time_of(&down[0]["to"]) >= restarted_at);

    // The form: minutes of evidence are under one month; at level B every
    // category is flagged, citing the rule.
    let form = &v["form"][0];
    assert_eq!(form["web_logs"], "under_1_month");
    assert_eq!(form["host_event_logs"], "under_1_month");
    assert_eq!(form["firewall_logs"], Value::Null);
    assert!(
        v["flags"].as_array().unwrap().is_empty(),
        "level D: no flags"
    );
    let (_, b) = coverage(&env, &["--level", "B", "--gap-threshold", THRESHOLD]);
    let flags = b["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2, "{flags:#?}");
    assert!(flags.iter().all(|f| f["reason"] == "under_six_months"
        && f["rule"].as_str().unwrap().contains("REQUIREMENTS.md §1")));

    // A threshold longer than the stop: no gap at all.
    let (_, long) = coverage(&env, &["--level", "D", "--gap-threshold", "1h"]);
    let h = &long["hosts"][0];
    assert!(h["gaps"].as_array().unwrap().is_empty(), "{:#}", h["gaps"]);
    for s in h["streams"].as_array().unwrap() {
        assert!(s["gaps"].as_array().unwrap().is_empty(), "{s:#}");
    }
}

/// The same report over an S3 store (moto), through the same custody-store
/// code and `--s3-*` flags as `custody-verify bundle --store s3://`.
#[test]
fn coverage_of_an_s3_store() {
    use custody_tests::moto::Moto;
    let env = TestEnv::new("report_coverage_s3");
    let moto = Moto::start();
    let bucket = "report-cov";
    moto.create_bucket(bucket, true);
    let app = env.log("app.log");
    let mut writers = vec![LineWriter::new(&app, "rs")];
    let mut opts = AgentOptions::new(&env)
        .source("app", &app.display().to_string())
        .flag("s3-endpoint", &moto.endpoint)
        .flag("s3-region", "us-east-1");
    let url = format!("s3://{bucket}/site-a");
    opts.store = std::path::PathBuf::from(&url);
    let mut agent = AgentProcess::start(&opts);
    write_for(&mut writers, Duration::from_secs(2));
    let len = std::fs::metadata(&app).unwrap().len();
    let args = [
        "coverage",
        "--store",
        &url,
        "--s3-endpoint",
        &moto.endpoint,
        "--s3-region",
        "us-east-1",
        "--level",
        "D",
    ];
    // Wait until every byte is in the bucket, as the report sees it.
    let v = wait_for("all bytes in the bucket per custody-report", WAIT, || {
        agent.check_running()?;
        let out = Command::new(&bins().report)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)))?;
        let bytes = v["hosts"][0]["streams"][0]["bytes"].as_u64().unwrap_or(0);
        if bytes == len && v["verification"]["errors"] == 0 {
            Ok(v)
        } else {
            Err(format!(
                "{bytes} of {len} bytes; {:#}",
                v["verification"]["findings"]
            ))
        }
    });
    agent.stop_clean(WAIT);
    assert_eq!(v["store"], url.as_str());
    assert_eq!(v["verification"]["payloads_read"], false);
    let host = &v["hosts"][0];
    assert_eq!(host["host"], env.host_id.as_str());
    assert_eq!(host["verified"], true);
    let s = &host["streams"][0];
    assert_eq!(s["category"], "app");
    assert_eq!(s["sources"][0], app.display().to_string());
    assert_eq!(s["bucket"], "under_1_month");
    assert_eq!(v["form"][0]["host_event_logs"], "under_1_month");
}
