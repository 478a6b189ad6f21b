//! Clients that are only ever refused: no client certificate (401), a
//! revoked certificate or one that names no host (403). What they are
//! told, how little of them is read, and how they are logged.
//!
//! Why this is its own room (issue 12, D1): such a client must never hold
//! a slot an enrolled agent needs. The connection side of that is in
//! [`super::conns`] (refused connections are closed first and have a small
//! quota); this side makes each refusal cheap: the body is read only up to
//! [`REFUSED_DRAIN_CAP`] for at most [`REFUSED_DRAIN_TIMEOUT`] (not at all
//! after `Expect: 100-continue`, so the client never sends it), the answer
//! carries `Connection: close`, and the log names each address at most
//! once every [`LOG_EVERY`] so a flood of refusals cannot flood the log.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use custody_evidence::HostId;
use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use super::reply::{self, Reply};
use super::Peer;
use crate::app::App;

/// Bounds on reading the body of a request from a refused client before
/// its 401 or 403: enough for a misconfigured agent's small upload to be
/// read, so that it sees the reason instead of a reset connection, and
/// small and short enough that holding the connection costs nothing.
pub const REFUSED_DRAIN_CAP: u64 = 1 << 20;
pub const REFUSED_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// One address is logged at most this often; the refusals in between are
/// counted and reported with the next line.
pub const LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered for [`LOG_EVERY`]; past this many the memory is
/// cleared (at worst one more line per address).
const LOG_ADDRESSES: usize = 4096;

/// Why a client is refused.
#[derive(Debug, Clone)]
pub enum Why {
    /// TLS without a client certificate.
    NoCertificate,
    /// A certificate of this CA that names no host, or does not parse.
    Unidentified(String),
    /// A certificate recorded in `revoked.jsonl`.
    Revoked {
        host: HostId,
        serial: String,
        revoked: String,
    },
}

impl Why {
    /// The `reason` label of `custody_collector_refused_connections_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Why::NoCertificate => "no_certificate",
            Why::Unidentified(_) => "unidentified",
            Why::Revoked { .. } => "revoked",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Why::NoCertificate => StatusCode::UNAUTHORIZED,
            Why::Unidentified(_) | Why::Revoked { .. } => StatusCode::FORBIDDEN,
        }
    }

    /// What the client is told, and the log says: what is wrong and what
    /// to do.
    pub fn message(&self) -> String {
        match self {
            Why::NoCertificate => "client certificate required: enroll this host with `custody-collector enroll \
                 --host-id ID` and give the agent its collector_cert and collector_key"
                .into(),
            Why::Unidentified(why) => format!("refused: {why}"),
            Why::Revoked {
                host,
                serial,
                revoked,
            } => format!(
                "client certificate serial {serial} of host {host} was revoked at {revoked}: enroll the host \
                 again (custody-collector enroll --host-id {host}) and give the agent the new files"
            ),
        }
    }
}

/// The host a connection may act as, or why it is refused. Checked after
/// the handshake and again before every request, so a revocation also
/// cuts off connections already open.
pub fn check<'a>(app: &App, peer: &'a Peer) -> Result<&'a HostId, Why> {
    match peer {
        Peer::Anonymous => Err(Why::NoCertificate),
        Peer::Unidentified(why) => Err(Why::Unidentified(why.clone())),
        Peer::Host(host, serial) => match app.revocations.check(serial) {
            None => Ok(host),
            Some(r) => Err(Why::Revoked {
                host: host.clone(),
                serial: serial.clone(),
                revoked: r.revoked.clone(),
            }),
        },
    }
}

/// The refusal of one request: its body read within the refusal bounds,
/// then the 401 or 403 with `Connection: close`, counted.
pub async fn reply(app: &App, why: Why, req: Request<Incoming>) -> Reply {
    let _inflight = super::Inflight::new(app);
    let expects_continue = req
        .headers()
        .get(hyper::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if !expects_continue {
        // Unread, hyper sends no 100 Continue and the client no body.
        drain_some(req.into_body()).await;
    }
    let status = why.status();
    app.metrics.refused(status.as_u16());
    if matches!(why, Why::Revoked { .. }) {
        app.metrics.revoked_refusals.fetch_add(1, Ordering::Relaxed);
    }
    reply::closing(status, why.message())
}

/// Reads and discards at most [`REFUSED_DRAIN_CAP`] bytes of `body` for at
/// most [`REFUSED_DRAIN_TIMEOUT`]; whatever is left is never read (the
/// connection closes after the answer).
async fn drain_some(mut body: Incoming) {
    use http_body_util::BodyExt;
    let mut seen = 0u64;
    let _ = tokio::time::timeout(REFUSED_DRAIN_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen >= REFUSED_DRAIN_CAP {
                    break;
                }
            }
        }
    })
    .await;
}

/// When each address was last logged, and how many refusals since.
#[derive(Default)]
pub struct RefusalLog {
    seen: Mutex<HashMap<IpAddr, (Instant, u64)>>,
}

impl RefusalLog {
    /// Logs the refusal of a connection from `addr`, unless that address
    /// was logged less than [`LOG_EVERY`] ago (then it is only counted).
    pub fn log(&self, addr: SocketAddr, why: &Why) {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= LOG_ADDRESSES && !seen.contains_key(&addr.ip()) {
            seen.retain(|_, (at, _)| now.duration_since(*at) < LOG_EVERY);
            if seen.len() >= LOG_ADDRESSES {
                seen.clear();
            }
        }
        let since = match seen.get_mut(&addr.ip()) {
            Some((at, count)) if now.duration_since(*at) < LOG_EVERY => {
                *count += 1;
                return;
            }
            Some((at, count)) => {
                let since = *count;
                (*at, *count) = (now, 0);
                since
            }
            None => {
                seen.insert(addr.ip(), (now, 0));
                0
            }
        };
        drop(seen);
        let every = LOG_EVERY.as_secs();
        tracing::error!(
            %addr,
            reason = why.label(),
            status = why.status().as_u16(),
            suppressed = since,
            "refused client: {}; its connections are closed first when slots run out \
             (further refusals of this address are logged at most once every {every} s)",
            why.message()
        );
    }
}
