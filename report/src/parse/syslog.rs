//! Syslog lines as files hold them.
//!
//! - BSD (RFC 3164 without the `<PRI>`): `Mon DD HH:MM:SS host prog[pid]:
//!   message`. The timestamp carries neither year nor zone: the caller
//!   supplies both (the year from the segment's time, the zone from
//!   `--host-tz`) and the report says so.
//! - Full timestamps ([`parse_full`]): rsyslog's `RSYSLOG_FileFormat`
//!   (Debian 12's default: `2026-12-02T10:00:00.123456+08:00 host
//!   prog[pid]: message`) and RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID
//!   MSGID SD MSG`, as devices send it). Their time is used as written.

/// A parsed syslog line; every field borrows from the line.
#[derive(Debug, PartialEq, Eq)]
pub struct Syslog<'a> {
    /// 1..=12
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    pub host: &'a str,
    /// The program name without `[pid]` (`sshd`, `su(pam_unix)`).
    pub prog: &'a str,
    pub message: &'a str,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `Ok(None)`: not a syslog line. `Err`: starts like one (a month name
/// and a space) but the rest does not parse.
pub fn parse(line: &str) -> Result<Option<Syslog<'_>>, &'static str> {
    let b = line.as_bytes();
    if b.len() < 4 || b[3] != b' ' {
        return Ok(None);
    }
    let Some(month) = MONTHS.iter().position(|m| m.as_bytes() == &b[..3]) else {
        return Ok(None);
    };
    if b.len() < 16 {
        return Err("syslog line shorter than its timestamp");
    }
    let num = |s: &[u8]| -> Option<u8> {
        let t = std::str::from_utf8(s).ok()?.trim_start();
        if t.is_empty() || !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let day = num(&b[4..6]).filter(|d| (1..=31).contains(d));
    let (h, m, s) = (num(&b[7..9]), num(&b[10..12]), num(&b[13..15]));
    let (Some(day), Some(hour), Some(minute), Some(second)) = (day, h, m, s) else {
        return Err("syslog timestamp is not `Mon DD HH:MM:SS`");
    };
    if b[6] != b' ' || b[9] != b':' || b[12] != b':' || b[15] != b' ' {
        return Err("syslog timestamp is not `Mon DD HH:MM:SS`");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("syslog time of day out of range");
    }
    let rest = &line[16..];
    let Some((host, rest)) = rest.split_once(' ') else {
        return Err("syslog line without a tag after the host");
    };
    let (prog, message) = tag_and_message(rest);
    Ok(Some(Syslog {
        month: month as u8 + 1,
        day,
        hour,
        minute,
        second,
        host,
        prog,
        message,
    }))
}

/// A device's RFC 3164 message as sent (`<34>Oct 11 22:14:15 host tag:
/// msg`) without its `<PRI>`, so [`parse`] reads it; anything else
/// (RFC 5424's `<PRI>1 `, a file's line) unchanged.
pub fn without_bsd_pri(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('<') {
        if let Some(close) = rest.find('>').filter(|&i| (1..=3).contains(&i)) {
            let after = &rest[close + 1..];
            if rest[..close].bytes().all(|c| c.is_ascii_digit()) && !after.starts_with("1 ") {
                return after;
            }
        }
    }
    line
}

/// `prog[pid]: message` → (`prog`, `message`).
fn tag_and_message(rest: &str) -> (&str, &str) {
    let (tag, message) = match super::split_once(rest, ": ") {
        Some((t, m)) if !t.contains(' ') || t.contains('[') => (t, m),
        _ => match rest.strip_suffix(':') {
            Some(t) => (t, ""),
            None => ("", rest),
        },
    };
    let prog = match tag.find('[') {
        Some(i) if tag.ends_with(']') => &tag[..i],
        _ => tag,
    };
    (prog, message)
}

/// A syslog line whose timestamp has year and zone.
#[derive(Debug, PartialEq, Eq)]
pub struct FullSyslog<'a> {
    pub time: time::OffsetDateTime,
    pub host: &'a str,
    pub prog: &'a str,
    pub message: &'a str,
}

/// `Ok(None)`: neither format. `Err`: starts like one (`YYYY-MM-DDT` or
/// `<PRI>1 `) but does not parse.
pub fn parse_full(line: &str) -> Result<Option<FullSyslog<'_>>, &'static str> {
    let b = line.as_bytes();
    let rfc3339 = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
    };
    if b.len() > 11 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T' {
        let (stamp, rest) = line
            .split_once(' ')
            .ok_or("syslog line ends after its timestamp")?;
        let time = rfc3339(stamp).ok_or("syslog timestamp is not RFC 3339 with an offset")?;
        let (host, rest) = rest
            .split_once(' ')
            .ok_or("syslog line without a tag after the host")?;
        let (prog, message) = tag_and_message(rest);
        return Ok(Some(FullSyslog {
            time,
            host,
            prog,
            message,
        }));
    }
    if b.first() == Some(&b'<') {
        let Some(close) = line.find('>').filter(|&i| i <= 4) else {
            return Ok(None);
        };
        if !line[1..close].bytes().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let Some(rest) = line[close + 1..].strip_prefix("1 ") else {
            return Ok(None);
        };
        let mut f = rest.splitn(6, ' ');
        let (Some(stamp), Some(host), Some(app), Some(_pid), Some(_msgid), Some(rest)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return Err("RFC 5424 line with fewer than seven header fields");
        };
        let time =
            rfc3339(stamp).ok_or("RFC 5424 timestamp is not RFC 3339 (a `-` time is not used)")?;
        let message = if let Some(r) = rest.strip_prefix("- ") {
            r
        } else if rest == "-" {
            ""
        } else if rest.starts_with('[') {
            // Structured data: up to the `] ` that is not escaped.
            let mut end = None;
            let mut esc = false;
            for (i, c) in rest.char_indices() {
                match c {
                    '\\' if !esc => esc = true,
                    ']' if !esc
                        && rest[i + 1..].starts_with(' ')
                        && !rest[i + 2..].starts_with('[') =>
                    {
                        end = Some(i + 2);
                        break;
                    }
                    _ => esc = false,
                }
            }
            end.map(|e| &rest[e..]).unwrap_or("")
        } else {
            return Err("RFC 5424 structured data is neither `-` nor `[…]`");
        };
        let message = message.strip_prefix('\u{feff}').unwrap_or(message);
        return Ok(Some(FullSyslog {
            time,
            host,
            prog: app,
            message,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_timestamps() {
        let l = parse_full(
            "2026-12-02T10:00:00.123456+08:00 web01 useradd[42]: new user: name=x, UID=1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(l.time.unix_timestamp(), 1_796_176_800);
        assert_eq!(
            (l.host, l.prog, l.message),
            ("web01", "useradd", "new user: name=x, UID=1")
        );
        let l = parse_full("<38>1 2026-12-02T02:00:00Z fw01 sshd 811 - [meta x=\"]\"] Failed password for root from 1.2.3.4 port 1 ssh2")
            .unwrap()
            .unwrap();
        assert_eq!((l.host, l.prog), ("fw01", "sshd"));
        assert_eq!(
            l.message,
            "Failed password for root from 1.2.3.4 port 1 ssh2"
        );
        assert!(parse_full("2026-12-02Tnope web01 x: y").is_err());
        assert_eq!(parse_full("Dec  2 02:13:05 web01 x: y").unwrap(), None);
    }

    #[test]
    fn real_lines() {
        let l =
            parse("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: authentication failure; logname=")
                .unwrap()
                .unwrap();
        assert_eq!((l.month, l.day, l.hour), (6, 14, 15));
        assert_eq!((l.host, l.prog), ("combo", "sshd(pam_unix)"));
        assert_eq!(l.message, "authentication failure; logname=");
        let l = parse(
            "Dec  2 02:13:05 web01 sshd[811]: Accepted password for a from 10.0.0.5 port 22 ssh2",
        )
        .unwrap()
        .unwrap();
        assert_eq!((l.day, l.prog), (2, "sshd"));
        assert_eq!(parse("hello world").unwrap(), None);
        let dev =
            "<38>Dec  2 02:13:05 fw01 sshd[9]: Failed password for root from 1.2.3.4 port 1 ssh2";
        assert_eq!(parse(without_bsd_pri(dev)).unwrap().unwrap().host, "fw01");
        let rfc5424 = "<38>1 2026-12-02T02:00:00Z fw01 x - - - m";
        assert_eq!(without_bsd_pri(rfc5424), rfc5424);
        assert!(parse("Dec 99 02:13:05 web01 x: y").is_err());
    }
}
