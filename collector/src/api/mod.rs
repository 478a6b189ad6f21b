//! The operators' API (issue 10): HTTPS on its own listener
//! (`api_listen`), JSON under `/api/v1`, separate from agent ingest.
//!
//! Every request is authenticated ([`auth`]: an operator certificate from
//! the collector CA, checked against the operator and revocation lists)
//! and its action checked against the operator's role ([`roles`]) before
//! a byte of its body is read. A mutation must be `Content-Type:
//! application/json` and carry no foreign `Origin`: a browser holding an
//! operator certificate cannot be made to send one from another site's
//! form (that needs a CORS preflight this server never answers). Every
//! mutation is logged with the operator's name and role, and the incident
//! records and custody events it writes name the operator.
//!
//! What is here so far: who am I, hosts (enrolled, revoked, last seen),
//! incidents (list, status, open, two-person release), password logins and
//! sessions, and each incident's bundles ([`evidence`]: download, verify,
//! custody trail). Coverage, findings and reports, host detail,
//! enrollment and revocation are still to come (issue 10).

pub mod auth;
pub mod client;
pub mod evidence;
pub mod handlers;
pub mod host_detail;
pub mod login;
pub mod passwords;
pub mod roles;
pub mod sessions;

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::app::App;

/// At most this many operator connections at once: a console is a handful
/// of people, not a fleet.
const MAX_API_CONNECTIONS: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest request body read (requests are small JSON objects).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What the API's handlers share.
pub struct Api {
    pub app: Arc<App>,
    pub ca_dir: PathBuf,
    pub state_dir: PathBuf,
    pub sessions: sessions::Sessions,
    /// When a host is shown yellow and red.
    pub thresholds: crate::config::HostThresholds,
}

pub type Reply = Response<Full<Bytes>>;

/// A JSON reply (`Cache-Control: no-store`: evidence state is never
/// cached by a browser or proxy).
pub fn json_reply(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .header("x-content-type-options", "nosniff")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// `{"error": …}` with `status`.
pub fn error_reply(status: StatusCode, message: impl Into<String>) -> Reply {
    json_reply(status, &serde_json::json!({ "error": message.into() }))
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    api: Arc<Api>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_API_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!("api: accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, api) = (acceptor.clone(), api.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::warn!(%addr, "api: refused connection: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::warn!(%addr, "api: refused connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                    return;
                }
            };
            let cert: Option<Vec<u8>> = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec());
            let cert = Arc::new(cert);
            let service = service_fn(move |req| {
                let (api, cert) = (api.clone(), cert.clone());
                async move {
                    Ok::<_, Infallible>(handlers::handle(&api, cert.as_deref(), addr, req).await)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(IDLE_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(%addr, "api: connection ended: {e}");
            }
        });
    }
}
