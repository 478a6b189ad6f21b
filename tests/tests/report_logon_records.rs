//! `custody-report findings` over login records (wtmp, btmp: 384-byte
//! `struct utmp` records) and the sshd lines of the same logons, as the
//! real agent shipped them: a logon seen in both auth.log and wtmp is one
//! finding citing both, twelve failures seen in both auth.log and btmp
//! are twelve (not twenty-four), wtmp truncated in place is `log_cleared`,
//! and every citation re-derives with `zstd -dc | tail -c | head -c |
//! sha256sum`. The same host's snapshot (`--bundle`) gives the findings
//! of the copies it holds, citing tar members that re-derive with `tar
//! -xOf`, and a flipped byte in one copy makes that copy's lines
//! unverified.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

use custody_tests::bundle::{assert_success, snapshot};
use custody_tests::*;
use serde_json::Value;
use time::{Duration as Span, OffsetDateTime, UtcOffset};

const WAIT: Duration = Duration::from_secs(90);
const RECORD: usize = 384;
const ALICE_IP: &str = "203.0.113.7";
const ATTACKER: &str = "198.51.100.4";
const OLD_ATTACKER: &str = "192.0.2.66";
/// Older bursts in `auth.log.2.zst`, `auth.log.3.bz2`, `auth.log.4.xz`.
const OLDER_ATTACKERS: [(&str, &str, &str); 3] = [
    ("zst", "zstd -q -c", "192.0.2.67"),
    ("bz2", "bzip2 -c", "192.0.2.68"),
    ("xz", "xz -c", "192.0.2.69"),
];

/// A glibc `struct utmp` record (x86-64 layout).
fn utmp(kind: i16, pid: i32, line: &str, user: &str, host: &str, sec: i64) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[0..2].copy_from_slice(&kind.to_le_bytes());
    r[4..8].copy_from_slice(&pid.to_le_bytes());
    r[8..8 + line.len()].copy_from_slice(line.as_bytes());
    r[44..44 + user.len()].copy_from_slice(user.as_bytes());
    r[76..76 + host.len()].copy_from_slice(host.as_bytes());
    r[340..344].copy_from_slice(&(sec as u32).to_le_bytes());
    if let Ok(std::net::IpAddr::V4(v4)) = host.parse::<std::net::IpAddr>() {
        r[348..352].copy_from_slice(&v4.octets());
    }
    r
}

/// `Mon DD HH:MM:SS` in Taipei time (the report's default --host-tz).
fn stamp(t: OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let l = t.to_offset(UtcOffset::from_hms(8, 0, 0).unwrap());
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[l.month() as usize - 1],
        l.day(),
        l.hour(),
        l.minute(),
        l.second()
    )
}

fn bytes_in_store(env: &TestEnv) -> Result<BTreeMap<String, u64>, String> {
    let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
    Ok(c.streams
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|s| s.raw.len() as u64).sum()))
        .collect())
}

/// `custody-report timeline ARGS… --format jsonl`, one JSON value per row.
fn timeline_rows(args: &[&std::ffi::OsStr]) -> Vec<Value> {
    let out = Command::new(&bins().report)
        .arg("timeline")
        .args(args)
        .args(["--format", "jsonl"])
        .output()
        .expect("run custody-report timeline");
    assert!(
        out.status.success(),
        "timeline failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn login_records_and_sshd_lines_give_one_finding_per_event_and_truncation_is_log_cleared() {
    let env = TestEnv::new("report-logon-records");
    let (wtmp, btmp, auth) = (env.log("wtmp"), env.log("btmp"), env.log("auth.log"));
    // A real Security channel export (EVTX-ATTACK-SAMPLES): in the
    // snapshot, it is read record by record.
    let evtx = env.log("Security.evtx");
    std::fs::copy(
        custody_tests::lines::testdata_dir().join("../windows/logon_4624_4625.evtx"),
        &evtx,
    )
    .unwrap();
    // 02:13 Taipei time yesterday: off hours whatever the weekday.
    let now = OffsetDateTime::now_utc();
    let taipei = UtcOffset::from_hms(8, 0, 0).unwrap();
    let yesterday = (now.to_offset(taipei) - Span::days(1)).date();
    let t = yesterday
        .with_hms(2, 13, 5)
        .unwrap()
        .assume_offset(taipei)
        .to_offset(time::UtcOffset::UTC);
    let ts = t.unix_timestamp();

    let mut w = utmp(7, 811, "pts/0", "alice", ALICE_IP, ts);
    w.extend(utmp(8, 811, "pts/0", "", "", ts + 600));
    std::fs::write(&wtmp, &w).unwrap();
    let mut b = Vec::new();
    let mut lines = format!(
        "{} auditee sshd[811]: Accepted password for alice from {ALICE_IP} port 50123 ssh2\n",
        stamp(t)
    );
    for i in 0..12i64 {
        let at = t + Span::hours(1) + Span::seconds(i);
        b.extend(utmp(
            6,
            900 + i as i32,
            "ssh:notty",
            "root",
            ATTACKER,
            ts + 3600 + i,
        ));
        lines.push_str(&format!(
            "{} auditee sshd[{}]: Failed password for root from {ATTACKER} port {} ssh2\n",
            stamp(at),
            900 + i,
            40000 + i
        ));
    }
    std::fs::write(&btmp, &b).unwrap();
    std::fs::write(&auth, lines.as_bytes()).unwrap();

    let opts = AgentOptions::new(&env)
        .source("logon", &wtmp.display().to_string())
        .source("logon", &btmp.display().to_string())
        .source("logon", &auth.display().to_string())
        .source("logon", &evtx.display().to_string());
    let mut agent = AgentProcess::start(&opts);
    let want = (w.len() + b.len() + lines.len()) as u64 + std::fs::metadata(&evtx).unwrap().len();
    wait_for("the records and lines in the store", WAIT, || {
        agent.check_running()?;
        let n: u64 = bytes_in_store(&env)?.values().sum();
        if n >= want {
            Ok(())
        } else {
            Err(format!(
                "{n} of {want} bytes; agent log:\n{}",
                agent.log_tail(5)
            ))
        }
    });
    // `> wtmp`, then a local logon on tty1 an hour later.
    let f = std::fs::OpenOptions::new().write(true).open(&wtmp).unwrap();
    f.set_len(0).unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(700));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&wtmp)
        .unwrap();
    f.write_all(&utmp(7, 1200, "tty1", "bob", "", ts + 7200))
        .unwrap();
    drop(f);
    wait_for("the record written after the truncation", WAIT, || {
        agent.check_running()?;
        let n: u64 = bytes_in_store(&env)?.values().sum();
        if n > want {
            Ok(())
        } else {
            Err(format!("{n} bytes; agent log:\n{}", agent.log_tail(5)))
        }
    });
    agent.stop_clean(WAIT);

    let fmt = custody_evidence::timefmt::format_utc;
    let out = Command::new(&bins().report)
        .arg("findings")
        .arg("--store")
        .arg(&env.store)
        .args(["--from", &fmt(now - Span::days(3))])
        .args(["--to", &fmt(now + Span::hours(1))])
        .output()
        .expect("run custody-report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); stderr:\n{}\nstdout:\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = v["findings"].as_array().expect("findings");
    let mut got: Vec<(String, String, usize)> = findings
        .iter()
        .map(|f| {
            let who = f["user"].as_str().or(f["ip"].as_str()).unwrap_or("");
            (
                f["rule"].as_str().unwrap_or("").to_string(),
                who.to_string(),
                f["evidence"].as_array().map_or(0, |e| e.len()),
            )
        })
        .collect();
    got.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        got,
        vec![
            (s("external_logon"), s("alice"), 2),
            // Twelve failures, each an sshd line and a btmp record.
            (s("failed_logon_burst"), s(ATTACKER), 24),
            (s("log_cleared"), s(""), 1),
            (s("off_hours_logon"), s("alice"), 2),
            (s("off_hours_logon"), s("bob"), 1),
        ],
        "exactly the planted findings: {v:#}"
    );
    let burst = findings
        .iter()
        .find(|f| f["rule"] == "failed_logon_burst")
        .unwrap();
    // The abnormal-IP table counts each failure once too.
    let row = v["abnormal_ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ip"] == ATTACKER)
        .expect("the attacker in the abnormal-IP table");
    assert_eq!(row["counts"]["failed_logon"], 12, "{row:#}");
    assert!(
        burst["summary"]
            .as_str()
            .unwrap()
            .starts_with("12 failed logons"),
        "{burst:#}"
    );
    let cleared = findings
        .iter()
        .find(|f| f["rule"] == "log_cleared")
        .unwrap();
    let summary = cleared["summary"].as_str().unwrap();
    assert!(
        summary.contains("wtmp") && summary.contains("from byte 0") && summary.contains("768"),
        "{summary}"
    );
    let bob = findings.iter().find(|f| f["user"] == "bob").unwrap();
    assert!(bob["ip"].is_null(), "a local logon has no IP: {bob:#}");
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "same_event_two_sources"),
        "{v:#}"
    );
    for f in findings {
        assert_eq!(f["verified"], true, "{f:#}");
        for e in f["evidence"].as_array().unwrap() {
            let text = rederive_evidence(&env.store, e);
            let len = e["len"].as_u64().unwrap() as usize;
            let stream = e["stream"].as_str().unwrap();
            if f["rule"] == "log_cleared" {
                assert_eq!(len, 0, "{e:#}");
            } else if stream.contains("tmp") {
                assert_eq!(len, RECORD, "a whole record: {e:#}");
            } else {
                assert!(text.contains(" sshd["), "{text}");
            }
        }
    }

    // The timeline of the same store: every parsed unit in time order.
    let (from, to) = (fmt(now - Span::days(3)), fmt(now + Span::hours(1)));
    let rows = timeline_rows(&[
        "--store".as_ref(),
        env.store.as_os_str(),
        "--from".as_ref(),
        from.as_ref(),
        "--to".as_ref(),
        to.as_ref(),
    ]);
    // 13 auth.log lines, 3 wtmp records (logon, logoff, bob after the
    // truncation), 12 btmp records, and the truncation itself; the .evtx
    // tailed as lines gives no line of a known format.
    assert_eq!(rows.len(), 29, "{rows:#?}");
    let times: Vec<i64> = rows
        .iter()
        .map(|r| r["timestamp"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "time order: {times:?}"
    );
    let repeats = rows
        .iter()
        .filter(|r| !r["same_event_as"].is_null())
        .count();
    assert_eq!(
        repeats, 13,
        "12 failures and alice's logon kept twice, marked"
    );
    for r in &rows {
        assert!(r["datetime"].as_str().unwrap().ends_with('Z'), "{r:#}");
        assert!(
            r["local_time"].as_str().unwrap().ends_with("(Asia/Taipei)"),
            "{r:#}"
        );
        assert_eq!(r["verified"], true, "{r:#}");
        let text = rederive_evidence(&env.store, r);
        if r["timestamp_desc"] == "log line time" {
            assert_eq!(text, r["message"].as_str().unwrap(), "{r:#}");
        }
    }
    // alice's logon: an sshd line and a wtmp record, the second naming the first.
    let alice: Vec<_> = rows
        .iter()
        .filter(|r| r["kind"] == "logon" && r["user"] == "alice")
        .collect();
    assert_eq!(alice.len(), 2, "{alice:#?}");
    assert_eq!(
        alice
            .iter()
            .filter(|r| r["same_event_as"].is_null())
            .count(),
        1
    );
    assert!(alice.iter().any(|r| r["timestamp_desc"] == "utmp ut_tv"));
    // The CSV form: Timesketch's columns first, one record per row.
    let out = Command::new(&bins().report)
        .args(["timeline", "--store"])
        .arg(&env.store)
        .args(["--from", &from, "--to", &to])
        .output()
        .expect("run custody-report timeline");
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        csv.starts_with("\"message\",\"datetime\",\"timestamp\",\"timestamp_desc\""),
        "{csv}"
    );
    let n = sh(
        r#"printf '%s' "$1" | python3 -c 'import csv,sys; print(sum(1 for _ in csv.reader(sys.stdin)))'"#,
        &[&csv],
    );
    assert_eq!(n.trim(), "30", "header and 29 rows");

    // The snapshot: the files as they are now (wtmp holds only bob's
    // logon), and a rotated, gzip-compressed auth.log.1.gz that the agent
    // never tailed, with an older burst of failures.
    let mut old = String::new();
    for i in 0..10i64 {
        let at = t - Span::days(1) + Span::seconds(i);
        old.push_str(&format!(
            "{} auditee sshd[{}]: Failed password for root from {OLD_ATTACKER} port {} ssh2\n",
            stamp(at),
            700 + i,
            30000 + i
        ));
    }
    let gz_path = env.log("auth.log.1.gz");
    let plain = env.root.join("auth.log.1");
    std::fs::write(&plain, old.as_bytes()).unwrap();
    sh(
        r#"gzip -c "$1" > "$2""#,
        &[plain.to_str().unwrap(), gz_path.to_str().unwrap()],
    );
    // Older rotations, compressed with the other stock tools.
    for (k, (ext, tool, ip)) in OLDER_ATTACKERS.iter().enumerate() {
        let mut text = String::new();
        for i in 0..10i64 {
            let at = t - Span::days(2 + k as i64) + Span::seconds(i);
            text.push_str(&format!(
                "{} auditee sshd[{}]: Failed password for root from {ip} port {} ssh2\n",
                stamp(at),
                800 + i,
                31000 + i
            ));
        }
        let plain = env.root.join(format!("auth.log.{}", k + 2));
        std::fs::write(&plain, text.as_bytes()).unwrap();
        let packed = env.log(&format!("auth.log.{}.{ext}", k + 2));
        sh(
            &format!(r#"{tool} "$1" > "$2""#),
            &[plain.to_str().unwrap(), packed.to_str().unwrap()],
        );
    }
    let bundle = env.root.join("incident.tar");
    let snap = snapshot(
        &opts,
        &[
            "--incident",
            "INC-2026-0099",
            "--operator",
            "responder",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    assert_success("custody-agent snapshot", &snap);
    let run_bundle_with = |bundle: &std::path::Path, extra: &[&str]| -> Value {
        let out = Command::new(&bins().report)
            .arg("findings")
            .arg("--bundle")
            .arg(bundle)
            .args(extra)
            .output()
            .expect("run custody-report");
        let stdout = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}); stderr:\n{}\nstdout:\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    };
    let run_bundle = |bundle: &std::path::Path| run_bundle_with(bundle, &[]);
    let v = run_bundle(&bundle);
    let summary = |v: &Value| -> Vec<(String, String, usize)> {
        let mut got: Vec<_> = v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| {
                (
                    f["rule"].as_str().unwrap_or("").to_string(),
                    f["user"]
                        .as_str()
                        .or(f["ip"].as_str())
                        .unwrap_or("")
                        .to_string(),
                    f["evidence"].as_array().map_or(0, |e| e.len()),
                )
            })
            .collect();
        got.sort();
        got
    };
    assert_eq!(
        summary(&v),
        vec![
            (s("external_logon"), s("alice"), 1),
            (s("failed_logon_burst"), s(OLD_ATTACKER), 10),
            (s("failed_logon_burst"), s(OLDER_ATTACKERS[0].2), 10),
            (s("failed_logon_burst"), s(OLDER_ATTACKERS[1].2), 10),
            (s("failed_logon_burst"), s(OLDER_ATTACKERS[2].2), 10),
            (s("failed_logon_burst"), s(ATTACKER), 24),
            // The sample's two 4624s of IEUser (logon type 2, one logon's
            // two tokens) at 21:18 Taipei time; its 4625 is one failure
            // and its SYSTEM service logon is not a person's.
            (s("off_hours_logon"), s("MSEDGEWIN10\\IEUser"), 1),
            (s("off_hours_logon"), s("MSEDGEWIN10\\IEUser"), 1),
            (s("off_hours_logon"), s("alice"), 1),
            (s("off_hours_logon"), s("bob"), 1),
        ],
        "the bundle's findings: {v:#}"
    );
    assert!(
        v["unverified_segments"].as_array().unwrap().is_empty(),
        "{v:#}"
    );
    let tar = bundle.to_str().unwrap();
    let mut btmp_member = None;
    for f in v["findings"].as_array().unwrap() {
        assert_eq!(f["verified"], true, "{f:#}");
        for e in f["evidence"].as_array().unwrap() {
            assert_eq!(e["archive"], tar, "{e:#}");
            let member = e["object"].as_str().unwrap();
            if member.ends_with("/btmp") {
                btmp_member = Some(member.to_string());
            }
            let whole = sh(
                r#"tar -xOf "$1" "$2" | sha256sum | cut -d' ' -f1"#,
                &[tar, member],
            );
            assert_eq!(whole.trim(), e["payload_raw_sha256"], "{e:#}");
            let (off, len) = (e["offset"].to_string(), e["len"].to_string());
            // A compressed copy's offsets are in its decompressed bytes.
            let unzip = match e["decompress"].as_str() {
                Some(tool @ ("gzip" | "zstd" | "bzip2" | "xz")) => format!("{tool} -dc"),
                Some(other) => panic!("decompress {other:?}"),
                None => "cat".to_string(),
            };
            let want = [
                (".gz", "gzip"),
                (".zst", "zstd"),
                (".bz2", "bzip2"),
                (".xz", "xz"),
            ]
            .iter()
            .find(|(x, _)| member.ends_with(x))
            .map(|(_, t)| *t);
            assert_eq!(e["decompress"].as_str(), want, "{e:#}");
            let cited = sh(
                r#"tar -xOf "$1" "$2" | $5 | tail -c +$(($3 + 1)) | head -c "$4" | sha256sum | cut -d' ' -f1"#,
                &[tar, member, &off, &len, &unzip],
            );
            assert_eq!(cited.trim(), e["line_sha256"], "{e:#}");
            if member.ends_with(".evtx") {
                // A whole record: its `**\0\0` header first.
                let head = sh(
                    r#"tar -xOf "$1" "$2" | tail -c +$(($3 + 1)) | head -c 4 | od -An -tx1"#,
                    &[tar, member, &off],
                );
                assert_eq!(
                    head.split_whitespace().collect::<Vec<_>>(),
                    ["2a", "2a", "00", "00"]
                );
                assert!(e["line"].as_str().unwrap().contains("event=4624"), "{e:#}");
            }
        }
    }
    // The bundle's timeline holds the .evtx copy's four records, each
    // citing its tar member.
    let rows = timeline_rows(&["--bundle".as_ref(), bundle.as_os_str()]);
    let evtx_rows: Vec<_> = rows
        .iter()
        .filter(|r| r["object"].as_str().unwrap().ends_with(".evtx"))
        .collect();
    assert_eq!(evtx_rows.len(), 4, "{evtx_rows:#?}");
    assert!(evtx_rows
        .iter()
        .all(|r| r["archive"] == tar && r["timestamp_desc"] == "Windows event TimeCreated"));
    assert_eq!(
        evtx_rows
            .iter()
            .filter(|r| r["kind"] == "failed_logon")
            .count(),
        1
    );

    // --incident checks that the bundle is that incident's evidence.
    let out = Command::new(&bins().report)
        .args(["findings", "--incident", "INC-2026-0100", "--bundle"])
        .arg(&bundle)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("INC-2026-0099") && err.contains("INC-2026-0100"),
        "{err}"
    );
    assert_eq!(
        summary(&run_bundle_with(&bundle, &["--incident", "INC-2026-0099"])),
        summary(&v),
        "the right incident changes nothing"
    );

    // One byte of the btmp copy flipped inside the tar.
    let btmp_member = btmp_member.expect("a btmp citation");
    let tampered = env.root.join("tampered.tar");
    std::fs::copy(&bundle, &tampered).unwrap();
    sh(
        r#"python3 - "$1" "$2" <<'PY'
import sys, tarfile
path, name = sys.argv[1], sys.argv[2]
with tarfile.open(path) as t:
    at = t.getmember(name).offset_data + 50
with open(path, "r+b") as f:
    f.seek(at)
    b = f.read(1)
    f.seek(at)
    f.write(bytes([b[0] ^ 0x01]))
PY"#,
        &[tampered.to_str().unwrap(), &btmp_member],
    );
    let v = run_bundle(&tampered);
    let bad = v["unverified_segments"].as_array().unwrap();
    assert!(
        bad.iter().any(|u| u["object"] == btmp_member.as_str()),
        "the tampered copy is named: {v:#}"
    );
    // Its twelve records are out; the sshd lines still make the burst.
    assert!(
        summary(&v).contains(&(s("failed_logon_burst"), s(ATTACKER), 12)),
        "{v:#}"
    );
}
