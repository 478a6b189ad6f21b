//! One host on the operators' API: what the store holds of it, per
//! stream (how many segments, the oldest and newest read, how far behind
//! now the newest durable segment is), and its newest signed digest. Read
//! from the store itself, not from what agents say: it is what an
//! incident snapshot and an auditor would find.

use std::collections::BTreeMap;

use custody_evidence::layout::{digest_prefix, host_prefix, parse_key, ParsedKey};
use custody_evidence::segment::SegmentMeta;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_evidence::HostId;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::handlers::host_rows;
use super::{error_reply, json_reply, Api, Reply};

/// The newest and oldest segment record of one stream, by sequence.
#[derive(Default)]
struct StreamKeys {
    segments: u64,
    oldest: Option<(u64, String)>,
    newest: Option<(u64, String)>,
}

/// `GET /api/v1/hosts/HOST`.
pub async fn host(api: &Api, host: &str) -> Reply {
    match detail(api, host).await {
        Ok(v) => json_reply(StatusCode::OK, &v),
        Err((status, why)) => error_reply(status, why),
    }
}

async fn meta(api: &Api, key: &str) -> Result<SegmentMeta, String> {
    let bytes = api
        .app
        .store
        .get(key)
        .await
        .map_err(|e| format!("reading {key}: {e}"))?;
    SegmentMeta::decode(&bytes).map_err(|e| format!("{key} does not decode: {e}"))
}

/// What [`host`] answers; the console's host page shows the same.
pub async fn detail(api: &Api, host: &str) -> Result<Value, (StatusCode, String)> {
    let id = HostId::new(host).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("{host:?} is not a host id: {}", e.why),
        )
    })?;
    let row = host_rows(api)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e))?
        .into_iter()
        .find(|r| r["host"] == host);
    let prefix = format!("{}streams/", host_prefix(&id));
    let keys = api.app.store.list(&prefix).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("listing {prefix} in the store: {e}"),
        )
    })?;
    if row.is_none() && keys.is_empty() {
        return Err((
            StatusCode::NOT_FOUND,
            format!("no host {host} on this collector: not enrolled, never polled, nothing stored"),
        ));
    }
    let mut streams: BTreeMap<String, StreamKeys> = BTreeMap::new();
    for key in keys {
        if let Some(ParsedKey::SegmentMeta { stream, seq, .. }) = parse_key(&key) {
            let s = streams.entry(stream.to_string()).or_default();
            s.segments += 1;
            if s.oldest.as_ref().is_none_or(|(o, _)| seq.0 < *o) {
                s.oldest = Some((seq.0, key.clone()));
            }
            if s.newest.as_ref().is_none_or(|(n, _)| seq.0 > *n) {
                s.newest = Some((seq.0, key));
            }
        }
    }
    let now = now_utc_micros();
    let mut rows = Vec::new();
    for (stream, s) in &streams {
        let (Some((_, oldest)), Some((newest_seq, newest))) = (&s.oldest, &s.newest) else {
            continue;
        };
        let row = match (meta(api, oldest).await, meta(api, newest).await) {
            (Ok(first), Ok(last)) => {
                let lag = now - last.last_read;
                let kept = last.last_read - first.first_read;
                json!({
                    "stream": stream,
                    "category": last.category.as_str(),
                    "segments": s.segments,
                    "oldest_read": format_utc(first.first_read),
                    "newest_read": format_utc(last.last_read),
                    "kept_days": kept.whole_days(),
                    "lag_seconds": lag.whole_seconds().max(0),
                    "newest_seq": newest_seq,
                    "newest_segment": newest,
                    "newest_raw_sha256": last.raw_sha256.to_string(),
                })
            }
            (Err(e), _) | (_, Err(e)) => json!({
                "stream": stream,
                "segments": s.segments,
                "newest_segment": newest,
                "error": e,
            }),
        };
        rows.push(row);
    }
    let digests = api.app.store.list(&digest_prefix(&id)).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("listing the digests of {host}: {e}"),
        )
    })?;
    let newest_digest = digests
        .iter()
        .filter_map(|k| match parse_key(k) {
            Some(ParsedKey::Digest { seq, .. }) => Some((seq, k)),
            _ => None,
        })
        .max_by_key(|(seq, _)| *seq)
        .map(|(seq, k)| json!({ "seq": seq, "key": k }));
    Ok(json!({
        "host": host,
        "summary": row,
        "as_of": format_utc(now),
        "streams": rows,
        "newest_digest": newest_digest,
        "rule": "lag_seconds: now minus the last read time of the stream's newest segment in the store; kept_days: from the oldest segment's first read to the newest's last read",
    }))
}
