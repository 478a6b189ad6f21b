//! The ingest listener: HTTPS with client certificates, one module per
//! request kind ([`objects`]: PUT/GET/HEAD of one object, [`list`]: the
//! caller's own namespace). The protocol is FORMAT.md, "Collector ingest
//! protocol".
//!
//! Like mini-redis's `server::run`, [`serve`] takes its listener and a
//! shutdown signal, caps concurrent connections with semaphores (agent
//! slots and the door, [`conns`]; at a cap a connection that matters less
//! is closed to make room, and when every slot is an agent's request in
//! progress further agents wait), and on shutdown stops accepting, lets
//! each connection finish its request, and returns.
//!
//! A client that will only ever be refused (no certificate, a revoked one,
//! one naming no host: [`refused`]) never displaces an enrolled agent
//! (issue 12, D1): it never leaves the door for an agent slot, is closed
//! first at the door even in the middle of a request, and gets its 401 or
//! 403 with `Connection: close` after reading at most
//! [`refused::REFUSED_DRAIN_CAP`] of its body for at most
//! [`refused::REFUSED_DRAIN_TIMEOUT`].
//! An agent's body that stops coming for `idle_timeout` is given up
//! ([`body`]).

pub mod body;
pub mod conns;
pub mod incidents;
pub mod list;
pub mod objects;
pub mod refused;
pub mod reply;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use custody_evidence::HostId;
use custody_store::https::{INCIDENTS_PATH, LIST_PATH, OBJECTS_PATH};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::pki::host_of_certificate;
use crate::revocation::serial_of_certificate;
use conns::{Connections, Standing};
use reply::Reply;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bounds on reading a body only to discard it before a refusal.
const DRAIN_CAP: u64 = 1 << 30;
const DRAIN_TIMEOUT_BODY: Duration = Duration::from_secs(60);
/// How often a newcomer waiting for a slot looks again for an idle
/// connection to close.
const ROOM_RETRY: Duration = Duration::from_millis(500);
/// How long shutdown waits for connections to finish their requests.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// The host a certificate names, and the certificate's serial
    /// (normalized, [`crate::revocation::normalize_serial`]).
    Host(HostId, String),
    /// TLS without a client certificate: every request gets 401.
    Anonymous,
    /// A CA-signed certificate that does not name a host: 403.
    Unidentified(String),
}

/// Serves ingest on `listener` until `shutdown` completes.
///
/// Every accepted connection first takes a place at the door
/// ([`Connections::door_size`]); an authenticated one then takes one of the
/// `max_connections` agent slots, closing the agent connection idle the
/// longest when none is free ([`conns`]); only when every slot is handling
/// a request does it wait. A full door closes a refused connection or a
/// stalled handshake; when there is neither, newcomers wait in the
/// kernel's accept queue (TCP back-pressure). A connection with no
/// request for `idle_timeout` is closed by hyper's header-read timeout,
/// which starts whenever the connection waits for a request head: it
/// bounds both idle keep-alive connections and slowly sent headers
/// (slowloris).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(app.limits.max_connections));
    let door_size = Connections::door_size(app.limits.max_connections);
    let door = Arc::new(Semaphore::new(door_size));
    let conns = Connections::new();
    let refusals = Arc::new(refused::RefusalLog::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::error!("accepting a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let place = match door.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                match room_at_door(&door, &conns, &app, &mut shutdown).await {
                    Some(p) => p,
                    None => break,
                }
            }
        };
        let registered = conns.register();
        let (acceptor, app, stop_rx) = (acceptor.clone(), app.clone(), stop_rx.clone());
        let ctx = ConnCtx {
            conns: conns.clone(),
            refusals: refusals.clone(),
            slots: slots.clone(),
            registered,
        };
        tokio::spawn(async move {
            app.metrics.connections.fetch_add(1, Ordering::Relaxed);
            connection(tcp, addr, acceptor, &app, ctx, place, stop_rx).await;
            app.metrics.connections.fetch_sub(1, Ordering::Relaxed);
        });
    }
    let _ = stop_tx.send(true);
    drop(listener);
    // Every permit back means every connection task has ended.
    let all = async {
        let _s = slots.acquire_many(app.limits.max_connections as u32).await;
        let _d = door.acquire_many(door_size as u32).await;
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::warn!("shutdown: connections still open after {DRAIN_TIMEOUT:?}; closing them");
    }
}

/// Counts a connection asked to close to make room.
fn closed_for_room(app: &App, standing: Standing) {
    app.metrics
        .connections_closed_for_room
        .fetch_add(1, Ordering::Relaxed);
    if standing == Standing::Refused {
        app.metrics
            .refused_connections_closed
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// The door is full with a newcomer accepted: closes a refused connection
/// or a stalled handshake ([`Connections::close_at_door`]) and waits for
/// its place, looking again as soon as a handshake at the door turns out
/// refused, and every [`ROOM_RETRY`] (handshakes in their grace time
/// finish or stall meanwhile). Never closes an agent's
/// connection. `None` on shutdown.
async fn room_at_door(
    door: &Arc<Semaphore>,
    conns: &Connections,
    app: &App,
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<OwnedSemaphorePermit> {
    loop {
        let refused = conns.refused_at_door();
        tokio::pin!(refused);
        refused.as_mut().enable();
        if let Some(standing) = conns.close_at_door() {
            closed_for_room(app, standing);
        }
        tokio::select! {
            _ = shutdown.as_mut() => return None,
            p = door.clone().acquire_owned() => return p.ok(),
            _ = refused => {}
            _ = tokio::time::sleep(ROOM_RETRY) => {}
        }
    }
}

/// An authenticated connection's agent slot: at once when one is free,
/// else by closing a refused connection holding one or the idle agent
/// connection idle the longest ([`Connections::close_for_agent`]); when
/// every slot is an agent's request in progress, waits, looking again
/// every [`ROOM_RETRY`]. `None` on shutdown.
async fn agent_slot(
    ctx: &ConnCtx,
    app: &App,
    stop_rx: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = ctx.slots.clone().try_acquire_owned() {
        return Some(p);
    }
    let mut logged = false;
    loop {
        if let Some(standing) = ctx.conns.close_for_agent() {
            closed_for_room(app, standing);
        } else if !logged {
            tracing::warn!(
                max_connections = app.limits.max_connections,
                "every connection is busy; a new client waits for a free slot (raise max_connections?)"
            );
            logged = true;
        }
        tokio::select! {
            _ = stop_rx.wait_for(|s| *s) => return None,
            p = ctx.slots.clone().acquire_owned() => return p.ok(),
            _ = tokio::time::sleep(ROOM_RETRY) => {}
        }
    }
}

/// What a connection task shares with the listener: the registry (its
/// own entry removed when the task ends), the refusal log and the agent
/// slots.
struct ConnCtx {
    conns: Arc<Connections>,
    refusals: Arc<refused::RefusalLog>,
    slots: Arc<Semaphore>,
    registered: conns::Registered,
}

impl ConnCtx {
    /// Records and logs that this connection's client is refused.
    fn refuse(&self, app: &App, addr: std::net::SocketAddr, why: &refused::Why) {
        self.conns.mark_refused(&self.registered.state);
        app.metrics.refused_connection(why.label());
        self.refusals.log(addr, why);
    }
}

/// One connection from TLS handshake to close. It holds `place` at the
/// door until the handshake shows an authenticated host, then an agent
/// slot instead; a refused client keeps its place at the door.
async fn connection(
    tcp: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    app: &Arc<App>,
    ctx: ConnCtx,
    place: OwnedSemaphorePermit,
    mut stop_rx: watch::Receiver<bool>,
) {
    let state = ctx.registered.state.clone();
    let handshake = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => r,
        _ = state.close_requested() => {
            tracing::debug!(%addr, "closed during the TLS handshake to make room for another client");
            return;
        }
    };
    let tls = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            app.metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%addr, "refused connection: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            app.metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%addr, "refused connection: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
            return;
        }
    };
    let peer = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => Peer::Anonymous,
        Some(cert) => match (host_of_certificate(cert), serial_of_certificate(cert)) {
            (Ok(h), Ok(serial)) => Peer::Host(h, serial),
            (Err(e), _) => Peer::Unidentified(e.to_string()),
            (_, Err(e)) => Peer::Unidentified(format!("{e:#}")),
        },
    };
    // Held until the connection ends: its place at the door, or its slot.
    let _held = match refused::check(app, &peer) {
        Err(why) => {
            ctx.refuse(app, addr, &why);
            place
        }
        Ok(_) => {
            state.set_standing(Standing::Authenticated);
            let slot = tokio::select! {
                s = agent_slot(&ctx, app, &mut stop_rx) => s,
                _ = state.close_requested() => None,
            };
            let Some(slot) = slot else {
                return;
            };
            state.set_in_slot();
            drop(place);
            slot
        }
    };
    let ctx = Arc::new(ctx);
    let service = {
        let app = app.clone();
        let peer = peer.clone();
        let ctx = ctx.clone();
        service_fn(move |req| {
            let (app, peer, ctx) = (app.clone(), peer.clone(), ctx.clone());
            let busy = ctx.registered.state.busy();
            async move {
                let reply = match refused::check(&app, &peer) {
                    Ok(host) => handle(&app, host, addr, req).await,
                    Err(why) => {
                        if ctx.registered.state.standing() != Standing::Refused {
                            // Revoked while this connection was open.
                            ctx.refuse(&app, addr, &why);
                        }
                        refused::reply(&app, why, req).await
                    }
                };
                drop(busy);
                Ok::<_, Infallible>(reply)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.limits.idle_timeout)
        .serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            match r {
                Err(e) if e.is_timeout() => {
                    app.metrics.connections_closed_idle.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%addr, "closed: no request within {:?} (idle_timeout_s)", app.limits.idle_timeout);
                }
                Err(e) => tracing::debug!(%addr, "connection ended: {e}"),
                Ok(()) => {}
            }
        }
        _ = async { stop_rx.wait_for(|s| *s).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        _ = state.close_requested() => {
            if state.standing() == Standing::Refused {
                // Only ever refused: dropped at once, even mid-request.
                tracing::debug!(%addr, "closing a refused client's connection to make room");
                return;
            }
            // Idle, so this closes at once; a request that slipped in
            // meanwhile is finished first.
            tracing::debug!(%addr, "closing an idle connection to make room for another client");
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// One request of an authenticated, unrevoked host (refused peers are
/// answered by [`refused::reply`]): the request kind, then the refusal, if
/// any, logged and counted.
async fn handle(
    app: &Arc<App>,
    host: &HostId,
    addr: std::net::SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let _inflight = Inflight::new(app);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let reply = route(app, host, req).await;
    let status = reply.status();
    if status.is_client_error() || status.is_server_error() {
        app.metrics.refused(status.as_u16());
        let who = host.to_string();
        let reason = reply_reason(&reply);
        if status == StatusCode::CONFLICT
            || status == StatusCode::FORBIDDEN
            || status == StatusCode::UNAUTHORIZED
        {
            tracing::error!(%addr, host = %who, %method, %path, status = status.as_u16(), "refused: {reason}");
        } else {
            tracing::warn!(%addr, host = %who, %method, %path, status = status.as_u16(), "refused: {reason}");
        }
    }
    reply
}

/// Counts a request in `custody_collector_inflight_requests` until dropped,
/// also when the request is cut off (its connection closed for room).
pub(crate) struct Inflight<'a>(&'a App);

impl<'a> Inflight<'a> {
    pub(crate) fn new(app: &'a App) -> Inflight<'a> {
        app.metrics
            .inflight_requests
            .fetch_add(1, Ordering::Relaxed);
        Inflight(app)
    }
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        self.0
            .metrics
            .inflight_requests
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn reply_reason(reply: &Reply) -> String {
    reply
        .extensions()
        .get::<reply::Reason>()
        .map(|r| r.0.clone())
        .unwrap_or_default()
}

/// Reads and discards a request body that will not be used, so a refusal
/// reaches clients that send the whole body before reading the answer
/// (hyper, reqwest) instead of a broken pipe. Bounded in bytes and time;
/// past either the connection is simply closed.
pub(crate) async fn drain(mut body: Incoming) {
    use http_body_util::BodyExt;
    let mut seen = 0u64;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT_BODY, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}

async fn route(app: &Arc<App>, host: &HostId, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_string();
    if req.method() == Method::POST && path.starts_with(INCIDENTS_PATH) {
        return incidents::report(app, host, &path, req).await;
    }
    if req.method() != Method::PUT {
        // Only PUT has a body worth reading; anything else is drained first.
        let (parts, body) = req.into_parts();
        drain(body).await;
        return route_bodyless(app, host, Request::from_parts(parts, ()), &path).await;
    }
    match path.strip_prefix(OBJECTS_PATH) {
        Some(key) => objects::put(app, host, key, req).await,
        None => {
            drain(req.into_body()).await;
            reply::text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("PUT is only for objects under {OBJECTS_PATH}<key>"),
            )
        }
    }
}

async fn route_bodyless(app: &Arc<App>, host: &HostId, req: Request<()>, path: &str) -> Reply {
    if let Some(key) = path.strip_prefix(OBJECTS_PATH) {
        let key = key.to_string();
        return match *req.method() {
            Method::GET => objects::get(app, host, &key, false).await,
            Method::HEAD => objects::get(app, host, &key, true).await,
            _ => reply::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "objects are create-only: a host can never delete or change them (PUT, GET and HEAD only)",
            ),
        };
    }
    if path == INCIDENTS_PATH {
        return match *req.method() {
            Method::GET => incidents::list(app, host).await,
            _ => reply::text(
                StatusCode::METHOD_NOT_ALLOWED,
                "GET lists the open incidents naming this host; progress goes to POST /v1/incidents/<id>/status",
            ),
        };
    }
    if path == LIST_PATH {
        return match *req.method() {
            Method::GET => list::list(app, host, req.uri().query().unwrap_or("")).await,
            _ => reply::text(StatusCode::METHOD_NOT_ALLOWED, "list is GET only"),
        };
    }
    reply::text(
        StatusCode::NOT_FOUND,
        format!("no such endpoint {path}; objects are under {OBJECTS_PATH}<key>"),
    )
}
