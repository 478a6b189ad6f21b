//! Incidents (FORMAT.md §15): a responder opens one on the collector host
//! (`custody-collector incident open`), the agents it names learn of it
//! when they next ask (`GET /v1/incidents`, every few seconds), take a
//! snapshot, upload it and report their progress; the collector places a
//! legal hold on each stored bundle and everything it references, and
//! appends its own signed `received` event. `incident release` lifts the
//! holds and records who released them and why.
//!
//! - [`state`]: the records in the state directory.
//! - [`custody`]: holds and the collector's custody events.
//! - [`commands`]: `incident open`, `status` and `release`.
//! - [`Office`]: what the running server does.

pub mod commands;
pub mod custody;
pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use custody_evidence::bundle::custody_log::Action;
use custody_evidence::bundle::facts::BundleFacts;
use custody_evidence::layout;
use custody_evidence::retention::RetentionPolicy;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::HostId;
use custody_store::https::{IncidentNotice, IncidentReport};
use custody_store::ObjectStore;

use custody::{append_event, set_holds, stored_events, Custodian, EventText};
use state::{Desk, Holds, HostProgress, HOLDS_FORMAT_V1};

/// How often a host's "last seen" record is rewritten at most.
const SEEN_EVERY: Duration = Duration::from_secs(30);

/// The server's side of incidents.
pub struct Office {
    pub desk: Desk,
    pub custodian: Custodian,
    seen: Mutex<HashMap<HostId, Instant>>,
}

/// Why a progress report was not taken.
pub enum ReportRefusal {
    NotFound(String),
    Invalid(String),
    Failed(String),
}

/// The incident id of a bundle's store key `v1/<host>/bundles/<id>/…`.
pub fn incident_of_bundle_key(key: &str) -> Option<&str> {
    key.split('/').nth(3)
}

impl Office {
    pub fn open(state_dir: &Path) -> anyhow::Result<Office> {
        Ok(Office {
            desk: Desk::new(state_dir),
            custodian: Custodian::load(state_dir)?,
            seen: Mutex::default(),
        })
    }

    fn note_seen(&self, host: &HostId) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let due = seen.get(host).is_none_or(|t| t.elapsed() >= SEEN_EVERY);
        if due {
            seen.insert(host.clone(), Instant::now());
            if let Err(e) = self.desk.seen(host) {
                tracing::warn!(%host, "recording when the host was last seen: {e:#}");
            }
        }
    }

    /// The open incidents naming `host` that it has not acted on yet.
    pub fn notices(&self, host: &HostId) -> anyhow::Result<Vec<IncidentNotice>> {
        self.note_seen(host);
        let mut out = Vec::new();
        for id in self.desk.ids()? {
            let Some(incident) = self.desk.incident(&id)? else {
                continue;
            };
            if !incident.hosts.iter().any(|h| h == host.as_str())
                || self.desk.release(&id)?.is_some()
            {
                continue;
            }
            let pending = self
                .desk
                .progress(&id, host.as_str())?
                .is_none_or(|p| p.state == "pending");
            if pending {
                out.push(IncidentNotice {
                    id: incident.id,
                    operator: incident.operator,
                    reason: Some(incident.reason),
                    opened: incident.opened,
                });
            }
        }
        Ok(out)
    }

    /// A host's progress report (`POST /v1/incidents/<id>/status`). The
    /// caller holds the host's lock, so reports and uploads of one host
    /// are recorded one at a time.
    pub fn report(
        &self,
        host: &HostId,
        id: &str,
        report: &IncidentReport,
    ) -> Result<HostProgress, ReportRefusal> {
        let failed = |e: anyhow::Error| ReportRefusal::Failed(format!("{e:#}"));
        if custody_evidence::bundle::check_incident_id(id).is_err() {
            return Err(ReportRefusal::Invalid(format!(
                "{id:?} is not an incident id"
            )));
        }
        let incident = self.desk.incident(id).map_err(failed)?;
        let named = incident
            .as_ref()
            .is_some_and(|i| i.hosts.iter().any(|h| h == host.as_str()));
        let known = self.desk.progress(id, host.as_str()).map_err(failed)?;
        if !named && known.is_none() {
            return Err(ReportRefusal::NotFound(format!(
                "incident {id} does not name host {host} on this collector"
            )));
        }
        if !["started", "uploading", "stored", "failed"].contains(&report.state.as_str()) {
            return Err(ReportRefusal::Invalid(format!(
                "state {:?} is not one of started, uploading, stored, failed",
                report.state
            )));
        }
        let mut p = known.unwrap_or_else(|| HostProgress::pending(host.as_str()));
        // `stored` means this collector holds the bundle: only its own
        // receipt says so (`bundle_stored`), never a host's word.
        if report.state == "stored" {
            return Ok(p);
        }
        let now = format_utc(now_utc_micros());
        if p.advance(&report.state, &now) {
            if report.evidence_id.is_some() {
                p.evidence_id = report.evidence_id.clone();
            }
            if report.bundle_key.is_some() && p.bundle_key.is_none() {
                p.bundle_key = report.bundle_key.clone();
            }
            if report.state == "failed" {
                p.reason = report.reason.clone();
            }
            self.desk.write_progress(id, &p).map_err(failed)?;
            tracing::info!(%host, incident = %id, state = %p.state, reason = ?p.reason, "incident progress");
        }
        Ok(p)
    }

    /// Called once a bundle is durable in the store (new or a retry): holds
    /// it and what it references, appends the collector's `received` event
    /// unless one is there, and records the host as `stored`. Problems are
    /// logged and recorded with the host's progress; they never undo the
    /// upload.
    pub async fn bundle_stored(
        &self,
        store: &dyn ObjectStore,
        retention: &RetentionPolicy,
        host: &HostId,
        key: &str,
        body: &[u8],
    ) {
        let Some(id) = incident_of_bundle_key(key) else {
            return;
        };
        let mut problems = Vec::new();
        let facts = match BundleFacts::read(body) {
            Ok(f) => Some(f),
            Err(e) => {
                problems.push(format!(
                    "{key}: cannot read the bundle to hold what it lists: {e}"
                ));
                None
            }
        };
        let released = matches!(self.desk.release(id), Ok(Some(_)));
        let own = layout::host_prefix(host);
        let mut held = 0u64;
        let mut referenced: Vec<String> = Vec::new();
        if released {
            problems.push(format!(
                "incident {id} was already released; the bundle is kept but not held"
            ));
        } else {
            let mut keys: BTreeSet<String> = BTreeSet::new();
            keys.insert(key.to_string());
            if let Some(f) = &facts {
                for k in f.referenced_keys() {
                    // A host may only name its own objects.
                    if k.starts_with(&own) && custody_store::check_key(&k).is_ok() {
                        keys.insert(k);
                    } else {
                        problems.push(format!("{k}: outside the host's namespace {own}; not held"));
                    }
                }
            }
            let (done, failed) = set_holds(store, &keys, true).await;
            held = done.len() as u64;
            referenced = done.into_iter().filter(|k| k != key).collect();
            problems.extend(failed);
        }
        let evidence_id = facts.as_ref().map(|f| f.evidence_id.clone());
        if let Some(f) = &facts {
            if !released {
                let holds = Holds {
                    format: HOLDS_FORMAT_V1.into(),
                    host: host.to_string(),
                    evidence_id: f.evidence_id.clone(),
                    bundle_key: key.to_string(),
                    objects: referenced,
                    time: format_utc(now_utc_micros()),
                };
                if let Err(e) = self.desk.write_holds(id, &holds) {
                    problems.push(format!("recording the holds: {e:#}"));
                }
            }
            let signer = self.custodian.public_key_line();
            let already = match stored_events(store, key).await {
                Ok(events) => events
                    .iter()
                    .any(|(_, l)| l.event.action == Action::Received && l.event.signer == signer),
                Err(e) => {
                    problems.push(e);
                    true
                }
            };
            if !already {
                let actor = format!("custody-collector@{}", self.custodian.place);
                let purpose = format!(
                    "stored in the collector's store and placed under legal hold for incident {id}"
                );
                let text = EventText {
                    action: Action::Received,
                    actor: &actor,
                    purpose: &purpose,
                };
                let until = retention.retain_until(now_utc_micros());
                match append_event(store, &self.custodian, key, f, &text, until).await {
                    Ok(ev) => {
                        tracing::info!(%host, bundle = %key, event = %ev, "custody event: received")
                    }
                    Err(e) => problems.push(e),
                }
            }
        }
        for p in &problems {
            tracing::error!(%host, bundle = %key, "incident {id}: {p}");
        }
        let mut p = match self.desk.progress(id, host.as_str()) {
            Ok(Some(p)) => p,
            _ => HostProgress::pending(host.as_str()),
        };
        let now = format_utc(now_utc_micros());
        p.advance("stored", &now);
        p.bundle_key = Some(key.to_string());
        if evidence_id.is_some() {
            p.evidence_id = evidence_id;
        }
        p.held_objects = Some(held);
        p.hold_problems = problems;
        if let Err(e) = self.desk.write_progress(id, &p) {
            tracing::error!(%host, incident = %id, "recording the stored bundle: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use state::{Incident, INCIDENT_FORMAT_V1};

    fn report(state: &str) -> IncidentReport {
        IncidentReport {
            state: state.into(),
            evidence_id: None,
            bundle_key: None,
            reason: Some("why".into()),
        }
    }

    #[test]
    fn only_named_hosts_are_asked_and_stored_is_the_collectors_word() {
        let dir = tempfile::tempdir().unwrap();
        let office = Office::open(dir.path()).unwrap();
        let (a, c) = (HostId::new("a").unwrap(), HostId::new("c").unwrap());
        office
            .desk
            .open(&Incident {
                format: INCIDENT_FORMAT_V1.into(),
                id: "INC-1".into(),
                opened: "2026-11-30T00:00:00.000000Z".into(),
                operator: "alice".into(),
                reason: "test".into(),
                hosts: vec!["a".into()],
                all: false,
            })
            .unwrap();
        assert_eq!(office.notices(&a).unwrap().len(), 1);
        assert!(office.notices(&c).unwrap().is_empty());
        assert!(matches!(
            office.report(&c, "INC-1", &report("started")),
            Err(ReportRefusal::NotFound(_))
        ));
        assert!(matches!(
            office.report(&a, "INC-1", &report("done")),
            Err(ReportRefusal::Invalid(_))
        ));
        let p = office.report(&a, "INC-1", &report("started")).ok().unwrap();
        assert_eq!(p.state, "started");
        // Picked up: no longer offered.
        assert!(office.notices(&a).unwrap().is_empty());
        let p = office.report(&a, "INC-1", &report("stored")).ok().unwrap();
        assert_eq!(
            p.state, "started",
            "a host cannot declare its bundle stored"
        );
        let p = office.report(&a, "INC-1", &report("failed")).ok().unwrap();
        assert_eq!(
            (p.state.as_str(), p.reason.as_deref()),
            ("failed", Some("why"))
        );
    }
}
