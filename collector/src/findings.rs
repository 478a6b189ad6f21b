//! The findings log: every verification finding on receipt is appended to
//! `STATE/findings.jsonl` as one JSON object per line (the fields of
//! `custody-verify --json`'s findings, plus `time`), logged at warn or
//! error, and counted in the metrics. The data that caused it is still
//! stored: evidence of tampering is evidence too.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::verify::{Finding, Severity};

use crate::metrics::Metrics;

pub const FINDINGS_FILE: &str = "findings.jsonl";

pub struct FindingsLog {
    path: PathBuf,
    file: Mutex<File>,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    finding: &'a Finding,
}

impl FindingsLog {
    pub fn open(state_dir: &Path) -> anyhow::Result<FindingsLog> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating the state directory {}", state_dir.display()))?;
        let path = state_dir.join(FINDINGS_FILE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {} for appending", path.display()))?;
        Ok(FindingsLog {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records one finding: the log line, the metric, and the file (synced,
    /// so a finding is not lost with a crash right after the acknowledgement).
    pub fn record(&self, finding: &Finding, metrics: &Metrics) {
        let kind = finding.kind.name();
        metrics.finding(&kind);
        match finding.severity {
            Severity::Error => tracing::error!(%kind, "finding on receipt: {finding}"),
            _ => tracing::warn!(%kind, "finding on receipt: {finding}"),
        }
        let line = Line {
            time: format_utc(now_utc_micros()),
            finding,
        };
        let mut text = match serde_json::to_vec(&line) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("cannot encode finding {finding}: {e}");
                return;
            }
        };
        text.push(b'\n');
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = f.write_all(&text).and_then(|()| f.sync_data()) {
            tracing::error!(
                "cannot append to {}: {e}; the finding was only logged: {finding}",
                self.path.display()
            );
        }
    }
}
