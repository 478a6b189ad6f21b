//! What every request handler shares: the backing store, the retention
//! policy, the receipt checker, the findings log, the metrics and the
//! limits that bound memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use custody_evidence::retention::RetentionPolicy;
use custody_evidence::HostId;
use custody_store::ObjectStore;
use tokio::sync::Semaphore;

use crate::findings::FindingsLog;
use crate::metrics::Metrics;
use crate::receipt::Receipt;
use crate::revocation::Revocations;

/// Bounds on what the ingest listener holds at once.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted request body (413 above it).
    pub max_body_bytes: u64,
    /// Agent connections served at once. At the limit the agent
    /// connection idle the longest is closed to make room; when none is
    /// idle further agents wait. Handshakes and refused clients have
    /// places of their own (`ingest::conns`, the door).
    pub max_connections: usize,
    /// A connection with no request for this long is closed (also the
    /// bound on sending one request's headers, and on a body sending
    /// nothing: 408).
    pub idle_timeout: std::time::Duration,
    /// Request body bytes held in memory at once; an upload that does not
    /// fit gets 503 + Retry-After.
    pub max_inflight_bytes: u64,
}

pub struct App {
    pub store: Arc<dyn ObjectStore>,
    pub retention: RetentionPolicy,
    pub receipt: Receipt,
    pub findings: FindingsLog,
    pub metrics: Metrics,
    pub limits: Limits,
    /// Revoked client certificates, checked on every request.
    pub revocations: Revocations,
    /// Permits are bytes of request bodies in memory.
    pub body_budget: Semaphore,
    /// Remote snapshots and legal holds; `None` in tests that do not need them.
    pub incidents: Option<crate::incident::Office>,
    host_locks: Mutex<HashMap<HostId, Arc<tokio::sync::Mutex<()>>>>,
}

impl App {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        retention: RetentionPolicy,
        findings: FindingsLog,
        limits: Limits,
        revocations: Revocations,
    ) -> Arc<App> {
        App::with_incidents(store, retention, findings, limits, None, revocations)
    }

    /// [`App::new`] with the incident office of the collector's state directory.
    pub fn with_incidents(
        store: Arc<dyn ObjectStore>,
        retention: RetentionPolicy,
        findings: FindingsLog,
        limits: Limits,
        incidents: Option<crate::incident::Office>,
        revocations: Revocations,
    ) -> Arc<App> {
        Arc::new(App {
            incidents,
            receipt: Receipt::new(store.clone()),
            store,
            retention,
            findings,
            metrics: Metrics::default(),
            limits,
            revocations,
            body_budget: Semaphore::new(limits.max_inflight_bytes as usize),
            host_locks: Mutex::default(),
        })
    }

    /// One lock per host: a host's uploads are checked and stored one at a
    /// time, so chain checks see a consistent store (agents ship in order
    /// anyway; hosts proceed in parallel).
    pub fn host_lock(&self, host: &HostId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.host_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(host.clone()).or_default().clone()
    }
}
