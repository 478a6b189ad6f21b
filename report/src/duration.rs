//! `--gap-threshold 1h`: a length of time as a number and a unit.

/// Parses `90s`, `15m`, `1h`, `2d` (one number, one unit) into seconds.
/// The error says what would be valid.
pub fn parse_duration(text: &str) -> Result<time::Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{text:?}: give a whole number and a unit, e.g. 90s, 15m, 1h, 2d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?}; use s, m, h or d (e.g. 1h)"
            ))
        }
    };
    if n <= 0 {
        return Err(format!("{text:?}: must be more than zero"));
    }
    n.checked_mul(secs)
        .map(time::Duration::seconds)
        .ok_or_else(|| format!("{text:?}: too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_duration("90s").unwrap(), time::Duration::seconds(90));
        assert_eq!(parse_duration("1h").unwrap(), time::Duration::hours(1));
        assert_eq!(parse_duration("2d").unwrap(), time::Duration::days(2));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1y").is_err());
        assert!(parse_duration("h").is_err());
    }
}
