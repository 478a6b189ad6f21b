//! One segment's payload: read the object once, check its SHA-256 against
//! the record, decompress it as a stream (bounded memory: one chunk and
//! at most one line held), hash the raw bytes as they pass, and hand every
//! line to the parsers. Whether the payload verified is known only at the
//! end, so the events are kept and marked then.

use std::io::Read;

use sha2::Digest;
use time::OffsetDateTime;

use crate::findings::events::{Event, Kind};
use crate::findings::lines::{Piece, Splitter};
use crate::findings::model::{Note, StreamStats, UnverifiedSegment};
use crate::input::{SegmentSummary, SourceKind};
use crate::parse::{accounts, sshd, syslog, w3c, web};
use custody_evidence::segment::Framing;

mod memo;
mod units;

/// Lines longer than this are counted and referenced, not matched.
pub const MAX_LINE: usize = 64 * 1024;
/// Notes kept per segment and kind; the rest are counted.
const NOTES_PER_KIND: usize = 20;
const CHUNK: usize = 256 * 1024;
/// Distinct User-Agents whose scanner check is remembered per segment.
const SCANNER_AGENTS_KEPT: usize = 4096;

/// What scanning one segment gave.
pub struct Scanned {
    pub events: Vec<Event>,
    pub stats: StreamStats,
    pub notes: Vec<Note>,
    pub notes_omitted: u64,
    pub unverified: Option<UnverifiedSegment>,
    /// Syslog times that ran backwards within the segment.
    pub backwards: u64,
    /// Every IP of the window's lines, with its figures (looked up once
    /// per line: hashed, not ordered; the report orders them).
    pub ips: std::collections::HashMap<String, IpAgg>,
    /// The IPs of lines in the lookback before the window.
    pub seen_before: std::collections::BTreeSet<String>,
}

/// Context the parsers need from the segment record.
pub struct Ctx<'a> {
    pub seg: &'a SegmentSummary,
    pub seg_index: u32,
    pub host_tz: &'a jiff::tz::TimeZone,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// Which access-log requests the detectors could use (the others are
    /// only counted per client, not kept).
    pub rules: &'a crate::findings::rules::Compiled,
    /// Keep every parsed unit as an event (for the timeline).
    pub keep_all: bool,
    /// Lines from here to `from` only record their IPs (`new_ip_logon`'s
    /// lookback); `from` itself when the rule is off.
    pub seen_from: OffsetDateTime,
}

/// Per client or peer IP in one segment: the abnormal-IP table's figures,
/// kept for every IP (one entry per distinct IP, not per line).
#[derive(Debug, Clone)]
pub struct IpAgg {
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    /// failed_logon, logon, web_request, web_error
    pub counts: [u64; 4],
}

/// The names of [`IpAgg::counts`].
pub const IP_COUNT_KINDS: [&str; 4] = ["failed_logon", "logon", "web_request", "web_error"];

/// An empty result for `seg`, before its bytes are read.
pub fn scanned_for(seg: &SegmentSummary) -> Scanned {
    Scanned {
        events: Vec::new(),
        stats: StreamStats {
            host: seg.host.clone(),
            stream: seg.stream.clone(),
            category: seg.category.clone(),
            segments: 1,
            bytes: seg.raw_len,
            ..Default::default()
        },
        notes: Vec::new(),
        notes_omitted: 0,
        unverified: None,
        backwards: 0,
        ips: Default::default(),
        seen_before: Default::default(),
    }
}

/// Scans `object` (the stored bytes of `ctx.seg`'s payload).
pub fn scan(object: Result<Vec<u8>, String>, ctx: &Ctx<'_>) -> Scanned {
    let seg = ctx.seg;
    let mut out = scanned_for(seg);
    let unverified =
        |check: &str, expected: Option<String>, found: Option<String>, message: String| {
            Some(UnverifiedSegment {
                host: seg.host.clone(),
                stream: seg.stream.clone(),
                seq: seg.seq,
                object: seg.payload_key.clone(),
                check: check.to_string(),
                expected,
                found,
                message,
            })
        };
    let bytes = match object {
        Ok(b) => b,
        Err(e) => {
            out.unverified = unverified(
                "read",
                None,
                None,
                format!("{e}: the payload could not be read; run custody-verify store for the full check"),
            );
            return out;
        }
    };
    let found_object = custody_evidence::Sha256::digest(&bytes);
    let mut object_mismatch = None;
    if found_object != seg.object_sha256 {
        object_mismatch = unverified(
            "object_sha256",
            Some(seg.object_sha256.to_hex()),
            Some(found_object.to_hex()),
            format!(
                "{}: the stored object's SHA-256 is not its record's: the object was changed or damaged after it was stored",
                seg.payload_key
            ),
        );
    }
    // The object is in memory: zstd reads it in place (`with_buffer`), not
    // through a second buffer.
    let (found_raw, decode_error) = match zstd::stream::read::Decoder::with_buffer(&bytes[..]) {
        Ok(mut dec) => scan_raw(&mut dec, ctx, &mut out),
        Err(e) => (custody_evidence::Sha256::digest(b""), Some(e.to_string())),
    };
    out.unverified = if let Some(e) = decode_error {
        unverified(
            "decompress",
            None,
            None,
            format!("{}: not a valid zstd frame ({e}); lines before the damage are reported as unverified", seg.payload_key),
        )
    } else if object_mismatch.is_some() {
        object_mismatch
    } else if found_raw != seg.raw_sha256 {
        unverified(
            "raw_sha256",
            Some(seg.raw_sha256.to_hex()),
            Some(found_raw.to_hex()),
            format!(
                "{}: the decompressed bytes' SHA-256 is not the record's raw_sha256",
                seg.payload_key
            ),
        )
    } else {
        None
    };
    out
}

/// Streams the raw bytes `reader` gives through the parsers of
/// `ctx.seg`'s framing into `out`; the SHA-256 of the bytes read, and
/// the read error that ended it early, if one did.
pub fn scan_raw(
    reader: &mut dyn Read,
    ctx: &Ctx<'_>,
    out: &mut Scanned,
) -> (custody_evidence::Sha256, Option<String>) {
    let seg = ctx.seg;
    let mut hasher = sha2::Sha256::new();
    let mut splitter = Splitter::new(MAX_LINE);
    let mut state = LineState {
        ctx,
        last_syslog: None,
        went_back: None,
        year: year_of(seg.last_read, ctx.host_tz),
        notes_by_kind: Default::default(),
        w3c: None,
        w3c_default: w3c::Fields::iis_default(),
        w3c_assumed: None,
        line_offset: 0,
        syslog_times: memo::Last::new(),
        web_times: memo::Last::new(),
        scanner_agents: memo::Bounded::new(SCANNER_AGENTS_KEPT),
    };
    let mut read_error = None;
    // Lines are split as they stream past. Journal entries, login records
    // and octet-counted frames are read from the raw bytes held whole
    // (bounded by the agent's segment size).
    let evtx = seg.source_kind == SourceKind::EvtxFile;
    // An inventory is hashed here and compared later (findings::webroot).
    let inventory = seg.source_kind == SourceKind::Inventory;
    let by_lines = seg.framing == Framing::Lines && !evtx && !inventory;
    let mut whole = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                if by_lines {
                    splitter.feed(&buf[..n], &mut |p| state.line(p, out));
                } else if !inventory {
                    whole.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        }
    }
    match seg.framing {
        _ if inventory => {}
        _ if evtx => state.evtx_file(&whole, out),
        Framing::Lines => splitter.finish(&mut |p| state.line(p, out)),
        Framing::JournalExport => state.journal(&whole, out),
        Framing::Records { size } => state.records(&whole, size as usize, out),
        Framing::OctetCounted if seg.source_kind == SourceKind::Eventlog => {
            state.eventlog_frames(&whole, out)
        }
        Framing::OctetCounted => state.syslog_frames(&whole, out),
    }
    if let Some(at) = state.w3c_assumed {
        state.note(
            out,
            "w3c_fields_assumed",
            format!(
                "host {} stream {} segment {}: IIS (W3C) lines from offset {at} were read with IIS's default fields ({}): the #Fields directive in force is in an earlier segment of the stream",
                seg.host, seg.stream, seg.seq, w3c::IIS_DEFAULT_FIELDS
            ),
            at,
            None,
            0,
        );
    }
    (custody_evidence::Sha256::from_hasher(hasher), read_error)
}

struct LineState<'a> {
    ctx: &'a Ctx<'a>,
    last_syslog: Option<OffsetDateTime>,
    went_back: Option<(OffsetDateTime, OffsetDateTime)>,
    /// The year of the segment's last read, in the host's zone.
    year: i16,
    notes_by_kind: std::collections::BTreeMap<&'static str, usize>,
    /// The `#Fields:` directive of an IIS log seen in this segment.
    w3c: Option<w3c::Fields>,
    /// IIS's default fields, for lines before any directive here.
    w3c_default: w3c::Fields,
    /// Offset of the first line read with the default fields.
    w3c_assumed: Option<u64>,
    /// Offset of the line being parsed.
    line_offset: u64,
    /// The last syslog timestamp (month, day, h, m, s) and its time.
    syslog_times: memo::Last<Option<OffsetDateTime>>,
    /// The last access-log `[time]` and its time.
    web_times: memo::Last<Option<OffsetDateTime>>,
    /// User-Agents and whether they name a scanner.
    scanner_agents: memo::Bounded,
}

fn year_of(t: OffsetDateTime, tz: &jiff::tz::TimeZone) -> i16 {
    jiff::Timestamp::new(t.unix_timestamp(), 0)
        .map(|ts| ts.to_zoned(tz.clone()).year())
        .unwrap_or(t.year() as i16)
}

impl LineState<'_> {
    /// A syslog timestamp completed with the segment's year and the
    /// host's zone; a line more than a day after its segment was read is
    /// taken to be from the year before (a December line read in January).
    fn syslog_time(&mut self, l: &syslog::Syslog<'_>) -> Option<OffsetDateTime> {
        let key = [l.month, l.day, l.hour, l.minute, l.second];
        let (ctx, year) = (self.ctx, self.year);
        self.syslog_times.get(&key, || syslog_time_in(ctx, year, l))
    }
}

/// [`LineState::syslog_time`], computed.
fn syslog_time_in(ctx: &Ctx<'_>, year: i16, l: &syslog::Syslog<'_>) -> Option<OffsetDateTime> {
    let tz = ctx.host_tz;
    let mk = |y: i16| -> Option<OffsetDateTime> {
        let dt = jiff::civil::DateTime::new(
            y,
            l.month as i8,
            l.day as i8,
            l.hour as i8,
            l.minute as i8,
            l.second.min(59) as i8,
            0,
        )
        .ok()?;
        let z = dt.to_zoned(tz.clone()).ok()?;
        OffsetDateTime::from_unix_timestamp(z.timestamp().as_second()).ok()
    };
    let t = mk(year)?;
    if t > ctx.seg.last_read + time::Duration::days(1) {
        mk(year - 1)
    } else {
        Some(t)
    }
}

impl LineState<'_> {
    fn note(
        &mut self,
        out: &mut Scanned,
        kind: &'static str,
        message: String,
        offset: u64,
        bytes: Option<&[u8]>,
        len: u64,
    ) {
        let n = self.notes_by_kind.entry(kind).or_default();
        *n += 1;
        if *n > NOTES_PER_KIND {
            out.notes_omitted += 1;
            return;
        }
        let ev = crate::findings::events::evidence_of(self.ctx.seg, offset, len, bytes);
        out.notes.push(Note {
            kind: kind.to_string(),
            message,
            evidence: Some(ev),
        });
    }

    /// A unit that looks like its format but does not read: counted as
    /// malformed, and a note citing its bytes (never silently skipped).
    fn malformed(
        &mut self,
        out: &mut Scanned,
        message: String,
        offset: u64,
        bytes: Option<&[u8]>,
        len: u64,
    ) {
        out.stats.lines_malformed += 1;
        self.note(out, "malformed", message, offset, bytes, len);
    }

    /// Counts and keeps one parsed line or entry; `false` when it is
    /// outside the window (counted, not kept).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        out: &mut Scanned,
        time: OffsetDateTime,
        kind: Option<Kind>,
        ip: Option<(&str, usize)>,
        offset: u64,
        raw: &[u8],
        text: &str,
    ) -> bool {
        if time < self.ctx.from || time > self.ctx.to {
            if time >= self.ctx.seen_from && time < self.ctx.from {
                if let Some((ip, _)) = ip {
                    if !out.seen_before.contains(ip) {
                        out.seen_before.insert(ip.to_string());
                    }
                }
            }
            out.stats.lines_outside_window += 1;
            return false;
        }
        if let Some((ip, which)) = ip {
            match out.ips.get_mut(ip) {
                Some(a) => {
                    a.first = a.first.min(time);
                    a.last = a.last.max(time);
                    a.counts[which] += 1;
                }
                None => {
                    let mut counts = [0; 4];
                    counts[which] = 1;
                    out.ips.insert(
                        ip.to_string(),
                        IpAgg {
                            first: time,
                            last: time,
                            counts,
                        },
                    );
                }
            }
        }
        if let Some(kind) = kind.or(self.ctx.keep_all.then_some(Kind::Other)) {
            out.events.push(Event {
                time,
                seg: self.ctx.seg_index,
                offset,
                len: raw.len() as u64,
                line: text.to_string(),
                line_sha256: custody_evidence::Sha256::digest(raw).to_hex(),
                kind,
                verified: false,
                also: Vec::new(),
            });
        }
        true
    }

    fn line(&mut self, piece: Piece<'_>, out: &mut Scanned) {
        out.stats.lines_read += 1;
        let (offset, raw) = match piece {
            Piece::Long { offset, len } => {
                out.stats.lines_too_long += 1;
                let seg = self.ctx.seg;
                self.note(
                    out,
                    "line_too_long",
                    format!(
                        "host {} stream {} segment {}: a {len}-byte line at offset {offset} is over the {MAX_LINE}-byte limit; it is kept in the store but not matched",
                        seg.host, seg.stream, seg.seq
                    ),
                    offset,
                    None,
                    len,
                );
                return;
            }
            Piece::Line { offset, bytes } => (offset, bytes),
        };
        self.text_unit(offset, raw, out);
    }

    /// One line of a file, or one syslog message of a device stream:
    /// `raw` is its bytes as stored, at `offset` in the payload.
    fn text_unit(&mut self, offset: u64, raw: &[u8], out: &mut Scanned) {
        let trimmed = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Valid UTF-8 (nearly every line) is checked by the fast path of
        // `from_utf8`; only the others go through the lossy decoder.
        let text = match std::str::from_utf8(trimmed) {
            Ok(t) => std::borrow::Cow::Borrowed(t),
            Err(_) => String::from_utf8_lossy(trimmed),
        };
        if trimmed.contains(&0) {
            self.note(
                out,
                "nul_bytes",
                "the line holds NUL bytes; they are kept, and matched as they are".into(),
                offset,
                Some(raw),
                raw.len() as u64,
            );
        }
        if matches!(text, std::borrow::Cow::Owned(_)) {
            self.note(
                out,
                "invalid_utf8",
                "the line is not valid UTF-8; it is matched and shown with U+FFFD in place of the invalid bytes, the evidence keeps the bytes".into(),
                offset,
                Some(raw),
                raw.len() as u64,
            );
        }
        self.line_offset = offset;
        match self.parse(&text) {
            Ok(Some((time, kind, ip))) => {
                if !self.record(out, time, kind, ip, offset, raw, &text) {
                    return;
                }
            }
            Ok(None) => {
                out.stats.lines_unparsed += 1;
                if out.stats.unparsed_examples.len() < crate::findings::model::UNPARSED_EXAMPLES {
                    out.stats
                        .unparsed_examples
                        .push(crate::findings::events::evidence_of(
                            self.ctx.seg,
                            offset,
                            raw.len() as u64,
                            Some(raw),
                        ));
                }
            }
            Err(why) => {
                self.malformed(out, why.to_string(), offset, Some(raw), raw.len() as u64);
            }
        }
        if let Some((t, prev)) = self.went_back.take() {
            out.backwards += 1;
            let seg = self.ctx.seg;
            self.note(
                out,
                "clock_backwards",
                format!(
                    "host {} stream {} segment {}: this line's time {} is before the previous line's {}; both are kept and used as written",
                    seg.host,
                    seg.stream,
                    seg.seq,
                    custody_evidence::timefmt::format_utc(t),
                    custody_evidence::timefmt::format_utc(prev)
                ),
                offset,
                Some(raw),
                raw.len() as u64,
            );
        }
    }

    /// An access-log request (Apache/nginx combined or IIS W3C): the event
    /// when a detector could use it (every one for the timeline), and its
    /// client with its [`IpAgg::counts`] index.
    #[allow(clippy::type_complexity)]
    fn request<'t>(
        &mut self,
        r: web::Request<'t>,
    ) -> (OffsetDateTime, Option<Kind>, Option<(&'t str, usize)>) {
        let which = if r.status >= 400 { 3 } else { 2 };
        let rules = self.ctx.rules;
        let agents = &mut self.scanner_agents;
        let relevant = self.ctx.keep_all
            || crate::findings::detect::web_relevant_with(rules, &r, |ua| {
                agents.get(ua, |ua| crate::findings::detect::scanner_agent(rules, ua))
            });
        let kind = relevant.then(|| Kind::Web {
            ip: r.client.to_string(),
            method: r.method.to_string(),
            path: r.path.to_string(),
            status: r.status,
            bytes: r.bytes,
            user_agent: r.user_agent.to_string(),
        });
        (r.time, kind, Some((r.client, which)))
    }

    /// `Ok(Some((time, event, ip)))` for a line of a known format (event
    /// when it is one a rule may use; ip with its [`IpAgg::counts`] index
    /// when the line names one), `Ok(None)` for other lines.
    #[allow(clippy::type_complexity)]
    fn parse<'t>(
        &mut self,
        text: &'t str,
    ) -> Result<Option<(OffsetDateTime, Option<Kind>, Option<(&'t str, usize)>)>, &'static str>
    {
        let line = if let Some(l) = syslog::parse(syslog::without_bsd_pri(text))? {
            let time = self
                .syslog_time(&l)
                .ok_or("syslog date does not exist in the year taken from the segment")?;
            Some((time, l.prog, l.message))
        } else {
            syslog::parse_full(text)?.map(|l| (l.time, l.prog, l.message))
        };
        if let Some((time, prog, message)) = line {
            if let Some(prev) = self.last_syslog {
                if time < prev {
                    self.went_back = Some((time, prev));
                }
            }
            self.last_syslog = Some(time);
            let (kind, ip) = classify(prog, message);
            return Ok(Some((time, kind, ip)));
        }
        let web_times = &mut self.web_times;
        let mut time_of = |stamp: &str| web_times.get(stamp.as_bytes(), || web::parse_time(stamp));
        if let Some(r) = web::parse_with(text, &mut time_of)? {
            return Ok(Some(self.request(r)));
        }
        if let Some(f) = w3c::Fields::from_directive(text) {
            self.w3c = Some(f);
            return Ok(None);
        }
        if w3c::looks_like(text) {
            // Without a directive, a line that does not read with IIS's
            // default fields is some other log that starts with a date
            // (a Java application's), not a malformed IIS line.
            let explicit = self.w3c.is_some();
            let fields = self.w3c.as_ref().unwrap_or(&self.w3c_default);
            let parsed = match w3c::parse(fields, text) {
                Err(_) if !explicit => None,
                other => other?,
            };
            if let Some(r) = parsed {
                if self.w3c.is_none() && self.w3c_assumed.is_none() {
                    self.w3c_assumed = Some(self.line_offset);
                }
                return Ok(Some(self.request(r)));
            }
        }
        Ok(None)
    }
}

/// What a syslog or journal message of program `prog` says: the event a
/// rule may use, and the IP it names with its [`IpAgg::counts`] index.
fn classify<'m>(prog: &str, message: &'m str) -> (Option<Kind>, Option<(&'m str, usize)>) {
    let mut ip = None;
    let kind = match prog {
        "sshd" => sshd::parse(message).and_then(|e| match e {
            sshd::SshEvent::Failed { user, ip: peer, .. } => {
                ip = Some((peer, 0));
                Some(Kind::FailedLogon {
                    user: user.to_string(),
                    ip: peer.to_string(),
                })
            }
            sshd::SshEvent::Accepted {
                user,
                ip: peer,
                method,
            } => {
                ip = Some((peer, 1));
                Some(Kind::Logon {
                    user: user.to_string(),
                    ip: peer.to_string(),
                    method: method.to_string(),
                })
            }
            sshd::SshEvent::InvalidUser { .. } => None,
        }),
        prog => accounts::parse(prog, message).map(|e| match e {
            accounts::AccountEvent::NewUser { name } => Kind::NewAccount {
                name: name.to_string(),
            },
            accounts::AccountEvent::GroupAdd { user, group } => Kind::GroupAdd {
                user: user.to_string(),
                group: group.to_string(),
            },
        }),
    };
    (kind, ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::SourceKind;
    use time::macros::datetime;

    fn seg(raw: &[u8], object: &[u8], last_read: OffsetDateTime) -> SegmentSummary {
        let mut s = crate::input::sample_segment("web01", "logon.auth", 7, last_read);
        s.raw_len = raw.len() as u64;
        s.payload_key = "v1/web01/streams/logon.auth/x.zst".into();
        s.object_sha256 = custody_evidence::Sha256::digest(object);
        s.raw_sha256 = custody_evidence::Sha256::digest(raw);
        s.range = (0, raw.len() as u64);
        s
    }

    fn run(s: &SegmentSummary, object: Vec<u8>) -> Scanned {
        let tz = jiff::tz::TimeZone::get("Asia/Taipei").unwrap();
        let rules = crate::findings::rules::load(None).unwrap();
        let ctx = Ctx {
            seg: s,
            seg_index: 0,
            host_tz: &tz,
            from: datetime!(2000-01-01 00:00 UTC),
            to: datetime!(2100-01-01 00:00 UTC),
            rules: &rules,
            keep_all: false,
            seen_from: datetime!(2000-01-01 00:00 UTC),
        };
        scan(Ok(object), &ctx)
    }

    #[test]
    fn syslog_year_comes_from_the_segment_and_rolls_back_over_new_year() {
        let raw = b"Dec 31 23:59:00 h sshd[1]: Accepted password for a from 10.0.0.1 port 1 ssh2\n\
Jan  1 00:00:30 h sshd[2]: Accepted password for b from 10.0.0.1 port 2 ssh2\n";
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        // Read at 08:01 on 1 January 2027, Taipei time.
        let s = seg(raw, &object, datetime!(2027-01-01 00:01 UTC));
        let out = run(&s, object);
        assert!(out.unverified.is_none());
        let times: Vec<_> = out.events.iter().map(|e| e.time).collect();
        assert_eq!(
            times,
            vec![
                datetime!(2026-12-31 15:59 UTC),
                datetime!(2026-12-31 16:00:30 UTC)
            ]
        );
        // The second line: right after the first one's `\n`, its own `\n` excluded.
        let second = raw.iter().position(|&b| b == b'\n').unwrap() + 1;
        let len = raw.len() - second - 1;
        assert_eq!(
            (out.events[1].offset, out.events[1].len),
            (second as u64, len as u64)
        );
    }

    #[test]
    fn a_wrong_raw_hash_is_named_as_such() {
        let raw = b"hello\n";
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let mut s = seg(raw, &object, datetime!(2026-12-01 00:00 UTC));
        s.raw_sha256 = custody_evidence::Sha256::digest(b"other");
        let out = run(&s, object.clone());
        let u = out.unverified.expect("unverified");
        assert_eq!(u.check, "raw_sha256");
        assert_eq!(
            u.found,
            Some(custody_evidence::Sha256::digest(raw).to_hex())
        );
        // A damaged frame: named as decompression, never a panic.
        let mut bad = object;
        let n = bad.len();
        bad.truncate(n - 3);
        let out = run(&s, bad);
        assert_eq!(out.unverified.expect("unverified").check, "decompress");
    }

    #[test]
    fn journal_entries_feed_the_sshd_and_account_parsers_citing_whole_entries() {
        let first = b"__CURSOR=s=1\n__REALTIME_TIMESTAMP=1764700380123456\n_HOSTNAME=web01\nSYSLOG_IDENTIFIER=sshd\nMESSAGE=Failed password for root from 203.0.113.9 port 22 ssh2\n\n".to_vec();
        let mut second =
            b"__CURSOR=s=2\n__REALTIME_TIMESTAMP=1764700381000000\n_COMM=useradd\nMESSAGE\n"
                .to_vec();
        let msg = b"new user: name=eve, UID=1001, GID=1001, home=/home/eve, shell=/bin/bash, from=/dev/pts/0";
        second.extend_from_slice(&(msg.len() as u64).to_le_bytes());
        second.extend_from_slice(msg);
        second.extend_from_slice(b"\n\n");
        let third = b"__CURSOR=s=3\n__REALTIME_TIMESTAMP=1764700382000000\nSYSLOG_IDENTIFIER=cron\nMESSAGE=hello\n\n".to_vec();
        let cut = b"__CURSOR=s=4\nMESSAGE=cut".to_vec();
        let raw = [first.clone(), second.clone(), third.clone(), cut].concat();
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let mut s = seg(&raw, &object, datetime!(2025-12-02 18:40 UTC));
        s.source_kind = SourceKind::Journal;
        s.framing = Framing::JournalExport;
        let out = run(&s, object);
        assert!(out.unverified.is_none());
        assert_eq!(out.events.len(), 2, "{:?}", out.events);
        let e = &out.events[0];
        assert_eq!(e.time, datetime!(2025-12-02 18:33:00.123456 UTC));
        assert_eq!((e.offset, e.len), (0, first.len() as u64));
        assert_eq!(
            e.line_sha256,
            custody_evidence::Sha256::digest(&first).to_hex()
        );
        assert!(
            matches!(&e.kind, Kind::FailedLogon { user, ip } if user == "root" && ip == "203.0.113.9")
        );
        let e = &out.events[1];
        assert_eq!((e.offset, e.len), (first.len() as u64, second.len() as u64));
        assert!(matches!(&e.kind, Kind::NewAccount { name } if name == "eve"));
        // Three entries and the cut tail: never silently skipped.
        assert_eq!(out.stats.lines_read, 4);
        assert_eq!(out.stats.lines_malformed, 1);
        let n = out.notes.iter().find(|n| n.kind == "malformed").unwrap();
        let ev = n.evidence.as_ref().unwrap();
        assert_eq!(ev.offset, (first.len() + second.len() + third.len()) as u64);
        assert!(out.ips.contains_key("203.0.113.9"));
    }

    #[test]
    fn wtmp_logons_and_btmp_failures_cite_their_384_byte_records() {
        use crate::parse::utmp::{encode, DEAD_PROCESS, USER_PROCESS};
        let t = 1_796_148_785; // 2026-12-01T18:13:05Z
        let raw = [
            encode(USER_PROCESS, 811, "pts/0", "alice", "203.0.113.7", t),
            encode(DEAD_PROCESS, 811, "pts/0", "", "", t + 60),
            vec![1u8; 100], // a cut tail
        ]
        .concat();
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let mut s = seg(&raw, &object, datetime!(2026-12-01 18:20 UTC));
        s.framing = Framing::Records { size: 384 };
        s.source_label = "/var/log/wtmp".into();
        let out = run(&s, object);
        assert_eq!(out.events.len(), 1, "{:?}", out.events);
        let e = &out.events[0];
        assert!(
            matches!(&e.kind, Kind::Logon { user, ip, .. } if user == "alice" && ip == "203.0.113.7")
        );
        assert_eq!(
            (e.offset, e.len, e.time),
            (0, 384, datetime!(2026-12-01 18:13:05 UTC))
        );
        assert_eq!(
            e.line_sha256,
            custody_evidence::Sha256::digest(&raw[..384]).to_hex()
        );
        assert_eq!((out.stats.lines_read, out.stats.lines_malformed), (3, 1));
        let raw = encode(6, 900, "ssh:notty", "root", "198.51.100.4", t).repeat(3);
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let mut s = seg(&raw, &object, datetime!(2026-12-01 18:20 UTC));
        s.framing = Framing::Records { size: 384 };
        s.source_label = "/var/log/btmp.1".into();
        let out = run(&s, object);
        assert_eq!(out.events.len(), 3);
        assert!(out
            .events
            .iter()
            .all(|e| matches!(&e.kind, Kind::FailedLogon { user, .. } if user == "root")));
        assert_eq!(out.events[2].offset, 768);
        assert_eq!(out.ips["198.51.100.4"].counts[0], 3);
    }

    #[test]
    fn event_log_frames_are_utf16_xml_and_device_frames_are_syslog() {
        let xml = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Service Control Manager'/><EventID Qualifiers='16384'>7045</EventID><TimeCreated SystemTime='2026-12-01T18:30:00.5000000Z'/><EventRecordID>77</EventRecordID><Channel>System</Channel><Computer>ws01</Computer></System><EventData><Data Name='ServiceName'>updater</Data><Data Name='ImagePath'>C:\\Users\\Public\\u.exe</Data><Data Name='ServiceType'>user mode service</Data><Data Name='StartType'>auto start</Data><Data Name='AccountName'>LocalSystem</Data></EventData></Event>";
        let utf16: Vec<u8> = xml.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let mut raw = Vec::new();
        custody_evidence::octets::append_frame(&mut raw, &utf16);
        custody_evidence::octets::append_frame(&mut raw, b"\xff\xfe\x00");
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let mut s = seg(&raw, &object, datetime!(2026-12-01 18:31 UTC));
        s.framing = Framing::OctetCounted;
        s.source_kind = SourceKind::Eventlog;
        let out = run(&s, object);
        assert_eq!(out.events.len(), 1);
        let e = &out.events[0];
        assert!(matches!(&e.kind, Kind::NewService { name, .. } if name == "updater"));
        let prefix = format!("{} ", utf16.len()).len() as u64;
        assert_eq!((e.offset, e.len), (prefix, utf16.len() as u64));
        assert_eq!(e.time, datetime!(2026-12-01 18:30:00.5 UTC));
        assert_eq!((out.stats.lines_read, out.stats.lines_malformed), (2, 1));

        let mut raw = Vec::new();
        custody_evidence::octets::append_frame(
            &mut raw,
            b"<38>Dec  2 02:13:05 fw01 sshd[9]: Accepted password for admin from 203.0.113.9 port 5 ssh2",
        );
        raw.extend_from_slice(b"12 cut");
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let mut s = seg(&raw, &object, datetime!(2026-12-01 18:31 UTC));
        s.framing = Framing::OctetCounted;
        s.source_kind = SourceKind::Syslog;
        let out = run(&s, object);
        assert_eq!(out.events.len(), 1);
        assert_eq!(out.events[0].offset, 3);
        assert_eq!(out.stats.lines_malformed, 1);
    }

    #[test]
    fn the_real_iis_sample_reads_every_data_line_with_and_without_its_directive() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/windows/iis_w3c.log"
        );
        let raw = std::fs::read(path).unwrap();
        let text = String::from_utf8_lossy(&raw).into_owned();
        let data = text
            .lines()
            .filter(|l| w3c::looks_like(l.trim_end_matches('\r')))
            .count();
        assert!(data > 4000, "{data}");
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let s = seg(&raw, &object, datetime!(2019-09-04 00:00 UTC));
        let out = run(&s, object);
        assert!(out.unverified.is_none());
        let st = &out.stats;
        assert_eq!(st.lines_malformed, 0, "{:?}", out.notes);
        assert_eq!(st.lines_read - st.lines_unparsed, data as u64);
        assert!(out.ips.contains_key("10.0.2.17"));
        assert!(!out.notes.iter().any(|n| n.kind == "w3c_fields_assumed"));
        // A segment that starts after the directive: IIS's default fields,
        // and a note that says so.
        let cut = text.find("\n2019").unwrap() + 1;
        let raw = raw[cut..].to_vec();
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let s = seg(&raw, &object, datetime!(2019-09-04 00:00 UTC));
        let out = run(&s, object);
        assert_eq!(out.stats.lines_malformed, 0);
        assert!(out.notes.iter().any(|n| n.kind == "w3c_fields_assumed"));
        // An application log that starts with a date is not IIS.
        let raw = b"2026-12-02 10:00:00 INFO  [main] Server started on port 8080\n".to_vec();
        let object = zstd::encode_all(&raw[..], 3).unwrap();
        let s = seg(&raw, &object, datetime!(2026-12-02 03:00 UTC));
        let out = run(&s, object);
        assert_eq!(
            (out.stats.lines_malformed, out.stats.lines_unparsed),
            (0, 1)
        );
    }
}
