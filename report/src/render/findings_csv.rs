//! `findings --format csv`: one row per finding (its first evidence line
//! and the number of lines it cites; the JSON has them all), or with
//! `--table ips` one row per abnormal IP. Cells that a spreadsheet would
//! run as a formula are prefixed with `'` (log lines are attacker text).

use crate::findings::model::Report;
use crate::render::csv::{defuse, row};

/// One row per finding.
pub fn findings(r: &Report) -> String {
    let mut out = String::new();
    row(
        &mut out,
        [
            "rule",
            "severity",
            "verified",
            "time",
            "time_local",
            "last_time",
            "host",
            "ip",
            "user",
            "summary",
            "evidence_lines",
            "stream",
            "seq",
            "object",
            "payload_raw_sha256",
            "offset",
            "len",
            "line_sha256",
            "line",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for f in &r.findings {
        let e = f.evidence.first();
        row(
            &mut out,
            [
                f.rule.clone(),
                f.severity.clone(),
                f.verified.to_string(),
                f.time.clone(),
                f.time_local.clone(),
                f.last_time.clone(),
                f.host.clone(),
                f.ip.clone().unwrap_or_default(),
                f.user.clone().unwrap_or_default(),
                f.summary.clone(),
                f.evidence.len().to_string(),
                e.map(|e| e.stream.clone()).unwrap_or_default(),
                e.map(|e| e.seq.to_string()).unwrap_or_default(),
                e.map(|e| e.object.clone()).unwrap_or_default(),
                e.map(|e| e.payload_raw_sha256.clone()).unwrap_or_default(),
                e.map(|e| e.offset.to_string()).unwrap_or_default(),
                e.map(|e| e.len.to_string()).unwrap_or_default(),
                e.map(|e| e.line_sha256.clone()).unwrap_or_default(),
                e.map(|e| e.line.clone()).unwrap_or_default(),
            ]
            .iter()
            .map(|s| defuse(s)),
        );
    }
    out
}

/// One row per abnormal IP.
pub fn ips(r: &Report) -> String {
    let mut out = String::new();
    row(
        &mut out,
        [
            "ip",
            "internal",
            "first_seen",
            "last_seen",
            "hosts",
            "failed_logon",
            "logon",
            "web_request",
            "web_error",
            "rules",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    for a in &r.abnormal_ips {
        let n = |k: &str| a.counts.get(k).copied().unwrap_or(0).to_string();
        row(
            &mut out,
            [
                a.ip.clone(),
                a.internal.to_string(),
                a.first_seen.clone(),
                a.last_seen.clone(),
                a.hosts.join(" "),
                n("failed_logon"),
                n("logon"),
                n("web_request"),
                n("web_error"),
                a.rules.join(" "),
            ]
            .iter()
            .map(|s| defuse(s)),
        );
    }
    out
}
