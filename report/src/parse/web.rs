//! Apache/nginx "combined" access log lines:
//! `IP ident user [dd/Mon/yyyy:HH:MM:SS +zzzz] "METHOD path proto" status bytes "referer" "user agent"`.
//! The time carries its own offset, so no zone is assumed.

use time::OffsetDateTime;

/// One request; strings borrow from the line.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub client: &'a str,
    pub time: OffsetDateTime,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    /// `-` (no body) is 0.
    pub bytes: u64,
    pub user_agent: &'a str,
}

/// `Ok(None)`: not an access log line (no `[time] "request"` after the
/// first three fields). `Err`: has that shape but a field is malformed.
pub fn parse(line: &str) -> Result<Option<Request<'_>>, &'static str> {
    parse_with(line, &mut parse_time)
}

/// [`parse`] with the `[time]` read by `time_of` (given the text between
/// the brackets): a caller reading many lines remembers the last answer.
pub fn parse_with<'a>(
    line: &'a str,
    time_of: &mut dyn FnMut(&str) -> Option<OffsetDateTime>,
) -> Result<Option<Request<'a>>, &'static str> {
    let Some((head, rest)) = super::split_once(line, " [") else {
        return Ok(None);
    };
    let mut fields = head.splitn(3, ' ');
    let client = fields.next().unwrap_or("");
    if fields.next().is_none()
        || fields.next().is_none()
        || client.parse::<std::net::IpAddr>().is_err()
    {
        return Ok(None);
    }
    let Some((stamp, rest)) = super::split_once(rest, "] \"") else {
        return Ok(None);
    };
    let time = time_of(stamp).ok_or("access log time is not dd/Mon/yyyy:HH:MM:SS +zzzz")?;
    let (request, rest) =
        super::split_once(rest, "\" ").ok_or("access log request is not closed by a quote")?;
    let mut r = request.splitn(3, ' ');
    let method = r.next().unwrap_or("");
    let path = r.next().ok_or("access log request has no path")?;
    let mut f = rest.splitn(3, ' ');
    let status: u16 = f
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("access log status is not a number")?;
    let bytes = match f.next() {
        Some("-") => 0,
        Some(b) => b.parse().map_err(|_| "access log size is not a number")?,
        None => return Err("access log line ends after the status"),
    };
    let tail = f.next().unwrap_or("");
    // "referer" "user agent": the last quoted field is the agent.
    let user_agent = tail
        .strip_suffix('"')
        .and_then(|t| t.rfind(" \"").map(|i| &t[i + 2..]))
        .unwrap_or("");
    Ok(Some(Request {
        client,
        time,
        method,
        path,
        status,
        bytes,
        user_agent,
    }))
}

/// `dd/Mon/yyyy:HH:MM:SS +zzzz` as a time.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let fmt = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    OffsetDateTime::parse(s, &fmt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_line() {
        let r = parse(r#"203.0.113.9 - - [02/Dec/2026:10:00:01 +0800] "POST /uploads/x.php?c=id HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11)""#)
            .unwrap()
            .unwrap();
        assert_eq!(r.client, "203.0.113.9");
        assert_eq!(
            (r.method, r.path, r.status, r.bytes),
            ("POST", "/uploads/x.php?c=id", 200, 512)
        );
        assert_eq!(r.user_agent, "Mozilla/5.0 (X11)");
        assert_eq!(r.time.unix_timestamp(), 1_796_176_801);
        assert_eq!(
            parse("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok").unwrap(),
            None
        );
        assert!(parse(r#"1.2.3.4 - - [bad] "GET / HTTP/1.1" 200 1 "-" "x""#).is_err());
    }
}
