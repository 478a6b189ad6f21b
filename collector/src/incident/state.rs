//! The incident records in the collector's state directory (FORMAT.md
//! §15.1), shared by the server (which answers agents and records their
//! progress) and the `incident` commands (which run beside it on the same
//! host). Every file has one writer at a time and is replaced atomically
//! (temporary file, fsync, rename, fsync of the directory), so a reader
//! never sees half a record:
//!
//! ```text
//! STATE/incidents/<id>/incident.json        who opened it, why, which hosts (written once)
//! STATE/incidents/<id>/hosts/<host>.json    one host's progress (the server)
//! STATE/incidents/<id>/holds/<bundle>.json  what the server held for one bundle
//! STATE/incidents/<id>/released.json        who released it, why (written once)
//! STATE/hosts/<host>.json                   when a host last asked for incidents
//! ```

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use custody_evidence::bundle::check_incident_id;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::HostId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub const INCIDENT_FORMAT_V1: &str = "custody.incident.v1";
pub const PROGRESS_FORMAT_V1: &str = "custody.incident-host.v1";
pub const HOLDS_FORMAT_V1: &str = "custody.incident-holds.v1";
pub const RELEASE_FORMAT_V1: &str = "custody.incident-release.v1";

/// An incident as opened (`incident.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub format: String,
    pub id: String,
    /// RFC 3339 UTC.
    pub opened: String,
    pub operator: String,
    pub reason: String,
    /// The hosts asked for a snapshot (with `--all`, every host known when
    /// it was opened).
    pub hosts: Vec<String>,
    /// Opened with `--all`.
    pub all: bool,
}

/// Where one host is with one incident. States, in order: `pending`
/// (asked, not yet picked up), `started`, `uploading`, `stored` (the
/// collector has the bundle durably and placed its holds); `failed` with a
/// reason. Each state's time is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostProgress {
    pub format: String,
    pub host: String,
    pub state: String,
    /// When the state last changed, RFC 3339 UTC.
    pub updated: String,
    pub started: Option<String>,
    pub uploading: Option<String>,
    pub stored: Option<String>,
    pub failed: Option<String>,
    /// Why it failed.
    pub reason: Option<String>,
    pub evidence_id: Option<String>,
    pub bundle_key: Option<String>,
    /// Objects placed under legal hold for this host's bundle (the bundle included).
    pub held_objects: Option<u64>,
    /// Holds that could not be placed, and why.
    pub hold_problems: Vec<String>,
}

pub const STATES: [&str; 5] = ["pending", "started", "uploading", "stored", "failed"];

fn rank(state: &str) -> u8 {
    match state {
        "pending" => 0,
        "started" => 1,
        "uploading" => 2,
        "failed" => 3,
        "stored" => 4,
        _ => 0,
    }
}

impl HostProgress {
    pub fn pending(host: &str) -> HostProgress {
        HostProgress {
            format: PROGRESS_FORMAT_V1.into(),
            host: host.into(),
            state: "pending".into(),
            ..HostProgress::default()
        }
    }

    /// Moves to `state` at `now` unless that would go backwards (a late
    /// `uploading` after `stored`); `stored` wins over everything, and a
    /// `failed` host may still store later (a retry).
    pub fn advance(&mut self, state: &str, now: &str) -> bool {
        if !STATES.contains(&state) || rank(state) < rank(&self.state) {
            return false;
        }
        if state == "started" && self.state == "failed" {
            return false;
        }
        let slot = match state {
            "started" => &mut self.started,
            "uploading" => &mut self.uploading,
            "stored" => &mut self.stored,
            "failed" => &mut self.failed,
            _ => return false,
        };
        if slot.is_none() {
            *slot = Some(now.to_string());
        }
        self.state = state.to_string();
        self.updated = now.to_string();
        true
    }
}

/// What the server held for one stored bundle (`holds/<evidence-id>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holds {
    pub format: String,
    pub host: String,
    pub evidence_id: String,
    pub bundle_key: String,
    /// The referenced segments, digests and signatures held (not the bundle).
    pub objects: Vec<String>,
    pub time: String,
}

/// An incident's release (`released.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub format: String,
    pub id: String,
    pub released: String,
    pub operator: String,
    /// The second operator who approved a release asked for through the
    /// operators' API (two-person rule); absent for the local command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    pub reason: Option<String>,
    /// Bundles whose holds were lifted, with the custody event recording it.
    pub bundles: Vec<ReleasedBundle>,
    /// Objects whose hold was lifted.
    pub objects_released: u64,
    /// Objects left held because another open incident's bundle references them.
    pub kept_for_other_incidents: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleasedBundle {
    pub bundle_key: String,
    pub event_key: String,
}

/// A release asked for on the operators' API, waiting for a second
/// operator's approval (`release-request.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    pub requested_by: String,
    pub requested: String,
    pub reason: Option<String>,
}

/// The incident records under one state directory.
#[derive(Debug, Clone)]
pub struct Desk {
    root: PathBuf,
    hosts: PathBuf,
}

fn write_atomic(path: &Path, bytes: &[u8], create_only: bool) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}-{}", uuid::Uuid::new_v4()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    let published = if create_only {
        // A hard link fails if the name exists: written once, never replaced.
        let r = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        r
    } else {
        fs::rename(&tmp, path)
    };
    if let Err(e) = published {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("publishing {}", path.display()));
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("fsync {}", dir.display()))?;
    Ok(())
}

fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is damaged (not the expected JSON)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn json<T: Serialize>(value: &T) -> anyhow::Result<Vec<u8>> {
    let mut v = serde_json::to_vec_pretty(value).context("encoding an incident record")?;
    v.push(b'\n');
    Ok(v)
}

/// The names of the `*.json` files in `dir`, without the extension, sorted.
fn json_stems(dir: &Path) -> anyhow::Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".json") {
            if !stem.starts_with('.') {
                out.push(stem.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

impl Desk {
    /// The records under `state_dir` (nothing is created until written).
    pub fn new(state_dir: &Path) -> Desk {
        Desk {
            root: state_dir.join("incidents"),
            hosts: state_dir.join("hosts"),
        }
    }

    fn dir(&self, id: &str) -> anyhow::Result<PathBuf> {
        check_incident_id(id).with_context(|| format!("incident id {id:?}"))?;
        Ok(self.root.join(id))
    }

    /// Whether anything is recorded for `id` (opened here, or a bundle
    /// for it received from a host).
    pub fn exists(&self, id: &str) -> bool {
        self.dir(id).map(|d| d.is_dir()).unwrap_or(false)
    }

    /// Records a new incident; refuses an id already used.
    pub fn open(&self, incident: &Incident) -> anyhow::Result<()> {
        let dir = self.dir(&incident.id)?;
        if let Some(old) = self.incident(&incident.id)? {
            bail!(
                "incident {} already exists (opened {} by {}); choose another id",
                old.id,
                old.opened,
                old.operator
            );
        }
        let path = dir.join("incident.json");
        write_atomic(&path, &json(incident)?, true).with_context(|| {
            format!(
                "recording incident {} (does {} already exist?)",
                incident.id,
                path.display()
            )
        })
    }

    pub fn incident(&self, id: &str) -> anyhow::Result<Option<Incident>> {
        read_json(&self.dir(id)?.join("incident.json"))
    }

    /// Every incident id recorded, sorted.
    pub fn ids(&self) -> anyhow::Result<Vec<String>> {
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {}", self.root.display())),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.with_context(|| format!("listing {}", self.root.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if check_incident_id(&name).is_ok() && entry.path().is_dir() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn progress(&self, id: &str, host: &str) -> anyhow::Result<Option<HostProgress>> {
        HostId::new(host).with_context(|| format!("host id {host:?}"))?;
        read_json(&self.dir(id)?.join("hosts").join(format!("{host}.json")))
    }

    /// Every host with a progress record for `id`.
    pub fn all_progress(&self, id: &str) -> anyhow::Result<Vec<HostProgress>> {
        let dir = self.dir(id)?.join("hosts");
        let mut out = Vec::new();
        for host in json_stems(&dir)? {
            if let Some(p) = read_json(&dir.join(format!("{host}.json")))? {
                out.push(p);
            }
        }
        Ok(out)
    }

    pub fn write_progress(&self, id: &str, progress: &HostProgress) -> anyhow::Result<()> {
        HostId::new(progress.host.as_str())
            .with_context(|| format!("host id {:?}", progress.host))?;
        let path = self
            .dir(id)?
            .join("hosts")
            .join(format!("{}.json", progress.host));
        write_atomic(&path, &json(progress)?, false)
    }

    /// One file per stored bundle, named by the bundle's object name (two
    /// bundles may claim the same evidence id: a forged copy, for one).
    pub fn write_holds(&self, id: &str, holds: &Holds) -> anyhow::Result<()> {
        let stem = holds
            .bundle_key
            .rsplit('/')
            .next()
            .and_then(|f| f.strip_suffix(".tar"))
            .filter(|s| !s.is_empty() && !s.starts_with('.'))
            .with_context(|| format!("{} is not a bundle's object name", holds.bundle_key))?;
        let path = self.dir(id)?.join("holds").join(format!("{stem}.json"));
        write_atomic(&path, &json(holds)?, false)
    }

    pub fn all_holds(&self, id: &str) -> anyhow::Result<Vec<Holds>> {
        let dir = self.dir(id)?.join("holds");
        let mut out = Vec::new();
        for stem in json_stems(&dir)? {
            if let Some(h) = read_json(&dir.join(format!("{stem}.json")))? {
                out.push(h);
            }
        }
        Ok(out)
    }

    pub fn release(&self, id: &str) -> anyhow::Result<Option<Release>> {
        read_json(&self.dir(id)?.join("released.json"))
    }

    pub fn release_request(&self, id: &str) -> anyhow::Result<Option<ReleaseRequest>> {
        read_json(&self.dir(id)?.join("release-request.json"))
    }

    pub fn write_release_request(&self, id: &str, r: &ReleaseRequest) -> anyhow::Result<()> {
        write_atomic(&self.dir(id)?.join("release-request.json"), &json(r)?, true)
    }

    pub fn write_release(&self, release: &Release) -> anyhow::Result<()> {
        let path = self.dir(&release.id)?.join("released.json");
        write_atomic(&path, &json(release)?, true)
    }

    /// Notes that `host` asked for incidents now.
    pub fn seen(&self, host: &HostId) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct Seen<'a> {
            host: &'a str,
            last_seen: String,
        }
        let path = self.hosts.join(format!("{host}.json"));
        write_atomic(
            &path,
            &json(&Seen {
                host: host.as_str(),
                last_seen: format_utc(now_utc_micros()),
            })?,
            false,
        )
    }

    /// When `host` last asked for incidents.
    pub fn last_seen(&self, host: &str) -> Option<String> {
        #[derive(Deserialize)]
        struct Seen {
            last_seen: String,
        }
        read_json::<Seen>(&self.hosts.join(format!("{host}.json")))
            .ok()
            .flatten()
            .map(|s| s.last_seen)
    }

    /// Hosts that have asked this collector for incidents.
    pub fn seen_hosts(&self) -> anyhow::Result<BTreeSet<String>> {
        Ok(json_stems(&self.hosts)?
            .into_iter()
            .filter(|h| HostId::new(h.as_str()).is_ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_never_goes_backwards() {
        let mut p = HostProgress::pending("web01");
        assert!(p.advance("started", "t1"));
        assert!(p.advance("uploading", "t2"));
        assert!(p.advance("stored", "t3"));
        assert!(!p.advance("uploading", "t4"));
        assert!(!p.advance("failed", "t5"));
        assert_eq!(p.state, "stored");
        assert_eq!(p.started.as_deref(), Some("t1"));
        let mut q = HostProgress::pending("web02");
        assert!(q.advance("failed", "t1"));
        assert!(!q.advance("started", "t2"));
        assert!(q.advance("stored", "t3"));
        assert!(!q.advance("bogus", "t4"));
    }

    #[test]
    fn incidents_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let desk = Desk::new(dir.path());
        let inc = Incident {
            format: INCIDENT_FORMAT_V1.into(),
            id: "INC-1".into(),
            opened: "2026-11-30T00:00:00.000000Z".into(),
            operator: "alice".into(),
            reason: "test".into(),
            hosts: vec!["a".into()],
            all: false,
        };
        desk.open(&inc).unwrap();
        let again = desk.open(&inc).unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");
        assert_eq!(desk.incident("INC-1").unwrap(), Some(inc));
        assert_eq!(desk.ids().unwrap(), vec!["INC-1".to_string()]);
        assert!(desk.incident("../x").is_err());
        assert!(!desk.exists("INC-2"));
    }
}
