//! Realistic log lines with unique ids, and the accounting that proves
//! every written line arrived exactly once.
//!
//! Each written line is a line of `shared/testdata/linux/*.log` followed by
//! ` #cust=<tag>:<n>#`. The closing `#` means a line cut short (a partial
//! line, a truncated segment) never yields a valid-looking id.

use std::collections::{BTreeMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What precedes a line's id.
pub const ID_MARKER: &str = " #cust=";

/// The directory of realistic log content, next to the repository.
pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata/linux")
}

/// All non-empty lines of `shared/testdata/linux/*.log`, without line ends.
/// Panics naming the directory if it is missing or holds no lines: tests
/// must not silently fall back to synthetic content.
pub fn testdata_lines() -> &'static [String] {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(|| {
        let dir = testdata_dir();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "test data directory {} is missing ({e}); the repo must be cloned next to shared/",
                dir.display()
            )
        });
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        paths.sort();
        let mut lines = Vec::new();
        for p in &paths {
            let bytes =
                std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let text = String::from_utf8_lossy(&bytes);
            lines.extend(
                text.lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.is_empty() && !l.contains(ID_MARKER.trim_start()))
                    .map(str::to_string),
            );
        }
        assert!(!lines.is_empty(), "no log lines in {}/*.log", dir.display());
        lines
    })
}

/// Appends tagged lines to one path, the way a logging application does:
/// each append opens the path anew (`O_APPEND | O_CREAT`), so after a
/// rename-and-create rotation the next lines go to the new file.
#[derive(Debug)]
pub struct LineWriter {
    path: PathBuf,
    tag: String,
    next: u64,
    ids: Vec<String>,
}

impl LineWriter {
    /// `tag` makes the ids of this writer unique; use letters and digits.
    pub fn new(path: impl Into<PathBuf>, tag: &str) -> Self {
        Self {
            path: path.into(),
            tag: tag.to_string(),
            next: 0,
            ids: Vec::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes to another path from now on (ids keep counting).
    pub fn set_path(&mut self, path: impl Into<PathBuf>) {
        self.path = path.into();
    }

    /// Builds the next `n` lines (taking content from `pool` in turn) and
    /// records their ids, without writing them.
    pub fn render(&mut self, pool: &[String], n: usize) -> Vec<u8> {
        assert!(!pool.is_empty(), "empty line pool");
        let mut buf = Vec::new();
        for _ in 0..n {
            let (line, id) = render_line(pool, &self.tag, self.next);
            self.next += 1;
            buf.extend_from_slice(&line);
            self.ids.push(id);
        }
        buf
    }

    /// Appends `n` lines in one `write` and returns how many bytes.
    pub fn append(&mut self, pool: &[String], n: usize) -> usize {
        let buf = self.render(pool, n);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .unwrap_or_else(|e| panic!("cannot open {} for appending: {e}", self.path.display()));
        f.write_all(&buf)
            .unwrap_or_else(|e| panic!("cannot append to {}: {e}", self.path.display()));
        buf.len()
    }

    /// Appends `n` lines to an already open file (for a file the writer
    /// keeps open, e.g. across its deletion).
    pub fn append_to(&mut self, file: &mut std::fs::File, pool: &[String], n: usize) -> usize {
        let buf = self.render(pool, n);
        file.write_all(&buf)
            .unwrap_or_else(|e| panic!("cannot append to open {}: {e}", self.path.display()));
        buf.len()
    }

    /// Every id written so far, in order.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Forgets ids that were rendered but will never be stored (for a test
    /// that deliberately writes lines the agent must not ingest).
    pub fn take_ids(&mut self) -> Vec<String> {
        std::mem::take(&mut self.ids)
    }
}

/// Line number `n` of the writer tagged `tag`, with its line end, and its
/// id (`<tag>:<n, 9 digits>`): the content is `pool[n % pool.len()]`, so the
/// exact bytes of any written line can be rebuilt from its id alone (the
/// fault campaign's byte-exact check, see [`parse_id`]).
pub fn render_line(pool: &[String], tag: &str, n: u64) -> (Vec<u8>, String) {
    assert!(!pool.is_empty(), "empty line pool");
    let id = format!("{tag}:{n:09}");
    let content = &pool[(n % pool.len() as u64) as usize];
    let mut line = Vec::with_capacity(content.len() + ID_MARKER.len() + id.len() + 2);
    line.extend_from_slice(content.as_bytes());
    line.extend_from_slice(ID_MARKER.as_bytes());
    line.extend_from_slice(id.as_bytes());
    line.extend_from_slice(b"#\n");
    (line, id)
}

/// `<tag>:<n>` back into its tag and number; `None` for anything else.
pub fn parse_id(id: &str) -> Option<(&str, u64)> {
    let (tag, n) = id.rsplit_once(':')?;
    if tag.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((tag, n.parse().ok()?))
}

/// The ids of every tagged line in `bytes` whose id is complete (followed
/// by the closing `#`), in order, duplicates included.
pub fn extract_ids(bytes: &[u8]) -> Vec<String> {
    let marker = ID_MARKER.as_bytes();
    let mut out = Vec::new();
    for line in bytes.split(|&b| b == b'\n') {
        let Some(pos) = line.windows(marker.len()).rposition(|w| w == marker) else {
            continue;
        };
        let rest = &line[pos + marker.len()..];
        let Some(close) = rest.iter().position(|&b| b == b'#') else {
            continue;
        };
        if close > 0 && close + 1 == rest.len() {
            out.push(String::from_utf8_lossy(&rest[..close]).into_owned());
        }
    }
    out
}

/// The line accounting: every id in `written` occurs exactly once in
/// `found`, and `found` holds nothing else. Panics with totals and the
/// first offenders of each kind (lost, duplicated, unexpected).
pub fn assert_exactly_once<S: AsRef<str>>(written: &[S], found: &[String]) {
    let mut expected: HashSet<&str> = HashSet::with_capacity(written.len());
    for id in written {
        assert!(
            expected.insert(id.as_ref()),
            "test bug: id {} written twice",
            id.as_ref()
        );
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in found {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let lost: Vec<&str> = written
        .iter()
        .map(|s| s.as_ref())
        .filter(|id| !counts.contains_key(id))
        .collect();
    let duplicated: Vec<String> = counts
        .iter()
        .filter(|(_, &n)| n > 1)
        .map(|(id, n)| format!("{id} x{n}"))
        .collect();
    let unexpected: Vec<&str> = counts
        .keys()
        .copied()
        .filter(|id| !expected.contains(id))
        .collect();
    if lost.is_empty() && duplicated.is_empty() && unexpected.is_empty() {
        return;
    }
    let first = |v: &[String]| v.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
    let first_str = |v: &[&str]| v.iter().take(10).copied().collect::<Vec<_>>().join(", ");
    panic!(
        "line accounting failed: {} written, {} found; {} lost [{}]; {} duplicated [{}]; {} unexpected [{}]",
        written.len(),
        found.len(),
        lost.len(),
        first_str(&lost),
        duplicated.len(),
        first(&duplicated),
        unexpected.len(),
        first_str(&unexpected)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_the_closing_mark() {
        let text = b"a #cust=t:1#\nb #cust=t:2\nc #cust=t:3#\nd #cust=t:4";
        assert_eq!(extract_ids(text), vec!["t:1", "t:3"]);
    }

    #[test]
    fn accounting_accepts_exact_and_refuses_loss_and_duplicates() {
        let written = vec!["t:1".to_string(), "t:2".to_string()];
        assert_exactly_once(&written, &["t:2".to_string(), "t:1".to_string()]);
        let lost = std::panic::catch_unwind(|| assert_exactly_once(&written, &["t:1".to_string()]));
        assert!(lost.is_err());
        let dup = std::panic::catch_unwind(|| {
            assert_exactly_once(
                &written,
                &["t:1".to_string(), "t:2".to_string(), "t:2".to_string()],
            )
        });
        assert!(dup.is_err());
    }

    #[test]
    fn writer_renders_unique_tagged_lines() {
        let pool = vec!["x".to_string(), "y".to_string()];
        let mut w = LineWriter::new("/nonexistent", "w");
        let buf = w.render(&pool, 3);
        assert_eq!(
            buf,
            b"x #cust=w:000000000#\ny #cust=w:000000001#\nx #cust=w:000000002#\n"
        );
        assert_eq!(extract_ids(&buf), w.ids());
        let (line, id) = render_line(&pool, "w", 2);
        assert_eq!((line.as_slice(), id.as_str()), (&buf[42..], "w:000000002"));
        assert_eq!(parse_id("w:000000002"), Some(("w", 2)));
        assert_eq!(parse_id("w:"), None);
        assert_eq!(parse_id("nocolon"), None);
    }
}
