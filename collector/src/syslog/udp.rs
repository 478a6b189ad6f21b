//! Syslog over UDP (RFC 5426): one message per datagram, kept exactly as
//! received. UDP has no acknowledgement and no flow control: a datagram
//! lost in the network, in a full kernel receive buffer, or dropped here
//! because the memory budget is full (the store is behind) is gone, and
//! only the last of these can be counted (`udp_dropped_busy`). Devices
//! whose logs must not be lost should use TCP or TLS.

use tokio::net::UdpSocket;

use super::ingress::{Ingress, NotDelivered};

/// Receives datagrams until shutdown.
pub async fn run(socket: UdpSocket, ingress: Ingress, max_message: usize) {
    // 65535 is the largest UDP payload; a larger buffer would only waste.
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            _ = ingress.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // ICMP errors and the like: the socket stays usable.
                    tracing::warn!(error = %e, "syslog udp: receive failed; continuing");
                    continue;
                }
            },
        };
        if n == 0 {
            tracing::debug!(%peer, "syslog udp: empty datagram ignored (holds no message)");
            continue;
        }
        if n > max_message {
            ingress.stats.add(&ingress.stats.udp_dropped_oversize, 1);
            ingress.stats.refused("udp_oversize");
            if let Some(more) = ingress.dropped_log.allow() {
                tracing::warn!(%peer, len = n, max = max_message, suppressed = more,
                    "syslog udp: datagram larger than max_message_udp dropped; raise max_message_udp to keep such messages");
            }
            continue;
        }
        match ingress.deliver_now(peer.ip(), buf[..n].to_vec()).await {
            Ok(()) | Err(NotDelivered::Refused) => {}
            Err(NotDelivered::Busy) => {
                ingress.stats.add(&ingress.stats.udp_dropped_busy, 1);
                ingress.stats.refused("udp_busy");
                if let Some(more) = ingress.dropped_log.allow() {
                    tracing::warn!(%peer, suppressed = more,
                        "syslog udp: datagram dropped, the store is behind and the memory budget (max_buffered_bytes) \
                         is full; UDP cannot make the sender wait: use TCP or TLS for devices whose logs must not be lost");
                }
            }
            Err(NotDelivered::Closing) => break,
        }
    }
    tracing::info!("syslog udp: listener stopped");
}
