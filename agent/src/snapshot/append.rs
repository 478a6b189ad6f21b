//! `custody-agent custody-event`: appends one signed event (exported,
//! verified, received, …) to a bundle's custody log, as a responder hands
//! the evidence on (Taipei §32: who did what, when, signed off).
//!
//! Only the last tar member, `custody.jsonl`, is rewritten; the signed bag
//! before it is never touched. The bundle is verified first: an event is
//! not appended to evidence that does not verify. The old tail is saved
//! beside the file until the new one is durable, so an interruption loses
//! no event.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use custody_evidence::bundle::custody_log::{split_lines, Action, CustodyEvent, EventLine};
use custody_evidence::bundle::tar_read::{for_each_entry, EntryInfo};
use custody_evidence::bundle::verify::verify_bundle;
use custody_evidence::bundle::writer::custody_log_tail;
use custody_evidence::bundle::CUSTODY_LOG;
use custody_evidence::sign::HostKey;
use custody_evidence::timefmt::now_utc_micros;
use custody_evidence::verify::Severity;

/// Who appends what.
pub struct Append<'a> {
    pub action: Action,
    pub actor: &'a str,
    pub place: &'a str,
    pub purpose: &'a str,
    pub key: &'a HostKey,
}

fn backup_path(bundle: &Path) -> PathBuf {
    let mut name = bundle.as_os_str().to_owned();
    name.push(".custody-tail.bak");
    PathBuf::from(name)
}

/// Appends the event and returns it.
pub fn append_event(bundle: &Path, what: &Append<'_>) -> anyhow::Result<EventLine> {
    let name = bundle.display().to_string();
    let backup = backup_path(bundle);
    if backup.exists() {
        bail!(
            "{} exists: an earlier append to {name} was interrupted. Compare the two, restore the tail if the \
             bundle no longer verifies (`dd if={} of={name} bs=512 seek=<offset> conv=notrunc`), then remove it",
            backup.display(),
            backup.display()
        );
    }
    let open = || {
        File::open(bundle).with_context(|| format!("bundle {name}: cannot open it; check the path"))
    };
    let report = verify_bundle(
        BufReader::with_capacity(1 << 20, open()?),
        &Default::default(),
    )
    .with_context(|| format!("reading {name}"))?;
    if !report.is_clean() {
        let first: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .take(3)
            .map(|f| f.to_string())
            .collect();
        bail!(
            "{name} does not verify ({}); no custody event is appended to evidence that does not verify. \
             Run `custody-verify bundle {name}` for the full report",
            first.join("; ")
        );
    }
    // Find the last member and read the custody log.
    let mut last: Option<(EntryInfo, Vec<u8>)> = None;
    let outcome = for_each_entry(BufReader::with_capacity(1 << 20, open()?), |info, data| {
        let mut bytes = Vec::new();
        if String::from_utf8_lossy(&info.path).ends_with(&format!("/{CUSTODY_LOG}")) {
            data.read_to_end(&mut bytes)?;
        }
        last = Some((info.clone(), bytes));
        Ok(())
    })
    .with_context(|| format!("reading {name}"))?;
    if outcome.is_err() {
        bail!("{name}: the tar does not end properly; run custody-verify bundle");
    }
    let Some((info, log)) = last else {
        bail!("{name} is empty");
    };
    let path = String::from_utf8_lossy(&info.path).into_owned();
    let Some(evidence_id) = path.strip_suffix(&format!("/{CUSTODY_LOG}")) else {
        bail!(
            "{name}: the last member is {path:?}, not {CUSTODY_LOG}; custody events can only be appended to a \
             bundle whose custody log is its last member (as custody-agent writes it)"
        );
    };
    let lines = split_lines(&log);
    let prev_line = lines.last().context("the custody log is empty")?;
    let prev = EventLine::decode(prev_line).context("the last custody event does not decode")?;
    let event = CustodyEvent::next(
        &prev.event,
        prev_line,
        what.action,
        now_utc_micros(),
        what.actor,
        what.place,
        what.purpose,
        &what.key.public_key_line(""),
    );
    let line = EventLine::sign(event, what.key)?;
    let mut new_log = log.clone();
    new_log.extend_from_slice(&line.encode());
    let tail = custody_log_tail(evidence_id, info.mtime, &new_log)?;

    // Save the old tail, then overwrite in place, then drop the backup.
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(bundle)
        .with_context(|| format!("{name}: cannot open it for writing"))?;
    let mut old_tail = Vec::new();
    file.seek(SeekFrom::Start(info.header_offset))?;
    file.read_to_end(&mut old_tail)?;
    let mut b = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&backup)
        .with_context(|| format!("cannot create {}", backup.display()))?;
    b.write_all(&old_tail)?;
    b.sync_all()?;
    file.seek(SeekFrom::Start(info.header_offset))?;
    file.write_all(&tail)?;
    file.set_len(info.header_offset + tail.len() as u64)?;
    file.sync_all().with_context(|| format!("fsync {name}"))?;
    fs::remove_file(&backup).with_context(|| format!("removing {}", backup.display()))?;
    Ok(line)
}
