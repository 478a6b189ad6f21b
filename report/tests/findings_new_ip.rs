//! `new_ip_logon` over generated stores of real signed records, digests
//! and payloads (tests/common/synth.rs), since no agent can write forty
//! days of evidence in a test: a logon from an address the host's lines
//! never showed in the 30 days before the window is found; the address it
//! logs on from every day is not; a host whose evidence starts inside the
//! lookback gets a note instead of guesses. Runs the real binary.

mod common;

use std::process::Command;

use common::synth::{init_store, write_host, HostSpec, Kind, StreamSpec};
use custody_evidence::Category;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const NOW: OffsetDateTime = datetime!(2026-12-01 00:00 UTC);
const USUAL: &str = "10.0.0.5";
const NEW: &str = "203.0.113.99";

/// Every segment: the admin's usual logon; in the last day also one from
/// an address never used before.
fn auth_lines(t: OffsetDateTime) -> String {
    let ts = t.format(&Rfc3339).unwrap_or_default();
    let mut s =
        format!("{ts} web01 sshd[1]: Accepted publickey for admin from {USUAL} port 22 ssh2\n");
    if t >= NOW - Duration::days(1) {
        s.push_str(&format!(
            "{ts} web01 sshd[2]: Accepted password for admin from {NEW} port 4711 ssh2\n"
        ));
    }
    s
}

fn host(name: &str, days: i64) -> HostSpec {
    HostSpec {
        name: name.into(),
        start: NOW - Duration::days(days),
        end: NOW - Duration::hours(1),
        segment_every: Duration::hours(12),
        digest_every: Duration::days(1),
        retain_months: 6,
        streams: vec![StreamSpec {
            id: "logon.auth".into(),
            category: Category::Logon,
            kind: Kind::File("/var/log/auth.log".into()),
            skip: Vec::new(),
            lines: Some(auth_lines),
        }],
    }
}

/// `custody-report findings` over the last day before NOW, as JSON.
fn findings(store: &std::path::Path, extra: &[&std::ffi::OsStr]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_custody-report"))
        .arg("findings")
        .arg("--store")
        .arg(store)
        .args([
            "--from",
            "2026-11-30T00:00:00Z",
            "--to",
            "2026-12-01T00:00:00Z",
        ])
        .args(extra)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_logon_from_an_address_unseen_in_the_lookback_is_found_and_a_short_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    init_store(&store).unwrap();
    write_host(&store, &host("web01", 40)).unwrap();
    write_host(&store, &host("young01", 5)).unwrap();
    let v = findings(&store, &[]);
    let new: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "new_ip_logon")
        .collect();
    assert_eq!(new.len(), 1, "{v:#}");
    let f = new[0];
    assert_eq!(
        (f["host"].as_str(), f["ip"].as_str()),
        (Some("web01"), Some(NEW))
    );
    assert_eq!(f["user"], "admin");
    // The two segments of the window each hold one such logon.
    assert_eq!(f["evidence"].as_array().unwrap().len(), 2, "{f:#}");
    assert_eq!(f["verified"], true);
    let notes = v["notes"].as_array().unwrap();
    let short: Vec<&str> = notes
        .iter()
        .filter(|n| n["kind"] == "new_ip_lookback_short")
        .map(|n| n["message"].as_str().unwrap())
        .collect();
    assert_eq!(short.len(), 1, "{notes:#?}");
    assert!(short[0].contains("young01"), "{}", short[0]);

    // With the rule's lookback shortened to a day, web01's new address is
    // still new, and young01's history is long enough to judge it too.
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, "[new_ip_logon]\nlookback = \"1d\"\n").unwrap();
    let v = findings(&store, &["--rules".as_ref(), rules.as_os_str()]);
    let mut hosts: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "new_ip_logon")
        .map(|f| f["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["web01", "young01"], "{v:#}");
}
