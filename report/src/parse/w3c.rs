//! IIS (W3C extended) access logs: space-separated fields in the order a
//! `#Fields:` directive names them, `date time` in UTC (IIS writes W3C
//! logs in UTC whatever the server's zone), `-` for an empty field, `+`
//! for a space inside the User-Agent.
//!
//! A segment that starts after the file's `#Fields:` line (the agent cuts
//! files into segments anywhere between lines) is read with IIS's default
//! field list, and the caller says so in a note: the directive in force
//! is in an earlier segment of the stream.

use time::{Date, PrimitiveDateTime, Time};

use crate::parse::web::Request;

/// The fields IIS logs when none are chosen (IIS 7 and later).
pub const IIS_DEFAULT_FIELDS: &str = "date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken";

/// Where the fields a report reads are, in one `#Fields:` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    count: usize,
    date: usize,
    time: usize,
    client: usize,
    method: usize,
    stem: usize,
    status: usize,
    bytes: Option<usize>,
    user_agent: Option<usize>,
}

impl Fields {
    /// The field list of a `#Fields:` directive; `None` for other lines
    /// or a list without the fields a request needs.
    pub fn from_directive(line: &str) -> Option<Fields> {
        Self::from_list(line.strip_prefix("#Fields:")?)
    }

    /// IIS's default list.
    pub fn iis_default() -> Fields {
        Self::from_list(IIS_DEFAULT_FIELDS)
            .unwrap_or_else(|| unreachable!("the default list names every needed field"))
    }

    fn from_list(list: &str) -> Option<Fields> {
        let names: Vec<&str> = list.split_whitespace().collect();
        let at = |n: &str| names.iter().position(|x| x.eq_ignore_ascii_case(n));
        Some(Fields {
            count: names.len(),
            date: at("date")?,
            time: at("time")?,
            client: at("c-ip")?,
            method: at("cs-method")?,
            stem: at("cs-uri-stem")?,
            status: at("sc-status")?,
            bytes: at("sc-bytes"),
            user_agent: at("cs(User-Agent)"),
        })
    }
}

/// Whether `line` starts like a W3C data line (`YYYY-MM-DD HH:MM:SS `).
pub fn looks_like(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b' '
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b' '
}

/// `Ok(None)`: not a data line of this field list. `Err`: a data line
/// whose fields do not read. The request's `path` is the URI stem (the
/// query is a separate field in W3C); a User-Agent keeps IIS's `+`.
pub fn parse<'a>(f: &Fields, line: &'a str) -> Result<Option<Request<'a>>, &'static str> {
    if !looks_like(line) {
        return Ok(None);
    }
    let v: Vec<&str> = line.split(' ').collect();
    if v.len() != f.count {
        return Err("W3C line does not have as many fields as its #Fields directive");
    }
    let date = Date::parse(
        v[f.date],
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| "W3C date is not YYYY-MM-DD")?;
    let tod = Time::parse(
        v[f.time],
        time::macros::format_description!("[hour]:[minute]:[second]"),
    )
    .map_err(|_| "W3C time is not HH:MM:SS")?;
    let client = v[f.client];
    if client.parse::<std::net::IpAddr>().is_err() {
        return Err("W3C c-ip is not an address");
    }
    let status = v[f.status]
        .parse()
        .map_err(|_| "W3C sc-status is not a number")?;
    let bytes = match f.bytes.map(|i| v[i]) {
        None | Some("-") => 0,
        Some(b) => b.parse().map_err(|_| "W3C sc-bytes is not a number")?,
    };
    let user_agent = match f.user_agent.map(|i| v[i]) {
        None | Some("-") => "",
        Some(ua) => ua,
    };
    Ok(Some(Request {
        client,
        time: PrimitiveDateTime::new(date, tod).assume_utc(),
        method: v[f.method],
        path: v[f.stem],
        status,
        bytes,
        user_agent,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_sample_reads_with_its_directive_and_with_the_default() {
        let line = "2019-09-03 10:13:44 10.0.2.15 POST /erp/conn.aspx proxy 80 - 10.0.2.17 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 4";
        let f = Fields::from_directive("#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken").unwrap();
        assert_eq!(f, Fields::iis_default());
        let r = parse(&f, line).unwrap().unwrap();
        assert_eq!(
            (r.client, r.method, r.path, r.status, r.bytes),
            ("10.0.2.17", "POST", "/erp/conn.aspx", 200, 0)
        );
        assert_eq!(r.user_agent, "Mozilla/5.0+(Windows+NT+10.0)");
        assert_eq!(r.time, time::macros::datetime!(2019-09-03 10:13:44 UTC));
        assert!(parse(&f, "2019-09-03 10:13:44 too few").is_err());
        assert_eq!(
            parse(
                &f,
                "#Software: Microsoft Internet Information Services 10.0"
            )
            .unwrap(),
            None
        );
        assert!(Fields::from_directive("#Fields: date time x").is_none());
    }
}
