//! The operators' console (issue 10): server-rendered HTML pages on the
//! operators' API listener, under `/console/`. No script and nothing
//! fetched from elsewhere (the collector may be air-gapped): the
//! Content-Security-Policy allows only the console's own stylesheet and
//! form posts to itself. Every value shown is escaped by the template
//! engine (minijinja's HTML auto-escape), whatever a host, operator or
//! reason contains. Traditional Chinese and English (Fluent catalogues).
//!
//! The same authentication and role checks as the API apply: a password
//! login makes the session ([`crate::api::sessions`]); each form carries
//! the session's CSRF token; opening an incident needs responder or admin.
//!
//! Pages so far: login, dashboard (hosts green / yellow / red by last
//! poll, sortable, CSV; incidents; the open-an-incident form), incident
//! detail (progress, bundle download and verification, custody trail),
//! host detail (streams in the store, lag, days kept). Still to come
//! (issue 10): coverage heatmap, findings and reports, operators.

pub mod i18n;
pub mod table;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use minijinja::{context, Environment};

use crate::api::auth::{self, Operator, Via};
use crate::api::handlers::{host_rows, incident_rows, session_operator};
use crate::api::roles::{allowed, Action};
use crate::api::{sessions, Api, Reply};
use crate::incident::commands::{self, Hosts};
use i18n::Lang;

const CSS: &str = include_str!("../../console/console.css");
/// A padlock-blue square, so browsers do not ask for `/favicon.ico`.
const FAVICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><rect width='16' height='16' rx='3' fill='#1f3a5f'/></svg>";
const TEMPLATES: [(&str, &str); 5] = [
    (
        "base.html",
        include_str!("../../console/templates/base.html"),
    ),
    (
        "login.html",
        include_str!("../../console/templates/login.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../console/templates/dashboard.html"),
    ),
    (
        "host.html",
        include_str!("../../console/templates/host.html"),
    ),
    (
        "incident.html",
        include_str!("../../console/templates/incident.html"),
    ),
];
/// Forms are small.
const MAX_FORM_BYTES: usize = 16 * 1024;
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("cache-control", "no-store")
        .header("content-security-policy", CSP)
        .header("x-content-type-options", "nosniff")
        .header("x-frame-options", "DENY")
        .header("referrer-policy", "no-referrer")
        .body(Full::new(body.into()))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn redirect(to: &str, cookie: Option<String>) -> Reply {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(v) = to.parse() {
        r.headers_mut().insert(hyper::header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| c.parse().ok()) {
        r.headers_mut().insert(hyper::header::SET_COOKIE, c);
    }
    r
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Renders `template` with the page's common values.
fn page(
    status: StatusCode,
    template: &str,
    lang: Lang,
    who: Option<&Operator>,
    extra: minijinja::Value,
) -> Reply {
    let mut env = Environment::new();
    for (name, text) in TEMPLATES {
        if let Err(e) = env.add_template(name, text) {
            return respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                format!("console template {name}: {e}"),
            );
        }
    }
    let csrf = match who.map(|o| &o.via) {
        Some(Via::Session { csrf, .. }) => csrf.clone(),
        _ => String::new(),
    };
    let base = context! {
        lang => lang.tag(),
        other_lang => lang.other().tag(),
        t => i18n::messages(lang),
        operator => who.map(|o| o.name.clone()),
        role => who.map(|o| o.role.as_str()),
        csrf => csrf,
    };
    let ctx = context! { ..base, ..extra };
    match env.get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => respond(status, "text/html; charset=utf-8", html),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("rendering {template}: {e}"),
        ),
    }
}

/// One console request.
pub async fn handle(
    api: &Api,
    cert: Option<&[u8]>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let lang = Lang::choose(query_param(&req, "lang").as_deref(), accept.as_deref());
    let q = format!("?lang={}", lang.tag());
    if path == "/console/console.css" {
        return respond(StatusCode::OK, "text/css; charset=utf-8", CSS);
    }
    if path == "/console/favicon.svg" {
        return respond(StatusCode::OK, "image/svg+xml", FAVICON);
    }
    if path == "/console/login" {
        return match method {
            Method::POST => login(api, addr, lang, req).await,
            _ => page(StatusCode::OK, "login.html", lang, None, context! {}),
        };
    }
    let token = sessions::token_of(req.headers());
    let who = match (cert, token) {
        (_, Some(t)) => session_operator(api, &t).ok(),
        (Some(_), None) => auth::operator_of(cert, &api.ca_dir, &api.app.revocations).ok(),
        (None, None) => None,
    };
    let Some(op) = who else {
        return redirect(&format!("/console/login{q}"), None);
    };
    match (method, path.as_str()) {
        (Method::GET, "/console" | "/console/") => {
            let sort = Sort::of(&req);
            dashboard_sorted(api, lang, &op, None, sort)
        }
        (Method::GET, "/console/hosts.csv") => {
            let rows = host_rows(api).unwrap_or_default();
            csv_reply("hosts.csv", table::csv(&rows, &HOST_COLUMNS))
        }
        (Method::GET, "/console/incidents.csv") => {
            let rows = incident_rows(api).unwrap_or_default();
            csv_reply("incidents.csv", table::csv(&rows, &INCIDENT_COLUMNS))
        }
        (Method::GET, p) if p.starts_with("/console/hosts/") => {
            let host = decode(&p["/console/hosts/".len()..]);
            match crate::api::host_detail::detail(api, &host).await {
                Ok(h) => page(
                    StatusCode::OK,
                    "host.html",
                    lang,
                    Some(&op),
                    context! { h => h, here => p.to_string() },
                ),
                Err(e) => dashboard(api, lang, &op, Some(e)),
            }
        }
        (Method::GET, p) if p.starts_with("/console/incidents/") => {
            let id = &p["/console/incidents/".len()..];
            incident_page(api, lang, &op, id, None).await
        }
        (Method::POST, p) if p.starts_with("/console/incidents/") && p.ends_with("/verify") => {
            let parts: Vec<&str> = p.split('/').collect();
            // "", "console", "incidents", ID, "hosts", HOST, "verify"
            let (id, host) = match parts.as_slice() {
                ["", "console", "incidents", id, "hosts", host, "verify"] => {
                    (decode(id), decode(host))
                }
                _ => {
                    return dashboard(
                        api,
                        lang,
                        &op,
                        Some((StatusCode::NOT_FOUND, format!("{path}: no such page"))),
                    )
                }
            };
            if !allowed(op.role, Action::Verify) {
                tracing::warn!(operator = %op.name, role = op.role.as_str(), "console: refused: may not verify evidence");
                let why = format!(
                    "operator {} ({}) may not verify evidence; {} may",
                    op.name,
                    op.role.as_str(),
                    Action::Verify.who_may()
                );
                return incident_page(api, lang, &op, &id, Some(Err((StatusCode::FORBIDDEN, why))))
                    .await;
            }
            if let Err(e) = form(&op, req).await {
                return incident_page(api, lang, &op, &id, Some(Err(e))).await;
            }
            api.app.metrics.api_changes.fetch_add(1, Ordering::Relaxed);
            let done = crate::api::evidence::verification(api, &op, &id, &host).await;
            incident_page(api, lang, &op, &id, Some(done)).await
        }
        (Method::POST, "/console/logout") => match form(&op, req).await {
            Err(e) => dashboard(api, lang, &op, Some(e)),
            Ok(_) => {
                if let Via::Session { token, .. } = &op.via {
                    api.sessions.end(token);
                }
                tracing::info!(operator = %op.name, "console: logout");
                redirect(
                    &format!("/console/login{q}"),
                    Some(sessions::clear_cookie()),
                )
            }
        },
        (Method::POST, "/console/incidents") => {
            if !allowed(op.role, Action::OpenIncident) {
                tracing::warn!(operator = %op.name, role = op.role.as_str(), "console: refused: may not open an incident");
                return dashboard(
                    api,
                    lang,
                    &op,
                    Some((
                        StatusCode::FORBIDDEN,
                        format!(
                            "operator {} ({}) may not open an incident",
                            op.name,
                            op.role.as_str()
                        ),
                    )),
                );
            }
            let fields = match form(&op, req).await {
                Ok(f) => f,
                Err(e) => return dashboard(api, lang, &op, Some(e)),
            };
            let get = |k: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default()
            };
            let id = get("id");
            let hosts: Vec<String> = get("hosts")
                .split(',')
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .collect();
            match commands::open(
                &api.state_dir,
                &id,
                Hosts::Named(hosts),
                &op.name,
                &get("reason"),
            ) {
                Ok(named) => {
                    tracing::info!(operator = %op.name, incident = %id, hosts = named.len(), "console: incident opened");
                    api.app.metrics.api_changes.fetch_add(1, Ordering::Relaxed);
                    let link: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
                    redirect(&format!("/console/incidents/{link}{q}"), None)
                }
                Err(e) => dashboard(
                    api,
                    lang,
                    &op,
                    Some((StatusCode::BAD_REQUEST, format!("{e:#}"))),
                ),
            }
        }
        _ => dashboard(
            api,
            lang,
            &op,
            Some((StatusCode::NOT_FOUND, format!("{path}: no such page"))),
        ),
    }
}

/// A percent-decoded path segment (hosts and ids are linked encoded).
fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={segment}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// An incident's page: progress per host, the bundles' actions, each
/// bundle's custody trail, and a verification's outcome when one was just
/// asked for.
async fn incident_page(
    api: &Api,
    lang: Lang,
    op: &Operator,
    id: &str,
    verified: Option<Result<serde_json::Value, (StatusCode, String)>>,
) -> Reply {
    let s = match commands::status(&api.state_dir, id) {
        Ok(s) => s,
        Err(e) => {
            return dashboard(
                api,
                lang,
                op,
                Some((StatusCode::NOT_FOUND, format!("{e:#}"))),
            )
        }
    };
    let trails = crate::api::evidence::trails(api, id)
        .await
        .unwrap_or_default();
    let (status, verified, error) = match verified {
        None => (StatusCode::OK, None, None),
        Some(Ok(v)) => (StatusCode::OK, Some(v), None),
        Some(Err((status, why))) => (status, None, Some(why)),
    };
    page(
        status,
        "incident.html",
        lang,
        Some(op),
        context! {
            here => format!("/console/incidents/{}", s.id),
            s => s,
            trails => trails,
            verified => verified,
            error => error,
            may_download => allowed(op.role, Action::Download),
            may_verify => allowed(op.role, Action::Verify) && matches!(op.via, Via::Session { .. }),
        },
    )
}

/// The columns the hosts and incidents tables export (and sort by).
const HOST_COLUMNS: [&str; 6] = [
    "host",
    "state",
    "last_seen",
    "enrolled",
    "revoked",
    "certificates",
];
const INCIDENT_COLUMNS: [&str; 6] = ["id", "opened", "operator", "reason", "hosts", "released"];

/// `?sort=COLUMN&order=asc|desc` of the dashboard's hosts table.
struct Sort {
    column: String,
    descending: bool,
}

impl Sort {
    fn of(req: &Request<Incoming>) -> Sort {
        let column = query_param(req, "sort")
            .filter(|c| HOST_COLUMNS.contains(&c.as_str()))
            .unwrap_or_else(|| "host".to_string());
        Sort {
            column,
            descending: query_param(req, "order").as_deref() == Some("desc"),
        }
    }
}

fn csv_reply(name: &str, body: String) -> Reply {
    let mut r = respond(StatusCode::OK, "text/csv; charset=utf-8", body);
    if let Ok(v) = format!("attachment; filename=\"{name}\"").parse() {
        r.headers_mut()
            .insert(hyper::header::CONTENT_DISPOSITION, v);
    }
    r
}

fn dashboard(api: &Api, lang: Lang, op: &Operator, error: Option<(StatusCode, String)>) -> Reply {
    let sort = Sort {
        column: "host".into(),
        descending: false,
    };
    dashboard_sorted(api, lang, op, error, sort)
}

fn dashboard_sorted(
    api: &Api,
    lang: Lang,
    op: &Operator,
    error: Option<(StatusCode, String)>,
    sort: Sort,
) -> Reply {
    let mut hosts = host_rows(api).unwrap_or_default();
    table::sort(&mut hosts, &sort.column, sort.descending);
    let incidents = incident_rows(api).unwrap_or_default();
    let (status, message) = match error {
        Some((s, m)) => (s, Some(m)),
        None => (StatusCode::OK, None),
    };
    page(
        status,
        "dashboard.html",
        lang,
        Some(op),
        context! {
            hosts => hosts,
            sort => sort.column,
            order => if sort.descending { "desc" } else { "asc" },
            incidents => incidents,
            may_open => allowed(op.role, Action::OpenIncident) && matches!(op.via, Via::Session { .. }),
            state_rule => i18n::messages_with(lang, &[
                ("quiet", api.thresholds.quiet_after.as_secs()),
                ("silent", api.thresholds.silent_after.as_secs()),
            ]).remove("state-rule"),
            error => message,
        },
    )
}

/// A posted form's fields, once its CSRF token matches the session's.
async fn form(
    op: &Operator,
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, (StatusCode, String)> {
    let Via::Session { csrf, .. } = &op.via else {
        return Err((StatusCode::FORBIDDEN, "changes from the console need a password login (its forms carry the session's CSRF token)".into()));
    };
    let bytes = Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
        .map_err(|e| {
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the form could not be read: {e}"),
            )
        })?
        .to_bytes();
    let fields: Vec<(String, String)> = form_urlencoded::parse(&bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let sent = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !sessions::same_token(sent, csrf) {
        tracing::warn!(operator = %op.name, "console: refused: CSRF token missing or wrong");
        return Err((
            StatusCode::FORBIDDEN,
            "the form's CSRF token does not match this session: reload the page".into(),
        ));
    }
    Ok(fields)
}

async fn login(api: &Api, addr: SocketAddr, lang: Lang, req: Request<Incoming>) -> Reply {
    let t = i18n::messages(lang);
    // The page says what went wrong (a 4xx would only add a console error).
    let failed = |status: StatusCode, key: &str| {
        page(
            status,
            "login.html",
            lang,
            None,
            context! { error => t.get(key).cloned().unwrap_or_default() },
        )
    };
    let bytes = match Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return failed(StatusCode::PAYLOAD_TOO_LARGE, "login-failed"),
    };
    let mut name = String::new();
    let mut password = String::new();
    for (k, v) in form_urlencoded::parse(&bytes) {
        match k.as_ref() {
            "name" => name = v.into_owned(),
            "password" => password = v.into_owned(),
            _ => {}
        }
    }
    let token = match crate::api::login::attempt(api, addr, &name, password, "console").await {
        Ok((token, _)) => token,
        Err(crate::api::login::Refused::Limited(_)) => {
            return failed(StatusCode::OK, "login-limited")
        }
        Err(crate::api::login::Refused::WrongNameOrPassword) => {
            return failed(StatusCode::OK, "login-failed")
        }
    };
    redirect(
        &format!("/console/?lang={}", lang.tag()),
        Some(sessions::set_cookie(&token)),
    )
}
