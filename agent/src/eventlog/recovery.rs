//! What a channel does after a failure (FORMAT.md §17.4). Pure: the reader
//! applies the decision; the other channels are never involved.

use std::time::Duration;

use super::feed::{FeedError, StartFrom};

/// Why a channel was resubscribed somewhere other than its bookmark; goes
/// into `resumed_after` of the next segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeReason {
    Cleared,
    BookmarkLost,
    ChannelMissing,
    SubscriptionStale,
}

impl ResumeReason {
    /// The FORMAT.md §17.3 spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ResumeReason::Cleared => "cleared",
            ResumeReason::BookmarkLost => "bookmark_lost",
            ResumeReason::ChannelMissing => "channel_missing",
            ResumeReason::SubscriptionStale => "subscription_stale",
        }
    }
}

/// The next step after a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// Wait this long first.
    pub after: Duration,
    /// Then subscribe from here.
    pub from: StartFrom,
    /// Recorded on the next segment.
    pub reason: ResumeReason,
}

/// Back-off for repeated failures of the same kind: 1 s doubling to 60 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(6)).min(MAX_BACKOFF)
}

/// The longest wait between attempts, and the retry interval for a channel
/// that does not exist.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Decides the recovery for `err`, given the committed bookmark (if any)
/// and how many attempts in a row have failed.
pub fn decide(err: &FeedError, bookmark: Option<&str>, attempt: u32) -> Recovery {
    let resume = || match bookmark {
        Some(b) => StartFrom::AfterBookmark(b.to_string()),
        None => StartFrom::Oldest,
    };
    match err {
        // The channel may be installed later (Sysmon): keep asking, slowly.
        FeedError::ChannelMissing(_) | FeedError::AccessDenied(_) => Recovery {
            after: MAX_BACKOFF,
            from: resume(),
            reason: ResumeReason::ChannelMissing,
        },
        // Everything after the bookmark that is still there: from the
        // oldest record, at once (waiting would lose more to wrapping).
        FeedError::BookmarkLost(_) => Recovery {
            after: Duration::ZERO,
            from: StartFrom::Oldest,
            reason: ResumeReason::BookmarkLost,
        },
        FeedError::Stale(_) => Recovery {
            after: backoff(attempt),
            from: resume(),
            reason: ResumeReason::SubscriptionStale,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let bm = "<BookmarkList><Bookmark Channel='Security' RecordId='9' IsCurrent='true'/></BookmarkList>";
        let r = decide(&FeedError::Stale("rpc".into()), Some(bm), 0);
        assert_eq!(r.from, StartFrom::AfterBookmark(bm.into()));
        assert_eq!(r.after, Duration::from_secs(1));
        assert_eq!(
            decide(&FeedError::Stale("x".into()), Some(bm), 3).after,
            Duration::from_secs(8)
        );
        assert_eq!(
            decide(&FeedError::Stale("x".into()), Some(bm), 40).after,
            MAX_BACKOFF
        );
        let r = decide(&FeedError::BookmarkLost("1168".into()), Some(bm), 0);
        assert_eq!(
            (r.from, r.reason, r.after),
            (
                StartFrom::Oldest,
                ResumeReason::BookmarkLost,
                Duration::ZERO
            )
        );
        let r = decide(&FeedError::ChannelMissing("15007".into()), None, 0);
        assert_eq!(
            (r.from, r.reason, r.after),
            (StartFrom::Oldest, ResumeReason::ChannelMissing, MAX_BACKOFF)
        );
    }
}
