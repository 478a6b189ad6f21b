//! Retention by responsibility level (REQUIREMENTS.md §1: Taipei §24,
//! Kaohsiung §壹拾.一): levels A, B and C must keep the most recent six
//! months; D and E are not bound by the table and default to the same.
//!
//! CONTRACT (implementer fills in; signatures fixed):
//! - `Level` enum A..E, FromStr/Display ("A".."E", case-insensitive parse), serde as "A".
//! - `RetentionPolicy::new(level, months: Option<u32>) -> Result<Self, RetentionError>`:
//!   default 6; A/B/C with months < 6 → `RetentionError::BelowMinimum` whose message
//!   cites the rule ("REQUIREMENTS.md §1 / Taipei §24, Kaohsiung §壹拾.一: levels A, B
//!   and C keep at least six months"); months == 0 refused for all levels.
//! - `retain_until(&self, written: OffsetDateTime) -> OffsetDateTime`: calendar
//!   months added (clamping the day, e.g. Aug 31 + 6 months = Feb 28/29), same time of day, UTC.
//! - `level()`, `months()`.
//!
//! Months are calendar months, not 30-day blocks: "the most recent six
//! months" is read the way an auditor reads a calendar, so an object written
//! on 15 March is kept at least until 15 September.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Month, OffsetDateTime, UtcOffset};

/// The months every level keeps unless configured otherwise, and the floor
/// for levels A, B and C (REQUIREMENTS.md §1).
pub const DEFAULT_MONTHS: u32 = 6;

/// Upper bound on configured months (100 years): beyond it the arithmetic
/// would leave the calendar range `time` supports, and it is surely a typo.
pub const MAX_MONTHS: u32 = 1200;

/// The agency's cyber-security responsibility level (資通安全責任等級),
/// A highest … E lowest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    A,
    B,
    C,
    D,
    E,
}

impl Level {
    pub const ALL: [Level; 5] = [Level::A, Level::B, Level::C, Level::D, Level::E];

    pub fn as_str(&self) -> &'static str {
        match self {
            Level::A => "A",
            Level::B => "B",
            Level::C => "C",
            Level::D => "D",
            Level::E => "E",
        }
    }

    /// Whether the retention table binds this level to six months; D and E
    /// "may choose" to keep logs.
    pub fn six_months_required(&self) -> bool {
        matches!(self, Level::A | Level::B | Level::C)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = RetentionError;
    fn from_str(s: &str) -> Result<Self, RetentionError> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| RetentionError::UnknownLevel(s.to_string()))
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a retention setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error("unknown responsibility level {0:?}: must be one of A, B, C, D, E")]
    UnknownLevel(String),
    #[error(
        "retention of {months} months is too short for level {level}: REQUIREMENTS.md §1 / \
         Taipei §24, Kaohsiung §壹拾.一: levels A, B and C keep at least six months"
    )]
    BelowMinimum { level: Level, months: u32 },
    #[error("retention of 0 months would allow deleting logs as soon as they are written: use at least 1 (6 for levels A, B and C)")]
    Zero,
    #[error("retention of {months} months is more than the supported maximum of {max}")]
    TooLong { months: u32, max: u32 },
}

/// How long objects are kept: a level and a number of calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetentionPolicy {
    level: Level,
    months: u32,
}

impl RetentionPolicy {
    /// `months` defaults to six; levels A, B and C may not go below six.
    pub fn new(level: Level, months: Option<u32>) -> Result<Self, RetentionError> {
        let months = months.unwrap_or(DEFAULT_MONTHS);
        if months == 0 {
            return Err(RetentionError::Zero);
        }
        if level.six_months_required() && months < DEFAULT_MONTHS {
            return Err(RetentionError::BelowMinimum { level, months });
        }
        if months > MAX_MONTHS {
            return Err(RetentionError::TooLong {
                months,
                max: MAX_MONTHS,
            });
        }
        Ok(Self { level, months })
    }

    pub fn level(&self) -> Level {
        self.level
    }

    pub fn months(&self) -> u32 {
        self.months
    }

    /// `written` plus `months` calendar months, in UTC, same time of day;
    /// a day that does not exist in the target month is clamped to its
    /// last day (31 Aug + 6 months = 28 or 29 Feb), never rolled forward
    /// into the next month and never earlier than the calendar says.
    pub fn retain_until(&self, written: OffsetDateTime) -> OffsetDateTime {
        add_months(written.to_offset(UtcOffset::UTC), self.months)
    }
}

/// Calendar-month addition with the day clamped. `months` is at most
/// [`MAX_MONTHS`], which keeps the year inside `time`'s range for any
/// timestamp this software writes; at the edge of that range the result
/// saturates at the last representable instant rather than panicking.
fn add_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    let month0 = i64::from(u8::from(t.month())) - 1 + i64::from(months);
    let year = i64::from(t.year()) + month0.div_euclid(12);
    let month_index = u8::try_from(month0.rem_euclid(12) + 1).unwrap_or(12);
    let month = Month::try_from(month_index).unwrap_or(Month::December);
    let Ok(year) = i32::try_from(year) else {
        return max_instant();
    };
    let last_day = month.length(year);
    let day = t.day().min(last_day);
    match time::Date::from_calendar_date(year, month, day) {
        Ok(date) => t.replace_date(date),
        Err(_) => max_instant(),
    }
}

fn max_instant() -> OffsetDateTime {
    time::PrimitiveDateTime::MAX.assume_utc()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn policy(level: Level, months: Option<u32>) -> RetentionPolicy {
        RetentionPolicy::new(level, months).expect("valid policy")
    }

    #[test]
    fn default_is_six_months_for_every_level() {
        for level in Level::ALL {
            let p = policy(level, None);
            assert_eq!(p.months(), 6);
            assert_eq!(p.level(), level);
        }
    }

    #[test]
    fn levels_a_b_c_refuse_less_than_six_months_citing_the_rule() {
        for level in [Level::A, Level::B, Level::C] {
            let err = RetentionPolicy::new(level, Some(5)).unwrap_err();
            assert_eq!(err, RetentionError::BelowMinimum { level, months: 5 });
            let msg = err.to_string();
            assert!(msg.contains("REQUIREMENTS.md §1"), "{msg}");
            assert!(msg.contains("Taipei §24"), "{msg}");
            assert!(msg.contains("Kaohsiung §壹拾.一"), "{msg}");
        }
        assert_eq!(policy(Level::C, Some(6)).months(), 6);
        assert_eq!(policy(Level::A, Some(12)).months(), 12);
    }

    #[test]
    fn levels_d_e_may_keep_less_but_not_zero() {
        assert_eq!(policy(Level::D, Some(1)).months(), 1);
        assert_eq!(policy(Level::E, Some(3)).months(), 3);
        for level in Level::ALL {
            assert_eq!(
                RetentionPolicy::new(level, Some(0)).unwrap_err(),
                RetentionError::Zero
            );
        }
        assert!(matches!(
            RetentionPolicy::new(Level::D, Some(MAX_MONTHS + 1)),
            Err(RetentionError::TooLong { .. })
        ));
    }

    #[test]
    fn level_parses_case_insensitively_and_displays_upper() {
        assert_eq!("a".parse::<Level>().unwrap(), Level::A);
        assert_eq!("E".parse::<Level>().unwrap(), Level::E);
        assert!(matches!(
            "F".parse::<Level>(),
            Err(RetentionError::UnknownLevel(_))
        ));
        assert_eq!(Level::B.to_string(), "B");
        assert_eq!(serde_json::to_string(&Level::C).unwrap(), "\"C\"");
        assert_eq!(serde_json::from_str::<Level>("\"d\"").unwrap(), Level::D);
    }

    #[test]
    fn calendar_months_with_day_clamping() {
        let p = policy(Level::A, None);
        assert_eq!(
            p.retain_until(datetime!(2026-03-15 10:11:12.5 UTC)),
            datetime!(2026-09-15 10:11:12.5 UTC)
        );
        // Aug 31 + 6 months: February has no 31st.
        assert_eq!(
            p.retain_until(datetime!(2025-08-31 23:59:59 UTC)),
            datetime!(2026-02-28 23:59:59 UTC)
        );
        assert_eq!(
            p.retain_until(datetime!(2027-08-31 00:00 UTC)),
            datetime!(2028-02-29 00:00 UTC)
        );
        // Year rollover.
        assert_eq!(
            p.retain_until(datetime!(2026-12-31 08:00 UTC)),
            datetime!(2027-06-30 08:00 UTC)
        );
        assert_eq!(
            policy(Level::A, Some(24)).retain_until(datetime!(2024-02-29 00:00 UTC)),
            datetime!(2026-02-28 00:00 UTC)
        );
        assert_eq!(
            policy(Level::D, Some(1)).retain_until(datetime!(2026-01-31 12:00 UTC)),
            datetime!(2026-02-28 12:00 UTC)
        );
    }

    #[test]
    fn retain_until_is_in_utc() {
        let p = policy(Level::B, None);
        // 2026-08-31 02:00 in Taipei is 2026-08-30 18:00 UTC.
        let got = p.retain_until(datetime!(2026-08-31 02:00 +08:00));
        assert_eq!(got, datetime!(2027-02-28 18:00 UTC));
        assert_eq!(got.offset(), UtcOffset::UTC);
    }

    #[test]
    fn never_earlier_than_written_plus_months_days() {
        let p = policy(Level::A, None);
        let mut t = datetime!(2024-01-01 00:00 UTC);
        while t < datetime!(2026-01-01 00:00 UTC) {
            let until = p.retain_until(t);
            // Six calendar months are at least 181 days.
            assert!(until - t >= time::Duration::days(181), "{t} -> {until}");
            assert!(until - t <= time::Duration::days(184), "{t} -> {until}");
            t += time::Duration::days(1);
        }
    }
}
