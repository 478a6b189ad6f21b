//! `custody-collector incident open | status | release`, run on the
//! collector host against its state directory (and, for `release`, its
//! store). The running server picks an opened incident up at the agents'
//! next request; nothing needs restarting.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context};
use custody_evidence::bundle::check_incident_id;
use custody_evidence::bundle::custody_log::Action;
use custody_evidence::bundle::facts::BundleFacts;
use custody_evidence::retention::RetentionPolicy;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::HostId;
use custody_store::ObjectStore;

use super::custody::{append_event, set_holds, Custodian, EventText};
use super::state::{
    Desk, HostProgress, Incident, Release, ReleasedBundle, INCIDENT_FORMAT_V1, RELEASE_FORMAT_V1,
};

/// Which hosts `incident open` names.
pub enum Hosts {
    Named(Vec<String>),
    /// Every host enrolled with the CA in this directory (if given) or
    /// seen by this collector.
    All(Option<std::path::PathBuf>),
}

/// Text typed by an operator goes into custody records as one line.
pub fn check_text(flag: &str, value: &str) -> anyhow::Result<()> {
    if value.trim().is_empty() {
        bail!("{flag} must not be empty");
    }
    if value.chars().any(char::is_control) {
        bail!("{flag} must be one line without control characters");
    }
    Ok(())
}

fn unknown(id: &str, desk: &Desk) -> anyhow::Error {
    let known = desk.ids().unwrap_or_default();
    if known.is_empty() {
        anyhow::anyhow!("no incident {id} on this collector (none has been opened; `custody-collector incident open` opens one)")
    } else {
        anyhow::anyhow!(
            "no incident {id} on this collector; known incidents: {}",
            known.join(", ")
        )
    }
}

/// `incident open`: records the incident; agents named pick it up within
/// their poll interval. Returns the hosts named.
pub fn open(
    state_dir: &Path,
    id: &str,
    hosts: Hosts,
    operator: &str,
    reason: &str,
) -> anyhow::Result<Vec<String>> {
    check_incident_id(id).context("--id")?;
    check_text("--operator", operator)?;
    check_text("--reason", reason)?;
    let desk = Desk::new(state_dir);
    let (hosts, all) = match hosts {
        Hosts::Named(list) => {
            let mut set = BTreeSet::new();
            for h in list {
                let h = h.trim().to_string();
                HostId::new(h.as_str()).map_err(|e| anyhow::anyhow!("--hosts: {h:?} {}", e.why))?;
                set.insert(h);
            }
            if set.is_empty() {
                bail!("--hosts names no host; give H1,H2 or --all");
            }
            (set, false)
        }
        Hosts::All(ca_dir) => {
            let mut set = desk.seen_hosts()?;
            if let Some(ca) = ca_dir {
                set.extend(crate::pki::enrolled_hosts(&ca)?);
            }
            if set.is_empty() {
                bail!(
                    "--all: no host is known to this collector yet (none enrolled with --ca-dir, none has connected); \
                     name them with --hosts"
                );
            }
            (set, true)
        }
    };
    let incident = Incident {
        format: INCIDENT_FORMAT_V1.into(),
        id: id.to_string(),
        opened: format_utc(now_utc_micros()),
        operator: operator.to_string(),
        reason: reason.to_string(),
        hosts: hosts.into_iter().collect(),
        all,
    };
    desk.open(&incident)?;
    for h in &incident.hosts {
        desk.write_progress(id, &HostProgress::pending(h))?;
    }
    Ok(incident.hosts)
}

/// Everything `incident status` shows.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub id: String,
    /// `null` for an incident no one opened here (bundles a host uploaded
    /// on its own for this id).
    pub incident: Option<Incident>,
    pub hosts: Vec<HostStatus>,
    pub released: Option<Release>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    #[serde(flatten)]
    pub progress: HostProgress,
    /// When the host last asked this collector for incidents.
    pub last_seen: Option<String>,
}

pub fn status(state_dir: &Path, id: &str) -> anyhow::Result<Status> {
    check_incident_id(id).context("incident id")?;
    let desk = Desk::new(state_dir);
    if !desk.exists(id) {
        return Err(unknown(id, &desk));
    }
    let incident = desk.incident(id)?;
    let mut hosts: Vec<HostProgress> = desk.all_progress(id)?;
    if let Some(inc) = &incident {
        for h in &inc.hosts {
            if !hosts.iter().any(|p| &p.host == h) {
                hosts.push(HostProgress::pending(h));
            }
        }
    }
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(Status {
        id: id.to_string(),
        released: desk.release(id)?,
        hosts: hosts
            .into_iter()
            .map(|p| HostStatus {
                last_seen: desk.last_seen(&p.host),
                progress: p,
            })
            .collect(),
        incident,
    })
}

/// The table `incident status` prints without `--json`.
pub fn render(s: &Status) -> String {
    let mut out = String::new();
    match &s.incident {
        Some(i) => out.push_str(&format!(
            "incident {}: opened {} by {}: {}\n",
            i.id, i.opened, i.operator, i.reason
        )),
        None => out.push_str(&format!(
            "incident {}: not opened on this collector; bundles uploaded by hosts on their own\n",
            s.id
        )),
    }
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 7]> = s
        .hosts
        .iter()
        .map(|h| {
            let p = &h.progress;
            let detail = match (&p.reason, &p.bundle_key) {
                (Some(r), _) if p.state == "failed" => format!("failed: {r}"),
                (_, Some(k)) => {
                    let mut d = k.clone();
                    if let Some(n) = p.held_objects {
                        d.push_str(&format!(" ({n} objects held)"));
                    }
                    if !p.hold_problems.is_empty() {
                        d.push_str(&format!(
                            "; {} hold problem(s): {}",
                            p.hold_problems.len(),
                            p.hold_problems.join("; ")
                        ));
                    }
                    d
                }
                _ => format!("last seen {}", dash(&h.last_seen)),
            };
            [
                p.host.clone(),
                p.state.clone(),
                dash(&p.started),
                dash(&p.uploading),
                dash(&p.stored),
                dash(&p.failed),
                detail,
            ]
        })
        .collect();
    let head = [
        "HOST",
        "STATE",
        "STARTED",
        "UPLOADING",
        "STORED",
        "FAILED",
        "DETAIL",
    ];
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate().take(6) {
            widths[i] = widths[i].max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i < 6 {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                l.push_str(c);
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(head.to_vec()));
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    let count = |st: &str| s.hosts.iter().filter(|h| h.progress.state == st).count();
    out.push_str(&format!(
        "{} host(s): {} stored, {} in progress, {} pending, {} failed\n",
        s.hosts.len(),
        count("stored"),
        count("started") + count("uploading"),
        count("pending"),
        count("failed")
    ));
    match &s.released {
        Some(r) => out.push_str(&format!(
            "released {} by {}{}: holds lifted on {} object(s){}\n",
            r.released,
            r.operator,
            r.reason
                .as_ref()
                .map(|x| format!(" ({x})"))
                .unwrap_or_default(),
            r.objects_released,
            if r.kept_for_other_incidents.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} kept held for other open incidents",
                    r.kept_for_other_incidents.len()
                )
            }
        )),
        None => out.push_str("legal holds: in place until `custody-collector incident release`\n"),
    }
    out
}

/// `incident release`: lifts the holds placed for `id` (except on objects
/// another open incident's bundle still references), appends a signed
/// `released` event naming the operator and reason beside each bundle, and
/// records the release.
pub async fn release(
    state_dir: &Path,
    store: &dyn ObjectStore,
    retention: &RetentionPolicy,
    id: &str,
    operator: &str,
    approved_by: Option<&str>,
    reason: Option<&str>,
) -> anyhow::Result<Release> {
    check_incident_id(id).context("incident id")?;
    check_text("--operator", operator)?;
    if let Some(r) = reason {
        check_text("--reason", r)?;
    }
    let desk = Desk::new(state_dir);
    if !desk.exists(id) {
        return Err(unknown(id, &desk));
    }
    if let Some(r) = desk.release(id)? {
        bail!(
            "incident {id} was already released at {} by {}",
            r.released,
            r.operator
        );
    }
    let custodian = Custodian::load(state_dir)?;
    let holds = desk.all_holds(id)?;
    let mut protected: BTreeSet<String> = BTreeSet::new();
    for other in desk.ids()? {
        if other != id && desk.release(&other)?.is_none() {
            for h in desk.all_holds(&other)? {
                protected.insert(h.bundle_key);
                protected.extend(h.objects);
            }
        }
    }
    let mut lift: BTreeSet<String> = BTreeSet::new();
    let mut kept = Vec::new();
    for h in &holds {
        for k in std::iter::once(&h.bundle_key).chain(&h.objects) {
            if protected.contains(k) {
                kept.push(k.clone());
            } else {
                lift.insert(k.clone());
            }
        }
    }
    kept.sort();
    kept.dedup();
    let (done, problems) = set_holds(store, &lift, false).await;
    if !problems.is_empty() {
        bail!(
            "incident {id}: {} hold(s) could not be lifted (nothing recorded as released; run again): {}",
            problems.len(),
            problems.join("; ")
        );
    }
    let approval = approved_by
        .map(|a| format!(" (approved by {a})"))
        .unwrap_or_default();
    let purpose = match reason {
        Some(r) => format!("legal hold lifted, incident {id} released{approval}: {r}"),
        None => format!("legal hold lifted, incident {id} released{approval}"),
    };
    let mut bundles = Vec::new();
    for h in &holds {
        let bytes = store.get(&h.bundle_key).await.with_context(|| {
            format!(
                "reading the bundle {} to chain its custody event",
                h.bundle_key
            )
        })?;
        let facts = BundleFacts::read(bytes.as_slice())
            .with_context(|| format!("reading the bundle {}", h.bundle_key))?;
        let text = EventText {
            action: Action::Released,
            actor: operator,
            purpose: &purpose,
        };
        let event_key = append_event(
            store,
            &custodian,
            &h.bundle_key,
            &facts,
            &text,
            retention.retain_until(now_utc_micros()),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        bundles.push(ReleasedBundle {
            bundle_key: h.bundle_key.clone(),
            event_key,
        });
    }
    let release = Release {
        format: RELEASE_FORMAT_V1.into(),
        id: id.to_string(),
        released: format_utc(now_utc_micros()),
        operator: operator.to_string(),
        approved_by: approved_by.map(str::to_string),
        reason: reason.map(str::to_string),
        bundles,
        objects_released: done.len() as u64,
        kept_for_other_incidents: kept,
    };
    desk.write_release(&release)?;
    Ok(release)
}
