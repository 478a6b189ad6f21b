//! `--tz`: local time for the HTML (data stay in UTC RFC 3339), and local
//! calendar days for the heatmap's columns.

use time::OffsetDateTime;

/// A named time zone from the tz database (`Asia/Taipei`, `UTC`).
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: jiff::tz::TimeZone,
}

impl Zone {
    /// Looks `name` up in the system's tz database (or the bundled copy).
    pub fn get(name: &str) -> Result<Zone, String> {
        let tz = jiff::tz::TimeZone::get(name).map_err(|e| {
            format!("--tz {name:?}: not a known time zone ({e}); use a tz database name such as Asia/Taipei or UTC")
        })?;
        Ok(Zone {
            name: name.to_string(),
            tz,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn zoned(&self, t: OffsetDateTime) -> Option<jiff::Zoned> {
        let ts = jiff::Timestamp::new(t.unix_timestamp(), t.nanosecond() as i32).ok()?;
        Some(ts.to_zoned(self.tz.clone()))
    }

    /// `2026-12-02 09:15:00 +08:00 (Asia/Taipei)`: the zone is always named.
    pub fn format(&self, t: OffsetDateTime) -> String {
        match self.zoned(t) {
            Some(z) => format!("{} ({})", z.strftime("%Y-%m-%d %H:%M:%S %:z"), self.name),
            None => custody_evidence::timefmt::format_utc(t),
        }
    }

    /// The local calendar day of `t`, as days since 1970-01-01.
    pub fn day_number(&self, t: OffsetDateTime) -> i64 {
        match self.zoned(t) {
            Some(z) => {
                let d = z.date();
                days_from_civil(
                    i64::from(d.year()),
                    i64::from(d.month()),
                    i64::from(d.day()),
                )
            }
            None => t.unix_timestamp().div_euclid(86_400),
        }
    }
}

/// `YYYY-MM-DD` of a day number.
pub fn day_label(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

// Howard Hinnant's civil-date algorithms (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn taipei_days_and_labels() {
        let z = Zone::get("Asia/Taipei").unwrap();
        // 16:30 UTC is 00:30 the next day in Taipei.
        let t = datetime!(2026-12-01 16:30 UTC);
        assert_eq!(day_label(z.day_number(t)), "2026-12-02");
        assert_eq!(z.format(t), "2026-12-02 00:30:00 +08:00 (Asia/Taipei)");
        assert_eq!(day_label(0), "1970-01-01");
        assert!(Zone::get("Mars/Olympus").is_err());
    }
}
