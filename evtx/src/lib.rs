//! Reads Windows Event Log files (`.evtx`, the binary "ElfFile" format that
//! `EvtExportLog` writes) from bytes and picks out the events an
//! investigation asks for first:
//!
//! - `4624` an account logged on, `4625` an account failed to log on
//!   (Security channel): who, from where, how;
//! - `1102` the Security log was cleared, `104` another log (System,
//!   Application, …) was cleared: who did it.
//!
//! No I/O: the caller reads the file (`custody-verify evtx`, the bundle
//! verifier) and hands over the bytes, which are never changed. Parsing uses
//! the `evtx` crate; only the fields named above are extracted, from its JSON
//! rendering of each record.

pub mod records;

use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Event id of a successful logon (Security channel).
pub const LOGON_SUCCESS: u32 = 4624;
/// Event id of a failed logon (Security channel).
pub const LOGON_FAILURE: u32 = 4625;
/// Event id of "The audit log was cleared" (Security channel).
pub const SECURITY_LOG_CLEARED: u32 = 1102;
/// Event id of "The log file was cleared" (System channel, for any other log).
pub const LOG_CLEARED: u32 = 104;

/// Why a file could not be read as an event log.
#[derive(Debug, thiserror::Error)]
pub enum EvtxReadError {
    /// The file header is not an .evtx header (wrong magic, too short).
    #[error("not a Windows event log file (.evtx): {0}")]
    NotEvtx(String),
    /// The file is shorter than its header says (a copy cut short).
    #[error("the file is truncated: its header lists {chunks} chunk(s) of 64 KiB after a 4 KiB header ({expected} bytes), but it has {actual} bytes")]
    Truncated {
        /// Chunks the header lists.
        chunks: u16,
        /// Bytes that many chunks need.
        expected: u64,
        /// Bytes given.
        actual: u64,
    },
    /// A chunk or record could not be parsed: the file is truncated or damaged.
    #[error("record {index} (counting from 1, in file order) cannot be read, the file is truncated or damaged: {detail}")]
    Damaged {
        /// 1-based position of the failing record among those the parser reached.
        index: u64,
        /// The parser's error chain.
        detail: String,
    },
}

/// What kind of relevant event a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// 4624.
    LogonSuccess,
    /// 4625.
    LogonFailure,
    /// 1102 or 104.
    LogCleared,
}

/// One relevant event, with the fields a report needs. Strings are as the
/// record has them (`-` where Windows wrote `-`); absent fields are `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelevantEvent {
    /// `EventRecordID`: the record's number in its channel.
    pub record_id: u64,
    /// `TimeCreated/@SystemTime`, UTC, RFC 3339, to 100 ns (a FILETIME's resolution).
    pub time: Option<String>,
    /// `EventID`.
    pub event_id: u32,
    /// What the event id means here.
    pub kind: EventKind,
    /// `Channel` (Security, System, …).
    pub channel: Option<String>,
    /// `Computer`.
    pub computer: Option<String>,
    /// Logons: `TargetUserName`; clears: the account that cleared the log
    /// (`SubjectUserName`).
    pub user: Option<String>,
    /// Logons: `TargetDomainName`; clears: `SubjectDomainName`.
    pub domain: Option<String>,
    /// Logons: `LogonType` (2 interactive, 3 network, 5 service, 10 remote
    /// interactive, …).
    pub logon_type: Option<String>,
    /// Logons: `IpAddress`.
    pub source_ip: Option<String>,
    /// Failures: `Status` (and `SubStatus` after a slash when present).
    pub status: Option<String>,
    /// 104: the `Channel` that was cleared, from the event's user data.
    pub cleared_channel: Option<String>,
}

/// Everything read from one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EvtxSummary {
    /// Records read (all event ids).
    pub records: u64,
    /// The relevant events, in file order.
    pub events: Vec<RelevantEvent>,
    /// Chunks (numbered from 0 in the file) whose CRC-32 over their header
    /// or their records does not match: changed after Windows wrote them
    /// (edited, or damaged). Their records are still read and listed.
    pub bad_checksum_chunks: Vec<u64>,
}

impl EvtxSummary {
    /// How many relevant events are of `kind`.
    pub fn count(&self, kind: EventKind) -> usize {
        self.events.iter().filter(|e| e.kind == kind).count()
    }
}

/// The file header block: 4 KiB.
const HEADER_BLOCK: u64 = 4096;
/// Every chunk: 64 KiB.
const CHUNK: u64 = 65536;

/// Whether `bytes` start like an .evtx file (the `ElfFile\0` magic).
pub fn looks_like_evtx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"ElfFile\0")
}

/// Reads every record of an .evtx file and returns the relevant ones. Any
/// record or chunk that cannot be read is an error: a report that silently
/// skipped part of a log would claim more than it checked.
pub fn read_evtx(bytes: &[u8]) -> Result<EvtxSummary, EvtxReadError> {
    let mut parser = open_parser(bytes)?;
    let header = parser.header();
    let (chunks, actual) = (header.chunk_count, bytes.len() as u64);
    let expected = HEADER_BLOCK + u64::from(chunks) * CHUNK;
    if actual < expected || (actual - HEADER_BLOCK.min(actual)) % CHUNK != 0 {
        return Err(EvtxReadError::Truncated {
            chunks,
            expected,
            actual,
        });
    }
    let mut summary = EvtxSummary {
        bad_checksum_chunks: bad_checksum_chunks(bytes, u64::from(chunks)),
        ..Default::default()
    };
    for (i, record) in parser.records_json_value().enumerate() {
        let record = record.map_err(|e| EvtxReadError::Damaged {
            index: i as u64 + 1,
            detail: chain(&e),
        })?;
        summary.records += 1;
        if let Some(ev) = relevant(record.event_record_id, &record.data) {
            summary.events.push(ev);
        }
    }
    Ok(summary)
}

/// The `evtx` parser over `bytes`, once they start like an .evtx file;
/// records rendered to JSON with attributes inline, on this thread.
fn open_parser(bytes: &[u8]) -> Result<evtx::EvtxParser<std::io::Cursor<Vec<u8>>>, EvtxReadError> {
    if !looks_like_evtx(bytes) {
        return Err(EvtxReadError::NotEvtx(
            "the file does not start with the \"ElfFile\" signature".into(),
        ));
    }
    let settings = evtx::ParserSettings::new()
        .num_threads(1)
        .separate_json_attributes(false);
    Ok(evtx::EvtxParser::from_buffer(bytes.to_vec())
        .map_err(|e| EvtxReadError::NotEvtx(chain(&e)))?
        .with_configuration(settings))
}

/// The first `chunks` chunks (numbered from 0) whose CRC-32s do not match;
/// a chunk that does not even parse is reported by the record loop.
fn bad_checksum_chunks(bytes: &[u8], chunks: u64) -> Vec<u64> {
    (0..chunks)
        .filter(|&i| {
            let start = (HEADER_BLOCK + i * CHUNK) as usize;
            bytes
                .get(start..start + CHUNK as usize)
                .and_then(|data| evtx::EvtxChunkData::new(data.to_vec(), false).ok())
                .is_some_and(|chunk| !chunk.validate_checksum())
        })
        .collect()
}

/// An error and its sources, one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

/// The relevant event in one record's JSON rendering, if it is one.
pub fn relevant(record_id: u64, data: &Value) -> Option<RelevantEvent> {
    let event = data.get("Event")?;
    let system = event.get("System")?;
    let event_id = text(system.get("EventID")?)?.parse::<u32>().ok()?;
    let kind = match event_id {
        LOGON_SUCCESS => EventKind::LogonSuccess,
        LOGON_FAILURE => EventKind::LogonFailure,
        SECURITY_LOG_CLEARED | LOG_CLEARED => EventKind::LogCleared,
        _ => return None,
    };
    let time = system
        .get("TimeCreated")
        .and_then(|t| attr(t, "SystemTime"))
        .map(|t| utc_rfc3339(&t));
    let mut ev = RelevantEvent {
        record_id: system
            .get("EventRecordID")
            .and_then(text)
            .and_then(|s| s.parse().ok())
            .unwrap_or(record_id),
        time,
        event_id,
        kind,
        channel: system.get("Channel").and_then(text),
        computer: system.get("Computer").and_then(text),
        user: None,
        domain: None,
        logon_type: None,
        source_ip: None,
        status: None,
        cleared_channel: None,
    };
    let data = event_data(event);
    let field = |name: &str| data.as_ref().and_then(|d| d.get(name)).and_then(text);
    match kind {
        EventKind::LogonSuccess | EventKind::LogonFailure => {
            ev.user = field("TargetUserName");
            ev.domain = field("TargetDomainName");
            ev.logon_type = field("LogonType");
            ev.source_ip = field("IpAddress");
            if kind == EventKind::LogonFailure {
                ev.status = match (field("Status"), field("SubStatus")) {
                    (Some(s), Some(sub)) if sub != "0x0" => Some(format!("{s}/{sub}")),
                    (s, _) => s,
                };
            }
        }
        EventKind::LogCleared => {
            ev.user = field("SubjectUserName");
            ev.domain = field("SubjectDomainName");
            ev.cleared_channel = field("Channel");
        }
    }
    Some(ev)
}

/// The named fields of an event: `EventData` (`<Data Name="…">`) or, for
/// events with a schema of their own such as 1102 and 104, the single
/// element under `UserData` (`<UserData><LogFileCleared>…`).
fn event_data(event: &Value) -> Option<serde_json::Map<String, Value>> {
    if let Some(Value::Object(m)) = event.get("EventData") {
        return Some(m.clone());
    }
    match event.get("UserData") {
        Some(Value::Object(m)) => m.values().find_map(|v| v.as_object().cloned()),
        _ => None,
    }
}

/// An element's text: a string, a number, or the `#text` of an element that
/// also has attributes.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(m) => m.get("#text").and_then(text),
        _ => None,
    }
}

/// An element's attribute, as the `evtx` crate renders it (`#attributes`).
fn attr(v: &Value, name: &str) -> Option<String> {
    v.get("#attributes")
        .and_then(|a| a.get(name))
        .and_then(text)
}

/// `SystemTime` as UTC RFC 3339 to the 100 ns a Windows FILETIME holds (`…T13:18:23.6279516Z`);
/// left as written when it does not parse.
fn utc_rfc3339(s: &str) -> String {
    let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) else {
        return s.to_string();
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:7]Z"
    );
    t.format(&fmt).unwrap_or_else(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shape of a 1102 record as Windows writes it (UserData, not
    /// EventData): the clearing account is taken from it.
    #[test]
    fn security_log_cleared_names_who_cleared() {
        let rec = json!({"Event": {
            "System": {"EventID": 1102, "EventRecordID": 77, "Channel": "Security",
                       "Computer": "DC01", "TimeCreated": {"#attributes": {"SystemTime": "2024-05-01T02:03:04.1234567Z"}}},
            "UserData": {"LogFileCleared": {"SubjectUserSid": "S-1-5-21-1", "SubjectUserName": "mallory",
                                            "SubjectDomainName": "CORP", "SubjectLogonId": "0x1"}}}});
        let ev = relevant(1, &rec).expect("1102 is relevant");
        assert_eq!(ev.kind, EventKind::LogCleared);
        assert_eq!(ev.record_id, 77);
        assert_eq!(ev.user.as_deref(), Some("mallory"));
        assert_eq!(ev.domain.as_deref(), Some("CORP"));
        assert_eq!(ev.time.as_deref(), Some("2024-05-01T02:03:04.1234567Z"));
    }

    #[test]
    fn system_log_cleared_names_channel() {
        let rec = json!({"Event": {
            "System": {"EventID": {"#attributes": {"Qualifiers": 0}, "#text": 104}, "EventRecordID": 9, "Channel": "System"},
            "UserData": {"LogFileCleared": {"SubjectUserName": "admin", "SubjectDomainName": "WS1",
                                            "Channel": "Application", "BackupPath": ""}}}});
        let ev = relevant(1, &rec).expect("104 is relevant");
        assert_eq!(ev.event_id, 104);
        assert_eq!(ev.cleared_channel.as_deref(), Some("Application"));
        assert_eq!(ev.user.as_deref(), Some("admin"));
    }

    #[test]
    fn other_events_are_not_relevant() {
        let rec = json!({"Event": {"System": {"EventID": 4688, "EventRecordID": 1}}});
        assert!(relevant(1, &rec).is_none());
    }

    #[test]
    fn garbage_is_not_evtx() {
        assert!(matches!(
            read_evtx(b"hello, world"),
            Err(EvtxReadError::NotEvtx(_))
        ));
    }
}
