//! `--incident ID`: a report scoped to an incident the collector opened
//! (FORMAT.md §15.1): its hosts, and a window from some time before it was
//! opened. Read from the collector's state directory
//! (`STATE/incidents/<id>/incident.json`, written once by `custody-collector
//! incident open`), as JSON: the report does not link the collector.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use time::OffsetDateTime;

/// The only incident record format this build reads.
pub const INCIDENT_FORMAT: &str = "custody.incident.v1";

#[derive(Deserialize)]
struct Record {
    format: String,
    id: String,
    opened: String,
    operator: String,
    reason: String,
    hosts: Vec<String>,
}

/// What a report takes from an incident record.
#[derive(Debug, Clone)]
pub struct Scope {
    pub id: String,
    pub opened: OffsetDateTime,
    pub operator: String,
    pub reason: String,
    pub hosts: BTreeSet<String>,
}

/// An incident id as the collector allows them: it names a directory, so
/// nothing that could climb out of `incidents/`.
fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--incident {id:?}: not an incident id (letters, digits, '-', '_', '.'; as given to custody-collector incident open --id)"
        ))
    }
}

/// Reads incident `id` from the collector's state directory `state`.
pub fn read(state: &Path, id: &str) -> Result<Scope, String> {
    check_id(id)?;
    let path = state.join("incidents").join(id).join("incident.json");
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "--incident {id}: cannot read {} ({e}); give the collector's state directory with --collector-state (its state_dir), and an id `custody-collector incident status` knows",
            path.display()
        )
    })?;
    let r: Record = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not an incident record ({e})", path.display()))?;
    if r.format != INCIDENT_FORMAT || r.id != id {
        return Err(format!(
            "{}: format {:?} and id {:?}; this build reads {INCIDENT_FORMAT:?} for id {id:?}",
            path.display(),
            r.format,
            r.id
        ));
    }
    let opened = custody_evidence::timefmt::parse_utc(&r.opened).map_err(|e| {
        format!(
            "{}: opened {:?} is not a time ({e})",
            path.display(),
            r.opened
        )
    })?;
    Ok(Scope {
        id: r.id,
        opened,
        operator: r.operator,
        reason: r.reason,
        hosts: r.hosts.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_climb_out_are_refused_and_a_missing_record_names_the_flag() {
        assert!(check_id("../x").is_err());
        assert!(check_id(".hidden").is_err());
        assert!(check_id("INC-2026-0042").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let e = read(dir.path(), "INC-1").unwrap_err();
        assert!(e.contains("--collector-state"), "{e}");
    }
}
