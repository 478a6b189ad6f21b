//! Walking web roots: every file, link and special entry under each root,
//! in byte order of their paths, never following a link, each regular file
//! hashed (SHA-256). A file whose identity, size, mtime and ctime are the
//! same as in the previous walk keeps its hash without being read again, so
//! an hourly inventory of an unchanged site reads only directories.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use custody_evidence::inventory::{EntryType, InventoryEntry};
use custody_evidence::Sha256;
use sha2::Digest;
use time::OffsetDateTime;

/// Directories deeper than this below a root are listed as not read: a
/// loop of bind mounts or a hostile tree must not exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Bytes read from a file at a time while hashing.
const READ_CHUNK: usize = 256 * 1024;

/// What identifies a file's contents as unchanged since the last walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    device: u64,
    inode: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Why a walk ended before its last root.
#[derive(Debug)]
pub struct Interrupted;

/// Walks roots; keeps the hashes of the last walk for the next one.
#[derive(Default)]
pub struct Walker {
    hashes: HashMap<PathBuf, (Seen, Sha256)>,
    next: HashMap<PathBuf, (Seen, Sha256)>,
    /// Files read (not taken from the last walk) in the last walk.
    pub hashed_last_walk: u64,
}

impl Walker {
    /// Calls `emit` for every entry under `roots`, in order. A root that
    /// cannot be listed gives one [`EntryType::Directory`] entry saying why.
    /// Returns early (without keeping this walk's hashes) once `stop` is set
    /// or `emit` fails.
    pub fn walk<E>(
        &mut self,
        roots: &[PathBuf],
        stop: &AtomicBool,
        emit: &mut dyn FnMut(InventoryEntry) -> Result<(), E>,
    ) -> Result<u64, Option<E>> {
        self.next.clear();
        self.hashed_last_walk = 0;
        let mut count = 0;
        for root in roots {
            match fs::symlink_metadata(root) {
                Ok(meta) if meta.is_dir() => self.directory(root, 0, stop, emit, &mut count)?,
                Ok(meta) => {
                    // A root that is a link or a file: listed as itself.
                    count += 1;
                    emit(self.entry(root, &meta)).map_err(Some)?;
                }
                Err(e) => {
                    count += 1;
                    emit(unlisted(root, &e.to_string())).map_err(Some)?;
                }
            }
        }
        std::mem::swap(&mut self.hashes, &mut self.next);
        self.next.clear();
        Ok(count)
    }

    fn directory<E>(
        &mut self,
        dir: &Path,
        depth: usize,
        stop: &AtomicBool,
        emit: &mut dyn FnMut(InventoryEntry) -> Result<(), E>,
        count: &mut u64,
    ) -> Result<(), Option<E>> {
        if stop.load(Ordering::SeqCst) {
            return Err(None);
        }
        if depth > MAX_DEPTH {
            *count += 1;
            return emit(unlisted(
                dir,
                &format!("more than {MAX_DEPTH} directories deep: not listed"),
            ))
            .map_err(Some);
        }
        let mut names: Vec<OsString> = match fs::read_dir(dir) {
            Ok(it) => {
                let mut names = Vec::new();
                for e in it {
                    match e {
                        Ok(e) => names.push(e.file_name()),
                        Err(e) => {
                            *count += 1;
                            return emit(unlisted(dir, &format!("listing stopped: {e}")))
                                .map_err(Some);
                        }
                    }
                }
                names
            }
            Err(e) => {
                *count += 1;
                return emit(unlisted(dir, &e.to_string())).map_err(Some);
            }
        };
        names.sort_by_key(|a| os_bytes(a));
        for name in names {
            let path = dir.join(&name);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {
                    self.directory(&path, depth + 1, stop, emit, count)?;
                }
                Ok(meta) => {
                    *count += 1;
                    emit(self.entry(&path, &meta)).map_err(Some)?;
                }
                // Removed between listing and looking: nothing to list.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    *count += 1;
                    let mut entry = unlisted(&path, &e.to_string());
                    entry.entry_type = EntryType::Other;
                    emit(entry).map_err(Some)?;
                }
            }
        }
        Ok(())
    }

    /// The line for one non-directory entry; a regular file is hashed
    /// unless the last walk saw it unchanged.
    fn entry(&mut self, path: &Path, meta: &Metadata) -> InventoryEntry {
        let (entry_type, target) = if meta.file_type().is_symlink() {
            let target = fs::read_link(path)
                .map(|t| t.to_string_lossy().into_owned())
                .ok();
            (EntryType::Symlink, target)
        } else if meta.is_file() {
            (EntryType::File, None)
        } else {
            (EntryType::Other, None)
        };
        let mut entry = named(path);
        entry.entry_type = entry_type;
        entry.size = meta.len();
        entry.mtime = meta
            .modified()
            .map(OffsetDateTime::from)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        entry.mode = mode_of(meta);
        entry.target = target;
        if entry_type == EntryType::File {
            let seen = seen_of(meta);
            let cached = self
                .hashes
                .get(path)
                .filter(|(s, _)| *s == seen)
                .map(|(_, h)| *h);
            let result = match cached {
                Some(h) => Ok(h),
                None => {
                    self.hashed_last_walk += 1;
                    hash_file(path, &seen)
                }
            };
            match result {
                Ok(h) => {
                    entry.sha256 = Some(h);
                    self.next.insert(path.to_path_buf(), (seen, h));
                }
                Err(why) => entry.error = Some(why),
            }
        }
        entry
    }
}

/// An entry with only its path set (type `file` until the caller says).
fn named(path: &Path) -> InventoryEntry {
    let (utf8, hex_form) = match path.to_str() {
        Some(s) => (Some(s.to_string()), None),
        None => (None, Some(hex::encode(os_bytes(path.as_os_str())))),
    };
    InventoryEntry {
        path: utf8,
        path_hex: hex_form,
        entry_type: EntryType::File,
        size: 0,
        mtime: OffsetDateTime::UNIX_EPOCH,
        mode: None,
        sha256: None,
        target: None,
        error: None,
    }
}

/// A directory (or root) that could not be listed, and why.
fn unlisted(path: &Path, why: &str) -> InventoryEntry {
    let mut e = named(path);
    e.entry_type = EntryType::Directory;
    e.error = Some(why.to_string());
    e
}

/// Reads and hashes a file that `lstat` showed as regular. The file is
/// opened without following a link (one swapped in since is refused) and
/// must still be the same file, of the same size, after reading.
fn hash_file(path: &Path, seen: &Seen) -> Result<Sha256, String> {
    let mut file = open_no_follow(path).map_err(|e| format!("cannot read: {e}"))?;
    let opened = file
        .metadata()
        .map_err(|e| format!("cannot stat the open file: {e}"))?;
    let now = seen_of(&opened);
    if (now.device, now.inode) != (seen.device, seen.inode) {
        return Err("replaced between listing and reading".to_string());
    }
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut read = 0u64;
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                read += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read failed at byte {read}: {e}")),
        }
    }
    if read != seen.size {
        return Err(format!(
            "changed while being read ({} bytes listed, {read} read)",
            seen.size
        ));
    }
    Ok(Sha256::from_hasher(hasher))
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(windows)]
fn open_no_follow(path: &Path) -> io::Result<File> {
    crate::platform::open_log(path)
}

#[cfg(unix)]
fn seen_of(meta: &Metadata) -> Seen {
    use std::os::unix::fs::MetadataExt;
    Seen {
        device: meta.dev(),
        inode: meta.ino(),
        size: meta.len(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    }
}

#[cfg(windows)]
fn seen_of(meta: &Metadata) -> Seen {
    use std::os::windows::fs::MetadataExt;
    Seen {
        device: 0,
        inode: 0,
        size: meta.len(),
        mtime: (meta.last_write_time() as i64, 0),
        ctime: (meta.creation_time() as i64, 0),
    }
}

#[cfg(unix)]
fn mode_of(meta: &Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    Some(format!("{:o}", meta.mode()))
}

#[cfg(windows)]
fn mode_of(_meta: &Metadata) -> Option<String> {
    None
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(windows)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk_all(w: &mut Walker, roots: &[PathBuf]) -> Vec<InventoryEntry> {
        let stop = AtomicBool::new(false);
        let mut out = Vec::new();
        w.walk::<()>(roots, &stop, &mut |e| {
            out.push(e);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn lists_in_path_order_hashes_files_and_reuses_unchanged_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("html");
        fs::create_dir_all(root.join("up/b")).unwrap();
        fs::write(root.join("index.html"), b"<h1>hi</h1>").unwrap();
        fs::write(root.join("up/a.php"), b"<?php ?>").unwrap();
        fs::write(root.join("up/b/c.txt"), b"c").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/passwd", root.join("up/link")).unwrap();
        let missing = dir.path().join("absent");
        let mut w = Walker::default();
        let got = walk_all(&mut w, &[root.clone(), missing.clone()]);
        let paths: Vec<String> = got.iter().map(|e| e.display_path()).collect();
        let at = |rel: &[&str]| {
            let mut p = root.clone();
            for r in rel {
                p.push(r);
            }
            p.display().to_string()
        };
        let mut want = vec![
            at(&["index.html"]),
            at(&["up", "a.php"]),
            at(&["up", "b", "c.txt"]),
        ];
        if cfg!(unix) {
            want.push(at(&["up", "link"]));
        }
        want.push(missing.display().to_string());
        assert_eq!(paths, want);
        assert_eq!(got[1].sha256, Some(Sha256::digest(b"<?php ?>")));
        assert_eq!(got[1].size, 8);
        if cfg!(unix) {
            assert_eq!(got[3].entry_type, EntryType::Symlink);
            assert_eq!(got[3].target.as_deref(), Some("/etc/passwd"));
            assert_eq!(got[3].sha256, None, "a link is never followed");
        }
        let last = got.last().unwrap();
        assert_eq!(last.entry_type, EntryType::Directory);
        assert!(last.error.is_some(), "a missing root says why");
        assert_eq!(w.hashed_last_walk, 3);

        // Unchanged files are not read again; a changed one is.
        let again = walk_all(&mut w, std::slice::from_ref(&root));
        assert_eq!(w.hashed_last_walk, 0);
        assert_eq!(again[1].sha256, got[1].sha256);
        fs::write(root.join("up/a.php"), b"<?php system($_GET['c']); ?>").unwrap();
        let changed = walk_all(&mut w, &[root]);
        assert_eq!(w.hashed_last_walk, 1);
        assert_eq!(
            changed[1].sha256,
            Some(Sha256::digest(b"<?php system($_GET['c']); ?>"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_path_that_is_not_utf8_is_kept_as_hex() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let name = std::ffi::OsStr::from_bytes(b"sh\xffell.php");
        fs::write(dir.path().join(name), b"x").unwrap();
        let got = walk_all(&mut Walker::default(), &[dir.path().to_path_buf()]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, None);
        let hex_form = got[0].path_hex.as_deref().unwrap();
        assert!(hex_form.ends_with(&hex::encode(b"/sh\xffell.php")));
    }
}
