//! The requests of the operators' API, each authenticated and checked for
//! its role before its body is read (see the module above).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use super::auth::{self, Operator, Refusal, Via};
use super::roles::{allowed, Action};
use super::sessions;
use super::{error_reply, json_reply, Api, Reply, MAX_BODY_BYTES};
use crate::incident::commands::{self, Hosts};
use crate::incident::state::Desk;
use crate::revocation::{self, Issued, Revoked, ISSUED_FILE, REVOKED_FILE};

/// One request, from authentication to reply; refusals are logged.
pub async fn handle(
    api: &Api,
    cert: Option<&[u8]>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let session_token = sessions::token_of(req.headers());
    if crate::console::is_console(&path) {
        let reply = crate::console::handle(api, cert, addr, req).await;
        if matches!(
            reply.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) {
            api.app.metrics.api_denied.fetch_add(1, Ordering::Relaxed);
        }
        return reply;
    }
    if cert.is_none() && method == Method::POST && path == "/api/v1/login" {
        return login(api, addr, req).await;
    }
    let who = match (cert, session_token) {
        (None, Some(token)) => session_operator(api, &token),
        _ => auth::operator_of(cert, &api.ca_dir, &api.app.revocations),
    };
    let operator = match who {
        Ok(o) => o,
        Err(refusal) => {
            let (status, why) = match refusal {
                Refusal::NoCertificate => (
                    StatusCode::UNAUTHORIZED,
                    "not logged in: present the operator certificate from custody-collector operator add (operator.pem, operator.key), or log in (POST /api/v1/login) with the password set by custody-collector operator passwd".to_string(),
                ),
                Refusal::Forbidden(why) => (StatusCode::FORBIDDEN, why),
            };
            tracing::warn!(%addr, %method, %path, status = status.as_u16(), "api: refused: {why}");
            api.app.metrics.api_denied.fetch_add(1, Ordering::Relaxed);
            let mut r = error_reply(status, why);
            r.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return r;
        }
    };
    let reply = route(api, &operator, addr, req).await;
    let status = reply.status();
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        api.app.metrics.api_denied.fetch_add(1, Ordering::Relaxed);
    }
    if status.is_client_error() || status.is_server_error() {
        tracing::warn!(%addr, operator = %operator.name, role = operator.role.as_str(), %method, %path, status = status.as_u16(), "api: refused");
    } else if method != Method::GET {
        if path != "/api/v1/logout" {
            api.app.metrics.api_changes.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(%addr, operator = %operator.name, role = operator.role.as_str(), %method, %path, status = status.as_u16(), "api: done");
    }
    reply
}

/// `/api/v1/…` split into its segments; `None` outside it.
fn segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("/api/v1")?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let rest = rest.strip_prefix('/')?;
    Some(rest.split('/').filter(|s| !s.is_empty()).collect())
}

async fn route(api: &Api, op: &Operator, addr: SocketAddr, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    let Some(seg) = segments(&path) else {
        return error_reply(
            StatusCode::NOT_FOUND,
            format!("{path}: not an API path (the API is under /api/v1)"),
        );
    };
    let method = req.method().clone();
    match (method.clone(), seg.as_slice()) {
        (Method::GET, ["whoami"]) => json_reply(
            StatusCode::OK,
            &json!({ "operator": op.name, "role": op.role.as_str(), "serial": op.serial }),
        ),
        (Method::GET, ["hosts"]) => hosts(api),
        (Method::GET, ["hosts", host]) => super::host_detail::host(api, host).await,
        (Method::POST, ["logout"]) => match admit(op, Action::Read, &req) {
            Err(r) => *r,
            Ok(()) => logout(api, op),
        },
        (Method::GET, ["incidents"]) => incidents(api),
        (Method::GET, ["incidents", id]) => incident(api, id),
        (Method::GET, ["incidents", id, "custody"]) => super::evidence::trail(api, id).await,
        (Method::GET, ["incidents", id, "hosts", host, "bundle"]) => {
            match permit(op, Action::Download) {
                Err(r) => *r,
                Ok(()) => super::evidence::download(api, op, addr, id, host).await,
            }
        }
        (Method::POST, ["incidents", id, "hosts", host, "verify"]) => {
            let (id, host) = (id.to_string(), host.to_string());
            match admit(op, Action::Verify, &req) {
                Err(r) => *r,
                Ok(()) => match body::<Value>(req).await {
                    Err(r) => *r,
                    Ok(v) if v.as_object().is_some_and(|o| o.is_empty()) => {
                        super::evidence::verify(api, op, &id, &host).await
                    }
                    Ok(_) => error_reply(
                        StatusCode::BAD_REQUEST,
                        "a verification takes an empty JSON object ({}) as its body",
                    ),
                },
            }
        }
        (Method::POST, ["incidents"]) => match admit(op, Action::OpenIncident, &req) {
            Err(r) => *r,
            Ok(()) => match body::<OpenRequest>(req).await {
                Err(r) => *r,
                Ok(o) => open(api, op, o),
            },
        },
        (Method::POST, ["incidents", id, "release"]) => {
            let id = id.to_string();
            match admit(op, Action::ReleaseIncident, &req) {
                Err(r) => *r,
                Ok(()) => match body::<ReleaseRequest>(req).await {
                    Err(r) => *r,
                    Ok(r) => release(api, op, &id, r).await,
                },
            }
        }
        (
            _,
            ["whoami"]
            | ["hosts"]
            | ["hosts", _]
            | ["login"]
            | ["logout"]
            | ["incidents"]
            | ["incidents", _]
            | ["incidents", _, "custody"]
            | ["incidents", _, "hosts", _, "bundle" | "verify"]
            | ["incidents", _, "release"],
        ) => error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error_reply(
            StatusCode::NOT_FOUND,
            format!("{path}: no such API resource"),
        ),
    }
}

/// The role check of a request that changes nothing but needs more than
/// reading (a download).
fn permit(op: &Operator, action: Action) -> Result<(), Box<Reply>> {
    if allowed(op.role, action) {
        return Ok(());
    }
    Err(Box::new(error_reply(
        StatusCode::FORBIDDEN,
        format!(
            "operator {} has role {}, which may not {}; {} may",
            op.name,
            op.role.as_str(),
            action.name(),
            action.who_may()
        ),
    )))
}

/// The role and CSRF checks of a mutation, before its body is read.
fn admit(op: &Operator, action: Action, req: &Request<Incoming>) -> Result<(), Box<Reply>> {
    permit(op, action)?;
    let json_body = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json_body {
        return Err(Box::new(error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a change must be sent as Content-Type: application/json",
        )));
    }
    if let Via::Session { csrf, .. } = &op.via {
        let echoed = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !sessions::same_token(echoed, csrf) {
            return Err(Box::new(error_reply(
                StatusCode::FORBIDDEN,
                "a change made with a session must carry its X-CSRF-Token (from the login answer): refused",
            )));
        }
    }
    if let Some(origin) = req.headers().get(hyper::header::ORIGIN) {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(Box::new(error_reply(
                StatusCode::FORBIDDEN,
                "the request comes from another site (Origin does not match): refused",
            )));
        }
    }
    Ok(())
}

/// Reads a JSON body of at most [`MAX_BODY_BYTES`] as `T` (unknown fields
/// refused).
async fn body<T: for<'de> Deserialize<'de>>(req: Request<Incoming>) -> Result<T, Box<Reply>> {
    // A body over the limit is read on (discarded, up to DRAIN_CAP, for
    // at most DRAIN_TIMEOUT) before the 413: a client still sending when
    // the connection closes would get a reset instead of the answer.
    const DRAIN_CAP: usize = 4 << 20;
    const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
    let mut incoming = req.into_body();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    let read = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| format!("the body could not be read: {e}"))?;
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen <= MAX_BODY_BYTES {
                    bytes.extend_from_slice(&data);
                } else if seen > MAX_BODY_BYTES + DRAIN_CAP {
                    break;
                }
            }
        }
        Ok::<(), String>(())
    })
    .await;
    if seen > MAX_BODY_BYTES {
        let mut r = error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        );
        r.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return Err(Box::new(r));
    }
    match read {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(Box::new(error_reply(StatusCode::BAD_REQUEST, why))),
        Err(_) => {
            return Err(Box::new(error_reply(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s",
                    DRAIN_TIMEOUT.as_secs()
                ),
            )))
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        Box::new(error_reply(
            StatusCode::BAD_REQUEST,
            format!("the body is not the JSON expected: {e}"),
        ))
    })
}

/// The operator of a live session whose operator still has an unrevoked
/// certificate record (the role is read again: a revoked operator's
/// session ends at its next request).
pub(crate) fn session_operator(api: &Api, token: &str) -> Result<Operator, Refusal> {
    let Some(s) = api.sessions.get(token) else {
        return Err(Refusal::NoCertificate);
    };
    match super::passwords::live_role(&api.ca_dir, &s.name) {
        Ok(role) => Ok(Operator {
            name: s.name,
            role,
            serial: "session".into(),
            via: Via::Session {
                token: token.to_string(),
                csrf: s.csrf,
            },
        }),
        Err(e) => {
            api.sessions.end(token);
            Err(Refusal::Forbidden(format!("{e:#}")))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    name: String,
    password: String,
}

/// `POST /api/v1/login` `{"name", "password"}`: a session cookie and its
/// CSRF token. Failures are limited per address and name (429).
async fn login(api: &Api, addr: SocketAddr, req: Request<Incoming>) -> Reply {
    let is_json = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !is_json {
        return error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "log in with Content-Type: application/json",
        );
    }
    let l: LoginRequest = match body(req).await {
        Ok(l) => l,
        Err(r) => return *r,
    };
    let (token, session) = match super::login::attempt(api, addr, &l.name, l.password, "api").await
    {
        Ok(made) => made,
        Err(super::login::Refused::Limited(wait)) => {
            let mut r = error_reply(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many failed logins from this address or for this name; try again in {wait} s"
                ),
            );
            if let Ok(v) = wait.to_string().parse() {
                r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
            }
            return r;
        }
        Err(super::login::Refused::WrongNameOrPassword) => {
            return error_reply(StatusCode::UNAUTHORIZED, "wrong name or password")
        }
    };
    let mut r = json_reply(
        StatusCode::OK,
        &json!({
            "operator": l.name,
            "role": session.role.as_str(),
            "csrf_token": session.csrf,
            "expires_in_seconds": sessions::ABSOLUTE.as_secs(),
        }),
    );
    let cookie = sessions::set_cookie(&token);
    if let Ok(v) = cookie.parse() {
        r.headers_mut().insert(hyper::header::SET_COOKIE, v);
    }
    r
}

fn logout(api: &Api, op: &Operator) -> Reply {
    if let Via::Session { token, .. } = &op.via {
        api.sessions.end(token);
    }
    tracing::info!(operator = %op.name, "api: logout");
    let mut r = json_reply(StatusCode::OK, &json!({ "logged_out": op.name }));
    let clear = sessions::clear_cookie();
    if let Ok(v) = clear.parse() {
        r.headers_mut().insert(hyper::header::SET_COOKIE, v);
    }
    r
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenRequest {
    id: String,
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    all: bool,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    #[serde(default)]
    reason: Option<String>,
}

fn open(api: &Api, op: &Operator, o: OpenRequest) -> Reply {
    let hosts = match (o.all, o.hosts.is_empty()) {
        (true, true) => Hosts::All(Some(api.ca_dir.clone())),
        (false, false) => Hosts::Named(o.hosts),
        _ => {
            return error_reply(
                StatusCode::BAD_REQUEST,
                "give either \"hosts\": [\"H1\", …] or \"all\": true",
            )
        }
    };
    let desk = Desk::new(&api.state_dir);
    if custody_evidence::bundle::check_incident_id(&o.id).is_ok() && desk.exists(&o.id) {
        return error_reply(
            StatusCode::CONFLICT,
            format!("incident {} is already open on this collector", o.id),
        );
    }
    match commands::open(&api.state_dir, &o.id, hosts, &op.name, &o.reason) {
        Ok(hosts) => {
            tracing::info!(operator = %op.name, incident = %o.id, hosts = hosts.len(), "api: incident opened");
            json_reply(
                StatusCode::CREATED,
                &json!({ "id": o.id, "hosts": hosts, "operator": op.name }),
            )
        }
        Err(e) => error_reply(StatusCode::BAD_REQUEST, format!("{e:#}")),
    }
}

/// Two-person rule (the seeds' sign-off by handler and CISO): the first
/// responder's request is recorded and answered 202; a second, different
/// operator's request then releases, both names in the release record and
/// in the signed custody event.
async fn release(api: &Api, op: &Operator, id: &str, r: ReleaseRequest) -> Reply {
    let desk = Desk::new(&api.state_dir);
    if custody_evidence::bundle::check_incident_id(id).is_err() || !desk.exists(id) {
        return error_reply(
            StatusCode::NOT_FOUND,
            format!("no incident {id:?} on this collector"),
        );
    }
    match desk.release(id) {
        Ok(Some(done)) => {
            return error_reply(
                StatusCode::CONFLICT,
                format!(
                    "incident {id} was already released at {} by {}",
                    done.released, done.operator
                ),
            )
        }
        Ok(None) => {}
        Err(e) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
    if let Some(reason) = &r.reason {
        if let Err(e) = commands::check_text("reason", reason) {
            return error_reply(StatusCode::BAD_REQUEST, format!("{e:#}"));
        }
    }
    let pending = match desk.release_request(id) {
        Ok(p) => p,
        Err(e) => return error_reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    };
    let Some(pending) = pending else {
        let request = crate::incident::state::ReleaseRequest {
            requested_by: op.name.clone(),
            requested: custody_evidence::timefmt::format_utc(
                custody_evidence::timefmt::now_utc_micros(),
            ),
            reason: r.reason.clone(),
        };
        if let Err(e) = desk.write_release_request(id, &request) {
            return error_reply(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"));
        }
        tracing::info!(operator = %op.name, incident = %id, "api: release requested, awaiting a second operator");
        return json_reply(
            StatusCode::ACCEPTED,
            &json!({
                "status": "awaiting_approval",
                "requested_by": op.name,
                "requested": request.requested,
                "message": format!("release of {id} recorded; a second operator (responder or admin) must approve it with the same request"),
            }),
        );
    };
    if pending.requested_by == op.name {
        return error_reply(
            StatusCode::CONFLICT,
            format!(
                "operator {} asked for this release at {}; a second operator must approve it (two-person rule)",
                op.name, pending.requested
            ),
        );
    }
    let reason = pending.reason.as_deref().or(r.reason.as_deref());
    match commands::release(
        &api.state_dir,
        api.app.store.as_ref(),
        &api.app.retention,
        id,
        &pending.requested_by,
        Some(&op.name),
        reason,
    )
    .await
    {
        Ok(release) => {
            tracing::info!(operator = %pending.requested_by, approved_by = %op.name, incident = %id, "api: incident released");
            json_reply(
                StatusCode::OK,
                &serde_json::to_value(&release).unwrap_or(Value::Null),
            )
        }
        Err(e) => {
            let text = format!("{e:#}");
            let status = if text.contains("already released") {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_REQUEST
            };
            error_reply(status, text)
        }
    }
}

fn incident(api: &Api, id: &str) -> Reply {
    match commands::status(&api.state_dir, id) {
        Ok(s) => json_reply(
            StatusCode::OK,
            &serde_json::to_value(&s).unwrap_or(Value::Null),
        ),
        Err(e) => {
            let text = format!("{e:#}");
            let status = if text.contains("no incident") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            error_reply(status, text)
        }
    }
}

fn incidents(api: &Api) -> Reply {
    match incident_rows(api) {
        Ok(list) => json_reply(StatusCode::OK, &json!({ "incidents": list })),
        Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Every incident recorded on this collector, newest id last.
pub(crate) fn incident_rows(api: &Api) -> Result<Vec<Value>, String> {
    let desk = Desk::new(&api.state_dir);
    let ids = desk.ids().map_err(|e| format!("{e:#}"))?;
    Ok(ids
        .iter()
        .map(|id| {
            let inc = desk.incident(id).ok().flatten();
            let released = desk.release(id).ok().flatten();
            json!({
                "id": id,
                "opened": inc.as_ref().map(|i| i.opened.clone()),
                "operator": inc.as_ref().map(|i| i.operator.clone()),
                "reason": inc.as_ref().map(|i| i.reason.clone()),
                "hosts": inc.as_ref().map(|i| i.hosts.clone()).unwrap_or_default(),
                "released": released.as_ref().map(|r| r.released.clone()),
            })
        })
        .collect())
}

/// Enrolled hosts (and hosts that polled without being enrolled here),
/// each with its certificates' state and when it last polled.
fn hosts(api: &Api) -> Reply {
    match host_rows(api) {
        Ok(list) => json_reply(
            StatusCode::OK,
            &json!({
                "hosts": list,
                "state_rule": format!(
                    "green: polled within {} s; yellow: within {} s; red: longer; never: has not polled this collector",
                    api.thresholds.quiet_after.as_secs(),
                    api.thresholds.silent_after.as_secs()
                ),
            }),
        ),
        Err(e) => error_reply(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// One row per enrolled host (and host that polled): certificates,
/// revoked, last seen and its state.
pub(crate) fn host_rows(api: &Api) -> Result<Vec<Value>, String> {
    let enrolled = crate::pki::enrolled_hosts(&api.ca_dir).map_err(|e| format!("{e:#}"))?;
    let issued: Vec<Issued> =
        revocation::read_lines(&api.ca_dir.join(ISSUED_FILE)).unwrap_or_default();
    let revoked: Vec<Revoked> =
        revocation::read_lines(&api.ca_dir.join(REVOKED_FILE)).unwrap_or_default();
    let desk = Desk::new(&api.state_dir);
    let mut names: BTreeSet<String> = enrolled.iter().cloned().collect();
    names.extend(desk.seen_hosts().unwrap_or_default());
    let now = OffsetDateTime::now_utc();
    let green = time::Duration::try_from(api.thresholds.quiet_after).unwrap_or(time::Duration::MAX);
    let yellow =
        time::Duration::try_from(api.thresholds.silent_after).unwrap_or(time::Duration::MAX);
    let list: Vec<Value> = names
        .iter()
        .map(|h| {
            let certs: Vec<&Issued> = issued.iter().filter(|i| &i.host == h).collect();
            let live = certs
                .iter()
                .filter(|i| !revoked.iter().any(|r| r.serial == i.serial))
                .count();
            let last_seen = desk.last_seen(h);
            let age = last_seen
                .as_deref()
                .and_then(|t| custody_evidence::timefmt::parse_utc(t).ok())
                .map(|t| now - t);
            let state = match age {
                None => "never",
                Some(a) if a <= green => "green",
                Some(a) if a <= yellow => "yellow",
                Some(_) => "red",
            };
            json!({
                "host": h,
                "enrolled": enrolled.contains(h),
                "certificates": certs.len(),
                "revoked": !certs.is_empty() && live == 0,
                "last_seen": last_seen,
                "last_seen_seconds_ago": age.map(|a| a.whole_seconds()),
                "state": state,
            })
        })
        .collect();
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn paths_split_under_the_prefix_only() {
        assert_eq!(
            segments("/api/v1/incidents/INC-1/release"),
            Some(vec!["incidents", "INC-1", "release"])
        );
        assert_eq!(segments("/api/v1"), Some(vec![]));
        assert_eq!(segments("/api/v10/hosts"), None);
        assert_eq!(segments("/healthz"), None);
    }
}
