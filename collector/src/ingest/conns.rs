//! Which ingest connections are open and which are idle (no request being
//! handled), so that at `max_connections` the connection idle the longest
//! is closed to make room for a new one instead of the newcomer waiting.
//!
//! Why: every agent keeps a keep-alive connection (its HTTP client's idle
//! pool). A fleet larger than `max_connections` would otherwise fill every
//! slot with idle connections, and new agents would time out in the
//! listen backlog until an idle one happened to expire (found by
//! `examples/ingest_bench.rs` with more than 512 hosts). Closing an idle
//! keep-alive connection costs its client one reconnect; refusing a new
//! one costs an agent its upload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// Every open connection of one listener.
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    epoch: Instant,
}

/// One connection: how many requests it is handling, since when it has
/// been idle, and the signal that asks it to close.
pub struct ConnState {
    busy: AtomicUsize,
    /// Milliseconds since [`Connections::epoch`] when it last became idle.
    idle_since_ms: AtomicU64,
    close_requested: AtomicBool,
    close: Notify,
    epoch: Instant,
}

/// Removes its connection from the registry when dropped (the connection
/// task ended, however it ended).
pub struct Registered {
    owner: Arc<Connections>,
    id: u64,
    pub state: Arc<ConnState>,
}

/// A request in progress on a connection; the connection is idle again
/// (from now) when the last one is dropped.
pub struct Busy(Arc<ConnState>);

impl Connections {
    pub fn new() -> Arc<Connections> {
        Arc::new(Connections {
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection, idle from now (it has sent no request yet).
    pub fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            close_requested: AtomicBool::new(false),
            close: Notify::new(),
            epoch: self.epoch,
        });
        self.lock().insert(id, state.clone());
        Registered {
            owner: self.clone(),
            id,
            state,
        }
    }

    /// Asks the connection idle the longest to close; false when none is
    /// idle (every connection is handling a request, or already closing).
    pub fn close_longest_idle(&self) -> bool {
        let open = self.lock();
        let victim = open
            .values()
            .filter(|c| {
                c.busy.load(Ordering::Acquire) == 0 && !c.close_requested.load(Ordering::Acquire)
            })
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Relaxed));
        match victim {
            Some(c) => {
                c.close_requested.store(true, Ordering::Release);
                // notify_one keeps the wake-up if the task is not waiting yet.
                c.close.notify_one();
                true
            }
            None => false,
        }
    }

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ConnState {
    /// Marks a request in progress until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// Completes when the connection has been asked to close.
    pub async fn close_requested(&self) {
        self.close.notified().await
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.epoch.elapsed().as_millis() as u64;
        self.0.idle_since_ms.store(now, Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.owner.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_longest_idle_connection_is_closed_and_busy_ones_never() {
        let conns = Connections::new();
        let old = conns.register();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let busy = conns.register();
        let _req = busy.state.busy();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let young = conns.register();
        assert_eq!(conns.len(), 3);

        assert!(conns.close_longest_idle());
        // `old` was asked; its wake-up is kept until it waits.
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            old.state.close_requested(),
        )
        .await
        .expect("the oldest idle connection is asked to close");
        assert!(conns.close_longest_idle(), "then the young idle one");
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            young.state.close_requested(),
        )
        .await
        .expect("young asked");
        assert!(!conns.close_longest_idle(), "the busy one is never chosen");
        drop(old);
        assert_eq!(conns.len(), 2);
    }
}
