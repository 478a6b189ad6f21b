//! What the writers and the digest task share: identity, store, key, and
//! the store write loop that retries outages without losing order.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use custody_evidence::retention::RetentionPolicy;
use custody_evidence::sign::HostKey;
use custody_evidence::{HostId, InstanceId};
use custody_store::{ObjectStore, PutOptions, PutOutcome, StoreError};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ingress::RateLimit;
use super::stats::SyslogStats;

pub struct Shared {
    pub host: HostId,
    pub instance: InstanceId,
    pub store: Arc<dyn ObjectStore>,
    pub retention: RetentionPolicy,
    pub key: HostKey,
    pub public_key_line: String,
    pub stats: Arc<SyslogStats>,
    pub shutdown: CancellationToken,
    pub grace: Duration,
    /// `STATE/syslog`.
    pub dir: PathBuf,
    /// Bounds concurrent store writes over all device streams.
    pub store_ops: Arc<Semaphore>,
    pub zstd_level: i32,
    pub failure: Mutex<Option<String>>,
    pub store_log: RateLimit,
}

impl Shared {
    /// Records the first fatal error and stops the service.
    pub fn fail(&self, e: &anyhow::Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!("syslog: {e:#}; stopping");
            *f = Some(format!("{e:#}"));
        }
        self.shutdown.cancel();
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes one object, retrying while the store is unavailable. Gives up
    /// only after shutdown has been asked for and the grace has passed, or
    /// on a refusal that retrying cannot change (a different object under
    /// the same name is an integrity alarm, never overwritten).
    pub async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        retain_until: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        let mut give_up: Option<Instant> = None;
        loop {
            let result = {
                let _slot = self.store_ops.acquire().await;
                self.store
                    .put(key, bytes, PutOptions { retain_until })
                    .await
            };
            match result {
                Ok(PutOutcome::Created) => return Ok(()),
                Ok(PutOutcome::AlreadyPresent) => {
                    tracing::debug!(key, "already stored (identical bytes)");
                    return Ok(());
                }
                Err(StoreError::Conflict { key }) => {
                    self.stats.add(&self.stats.store_errors, 1);
                    bail!(
                        "INTEGRITY ALARM: the store {} holds different content under {key}; it was not overwritten. \
                         Another process writes under this collector's host id, or the store was altered: run \
                         custody-verify on it",
                        self.store.describe()
                    );
                }
                Err(e) if e.is_transient() => {
                    self.stats.add(&self.stats.store_errors, 1);
                    if let Some(more) = self.store_log.allow() {
                        tracing::warn!(store = %self.store.describe(), suppressed = more,
                            "syslog: store write failed: {e}; retrying (TCP/TLS senders wait, UDP datagrams are \
                             dropped once max_buffered_bytes is full)");
                    }
                    if self.shutdown.is_cancelled() {
                        let at = *give_up.get_or_insert_with(|| Instant::now() + self.grace);
                        if Instant::now() >= at {
                            bail!(
                                "store {} still failing {}s after shutdown was asked for: {e}",
                                self.store.describe(),
                                self.grace.as_secs()
                            );
                        }
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(e) => bail!("store {} refused {key}: {e}", self.store.describe()),
            }
        }
    }
}
