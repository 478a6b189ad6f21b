//! One line of a web-root inventory (FORMAT.md §18.2): what an agent saw of
//! one file under a web root, as compact JSON ending in `\n`.
//!
//! The line is the evidence; this type is how the agent writes it and how a
//! report reads it back, so both agree on the field names. A reader must
//! accept fields it does not know (a later agent may add some).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::Sha256;
use crate::timefmt::serde_utc;

/// What kind of directory entry a line describes. Directories themselves
/// are not listed (their files are); links are listed, never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryType {
    File,
    Symlink,
    /// A socket, FIFO or device node: listed, never opened.
    Other,
    /// A directory that could not be listed (`error` says why): what is
    /// under it is unknown, so a reader must not take its files as removed.
    Directory,
}

/// One file, link or other entry under a web root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The absolute path, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The path's bytes in lowercase hex, when it is not valid UTF-8
    /// (exactly one of `path` and `path_hex` is present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_hex: Option<String>,
    #[serde(rename = "type")]
    pub entry_type: EntryType,
    /// Size in bytes as `lstat` gave it.
    pub size: u64,
    /// Last modification time (UTC). Attacker-settable (`touch -d`), so a
    /// reader compares hashes, not times, to decide what changed.
    #[serde(with = "serde_utc")]
    pub mtime: OffsetDateTime,
    /// Permission bits and file type as `st_mode`, in octal (`"100644"`);
    /// absent where the platform has none (Windows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// SHA-256 of the file's contents, for a regular file that could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// Where a symbolic link points, as stored in the link (lossy UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Why the file could not be hashed (or changed while it was read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InventoryEntry {
    /// The path for display and comparison: the UTF-8 path, or the hex
    /// form marked as such.
    pub fn display_path(&self) -> String {
        match (&self.path, &self.path_hex) {
            (Some(p), _) => p.clone(),
            (None, Some(h)) => format!("(hex) {h}"),
            (None, None) => String::new(),
        }
    }

    /// The compact JSON line (with its `\n`) an agent stores.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain fields to a Vec cannot fail.
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_line_reads_back_as_written_and_unknown_fields_are_accepted() {
        let e = InventoryEntry {
            path: Some("/var/www/html/up/s.php".into()),
            path_hex: None,
            entry_type: EntryType::File,
            size: 31,
            mtime: datetime!(2026-12-03 02:13:00 UTC),
            mode: Some("100644".into()),
            sha256: Some(Sha256::digest(b"x")),
            target: None,
            error: None,
        };
        let line = e.encode();
        assert!(line.ends_with(b"\n"));
        let text = std::str::from_utf8(&line).unwrap();
        assert!(text.starts_with("{\"path\":\"/var/www/html/up/s.php\",\"type\":\"file\""));
        let back: InventoryEntry = serde_json::from_slice(&line).unwrap();
        assert_eq!(back, e);
        let later = text.trim_end().replace('}', ",\"owner\":0}");
        let back: InventoryEntry = serde_json::from_str(&later).unwrap();
        assert_eq!(back, e);
    }
}
