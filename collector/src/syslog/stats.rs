//! Counters for operations (the collector's `/metrics` and logs): what was
//! received, refused, dropped and stored. Plain atomics, so the syslog
//! service does not depend on a metrics crate; the HTTP side reads a
//! [`StatsSnapshot`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use super::message::Budget;

/// Live counters, shared by every listener and writer.
#[derive(Debug, Default)]
pub struct SyslogStats {
    pub messages: AtomicU64,
    pub message_bytes: AtomicU64,
    /// UDP datagrams dropped because the memory budget was full.
    pub udp_dropped_busy: AtomicU64,
    /// UDP datagrams larger than `max_message_udp`.
    pub udp_dropped_oversize: AtomicU64,
    /// Messages from senders the mapping refuses.
    pub refused_messages: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// Connections closed at once: over `max_connections`, or a refused sender.
    pub connections_refused: AtomicU64,
    /// Connections closed for a malformed frame or a failed TLS handshake.
    pub connections_failed: AtomicU64,
    pub segments_stored: AtomicU64,
    pub digests_stored: AtomicU64,
    pub store_errors: AtomicU64,
    /// Segments whose messages could not be stored before shutdown.
    pub segments_lost: AtomicU64,
    devices: Mutex<BTreeMap<String, DeviceCounts>>,
    /// Messages, datagrams and connections refused or dropped, by reason
    /// (a fixed label such as `frame_garbage` or `udp_oversize`).
    refused: Mutex<BTreeMap<&'static str, u64>>,
    /// The memory budget of the running service, for the queue-depth gauge.
    budget: OnceLock<Budget>,
}

/// Per-device counts: received (queued for the device's stream) and
/// stored (in segments durable in the store).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeviceCounts {
    pub received_messages: u64,
    pub received_bytes: u64,
    pub messages: u64,
    pub bytes: u64,
    pub segments: u64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    pub messages: u64,
    pub message_bytes: u64,
    pub udp_dropped_busy: u64,
    pub udp_dropped_oversize: u64,
    pub refused_messages: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub connections_failed: u64,
    pub segments_stored: u64,
    pub digests_stored: u64,
    pub store_errors: u64,
    pub segments_lost: u64,
    /// Bytes received and not yet stored (the queue depth), and the budget's
    /// size: when they are equal, TCP senders wait and UDP datagrams drop.
    pub buffered_bytes: u64,
    pub max_buffered_bytes: u64,
    pub devices: BTreeMap<String, DeviceCounts>,
    pub refused: BTreeMap<&'static str, u64>,
}

fn inc(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

impl SyslogStats {
    pub(crate) fn add(&self, c: &AtomicU64, n: u64) {
        inc(c, n)
    }

    pub(crate) fn segment_stored(&self, device: &str, messages: u64, bytes: u64) {
        inc(&self.segments_stored, 1);
        let mut d = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let e = d.entry(device.to_string()).or_default();
        e.messages += messages;
        e.bytes += bytes;
        e.segments += 1;
    }

    /// One message queued for `device`'s stream.
    pub(crate) fn received(&self, device: &str, bytes: u64) {
        inc(&self.messages, 1);
        inc(&self.message_bytes, bytes);
        let mut d = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let e = match d.get_mut(device) {
            Some(e) => e,
            None => d.entry(device.to_string()).or_default(),
        };
        e.received_messages += 1;
        e.received_bytes += bytes;
    }

    /// Something refused or dropped, for `reason`.
    pub(crate) fn refused(&self, reason: &'static str) {
        *self
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    pub(crate) fn set_budget(&self, budget: Budget) {
        let _ = self.budget.set(budget);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            messages: g(&self.messages),
            message_bytes: g(&self.message_bytes),
            udp_dropped_busy: g(&self.udp_dropped_busy),
            udp_dropped_oversize: g(&self.udp_dropped_oversize),
            refused_messages: g(&self.refused_messages),
            connections_accepted: g(&self.connections_accepted),
            connections_refused: g(&self.connections_refused),
            connections_failed: g(&self.connections_failed),
            segments_stored: g(&self.segments_stored),
            digests_stored: g(&self.digests_stored),
            store_errors: g(&self.store_errors),
            segments_lost: g(&self.segments_lost),
            buffered_bytes: self.budget.get().map_or(0, |b| b.in_use() as u64),
            max_buffered_bytes: self.budget.get().map_or(0, |b| b.max() as u64),
            devices: self
                .devices
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            refused: self
                .refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
