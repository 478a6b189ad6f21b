//! Every record of an .evtx file with where its bytes are: for reports
//! that cite one record (its offset and length in the file, so `tail -c |
//! head -c | sha256sum` re-derives it) and read fields beyond the ones
//! [`crate::relevant`] picks.
//!
//! The records' places come from walking the chunks as the format lays
//! them out (a 4 KiB file header, 64 KiB chunks, each with a 512-byte
//! header and then records that start `**\0\0`, their size, their
//! `EventRecordID`), independently of the parser, which renders each
//! record's binary XML to JSON.

use std::collections::HashMap;

use serde_json::Value;

use crate::{
    attr, bad_checksum_chunks, chain, event_data, open_parser, text, utc_rfc3339, EvtxReadError,
};

/// One record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvtxRecord {
    /// `EventRecordID` as the event's XML has it (the channel's number).
    pub record_id: u64,
    /// The number in the record's own header in this file (an export may
    /// renumber from 1): what the chunk walk finds it by.
    pub file_record_number: u64,
    /// Where the record's bytes are in the file (its `**\0\0` header to its
    /// trailing size copy); `None` when the chunk walk did not find it.
    pub place: Option<(u64, u64)>,
    pub event_id: Option<u32>,
    /// `TimeCreated/@SystemTime`, UTC, RFC 3339 to 100 ns.
    pub time: Option<String>,
    pub channel: Option<String>,
    pub computer: Option<String>,
    pub provider: Option<String>,
    /// `EventData` (`<Data Name=…>`), or the fields of the one element
    /// under `UserData`, as text.
    pub fields: Vec<(String, String)>,
}

/// Everything read from one file; parse failures are listed, not fatal.
#[derive(Debug, Clone, Default)]
pub struct EvtxRecords {
    pub records: Vec<EvtxRecord>,
    pub bad_checksum_chunks: Vec<u64>,
    /// (1-based position among the records the parser reached, why).
    pub unreadable: Vec<(u64, String)>,
}

const HEADER_BLOCK: usize = 4096;
const CHUNK: usize = 65536;

/// Reads every record; a file that is not an .evtx at all is an error.
pub fn read_records(bytes: &[u8]) -> Result<EvtxRecords, EvtxReadError> {
    let mut parser = open_parser(bytes)?;
    let chunks = bytes.len().saturating_sub(HEADER_BLOCK) / CHUNK;
    let mut out = EvtxRecords {
        bad_checksum_chunks: bad_checksum_chunks(bytes, chunks as u64),
        ..Default::default()
    };
    let places = record_places(bytes);
    for (i, record) in parser.records_json_value().enumerate() {
        match record {
            Ok(r) => out.records.push(fields_of(
                r.event_record_id,
                &r.data,
                places.get(&r.event_record_id).copied(),
            )),
            Err(e) => out.unreadable.push((i as u64 + 1, chain(&e))),
        }
    }
    Ok(out)
}

/// Record header number → (offset, length) of every record the chunk walk finds.
fn record_places(bytes: &[u8]) -> HashMap<u64, (u64, u64)> {
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    let mut places = HashMap::new();
    let mut base = HEADER_BLOCK;
    while base + CHUNK <= bytes.len() {
        if &bytes[base..base + 8] == b"ElfChnk\0" {
            let free = u32_at(base + 48).map_or(CHUNK, |f| (f as usize).min(CHUNK));
            let mut pos = base + 512;
            while pos + 28 <= base + free {
                if bytes[pos..pos + 4] != [0x2a, 0x2a, 0, 0] {
                    break;
                }
                let (Some(size), Some(id)) = (u32_at(pos + 4), u64_at(pos + 8)) else {
                    break;
                };
                let size = size as usize;
                if size < 28 || pos + size > base + CHUNK {
                    break;
                }
                places.insert(id, (pos as u64, size as u64));
                pos += size;
            }
        }
        base += CHUNK;
    }
    places
}

fn fields_of(record_id: u64, data: &Value, place: Option<(u64, u64)>) -> EvtxRecord {
    let event = data.get("Event");
    let system = event.and_then(|e| e.get("System"));
    let get = |name: &str| system.and_then(|s| s.get(name));
    let mut fields = Vec::new();
    if let Some(m) = event.and_then(event_data) {
        for (k, v) in &m {
            fields.push((k.clone(), text(v).unwrap_or_default()));
        }
    }
    EvtxRecord {
        file_record_number: record_id,
        record_id: get("EventRecordID")
            .and_then(text)
            .and_then(|s| s.parse().ok())
            .unwrap_or(record_id),
        place,
        event_id: get("EventID").and_then(text).and_then(|s| s.parse().ok()),
        time: get("TimeCreated")
            .and_then(|t| attr(t, "SystemTime"))
            .map(|t| utc_rfc3339(&t)),
        channel: get("Channel").and_then(text),
        computer: get("Computer").and_then(text),
        provider: get("Provider").and_then(|p| attr(p, "Name")),
        fields,
    }
}
