//! A `kind = "webroot"` source (FORMAT.md §18.1): checked here so the
//! config module only has to dispatch to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_evidence::{Category, StreamId};

/// How often an inventory is taken unless configured: hourly.
pub const DEFAULT_INTERVAL_SECONDS: u64 = 3600;
/// Longest interval accepted: a day. Longer would let a file planted and
/// removed between two inventories go unseen for days.
const MAX_INTERVAL_SECONDS: u64 = 24 * 3600;

/// The web roots one source inventories, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebrootConfig {
    /// Absolute directories, walked without following links.
    pub roots: Vec<PathBuf>,
    pub interval: Duration,
}

/// A checked webroot source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub name: String,
    pub category: Category,
    pub webroot: WebrootConfig,
}

/// Checks a webroot source's fields; every problem is returned, each
/// naming the field and what to write instead.
pub fn check(
    paths: Option<&[String]>,
    name: Option<&str>,
    category: Option<&str>,
    interval_seconds: Option<u64>,
) -> Result<Checked, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let paths = paths.unwrap_or_default();
    if paths.is_empty() {
        problems.push((
            "paths",
            "a webroot source needs paths = [\"/var/www/html\"]: the directories to inventory"
                .to_string(),
        ));
    }
    let mut roots = Vec::new();
    for p in paths {
        if !Path::new(p).is_absolute() {
            problems.push((
                "paths",
                format!("{p:?} is relative; use an absolute directory"),
            ));
        } else if p.contains(['*', '?', '[']) {
            problems.push((
                "paths",
                format!("{p:?} is a glob; a web root is one directory (list each one)"),
            ));
        } else {
            roots.push(PathBuf::from(p));
        }
    }
    let category = match category {
        None => Some(Category::Web),
        Some(text) => match text.parse::<Category>() {
            Ok(c) => Some(c),
            Err(_) => {
                problems.push((
                    "category",
                    format!("{text:?} is not one of os, web, app, logon"),
                ));
                None
            }
        },
    };
    let seconds = interval_seconds.unwrap_or(DEFAULT_INTERVAL_SECONDS);
    if seconds == 0 || seconds > MAX_INTERVAL_SECONDS {
        problems.push((
            "interval_seconds",
            format!("{seconds} is out of range; use 1 to {MAX_INTERVAL_SECONDS} (default {DEFAULT_INTERVAL_SECONDS}, hourly)"),
        ));
    }
    let name = name.unwrap_or("webroot").to_string();
    if let Err(e) = StreamId::new(name.clone()) {
        problems.push((
            "name",
            format!("{name:?} {}; the name is part of the stream id", e.why),
        ));
    }
    match category {
        Some(category) if problems.is_empty() => Ok(Checked {
            name,
            category,
            webroot: WebrootConfig {
                roots,
                interval: Duration::from_secs(seconds),
            },
        }),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_web_hourly_and_named_webroot() {
        let c = check(Some(&["/var/www/html".to_string()]), None, None, None).unwrap();
        assert_eq!(c.name, "webroot");
        assert_eq!(c.category, Category::Web);
        assert_eq!(c.webroot.interval, Duration::from_secs(3600));
        assert_eq!(c.webroot.roots, vec![PathBuf::from("/var/www/html")]);
    }

    #[test]
    fn every_problem_is_named() {
        let err = check(
            Some(&["www".to_string(), "/srv/*/htdocs".to_string()]),
            Some("bad name"),
            Some("weird"),
            Some(0),
        )
        .unwrap_err();
        let fields: Vec<&str> = err.iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            ["paths", "paths", "category", "interval_seconds", "name"]
        );
        assert!(check(None, None, None, None).unwrap_err()[0]
            .1
            .contains("/var/www/html"));
    }
}
