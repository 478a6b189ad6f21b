//! The units of segments that are not text lines, each cited as its own
//! bytes: journal export entries (FORMAT.md §16.1), login records
//! (wtmp/btmp, `framing` `records`), syslog device messages and Windows
//! Event Log events (`octet_counted` frames, §13.2, §17.2). Like lines,
//! every unit is counted: parsed, unparsed or malformed, never skipped.

use time::OffsetDateTime;

use super::{classify, LineState, Scanned};
use crate::findings::events::Kind;
use crate::parse::winevent::{self, Meaning};
use crate::parse::{journal, utmp};

impl LineState<'_> {
    /// Every entry of a journal segment's raw bytes (FORMAT.md §16.1):
    /// MESSAGE goes through the sshd and account parsers under the
    /// entry's SYSLOG_IDENTIFIER (else _COMM), at its
    /// __REALTIME_TIMESTAMP (UTC, exact); the evidence is the whole entry.
    pub(super) fn journal(&mut self, raw: &[u8], out: &mut Scanned) {
        let mut pos = 0;
        loop {
            let (e, next) = match journal::next_entry(raw, pos) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                Err(m) => {
                    // The rest cannot be split into entries: one note for
                    // it, counted as one malformed unit.
                    out.stats.lines_read += 1;
                    let seg = self.ctx.seg;
                    let rest = &raw[pos..];
                    self.malformed(
                        out,
                        format!(
                            "host {} stream {} segment {}: {} (at offset {}); the {} bytes from offset {pos} are kept but not matched",
                            seg.host, seg.stream, seg.seq, m.why, m.offset, rest.len()
                        ),
                        pos as u64,
                        Some(rest),
                        rest.len() as u64,
                    );
                    break;
                }
            };
            pos = next;
            out.stats.lines_read += 1;
            let bytes = &raw[e.offset as usize..][..e.len as usize];
            let text = String::from_utf8_lossy(bytes);
            let Some(time) = e.realtime_usec.and_then(|us| {
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000).ok()
            }) else {
                self.malformed(
                    out,
                    "journal entry without a usable __REALTIME_TIMESTAMP; kept but not matched"
                        .into(),
                    e.offset,
                    Some(bytes),
                    e.len,
                );
                continue;
            };
            // An entry is of a known format whatever it says, as a
            // syslog line is: counted as parsed, kept when a rule may use it.
            let prog = String::from_utf8_lossy(e.program().unwrap_or_default());
            let message = String::from_utf8_lossy(e.message.unwrap_or_default());
            let (kind, ip) = classify(&prog, &message);
            self.record(out, time, kind, ip, e.offset, bytes, &text);
        }
    }

    /// Fixed-size records: wtmp logons (`USER_PROCESS`) and, in a file
    /// named `btmp*`, failed logons; every other record type (logoffs,
    /// boots, run levels) is parsed and counted, not used by a rule.
    pub(super) fn records(&mut self, raw: &[u8], size: usize, out: &mut Scanned) {
        let seg = self.ctx.seg;
        if size != utmp::RECORD {
            let n = raw.len().div_ceil(size.max(1)) as u64;
            out.stats.lines_read += n;
            out.stats.lines_unparsed += n;
            self.note(
                out,
                "unknown_records",
                format!(
                    "host {} stream {} segment {}: records of {size} bytes are not login records (384 bytes); {n} record(s) kept, not matched",
                    seg.host, seg.stream, seg.seq
                ),
                0,
                None,
                raw.len() as u64,
            );
            return;
        }
        let failures = file_name(&seg.source_label).starts_with("btmp");
        let mut offset = 0usize;
        while offset < raw.len() {
            let rec = &raw[offset..raw.len().min(offset + size)];
            out.stats.lines_read += 1;
            let at = offset as u64;
            offset += size;
            let u = match utmp::parse(rec) {
                Ok(u) => u,
                Err(why) => {
                    self.malformed(
                        out,
                        format!(
                            "host {} stream {} segment {}: {why} (record at offset {at}); kept, not matched",
                            seg.host, seg.stream, seg.seq
                        ),
                        at,
                        Some(rec),
                        rec.len() as u64,
                    );
                    continue;
                }
            };
            let Ok(time) = OffsetDateTime::from_unix_timestamp(u.sec)
                .map(|t| t + time::Duration::microseconds(i64::from(u.usec)))
            else {
                self.malformed(
                    out,
                    format!(
                        "host {} stream {} segment {}: ut_tv {} is not a time (record at offset {at}); kept, not matched",
                        seg.host, seg.stream, seg.seq, u.sec
                    ),
                    at,
                    Some(rec),
                    rec.len() as u64,
                );
                continue;
            };
            let peer = u.peer();
            let text = format!(
                "{} type={} pid={} line={:?} user={:?} host={:?} time={}",
                if failures { "btmp" } else { "wtmp" },
                u.kind,
                u.pid,
                u.line,
                u.user,
                u.host,
                custody_evidence::timefmt::format_utc(time)
            );
            let (kind, ip) = if failures {
                (
                    Some(Kind::FailedLogon {
                        user: u.user.clone(),
                        ip: peer.clone(),
                    }),
                    Some((peer.as_str(), 0)),
                )
            } else if u.kind == utmp::USER_PROCESS {
                (
                    Some(Kind::Logon {
                        user: u.user.clone(),
                        ip: peer.clone(),
                        method: format!("wtmp {}", u.line),
                    }),
                    Some((peer.as_str(), 1)),
                )
            } else {
                (None, None)
            };
            let ip = ip.filter(|(p, _)| !p.is_empty());
            self.record(out, time, kind, ip, at, rec, &text);
        }
    }

    /// Octet-counted syslog messages (a device stream): each message is
    /// read as a line, its `<PRI>` included in the evidence.
    pub(super) fn syslog_frames(&mut self, raw: &[u8], out: &mut Scanned) {
        self.frames(raw, out, FrameKind::Syslog);
    }

    /// Octet-counted Windows events (FORMAT.md §17.2): UTF-16LE XML as
    /// `EvtRender` wrote it; the evidence is the frame's bytes.
    pub(super) fn eventlog_frames(&mut self, raw: &[u8], out: &mut Scanned) {
        self.frames(raw, out, FrameKind::WindowsEvent);
    }

    fn windows_event(&mut self, at: u64, msg: &[u8], out: &mut Scanned) {
        let seg = self.ctx.seg;
        let read = winevent::decode_utf16le(msg)
            .map_err(str::to_string)
            .and_then(|(text, lossy)| {
                if lossy {
                    return Err("the event's UTF-16 holds an unpaired surrogate".into());
                }
                let ev = winevent::parse_xml(&text)?;
                let time = system_time(ev.system_time.as_deref())
                    .ok_or("event without a usable TimeCreated/@SystemTime")?;
                Ok((text, ev, time))
            });
        match read {
            Ok((text, ev, time)) => self.windows_record(out, time, &ev, at, msg, &text),
            Err(why) => self.malformed(
                out,
                format!(
                    "host {} stream {} segment {}: {why} (frame at offset {at}); kept, not matched",
                    seg.host, seg.stream, seg.seq
                ),
                at,
                Some(msg),
                msg.len() as u64,
            ),
        }
    }

    /// One Windows event, from a stream's XML or an `.evtx` record: what it
    /// means for the rules, counted and kept like a line.
    fn windows_record(
        &mut self,
        out: &mut Scanned,
        time: OffsetDateTime,
        ev: &winevent::WinEvent,
        at: u64,
        bytes: &[u8],
        text: &str,
    ) {
        let (kind, ip) = match winevent::meaning(ev) {
            Some(m) => windows_kind(m),
            None => (None, None),
        };
        let ip = ip.as_ref().map(|(p, i)| (p.as_str(), *i));
        self.record(out, time, kind, ip, at, bytes, text);
    }

    /// Reads every frame's message as `kind`, at its offset; bytes that
    /// are not a whole frame are one malformed unit with a note.
    fn frames(&mut self, raw: &[u8], out: &mut Scanned, kind: FrameKind) {
        let mut pos = 0usize;
        while pos < raw.len() {
            out.stats.lines_read += 1;
            let frame = frame_at(raw, pos);
            match custody_evidence::octets::split_frames(frame) {
                Ok(msgs) if msgs.len() == 1 => {
                    let msg = msgs[0];
                    let at = pos + (frame.len() - msg.len());
                    match kind {
                        FrameKind::Syslog => {
                            let msg = msg.strip_suffix(b"\n").unwrap_or(msg);
                            self.text_unit(at as u64, msg, out);
                        }
                        FrameKind::WindowsEvent => self.windows_event(at as u64, msg, out),
                    }
                    pos += frame.len();
                }
                _ => {
                    let seg = self.ctx.seg;
                    let rest = &raw[pos..];
                    self.malformed(
                        out,
                        format!(
                            "host {} stream {} segment {}: the bytes from offset {pos} are not an octet-counted frame (`LEN SP MESSAGE`); the {} bytes are kept but not matched",
                            seg.host, seg.stream, seg.seq, rest.len()
                        ),
                        pos as u64,
                        Some(rest),
                        rest.len() as u64,
                    );
                    return;
                }
            }
        }
    }
}

impl LineState<'_> {
    /// A `.evtx` file (a bundle's copy of a channel): every record read
    /// with the `evtx` parser, each cited by its place in the file (from
    /// its `**\0\0` header to its trailing size), its fields taken as the
    /// Event Log stream's XML gives them.
    pub(super) fn evtx_file(&mut self, raw: &[u8], out: &mut Scanned) {
        let seg = self.ctx.seg;
        let recs = match custody_evtx::records::read_records(raw) {
            Ok(r) => r,
            Err(e) => {
                out.stats.lines_read += 1;
                self.malformed(
                    out,
                    format!(
                        "host {} {}: {e}; the {} bytes are kept, not matched",
                        seg.host,
                        seg.payload_key,
                        raw.len()
                    ),
                    0,
                    None,
                    raw.len() as u64,
                );
                return;
            }
        };
        for &chunk in &recs.bad_checksum_chunks {
            let at = 4096 + chunk * 65536;
            self.note(
                out,
                "evtx_checksum",
                format!(
                    "host {} {}: chunk {chunk}'s CRC-32 does not match: it was changed after Windows wrote it (edited or damaged); its records are read as they are",
                    seg.host, seg.payload_key
                ),
                at,
                None,
                65536,
            );
        }
        for (index, why) in &recs.unreadable {
            out.stats.lines_read += 1;
            self.malformed(
                out,
                format!(
                    "host {} {}: record {index} (in file order) cannot be read: {why}",
                    seg.host, seg.payload_key
                ),
                0,
                None,
                0,
            );
        }
        for r in recs.records {
            out.stats.lines_read += 1;
            let time = system_time(r.time.as_deref());
            let (Some((off, len)), Some(time)) = (r.place, time) else {
                self.malformed(
                    out,
                    format!(
                        "host {} {}: record {} has no usable time or was not found in its chunk; kept, not matched",
                        seg.host, seg.payload_key, r.record_id
                    ),
                    0,
                    None,
                    0,
                );
                continue;
            };
            let bytes = &raw[off as usize..(off + len) as usize];
            let mut text = format!(
                "evtx record={} event={} channel={} computer={}",
                r.record_id,
                r.event_id.unwrap_or(0),
                r.channel.as_deref().unwrap_or("-"),
                r.computer.as_deref().unwrap_or("-")
            );
            for (k, v) in &r.fields {
                if text.len() > 2048 {
                    break;
                }
                text.push_str(&format!(" {k}={v:?}"));
            }
            let ev = winevent::WinEvent {
                event_id: r.event_id.unwrap_or(0),
                system_time: r.time,
                record_id: Some(r.record_id),
                channel: r.channel.unwrap_or_default(),
                computer: r.computer.unwrap_or_default(),
                provider: r.provider.unwrap_or_default(),
                data: r.fields.into_iter().collect(),
            };
            self.windows_record(out, time, &ev, off, bytes, &text);
        }
    }
}

/// `TimeCreated/@SystemTime` (RFC 3339, up to 100 ns) as a time.
fn system_time(t: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t?, &time::format_description::well_known::Rfc3339).ok()
}

/// What the messages of octet-counted frames are.
#[derive(Clone, Copy)]
enum FrameKind {
    Syslog,
    WindowsEvent,
}

/// The bytes of the frame starting at `pos` (`LEN SP` and the message),
/// or the rest of `raw` when its length does not read.
fn frame_at(raw: &[u8], pos: usize) -> &[u8] {
    let rest = &raw[pos..];
    let digits = rest
        .iter()
        .take(11)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let len = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|s| s.parse::<usize>().ok());
    match len {
        Some(n) if rest.get(digits) == Some(&b' ') && digits + 1 + n <= rest.len() => {
            &rest[..digits + 1 + n]
        }
        _ => rest,
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// A Windows event's meaning as the rules' [`Kind`], and the IP with its
/// [`super::IpAgg::counts`] index.
fn windows_kind(m: Meaning) -> (Option<Kind>, Option<(String, usize)>) {
    match m {
        Meaning::Logon {
            user,
            ip,
            logon_type,
        } => (
            Some(Kind::Logon {
                user,
                ip: ip.clone(),
                method: format!("logon type {logon_type}"),
            }),
            Some((ip, 1)).filter(|(p, _)| !p.is_empty()),
        ),
        Meaning::FailedLogon { user, ip } => (
            Some(Kind::FailedLogon {
                user,
                ip: ip.clone(),
            }),
            Some((ip, 0)).filter(|(p, _)| !p.is_empty()),
        ),
        Meaning::NewAccount { name } => (Some(Kind::NewAccount { name }), None),
        Meaning::GroupAdd { user, group } => (Some(Kind::GroupAdd { user, group }), None),
        Meaning::LogCleared { channel, by } => (
            Some(Kind::LogCleared {
                channel,
                by,
                detail: String::new(),
            }),
            None,
        ),
        Meaning::NewService {
            name,
            image,
            account,
        } => (
            Some(Kind::NewService {
                name,
                image,
                account,
            }),
            None,
        ),
        Meaning::Noted {
            what,
            user,
            ip,
            detail,
        } => (
            Some(Kind::Noted {
                what,
                user,
                ip,
                detail,
            }),
            None,
        ),
    }
}
