//! Syslog over TCP (RFC 6587) and, after the handshake, TLS (RFC 5425):
//! accepting connections and reading frames from each.
//!
//! A connection is read only while the memory budget has room, so when the
//! store is behind the sender's socket buffer fills and it waits: nothing
//! is dropped on a TCP or TLS connection while the collector runs. A
//! malformed frame, a failed handshake or a refused sender closes that
//! connection only, with the reason logged; other connections go on.
//! Connections over `max_connections` are closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use custody_evidence::segment::SyslogTransport;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::task::TaskTracker;

use super::framing::FrameDecoder;
use super::ingress::{Ingress, NotDelivered};

/// A TLS handshake must finish within this, or the connection is closed
/// (a client that connects and says nothing must not hold a slot forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings of one stream listener.
#[derive(Clone)]
pub struct StreamListener {
    pub ingress: Ingress,
    pub tls: Option<TlsAcceptor>,
    pub max_message: usize,
    pub connections: Arc<Semaphore>,
    pub tasks: TaskTracker,
}

impl StreamListener {
    fn transport(&self) -> SyslogTransport {
        if self.tls.is_some() {
            SyslogTransport::Tls
        } else {
            SyslogTransport::Tcp
        }
    }

    /// Accepts connections until shutdown; each is served on its own task.
    pub async fn run(self, listener: TcpListener) {
        let transport = self.transport().as_str();
        loop {
            let (sock, peer) = tokio::select! {
                _ = self.ingress.shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(r) => r,
                    Err(e) => {
                        // EMFILE and friends: wait a little instead of spinning.
                        tracing::warn!(transport, error = %e, "syslog: accept failed; retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let stats = &self.ingress.stats;
            if !self.ingress.devices.may_accept(peer.ip()) {
                stats.add(&stats.connections_refused, 1);
                stats.refused("connection_unknown_sender");
                if let Some(more) = self.ingress.refused_conn_log.allow() {
                    tracing::warn!(transport, %peer, suppressed = more,
                        "syslog: connection refused: no [[syslog.device]] rule matches this address and \
                         unknown_senders = \"refuse\"");
                }
                continue;
            }
            let Ok(slot) = self.connections.clone().try_acquire_owned() else {
                stats.add(&stats.connections_refused, 1);
                stats.refused("connection_limit");
                tracing::warn!(transport, %peer,
                    "syslog: connection closed at once: max_connections reached; raise max_connections if this \
                     many devices connect at once");
                continue;
            };
            stats.add(&stats.connections_accepted, 1);
            let me = self.clone();
            self.tasks.spawn(async move {
                me.serve_connection(sock, peer).await;
                drop(slot);
            });
        }
        tracing::info!(transport, "syslog: listener stopped");
    }

    async fn serve_connection(&self, sock: tokio::net::TcpStream, peer: SocketAddr) {
        let transport = self.transport();
        let _ = sock.set_nodelay(true);
        tracing::debug!(transport = transport.as_str(), %peer, "syslog: connection accepted");
        let result = match &self.tls {
            None => self.read_frames(sock, peer, transport).await,
            Some(acceptor) => {
                let handshake = tokio::select! {
                    _ = self.ingress.shutdown.cancelled() => return,
                    r = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(sock)) => r,
                };
                match handshake {
                    Ok(Ok(tls)) => self.read_frames(tls, peer, transport).await,
                    Ok(Err(e)) => Err(self.refused("tls_handshake", format!(
                        "TLS handshake failed: {e} (a client speaking plain syslog or something else to the TLS port?)"
                    ))),
                    Err(_) => Err(self.refused("tls_handshake_timeout", format!(
                        "TLS handshake not finished within {}s",
                        HANDSHAKE_TIMEOUT.as_secs()
                    ))),
                }
            }
        };
        match result {
            Ok(n) => {
                tracing::debug!(transport = transport.as_str(), %peer, messages = n, "syslog: connection closed")
            }
            Err(why) => {
                let stats = &self.ingress.stats;
                stats.add(&stats.connections_failed, 1);
                tracing::warn!(transport = transport.as_str(), %peer, "syslog: connection closed: {why}");
            }
        }
    }

    /// Counts a refusal for `reason` and passes `why` on.
    fn refused(&self, reason: &'static str, why: String) -> String {
        self.ingress.stats.refused(reason);
        why
    }

    /// Reads until end of stream, a framing error or shutdown; the number of
    /// messages passed on, or why the connection was closed.
    async fn read_frames<R: AsyncRead + Unpin>(
        &self,
        mut r: R,
        peer: SocketAddr,
        transport: SyslogTransport,
    ) -> Result<u64, String> {
        let mut dec = FrameDecoder::new(self.max_message);
        let mut buf = vec![0u8; 64 * 1024];
        let mut count = 0u64;
        let bad = |e: super::framing::FrameError, dec: &FrameDecoder, count: u64| {
            self.ingress.stats.refused(e.kind());
            format!(
                "malformed frame after {count} message(s): {e}; {} byte(s) not kept",
                dec.pending()
            )
        };
        loop {
            loop {
                match dec.next_message() {
                    Ok(Some(msg)) => {
                        match self.ingress.deliver_waiting(transport, peer.ip(), msg).await {
                            Ok(()) => count += 1,
                            Err(NotDelivered::Refused) => {}
                            Err(NotDelivered::Closing | NotDelivered::Busy) => {
                                return Err(format!(
                                    "collector shutting down after {count} message(s); a message read but not yet \
                                     queued is lost"
                                ))
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Err(bad(e, &dec, count)),
                }
            }
            let n = tokio::select! {
                _ = self.ingress.shutdown.cancelled() => {
                    // Whole messages were all passed on above; what is left
                    // is part of a frame the sender had not finished.
                    if dec.pending() > 0 {
                        tracing::warn!(transport = transport.as_str(), %peer, bytes = dec.pending(),
                            "syslog: collector shutting down: the start of an unfinished message on this connection is not kept");
                    }
                    return Ok(count);
                }
                r = r.read(&mut buf) => r.map_err(|e| format!("read failed after {count} message(s): {e}"))?,
            };
            if n == 0 {
                return match dec.finish() {
                    Ok(Some(msg)) => {
                        if self
                            .ingress
                            .deliver_waiting(transport, peer.ip(), msg)
                            .await
                            .is_ok()
                        {
                            count += 1;
                        }
                        Ok(count)
                    }
                    Ok(None) => Ok(count),
                    Err(e) => Err(bad(e, &dec, count)),
                };
            }
            dec.feed(&buf[..n]);
        }
    }
}
