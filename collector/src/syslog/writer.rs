//! One device stream's writer: seals each segment (SHA-256 of the raw
//! bytes, one zstd frame), links it into the stream's hash chain, and
//! stores payload then record, one segment at a time and in seq order.
//! Only after the record is stored does the segment count as written (its
//! digest entry goes to the digest task, its memory budget is released).

use std::sync::Arc;

use anyhow::Context;
use custody_evidence::digest::DigestEntry;
use custody_evidence::layout;
use custody_evidence::segment::{
    compress_payload, ByteRange, Framing, SegmentMeta, Source, Split, SyslogKind, SyslogSource,
    SEGMENT_FORMAT_V1,
};
use custody_evidence::{SegmentSeq, Sha256, StreamId};
use tokio::sync::mpsc;

use super::segmenter::Sealed;
use super::shared::Shared;
use super::state::{self, StreamHead};

/// A segment that is in the store.
#[derive(Debug)]
pub struct Committed {
    pub stream: StreamId,
    pub head: StreamHead,
    pub entry: DigestEntry,
}

pub struct StreamWriter {
    pub shared: Arc<Shared>,
    pub stream: StreamId,
    pub head: StreamHead,
    pub committed: mpsc::UnboundedSender<Committed>,
}

impl StreamWriter {
    /// Writes segments until the segmenter closes the channel. On a fatal
    /// error the service is stopped and the remaining segments are counted
    /// as lost.
    pub async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Sealed>) {
        while let Some(seg) = rx.recv().await {
            if let Err(e) = self.write(seg).await {
                self.shared.stats.add(&self.shared.stats.segments_lost, 1);
                let e = e.context(format!("syslog stream {}", self.stream));
                self.shared.fail(&e);
                while rx.recv().await.is_some() {
                    self.shared.stats.add(&self.shared.stats.segments_lost, 1);
                }
                return;
            }
        }
    }

    async fn write(&mut self, seg: Sealed) -> anyhow::Result<()> {
        let level = self.shared.zstd_level;
        let Sealed {
            device,
            transport,
            peer,
            raw,
            first,
            last,
            messages,
            permit,
        } = seg;
        let (raw, object) = tokio::task::spawn_blocking(move || {
            let object = compress_payload(&raw, level);
            (raw, object)
        })
        .await
        .context("compression task")?;
        let object = object.context("zstd compression of a segment")?;
        let raw_len = raw.len() as u64;
        let seq = self.head.next_seq;
        let meta = SegmentMeta {
            format: SEGMENT_FORMAT_V1.to_string(),
            host_id: self.shared.host.clone(),
            stream_id: self.stream.clone(),
            category: device.category,
            seq: SegmentSeq(seq),
            agent_instance: self.shared.instance.clone(),
            framing: Framing::OctetCounted,
            source: Source::Syslog(SyslogSource {
                kind: SyslogKind::Syslog,
                device: device.name.to_string(),
                transport,
                peer: peer.to_string(),
                core_system: device.core_system,
            }),
            range: ByteRange {
                start: self.head.next_offset,
                end: self.head.next_offset + raw_len,
            },
            split: Split::default(),
            first_read: first,
            last_read: last,
            raw_len,
            raw_sha256: Sha256::digest(&raw),
            object_len: object.len() as u64,
            object_sha256: Sha256::digest(&object),
            prev_segment: self.head.head,
            retain_until: self.shared.retention.retain_until(first),
        };
        drop(raw);
        let record = meta.encode();
        let dir = self.shared.dir.clone();
        let (stream, rec) = (self.stream.clone(), record.clone());
        tokio::task::spawn_blocking(move || state::write_inflight(&dir, &stream, seq, &rec))
            .await
            .context("in-flight record task")??;
        let host = &self.shared.host;
        let payload_key =
            layout::segment_payload_key(host, &self.stream, meta.seq, &meta.object_sha256);
        let meta_key = layout::segment_meta_key(host, &self.stream, meta.seq, &meta.object_sha256);
        self.shared
            .put(&payload_key, &object, meta.retain_until)
            .await?;
        self.shared
            .put(&meta_key, &record, meta.retain_until)
            .await?;
        state::remove_inflight(&self.shared.dir, &self.stream, seq);
        drop(permit);
        let chain = SegmentMeta::chain_hash(&record);
        self.head = StreamHead {
            next_seq: seq + 1,
            head: Some(chain),
            next_offset: meta.range.end,
        };
        self.shared
            .stats
            .segment_stored(self.stream.as_str(), messages, raw_len);
        tracing::debug!(stream = %self.stream, seq, messages, bytes = raw_len, "syslog segment stored");
        // The digest task outlives every writer; a send error means it failed
        // and already stopped the service.
        let _ = self.committed.send(Committed {
            stream: self.stream.clone(),
            head: self.head.clone(),
            entry: DigestEntry {
                stream_id: self.stream.clone(),
                seq: meta.seq,
                meta_sha256: chain,
                object_sha256: meta.object_sha256,
                raw_sha256: meta.raw_sha256,
            },
        });
        Ok(())
    }
}
