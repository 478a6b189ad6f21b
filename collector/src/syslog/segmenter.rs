//! Cutting each device's messages into segments, by the agent's rules
//! (FORMAT.md §2.1): a segment is closed when its raw bytes would pass the
//! maximum size (4 MiB) or its first message has waited the maximum age
//! (1 s). A message is never split (the maximum message size is checked
//! to fit a segment). A segment also holds messages of one peer address
//! and transport only, since its record names them; a device that changes
//! address or transport starts a new segment.
//!
//! Each message is appended as an octet-counted frame `LEN SP MSG`
//! ([`custody_evidence::octets`]), its bytes untouched.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use custody_evidence::octets;
use custody_evidence::segment::SyslogTransport;
use custody_evidence::StreamId;
use time::OffsetDateTime;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::devices::Device;
use super::message::Message;
use super::shared::Shared;
use super::state::StreamHead;
use super::writer::{Committed, StreamWriter};

/// A closed segment on its way to its stream's writer.
#[derive(Debug)]
pub struct Sealed {
    pub device: Arc<Device>,
    pub transport: SyslogTransport,
    pub peer: IpAddr,
    pub raw: Vec<u8>,
    pub first: OffsetDateTime,
    pub last: OffsetDateTime,
    pub messages: u64,
    /// The memory budget of every message in it, released once stored.
    pub permit: OwnedSemaphorePermit,
}

struct Open {
    sealed: Sealed,
    id: u64,
}

pub struct Segmenter {
    pub shared: Arc<Shared>,
    pub max_bytes: usize,
    pub max_age: Duration,
    /// Chain state recovered at start, handed to each stream's writer.
    pub heads: HashMap<StreamId, StreamHead>,
    pub committed: mpsc::UnboundedSender<Committed>,
    pub writer_tasks: TaskTracker,
    open: HashMap<StreamId, Open>,
    /// Age deadlines in the order segments were opened (so in time order);
    /// entries of segments already closed are skipped by id.
    deadlines: VecDeque<(Instant, StreamId, u64)>,
    writers: HashMap<StreamId, mpsc::UnboundedSender<Sealed>>,
    next_id: u64,
}

impl Segmenter {
    pub fn new(
        shared: Arc<Shared>,
        max_bytes: usize,
        max_age: Duration,
        heads: HashMap<StreamId, StreamHead>,
        committed: mpsc::UnboundedSender<Committed>,
    ) -> Self {
        Segmenter {
            shared,
            max_bytes,
            max_age,
            heads,
            committed,
            writer_tasks: TaskTracker::new(),
            open: HashMap::new(),
            deadlines: VecDeque::new(),
            writers: HashMap::new(),
            next_id: 0,
        }
    }

    /// Runs until every listener has let go of the channel, then closes all
    /// open segments and waits for the writers to store them.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Message>) {
        loop {
            let deadline = self.deadlines.front().map(|d| d.0);
            tokio::select! {
                m = rx.recv() => match m {
                    Some(m) => self.add(m),
                    None => break,
                },
                _ = async { tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() => {
                    self.seal_expired();
                }
            }
        }
        let streams: Vec<StreamId> = self.open.keys().cloned().collect();
        for s in streams {
            self.seal(&s);
        }
        self.writers.clear();
        drop(self.committed);
        self.writer_tasks.close();
        self.writer_tasks.wait().await;
    }

    fn add(&mut self, m: Message) {
        let stream = m.device.name.clone();
        let framed = octets::framed_len(m.bytes.len());
        if let Some(open) = self.open.get(&stream) {
            let s = &open.sealed;
            if s.transport != m.transport
                || s.peer != m.peer
                || s.raw.len() + framed > self.max_bytes
                || *s.device != *m.device
            {
                self.seal(&stream);
            }
        }
        match self.open.get_mut(&stream) {
            Some(open) => {
                let s = &mut open.sealed;
                octets::append_frame(&mut s.raw, &m.bytes);
                s.last = m.received;
                s.messages += 1;
                s.permit.merge(m.permit);
            }
            None => {
                let id = self.next_id;
                self.next_id += 1;
                let mut raw = Vec::with_capacity(framed.max(4096).min(self.max_bytes));
                octets::append_frame(&mut raw, &m.bytes);
                self.deadlines
                    .push_back((Instant::now() + self.max_age, stream.clone(), id));
                self.open.insert(
                    stream.clone(),
                    Open {
                        sealed: Sealed {
                            device: m.device,
                            transport: m.transport,
                            peer: m.peer,
                            raw,
                            first: m.received,
                            last: m.received,
                            messages: 1,
                            permit: m.permit,
                        },
                        id,
                    },
                );
            }
        }
        if self
            .open
            .get(&stream)
            .is_some_and(|o| o.sealed.raw.len() >= self.max_bytes)
        {
            self.seal(&stream);
        }
    }

    fn seal_expired(&mut self) {
        let now = Instant::now();
        while let Some((at, _, _)) = self.deadlines.front() {
            if *at > now {
                break;
            }
            let Some((_, stream, id)) = self.deadlines.pop_front() else {
                break;
            };
            if self.open.get(&stream).is_some_and(|o| o.id == id) {
                self.seal(&stream);
            }
        }
    }

    fn seal(&mut self, stream: &StreamId) {
        let Some(open) = self.open.remove(stream) else {
            return;
        };
        if !self.writers.contains_key(stream) {
            let (tx, rx) = mpsc::unbounded_channel();
            let writer = StreamWriter {
                shared: self.shared.clone(),
                stream: stream.clone(),
                head: self.heads.remove(stream).unwrap_or_default(),
                committed: self.committed.clone(),
            };
            self.writer_tasks.spawn(writer.run(rx));
            self.writers.insert(stream.clone(), tx);
        }
        if self.writers[stream].send(open.sealed).is_err() {
            // The writer stopped on a fatal error (already logged).
            self.shared.stats.add(&self.shared.stats.segments_lost, 1);
        }
    }
}
