//! Windows Event Log sources (FORMAT.md §17): one stream per channel,
//! events kept as `EvtRender` gives them (UTF-16LE XML) in octet-counted
//! frames, a bookmark per channel in the checkpoint, and recovery from a
//! cleared channel, a stale subscription and a missing channel that never
//! stops the other sources.
//!
//! The logic that needs no Windows lives here and is tested on every OS
//! against a fake feed: [`reader::ChannelReader`] (framing, cutting at
//! event boundaries, bookmark bookkeeping, cleared-channel detection) and
//! [`recovery::decide`] (what to do after each failure). The Windows side,
//! [`wevt`], is only the [`feed::EventFeed`] over `wevtapi` (`EvtSubscribe`,
//! `EvtNext`, `EvtRender`, bookmarks) and `EvtExportLog` for snapshots.

pub mod config;
pub mod feed;
pub mod reader;
pub mod recovery;
pub mod source;
// The FFI calls into wevtapi.dll are unsafe by nature; this module alone
// is allowed them (the crate denies unsafe code elsewhere).
#[cfg(windows)]
#[allow(unsafe_code)]
pub mod wevt;

use custody_evidence::Category;

/// The stream id of a channel when the config names none: `eventlog-` and
/// the channel in lower case, every character outside `[a-z0-9._-]` as `-`
/// (`Microsoft-Windows-Sysmon/Operational` →
/// `eventlog-microsoft-windows-sysmon-operational`).
pub fn default_stream_name(channel: &str) -> String {
    let mut out = String::from("eventlog-");
    for c in channel.chars() {
        let c = c.to_ascii_lowercase();
        out.push(
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            },
        );
    }
    out
}

/// The category of a channel when the config names none: the Security
/// channel is the logon log; System is the OS log; anything else is an
/// application log.
pub fn default_category(channel: &str) -> Category {
    if channel.eq_ignore_ascii_case("Security") {
        Category::Logon
    } else if channel.eq_ignore_ascii_case("System") {
        Category::Os
    } else {
        Category::App
    }
}

/// The bag path of a channel's snapshot export (FORMAT.md §17.5):
/// `data/eventlog/<channel, "/" as "%2F">.evtx`.
pub fn snapshot_bag_path(channel: &str) -> String {
    format!(
        "data/eventlog/{}.evtx",
        channel.replace('%', "%25").replace('/', "%2F")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_categories() {
        assert_eq!(default_stream_name("Security"), "eventlog-security");
        assert_eq!(
            default_stream_name("Microsoft-Windows-Sysmon/Operational"),
            "eventlog-microsoft-windows-sysmon-operational"
        );
        assert!(custody_evidence::StreamId::new(default_stream_name(
            "Microsoft-Windows-Sysmon/Operational"
        ))
        .is_ok());
        assert_eq!(default_category("Security"), Category::Logon);
        assert_eq!(default_category("System"), Category::Os);
        assert_eq!(default_category("Application"), Category::App);
        assert_eq!(
            snapshot_bag_path("Microsoft-Windows-Sysmon/Operational"),
            "data/eventlog/Microsoft-Windows-Sysmon%2FOperational.evtx"
        );
    }
}
