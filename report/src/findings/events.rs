//! What the parsers hand the detectors: one [`Event`] per line a rule may
//! look at, with where its bytes are.

use time::OffsetDateTime;

use crate::findings::model::Evidence;
use crate::input::SegmentSummary;

/// What a line says, in the terms the rules use.
#[derive(Debug, Clone)]
pub enum Kind {
    FailedLogon {
        user: String,
        ip: String,
    },
    Logon {
        user: String,
        ip: String,
        method: String,
    },
    NewAccount {
        name: String,
    },
    GroupAdd {
        user: String,
        group: String,
    },
    /// A log cleared: Windows 1102/104 (`by` the account), or what the
    /// records show (a file truncated in place, a journal cursor lost).
    LogCleared {
        channel: String,
        by: String,
        /// For what the records show: what happened, in full.
        detail: String,
    },
    /// Windows 7045: a service installed.
    NewService {
        name: String,
        image: String,
        account: String,
    },
    /// A file added, changed or removed under a web root, between two
    /// inventories (findings::webroot).
    WebrootChange {
        change: &'static str,
        path: String,
    },
    /// An event of a known meaning no rule fires on, for the timeline
    /// (Windows 4634, 4648, 4672, 7040: [`crate::parse::winevent::Meaning::Noted`]).
    Noted {
        what: &'static str,
        user: String,
        ip: String,
        detail: String,
    },
    /// A unit of a known format no rule uses, kept for the timeline.
    Other,
    Web {
        ip: String,
        method: String,
        path: String,
        status: u16,
        bytes: u64,
        user_agent: String,
    },
}

/// One line a rule may look at.
#[derive(Debug, Clone)]
pub struct Event {
    /// UTC.
    pub time: OffsetDateTime,
    /// Index of its segment in the report's segment list.
    pub seg: u32,
    pub offset: u64,
    pub len: u64,
    /// Lossy text of the line (for matching and for reading).
    pub line: String,
    /// SHA-256 of the line's raw bytes.
    pub line_sha256: String,
    pub kind: Kind,
    /// Set once its payload verified.
    pub verified: bool,
    /// The same event as another source kept it (findings::overlap).
    pub also: Vec<Event>,
}

impl Event {
    /// The client or peer IP, when the event has one (a local logon has
    /// none).
    pub fn ip(&self) -> Option<&str> {
        match &self.kind {
            Kind::FailedLogon { ip, .. } | Kind::Logon { ip, .. } | Kind::Web { ip, .. }
                if !ip.is_empty() =>
            {
                Some(ip)
            }
            _ => None,
        }
    }

    pub fn evidence(&self, seg: &SegmentSummary) -> Evidence {
        Evidence {
            host: seg.host.clone(),
            stream: seg.stream.clone(),
            seq: seg.seq,
            object: seg.payload_key.clone(),
            payload_raw_sha256: seg.raw_sha256.to_hex(),
            offset: self.offset,
            len: self.len,
            line: self.line.clone(),
            line_sha256: self.line_sha256.clone(),
            verified: self.verified,
            archive: seg.archive.clone(),
            decompress: seg.compression.map(|c| c.tool()),
        }
    }
}

/// Evidence for a line that is not an event (a note's line); `bytes` is
/// `None` for a line too long to hold (its hash is then not computed).
pub fn evidence_of(seg: &SegmentSummary, offset: u64, len: u64, bytes: Option<&[u8]>) -> Evidence {
    const SHOWN: usize = 512;
    let (line, line_sha256) = match bytes {
        Some(b) => {
            let shown = &b[..b.len().min(SHOWN)];
            (
                String::from_utf8_lossy(shown).into_owned(),
                custody_evidence::Sha256::digest(b).to_hex(),
            )
        }
        None => (String::new(), String::new()),
    };
    Evidence {
        host: seg.host.clone(),
        stream: seg.stream.clone(),
        seq: seg.seq,
        object: seg.payload_key.clone(),
        payload_raw_sha256: seg.raw_sha256.to_hex(),
        offset,
        len,
        line,
        line_sha256,
        verified: false,
        archive: seg.archive.clone(),
        decompress: seg.compression.map(|c| c.tool()),
    }
}

/// Whether `ip` is internal: RFC 1918, loopback, link-local, or IPv6
/// unique-local (fc00::/7) and link-local (fe80::/10). Anything else,
/// the documentation ranges included, is external.
pub fn is_internal(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
        Ok(std::net::IpAddr::V6(v6)) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_private() || v4.is_loopback() || v4.is_link_local();
            }
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
        Err(_) => false,
    }
}
