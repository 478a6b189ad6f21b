//! What a channel reader needs from the Event Log: subscribe from a
//! position, take the next events, and a bookmark at an event. On Windows
//! this is `wevtapi` ([`super::wevt`]); tests drive the reader with a fake.

use std::time::Duration;

/// One event as Windows rendered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// `EventRecordID`.
    pub record_id: u64,
    /// The `EvtRender(EvtRenderEventXml)` output, UTF-16LE, without the
    /// terminating NUL: the bytes kept as evidence.
    pub xml: Vec<u8>,
}

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record the channel still holds.
    Oldest,
    /// Only events from now on.
    Future,
    /// Strictly after this bookmark (XML from [`EventFeed::bookmark_at`]).
    AfterBookmark(String),
}

/// Why the feed failed, sorted by what recovery it calls for
/// ([`super::recovery::decide`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    /// The channel does not exist (`ERROR_EVT_CHANNEL_NOT_FOUND`).
    #[error("channel not found: {0}")]
    ChannelMissing(String),
    /// Not allowed to read it (`ERROR_ACCESS_DENIED`).
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The bookmark's record is gone (cleared, recreated or wrapped):
    /// strict subscription refused it.
    #[error("bookmark no longer in the channel: {0}")]
    BookmarkLost(String),
    /// The subscription stopped working (service restarted, RPC failure,
    /// stale result).
    #[error("subscription stale: {0}")]
    Stale(String),
}

/// A subscription to one channel.
pub trait EventFeed {
    /// Opens a subscription (closing any open one).
    fn subscribe(&mut self, from: &StartFrom) -> Result<(), FeedError>;
    /// Up to `max` events, waiting up to `wait` for the first; empty when
    /// none came.
    fn next(&mut self, max: usize, wait: Duration) -> Result<Vec<RawEvent>, FeedError>;
    /// The bookmark XML positioned at event `record_id`, which must be one
    /// of those the last [`EventFeed::next`] returned.
    fn bookmark_at(&mut self, record_id: u64) -> Result<String, FeedError>;
}

/// The `EventRecordID` in an event's rendered XML (UTF-16LE), read without
/// changing the bytes.
pub fn record_id_from_xml(xml_utf16le: &[u8]) -> Option<u64> {
    let units: Vec<u16> = xml_utf16le
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    let text = String::from_utf16_lossy(&units);
    let start = text.find("<EventRecordID>")? + "<EventRecordID>".len();
    let rest = &text[start..];
    rest[..rest.find('<')?].trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_id_is_read_from_the_rendered_xml() {
        let xml = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><EventID>4624</EventID><EventRecordID>137223</EventRecordID><Channel>Security</Channel></System></Event>";
        let bytes: Vec<u8> = xml.encode_utf16().flat_map(u16::to_le_bytes).collect();
        assert_eq!(record_id_from_xml(&bytes), Some(137223));
        assert_eq!(record_id_from_xml(b"<\0E\0"), None);
    }
}
