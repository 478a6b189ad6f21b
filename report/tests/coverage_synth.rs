//! `custody-report coverage` on generated stores of real signed records
//! and digests (tests/common/synth.rs): the form's buckets, the A–C flag
//! citing the rule, unverified streams kept out of the answers, and the
//! HTML escaping everything that comes from a log. Runs the real binary.

mod common;

use std::path::Path;
use std::process::Command;

use common::synth::{init_store, six_streams, write_host, HostSpec, Kind, StreamSpec};
use custody_evidence::Category;
use serde_json::Value;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);
const NOW_TEXT: &str = "2026-12-01T00:00:00Z";

fn host(name: &str, start: OffsetDateTime, streams: Vec<StreamSpec>) -> HostSpec {
    HostSpec {
        name: name.into(),
        start,
        end: NOW - Duration::hours(1),
        segment_every: Duration::hours(6),
        // Daily digests: signing and checking thousands of signatures in a
        // debug build would make the test slow, not better.
        digest_every: Duration::days(1),
        retain_months: 6,
        streams,
    }
}

fn report(store: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_custody-report"))
        .arg("coverage")
        .arg("--store")
        .arg(store)
        .args(["--now", NOW_TEXT])
        .args(args)
        .output()
        .expect("run custody-report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(store: &Path, args: &[&str]) -> (Option<i32>, Value) {
    let (code, stdout, stderr) = report(store, args);
    let v: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}); stderr: {stderr}\n{stdout}"));
    (code, v)
}

fn form<'a>(v: &'a Value, host: &str) -> &'a Value {
    v["form"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["host"] == host)
        .unwrap_or_else(|| panic!("no form answer for {host}: {v:#}"))
}

fn flags(v: &Value, host: &str) -> Vec<String> {
    v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["host"] == host)
        .map(|f| {
            format!(
                "{}:{}",
                f["category"].as_str().unwrap(),
                f["reason"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn buckets_and_the_six_month_flag_at_levels_a_to_c() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    // Seven, three and half a month of evidence, and a collector with a
    // firewall's syslog stream for seven months.
    write_host(
        &store,
        &host("old01", NOW - Duration::days(214), six_streams()),
    )
    .unwrap();
    write_host(
        &store,
        &host("mid01", NOW - Duration::days(92), six_streams()),
    )
    .unwrap();
    write_host(
        &store,
        &host("new01", NOW - Duration::days(14), six_streams()),
    )
    .unwrap();
    let fw = StreamSpec {
        id: "fw01".into(),
        category: Category::Os,
        kind: Kind::Syslog("192.0.2.7".into()),
        skip: Vec::new(),
        lines: None,
    };
    write_host(
        &store,
        &host("collector01", NOW - Duration::days(214), vec![fw]),
    )
    .unwrap();

    let (code, v) = json(&store, &["--level", "B", "--gap-threshold", "1d"]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["schema"], "custody-report/coverage/v1");
    assert_eq!(v["verification"]["payloads_read"], false);
    assert_eq!(v["verification"]["errors"], 0, "{:#}", v["verification"]);
    assert_eq!(v["hosts"].as_array().unwrap().len(), 4);

    assert_eq!(form(&v, "old01")["host_event_logs"], "6_months_or_more");
    assert_eq!(form(&v, "old01")["web_logs"], "6_months_or_more");
    assert_eq!(form(&v, "old01")["firewall_logs"], Value::Null);
    assert_eq!(form(&v, "mid01")["host_event_logs"], "1_to_6_months");
    assert_eq!(form(&v, "new01")["web_logs"], "under_1_month");
    assert_eq!(form(&v, "collector01")["firewall_logs"], "6_months_or_more");

    // The device stream is "firewall / protection device", whatever its
    // records' category.
    let collector = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "collector01")
        .unwrap();
    assert_eq!(collector["streams"][0]["category"], "device");
    assert_eq!(collector["streams"][0]["source_kind"], "syslog");

    // Figures from the records: 6-hourly segments of 4 synthetic lines.
    let old = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "old01")
        .unwrap();
    let s = &old["streams"][0];
    assert_eq!(s["first_preserved"], "2026-05-01T00:00:00.000000Z");
    assert_eq!(s["lines"], Value::Null);
    assert_eq!(
        s["segments"].as_u64().unwrap(),
        s["last_seq"].as_u64().unwrap() + 1
    );
    assert!(s["bytes"].as_u64().unwrap() > 0);
    assert_eq!(s["gaps"].as_array().unwrap().len(), 0, "{s:#}");

    // Level B: mid01 and new01 flagged in every category, citing the rule.
    assert!(flags(&v, "old01").is_empty(), "{:?}", flags(&v, "old01"));
    assert!(flags(&v, "collector01").is_empty());
    for h in ["mid01", "new01"] {
        let f = flags(&v, h);
        for c in ["os", "web", "app", "logon"] {
            assert!(f.contains(&format!("{c}:under_six_months")), "{h}: {f:?}");
        }
    }
    let one = v["flags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["host"] == "mid01")
        .unwrap();
    assert!(
        one["rule"].as_str().unwrap().contains("REQUIREMENTS.md §1"),
        "{one}"
    );
    assert!(
        one["rule"].as_str().unwrap().contains("six months"),
        "{one}"
    );

    // Level D: the table does not bind it; nothing is flagged.
    let (_, v) = json(&store, &["--level", "D"]);
    assert_eq!(v["flags"].as_array().unwrap().len(), 0);
    assert_eq!(form(&v, "mid01")["host_event_logs"], "1_to_6_months");
}

#[test]
fn retain_until_shorter_than_the_rule_is_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    let mut h = host("short01", NOW - Duration::days(214), six_streams());
    h.retain_months = 3; // what a level D agent may write
    write_host(&store, &h).unwrap();
    let (_, v) = json(&store, &["--level", "A"]);
    let f = flags(&v, "short01");
    assert!(f.contains(&"os:retain_until_short".to_string()), "{f:?}");
    assert!(!f.iter().any(|x| x.ends_with("under_six_months")), "{f:?}");
    assert!(
        v["hosts"][0]["streams"][0]["retain_short_segments"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn a_chain_gap_marks_the_stream_unverified_and_keeps_it_out_of_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    let mut streams = six_streams();
    streams.retain(|s| s.category == Category::Web);
    streams[0].skip = vec![10, 11];
    streams.truncate(1);
    write_host(&store, &host("gap01", NOW - Duration::days(214), streams)).unwrap();

    let (code, v) = json(&store, &["--level", "A"]);
    assert_eq!(code, Some(1), "input that does not verify: exit 1");
    let s = &v["hosts"][0]["streams"][0];
    assert_eq!(s["verified"], false);
    assert!(
        s["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "chain_gap"),
        "{s:#}"
    );
    let gap = s["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["kind"] == "chain_gap")
        .unwrap();
    assert_eq!(gap["seq"], 10);
    // Segment 9 was read at 54 h + 1 s, segment 12 at 72 h.
    assert_eq!(gap["from"], "2026-05-03T06:00:01.000000Z");
    assert_eq!(gap["to"], "2026-05-04T00:00:00.000000Z");
    assert_eq!(form(&v, "gap01")["web_logs"], Value::Null);
    assert!(flags(&v, "gap01").contains(&"web:unverified".to_string()));

    let (_, v) = json(&store, &["--level", "A", "--include-unverified"]);
    assert_eq!(form(&v, "gap01")["web_logs"], "6_months_or_more");
}

#[test]
fn html_escapes_what_comes_from_logs_and_has_no_script() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    let evil = r#"/var/log/"><img src=x onerror=alert(1)>/<script>alert(2)</script>.log"#;
    let streams = vec![StreamSpec {
        id: "web.evil".into(),
        category: Category::Web,
        kind: Kind::File(evil.into()),
        skip: vec![3],
        lines: None,
    }];
    write_host(&store, &host("web01", NOW - Duration::days(20), streams)).unwrap();
    for lang in ["en", "zh-TW"] {
        let out = dir.path().join(format!("r-{lang}.html"));
        let (code, _, stderr) = report(
            &store,
            &[
                "--format",
                "html",
                "--lang",
                lang,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(code, Some(1), "{stderr}");
        let html = std::fs::read_to_string(&out).unwrap();
        assert!(
            html.contains("&lt;script&gt;alert(2)&lt;&#x2f;script&gt;")
                || html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"),
            "path not shown escaped"
        );
        assert!(
            html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"),
            "path not shown escaped"
        );
        assert!(!html.contains("<img"), "a raw <img> tag reached the HTML");
        assert!(
            !html.to_lowercase().contains("<script"),
            "a <script> reached the HTML"
        );
        assert!(
            !html.contains("onerror=alert(1)>"),
            "an unescaped attribute reached the HTML"
        );
        // Self-contained: no external resource of any kind.
        for bad in ["src=\"http", "href=\"http", "@import", "url(", "<link"] {
            assert!(
                !html.contains(bad),
                "external reference {bad:?} in the HTML"
            );
        }
        assert!(html.contains("<svg"), "no heatmap");
        // minijinja escapes "/" as "&#x2f;" too.
        assert!(
            html.contains("(Asia&#x2f;Taipei)"),
            "local times must name the zone"
        );
    }
    let zh = std::fs::read_to_string(dir.path().join("r-zh-TW.html")).unwrap();
    assert!(zh.contains("lang=\"zh-TW\""));
    assert!(zh.contains("主機事件日誌保存"));
    assert!(zh.contains("未讀取日誌內容"));
    let en = std::fs::read_to_string(dir.path().join("r-en.html")).unwrap();
    assert!(en.contains("Payloads not read"));
    assert!(en.contains("Web server logs kept"));
}

#[test]
fn csv_has_one_row_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    write_host(
        &store,
        &host("web01", NOW - Duration::days(40), six_streams()),
    )
    .unwrap();
    let (code, out, stderr) = report(&store, &["--format", "csv"]);
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 7, "{out}");
    assert!(lines[0].starts_with("\"schema\",\"host\",\"category\""));
    assert!(
        lines
            .iter()
            .skip(1)
            .all(|l| l.contains("\"1_to_6_months\"")),
        "{out}"
    );
}

#[test]
fn bad_flags_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    for (args, needle) in [
        (vec!["--level", "F"], "--level"),
        (vec!["--gap-threshold", "1y"], "--gap-threshold"),
        (vec!["--tz", "Mars/Olympus"], "--tz"),
        (vec!["--lang", "fr"], "--lang"),
    ] {
        let (code, _, stderr) = report(&store, &args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, _, stderr) = report(&dir.path().join("nope"), &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("nope"), "{stderr}");
}
