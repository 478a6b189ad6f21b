//! `custody-report timeline`: every parsed unit of the window (syslog and
//! access-log lines, journal entries, login records, Windows events),
//! across hosts and sources, in time order, each with the evidence
//! reference `findings` gives (store object or bundle member, offset,
//! length, SHA-256s), so a responder sees what happened in what order and
//! an auditor can check any row.
//!
//! Two forms: CSV with the columns Timesketch imports (`message`,
//! `datetime`, `timestamp_desc`, plus `timestamp` in microseconds) and
//! custody's own, and JSON Lines with the same members. `datetime` is UTC;
//! `local_time` is in `--tz`, the zone named. An event two sources kept
//! (journald and syslog, an sshd line and its btmp record) is two rows,
//! the second naming the first in `same_event_as`: marked, never dropped.

use std::io::{self, Write};

use serde::Serialize;

use crate::findings::events::{Event, Kind};
use crate::input::{SegmentSummary, SourceKind};
use crate::localtime::Zone;
use crate::render::csv::{defuse, row};
use custody_evidence::segment::Framing;

/// The output form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

/// One row.
#[derive(Debug, Serialize)]
pub struct Row<'a> {
    pub message: &'a str,
    /// UTC, RFC 3339 to the microsecond.
    pub datetime: String,
    /// Microseconds since 1970-01-01T00:00:00Z.
    pub timestamp: i64,
    pub timestamp_desc: &'static str,
    pub local_time: String,
    pub host: &'a str,
    pub source: &'a str,
    pub category: &'a str,
    /// `failed_logon`, `logon`, `new_account`, `group_add`, `log_cleared`,
    /// `new_service`, `web_request`, or `other`.
    pub kind: &'static str,
    pub user: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub seq: u64,
    pub object: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<&'a str>,
    pub offset: u64,
    pub len: u64,
    pub line_sha256: &'a str,
    pub payload_raw_sha256: String,
    pub verified: bool,
    /// `HOST/STREAM/SEQ@OFFSET` of the row this one repeats, from another source.
    pub same_event_as: Option<String>,
}

const COLUMNS: [&str; 20] = [
    "message",
    "datetime",
    "timestamp",
    "timestamp_desc",
    "local_time",
    "host",
    "source",
    "category",
    "kind",
    "user",
    "ip",
    "seq",
    "object",
    "archive",
    "offset",
    "len",
    "line_sha256",
    "payload_raw_sha256",
    "verified",
    "same_event_as",
];

fn non_empty(s: &str) -> Option<&str> {
    Some(s).filter(|s| !s.is_empty())
}

fn kind_of(k: &Kind) -> (&'static str, Option<&str>, Option<&str>) {
    let ip = non_empty;
    match k {
        Kind::FailedLogon { user, ip: i } => ("failed_logon", Some(user), ip(i)),
        Kind::Logon { user, ip: i, .. } => ("logon", Some(user), ip(i)),
        Kind::NewAccount { name } => ("new_account", Some(name), None),
        Kind::GroupAdd { user, .. } => ("group_add", Some(user), None),
        Kind::LogCleared { by, .. } => ("log_cleared", ip(by), None),
        Kind::NewService { account, .. } => ("new_service", ip(account), None),
        Kind::Web { ip: i, .. } => ("web_request", None, ip(i)),
        Kind::WebrootChange { .. } => ("webroot_change", None, None),
        Kind::Noted {
            what, user, ip: i, ..
        } => (what, non_empty(user), ip(i)),
        Kind::Other => ("other", None, None),
    }
}

/// What the row's time is, in Timesketch's sense.
fn timestamp_desc(e: &Event, seg: &SegmentSummary) -> &'static str {
    if let Kind::LogCleared { detail, .. } = &e.kind {
        if !detail.is_empty() {
            return "custody segment first read";
        }
    }
    match (seg.source_kind, seg.framing) {
        (SourceKind::Inventory, _) => "web-root inventory taken",
        (SourceKind::EvtxFile | SourceKind::Eventlog, _) => "Windows event TimeCreated",
        (_, Framing::JournalExport) => "journal __REALTIME_TIMESTAMP",
        (_, Framing::Records { .. }) => "utmp ut_tv",
        (SourceKind::Syslog, _) => "syslog message time",
        _ => "log line time",
    }
}

fn reference(e: &Event, segs: &[SegmentSummary]) -> String {
    let s = &segs[e.seg as usize];
    format!("{}/{}/{}@{}", s.host, s.stream, s.seq, e.offset)
}

/// Writes every event (and every other source's copy of it) in time order.
pub fn write(
    out: &mut dyn Write,
    format: Format,
    events: &[Event],
    segs: &[SegmentSummary],
    zone: &Zone,
) -> io::Result<()> {
    let mut all: Vec<(&Event, Option<String>)> = Vec::with_capacity(events.len());
    for e in events {
        all.push((e, None));
        for a in &e.also {
            all.push((a, Some(reference(e, segs))));
        }
    }
    all.sort_by_key(|(e, _)| (e.time, e.seg, e.offset));
    if format == Format::Csv {
        let mut line = String::new();
        row(&mut line, COLUMNS.iter().map(|c| c.to_string()));
        out.write_all(line.as_bytes())?;
    }
    for (e, same) in all {
        let seg = &segs[e.seg as usize];
        let (kind, user, ip) = kind_of(&e.kind);
        let r = Row {
            message: &e.line,
            datetime: custody_evidence::timefmt::format_utc(e.time),
            timestamp: (e.time.unix_timestamp_nanos() / 1000) as i64,
            timestamp_desc: timestamp_desc(e, seg),
            local_time: zone.format(e.time),
            host: &seg.host,
            source: &seg.stream,
            category: &seg.category,
            kind,
            user,
            ip,
            seq: seg.seq,
            object: &seg.payload_key,
            archive: seg.archive.as_deref(),
            offset: e.offset,
            len: e.len,
            line_sha256: &e.line_sha256,
            payload_raw_sha256: seg.raw_sha256.to_hex(),
            verified: e.verified,
            same_event_as: same,
        };
        match format {
            Format::Jsonl => {
                serde_json::to_writer(&mut *out, &r)?;
                out.write_all(b"\n")?;
            }
            Format::Csv => {
                let mut line = String::new();
                row(
                    &mut line,
                    [
                        defuse(r.message),
                        r.datetime,
                        r.timestamp.to_string(),
                        r.timestamp_desc.to_string(),
                        r.local_time,
                        defuse(r.host),
                        defuse(r.source),
                        r.category.to_string(),
                        r.kind.to_string(),
                        defuse(r.user.unwrap_or_default()),
                        defuse(r.ip.unwrap_or_default()),
                        r.seq.to_string(),
                        defuse(r.object),
                        defuse(r.archive.unwrap_or_default()),
                        r.offset.to_string(),
                        r.len.to_string(),
                        r.line_sha256.to_string(),
                        r.payload_raw_sha256,
                        r.verified.to_string(),
                        r.same_event_as.unwrap_or_default(),
                    ]
                    .into_iter(),
                );
                out.write_all(line.as_bytes())?;
            }
        }
    }
    Ok(())
}
