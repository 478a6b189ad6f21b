//! `custody-verify evtx FILE.evtx`: lists the logon and log-clearing events
//! of a Windows event log file; and the bundle check's inspector, which
//! reports cleared logs inside a bundle (FORMAT.md §14.10, §17.6).

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use custody_evidence::bundle::verify::{BundleFindingKind, PayloadInspector, PayloadNote};
use custody_evidence::verify::Severity;
use custody_evtx::{read_evtx, EventKind, EvtxSummary, RelevantEvent};
use serde::Serialize;

/// The largest .evtx read into memory (Windows' own default maximum for the
/// Security log is 20 MiB; administrators raise it to a few hundred).
pub const MAX_EVTX_BYTES: u64 = 1 << 30;

#[derive(Serialize)]
struct JsonReport<'a> {
    file: String,
    records: u64,
    logon_success: usize,
    logon_failure: usize,
    log_cleared: usize,
    bad_checksum_chunks: &'a [u64],
    events: &'a [RelevantEvent],
}

/// Reads `file` and prints its relevant events. `Ok(false)` (exit code 1)
/// when a chunk's CRC-32 does not match (the file is not as Windows wrote
/// it); `Err` (exit code 2) when the file cannot be read or is not a whole
/// .evtx file.
pub fn run_evtx(file: &Path, json: bool) -> Result<bool> {
    let name = file.display().to_string();
    let meta = fs::metadata(file)
        .with_context(|| format!("{name}: cannot access it; pass a .evtx file"))?;
    if !meta.is_file() {
        anyhow::bail!("{name} is not a regular file; pass a .evtx file");
    }
    if meta.len() > MAX_EVTX_BYTES {
        anyhow::bail!(
            "{name}: {} bytes, larger than this verifier reads ({MAX_EVTX_BYTES}); export a narrower range with wevtutil epl /q:",
            meta.len()
        );
    }
    let bytes =
        fs::read(file).with_context(|| format!("{name}: cannot read it; check permissions"))?;
    let summary = read_evtx(&bytes).with_context(|| {
        format!("{name}: not read; nothing was listed (the file's SHA-256 still identifies it; get an intact export)")
    })?;
    if json {
        let report = JsonReport {
            file: name,
            records: summary.records,
            logon_success: summary.count(EventKind::LogonSuccess),
            logon_failure: summary.count(EventKind::LogonFailure),
            log_cleared: summary.count(EventKind::LogCleared),
            bad_checksum_chunks: &summary.bad_checksum_chunks,
            events: &summary.events,
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the report as JSON")?
        );
    } else {
        for ev in &summary.events {
            println!("{}", line(ev));
        }
        for c in &summary.bad_checksum_chunks {
            println!("chunk={c} checksum=mismatch: {CHECKSUM_NOTE}");
        }
        println!(
            "{name}: {}; {}",
            totals(&summary),
            if summary.bad_checksum_chunks.is_empty() {
                "checksums OK"
            } else {
                "checksums FAILED"
            }
        );
    }
    Ok(summary.bad_checksum_chunks.is_empty())
}

const CHECKSUM_NOTE: &str = "the chunk's CRC-32 (header or records) does not match: its records were changed after Windows wrote them, or damaged; they are listed as they are now";

/// `N record(s): a logon success, b logon failure, c log cleared`.
fn totals(s: &EvtxSummary) -> String {
    format!(
        "{} record(s): {} logon success (4624), {} logon failure (4625), {} log cleared (1102/104)",
        s.records,
        s.count(EventKind::LogonSuccess),
        s.count(EventKind::LogonFailure),
        s.count(EventKind::LogCleared)
    )
}

/// One event as `key=value` pairs; values with spaces are quoted.
fn line(ev: &RelevantEvent) -> String {
    let kind = match ev.kind {
        EventKind::LogonSuccess => "logon_success",
        EventKind::LogonFailure => "logon_failure",
        EventKind::LogCleared => "log_cleared",
    };
    let mut out = format!(
        "record={} time={} event={} kind={kind}",
        ev.record_id,
        q(&ev.time),
        ev.event_id
    );
    let user_key = if ev.kind == EventKind::LogCleared {
        "cleared_by"
    } else {
        "user"
    };
    let fields: [(&str, &Option<String>); 8] = [
        ("channel", &ev.channel),
        ("computer", &ev.computer),
        (user_key, &ev.user),
        ("domain", &ev.domain),
        ("logon_type", &ev.logon_type),
        ("source_ip", &ev.source_ip),
        ("status", &ev.status),
        ("cleared_channel", &ev.cleared_channel),
    ];
    for (k, v) in fields {
        if v.is_some() {
            out.push_str(&format!(" {k}={}", q(v)));
        }
    }
    out
}

fn q(v: &Option<String>) -> String {
    match v.as_deref() {
        None => "?".into(),
        Some(s) if s.is_empty() || s.contains([' ', '"', '=']) => format!("{s:?}"),
        Some(s) => s.to_string(),
    }
}

/// Reads the .evtx files of a bundle: a `log_cleared` warning per 1102/104
/// event, an `event_log_summary` info line per file, and
/// `event_log_unreadable` (warning) for one that does not parse.
pub struct EvtxInspector;

impl PayloadInspector for EvtxInspector {
    fn wants(&self, path: &str) -> bool {
        path.to_ascii_lowercase().ends_with(".evtx")
    }

    fn max_bytes(&self) -> u64 {
        MAX_EVTX_BYTES
    }

    fn inspect(&self, _path: &str, bytes: &[u8]) -> Vec<PayloadNote> {
        let summary = match read_evtx(bytes) {
            Ok(s) => s,
            Err(e) => {
                return vec![PayloadNote {
                    kind: BundleFindingKind::EventLogUnreadable,
                    severity: Severity::Warning,
                    message: format!("an .evtx file whose events cannot be listed: {e}; its bytes are verified by hash all the same"),
                    found: None,
                }]
            }
        };
        let mut notes: Vec<PayloadNote> = summary
            .events
            .iter()
            .filter(|e| e.kind == EventKind::LogCleared)
            .map(|e| PayloadNote {
                kind: BundleFindingKind::LogCleared,
                severity: Severity::Warning,
                message: format!(
                    "the {} log was cleared on {}: events before this one may be missing from the source",
                    e.cleared_channel.as_deref().or(e.channel.as_deref()).unwrap_or("?"),
                    e.computer.as_deref().unwrap_or("?")
                ),
                found: Some(line(e)),
            })
            .collect();
        for c in &summary.bad_checksum_chunks {
            notes.push(PayloadNote {
                kind: BundleFindingKind::EventLogChecksumMismatch,
                severity: Severity::Warning,
                message: CHECKSUM_NOTE.into(),
                found: Some(format!("chunk {c}")),
            });
        }
        notes.push(PayloadNote {
            kind: BundleFindingKind::EventLogSummary,
            severity: Severity::Info,
            message: "Windows event log read".into(),
            found: Some(totals(&summary)),
        });
        notes
    }
}
