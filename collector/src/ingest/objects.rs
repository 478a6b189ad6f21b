//! `PUT`, `GET` and `HEAD /v1/objects/<key>`: one object of the caller's
//! own namespace `v1/<host>/…`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use custody_evidence::layout;
use custody_evidence::timefmt::{format_utc, parse_utc};
use custody_evidence::HostId;
use custody_store::https::{LEGAL_HOLD_HEADER, RETAIN_UNTIL_HEADER};
use custody_store::{check_key, PutOptions, PutOutcome, StoreError};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use time::OffsetDateTime;

use super::body::BodyError;
use super::reply::{self, Reply};
use crate::app::App;
use crate::receipt::Refusal;

/// Seconds an agent is asked to wait after a 503.
const RETRY_AFTER_S: u32 = 5;

/// A refusal unless `key` is a valid name inside `v1/<host>/` (400, 403).
fn refuse_foreign(host: &HostId, key: &str) -> Option<Reply> {
    if let Err(e) = check_key(key) {
        return Some(reply::text(StatusCode::BAD_REQUEST, e.to_string()));
    }
    let own = layout::host_prefix(host);
    if !key.starts_with(&own) {
        return Some(reply::text(
            StatusCode::FORBIDDEN,
            format!("host {host} may only use its own namespace {own}; refused {key}"),
        ));
    }
    None
}

fn store_failure(app: &App, op: &'static str, key: &str, e: StoreError) -> Reply {
    app.metrics.store_error(op);
    if e.is_transient() {
        tracing::error!(%key, "backing store {op} failed: {e}");
        reply::busy(
            format!(
                "backing store unavailable, nothing was acknowledged; keep the data and retry: {e}"
            ),
            RETRY_AFTER_S,
        )
    } else {
        tracing::error!(%key, "backing store {op} failed: {e}");
        reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("backing store {op} failed: {e}"),
        )
    }
}

/// What the headers of an acceptable PUT say.
struct Admitted {
    parsed: layout::ParsedKey,
    retain_until: OffsetDateTime,
}

pub async fn put(app: &Arc<App>, host: &HostId, key: &str, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let admitted = match admit(app, host, key, &parts.headers) {
        Ok(a) => a,
        Err(refusal) => {
            super::drain(body).await;
            return refusal;
        }
    };
    let max = app.limits.max_body_bytes;
    let len = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(max);
    // Back-pressure: never hold more than max_inflight_bytes of bodies.
    let Ok(_budget) = app.body_budget.try_acquire_many(len.max(1) as u32) else {
        super::drain(body).await;
        return reply::busy(
            "collector busy: too many upload bytes in memory; keep the data and retry",
            1,
        );
    };
    let body: Bytes = match super::body::read(body, max as usize, app.limits.idle_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge { .. }) => {
            return reply::text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body exceeds this collector's max_body_bytes ({max})"),
            );
        }
        Err(e @ BodyError::Stalled { .. }) => {
            return reply::closing(StatusCode::REQUEST_TIMEOUT, e.to_string())
        }
        Err(e) => return reply::text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    app.metrics
        .inflight_bytes
        .fetch_add(body.len() as i64, std::sync::atomic::Ordering::Relaxed);
    let reply = store_checked(
        app,
        host,
        key,
        &admitted.parsed,
        &body,
        admitted.retain_until,
    )
    .await;
    app.metrics
        .inflight_bytes
        .fetch_sub(body.len() as i64, std::sync::atomic::Ordering::Relaxed);
    reply
}

/// The checks a PUT's name and headers must pass before its body is read.
#[allow(clippy::result_large_err)] // the refusal is the reply itself, built once
fn admit(
    app: &App,
    host: &HostId,
    key: &str,
    headers: &hyper::HeaderMap,
) -> Result<Admitted, Reply> {
    if let Some(r) = refuse_foreign(host, key) {
        return Err(r);
    }
    let Some(parsed) = layout::parse_key(key) else {
        return Err(reply::text(
            StatusCode::BAD_REQUEST,
            format!("{key} is not an object name of the v1 layout (FORMAT.md §8)"),
        ));
    };
    if matches!(parsed, layout::ParsedKey::BundleEvent { .. }) {
        return Err(reply::text(
            StatusCode::FORBIDDEN,
            format!("{key}: custody events beside a stored bundle are written by the collector only (FORMAT.md §15.4)"),
        ));
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let Some(retain) = header(RETAIN_UNTIL_HEADER) else {
        return Err(reply::text(
            StatusCode::BAD_REQUEST,
            format!("header {RETAIN_UNTIL_HEADER} (RFC 3339 UTC) is required"),
        ));
    };
    let retain_until = parse_utc(&retain).map_err(|e| {
        reply::text(
            StatusCode::BAD_REQUEST,
            format!("header {RETAIN_UNTIL_HEADER} {retain:?} is not an RFC 3339 time: {e}"),
        )
    })?;
    let max = app.limits.max_body_bytes;
    let Some(len) = header("content-length").and_then(|v| v.parse::<u64>().ok()) else {
        return Err(reply::text(
            StatusCode::LENGTH_REQUIRED,
            "Content-Length is required",
        ));
    };
    if len > max {
        return Err(reply::text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body of {len} bytes exceeds this collector's max_body_bytes ({max})"),
        ));
    }
    Ok(Admitted {
        parsed,
        retain_until,
    })
}

async fn store_checked(
    app: &Arc<App>,
    host: &HostId,
    key: &str,
    parsed: &layout::ParsedKey,
    body: &[u8],
    asked: OffsetDateTime,
) -> Reply {
    let lock = app.host_lock(host);
    let _guard = lock.lock().await;
    let checked = match app.receipt.check(host, key, parsed, body).await {
        Ok(c) => c,
        Err(Refusal::Invalid(why)) => return reply::text(StatusCode::BAD_REQUEST, why),
        Err(Refusal::Unavailable(why)) => {
            app.metrics.store_error("read");
            return reply::busy(
                format!("backing store unavailable, nothing was acknowledged; keep the data and retry: {why}"),
                RETRY_AFTER_S,
            );
        }
    };
    // The later of what the agent asks and this collector's own policy.
    let policy = app.retention.retain_until(OffsetDateTime::now_utc());
    let retain_until = asked.max(policy);
    let started = Instant::now();
    let outcome = app.store.put(key, body, PutOptions { retain_until }).await;
    app.metrics.store_put(started.elapsed());
    let created = match outcome {
        Ok(PutOutcome::Created) => true,
        Ok(PutOutcome::AlreadyPresent) => false,
        Err(StoreError::Conflict { .. }) => {
            tracing::error!(%host, %key, "INTEGRITY ALARM: different bytes uploaded under an existing name; the stored object is kept unchanged");
            return reply::text(
                StatusCode::CONFLICT,
                format!("{key} already exists with different content: never overwritten (integrity alarm)"),
            );
        }
        Err(e @ StoreError::InvalidKey { .. }) => {
            return reply::text(StatusCode::BAD_REQUEST, e.to_string())
        }
        Err(e) => return store_failure(app, "put", key, e),
    };
    if matches!(parsed, layout::ParsedKey::Bundle { .. }) {
        if let Some(office) = &app.incidents {
            office
                .bundle_stored(app.store.as_ref(), &app.retention, host, key, body)
                .await;
        }
    }
    let is_segment = checked.is_segment;
    for finding in app.receipt.stored(checked, created).await {
        app.findings.record(&finding, &app.metrics);
    }
    if created {
        app.metrics
            .received(host.as_str(), body.len() as u64, is_segment);
        reply::text(StatusCode::CREATED, format!("stored {key}"))
    } else {
        reply::text(
            StatusCode::OK,
            format!("{key} was already stored with the same content"),
        )
    }
}

pub async fn get(app: &Arc<App>, host: &HostId, key: &str, head_only: bool) -> Reply {
    if let Some(r) = refuse_foreign(host, key) {
        return r;
    }
    let info = match app.store.head(key).await {
        Ok(Some(i)) => i,
        Ok(None) => return reply::text(StatusCode::NOT_FOUND, format!("{key} is not stored")),
        Err(e) => return store_failure(app, "head", key, e),
    };
    let body = if head_only {
        Bytes::new()
    } else {
        match app.store.get(key).await {
            Ok(b) => Bytes::from(b),
            Err(StoreError::NotFound { .. }) => {
                return reply::text(StatusCode::NOT_FOUND, format!("{key} is not stored"))
            }
            Err(e) => return store_failure(app, "get", key, e),
        }
    };
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/octet-stream")
        .header(RETAIN_UNTIL_HEADER, format_utc(info.retain_until))
        .header(
            LEGAL_HOLD_HEADER,
            if info.legal_hold { "true" } else { "false" },
        );
    if head_only {
        builder = builder.header("content-length", info.len);
    }
    builder
        .body(Full::new(body))
        .unwrap_or_else(|e| reply::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
