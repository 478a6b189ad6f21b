//! `GET /v1/incidents` and `POST /v1/incidents/<id>/status` (FORMAT.md
//! §15.2): an agent asks which open incidents name it, and reports its
//! progress on one.

use std::sync::Arc;

use bytes::Bytes;
use custody_evidence::HostId;
use custody_store::https::{IncidentNotices, IncidentReport, INCIDENTS_PATH};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::reply::{self, Reply};
use crate::app::App;
use crate::incident::ReportRefusal;

/// A progress report is a few hundred bytes.
const MAX_REPORT_BYTES: usize = 16 * 1024;

fn json_reply(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|e| reply::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => reply::text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn no_office() -> Reply {
    reply::text(
        StatusCode::NOT_FOUND,
        "this collector does not run incidents",
    )
}

pub async fn list(app: &Arc<App>, host: &HostId) -> Reply {
    let Some(office) = &app.incidents else {
        return no_office();
    };
    match office.notices(host) {
        Ok(incidents) => json_reply(&IncidentNotices { incidents }),
        Err(e) => reply::text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading the incident records: {e:#}"),
        ),
    }
}

/// `path` is the request path; `POST /v1/incidents/<id>/status`.
pub async fn report(app: &Arc<App>, host: &HostId, path: &str, req: Request<Incoming>) -> Reply {
    let id = path
        .strip_prefix(INCIDENTS_PATH)
        .and_then(|r| r.strip_prefix('/'))
        .and_then(|r| r.strip_suffix("/status"))
        .map(str::to_string);
    let Some(id) = id else {
        super::drain(req.into_body()).await;
        return reply::text(
            StatusCode::NOT_FOUND,
            format!("no such endpoint {path}; progress goes to POST {INCIDENTS_PATH}/<id>/status"),
        );
    };
    let Some(office) = &app.incidents else {
        super::drain(req.into_body()).await;
        return no_office();
    };
    let body =
        match super::body::read(req.into_body(), MAX_REPORT_BYTES, app.limits.idle_timeout).await {
            Ok(b) => b,
            Err(e @ super::body::BodyError::Stalled { .. }) => {
                return reply::closing(StatusCode::REQUEST_TIMEOUT, e.to_string())
            }
            Err(e) => {
                return reply::text(
                    StatusCode::BAD_REQUEST,
                    format!("reading the report (at most {MAX_REPORT_BYTES} bytes): {e}"),
                )
            }
        };
    let report: IncidentReport = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return reply::text(
                StatusCode::BAD_REQUEST,
                format!("the report is not an incident report (JSON with state, evidence_id, bundle_key, reason): {e}"),
            )
        }
    };
    let lock = app.host_lock(host);
    let _guard = lock.lock().await;
    match office.report(host, &id, &report) {
        Ok(p) => json_reply(&p),
        Err(ReportRefusal::NotFound(why)) => reply::text(StatusCode::NOT_FOUND, why),
        Err(ReportRefusal::Invalid(why)) => reply::text(StatusCode::BAD_REQUEST, why),
        Err(ReportRefusal::Failed(why)) => reply::text(StatusCode::INTERNAL_SERVER_ERROR, why),
    }
}
