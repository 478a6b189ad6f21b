//! The collector's digests over its device streams, exactly as the agent
//! writes them (FORMAT.md §5): one at every interval (default 60 s) even
//! when nothing was stored, and a last one at shutdown; signed with the
//! collector's Ed25519 key in the sshsig namespace `custody-digest`. The
//! public key is published under `v1/<collector-host>/keys/` first.
//! After each digest the checkpoint is saved.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use custody_evidence::digest::{DigestBody, DIGEST_FORMAT_V1, DIGEST_NAMESPACE};
use custody_evidence::layout;
use custody_evidence::timefmt::{format_utc, now_utc_micros, parse_utc};
use custody_evidence::Sha256;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::shared::Shared;
use super::state::{self, Checkpoint};
use super::writer::Committed;

pub struct DigestWriter {
    pub shared: Arc<Shared>,
    pub interval: Duration,
    pub started: OffsetDateTime,
}

impl DigestWriter {
    /// Runs until every writer is gone (the channel closes), then writes
    /// the final digest. Returns the final checkpoint.
    pub async fn run(
        self,
        mut cp: Checkpoint,
        mut rx: mpsc::UnboundedReceiver<Committed>,
    ) -> anyhow::Result<Checkpoint> {
        self.publish_key().await?;
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + self.interval, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                c = rx.recv() => match c {
                    Some(c) => {
                        cp.streams.insert(c.stream, c.head);
                        cp.digest.pending.push(c.entry);
                    }
                    None => break,
                },
                _ = tick.tick() => self.digest(&mut cp).await?,
            }
        }
        self.digest(&mut cp).await?;
        Ok(cp)
    }

    async fn publish_key(&self) -> anyhow::Result<()> {
        let s = &self.shared;
        let key = layout::public_key_key(&s.host, &s.public_key_line);
        let line = format!("{}\n", s.public_key_line.trim_end());
        s.put(
            &key,
            line.as_bytes(),
            s.retention.retain_until(now_utc_micros()),
        )
        .await
        .context("publishing the collector's public key")
    }

    async fn digest(&self, cp: &mut Checkpoint) -> anyhow::Result<()> {
        let s = &self.shared;
        let now = now_utc_micros();
        let window_start = cp
            .digest
            .window_start
            .as_deref()
            .and_then(|t| parse_utc(t).ok())
            .unwrap_or(self.started);
        let mut segments = cp.digest.pending.clone();
        segments.sort_by(|a, b| (a.stream_id.as_str(), a.seq).cmp(&(b.stream_id.as_str(), b.seq)));
        let body = DigestBody {
            format: DIGEST_FORMAT_V1.to_string(),
            host_id: s.host.clone(),
            agent_instance: s.instance.clone(),
            seq: cp.digest.next_seq,
            prev_digest: cp.digest.prev,
            window_start,
            window_end: now.max(window_start),
            clock: custody_agent::clock::clock_state(),
            public_key: s.public_key_line.clone(),
            segments,
        };
        let bytes = body.encode();
        let sig = s
            .key
            .sign(DIGEST_NAMESPACE, &bytes)
            .context("signing a digest")?;
        let hash = Sha256::digest(&bytes);
        let retain = s.retention.retain_until(body.window_end);
        s.put(
            &layout::digest_key(&s.host, body.seq, &hash),
            &bytes,
            retain,
        )
        .await?;
        s.put(
            &layout::digest_sig_key(&s.host, body.seq, &hash),
            sig.as_bytes(),
            retain,
        )
        .await?;
        cp.digest.next_seq += 1;
        cp.digest.prev = Some(hash);
        cp.digest.window_start = Some(format_utc(body.window_end));
        cp.digest.pending.clear();
        s.stats.add(&s.stats.digests_stored, 1);
        tracing::debug!(
            seq = body.seq,
            segments = body.segments.len(),
            "syslog digest stored"
        );
        let dir = s.dir.clone();
        let snapshot = cp.clone();
        tokio::task::spawn_blocking(move || state::save(&dir, &snapshot))
            .await
            .context("checkpoint task")?
            .context("saving the syslog checkpoint")
    }
}
