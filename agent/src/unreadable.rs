//! Files that exist but cannot be opened: permission denied (the agent's
//! user lacks access), an ACL change, or logrotate's `create` race (the new
//! file exists for a moment before its mode and owner are set).
//!
//! Such a file is not new and not gone. What the checkpoint holds for it
//! (its saved position) is kept here, untouched, until the file can be
//! opened again; then reading resumes there after the usual content checks
//! (FORMAT.md §3.3.1). Opening is retried with back-off, and at once when
//! the file's mode or owner changes (a `chmod`, `chown` or `setfacl` is the
//! usual fix), so the warning is logged once, not on every poll, and the
//! file is listed in `status` the whole time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use custody_evidence::timefmt::format_utc;
use time::OffsetDateTime;

use crate::checkpoint::FileState;
use crate::fingerprint::FileKey;
use crate::platform::Stat;
use crate::status::UnreadableFile;

/// The longest wait between two attempts to open an unreadable file whose
/// mode and owner stay the same (a fix by group membership or a parent
/// directory's mode is then noticed within this time).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One file that could not be opened.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: FileKey,
    /// Where it was last seen.
    pub path: PathBuf,
    /// The checkpoint's position for this file, if it had one.
    pub saved: Option<FileState>,
    /// Whether the glob matched it (else it was found beside a saved path
    /// under another name, and is only finished, never read as new).
    pub matched: bool,
    /// The message logged and shown in `status`.
    pub error: String,
    since: String,
    attempts: u64,
    next_try: Instant,
    backoff: Duration,
    /// Mode, owner and group at the last failure: a change means try now.
    access: (u32, u32, u32),
}

/// Every unreadable file of one source.
#[derive(Debug, Default)]
pub struct Unreadable {
    entries: Vec<Entry>,
    first_backoff: Duration,
}

/// What [`Unreadable::failed`] did, so the caller logs only what is news.
#[derive(Debug, PartialEq, Eq)]
pub enum Noted {
    /// First failure of this file (or a different error than before):
    /// worth a warning.
    New,
    /// The same failure again: log at debug level only.
    Again,
}

impl Unreadable {
    /// `first_backoff` is the wait after the first failure (the poll
    /// interval); it doubles after each failed attempt up to [`MAX_BACKOFF`].
    pub fn new(first_backoff: Duration) -> Self {
        Unreadable {
            entries: Vec::new(),
            first_backoff: first_backoff.min(MAX_BACKOFF),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, key: FileKey) -> bool {
        self.entries.iter().any(|e| e.key == key)
    }

    /// Records a failed open of `path` (stat `meta`). `saved` is the
    /// checkpoint's position if the caller had one; a position recorded
    /// by an earlier failure is kept when `saved` is `None`.
    pub fn failed(
        &mut self,
        path: &Path,
        meta: &Stat,
        saved: Option<FileState>,
        matched: bool,
        error: String,
    ) -> Noted {
        let access = (meta.mode, meta.uid, meta.gid);
        let now = Instant::now();
        if let Some(e) = self.entries.iter_mut().find(|e| e.key == meta.key) {
            let noted = if e.error == error {
                Noted::Again
            } else {
                Noted::New
            };
            e.attempts += 1;
            e.backoff = (e.backoff * 2).min(MAX_BACKOFF);
            e.next_try = now + e.backoff;
            e.access = access;
            e.path = path.to_path_buf();
            e.error = error;
            e.matched = matched;
            if saved.is_some() {
                e.saved = saved;
            }
            return noted;
        }
        self.entries.push(Entry {
            key: meta.key,
            path: path.to_path_buf(),
            saved,
            matched,
            error,
            since: format_utc(OffsetDateTime::now_utc()),
            attempts: 1,
            next_try: now + self.first_backoff,
            backoff: self.first_backoff,
            access,
        });
        Noted::New
    }

    /// Whether to try opening the file `meta` describes now: its back-off
    /// has passed, or its mode or owner changed since the last failure.
    /// `true` for a file not recorded here.
    pub fn due(&self, meta: &Stat) -> bool {
        self.entries
            .iter()
            .find(|e| e.key == meta.key)
            .is_none_or(|e| {
                Instant::now() >= e.next_try || e.access != (meta.mode, meta.uid, meta.gid)
            })
    }

    /// Removes and returns the entry for `key` (it was opened, or is gone).
    pub fn take(&mut self, key: FileKey) -> Option<Entry> {
        let i = self.entries.iter().position(|e| e.key == key)?;
        Some(self.entries.remove(i))
    }

    /// Entries whose keys are not in `seen` (not matched by the glob in
    /// this scan): the caller looks for them by path.
    pub fn unseen(&self, seen: &std::collections::HashSet<FileKey>) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| !seen.contains(&e.key))
            .cloned()
            .collect()
    }

    /// The messages, for the source's `errors`.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.error.as_str())
    }

    /// The entries as `status` shows them.
    pub fn status(&self) -> Vec<UnreadableFile> {
        self.entries
            .iter()
            .map(|e| UnreadableFile {
                path: e.path.to_string_lossy().into_owned(),
                device: e.key.device,
                inode: e.key.inode,
                error: e.error.clone(),
                since: e.since.clone(),
                saved_offset: e.saved.as_ref().map(|s| s.offset),
                attempts: e.attempts,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mode: u32) -> Stat {
        Stat {
            key: FileKey {
                device: 1,
                inode: 2,
            },
            len: 10,
            is_file: true,
            mtime: (0, 0),
            ctime: (0, 0),
            links: 1,
            uid: 0,
            gid: 0,
            mode,
        }
    }

    #[test]
    fn backs_off_and_retries_at_once_when_the_mode_changes() {
        let mut u = Unreadable::new(Duration::from_secs(5));
        let p = Path::new("/var/log/a.log");
        assert_eq!(
            u.failed(p, &stat(0o100000), None, true, "denied".into()),
            Noted::New
        );
        assert!(!u.due(&stat(0o100000)), "not again before the back-off");
        assert!(u.due(&stat(0o100644)), "a chmod means: try now");
        assert_eq!(
            u.failed(p, &stat(0o100000), None, true, "denied".into()),
            Noted::Again
        );
        let e = u.take(stat(0).key).expect("recorded");
        assert_eq!(e.backoff, Duration::from_secs(10));
        assert_eq!(e.attempts, 2);
        assert!(u.is_empty());
    }

    #[test]
    fn the_saved_position_is_kept_across_failures() {
        let mut u = Unreadable::new(Duration::from_secs(1));
        let p = Path::new("/var/log/a.log");
        let saved = FileState {
            path: p.display().to_string(),
            key: stat(0).key,
            fingerprint: crate::fingerprint::Fingerprint::of_prefix(b"x"),
            offset: 1,
            tail: None,
            mid_unit: false,
        };
        u.failed(p, &stat(0), Some(saved.clone()), true, "denied".into());
        u.failed(p, &stat(0), None, true, "denied".into());
        assert_eq!(u.status()[0].saved_offset, Some(1));
        assert_eq!(u.take(stat(0).key).and_then(|e| e.saved), Some(saved));
    }
}
