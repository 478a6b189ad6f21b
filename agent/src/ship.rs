//! Shipping: spool → store, at least once and idempotently. Object names
//! derive from stream, sequence and hash, and stores are create-only, so a
//! retry after a lost acknowledgement is a no-op; a different object under
//! an existing name is an integrity alarm and is never overwritten.
//! Segments go before the digests that list them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use custody_evidence::digest::DigestBody;
use custody_evidence::layout;
use custody_evidence::retention::RetentionPolicy;
use custody_evidence::segment::SegmentMeta;
use custody_evidence::{HostId, Sha256};
use custody_store::{ObjectStore, PutOptions, PutOutcome, StoreError};
use time::OffsetDateTime;

use crate::board::Board;
use crate::service::Heartbeat;
use crate::spool::Spool;

/// Opens the store; called again after a failure, so a store that is
/// unreachable or unwritable at start-up (an NFS mount not up yet, a
/// permission to fix) does not stop the agent: data waits in the spool.
pub type StoreOpener = Box<dyn Fn() -> anyhow::Result<Arc<dyn ObjectStore>> + Send + Sync>;

pub struct Shipper {
    pub store: Option<Arc<dyn ObjectStore>>,
    pub open_store: StoreOpener,
    pub describe: String,
    pub spool: Arc<Spool>,
    pub host: HostId,
    pub public_key_line: String,
    pub retention: RetentionPolicy,
    pub board: Arc<Board>,
    pub wake: Arc<tokio::sync::Notify>,
    /// Touched every loop turn and after every store write: what the
    /// systemd watchdog checks.
    pub heartbeat: Arc<Heartbeat>,
}

impl Shipper {
    /// Ships until `stop` is set, then keeps shipping until the spool is
    /// empty or `grace` has passed (the rest waits in the spool).
    pub async fn run(
        mut self,
        stop: Arc<AtomicBool>,
        grace: Duration,
        committer_done: Arc<AtomicBool>,
    ) {
        let mut backoff = Duration::from_millis(500);
        let mut key_published = false;
        let mut deadline: Option<Instant> = None;
        let mut last_logged: Option<Instant> = None;
        loop {
            self.heartbeat.beat();
            let stopping = stop.load(Ordering::SeqCst);
            if stopping && deadline.is_none() {
                deadline = Some(Instant::now() + grace);
            }
            let result = async {
                if self.store.is_none() {
                    self.store = Some((self.open_store)()?);
                    tracing::info!(store = %self.describe, "store opened");
                }
                if !key_published {
                    self.publish_key().await?;
                    key_published = true;
                }
                self.ship_pending().await
            }
            .await;
            let failed = match result {
                Ok(_) => {
                    if last_logged.is_some() {
                        tracing::info!(store = %self.describe, "shipping works again");
                        self.board.ship_recovered();
                    }
                    last_logged = None;
                    backoff = Duration::from_millis(500);
                    false
                }
                Err(e) => {
                    let msg = format!("shipping to {}: {e:#}", self.describe);
                    // Say it once, then at most every minute while it lasts.
                    if last_logged.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(60)) {
                        tracing::warn!("{msg}; will retry (data stays in the spool)");
                        last_logged = Some(Instant::now());
                    }
                    self.board.ship_failed(msg);
                    true
                }
            };
            let empty = self.spool.segment_count() == 0
                && self
                    .spool
                    .pending_digests()
                    .map(|d| d.is_empty())
                    .unwrap_or(false);
            if committer_done.load(Ordering::SeqCst) && empty {
                return;
            }
            if let Some(d) = deadline {
                if Instant::now() >= d && committer_done.load(Ordering::SeqCst) {
                    tracing::warn!(
                        segments = self.spool.segment_count(),
                        "shutdown grace over: leaving unshipped data in the spool for the next start"
                    );
                    return;
                }
            }
            if failed {
                // Back off without listening to new-segment wake-ups.
                let wait = if stopping {
                    backoff.min(Duration::from_millis(200))
                } else {
                    backoff
                };
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            // The committer wakes us after every checkpoint; the timeout is
            // only a safety net, so an idle agent stays asleep.
            let wait = if stopping {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(10)
            };
            let _ = tokio::time::timeout(wait, self.wake.notified()).await;
        }
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        retain_until: OffsetDateTime,
    ) -> anyhow::Result<()> {
        let Some(store) = &self.store else {
            bail!("store {} is not open", self.describe);
        };
        let result = store.put(key, bytes, PutOptions { retain_until }).await;
        self.heartbeat.beat();
        match result {
            Ok(PutOutcome::Created) => Ok(()),
            Ok(PutOutcome::AlreadyPresent) => {
                tracing::debug!(
                    key,
                    "already in the store (retry after a lost acknowledgement)"
                );
                Ok(())
            }
            Err(StoreError::Conflict { key }) => {
                tracing::error!(%key, "INTEGRITY ALARM: the store holds different content under this name; not overwriting");
                bail!("integrity alarm: the store holds different content under {key}; it was not overwritten. Run custody-verify on the store")
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn publish_key(&self) -> anyhow::Result<()> {
        let key = layout::public_key_key(&self.host, &self.public_key_line);
        let line = format!("{}\n", self.public_key_line.trim_end());
        let far = self.retention.retain_until(OffsetDateTime::now_utc());
        self.put(&key, line.as_bytes(), far)
            .await
            .context("publishing the host public key")
    }

    async fn ship_pending(&self) -> anyhow::Result<usize> {
        let mut shipped = 0;
        for seg in self.spool.pending_segments()? {
            let record = std::fs::read(&seg.record)
                .with_context(|| format!("reading {}", seg.record.display()))?;
            let payload = std::fs::read(&seg.payload)
                .with_context(|| format!("reading {}", seg.payload.display()))?;
            let meta = SegmentMeta::decode(&record)
                .with_context(|| format!("spooled record {}", seg.record.display()))?;
            if Sha256::digest(&payload) != meta.object_sha256 {
                bail!(
                    "spooled payload {} does not match its record's object_sha256: the spool was altered or the disk is failing",
                    seg.payload.display()
                );
            }
            let payload_key = layout::segment_payload_key(
                &self.host,
                &meta.stream_id,
                meta.seq,
                &meta.object_sha256,
            );
            let meta_key = layout::segment_meta_key(
                &self.host,
                &meta.stream_id,
                meta.seq,
                &meta.object_sha256,
            );
            self.put(&payload_key, &payload, meta.retain_until).await?;
            self.put(&meta_key, &record, meta.retain_until).await?;
            self.spool
                .mark_segment_shipped(&seg, payload.len() as u64)?;
            self.board.shipped();
            shipped += 1;
        }
        for d in self.spool.pending_digests()? {
            let body =
                std::fs::read(&d.body).with_context(|| format!("reading {}", d.body.display()))?;
            let sig =
                std::fs::read(&d.sig).with_context(|| format!("reading {}", d.sig.display()))?;
            let parsed = DigestBody::decode(&body)
                .with_context(|| format!("spooled digest {}", d.body.display()))?;
            let hash = Sha256::digest(&body);
            let retain = self.retention.retain_until(parsed.window_end);
            self.put(&layout::digest_key(&self.host, d.seq, &hash), &body, retain)
                .await?;
            self.put(
                &layout::digest_sig_key(&self.host, d.seq, &hash),
                &sig,
                retain,
            )
            .await?;
            self.spool.mark_digest_shipped(&d)?;
            self.board.shipped();
            shipped += 1;
        }
        Ok(shipped)
    }
}
