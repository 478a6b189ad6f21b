//! A `kind = "eventlog"` source (FORMAT.md §17.1): checked here so the
//! config module only has to dispatch to it.

use custody_evidence::segment::{EventLogKind, EventLogSource};
use custody_evidence::{Category, StreamId};

use super::reader::CutSegment;
use super::{default_category, default_stream_name};

/// One channel to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLogSourceConfig {
    /// The channel path (`Security`, `Microsoft-Windows-Sysmon/Operational`).
    pub channel: String,
    pub stream: StreamId,
    pub category: Category,
}

/// Checks an event log source's fields; every problem is returned, each
/// naming the field and what to write instead.
pub fn check(
    channel: Option<&str>,
    name: Option<&str>,
    category: Option<&str>,
) -> Result<EventLogSourceConfig, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let channel = match channel.map(str::trim) {
        None | Some("") => {
            problems.push((
                "channel",
                "an event log source needs channel = \"Security\" (or System, Application, \
                 Microsoft-Windows-Sysmon/Operational, … as `wevtutil el` lists them)"
                    .to_string(),
            ));
            None
        }
        Some(c) if c.contains(['\0', '*', '?']) || c.len() > 255 => {
            problems.push((
                "channel",
                format!("{c:?} is not a channel path (no wildcards; one channel per source)"),
            ));
            None
        }
        Some(c) => Some(c.to_string()),
    };
    let category = match (category, &channel) {
        (Some(text), _) => match text.parse::<Category>() {
            Ok(c) => Some(c),
            Err(_) => {
                problems.push((
                    "category",
                    format!("{text:?} is not one of os, web, app, logon"),
                ));
                None
            }
        },
        (None, Some(c)) => Some(default_category(c)),
        (None, None) => None,
    };
    let stream_name = match (name, &channel) {
        (Some(n), _) => Some(n.to_string()),
        (None, Some(c)) => Some(default_stream_name(c)),
        (None, None) => None,
    };
    let stream = stream_name.and_then(|n| match StreamId::new(&n) {
        Ok(s) => Some(s),
        Err(e) => {
            problems.push(("name", format!("{n:?} cannot be a stream id: {e}")));
            None
        }
    });
    match (channel, stream, category) {
        (Some(channel), Some(stream), Some(category)) if problems.is_empty() => {
            Ok(EventLogSourceConfig {
                channel,
                stream,
                category,
            })
        }
        _ => Err(problems),
    }
}

/// The segment record's `source` for a cut (FORMAT.md §17.3).
pub fn segment_source(cut: &CutSegment) -> EventLogSource {
    EventLogSource {
        kind: EventLogKind::Eventlog,
        channel: cut.channel.clone(),
        encoding: "utf-16le".to_string(),
        first_record_id: cut.first_record_id,
        last_record_id: cut.last_record_id,
        resumed_after: cut.resumed_after.map(|r| r.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::reader::ChannelState;
    use crate::eventlog::recovery::ResumeReason;

    #[test]
    fn defaults_and_problems() {
        let s = check(Some("Security"), None, None).unwrap();
        assert_eq!(s.category, Category::Logon);
        assert_eq!(s.stream.as_str(), "eventlog-security");
        let s = check(
            Some("Microsoft-Windows-Sysmon/Operational"),
            None,
            Some("os"),
        )
        .unwrap();
        assert_eq!(s.category, Category::Os);
        let e = check(None, None, None).unwrap_err();
        assert_eq!(e[0].0, "channel");
        let e = check(Some("Security*"), None, Some("nope")).unwrap_err();
        assert_eq!(
            e.iter().map(|p| p.0).collect::<Vec<_>>(),
            ["channel", "category"]
        );
    }

    #[test]
    fn segment_source_names_the_recovery() {
        let cut = CutSegment {
            channel: "Security".into(),
            raw: Vec::new(),
            range: (0, 0),
            first_record_id: 3,
            last_record_id: 9,
            events: 7,
            resumed_after: Some(ResumeReason::Cleared),
            state_after: ChannelState::default(),
        };
        let s = segment_source(&cut);
        assert_eq!(s.resumed_after.as_deref(), Some("cleared"));
        assert_eq!(s.encoding, "utf-16le");
        assert_eq!((s.first_record_id, s.last_record_id), (3, 9));
    }
}
