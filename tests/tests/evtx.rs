//! Windows event log files read on Linux: `custody-verify evtx` on the real
//! samples in `../shared/testdata/windows/` (values checked independently
//! with python-evtx 0.8.1), its errors for damaged files, and the bundle
//! check reporting a cleared log inside an evidence bundle made by the real
//! `custody-agent snapshot`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use custody_tests::bundle::*;
use custody_tests::*;
use serde_json::Value;

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/windows")
        .join(name)
}

fn verify_evtx(file: &Path, json: bool) -> Output {
    let mut cmd = Command::new(&bins().verify);
    cmd.arg("evtx").arg(file);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run custody-verify")
}

/// CRC-32 (IEEE), as the .evtx chunk checksums use.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The real logon sample with one event id changed: record 137223 (a 4624,
/// its EventID value at file offset 0x1ed6) becomes a 1102 "audit log
/// cleared", and the chunk's two CRC-32s are recomputed, so every other
/// byte is as Windows wrote it. No public sample with a 1102 is available
/// here; python-evtx reads this file as 4625, 1102, 4624, 4624.
fn with_log_cleared(dir: &Path) -> PathBuf {
    let mut b = fs::read(sample("logon_4624_4625.evtx")).expect("sample");
    assert_eq!(
        &b[0x1ed6..0x1ed8],
        &4624u16.to_le_bytes(),
        "sample changed?"
    );
    b[0x1ed6..0x1ed8].copy_from_slice(&1102u16.to_le_bytes());
    let chunk = 4096;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let free = u32_at(&b, chunk + 0x30) as usize;
    let records_crc = crc32(&b[chunk + 512..chunk + free]);
    b[chunk + 0x34..chunk + 0x38].copy_from_slice(&records_crc.to_le_bytes());
    let mut header = b[chunk..chunk + 120].to_vec();
    header.extend_from_slice(&b[chunk + 128..chunk + 512]);
    b[chunk + 0x7c..chunk + 0x80].copy_from_slice(&crc32(&header).to_le_bytes());
    let path = dir.join("Security-cleared.evtx");
    fs::write(&path, b).unwrap();
    path
}

#[test]
fn lists_logons_and_failures_of_the_real_sample() {
    let out = verify_evtx(&sample("logon_4624_4625.evtx"), false);
    assert_success("custody-verify evtx", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[0],
        "record=137222 time=2020-09-09T13:18:23.6279525Z event=4625 kind=logon_failure channel=Security \
         computer=MSEDGEWIN10 user=IEUser domain=MSEDGEWIN10 logon_type=2 source_ip=- status=0xc000006d/0xc000006a"
    );
    assert!(
        lines[1].contains("user=SYSTEM domain=\"NT AUTHORITY\" logon_type=5"),
        "{}",
        lines[1]
    );
    assert!(lines[4].ends_with(
        "4 record(s): 3 logon success (4624), 1 logon failure (4625), 0 log cleared (1102/104); checksums OK"
    ));

    let out = verify_evtx(&sample("rdp_tunneling_4624.evtx"), true);
    assert_success("custody-verify evtx --json", &out);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["records"], 18);
    assert_eq!(v["logon_success"], 18);
    assert_eq!(v["logon_failure"], 0);
    let events = v["events"].as_array().unwrap();
    let rdp: Vec<&Value> = events.iter().filter(|e| e["logon_type"] == "10").collect();
    assert_eq!(rdp.len(), 1);
    assert_eq!(rdp[0]["record_id"], 5315);
    assert_eq!(rdp[0]["user"], "IEUser");
    assert_eq!(rdp[0]["source_ip"], "127.0.0.1");
    assert_eq!(rdp[0]["time"], "2019-02-13T15:26:53.3567809Z");
}

#[test]
fn names_who_cleared_the_log() {
    let env = TestEnv::new("evtx-cleared");
    let file = with_log_cleared(&env.logs);
    let out = verify_evtx(&file, false);
    assert_success("custody-verify evtx", &out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("record=137223 time=2020-09-09T13:18:25.3771200Z event=1102 kind=log_cleared channel=Security computer=MSEDGEWIN10 cleared_by=MSEDGEWIN10$ domain=WORKGROUP"),
        "{text}"
    );
    assert!(
        text.contains("2 logon success (4624), 1 logon failure (4625), 1 log cleared"),
        "{text}"
    );
}

#[test]
fn damaged_files_are_exit_2_with_the_reason() {
    let env = TestEnv::new("evtx-damaged");
    let whole = fs::read(sample("rdp_tunneling_4624.evtx")).unwrap();
    let cut = env.logs.join("cut.evtx");
    fs::write(&cut, &whole[..20_000]).unwrap();
    let out = verify_evtx(&cut, false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cut.evtx") && err.contains("truncated") && err.contains("20000 bytes"),
        "{err}"
    );

    let garbage = env.logs.join("garbage.evtx");
    fs::write(&garbage, b"MZ\x90\x00 not an event log at all").unwrap();
    let out = verify_evtx(&garbage, false);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("garbage.evtx") && err.contains("ElfFile"),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    let out = verify_evtx(&env.logs.join("absent.evtx"), false);
    assert_eq!(out.status.code(), Some(2));

    // One byte changed, CRCs left as they were: listed, but exit 1.
    let mut edited = fs::read(sample("logon_4624_4625.evtx")).unwrap();
    edited[0x1ed6..0x1ed8].copy_from_slice(&1102u16.to_le_bytes());
    let path = env.logs.join("edited.evtx");
    fs::write(&path, edited).unwrap();
    let out = verify_evtx(&path, false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chunk=0 checksum=mismatch"), "{text}");
    assert!(
        text.contains("event=1102") && text.trim_end().ends_with("checksums FAILED"),
        "{text}"
    );
}

#[test]
fn a_bundle_with_a_cleared_log_is_reported() {
    let env = TestEnv::new("evtx-bundle");
    with_log_cleared(&env.logs);
    fs::copy(
        sample("rdp_tunneling_4624.evtx"),
        env.logs.join("Security.evtx"),
    )
    .unwrap();
    let whole = fs::read(sample("logon_4624_4625.evtx")).unwrap();
    fs::write(env.logs.join("Broken.evtx"), &whole[..5000]).unwrap();
    let mut edited = whole.clone();
    edited[0x1ed6..0x1ed8].copy_from_slice(&4625u16.to_le_bytes());
    fs::write(env.logs.join("Edited.evtx"), &edited).unwrap();
    let opts = AgentOptions::new(&env).source("logon", &format!("{}/*.evtx", env.logs.display()));
    let bundle = env.root.join("bundle.tar");
    let out_s = bundle.to_string_lossy().into_owned();
    let snap = snapshot(
        &opts,
        &[
            "--incident",
            "INC-EVTX-1",
            "--operator",
            "alice",
            "--out",
            &out_s,
        ],
    );
    assert_success("custody-agent snapshot", &snap);

    let v = verify_bundle(&bundle, &[]);
    // Content notes never fail the integrity check.
    assert_eq!(v.code, Some(0), "{}\n{}", v.stdout, v.stderr);
    let of = |kind: &str| -> Vec<Value> {
        v.findings()
            .into_iter()
            .filter(|f| f["kind"] == kind)
            .collect()
    };
    let cleared = of("log_cleared");
    assert_eq!(cleared.len(), 1, "{:#?}", v.findings());
    assert_eq!(cleared[0]["severity"], "warning");
    assert!(cleared[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("Security-cleared.evtx"));
    assert!(cleared[0]["found"].as_str().unwrap().contains("event=1102"));
    assert!(cleared[0]["found"]
        .as_str()
        .unwrap()
        .contains("cleared_by=MSEDGEWIN10$"));
    let summaries = of("event_log_summary");
    assert_eq!(summaries.len(), 3, "{summaries:#?}");
    assert!(summaries.iter().any(|s| s["found"]
        .as_str()
        .unwrap()
        .starts_with("18 record(s): 18 logon success")));
    let broken = of("event_log_unreadable");
    assert_eq!(broken.len(), 1);
    assert!(broken[0]["file"].as_str().unwrap().ends_with("Broken.evtx"));
    assert!(broken[0]["message"].as_str().unwrap().contains("truncated"));
    let edited = of("event_log_checksum_mismatch");
    assert_eq!(edited.len(), 1, "{:#?}", v.findings());
    assert!(edited[0]["file"].as_str().unwrap().ends_with("Edited.evtx"));
    assert_eq!(edited[0]["found"], "chunk 0");
    assert_eq!(edited[0]["severity"], "warning");

    // The same bundle as text: the warning line names the event.
    let out = Command::new(&bins().verify)
        .arg("bundle")
        .arg(&bundle)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("WARNING log_cleared") && l.contains("event=1102")),
        "{text}"
    );
}
