//! What every listener shares: the device mapping, the memory budget, the
//! channel to the segmenter, the counters, and rate-limited warnings (a
//! flood of refused or dropped datagrams must not become a flood of logs).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use custody_evidence::segment::SyslogTransport;
use custody_evidence::timefmt::now_utc_micros;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio_util::sync::CancellationToken;

use super::devices::DeviceMap;
use super::message::{Budget, Message};
use super::stats::SyslogStats;

/// Logs a warning at most once per interval, with how many were suppressed.
#[derive(Debug)]
pub struct RateLimit {
    start: Instant,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
    every: Duration,
}

impl RateLimit {
    pub fn new(every: Duration) -> Self {
        RateLimit {
            start: Instant::now(),
            last_ms: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
            every,
        }
    }

    /// `Some(suppressed since the last time)` when a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= self.every.as_millis() as u64;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The shared side of all listeners.
#[derive(Debug, Clone)]
pub struct Ingress {
    pub devices: Arc<DeviceMap>,
    pub budget: Budget,
    pub tx: mpsc::Sender<Message>,
    pub stats: Arc<SyslogStats>,
    pub shutdown: CancellationToken,
    pub refused_log: Arc<RateLimit>,
    pub refused_conn_log: Arc<RateLimit>,
    pub dropped_log: Arc<RateLimit>,
}

/// Why a message was not passed on.
#[derive(Debug, PartialEq, Eq)]
pub enum NotDelivered {
    /// The mapping refuses this sender.
    Refused,
    /// The collector is shutting down.
    Closing,
    /// UDP only: the budget is full.
    Busy,
}

impl Ingress {
    /// Maps, charges and queues a TCP/TLS message, waiting for room.
    pub async fn deliver_waiting(
        &self,
        transport: SyslogTransport,
        peer: IpAddr,
        bytes: Vec<u8>,
    ) -> Result<(), NotDelivered> {
        let received = now_utc_micros();
        // Biased: room that is there now is taken even during shutdown, so
        // whole messages already read are still stored.
        let permit = tokio::select! {
            biased;
            p = self.budget.acquire(bytes.len()) => p.ok_or(NotDelivered::Closing)?,
            _ = self.shutdown.cancelled() => return Err(NotDelivered::Closing),
        };
        self.queue(transport, peer, bytes, permit, received, true)
            .await
    }

    /// Maps, charges and queues a UDP datagram, never waiting.
    pub async fn deliver_now(&self, peer: IpAddr, bytes: Vec<u8>) -> Result<(), NotDelivered> {
        let received = now_utc_micros();
        let Some(permit) = self.budget.try_acquire(bytes.len()) else {
            return Err(NotDelivered::Busy);
        };
        self.queue(SyslogTransport::Udp, peer, bytes, permit, received, false)
            .await
    }

    async fn queue(
        &self,
        transport: SyslogTransport,
        peer: IpAddr,
        bytes: Vec<u8>,
        permit: OwnedSemaphorePermit,
        received: time::OffsetDateTime,
        wait: bool,
    ) -> Result<(), NotDelivered> {
        let Some(device) = self.devices.resolve(peer, &bytes) else {
            self.stats.add(&self.stats.refused_messages, 1);
            self.stats.refused("unknown_sender");
            if let Some(more) = self.refused_log.allow() {
                tracing::warn!(
                    %peer,
                    transport = transport.as_str(),
                    suppressed = more,
                    "refused a syslog message from a sender no [[syslog.device]] rule matches (unknown_senders = \
                     \"refuse\"); add a rule for it to keep its messages"
                );
            }
            return Err(NotDelivered::Refused);
        };
        let len = bytes.len() as u64;
        let name = device.name.clone();
        let msg = Message {
            device,
            transport,
            peer: super::devices::canonical(peer),
            received,
            bytes,
            permit,
        };
        let sent = if wait {
            self.tx.send(msg).await.map_err(|_| NotDelivered::Closing)
        } else {
            self.tx.try_send(msg).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NotDelivered::Busy,
                mpsc::error::TrySendError::Closed(_) => NotDelivered::Closing,
            })
        };
        if sent.is_ok() {
            self.stats.received(name.as_str(), len);
        }
        sent
    }
}
