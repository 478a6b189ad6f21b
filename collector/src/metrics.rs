//! Counters and gauges for Prometheus, rendered in its text exposition
//! format by hand: a dozen series do not justify a metrics framework.
//! Label values are host ids, device names, finding kinds, operations,
//! reasons and status codes, mostly from small fixed alphabets; host and
//! device names are escaped all the same ([`label`]).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::syslog::{StatsSnapshot, SyslogStats};

/// Upper bounds (seconds) of the store put latency histogram.
const PUT_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct PerHost {
    bytes: u64,
    segments: u64,
    objects: u64,
}

#[derive(Default)]
struct Histogram {
    counts: [u64; PUT_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Everything `/metrics` reports.
#[derive(Default)]
pub struct Metrics {
    hosts: Mutex<BTreeMap<String, PerHost>>,
    findings: Mutex<BTreeMap<String, u64>>,
    refusals: Mutex<BTreeMap<u16, u64>>,
    /// Connections of clients that are only ever refused, by reason
    /// (`ingest::refused::Why::label`).
    refused_connections: Mutex<BTreeMap<&'static str, u64>>,
    store_errors: Mutex<BTreeMap<&'static str, u64>>,
    put_latency: Mutex<Histogram>,
    pub inflight_requests: AtomicI64,
    pub connections: AtomicI64,
    pub tls_failures: AtomicU64,
    /// Requests refused because their client certificate is revoked.
    pub revoked_refusals: AtomicU64,
    /// Connections closed after `idle_timeout` without a request.
    pub connections_closed_idle: AtomicU64,
    /// Idle connections closed at `max_connections` to make room.
    pub connections_closed_for_room: AtomicU64,
    /// Connections of refused clients closed early: to make room, or
    /// because more than the quota of them were open.
    pub refused_connections_closed: AtomicU64,
    pub inflight_bytes: AtomicI64,
    pub prune_deleted: AtomicU64,
    pub prune_runs: AtomicU64,
    pub prune_errors: AtomicU64,
    /// Operators' API and console: logins that made a session, failed
    /// logins (wrong password, or limited), requests refused (401, 403),
    /// and changes done (incident opened, release asked for or done).
    pub api_logins: AtomicU64,
    pub api_login_failures: AtomicU64,
    pub api_denied: AtomicU64,
    pub api_changes: AtomicU64,
    /// The syslog service's counters, when it runs.
    syslog: OnceLock<Arc<SyslogStats>>,
}

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Metrics {
    /// An object newly stored for `host`; `segment` when it is a segment
    /// payload (one per segment).
    pub fn received(&self, host: &str, bytes: u64, segment: bool) {
        let mut hosts = lock(&self.hosts);
        let h = hosts.entry(host.to_string()).or_default();
        h.bytes += bytes;
        h.objects += 1;
        if segment {
            h.segments += 1;
        }
    }

    /// Includes the syslog service's counters in [`Metrics::render`].
    pub fn attach_syslog(&self, stats: Arc<SyslogStats>) {
        let _ = self.syslog.set(stats);
    }

    pub fn finding(&self, kind: &str) {
        *lock(&self.findings).entry(kind.to_string()).or_default() += 1;
    }

    pub fn refused(&self, status: u16) {
        *lock(&self.refusals).entry(status).or_default() += 1;
    }

    /// A connection whose client is refused (no certificate, revoked,
    /// unidentified), once per connection.
    pub fn refused_connection(&self, reason: &'static str) {
        *lock(&self.refused_connections).entry(reason).or_default() += 1;
    }

    pub fn store_error(&self, op: &'static str) {
        *lock(&self.store_errors).entry(op).or_default() += 1;
    }

    pub fn store_put(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut h = lock(&self.put_latency);
        for (i, le) in PUT_BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.sum += secs;
        h.count += 1;
    }

    /// The Prometheus text format.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        {
            let hosts = lock(&self.hosts);
            family(
                &mut o,
                "custody_collector_received_bytes_total",
                "counter",
                "Bytes of objects newly stored, per host.",
            );
            for (h, v) in hosts.iter() {
                let _ = writeln!(
                    o,
                    "custody_collector_received_bytes_total{{host=\"{}\"}} {}",
                    label(h),
                    v.bytes
                );
            }
            family(
                &mut o,
                "custody_collector_received_segments_total",
                "counter",
                "Segment payloads newly stored, per host.",
            );
            for (h, v) in hosts.iter() {
                let _ = writeln!(
                    o,
                    "custody_collector_received_segments_total{{host=\"{}\"}} {}",
                    label(h),
                    v.segments
                );
            }
            family(
                &mut o,
                "custody_collector_received_objects_total",
                "counter",
                "Objects newly stored (payloads, records, digests, signatures, keys), per host.",
            );
            for (h, v) in hosts.iter() {
                let _ = writeln!(
                    o,
                    "custody_collector_received_objects_total{{host=\"{}\"}} {}",
                    label(h),
                    v.objects
                );
            }
        }
        family(
            &mut o,
            "custody_collector_findings_total",
            "counter",
            "Verification findings on receipt, by kind (details in findings.jsonl).",
        );
        for (k, v) in lock(&self.findings).iter() {
            let _ = writeln!(o, "custody_collector_findings_total{{kind=\"{k}\"}} {v}");
        }
        family(
            &mut o,
            "custody_collector_refused_total",
            "counter",
            "Requests refused, by HTTP status.",
        );
        for (k, v) in lock(&self.refusals).iter() {
            let _ = writeln!(o, "custody_collector_refused_total{{status=\"{k}\"}} {v}");
        }
        family(
            &mut o,
            "custody_collector_refused_connections_total",
            "counter",
            "Connections of clients that are only ever refused (no_certificate, revoked, unidentified).",
        );
        for (k, v) in lock(&self.refused_connections).iter() {
            let _ = writeln!(
                o,
                "custody_collector_refused_connections_total{{reason=\"{k}\"}} {v}"
            );
        }
        family(
            &mut o,
            "custody_collector_store_errors_total",
            "counter",
            "Backing store operations that failed, by operation.",
        );
        for (k, v) in lock(&self.store_errors).iter() {
            let _ = writeln!(o, "custody_collector_store_errors_total{{op=\"{k}\"}} {v}");
        }
        {
            let h = lock(&self.put_latency);
            family(
                &mut o,
                "custody_collector_store_put_seconds",
                "histogram",
                "Latency of durable puts into the backing store.",
            );
            for (i, le) in PUT_BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "custody_collector_store_put_seconds_bucket{{le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                o,
                "custody_collector_store_put_seconds_bucket{{le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(o, "custody_collector_store_put_seconds_sum {}", h.sum);
            let _ = writeln!(o, "custody_collector_store_put_seconds_count {}", h.count);
        }
        let gauges: [(&str, &str, i64); 3] = [
            (
                "custody_collector_inflight_requests",
                "Requests being handled now.",
                self.inflight_requests.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_connections",
                "Open client connections.",
                self.connections.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_inflight_body_bytes",
                "Request body bytes held in memory now (the queue).",
                self.inflight_bytes.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            family(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
        let counters: [(&str, &str, u64); 12] = [
            (
                "custody_collector_api_logins_total",
                "Operator password logins that made a session (API and console).",
                self.api_logins.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_api_login_failures_total",
                "Operator logins refused: wrong name or password, or too many failures.",
                self.api_login_failures.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_api_denied_total",
                "Operators' API and console requests refused with 401 or 403 (no or unknown credentials, revoked, role, CSRF).",
                self.api_denied.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_api_changes_total",
                "Changes made through the operators' API and console (incidents opened, releases asked for or done).",
                self.api_changes.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_revoked_certificate_refusals_total",
                "Requests refused because their client certificate is revoked (revoked.jsonl).",
                self.revoked_refusals.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_connections_closed_idle_total",
                "Connections closed after idle_timeout_s without a request (or with headers still incomplete).",
                self.connections_closed_idle.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_connections_closed_for_room_total",
                "Idle connections closed at max_connections to make room for a new client.",
                self.connections_closed_for_room.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_refused_connections_closed_total",
                "Connections of refused clients closed early: to make room at max_connections, or over their quota.",
                self.refused_connections_closed.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_tls_handshake_failures_total",
                "TLS handshakes that failed (certificate not from this CA, not TLS, timeouts).",
                self.tls_failures.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_prune_runs_total",
                "Scheduled prunes of the filesystem store.",
                self.prune_runs.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_prune_deleted_total",
                "Objects deleted by scheduled prunes (past retention, not held).",
                self.prune_deleted.load(Ordering::Relaxed),
            ),
            (
                "custody_collector_prune_errors_total",
                "Scheduled prunes that failed.",
                self.prune_errors.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {v}");
        }
        if let Some(stats) = self.syslog.get() {
            render_syslog(&mut o, &stats.snapshot());
        }
        o
    }
}

/// The syslog service's series (`custody_collector_syslog_*`).
fn render_syslog(o: &mut String, s: &StatsSnapshot) {
    let family = |o: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
    };
    let counters: [(&str, &str, u64); 8] = [
        (
            "custody_collector_syslog_messages_total",
            "Syslog messages received and queued for a device stream.",
            s.messages,
        ),
        (
            "custody_collector_syslog_bytes_total",
            "Bytes of syslog messages received and queued (as received, framing excluded).",
            s.message_bytes,
        ),
        (
            "custody_collector_syslog_connections_total",
            "Syslog TCP and TLS connections accepted.",
            s.connections_accepted,
        ),
        (
            "custody_collector_syslog_segments_stored_total",
            "Syslog segments durable in the store.",
            s.segments_stored,
        ),
        (
            "custody_collector_syslog_digests_stored_total",
            "Signed digests of syslog streams durable in the store.",
            s.digests_stored,
        ),
        (
            "custody_collector_syslog_store_errors_total",
            "Store operations of the syslog service that failed (retried).",
            s.store_errors,
        ),
        (
            "custody_collector_syslog_segments_lost_total",
            "Syslog segments that could not be stored before shutdown.",
            s.segments_lost,
        ),
        (
            "custody_collector_syslog_udp_dropped_total",
            "UDP datagrams dropped (too large, or the memory budget full).",
            s.udp_dropped_busy + s.udp_dropped_oversize,
        ),
    ];
    for (name, help, v) in counters {
        family(o, name, "counter", help);
        let _ = writeln!(o, "{name} {v}");
    }
    family(
        o,
        "custody_collector_syslog_refused_total",
        "counter",
        "Syslog frames, datagrams, messages and connections refused or dropped, by reason.",
    );
    for (reason, v) in &s.refused {
        let _ = writeln!(
            o,
            "custody_collector_syslog_refused_total{{reason=\"{reason}\"}} {v}"
        );
    }
    type Pick = fn(&crate::syslog::stats::DeviceCounts) -> u64;
    let per_device: [(&str, &str, Pick); 5] = [
        (
            "custody_collector_syslog_device_received_messages_total",
            "Syslog messages received, per device.",
            |d| d.received_messages,
        ),
        (
            "custody_collector_syslog_device_received_bytes_total",
            "Syslog message bytes received, per device.",
            |d| d.received_bytes,
        ),
        (
            "custody_collector_syslog_device_stored_messages_total",
            "Syslog messages durable in the store, per device.",
            |d| d.messages,
        ),
        (
            "custody_collector_syslog_device_stored_bytes_total",
            "Raw bytes of syslog segments durable in the store (messages octet-counted, RFC 6587), per device.",
            |d| d.bytes,
        ),
        (
            "custody_collector_syslog_device_segments_total",
            "Syslog segments durable in the store, per device.",
            |d| d.segments,
        ),
    ];
    for (name, help, pick) in per_device {
        family(o, name, "counter", help);
        for (device, d) in &s.devices {
            let _ = writeln!(o, "{name}{{device=\"{}\"}} {}", label(device), pick(d));
        }
    }
    for (name, help, v) in [
        (
            "custody_collector_syslog_queue_bytes",
            "Syslog bytes received and not yet stored (the queue depth).",
            s.buffered_bytes,
        ),
        (
            "custody_collector_syslog_queue_max_bytes",
            "The syslog memory budget (max_buffered_bytes): at it TCP senders wait and UDP datagrams drop.",
            s.max_buffered_bytes,
        ),
    ] {
        family(o, name, "gauge", help);
        let _ = writeln!(o, "{name} {v}");
    }
}
