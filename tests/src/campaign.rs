//! The fault campaign's pieces (`tests/fault_campaign.rs`): a small
//! loop-mounted ext4 for the log directory ([`LoopExt4`]), the workspace
//! opened to an agent running as `nobody` ([`open_to_nobody`]), and the
//! line accounting per stream ([`account`], [`account_store`]).
//!
//! The accounting is stricter than [`crate::assert_exactly_once`], which
//! only counts ids over the whole store: here every line must be in the
//! stream of the source that wrote it, exactly once, and byte for byte the
//! line that was written (rebuilt from its id by [`crate::render_line`]).
//! A line read by the wrong source (a file adopted across sources), a line
//! shipped twice (a file re-read from byte 0) and a line changed or cut are
//! each counted and named, per stream, in a [`CampaignReport`].

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::TestEnv;
use crate::lines::{extract_ids, parse_id, render_line};
use crate::store::StoreContents;

/// uid and gid of `nobody` / `nogroup` on Debian, as `setpriv` is given
/// them by [`crate::AgentOptions::as_nobody`].
pub const NOBODY: u32 = 65534;

/// How many findings of each kind a report lists by name (the counts are
/// always complete).
const NAMED_PER_KIND: usize = 10;

/// `chmod MODE PATH`, panicking with the path.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Opens `env` to an agent running as `nobody`: the workspace root and the
/// logs directory traversable and listable, the state directory and the
/// store owned by nobody (the agent writes both). The log files themselves
/// are the caller's (mode 0644 lets nobody read them).
pub fn open_to_nobody(env: &TestEnv) {
    chmod(&env.root, 0o755);
    chmod(&env.logs, 0o755);
    for dir in [&env.state, &env.store] {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY))
            .unwrap_or_else(|e| panic!("chown nobody {}: {e}", dir.display()));
    }
}

/// A small ext4 file system in an image file, loop-mounted on a directory
/// for the life of the guard. With few inodes, ext4 hands a freed inode
/// out again at once, so a file deleted by one source's rotation and a file
/// created next by another source share an inode number: the case an agent
/// that identifies files by inode must not confuse. Dropping the guard
/// unmounts (lazily if something still holds it) and removes the image.
pub struct LoopExt4 {
    mount: PathBuf,
    image: PathBuf,
}

impl LoopExt4 {
    /// `truncate -s SIZE IMAGE; mkfs.ext4 -q -N INODES IMAGE; mount -o loop
    /// IMAGE DIR`. Needs root (the tests run as root, see README.md).
    pub fn mount(image: &Path, dir: &Path, size: &str, inodes: u32) -> Self {
        run(Command::new("truncate").args(["-s", size]).arg(image));
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F", "-N", &inodes.to_string()])
            .arg(image));
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir));
        Self {
            mount: dir.to_path_buf(),
            image: image.to_path_buf(),
        }
    }

    /// The mount point.
    pub fn dir(&self) -> &Path {
        &self.mount
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.mount)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!(
                "warning: umount {} failed; detaching it lazily",
                self.mount.display()
            );
            let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
        }
        if let Err(e) = fs::remove_file(&self.image) {
            eprintln!("warning: could not remove {}: {e}", self.image.display());
        }
    }
}

/// Runs `cmd`, panicking with its stderr unless it succeeds.
fn run(cmd: &mut Command) {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    assert!(
        out.status.success(),
        "{shown} failed ({}; the fault campaign must run as root): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// What one source wrote: its name (for reports), the prefix of the stream
/// id its lines belong in (`<category>.`, as in `os.os-syslog`), and every id it wrote.
#[derive(Debug, Clone)]
pub struct SourceLines {
    pub name: String,
    pub stream_prefix: String,
    pub ids: Vec<String>,
}

/// The counts of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCount {
    pub stream: String,
    /// The source whose stream this is, if any matches.
    pub source: Option<String>,
    /// Complete lines in the stream.
    pub lines: usize,
    /// Distinct lines of its own source.
    pub own: usize,
    /// Copies of its own lines beyond the first (duplicates).
    pub extra_copies: usize,
    /// Lines written by another source.
    pub foreign: usize,
    /// Lines without a known id, and an unterminated end of a file's bytes.
    pub unknown: usize,
    /// Lines whose id is known but whose bytes are not the written line.
    pub mismatched: usize,
}

/// The counts of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceCount {
    pub source: String,
    pub stream: Option<String>,
    pub written: usize,
    /// Written lines not found in the source's own stream.
    pub missing: usize,
}

/// The outcome of the accounting: counts per stream and per source, and
/// findings naming the first offenders of each kind.
#[derive(Debug, Clone, Default)]
pub struct CampaignReport {
    pub streams: Vec<StreamCount>,
    pub sources: Vec<SourceCount>,
    pub findings: Vec<String>,
}

impl CampaignReport {
    /// No line missing, duplicated, foreign, unknown or changed, and no
    /// other finding.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Total lines written by all sources.
    pub fn written(&self) -> usize {
        self.sources.iter().map(|s| s.written).sum()
    }

    /// The counts as a table, one row per stream, then one per source.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<22} {:<8} {:>9} {:>9} {:>7} {:>8} {:>8} {:>10}",
            "stream", "source", "lines", "own", "extra", "foreign", "unknown", "mismatched"
        );
        for s in &self.streams {
            let _ = writeln!(
                out,
                "{:<22} {:<8} {:>9} {:>9} {:>7} {:>8} {:>8} {:>10}",
                s.stream,
                s.source.as_deref().unwrap_or("-"),
                s.lines,
                s.own,
                s.extra_copies,
                s.foreign,
                s.unknown,
                s.mismatched
            );
        }
        let _ = writeln!(
            out,
            "{:<8} {:<22} {:>9} {:>9}",
            "source", "stream", "written", "missing"
        );
        for s in &self.sources {
            let _ = writeln!(
                out,
                "{:<8} {:<22} {:>9} {:>9}",
                s.source,
                s.stream.as_deref().unwrap_or("-"),
                s.written,
                s.missing
            );
        }
        out
    }

    /// Panics with the table and the findings unless the report is clean.
    pub fn assert_clean(&self) {
        assert!(
            self.is_clean(),
            "fault campaign: {} finding(s)\n{}\n  {}",
            self.findings.len(),
            self.table(),
            self.findings.join("\n  ")
        );
    }
}

/// Findings of one kind: all counted, the first [`NAMED_PER_KIND`] named.
#[derive(Default)]
struct Named {
    count: usize,
    named: Vec<String>,
}

impl Named {
    fn push(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.named.len() < NAMED_PER_KIND {
            self.named.push(what());
        }
    }

    fn report(self, kind: &str, out: &mut Vec<String>) {
        if self.count > 0 {
            out.push(format!(
                "{} {kind}; first: {}",
                self.count,
                self.named.join("; ")
            ));
        }
    }
}

/// The line accounting over the store's bytes as reassembled per source
/// file ([`StoreContents::files`]), plus every integrity problem the store
/// reader found (gaps, overlaps, chain breaks) as findings.
pub fn account_store(
    store: &StoreContents,
    sources: &[SourceLines],
    pool: &[String],
) -> CampaignReport {
    let mut streams: Vec<&str> = store.streams.keys().map(String::as_str).collect();
    streams.sort_unstable();
    let pieces: Vec<(&str, &[u8])> = store
        .files
        .iter()
        .map(|f| (f.stream.as_str(), f.bytes.as_slice()))
        .collect();
    let mut report = account(&streams, &pieces, sources, pool);
    report
        .findings
        .extend(store.problems.iter().map(|p| format!("store: {p}")));
    report
}

/// The line accounting. `streams` are every stream id in the store;
/// `pieces` are `(stream, bytes)` runs of whole source-file bytes (a piece
/// starts and ends at line boundaries unless something was cut). Each line
/// is matched by its id to the source that wrote it and compared with the
/// line rebuilt from the id; then each source's ids are counted in its own
/// stream.
pub fn account(
    streams: &[&str],
    pieces: &[(&str, &[u8])],
    sources: &[SourceLines],
    pool: &[String],
) -> CampaignReport {
    let mut findings = Vec::new();
    // The stream of each source: the one stream whose id has its prefix.
    let mut stream_of: Vec<Option<usize>> = Vec::with_capacity(sources.len());
    for s in sources {
        let matching: Vec<usize> = (0..streams.len())
            .filter(|&i| streams[i].starts_with(&s.stream_prefix))
            .collect();
        if matching.len() > 1 {
            findings.push(format!(
                "source {} has {} streams ({}); expected one",
                s.name,
                matching.len(),
                matching
                    .iter()
                    .map(|&i| streams[i])
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        stream_of.push(matching.first().copied());
    }
    let source_of_stream = |stream: usize| stream_of.iter().position(|&s| s == Some(stream));
    let mut counts: Vec<StreamCount> = streams
        .iter()
        .enumerate()
        .map(|(i, st)| StreamCount {
            stream: st.to_string(),
            source: source_of_stream(i).map(|s| sources[s].name.clone()),
            ..StreamCount::default()
        })
        .collect();
    for (i, c) in counts.iter().enumerate() {
        if c.source.is_none() {
            findings.push(format!(
                "stream {} belongs to no source (expected one of the prefixes {})",
                streams[i],
                sources
                    .iter()
                    .map(|s| s.stream_prefix.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (si, s) in sources.iter().enumerate() {
        for id in &s.ids {
            if let Some(prev) = owner.insert(id.as_str(), si) {
                findings.push(format!(
                    "test bug: id {id} written by {} and {}",
                    sources[prev].name, s.name
                ));
            }
        }
    }
    // id -> copies in its own stream.
    let mut copies: HashMap<&str, usize> = HashMap::new();
    let (mut foreign, mut unknown, mut mismatched) =
        (Named::default(), Named::default(), Named::default());
    for &(stream, bytes) in pieces {
        let Some(sti) = streams.iter().position(|s| *s == stream) else {
            findings.push(format!("test bug: piece of unlisted stream {stream}"));
            continue;
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                counts[sti].unknown += 1;
                unknown.push(|| {
                    format!(
                        "stream {stream}: bytes end with an unterminated line of {} bytes: {:?}",
                        rest.len(),
                        String::from_utf8_lossy(&rest[..rest.len().min(120)])
                    )
                });
                break;
            };
            let line = &rest[..=end];
            rest = &rest[end + 1..];
            counts[sti].lines += 1;
            let ids = extract_ids(line);
            let known = match ids.as_slice() {
                [id] => owner.get_key_value(id.as_str()).map(|(k, v)| (*k, *v)),
                _ => None,
            };
            let Some((id, si)) = known else {
                counts[sti].unknown += 1;
                unknown.push(|| {
                    format!(
                        "stream {stream}: line with no id that was written: {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(160)])
                    )
                });
                continue;
            };
            let exact = parse_id(id).is_some_and(|(tag, n)| render_line(pool, tag, n).0 == line);
            if !exact {
                counts[sti].mismatched += 1;
                mismatched.push(|| {
                    format!(
                        "stream {stream}: line {id} is not the bytes written: {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(160)])
                    )
                });
            }
            if stream_of[si] == Some(sti) {
                *copies.entry(id).or_default() += 1;
            } else {
                counts[sti].foreign += 1;
                foreign.push(|| {
                    format!(
                        "stream {stream}: line {id} of source {} (its stream: {})",
                        sources[si].name,
                        stream_of[si].map_or("none", |i| streams[i])
                    )
                });
            }
        }
    }
    // Ids seen in a stream not their own: a line missing from its own
    // stream may have gone there instead.
    let mut elsewhere: HashSet<&str> = HashSet::new();
    for &(stream, bytes) in pieces {
        for id in extract_ids(bytes) {
            if let Some((key, &si)) = owner.get_key_value(id.as_str()) {
                if stream_of[si].is_none_or(|i| streams[i] != stream) {
                    elsewhere.insert(key);
                }
            }
        }
    }
    let (mut missing, mut duplicated) = (Named::default(), Named::default());
    let mut missing_elsewhere = 0usize;
    let mut source_counts = Vec::with_capacity(sources.len());
    for (si, s) in sources.iter().enumerate() {
        let mut sc = SourceCount {
            source: s.name.clone(),
            stream: stream_of[si].map(|i| streams[i].to_string()),
            written: s.ids.len(),
            missing: 0,
        };
        for id in &s.ids {
            match copies.get(id.as_str()).copied().unwrap_or(0) {
                0 => {
                    sc.missing += 1;
                    let there = elsewhere.contains(id.as_str());
                    missing_elsewhere += usize::from(there);
                    missing.push(|| {
                        format!(
                            "{id} (source {}{})",
                            s.name,
                            if there {
                                ", found in another stream"
                            } else {
                                ""
                            }
                        )
                    });
                }
                1 => {
                    if let Some(i) = stream_of[si] {
                        counts[i].own += 1;
                    }
                }
                n => {
                    if let Some(i) = stream_of[si] {
                        counts[i].own += 1;
                        counts[i].extra_copies += n - 1;
                    }
                    duplicated.push(|| {
                        format!(
                            "{id} x{n} in {}",
                            stream_of[si].map_or("none", |i| streams[i])
                        )
                    });
                }
            }
        }
        source_counts.push(sc);
    }
    missing.report(
        &format!(
            "lines missing from their own stream ({missing_elsewhere} of them only in another source's stream)"
        ),
        &mut findings,
    );
    duplicated.report(
        "lines present more than once in their own stream",
        &mut findings,
    );
    foreign.report("lines in another source's stream", &mut findings);
    unknown.report("lines no source wrote (or cut short)", &mut findings);
    mismatched.report(
        "lines whose bytes differ from what was written",
        &mut findings,
    );
    CampaignReport {
        streams: counts,
        sources: source_counts,
        findings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lines::LineWriter;

    fn pool() -> Vec<String> {
        vec!["short".into(), "a somewhat longer line of log text".into()]
    }

    /// Two sources, `os` and `web`, each writing three lines; returns the
    /// sources and each one's bytes.
    fn two() -> (Vec<SourceLines>, Vec<u8>, Vec<u8>) {
        let pool = pool();
        let mut os = LineWriter::new("/unused", "osg0");
        let mut web = LineWriter::new("/unused", "webg0");
        let a = os.render(&pool, 3);
        let b = web.render(&pool, 3);
        let sources = vec![
            SourceLines {
                name: "os".into(),
                stream_prefix: "os.".into(),
                ids: os.ids().to_vec(),
            },
            SourceLines {
                name: "web".into(),
                stream_prefix: "web.".into(),
                ids: web.ids().to_vec(),
            },
        ];
        (sources, a, b)
    }

    const STREAMS: [&str; 2] = ["os.os-sys.log", "web.web-access.log"];

    #[test]
    fn every_line_once_in_its_own_stream_is_clean() {
        let (sources, a, b) = two();
        let r = account(
            &STREAMS,
            &[
                ("os.os-sys.log", &a[..20]),
                ("os.os-sys.log", &a[20..]),
                ("web.web-access.log", &b),
            ],
            &sources,
            &pool(),
        );
        // A piece cut mid-line is reported: pieces are whole file runs.
        assert!(!r.is_clean());
        let r = account(
            &STREAMS,
            &[("os.os-sys.log", &a), ("web.web-access.log", &b)],
            &sources,
            &pool(),
        );
        assert!(r.is_clean(), "{:?}", r.findings);
        assert_eq!(r.written(), 6);
        assert_eq!(r.streams[0].own, 3);
        assert_eq!(r.streams[1].lines, 3);
    }

    #[test]
    fn duplicates_foreign_missing_and_changed_lines_are_each_counted() {
        let (sources, a, b) = two();
        let mut changed = a.clone();
        changed[0] = b'S';
        let r = account(
            &STREAMS,
            &[
                ("os.os-sys.log", &a),
                ("os.os-sys.log", &a[..a.len()]),
                ("os.os-sys.log", &b),
                ("web.web-access.log", &b[..b.len() - 1]),
            ],
            &sources,
            &pool(),
        );
        assert_eq!(r.streams[0].extra_copies, 3, "{}", r.table());
        assert_eq!(r.streams[0].foreign, 3);
        assert_eq!(r.streams[1].unknown, 1, "the cut last line");
        assert_eq!(r.sources[1].missing, 1);
        assert_eq!(r.findings.len(), 4, "{:#?}", r.findings);
        let r = account(
            &STREAMS,
            &[("os.os-sys.log", &changed), ("web.web-access.log", &b)],
            &sources,
            &pool(),
        );
        assert_eq!(r.streams[0].mismatched, 1);
        assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    }

    #[test]
    fn a_stream_of_no_source_and_a_source_without_stream_are_findings() {
        let (sources, a, _) = two();
        let r = account(
            &["os.os-sys.log", "app.app-x.log"],
            &[("os.os-sys.log", &a)],
            &sources,
            &pool(),
        );
        assert!(r
            .findings
            .iter()
            .any(|f| f.contains("app.app-x.log belongs to no source")));
        assert_eq!(r.sources[1].missing, 3);
        assert_eq!(r.sources[1].stream, None);
    }
}
