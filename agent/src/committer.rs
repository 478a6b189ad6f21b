//! The committer: the one owner of durable state. It makes each sealed
//! segment durable in the spool, links it into its stream's hash chain, and
//! only then advances the checkpoint; it also writes the signed digests.
//!
//! Order of durability, which every recovery argument rests on:
//! payload → file state → record (spool) → checkpoint → shipping.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use custody_evidence::digest::{DigestBody, DigestEntry, DIGEST_FORMAT_V1, DIGEST_NAMESPACE};
use custody_evidence::retention::RetentionPolicy;
use custody_evidence::segment::{SegmentMeta, SEGMENT_FORMAT_V1};
use custody_evidence::sign::HostKey;
use custody_evidence::timefmt::{format_utc, parse_utc};
use custody_evidence::{HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use time::OffsetDateTime;

use crate::board::Board;
use crate::checkpoint::{self, Checkpoint, FileState, StateAfter};
use crate::service::Heartbeat;
use crate::source::{SealedSegment, SourceEvent};
use crate::spool::Spool;
use crate::wake::Wake;

/// Longest the committer sleeps when nothing happens.
pub const IDLE_TURN: Duration = Duration::from_secs(5);

/// Rolls a checkpoint forward over what the spool holds beyond it: the
/// segments and digests made durable after the checkpoint was written.
pub fn recover(cp: &mut Checkpoint, spool: &Spool) -> anyhow::Result<()> {
    let mut streams: Vec<StreamId> = spool.streams()?;
    streams.extend(cp.streams.keys().cloned());
    streams.sort();
    streams.dedup();
    for stream in streams {
        let st = cp.streams.entry(stream.clone()).or_default();
        for (seq, record, state) in spool.records_from(&stream, st.next_seq)? {
            if seq != st.next_seq {
                bail!(
                    "spool for stream {stream} jumps from segment {} to {seq}: the spool was altered; \
                     inspect {} before starting again",
                    st.next_seq,
                    spool_hint()
                );
            }
            let meta = SegmentMeta::decode(&record)
                .with_context(|| format!("spooled record {stream}/{seq}"))?;
            if meta.prev_segment != st.head {
                bail!("spooled record {stream}/{seq} does not chain to the checkpoint's head: the spool was altered");
            }
            let after: StateAfter = serde_json::from_slice(&state)
                .with_context(|| format!("spooled file state {stream}/{seq}"))?;
            st.next_seq = seq + 1;
            st.head = Some(SegmentMeta::chain_hash(&record));
            match after {
                StateAfter::File(file) => upsert(&mut st.files, file),
                StateAfter::Journal { journal } => st.journal = Some(journal),
                StateAfter::EventLog { eventlog } => st.eventlog = Some(eventlog),
                StateAfter::Inventory { inventory } => st.inventory = Some(inventory),
            }
            cp.digest.pending.push(entry_of(&meta, &record));
            tracing::info!(%stream, seq, "rolled the checkpoint forward over a spooled segment");
        }
    }
    for (seq, body) in spool.digests_from(cp.digest.next_seq)? {
        if seq != cp.digest.next_seq {
            bail!(
                "spooled digests jump from {} to {seq}: the spool was altered",
                cp.digest.next_seq
            );
        }
        let d = DigestBody::decode(&body).with_context(|| format!("spooled digest {seq}"))?;
        cp.digest.next_seq = seq + 1;
        cp.digest.prev = Some(Sha256::digest(&body));
        cp.digest.window_start = Some(format_utc(d.window_end));
        cp.digest.pending.retain(|e| {
            !d.segments
                .iter()
                .any(|x| x.stream_id == e.stream_id && x.seq == e.seq)
        });
    }
    Ok(())
}

fn spool_hint() -> &'static str {
    "the state directory's spool/"
}

fn upsert(files: &mut Vec<FileState>, file: FileState) {
    match files.iter_mut().find(|f| f.key == file.key) {
        Some(f) => *f = file,
        None => files.push(file),
    }
}

fn entry_of(meta: &SegmentMeta, record: &[u8]) -> DigestEntry {
    DigestEntry {
        stream_id: meta.stream_id.clone(),
        seq: meta.seq,
        meta_sha256: SegmentMeta::chain_hash(record),
        object_sha256: meta.object_sha256,
        raw_sha256: meta.raw_sha256,
    }
}

pub struct Committer {
    pub host: HostId,
    pub instance: InstanceId,
    pub state_dir: PathBuf,
    pub retention: RetentionPolicy,
    pub key: HostKey,
    pub public_key_line: String,
    pub spool: Arc<Spool>,
    pub spool_max_bytes: u64,
    pub digest_interval: Duration,
    pub board: Arc<Board>,
    pub paused: Arc<AtomicBool>,
    pub source_wakes: Vec<Arc<Wake>>,
    pub ship_wake: Arc<tokio::sync::Notify>,
    pub stop: Arc<AtomicBool>,
    pub shutdown_grace: Duration,
    pub started: OffsetDateTime,
    /// Touched every loop turn (at least every [`IDLE_TURN`], idle or not):
    /// what the systemd watchdog checks.
    pub heartbeat: Arc<Heartbeat>,
}

impl Committer {
    /// Runs until every source has reported `Done` (or all are gone).
    pub fn run(
        self,
        mut cp: Checkpoint,
        rx: Receiver<SourceEvent>,
        sources: usize,
    ) -> anyhow::Result<()> {
        let mut queue: VecDeque<SourceEvent> = VecDeque::new();
        let mut done = 0usize;
        let mut dirty = false;
        let mut next_digest = Instant::now() + self.digest_interval;
        let mut prev_gen: BTreeMap<StreamId, u64> = cp
            .streams
            .iter()
            .map(|(k, v)| (k.clone(), v.next_seq))
            .collect();
        let mut prev_digest_gen = cp.digest.next_seq;
        let mut failing_since: Option<Instant> = None;
        let mut disconnected = false;
        loop {
            self.heartbeat.beat();
            // Take what has arrived, waiting at most until the next digest.
            if queue.is_empty() && !disconnected {
                // While paused, look again soon: the shipper drains the
                // spool without telling us. Otherwise sources, stop and the
                // digest timer are the reasons to wake, with a turn every
                // few seconds so a watchdog can see the loop is alive.
                let until_digest = next_digest.saturating_duration_since(Instant::now());
                let wait = if self.paused.load(Ordering::SeqCst) {
                    until_digest.min(Duration::from_millis(500))
                } else {
                    until_digest.min(IDLE_TURN)
                };
                match rx.recv_timeout(wait) {
                    Ok(ev) => queue.push_back(ev),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => disconnected = true,
                }
            }
            while queue.len() < 64 {
                match rx.try_recv() {
                    Ok(ev) => queue.push_back(ev),
                    Err(_) => break,
                }
            }
            // Apply in order; stop at the first segment the spool refuses.
            let mut blocked: Option<String> = None;
            while let Some(ev) = queue.pop_front() {
                match ev {
                    SourceEvent::Segment(seg) => match self.commit_segment(&mut cp, &seg) {
                        Ok(()) => dirty = true,
                        Err(e) => {
                            blocked = Some(format!("{e:#}"));
                            queue.push_front(SourceEvent::Segment(seg));
                            break;
                        }
                    },
                    SourceEvent::Track(stream, file) => {
                        self.board.file_committed(
                            &stream,
                            file.key.device,
                            file.key.inode,
                            file.offset,
                        );
                        upsert(&mut cp.streams.entry(stream).or_default().files, file);
                        dirty = true;
                    }
                    SourceEvent::Forget(stream, key) => {
                        self.board.file_forgotten(&stream, key.device, key.inode);
                        if let Some(st) = cp.streams.get_mut(&stream) {
                            st.files.retain(|f| f.key != key);
                        }
                        dirty = true;
                    }
                    SourceEvent::Done(_) => done += 1,
                }
            }
            let finishing = done >= sources || disconnected;
            if (Instant::now() >= next_digest || (finishing && queue.is_empty()))
                && blocked.is_none()
            {
                match self.write_digest(&mut cp) {
                    Ok(()) => {
                        dirty = true;
                        next_digest = Instant::now() + self.digest_interval;
                    }
                    Err(e) => blocked = Some(format!("{e:#}")),
                }
            }
            if dirty {
                match checkpoint::save(&self.state_dir, &cp) {
                    Ok(()) => {
                        dirty = false;
                        for (stream, below) in &prev_gen {
                            self.spool.forget_shipped_segments(stream, *below);
                        }
                        self.spool.forget_shipped_digests(prev_digest_gen);
                        prev_gen = cp
                            .streams
                            .iter()
                            .map(|(k, v)| (k.clone(), v.next_seq))
                            .collect();
                        prev_digest_gen = cp.digest.next_seq;
                        self.ship_wake.notify_one();
                    }
                    Err(e) => blocked = Some(format!("checkpoint: {e:#}")),
                }
            }
            let full = self.spool.bytes() >= self.spool_max_bytes;
            let was_paused = self.paused.load(Ordering::SeqCst);
            let pause = full || blocked.is_some();
            if pause != was_paused {
                self.paused.store(pause, Ordering::SeqCst);
                if pause {
                    tracing::warn!(
                        spool_bytes = self.spool.bytes(),
                        max = self.spool_max_bytes,
                        error = blocked.as_deref().unwrap_or(""),
                        "spool full or unwritable: reading paused (back-pressure); no data is dropped"
                    );
                } else {
                    tracing::info!("spool has room again: reading resumed");
                    for w in &self.source_wakes {
                        w.notify();
                    }
                }
            }
            self.board.spool(
                self.spool.bytes(),
                self.spool.segment_count(),
                pause,
                blocked.clone(),
            );
            if let Some(why) = &blocked {
                let since = *failing_since.get_or_insert_with(Instant::now);
                tracing::error!("cannot make data durable in the spool: {why}; retrying (nothing is lost: unread data stays in the source files)");
                if self.stop.load(Ordering::SeqCst) && since.elapsed() > self.shutdown_grace {
                    bail!("shutting down with the spool unwritable: {why}; segments not yet durable will be read again from the source files at the next start");
                }
                std::thread::sleep(Duration::from_millis(500));
                continue;
            }
            failing_since = None;
            if finishing && queue.is_empty() {
                return Ok(());
            }
        }
    }

    fn commit_segment(&self, cp: &mut Checkpoint, seg: &SealedSegment) -> anyhow::Result<()> {
        let st = cp.streams.entry(seg.stream.clone()).or_default();
        if seg.seq != st.next_seq {
            bail!(
                "internal: stream {} sealed segment {} but the chain expects {}",
                seg.stream,
                seg.seq,
                st.next_seq
            );
        }
        let meta = SegmentMeta {
            format: SEGMENT_FORMAT_V1.to_string(),
            host_id: self.host.clone(),
            stream_id: seg.stream.clone(),
            category: seg.category,
            seq: SegmentSeq(seg.seq),
            agent_instance: self.instance.clone(),
            framing: seg.framing,
            source: seg.source.clone(),
            range: seg.range,
            split: seg.split,
            first_read: seg.first_read,
            last_read: seg.last_read,
            raw_len: seg.raw_len,
            raw_sha256: seg.raw_sha256,
            object_len: seg.object.len() as u64,
            object_sha256: seg.object_sha256,
            prev_segment: st.head,
            retain_until: self.retention.retain_until(seg.first_read),
        };
        let record = meta.encode();
        let state = serde_json::to_vec(&seg.after).context("encoding file state")?;
        self.spool
            .write_segment(&seg.stream, seg.seq, &seg.object, &record, &state)
            .with_context(|| format!("spooling segment {}/{}", seg.stream, seg.seq))?;
        st.next_seq = seg.seq + 1;
        st.head = Some(SegmentMeta::chain_hash(&record));
        match &seg.after {
            StateAfter::File(f) => {
                upsert(&mut st.files, f.clone());
                self.board
                    .file_committed(&seg.stream, f.key.device, f.key.inode, f.offset);
            }
            StateAfter::Journal { journal } => {
                st.journal = Some(journal.clone());
                self.board.journal_committed(&seg.stream, journal);
            }
            StateAfter::EventLog { eventlog } => {
                st.eventlog = Some(eventlog.clone());
                self.board.eventlog_committed(&seg.stream, eventlog);
            }
            StateAfter::Inventory { inventory } => st.inventory = Some(inventory.clone()),
        }
        cp.digest.pending.push(entry_of(&meta, &record));
        self.board.segment_committed(&seg.stream, seg.seq);
        Ok(())
    }

    fn write_digest(&self, cp: &mut Checkpoint) -> anyhow::Result<()> {
        let now = custody_evidence::timefmt::now_utc_micros();
        let window_start = match &cp.digest.window_start {
            Some(s) => parse_utc(s).unwrap_or(self.started),
            None => self.started,
        };
        let mut segments = cp.digest.pending.clone();
        segments.sort_by(|a, b| (a.stream_id.as_str(), a.seq).cmp(&(b.stream_id.as_str(), b.seq)));
        let body = DigestBody {
            format: DIGEST_FORMAT_V1.to_string(),
            host_id: self.host.clone(),
            agent_instance: self.instance.clone(),
            seq: cp.digest.next_seq,
            prev_digest: cp.digest.prev,
            window_start,
            window_end: now.max(window_start),
            clock: crate::clock::clock_state(),
            public_key: self.public_key_line.clone(),
            segments,
        };
        let bytes = body.encode();
        let sig = self
            .key
            .sign(DIGEST_NAMESPACE, &bytes)
            .context("signing digest")?;
        self.spool
            .write_digest(body.seq, &bytes, sig.as_bytes())
            .with_context(|| format!("spooling digest {}", body.seq))?;
        cp.digest.next_seq += 1;
        cp.digest.prev = Some(Sha256::digest(&bytes));
        cp.digest.window_start = Some(format_utc(body.window_end));
        cp.digest.pending.clear();
        self.board.digest_written(body.seq);
        tracing::debug!(
            seq = body.seq,
            segments = body.segments.len(),
            "digest written"
        );
        Ok(())
    }
}
