//! The agent's self-report: the running agent rewrites `status.json` in its
//! state directory (atomically) about once a second and on every change of
//! error or back-pressure; `custody-agent status` reads and prints it.
//!
//! CONTRACT: the struct is fixed (the pipeline fills it); printing is the
//! CLI implementer's.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use custody_evidence::timefmt;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub const STATUS_FORMAT_V1: &str = "custody.agent-status.v1";
pub const STATUS_FILE: &str = "status.json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentStatus {
    pub format: String,
    pub host_id: String,
    pub pid: u32,
    pub agent_instance: String,
    /// RFC 3339 UTC.
    pub updated: String,
    /// False once the agent has shut down cleanly.
    pub running: bool,
    pub store: String,
    pub spool: SpoolStatus,
    pub last_ship: Option<String>,
    pub last_ship_error: Option<String>,
    pub last_digest_seq: Option<u64>,
    pub last_digest_at: Option<String>,
    pub sources: Vec<SourceStatus>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SpoolStatus {
    pub bytes: u64,
    pub max_bytes: u64,
    pub segments: u64,
    /// Reading is paused because the spool is full (or its disk is).
    pub backpressure: bool,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceStatus {
    pub name: String,
    pub category: String,
    pub stream_id: String,
    pub patterns: Vec<String>,
    pub files: Vec<FileStatus>,
    pub last_segment_seq: Option<u64>,
    pub last_segment_at: Option<String>,
    /// Current problems: unreadable file, glob matching nothing, …
    pub errors: Vec<String>,
    /// Files that exist but cannot be opened now (permission denied, an
    /// ACL, a rotation that created the file before setting its mode). Each
    /// keeps its saved position and is retried with back-off; it is also
    /// one of `errors`. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableFile>,
    /// Paths the globs match that are not regular files (a FIFO, a
    /// directory, a device, a socket): never read. Not an error (a wide
    /// glob such as `/var/log/*` matches directories), but shown so that
    /// nothing is skipped without a word. Absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedPath>,
    /// Journal sources only (FORMAT.md §16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalStatus>,
    /// Windows Event Log sources only (FORMAT.md §17).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eventlog: Option<EventLogStatus>,
}

/// Where an event log channel stands (FORMAT.md §17.4).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLogStatus {
    pub channel: String,
    /// `reading`, or `waiting: <why>` while the channel is retried.
    pub state: String,
    /// `EventRecordID` of the last event in a durable segment.
    pub committed_record_id: Option<u64>,
    /// `EventRecordID` of the last event read (maybe not durable yet).
    pub last_read_record_id: Option<u64>,
    /// The last failure of this channel, if it is failing now.
    pub last_error: Option<String>,
}

/// Where a journal source stands, for operators and auditors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalStatus {
    /// What is read (`system`, `directory:…`, `files:…`).
    pub journal: String,
    /// `__CURSOR` of the last entry wholly in a durable segment.
    pub committed_cursor: Option<String>,
    /// How many times journalctl was started again after it ended.
    pub restarts: u64,
    /// Cursors that could no longer be found in the journal (vacuumed or
    /// rotated away) since the agent started: reading began again at the
    /// oldest entry each time, and the next segment records it.
    pub lost_cursors: Vec<LostCursor>,
}

/// One cursor the journal no longer had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostCursor {
    pub cursor: String,
    /// When it was found missing (RFC 3339 UTC).
    pub at: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    pub device: u64,
    pub inode: u64,
    /// Bytes committed (in a spooled segment).
    pub offset: u64,
    pub size: u64,
    /// `size - offset`: bytes not yet in a segment.
    pub behind: u64,
}

/// A file that exists but cannot be opened (see [`SourceStatus::unreadable`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadableFile {
    pub path: String,
    pub device: u64,
    pub inode: u64,
    /// Why it cannot be opened, and what to do.
    pub error: String,
    /// When it was first found unreadable (RFC 3339 UTC).
    pub since: String,
    /// The position the checkpoint holds for it, kept until it can be
    /// read again (absent: a file never read, read from its start once
    /// it can be opened).
    pub saved_offset: Option<u64>,
    /// Failed attempts to open it so far.
    pub attempts: u64,
}

/// A path matched by a glob that is not a regular file (see
/// [`SourceStatus::skipped`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedPath {
    pub path: String,
    /// What it is: `a FIFO (named pipe)`, `a directory`, `a character device`, …
    pub kind: String,
}

/// A status file as read: the parsed value, and the text exactly as the
/// agent wrote it (for `status --json`, which must not re-encode).
#[derive(Debug, Clone)]
pub struct StatusFile {
    pub raw: String,
    pub status: AgentStatus,
}

/// Why a status file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not an agent status file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} has format {found:?}, this build reads {STATUS_FORMAT_V1:?}")]
    UnknownFormat { path: PathBuf, found: String },
}

/// Reads `STATE/status.json`; `Ok(None)` if there is none (the agent never
/// ran with this state directory).
pub fn read_status(state_dir: &Path) -> Result<Option<StatusFile>, StatusError> {
    let path = state_dir.join(STATUS_FILE);
    let raw = match std::fs::read_to_string(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StatusError::Read { path, source }),
    };
    let status: AgentStatus = serde_json::from_str(&raw).map_err(|source| StatusError::Parse {
        path: path.clone(),
        source,
    })?;
    if status.format != STATUS_FORMAT_V1 {
        return Err(StatusError::UnknownFormat {
            path,
            found: status.format,
        });
    }
    Ok(Some(StatusFile { raw, status }))
}

/// A running agent rewrites its status about once a second; one that has
/// not for this long is not doing its work even if its process exists.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// Whether the agent that wrote a status file is running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Process alive and the file fresh.
    Running { age: Option<Duration> },
    /// The agent said it shut down cleanly.
    Stopped,
    /// The file says running, but the process is gone (a crash, a kill -9).
    Dead,
    /// The process exists but has not updated the file for [`STALE_AFTER`]
    /// (hung, or the pid was reused by another program).
    Stale { age: Duration },
}

/// Judges liveness from the file, whether its pid is alive, and the time.
pub fn liveness(status: &AgentStatus, pid_alive: bool, now: OffsetDateTime) -> Liveness {
    let age = timefmt::parse_utc(&status.updated)
        .ok()
        .map(|updated| Duration::try_from(now - updated).unwrap_or(Duration::ZERO));
    if !status.running {
        return Liveness::Stopped;
    }
    if !pid_alive {
        return Liveness::Dead;
    }
    match age {
        Some(age) if age > STALE_AFTER => Liveness::Stale { age },
        // An unparseable `updated` cannot show staleness; the pid check stands.
        _ => Liveness::Running { age },
    }
}

/// Every error the agent reports, each prefixed with where it is.
pub fn problems(status: &AgentStatus) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = &status.last_ship_error {
        out.push(format!("ship: {e}"));
    }
    if let Some(e) = &status.spool.error {
        out.push(format!("spool: {e}"));
    }
    for source in &status.sources {
        for e in &source.errors {
            out.push(format!("source {}: {e}", source.name));
        }
        for lost in source.journal.iter().flat_map(|j| &j.lost_cursors) {
            out.push(format!(
                "source {}: journal cursor {} was no longer in the journal at {}; reading began again at the oldest entry",
                source.name, lost.cursor, lost.at
            ));
        }
    }
    out
}

/// One line for systemd's `STATUS=` (shown by `systemctl status`): the
/// first problem if there is one, else what the agent follows and how far
/// shipping has got. `custody-agent status` has the whole picture.
pub fn summary_line(status: &AgentStatus) -> String {
    let files: usize = status.sources.iter().map(|s| s.files.len()).sum();
    let spool = format!(
        "{} segments ({}) waiting in the spool",
        status.spool.segments,
        human_bytes(status.spool.bytes)
    );
    let problems = problems(status);
    if status.spool.backpressure {
        return format!("reading paused: spool full or unwritable ({spool}); nothing is dropped");
    }
    if let Some(first) = problems.first() {
        let more = match problems.len() {
            1 => String::new(),
            n => format!(" (and {} more: custody-agent status)", n - 1),
        };
        return format!("{first}{more}; {spool}");
    }
    let shipped = match &status.last_ship {
        Some(t) => format!("last shipped {t}"),
        None => "nothing shipped yet".to_string(),
    };
    format!(
        "{} sources, {files} files followed; {spool}; {shipped}",
        status.sources.len()
    )
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_age(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..=119 => format!("{:.1} s ago", age.as_secs_f64()),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

/// The human form of `custody-agent status`.
pub fn render(status: &AgentStatus, liveness: &Liveness) -> String {
    let mut out = String::new();
    let agent = match liveness {
        Liveness::Running { age } => {
            let ago = age
                .map(|a| format!(", {}", human_age(a)))
                .unwrap_or_default();
            format!(
                "running (pid {}, updated {}{ago})",
                status.pid, status.updated
            )
        }
        Liveness::Stopped => format!(
            "not running (shut down cleanly), last update {}",
            status.updated
        ),
        Liveness::Dead => {
            format!(
                "not running (pid {} is gone without a clean shutdown), last update {}",
                status.pid, status.updated
            )
        }
        Liveness::Stale { age } => format!(
            "not responding: pid {} exists but the status was last updated {} ({})",
            status.pid,
            status.updated,
            human_age(*age)
        ),
    };
    let none = || "never".to_string();
    let _ = writeln!(out, "agent: {agent}");
    let _ = writeln!(
        out,
        "host: {}  instance: {}",
        status.host_id, status.agent_instance
    );
    let _ = writeln!(out, "store: {}", status.store);
    let _ = writeln!(
        out,
        "spool: {} of {} in {} segment(s), back-pressure: {}",
        human_bytes(status.spool.bytes),
        human_bytes(status.spool.max_bytes),
        status.spool.segments,
        if status.spool.backpressure {
            "YES (reading paused)"
        } else {
            "no"
        }
    );
    if let Some(e) = &status.spool.error {
        let _ = writeln!(out, "spool error: {e}");
    }
    let _ = writeln!(
        out,
        "last ship: {}",
        status.last_ship.clone().unwrap_or_else(none)
    );
    let _ = writeln!(
        out,
        "last ship error: {}",
        status.last_ship_error.as_deref().unwrap_or("none")
    );
    let digest = match (&status.last_digest_seq, &status.last_digest_at) {
        (Some(seq), Some(at)) => format!("#{seq} at {at}"),
        (Some(seq), None) => format!("#{seq}"),
        (None, Some(at)) => at.clone(),
        (None, None) => none(),
    };
    let _ = writeln!(out, "last digest: {digest}");
    let _ = writeln!(out, "sources: {}", status.sources.len());
    for source in &status.sources {
        let last = match (&source.last_segment_seq, &source.last_segment_at) {
            (Some(seq), Some(at)) => format!("#{seq} at {at}"),
            (Some(seq), None) => format!("#{seq}"),
            _ => none(),
        };
        let _ = writeln!(
            out,
            "  {}  category {}  stream {}  last segment {last}",
            source.name, source.category, source.stream_id
        );
        if source.errors.is_empty() {
            let _ = writeln!(out, "    errors: none");
        }
        for e in &source.errors {
            let _ = writeln!(out, "    error: {e}");
        }
        if let Some(j) = &source.journal {
            let _ = writeln!(
                out,
                "    journal {}  cursor {}  journalctl restarts {}",
                j.journal,
                j.committed_cursor.as_deref().unwrap_or("(none yet)"),
                j.restarts
            );
            for lost in &j.lost_cursors {
                let _ = writeln!(out, "    lost cursor {} at {}", lost.cursor, lost.at);
            }
        } else if let Some(e) = &source.eventlog {
            let id = |v: Option<u64>| v.map_or_else(|| "(none yet)".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "    eventlog channel {}  {}  committed record {}  last read {}",
                e.channel,
                e.state,
                id(e.committed_record_id),
                id(e.last_read_record_id)
            );
            if let Some(err) = &e.last_error {
                let _ = writeln!(out, "    last error: {err}");
            }
        } else if source.files.is_empty() {
            let _ = writeln!(out, "    no file matches {}", source.patterns.join(", "));
        }
        for f in &source.files {
            let _ = writeln!(
                out,
                "    {}  offset {} of {}  behind {}",
                f.path, f.offset, f.size, f.behind
            );
        }
        for u in &source.unreadable {
            let saved = u.saved_offset.map_or_else(
                || "never read".to_string(),
                |o| format!("saved offset {o} kept"),
            );
            let _ = writeln!(
                out,
                "    unreadable: {}  since {}  {saved}  {} attempt(s), retried with back-off",
                u.path, u.since, u.attempts
            );
        }
        for k in &source.skipped {
            let _ = writeln!(
                out,
                "    skipped: {} is {}, not a regular file; not read",
                k.path, k.kind
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn summary_line_says_the_first_problem_or_the_progress() {
        let mut st = sample();
        let ok = summary_line(&st);
        assert!(ok.starts_with("1 sources, 1 files followed; 2 segments (3.0 MiB) waiting in the spool; last shipped 2026-11-22T01:59:59.000000Z"), "{ok}");
        st.last_ship_error = Some("store unreachable".into());
        st.sources[0]
            .errors
            .push("cannot open /var/log/syslog".into());
        let bad = summary_line(&st);
        assert!(
            bad.starts_with(
                "ship: store unreachable (and 1 more: custody-agent status); 2 segments"
            ),
            "{bad}"
        );
        st.spool.backpressure = true;
        assert!(
            summary_line(&st).starts_with("reading paused"),
            "{}",
            summary_line(&st)
        );
    }

    fn sample() -> AgentStatus {
        AgentStatus {
            format: STATUS_FORMAT_V1.to_string(),
            host_id: "web01".into(),
            pid: 4242,
            agent_instance: "0f0e0d0c-0b0a-4908-8706-050403020100".into(),
            updated: "2026-11-22T02:00:00.000000Z".into(),
            running: true,
            store: "/srv/custody".into(),
            spool: SpoolStatus {
                bytes: 3 * 1024 * 1024,
                max_bytes: 1 << 30,
                segments: 2,
                backpressure: false,
                error: None,
            },
            last_ship: Some("2026-11-22T01:59:59.000000Z".into()),
            last_ship_error: None,
            last_digest_seq: Some(7),
            last_digest_at: Some("2026-11-22T01:59:00.000000Z".into()),
            sources: vec![SourceStatus {
                name: "os-syslog".into(),
                category: "os".into(),
                stream_id: "os-syslog".into(),
                patterns: vec!["/var/log/syslog*".into()],
                files: vec![FileStatus {
                    path: "/var/log/syslog".into(),
                    device: 1,
                    inode: 2,
                    offset: 100,
                    size: 150,
                    behind: 50,
                }],
                last_segment_seq: Some(3),
                last_segment_at: None,
                errors: vec![],
                unreadable: vec![],
                skipped: vec![],
                journal: None,
                eventlog: None,
            }],
        }
    }

    #[test]
    fn liveness_from_flag_pid_and_age() {
        let s = sample();
        let soon = datetime!(2026-11-22 02:00:01 UTC);
        assert_eq!(
            liveness(&s, true, soon),
            Liveness::Running {
                age: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(liveness(&s, false, soon), Liveness::Dead);
        let late = datetime!(2026-11-22 02:05:00 UTC);
        assert_eq!(
            liveness(&s, true, late),
            Liveness::Stale {
                age: Duration::from_secs(300)
            }
        );
        let stopped = AgentStatus {
            running: false,
            ..sample()
        };
        assert_eq!(liveness(&stopped, true, soon), Liveness::Stopped);
    }

    #[test]
    fn render_shows_files_and_errors() {
        let mut s = sample();
        let text = render(
            &s,
            &Liveness::Running {
                age: Some(Duration::from_secs(1)),
            },
        );
        assert!(text.contains("agent: running (pid 4242"), "{text}");
        assert!(
            text.contains("spool: 3.0 MiB of 1.0 GiB in 2 segment(s), back-pressure: no"),
            "{text}"
        );
        assert!(
            text.contains("last digest: #7 at 2026-11-22T01:59:00.000000Z"),
            "{text}"
        );
        assert!(
            text.contains("/var/log/syslog  offset 100 of 150  behind 50"),
            "{text}"
        );
        assert!(problems(&s).is_empty());

        s.sources[0]
            .errors
            .push("permission denied: /var/log/syslog".into());
        s.last_ship_error = Some("store unavailable".into());
        let text = render(&s, &Liveness::Dead);
        assert!(text.contains("not running (pid 4242 is gone"), "{text}");
        assert!(text.contains("error: permission denied"), "{text}");
        assert_eq!(problems(&s).len(), 2);
    }

    #[test]
    fn read_status_keeps_raw_text_and_refuses_unknown_format() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_status(dir.path()).unwrap().is_none());
        let raw = serde_json::to_string_pretty(&sample()).unwrap();
        std::fs::write(dir.path().join(STATUS_FILE), &raw).unwrap();
        let file = read_status(dir.path()).unwrap().unwrap();
        assert_eq!(file.raw, raw);
        assert_eq!(file.status.pid, 4242);

        let other = AgentStatus {
            format: "custody.agent-status.v9".into(),
            ..sample()
        };
        std::fs::write(
            dir.path().join(STATUS_FILE),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            read_status(dir.path()),
            Err(StatusError::UnknownFormat { .. })
        ));
    }
}
