//! Files added, changed or removed in web directories ("unauthorised files
//! in web directories", REQUIREMENTS.md §4 STEP 5), from the inventories a
//! webroot source keeps (FORMAT.md §18).
//!
//! A web server's log shows the request that planted a webshell, not the
//! file; an inventory shows the file. Inventories of one stream are
//! compared in the order they were taken, each with the one before: the
//! baseline is the last complete inventory taken before the window (or,
//! when there is none, the first one in it, and a note says what that
//! cannot show). Only one inventory is held in memory besides the one being
//! read, so a big site's hourly inventories over a week stay bounded.
//!
//! Every change cites the inventory line that shows it (the newer
//! inventory's line for an addition or a change, and the older one's line
//! as well; the older one's line for a removal), so an auditor re-derives
//! it as any other finding. Times: a change is dated by the inventory that
//! first shows it (`taken`, the agent's clock at the walk), and the file's
//! own mtime is quoted but not trusted (`touch -d` sets it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use custody_evidence::inventory::{EntryType, InventoryEntry};
use custody_evidence::timefmt::format_utc;
use time::OffsetDateTime;

use crate::findings::detect::local;
use crate::findings::events::{evidence_of, Event, Kind};
use crate::findings::model::{Evidence, Finding, Note};
use crate::findings::rules::Compiled;
use crate::input::SegmentSummary;

/// What one file looked like in one inventory, and where its line is.
#[derive(Debug, Clone)]
struct Seen {
    entry_type: EntryType,
    size: u64,
    mode: Option<String>,
    sha256: Option<String>,
    mtime: OffsetDateTime,
    error: Option<String>,
    seg: usize,
    offset: u64,
    len: u64,
    line: Vec<u8>,
}

/// One complete inventory, read.
struct Inventory {
    taken: OffsetDateTime,
    files: HashMap<String, Seen>,
    /// Directories that could not be listed: nothing under them is known.
    unlisted: Vec<String>,
}

/// What comparing gave: findings, the events for the timeline, notes.
#[derive(Default)]
pub struct Compared {
    pub findings: Vec<Finding>,
    pub events: Vec<Event>,
    pub notes: Vec<Note>,
}

/// Compares the inventories among `segs`. `verified(i)` says whether
/// segment `i` verified (only verified inventories are compared unless
/// `include_unverified`); `read_raw(i)` gives its decompressed bytes.
pub fn compare(
    segs: &[SegmentSummary],
    verified: &dyn Fn(usize) -> bool,
    read_raw: &dyn Fn(usize) -> Result<Vec<u8>, String>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    include_unverified: bool,
    c: &Compiled,
) -> Compared {
    let mut out = Compared::default();
    // (host, stream) → taken → the parts' segment indexes by part number.
    let mut by_stream: BTreeMap<(&str, &str), BTreeMap<OffsetDateTime, Vec<usize>>> =
        BTreeMap::new();
    for (i, s) in segs.iter().enumerate() {
        if let Some(p) = &s.inventory {
            by_stream
                .entry((s.host.as_str(), s.stream.as_str()))
                .or_default()
                .entry(p.taken)
                .or_default()
                .push(i);
        }
    }
    for ((host, stream), inventories) in by_stream {
        let mut complete = Vec::new();
        for (taken, mut parts) in inventories {
            parts.sort_by_key(|&i| segs[i].inventory.as_ref().map_or(0, |p| p.part));
            let whole = parts.iter().enumerate().all(|(k, &i)| {
                segs[i]
                    .inventory
                    .as_ref()
                    .is_some_and(|p| p.part as usize == k)
            }) && parts
                .last()
                .and_then(|&i| segs[i].inventory.as_ref())
                .is_some_and(|p| p.last_part);
            let trusted = parts.iter().all(|&i| verified(i)) || include_unverified;
            if !whole {
                out.notes.push(Note {
                    kind: "webroot_inventory_incomplete".into(),
                    message: format!(
                        "host {host} stream {stream}: the inventory taken {} is incomplete (parts missing or the agent stopped during the walk); it is not compared",
                        format_utc(taken)
                    ),
                    evidence: None,
                });
            } else if !trusted {
                out.notes.push(Note {
                    kind: "webroot_inventory_unverified".into(),
                    message: format!(
                        "host {host} stream {stream}: the inventory taken {} did not verify; it is not compared (pass --include-unverified to compare it, marked)",
                        format_utc(taken)
                    ),
                    evidence: None,
                });
            } else {
                complete.push((taken, parts));
            }
        }
        // The baseline: the last complete inventory taken at or before
        // `from`, else the first one.
        let start = complete.iter().rposition(|(t, _)| *t <= from).unwrap_or(0);
        let in_window: Vec<_> = complete
            .into_iter()
            .skip(start)
            .filter(|(t, _)| *t <= to)
            .collect();
        let Some(((first_taken, _), _)) = in_window.split_first() else {
            continue;
        };
        if *first_taken > from {
            out.notes.push(Note {
                kind: "webroot_baseline_in_window".into(),
                message: format!(
                    "host {host} stream {stream}: no complete inventory was taken before the window, so the first one in it ({}) is the baseline: files added before it are not shown as added",
                    format_utc(*first_taken)
                ),
                evidence: None,
            });
        }
        let mut previous: Option<Inventory> = None;
        for (taken, parts) in in_window {
            let current = match read_inventory(taken, &parts, segs, read_raw) {
                Ok(inv) => inv,
                Err(why) => {
                    out.notes.push(Note {
                        kind: "webroot_inventory_unreadable".into(),
                        message: format!(
                            "host {host} stream {stream}: the inventory taken {}: {why}",
                            format_utc(taken)
                        ),
                        evidence: None,
                    });
                    continue;
                }
            };
            if let Some(prev) = &previous {
                diff(prev, &current, segs, verified, c, &mut out);
            }
            previous = Some(current);
        }
    }
    out
}

/// Reads the parts of one inventory; a line that does not read as an
/// inventory entry is a note-worthy error (the inventory is then not used).
fn read_inventory(
    taken: OffsetDateTime,
    parts: &[usize],
    segs: &[SegmentSummary],
    read_raw: &dyn Fn(usize) -> Result<Vec<u8>, String>,
) -> Result<Inventory, String> {
    let mut inv = Inventory {
        taken,
        files: HashMap::new(),
        unlisted: Vec::new(),
    };
    for &i in parts {
        let raw = read_raw(i)?;
        let mut offset = 0u64;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            let here = offset;
            offset += line.len() as u64;
            if body.is_empty() {
                continue;
            }
            let entry: InventoryEntry = serde_json::from_slice(body).map_err(|e| {
                format!(
                    "segment {} offset {here}: not an inventory line ({e})",
                    segs[i].seq
                )
            })?;
            let path = entry.display_path();
            if entry.entry_type == EntryType::Directory {
                inv.unlisted.push(path.clone());
            }
            inv.files.insert(
                path,
                Seen {
                    entry_type: entry.entry_type,
                    size: entry.size,
                    mode: entry.mode,
                    sha256: entry.sha256.map(|h| h.to_hex()),
                    mtime: entry.mtime,
                    error: entry.error,
                    seg: i,
                    offset: here,
                    len: body.len() as u64,
                    line: body.to_vec(),
                },
            );
        }
    }
    Ok(inv)
}

/// What changed between two inventories of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Change {
    Added,
    Changed,
    Removed,
}

impl Change {
    fn name(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Changed => "changed",
            Change::Removed => "removed",
        }
    }
}

fn under_any(path: &str, dirs: &[String]) -> bool {
    dirs.iter().any(|d| {
        path == d
            || path
                .strip_prefix(d.as_str())
                .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('\\'))
    })
}

fn diff(
    prev: &Inventory,
    cur: &Inventory,
    segs: &[SegmentSummary],
    verified: &dyn Fn(usize) -> bool,
    c: &Compiled,
    out: &mut Compared,
) {
    let rule = &c.rules.webroot_change;
    let mut changes: Vec<(Change, &str, Option<&Seen>, Option<&Seen>)> = Vec::new();
    let paths: BTreeSet<&str> = prev
        .files
        .keys()
        .chain(cur.files.keys())
        .map(String::as_str)
        .collect();
    for path in paths {
        let (old, new) = (prev.files.get(path), cur.files.get(path));
        let change = match (old, new) {
            (None, Some(n)) if n.entry_type != EntryType::Directory => {
                // Unknown before, not new: its directory was not listed.
                if under_any(path, &prev.unlisted) {
                    continue;
                }
                Change::Added
            }
            (Some(o), None) if o.entry_type != EntryType::Directory => {
                if under_any(path, &cur.unlisted) {
                    continue;
                }
                Change::Removed
            }
            (Some(o), Some(n))
                if n.entry_type != EntryType::Directory
                    && (o.entry_type != n.entry_type
                        || o.size != n.size
                        || o.mode != n.mode
                        || (o.sha256.is_some() && n.sha256.is_some() && o.sha256 != n.sha256)) =>
            {
                Change::Changed
            }
            _ => continue,
        };
        if rule
            .ignore_prefixes
            .iter()
            .any(|p| !p.is_empty() && path.starts_with(p.as_str()))
        {
            continue;
        }
        changes.push((change, path, old, new));
    }
    for (change, path, old, new) in changes {
        let shown = new.or(old);
        let Some(shown) = shown else { continue };
        let seg = &segs[shown.seg];
        let script = is_script(path, &rule.script_extensions);
        let severity = match change {
            Change::Removed => &rule.severity_removed,
            _ if script => &rule.severity,
            _ => &rule.severity_other,
        };
        let describe = |s: &Seen| {
            let mut d = format!("{} bytes", s.size);
            if let Some(h) = &s.sha256 {
                d.push_str(&format!(", sha256 {h}"));
            }
            if let Some(m) = &s.mode {
                d.push_str(&format!(", mode {m}"));
            }
            d.push_str(&format!(
                ", mtime {} (as the file says)",
                format_utc(s.mtime)
            ));
            if let Some(e) = &s.error {
                d.push_str(&format!(", not hashed: {e}"));
            }
            d
        };
        let summary = match change {
            Change::Added => format!(
                "{}file added under a web root: {path} ({}); not in the inventory of {}, present in the one of {}",
                if script { "script " } else { "" },
                describe(shown),
                format_utc(prev.taken),
                format_utc(cur.taken)
            ),
            Change::Changed => format!(
                "{}file changed under a web root: {path}: was {}, now {} (inventories of {} and {})",
                if script { "script " } else { "" },
                old.map(describe).unwrap_or_default(),
                describe(shown),
                format_utc(prev.taken),
                format_utc(cur.taken)
            ),
            Change::Removed => format!(
                "file removed from a web root: {path} (was {}); in the inventory of {}, gone from the one of {}",
                describe(shown),
                format_utc(prev.taken),
                format_utc(cur.taken)
            ),
        };
        let cite = |s: &Seen| -> Evidence {
            let mut e = evidence_of(&segs[s.seg], s.offset, s.len, Some(&s.line));
            e.verified = verified(s.seg);
            e
        };
        let mut evidence = vec![cite(shown)];
        if change == Change::Changed {
            if let Some(o) = old {
                evidence.push(cite(o));
            }
        }
        let is_verified = evidence.iter().all(|e| e.verified);
        out.events.push(Event {
            time: cur.taken,
            seg: shown.seg as u32,
            offset: shown.offset,
            len: shown.len,
            line: evidence[0].line.clone(),
            line_sha256: evidence[0].line_sha256.clone(),
            kind: Kind::WebrootChange {
                change: change.name(),
                path: path.to_string(),
            },
            verified: is_verified,
            also: Vec::new(),
        });
        if rule.enabled {
            out.findings.push(Finding {
                rule: "webroot_change".into(),
                severity: severity.clone(),
                time: format_utc(cur.taken),
                time_local: local(cur.taken, c),
                last_time: format_utc(cur.taken),
                host: seg.host.clone(),
                ip: None,
                user: None,
                summary,
                verified: is_verified,
                evidence,
            });
        }
    }
}

fn is_script(path: &str, extensions: &[String]) -> bool {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => extensions
            .iter()
            .any(|x| x.trim_start_matches('.').eq_ignore_ascii_case(ext)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::{InventoryPart, SourceKind};
    use custody_evidence::inventory::InventoryEntry;
    use custody_evidence::Sha256;
    use time::macros::datetime;

    fn entry(path: &str, body: &[u8]) -> InventoryEntry {
        InventoryEntry {
            path: Some(path.into()),
            path_hex: None,
            entry_type: EntryType::File,
            size: body.len() as u64,
            mtime: datetime!(2026-12-01 00:00 UTC),
            mode: Some("100644".into()),
            sha256: Some(Sha256::digest(body)),
            target: None,
            error: None,
        }
    }

    fn inventory(
        seq: u64,
        taken: OffsetDateTime,
        entries: &[InventoryEntry],
    ) -> (SegmentSummary, Vec<u8>) {
        let raw: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
        let mut s = crate::input::sample_segment("web01", "web.webroot", seq, taken);
        s.source_kind = SourceKind::Inventory;
        s.inventory = Some(InventoryPart {
            taken,
            part: 0,
            last_part: true,
            roots: vec!["/var/www/html".into()],
        });
        s.raw_sha256 = Sha256::digest(&raw);
        (s, raw)
    }

    fn run(
        inventories: &[(SegmentSummary, Vec<u8>)],
        from: OffsetDateTime,
        bad: Option<usize>,
    ) -> Compared {
        let rules = crate::findings::rules::load(None).unwrap();
        let segs: Vec<SegmentSummary> = inventories.iter().map(|(s, _)| s.clone()).collect();
        compare(
            &segs,
            &|i| Some(i) != bad,
            &|i| Ok(inventories[i].1.clone()),
            from,
            datetime!(2026-12-31 00:00 UTC),
            false,
            &rules,
        )
    }

    #[test]
    fn additions_changes_and_removals_between_inventories_cite_their_lines() {
        let t0 = datetime!(2026-12-02 17:00 UTC);
        let t1 = datetime!(2026-12-02 18:00 UTC);
        let t2 = datetime!(2026-12-02 19:00 UTC);
        let index = entry("/var/www/html/index.html", b"<h1>hi</h1>");
        let about = entry("/var/www/html/about.html", b"about");
        let shell = entry(
            "/var/www/html/uploads/s.php",
            b"<?php system($_GET['c']); ?>",
        );
        let changed = entry("/var/www/html/index.html", b"<h1>owned</h1>");
        let invs = [
            inventory(0, t0, &[about.clone(), index.clone()]),
            inventory(1, t1, &[about.clone(), index, shell.clone()]),
            inventory(2, t2, &[changed, shell]),
        ];
        let got = run(&invs, datetime!(2026-12-02 17:30 UTC), None);
        let summaries: Vec<(&str, &str)> = got
            .findings
            .iter()
            .map(|f| (f.severity.as_str(), f.summary.split(':').next().unwrap()))
            .collect();
        assert_eq!(
            summaries,
            [
                ("high", "script file added under a web root"),
                ("low", "file removed from a web root"),
                ("medium", "file changed under a web root"),
            ]
        );
        let added = &got.findings[0];
        assert!(added.summary.contains("/var/www/html/uploads/s.php"));
        assert_eq!(added.time, "2026-12-02T18:00:00.000000Z");
        let ev = &added.evidence[0];
        assert_eq!(ev.seq, 1);
        let raw = &invs[1].1;
        let line = &raw[ev.offset as usize..(ev.offset + ev.len) as usize];
        assert_eq!(Sha256::digest(line).to_hex(), ev.line_sha256);
        assert!(ev.line.contains("uploads/s.php"));
        // A change cites the new line and the old one.
        assert_eq!(got.findings[2].evidence.len(), 2);
        assert_eq!(got.findings[2].evidence[1].seq, 1);
        assert!(
            got.notes.is_empty(),
            "{:?}",
            got.notes.iter().map(|n| &n.message).collect::<Vec<_>>()
        );
        assert_eq!(got.events.len(), 3);
    }

    #[test]
    fn without_an_earlier_inventory_the_first_is_the_baseline_and_a_note_says_so() {
        let t1 = datetime!(2026-12-02 18:00 UTC);
        let invs = [inventory(0, t1, &[entry("/var/www/html/s.php", b"x")])];
        let got = run(&invs, datetime!(2026-12-02 17:30 UTC), None);
        assert!(got.findings.is_empty());
        assert_eq!(got.notes[0].kind, "webroot_baseline_in_window");
    }

    #[test]
    fn an_unverified_inventory_is_not_compared_and_an_unlisted_directory_hides_nothing() {
        let t0 = datetime!(2026-12-02 17:00 UTC);
        let t1 = datetime!(2026-12-02 18:00 UTC);
        let t2 = datetime!(2026-12-02 19:00 UTC);
        let a = entry("/var/www/html/up/a.php", b"a");
        let mut unlisted = entry("/var/www/html/up", b"");
        unlisted.entry_type = EntryType::Directory;
        unlisted.error = Some("Permission denied".into());
        let invs = [
            inventory(0, t0, std::slice::from_ref(&a)),
            inventory(1, t1, &[unlisted]),
            inventory(2, t2, &[a, entry("/var/www/html/new.php", b"n")]),
        ];
        // The middle one unreadable as evidence: 0 is compared with 2.
        let got = run(&invs, datetime!(2026-12-02 16:00 UTC), Some(1));
        assert_eq!(got.findings.len(), 1, "{:?}", got.findings);
        assert!(got.findings[0].summary.contains("/var/www/html/new.php"));
        assert!(got
            .notes
            .iter()
            .any(|n| n.kind == "webroot_inventory_unverified"));
        // With it: up/a.php is neither removed (t1) nor added (t2).
        let got = run(&invs, datetime!(2026-12-02 16:00 UTC), None);
        let paths: Vec<&str> = got.findings.iter().map(|f| f.summary.as_str()).collect();
        assert_eq!(got.findings.len(), 1, "{paths:?}");
    }
}
