//! An incident's stored bundles on the operators' API: downloaded,
//! verified, and their custody trail read. Each download and each
//! verification is itself a custody event (`exported`, `verified`),
//! signed by the collector and appended beside the bundle with the
//! operator's name, before the answer goes out: a copy that left the
//! collector without a record would break the chain the bundle exists to
//! keep.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use custody_evidence::bundle::custody_log::{split_lines, Action, EventLine};
use custody_evidence::bundle::facts::BundleFacts;
use custody_evidence::bundle::verify::{verify_bundle, BundleVerifyOptions};
use custody_evidence::layout::bundle_event_key;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::verify::{ObjectSource, Severity, SourceError};
use custody_evidence::Sha256;
use custody_store::ObjectStore;
use http_body_util::Full;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::auth::Operator;
use super::{error_reply, json_reply, Api, Reply};
use crate::incident::commands;
use crate::incident::custody::{append_event, stored_events, Custodian, EventText};

/// The stored bundle of `host` for incident `id`, as the incident's
/// records name it. Ids and host names are looked up, never used as
/// paths: `../x` is simply not a host of the incident.
fn bundle_key_of(api: &Api, id: &str, host: &str) -> Result<String, (StatusCode, String)> {
    let status = commands::status(&api.state_dir, id).map_err(|e| {
        (
            StatusCode::NOT_FOUND,
            format!("no incident {id:?} on this collector ({e:#})"),
        )
    })?;
    let Some(row) = status.hosts.iter().find(|h| h.progress.host == host) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("host {host:?} is not part of incident {id}"),
        ));
    };
    row.progress.bundle_key.clone().ok_or_else(|| {
        (
            StatusCode::CONFLICT,
            format!(
                "host {host} has no stored bundle for incident {id} yet (state: {})",
                row.progress.state
            ),
        )
    })
}

async fn read_bundle(api: &Api, key: &str) -> Result<(Vec<u8>, BundleFacts), (StatusCode, String)> {
    let bytes = api.app.store.get(key).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("reading the bundle {key} from the store: {e}"),
        )
    })?;
    let facts = BundleFacts::read(bytes.as_slice()).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the stored bundle {key} does not read as a bundle: {e}; run custody-verify bundle on it"),
        )
    })?;
    Ok((bytes, facts))
}

/// Appends the collector's signed event for what `op` did to the bundle.
async fn record(
    api: &Api,
    key: &str,
    facts: &BundleFacts,
    action: Action,
    op: &Operator,
    purpose: &str,
) -> Result<String, (StatusCode, String)> {
    let custodian = Custodian::load(&api.state_dir).map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the collector's custody key: {e:#}"),
        )
    })?;
    let text = EventText {
        action,
        actor: &op.name,
        purpose,
    };
    append_event(
        api.app.store.as_ref(),
        &custodian,
        key,
        facts,
        &text,
        api.app.retention.retain_until(now_utc_micros()),
    )
    .await
    .map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("the custody event could not be recorded, so nothing was done: {e}"),
        )
    })
}

/// `GET /api/v1/incidents/ID/hosts/HOST/bundle`: the bundle's bytes as
/// stored (an attachment, with its SHA-256 in `X-Content-SHA256`), once
/// the `exported` event naming the operator is stored.
pub async fn download(api: &Api, op: &Operator, addr: SocketAddr, id: &str, host: &str) -> Reply {
    let key = match bundle_key_of(api, id, host) {
        Ok(k) => k,
        Err((status, why)) => return error_reply(status, why),
    };
    let (bytes, facts) = match read_bundle(api, &key).await {
        Ok(b) => b,
        Err((status, why)) => return error_reply(status, why),
    };
    let sha256 = Sha256::digest(&bytes);
    let purpose = format!(
        "downloaded through the operators' API by {} ({}) from {addr}; sha256 {sha256}",
        op.name,
        op.role.as_str()
    );
    let event_key = match record(api, &key, &facts, Action::Exported, op, &purpose).await {
        Ok(k) => k,
        Err((status, why)) => return error_reply(status, why),
    };
    tracing::info!(operator = %op.name, incident = %id, %host, bundle = %key, %sha256, "api: bundle downloaded");
    let file = key.rsplit('/').next().unwrap_or("bundle.tar").to_string();
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/x-tar")
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .header(
            "content-disposition",
            format!("attachment; filename=\"{}\"", safe_file_name(&file)),
        )
        .header("x-content-sha256", sha256.to_string())
        .header("x-custody-event", event_key)
        .body(Full::new(Bytes::from(bytes)))
        .unwrap_or_else(|_| error_reply(StatusCode::INTERNAL_SERVER_ERROR, "building the reply"))
}

/// A file name for `Content-Disposition`: the store key's last part, with
/// anything outside `[A-Za-z0-9._-]` replaced.
fn safe_file_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The collector's store, read from the blocking verifier.
struct StoreSource {
    store: Arc<dyn ObjectStore>,
    runtime: tokio::runtime::Handle,
}

impl ObjectSource for StoreSource {
    fn list(&self, prefix: &str) -> Result<Vec<String>, SourceError> {
        self.runtime
            .block_on(self.store.list(prefix))
            .map_err(|e| SourceError::new(prefix, e.to_string()))
    }

    fn read(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        self.runtime
            .block_on(self.store.get(key))
            .map_err(|e| SourceError::new(key, e.to_string()))
    }
}

/// `POST /api/v1/incidents/ID/hosts/HOST/verify`: the evidence crate's
/// bundle verification (FORMAT.md §14.10) against the collector's store,
/// the `verified` event naming the operator and the outcome, and the
/// report. The signer is checked against the bundle's own
/// `allowed_signers` only: an auditor checks the trust anchors offline
/// with `custody-verify bundle --trusted-signers`.
pub async fn verify(api: &Api, op: &Operator, id: &str, host: &str) -> Reply {
    match verification(api, op, id, host).await {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err((status, why)) => error_reply(status, why),
    }
}

/// What [`verify`] answers; the console shows it on the incident page.
pub async fn verification(
    api: &Api,
    op: &Operator,
    id: &str,
    host: &str,
) -> Result<Value, (StatusCode, String)> {
    let key = bundle_key_of(api, id, host)?;
    let (bytes, facts) = read_bundle(api, &key).await?;
    let source = StoreSource {
        store: api.app.store.clone(),
        runtime: tokio::runtime::Handle::current(),
    };
    let checked = tokio::task::spawn_blocking(move || {
        verify_bundle(
            bytes.as_slice(),
            &BundleVerifyOptions {
                trusted_signers: None,
                store: Some(&source),
                inspector: None,
            },
        )
        .map_err(|e| e.to_string())
    })
    .await;
    let report = match checked {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Err((
                StatusCode::BAD_GATEWAY,
                format!("verifying {key}: {e} (nothing recorded)"),
            ))
        }
        Err(e) => {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("verifying {key}: {e}"),
            ))
        }
    };
    let errors = report.count(Severity::Error);
    let warnings = report.count(Severity::Warning);
    let outcome = if report.is_clean() { "clean" } else { "FAILED" };
    let purpose = format!(
        "verified through the operators' API by {} ({}): {outcome}, {errors} error(s), {warnings} warning(s), {} custody event(s), {} store object(s) checked",
        op.name,
        op.role.as_str(),
        report.custody_events,
        report.store_objects_checked
    );
    let event_key = record(api, &key, &facts, Action::Verified, op, &purpose).await?;
    tracing::info!(operator = %op.name, incident = %id, %host, bundle = %key, outcome, errors, "api: bundle verified");
    Ok(json!({
        "host": host,
        "bundle_key": key,
        "clean": report.is_clean(),
        "errors": errors,
        "warnings": warnings,
        "custody_event": event_key,
        "report": report,
    }))
}

/// One bundle's custody trail: the events the bag carries, then those
/// appended beside it, each with whether it chains to the one before and
/// whether its signature holds (a reading aid; `verify` is the check).
pub async fn trail_of(api: &Api, host: &str, key: &str) -> Value {
    let (_, facts) = match read_bundle(api, key).await {
        Ok(b) => b,
        Err((_, why)) => {
            return json!({ "host": host, "bundle_key": key, "events": [], "error": why })
        }
    };
    let mut lines: Vec<(String, Vec<u8>)> = split_lines(&facts.custody_log)
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("custody.jsonl:{}", i + 1), l.to_vec()))
        .collect();
    let mut problem = None;
    match stored_events(api.app.store.as_ref(), key).await {
        Ok(stored) => lines.extend(
            stored
                .into_iter()
                .map(|(bytes, line)| (bundle_event_key(key, line.event.seq), bytes)),
        ),
        Err(e) => problem = Some(e),
    }
    let mut events = Vec::new();
    let mut prev: Option<Vec<u8>> = None;
    for (source, bytes) in &lines {
        let line_sha = Sha256::digest(bytes);
        let row = match EventLine::decode(bytes) {
            Ok(l) => {
                let e = &l.event;
                let chained = e.prev_event == prev.as_deref().map(Sha256::digest);
                let signature = match l.verify_signature() {
                    Ok(s) => json!({ "good": true, "fingerprint": s.fingerprint }),
                    Err(err) => json!({ "good": false, "why": err.to_string() }),
                };
                json!({
                    "source": source,
                    "seq": e.seq,
                    "time": format_utc(e.time),
                    "action": e.action,
                    "actor": e.actor,
                    "place": e.place,
                    "purpose": e.purpose,
                    "chained": chained,
                    "signature": signature,
                    "line_sha256": line_sha.to_string(),
                })
            }
            Err(err) => json!({
                "source": source,
                "error": format!("does not decode: {err}"),
                "chained": false,
                "line_sha256": line_sha.to_string(),
            }),
        };
        events.push(row);
        prev = Some(bytes.clone());
    }
    json!({
        "host": host,
        "bundle_key": key,
        "evidence_id": facts.evidence_id,
        "events": events,
        "error": problem,
    })
}

/// `GET /api/v1/incidents/ID/custody`: the trail of every stored bundle
/// of the incident.
pub async fn trail(api: &Api, id: &str) -> Reply {
    match trails(api, id).await {
        Ok(bundles) => json_reply(StatusCode::OK, &json!({ "id": id, "bundles": bundles })),
        Err((status, why)) => error_reply(status, why),
    }
}

/// The trails behind [`trail`], also shown on the console's incident page.
pub async fn trails(api: &Api, id: &str) -> Result<Vec<Value>, (StatusCode, String)> {
    let status = commands::status(&api.state_dir, id).map_err(|e| {
        (
            StatusCode::NOT_FOUND,
            format!("no incident {id:?} on this collector ({e:#})"),
        )
    })?;
    let mut out = Vec::new();
    for h in &status.hosts {
        if let Some(key) = &h.progress.bundle_key {
            out.push(trail_of(api, &h.progress.host, key).await);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::safe_file_name;

    #[test]
    fn attachment_names_keep_only_plain_characters() {
        assert_eq!(safe_file_name("ev-1.tar"), "ev-1.tar");
        assert_eq!(safe_file_name("a\"b;c\r\n.tar"), "a_b_c__.tar");
    }
}
