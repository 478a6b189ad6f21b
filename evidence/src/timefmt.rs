//! Timestamps: always UTC, RFC 3339, with exactly six fractional digits and
//! a `Z`, so every timestamp has one encoding and sorts as text.

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Formats `t` (converted to UTC) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub fn format_utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Parses any RFC 3339 timestamp; the result is in UTC.
pub fn parse_utc(s: &str) -> Result<OffsetDateTime, time::error::Parse> {
    Ok(OffsetDateTime::parse(s, &Rfc3339)?.to_offset(UtcOffset::UTC))
}

/// Serde helper for `OffsetDateTime` fields written with [`format_utc`].
pub mod serde_utc {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_utc(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_utc(&s).map_err(serde::de::Error::custom)
    }
}

/// The current time in UTC at the precision records are written with
/// (microseconds), so a value compares equal after a round trip.
pub fn now_utc_micros() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn one_encoding_in_utc() {
        let t = datetime!(2026-11-22 10:11:12.5 +08:00);
        assert_eq!(format_utc(t), "2026-11-22T02:11:12.500000Z");
        assert_eq!(parse_utc("2026-11-22T02:11:12.500000Z").unwrap(), t);
    }
}
