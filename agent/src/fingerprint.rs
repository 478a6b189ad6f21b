//! File identity. Paths change on rotation and inode numbers are reused
//! after deletion, so a file is known by device and inode *and* by a hash of
//! its first bytes; a saved offset is trusted only if the bytes just before
//! it still hash the same (as Fluent Bit does since its offset-validation fix).

use std::fs::File;
use std::io;

use custody_evidence::Sha256;
use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file's content.
pub const FINGERPRINT_WINDOW: u64 = 1024;
/// How many bytes before a saved offset are checked before resuming there.
pub const TAIL_WINDOW: u64 = 256;

/// Device and inode: who the file is on disk right now. On Windows the
/// volume serial number and the file index, which NTFS keeps across
/// renames just as an inode is kept (see [`crate::platform::Stat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileKey {
    pub device: u64,
    pub inode: u64,
}

/// SHA-256 of the first `len` bytes (at most [`FINGERPRINT_WINDOW`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u64,
    pub hash: Sha256,
}

/// Hash of the bytes `[offset - len, offset)`, checked before resuming.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailCheck {
    pub len: u64,
    pub hash: Sha256,
}

/// Reads exactly `len` bytes at `offset`, or `None` if the file is shorter.
pub fn read_exact_at(file: &File, offset: u64, len: u64) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; len as usize];
    let mut done = 0usize;
    while done < buf.len() {
        match crate::platform::read_at(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => return Ok(None),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Some(buf))
}

impl Fingerprint {
    /// Fingerprint of the file as it is now (`size` from a fresh stat).
    pub fn compute(file: &File, size: u64) -> io::Result<Self> {
        let len = size.min(FINGERPRINT_WINDOW);
        let bytes = read_exact_at(file, 0, len)?.unwrap_or_default();
        Ok(Self {
            len: bytes.len() as u64,
            hash: Sha256::digest(&bytes),
        })
    }

    /// Fingerprint of a file whose first bytes are `head` (as read).
    pub fn of_prefix(head: &[u8]) -> Self {
        let len = head.len().min(FINGERPRINT_WINDOW as usize);
        Self {
            len: len as u64,
            hash: Sha256::digest(&head[..len]),
        }
    }

    /// Whether `file` begins with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        Ok(match read_exact_at(file, 0, self.len)? {
            Some(bytes) => Sha256::digest(&bytes) == self.hash,
            None => false,
        })
    }
}

impl TailCheck {
    /// The check for resuming at the end of `raw`, which ends at the offset.
    pub fn of_bytes_before(raw_tail: &[u8]) -> Self {
        let n = raw_tail.len().min(TAIL_WINDOW as usize);
        let tail = &raw_tail[raw_tail.len() - n..];
        Self {
            len: n as u64,
            hash: Sha256::digest(tail),
        }
    }

    pub fn holds(&self, file: &File, offset: u64) -> io::Result<bool> {
        if self.len > offset {
            return Ok(false);
        }
        Ok(match read_exact_at(file, offset - self.len, self.len)? {
            Some(bytes) => Sha256::digest(&bytes) == self.hash,
            None => false,
        })
    }
}

/// Compressed rotations (`auth.log.2.gz`) hold content already read from
/// the live file; they are recognised by name and by magic bytes and never
/// read as new data.
pub fn looks_compressed(path: &std::path::Path, head: &[u8]) -> bool {
    const EXTS: [&str; 8] = ["gz", "bz2", "xz", "zst", "lz4", "zip", "Z", "lzma"];
    let by_name = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTS.contains(&e));
    let by_magic = head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0x04, 0x22, 0x4d, 0x18]);
    by_name || by_magic
}
