//! `custody-report findings` and `timeline` over an IIS (W3C extended)
//! log the real agent shipped: the real sample in shared/testdata (Tunna
//! tunnelling traffic, which no default rule flags) with planted webshell
//! POSTs and a scanner's request appended. Exactly the planted findings,
//! every data line of the sample in the timeline, every citation
//! re-derived with `zstd -dc | tail -c | head -c | sha256sum`.

use std::process::Command;
use std::time::Duration;

use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);
const SHELL_CLIENT: &str = "203.0.113.50";
const SCANNER: &str = "198.51.100.23";

fn report(args: &[&str]) -> String {
    let out = Command::new(&bins().report)
        .args(args)
        .output()
        .expect("run custody-report");
    assert!(
        out.status.success(),
        "custody-report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn iis_w3c_lines_give_exactly_the_planted_web_findings() {
    let env = TestEnv::new("report-iis");
    let sample = custody_tests::lines::testdata_dir().join("../windows/iis_w3c.log");
    let mut log = std::fs::read(&sample).unwrap();
    let sample_lines = String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.starts_with("2019-"))
        .count();
    if !log.ends_with(b"\n") {
        log.extend_from_slice(b"\r\n");
    }
    for i in 0..3 {
        log.extend_from_slice(
            format!(
                "2019-09-03 11:00:0{i} 10.0.2.15 POST /uploads/cmd.aspx - 80 - {SHELL_CLIENT} Mozilla/5.0+(Windows+NT+10.0;+Win64;+x64) - 200 0 0 12\r\n"
            )
            .as_bytes(),
        );
    }
    log.extend_from_slice(
        format!(
            "2019-09-03 12:05:00 10.0.2.15 GET /erp/login.aspx id=1%27 80 - {SCANNER} sqlmap/1.7.2#stable+(https://sqlmap.org) - 200 0 0 3\r\n"
        )
        .as_bytes(),
    );
    let path = env.log("u_ex190903.log");
    std::fs::write(&path, &log).unwrap();

    let opts = AgentOptions::new(&env).source("web", &path.display().to_string());
    let mut agent = AgentProcess::start(&opts);
    wait_for("the IIS log in the store", WAIT, || {
        agent.check_running()?;
        let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
        let n: usize = c.segments().map(|s| s.raw.len()).sum();
        if n >= log.len() {
            Ok(())
        } else {
            Err(format!("{n} of {} bytes", log.len()))
        }
    });
    agent.stop_clean(WAIT);

    let store = env.store.to_str().unwrap();
    // Segments are picked by when the agent read them (now), lines by
    // their own time (2019): the window spans both.
    let to = custody_evidence::timefmt::format_utc(
        time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    );
    let window = [
        "--store",
        store,
        "--from",
        "2019-09-01T00:00:00Z",
        "--to",
        &to,
    ];
    let v: Value =
        serde_json::from_str(&report(&[&["findings"][..], &window[..]].concat())).unwrap();
    let mut got: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["ip"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("scanner_user_agent".to_string(), SCANNER.to_string()),
            ("webshell".to_string(), SHELL_CLIENT.to_string()),
        ],
        "exactly the planted findings: {v:#}"
    );
    for f in v["findings"].as_array().unwrap() {
        assert_eq!(f["verified"], true);
        let want = if f["rule"] == "webshell" { 3 } else { 1 };
        let ev = f["evidence"].as_array().unwrap();
        assert_eq!(ev.len(), want, "{f:#}");
        for e in ev {
            let text = rederive_evidence(&env.store, e);
            assert!(text.contains(f["ip"].as_str().unwrap()), "{text}");
        }
    }
    let web = v["streams"].as_array().unwrap();
    let malformed: u64 = web
        .iter()
        .map(|s| s["lines_malformed"].as_u64().unwrap())
        .sum();
    assert_eq!(malformed, 0, "{v:#}");

    // The timeline: every data line of the sample and the four planted ones.
    let rows = report(&[&["timeline"][..], &window[..], &["--format", "jsonl"][..]].concat());
    let rows: Vec<Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), sample_lines + 4);
    assert!(rows.iter().all(|r| r["kind"] == "web_request"));
    let last = rows.last().unwrap();
    assert_eq!(
        last["datetime"], "2019-09-03T12:05:00.000000Z",
        "W3C times are UTC"
    );
    assert_eq!(last["ip"], SCANNER);

    // Scoped to an incident the real collector opened for this host: its
    // hosts and a window from --lookback before it was opened to now.
    let state = env.root.join("collector-state");
    let open = |id: &str, host: &str| {
        let out = Command::new(&bins().collector)
            .args(["incident", "open", "--id", id, "--hosts", host])
            .args([
                "--operator",
                "responder",
                "--reason",
                "webshell on the ERP site",
            ])
            .arg("--state-dir")
            .arg(&state)
            .arg("--store")
            .arg(&env.store)
            .output()
            .expect("run custody-collector");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    open("INC-2026-0101", &env.host_id);
    open("INC-2026-0102", "another-host");
    let scoped = |id: &str| -> Value {
        serde_json::from_str(&report(&[
            "findings",
            "--store",
            store,
            "--incident",
            id,
            "--collector-state",
            state.to_str().unwrap(),
            "--lookback",
            "3000d",
        ]))
        .unwrap()
    };
    let v = scoped("INC-2026-0101");
    assert_eq!(v["findings"].as_array().unwrap().len(), 2, "{v:#}");
    let note = v["notes"][0]["message"].as_str().unwrap();
    assert!(
        note.starts_with("incident INC-2026-0101 (opened ") && note.contains(&env.host_id),
        "{note}"
    );
    let v = scoped("INC-2026-0102");
    assert!(v["findings"].as_array().unwrap().is_empty(), "{v:#}");
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "host_without_segments"
                && n["message"].as_str().unwrap().contains("another-host")),
        "{v:#}"
    );
    // Without the collector's state the flag says what it needs.
    let out = Command::new(&bins().report)
        .args(["findings", "--store", store, "--incident", "INC-2026-0101"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--collector-state"));
}
