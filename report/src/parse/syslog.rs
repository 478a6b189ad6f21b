//! BSD syslog lines as files hold them (RFC 3164 without the `<PRI>`):
//! `Mon DD HH:MM:SS host prog[pid]: message`. The timestamp carries
//! neither year nor zone: the caller supplies both (the year from the
//! segment's time, the zone from `--host-tz`) and the report says so.

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
    let (tag, message) = match rest.split_once(": ") {
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse("Dec 99 02:13:05 web01 x: y").is_err());
    }
}
