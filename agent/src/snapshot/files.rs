//! The in-scope log files of a snapshot: every file a source glob matches,
//! plus its rotated siblings (`auth.log.1`, `auth.log.2.gz`,
//! `auth.log-20261130`), each opened read-only — with `O_NOATIME` where the
//! kernel permits it, so the copy does not even change access times — and
//! measured with `fstat` before anything is copied. The open descriptors
//! keep renamed or deleted files readable, so a rotation during the
//! snapshot loses nothing that was there at the start.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::config::SourceConfig;
use crate::platform::{self, Stat};

/// One file, open, with its size at the start.
pub struct OpenLog {
    pub path: PathBuf,
    pub source: String,
    pub file: File,
    pub meta: Stat,
    /// `O_NOATIME` was refused (not the owner, no `CAP_FOWNER`): reading may update the access time.
    pub atime_may_change: bool,
}

/// Files that matched but could not be opened, with why.
pub struct Unopened {
    pub path: PathBuf,
    pub why: String,
}

/// Opens a file for copying without changing it: read-only, no atime
/// update where permitted, never creating anything.
#[cfg(unix)]
pub fn open_evidence(path: &Path) -> std::io::Result<(File, bool)> {
    use std::fs::OpenOptions;
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOATIME)
        .open(path)
    {
        Ok(f) => Ok((f, false)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            Ok((OpenOptions::new().read(true).open(path)?, true))
        }
        Err(e) => Err(e),
    }
}

/// Opens a file for copying without changing it: read-only, with every
/// share mode so the copy never blocks the writer or a rotation. Windows
/// updates access times lazily, if at all (NTFS disables it by default
/// since Windows 10 1803), and offers no per-open way to prevent it, so
/// the second value (`atime_may_change`) is true.
#[cfg(windows)]
pub fn open_evidence(path: &Path) -> std::io::Result<(File, bool)> {
    Ok((platform::open_log(path)?, true))
}

/// Rotated siblings of `path`: regular files beside it whose names are its
/// name followed by `.` or `-` and anything (`.1`, `.2.gz`, `-20261130`).
fn siblings(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let name = super::path_bytes(name);
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| {
            let n = super::path_bytes(&e.file_name());
            n.len() > name.len() + 1 && n.starts_with(&name) && matches!(n[name.len()], b'.' | b'-')
        })
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .map(|e| e.path())
        .collect()
}

/// Whether `pattern` holds glob metacharacters (then its matches, not the
/// pattern itself, are the files).
fn has_glob_syntax(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Every in-scope file, by source then path, each file (device and inode)
/// once, opened. `known` holds (device, inode) pairs already opened by an
/// earlier pass, so a second pass adds only files that appeared meanwhile.
pub fn open_all(
    sources: &[SourceConfig],
    known: &mut BTreeSet<(u64, u64)>,
) -> (Vec<OpenLog>, Vec<Unopened>) {
    let mut opened = Vec::new();
    let mut failed = Vec::new();
    for source in sources {
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        for pattern in &source.paths {
            // A plain path names its rotated siblings even while the live
            // file itself is absent (renamed, not yet re-created): without
            // this, a snapshot taken in that instant would copy nothing.
            if !has_glob_syntax(pattern) {
                paths.extend(siblings(Path::new(pattern)));
            }
            let Ok(matches) = glob::glob(pattern) else {
                continue;
            };
            for p in matches.filter_map(Result::ok) {
                if fs::metadata(&p).map(|m| m.is_file()).unwrap_or(false) {
                    paths.extend(siblings(&p));
                    paths.insert(p);
                }
            }
        }
        for path in paths {
            match open_evidence(&path) {
                Ok((file, atime_may_change)) => {
                    let meta = match platform::stat_file(&file) {
                        Ok(m) => m,
                        Err(e) => {
                            failed.push(Unopened {
                                path,
                                why: format!("fstat: {e}"),
                            });
                            continue;
                        }
                    };
                    if !meta.is_file || !known.insert((meta.key.device, meta.key.inode)) {
                        continue;
                    }
                    opened.push(OpenLog {
                        path,
                        source: source.name.clone(),
                        file,
                        meta,
                        atime_may_change,
                    });
                }
                // Rotated away between listing and opening: its bytes are
                // in the file it became, which the listing also saw or the
                // second pass will.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => failed.push(Unopened {
                    path,
                    why: e.to_string(),
                }),
            }
        }
    }
    (opened, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(paths: Vec<String>) -> SourceConfig {
        SourceConfig {
            name: "app".into(),
            category: custody_evidence::Category::App,
            paths,
            framing: crate::config::SourceFraming::Lines,
            journal: None,
            eventlog: None,
            webroot: None,
        }
    }

    #[test]
    fn rotated_copies_are_opened_while_the_live_file_is_renamed_away() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("app.log-0001"), b"one\n").expect("write");
        fs::write(dir.path().join("app.log.2"), b"two\n").expect("write");
        fs::write(dir.path().join("app.logger"), b"not a sibling\n").expect("write");
        let live = dir.path().join("app.log");
        let (opened, failed) = open_all(
            &[source(vec![live.to_string_lossy().into_owned()])],
            &mut BTreeSet::new(),
        );
        assert!(failed.is_empty(), "{:?}", failed.len());
        let mut names: Vec<_> = opened
            .iter()
            .map(|o| o.path.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![
                Some("app.log-0001".to_string()),
                Some("app.log.2".to_string())
            ]
        );
    }
}
