//! Detections are data: the thresholds, lists and office hours live in a
//! TOML file (report/RULES.md), the default one embedded in the binary.
//! `--rules FILE` is merged over the default table by table, so an agency
//! writes only what it changes.

use std::collections::BTreeSet;

use serde::Deserialize;

/// The embedded default rules.
pub const DEFAULT_RULES: &str = include_str!("../../rules/default.toml");
/// The only format this build reads.
pub const RULES_FORMAT: &str = "custody-report/rules/v1";

/// All rules, after merging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub format: String,
    pub failed_logon_burst: Burst,
    pub password_spraying: Spraying,
    pub off_hours_logon: OffHours,
    pub external_logon: Simple,
    pub new_account: Simple,
    pub privilege_grant: PrivilegeGrant,
    pub web_error_burst: Burst,
    pub webshell: Webshell,
    pub large_response: LargeResponse,
    pub scanner_user_agent: Scanner,
    pub log_cleared: Simple,
    pub new_service: Simple,
    pub new_ip_logon: NewIp,
    pub webroot_change: WebrootChange,
}

/// A file added, changed or removed under a web root between two
/// inventories (FORMAT.md §18).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebrootChange {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// For a script file (one of `script_extensions`) added or changed.
    pub severity: String,
    /// For any other file added or changed.
    pub severity_other: String,
    /// For a file removed.
    pub severity_removed: String,
    /// Compared case-insensitively with the file name's last extension.
    pub script_extensions: Vec<String>,
    /// Paths under these prefixes are not reported (caches, upload spools
    /// an agency expects to change).
    pub ignore_prefixes: Vec<String>,
}

/// A logon from an address the host's lines did not show in `lookback`
/// before the window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewIp {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub lookback: String,
}

fn yes() -> bool {
    true
}

/// `count` events within `window`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Burst {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub count: usize,
    pub window: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spraying {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub distinct_users: usize,
    pub window: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OffHours {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub tz: String,
    pub start: String,
    pub end: String,
    pub weekdays: Vec<String>,
    pub holidays: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Simple {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegeGrant {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webshell {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub extensions: Vec<String>,
    pub prefixes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LargeResponse {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub bytes: u64,
    pub count: usize,
    pub min_bytes: u64,
    pub window: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanner {
    #[serde(default = "yes")]
    pub enabled: bool,
    pub severity: String,
    pub substrings: Vec<String>,
}

/// Office hours checked and converted, ready for the detector.
#[derive(Debug, Clone)]
pub struct OfficeHours {
    pub tz: jiff::tz::TimeZone,
    pub tz_name: String,
    /// Minutes after midnight.
    pub start: u32,
    pub end: u32,
    /// 1 = Monday … 7 = Sunday.
    pub weekdays: BTreeSet<i8>,
    pub holidays: BTreeSet<jiff::civil::Date>,
}

/// Checked rules: windows as durations, office hours parsed.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub rules: Rules,
    pub failed_window: time::Duration,
    pub spraying_window: time::Duration,
    pub web_error_window: time::Duration,
    pub downloads_window: time::Duration,
    /// `new_ip_logon`'s lookback (zero when the rule is off).
    pub new_ip_lookback: time::Duration,
    pub office: OfficeHours,
    /// Where the rules came from, for the report.
    pub source: String,
}

/// The default rules, with `extra` (the text of `--rules FILE`, named
/// `name` in errors) merged over them.
pub fn load(extra: Option<(&str, &str)>) -> Result<Compiled, String> {
    let mut base: toml::Table = DEFAULT_RULES
        .parse()
        .map_err(|e| format!("embedded rules/default.toml: {e}"))?;
    let mut source = "embedded rules/default.toml".to_string();
    if let Some((name, text)) = extra {
        let over: toml::Table = text
            .parse()
            .map_err(|e| format!("--rules {name}: not valid TOML: {e}"))?;
        merge(&mut base, over);
        source = format!("embedded rules/default.toml, then {name}");
    }
    let what = extra
        .map(|(n, _)| n)
        .unwrap_or("embedded rules/default.toml");
    let rules: Rules = toml::Value::Table(base)
        .try_into()
        .map_err(|e| format!("--rules {what}: {e} (see report/RULES.md for the keys)"))?;
    if rules.format != RULES_FORMAT {
        return Err(format!(
            "--rules {what}: format {:?}; this build reads {RULES_FORMAT:?}",
            rules.format
        ));
    }
    let dur = |rule: &str, text: &str| {
        crate::duration::parse_duration(text)
            .map_err(|e| format!("--rules {what}: [{rule}] window: {e}"))
    };
    let office = office_hours(&rules.off_hours_logon)
        .map_err(|e| format!("--rules {what}: [off_hours_logon] {e}"))?;
    Ok(Compiled {
        failed_window: dur("failed_logon_burst", &rules.failed_logon_burst.window)?,
        spraying_window: dur("password_spraying", &rules.password_spraying.window)?,
        web_error_window: dur("web_error_burst", &rules.web_error_burst.window)?,
        downloads_window: dur("large_response", &rules.large_response.window)?,
        new_ip_lookback: if rules.new_ip_logon.enabled {
            crate::duration::parse_duration(&rules.new_ip_logon.lookback)
                .map_err(|e| format!("--rules {what}: [new_ip_logon] lookback: {e}"))?
        } else {
            time::Duration::ZERO
        },
        office,
        rules,
        source,
    })
}

/// Tables merge key by key; any other value replaces.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn office_hours(r: &OffHours) -> Result<OfficeHours, String> {
    let tz = jiff::tz::TimeZone::get(&r.tz)
        .map_err(|e| format!("tz {:?}: not a known time zone ({e})", r.tz))?;
    let hm = |s: &str| -> Result<u32, String> {
        let (h, m) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: give HH:MM"))?;
        let h: u32 = h.parse().map_err(|_| format!("{s:?}: give HH:MM"))?;
        let m: u32 = m.parse().map_err(|_| format!("{s:?}: give HH:MM"))?;
        if h > 24 || m > 59 {
            return Err(format!("{s:?}: out of range"));
        }
        Ok(h * 60 + m)
    };
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let mut weekdays = BTreeSet::new();
    for d in &r.weekdays {
        let i = names
            .iter()
            .position(|n| d.to_ascii_lowercase().starts_with(n))
            .ok_or_else(|| format!("weekday {d:?}: give Mon … Sun"))?;
        weekdays.insert(i as i8 + 1);
    }
    let mut holidays = BTreeSet::new();
    for h in &r.holidays {
        let d: jiff::civil::Date = h
            .parse()
            .map_err(|e| format!("holiday {h:?}: give YYYY-MM-DD ({e})"))?;
        holidays.insert(d);
    }
    Ok(OfficeHours {
        tz,
        tz_name: r.tz.clone(),
        start: hm(&r.start)?,
        end: hm(&r.end)?,
        weekdays,
        holidays,
    })
}

impl OfficeHours {
    /// Whether `t` falls inside office hours on a working day.
    pub fn contains(&self, t: time::OffsetDateTime) -> bool {
        let Ok(ts) = jiff::Timestamp::new(t.unix_timestamp(), 0) else {
            return false;
        };
        let z = ts.to_zoned(self.tz.clone());
        let minutes = z.hour() as u32 * 60 + z.minute() as u32;
        self.weekdays.contains(&z.weekday().to_monday_one_offset())
            && !self.holidays.contains(&z.date())
            && minutes >= self.start
            && minutes < self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_merge() {
        let c = load(None).unwrap();
        assert_eq!(c.rules.failed_logon_burst.count, 10);
        let c = load(Some((
            "x.toml",
            "[failed_logon_burst]\ncount = 3\n[webshell]\nenabled = false\n",
        )))
        .unwrap();
        assert_eq!(c.rules.failed_logon_burst.count, 3);
        assert_eq!(c.rules.failed_logon_burst.window, "5m");
        assert!(!c.rules.webshell.enabled);
        let e = load(Some(("x.toml", "[failed_logon_burst]\ncuont = 3\n"))).unwrap_err();
        assert!(e.contains("x.toml") && e.contains("cuont"), "{e}");
    }

    #[test]
    fn office_hours_in_taipei() {
        let c = load(Some((
            "h.toml",
            "[off_hours_logon]\nholidays = [\"2026-12-03\"]\n",
        )))
        .unwrap();
        let o = &c.office;
        // Wed 2026-12-02 10:00 +08:00 = 02:00 UTC: office hours.
        assert!(o.contains(time::macros::datetime!(2026-12-02 02:00 UTC)));
        // 02:13 +08:00 the same day: off hours.
        assert!(!o.contains(time::macros::datetime!(2026-12-01 18:13 UTC)));
        // Thu 2026-12-03 is a holiday here.
        assert!(!o.contains(time::macros::datetime!(2026-12-03 02:00 UTC)));
    }
}
