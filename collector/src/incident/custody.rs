//! The collector as a custodian of bundles (FORMAT.md §15.3, §15.4): legal
//! holds on a stored bundle and on every object it references, and the
//! collector's own signed custody events, appended beside the bundle as
//! create-only objects because the stored bundle itself never changes.

use std::collections::BTreeSet;

use custody_evidence::bundle::custody_log::{Action, CustodyEvent, EventLine};
use custody_evidence::bundle::facts::BundleFacts;
use custody_evidence::layout::{bundle_event_key, bundle_events_prefix};
use custody_evidence::sign::HostKey;
use custody_evidence::timefmt::now_utc_micros;
use custody_store::{ObjectStore, PutOptions, StoreError};
use time::OffsetDateTime;

/// Who signs the collector's events, and where it is.
pub struct Custodian {
    pub key: HostKey,
    /// `place` of its events: this machine's host name.
    pub place: String,
}

impl Custodian {
    /// The collector's custody key from `STATE/custody/host_key` (made on
    /// first use), and this machine's host name.
    pub fn load(state_dir: &std::path::Path) -> anyhow::Result<Custodian> {
        let place = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "collector".into());
        let key = custody_agent::key::load_or_create_with_comment(
            &state_dir.join("custody"),
            &format!("custody-collector@{place}"),
        )?;
        Ok(Custodian { key, place })
    }

    pub fn public_key_line(&self) -> String {
        custody_evidence::sign::normalize_public_key(&self.key.public_key_line(""))
            .unwrap_or_else(|_| self.key.public_key_line("").trim().to_string())
    }
}

/// The events appended beside `bundle_key` so far, decoded, oldest first,
/// with the bytes of each.
pub async fn stored_events(
    store: &dyn ObjectStore,
    bundle_key: &str,
) -> Result<Vec<(Vec<u8>, EventLine)>, String> {
    let keys = store
        .list(&bundle_events_prefix(bundle_key))
        .await
        .map_err(|e| format!("listing the custody events of {bundle_key}: {e}"))?;
    let mut out = Vec::new();
    for k in keys {
        let bytes = store
            .get(&k)
            .await
            .map_err(|e| format!("reading {k}: {e}"))?;
        let line = EventLine::decode(&bytes).map_err(|e| format!("{k} does not decode: {e}"))?;
        out.push((bytes, line));
    }
    Ok(out)
}

/// What one appended event says.
pub struct EventText<'a> {
    pub action: Action,
    pub actor: &'a str,
    pub purpose: &'a str,
}

/// Appends one signed event to the custody log of the bundle stored under
/// `bundle_key`, chained to its last line (the bundle's own `custody.jsonl`
/// or the last event stored beside it). Returns the event's object name.
pub async fn append_event(
    store: &dyn ObjectStore,
    custodian: &Custodian,
    bundle_key: &str,
    facts: &BundleFacts,
    text: &EventText<'_>,
    retain_until: OffsetDateTime,
) -> Result<String, String> {
    // A conflict means another custodian appended the same seq meanwhile:
    // chain to theirs and try again.
    for _ in 0..5 {
        let stored = stored_events(store, bundle_key).await?;
        let (prev_bytes, prev) = match stored.last() {
            Some((b, l)) => (b.clone(), l.event.clone()),
            None => (facts.last_event.0.clone(), facts.last_event.1.event.clone()),
        };
        let event = CustodyEvent::next(
            &prev,
            &prev_bytes,
            text.action,
            now_utc_micros(),
            text.actor,
            &custodian.place,
            text.purpose,
            &custodian.public_key_line(),
        );
        let seq = event.seq;
        let line = EventLine::sign(event, &custodian.key)
            .map_err(|e| format!("signing the custody event: {e}"))?;
        let key = bundle_event_key(bundle_key, seq);
        match store
            .put(&key, &line.encode(), PutOptions { retain_until })
            .await
        {
            Ok(_) => return Ok(key),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(format!("storing {key}: {e}")),
        }
    }
    Err(format!(
        "could not append a custody event to {bundle_key}: it kept changing under this writer"
    ))
}

/// Places (`hold`) or lifts a legal hold on each key; returns the keys
/// done and a problem line for each that failed.
pub async fn set_holds(
    store: &dyn ObjectStore,
    keys: &BTreeSet<String>,
    hold: bool,
) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    let mut problems = Vec::new();
    for k in keys {
        match store.set_legal_hold(k, hold).await {
            Ok(()) => done.push(k.clone()),
            Err(StoreError::NotFound { .. }) => problems.push(format!(
                "{k}: the bundle lists it as shipped but it is not in the store"
            )),
            Err(e) => problems.push(format!("{k}: {e}")),
        }
    }
    (done, problems)
}
