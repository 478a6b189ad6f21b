//! A received message on its way to a segment, and the memory budget that
//! bounds how many bytes may be received but not yet stored.
//!
//! Each message holds permits for its size (plus a fixed overhead) from one
//! semaphore shared by all listeners; they are released when the segment
//! holding the message is in the store. TCP and TLS readers wait for
//! permits before reading on (back-pressure: the sender's socket buffer
//! fills and it blocks); the UDP reader cannot make a sender wait, so it
//! drops the datagram and counts it.

use std::net::IpAddr;
use std::sync::Arc;

use custody_evidence::segment::SyslogTransport;
use time::OffsetDateTime;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::devices::Device;

/// Bookkeeping cost charged per message besides its bytes, so a flood of
/// tiny messages is bounded too.
const OVERHEAD: usize = 128;

/// One syslog message exactly as received.
#[derive(Debug)]
pub struct Message {
    pub device: Arc<Device>,
    pub transport: SyslogTransport,
    pub peer: IpAddr,
    pub received: OffsetDateTime,
    pub bytes: Vec<u8>,
    pub permit: OwnedSemaphorePermit,
}

/// The shared budget of bytes in memory.
#[derive(Debug, Clone)]
pub struct Budget {
    sem: Arc<Semaphore>,
    max: usize,
}

impl Budget {
    pub fn new(max_bytes: usize) -> Self {
        Budget {
            sem: Arc::new(Semaphore::new(max_bytes)),
            max: max_bytes,
        }
    }

    fn cost(len: usize) -> u32 {
        u32::try_from(len + OVERHEAD).unwrap_or(u32::MAX)
    }

    /// Waits for room (TCP, TLS). `None` only if the budget was closed.
    pub async fn acquire(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        self.sem
            .clone()
            .acquire_many_owned(Self::cost(len))
            .await
            .ok()
    }

    /// Room now or never (UDP).
    pub fn try_acquire(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        self.sem
            .clone()
            .try_acquire_many_owned(Self::cost(len))
            .ok()
    }

    /// The budget's size in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes currently held by messages not yet stored.
    pub fn in_use(&self) -> usize {
        self.max - self.sem.available_permits()
    }
}
