//! The little header parsing the collector needs: the HOSTNAME of a syslog
//! message, for mapping messages relayed through another host to their
//! device. Nothing else is interpreted, and the message is never changed.
//!
//! - RFC 5424: `<PRI>VERSION SP TIMESTAMP SP HOSTNAME SP …`
//! - RFC 3164: `<PRI>Mmm dd hh:mm:ss SP HOSTNAME SP …`; also the common
//!   variant with an RFC 3339 timestamp instead (rsyslog's forwarding
//!   formats).
//!
//! A `-` (the RFC 5424 NILVALUE) or a message that does not parse gives
//! `None`: such messages are mapped by address only.

/// The HOSTNAME field of a syslog message, if it has one.
pub fn hostname(msg: &[u8]) -> Option<&[u8]> {
    let rest = after_pri(msg)?;
    let host = if let Some(rest) = after_version(rest) {
        // RFC 5424: TIMESTAMP SP HOSTNAME
        let (_, rest) = token(rest)?;
        token(rest)?.0
    } else if is_bsd_timestamp(rest) {
        token(rest.get(16..)?)?.0
    } else {
        // RFC 3164 with an ISO timestamp: TIMESTAMP SP HOSTNAME
        let (ts, rest) = token(rest)?;
        if !ts.first().is_some_and(u8::is_ascii_digit) {
            return None;
        }
        token(rest)?.0
    };
    (host != b"-" && !host.is_empty()).then_some(host)
}

/// `<` 1–3 digits `>`: the rest of the message.
fn after_pri(msg: &[u8]) -> Option<&[u8]> {
    let rest = msg.strip_prefix(b"<")?;
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) {
        return None;
    }
    rest[digits..].strip_prefix(b">")
}

/// RFC 5424 VERSION (1–3 digits, first nonzero) and SP.
fn after_version(rest: &[u8]) -> Option<&[u8]> {
    let digits = rest
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if !(1..=3).contains(&digits) || rest[0] == b'0' {
        return None;
    }
    rest[digits..].strip_prefix(b" ")
}

/// `Mmm dd hh:mm:ss ` (the day space-padded).
fn is_bsd_timestamp(rest: &[u8]) -> bool {
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    rest.len() > 16
        && MONTHS.iter().any(|m| &rest[..3] == *m)
        && rest[3] == b' '
        && rest[6] == b' '
        && rest[9] == b':'
        && rest[12] == b':'
        && rest[15] == b' '
}

/// The bytes up to the next space, and what follows that space.
fn token(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let sp = rest.iter().position(|&b| b == b' ')?;
    Some((&rest[..sp], &rest[sp + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_hostname_in_each_format() {
        let cases: [(&[u8], Option<&[u8]>); 8] = [
            (
                b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - msg",
                Some(b"mymachine.example.com"),
            ),
            (b"<34>1 - - su - - - msg", None),
            (
                b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed",
                Some(b"mymachine"),
            ),
            (b"<13>Nov  3 01:02:03 fw01 kernel: x", Some(b"fw01")),
            (
                b"<13>2026-11-30T08:00:00.123456+00:00 relay01 tag: x",
                Some(b"relay01"),
            ),
            (b"no pri at all", None),
            (b"<1234>1 - h a - - -", None),
            (b"<13>just text", None),
        ];
        for (msg, want) in cases {
            assert_eq!(hostname(msg), want, "{}", String::from_utf8_lossy(msg));
        }
    }
}
