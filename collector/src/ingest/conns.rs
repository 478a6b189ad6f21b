//! Which ingest connections are open, who is on the other end of each
//! ([`Standing`]) and which are idle (no request being handled), so that at
//! `max_connections` a slot is taken from the connection that matters least
//! instead of the newcomer waiting.
//!
//! Why idle connections: every agent keeps a keep-alive connection (its
//! HTTP client's idle pool). A fleet larger than `max_connections` would
//! otherwise fill every slot with idle connections, and new agents would
//! time out in the listen backlog until an idle one happened to expire
//! (found by `examples/ingest_bench.rs` with more than 512 hosts). Closing
//! an idle keep-alive connection costs its client one reconnect; refusing
//! a new one costs an agent its upload.
//!
//! Why standing (issue 12, D1): a client with no certificate, or with a
//! revoked or unidentified one, is only ever refused. Eight of them sending
//! the head of a large `PUT` and then nothing used to keep eight busy slots
//! and lock every enrolled agent out. Now such *refused* connections are
//! closed first under pressure, even in the middle of a request, and at most
//! [`Connections::refused_quota`] of them are open at once. The order in
//! which a slot is taken ([`Connections::close_for_room`]):
//!
//! 1. a refused connection, the oldest first;
//! 2. a TLS handshake still unfinished after [`HANDSHAKE_GRACE`];
//! 3. an authenticated connection that is idle, idle the longest first;
//! 4. any other unfinished handshake.
//!
//! An authenticated connection handling a request is never closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A handshake older than this is presumed stalled: it gives up its slot
/// before an idle agent does. A real client's handshake on loopback or a
/// LAN takes milliseconds.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// What the TLS handshake said about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// The handshake is not finished yet.
    Handshake,
    /// A certificate from this CA naming a host, not revoked.
    Authenticated,
    /// No certificate, or one that is revoked or names no host: every
    /// request is refused (401, 403).
    Refused,
}

impl Standing {
    fn code(self) -> u8 {
        match self {
            Standing::Handshake => 0,
            Standing::Authenticated => 1,
            Standing::Refused => 2,
        }
    }

    fn of(code: u8) -> Standing {
        match code {
            1 => Standing::Authenticated,
            2 => Standing::Refused,
            _ => Standing::Handshake,
        }
    }
}

/// Every open connection of one listener.
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    epoch: Instant,
    refused_quota: usize,
}

/// One connection: its standing, how many requests it is handling, since
/// when it has been idle, and the signal that asks it to close.
pub struct ConnState {
    /// The registry's id: accept order, which breaks ties between
    /// connections accepted in the same millisecond.
    id: u64,
    busy: AtomicUsize,
    /// Milliseconds since [`Connections::epoch`] when it was accepted.
    opened_ms: u64,
    /// Milliseconds since [`Connections::epoch`] when it last became idle.
    idle_since_ms: AtomicU64,
    standing: AtomicU8,
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
    /// A registry allowing at most `refused_quota` (at least 1) refused
    /// connections at once.
    pub fn new(refused_quota: usize) -> Arc<Connections> {
        Arc::new(Connections {
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            epoch: Instant::now(),
            refused_quota: refused_quota.max(1),
        })
    }

    /// How many refused connections may be open at once for a listener of
    /// `max_connections`: an eighth, at least one. Small, so that clients
    /// that will only ever be refused hold few slots even before pressure
    /// closes them; more than one, so that a misconfigured agent still
    /// reads why it is refused while others are.
    pub fn refused_quota(max_connections: usize) -> usize {
        (max_connections / 8).max(1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new connection, in its handshake and idle from now.
    pub fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let state = Arc::new(ConnState {
            id,
            busy: AtomicUsize::new(0),
            opened_ms: now,
            idle_since_ms: AtomicU64::new(now),
            standing: AtomicU8::new(Standing::Handshake.code()),
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

    /// Asks one connection to close so that a newcomer gets its slot, in
    /// the order of the module documentation. Returns the standing of the
    /// connection asked, or `None` when every connection is an
    /// authenticated one handling a request (or already closing).
    pub fn close_for_room(&self) -> Option<Standing> {
        let open = self.lock();
        let now = self.now_ms();
        let grace = HANDSHAKE_GRACE.as_millis() as u64;
        let candidates = || {
            open.values()
                .filter(|c| !c.close_requested.load(Ordering::Acquire))
        };
        let refused = candidates()
            .filter(|c| c.standing() == Standing::Refused)
            .min_by_key(|c| (c.opened_ms, c.id));
        let stalled = || {
            candidates()
                .filter(|c| {
                    c.standing() == Standing::Handshake && now.saturating_sub(c.opened_ms) >= grace
                })
                .min_by_key(|c| (c.opened_ms, c.id))
        };
        let idle = || {
            candidates()
                .filter(|c| {
                    c.standing() == Standing::Authenticated && c.busy.load(Ordering::Acquire) == 0
                })
                .min_by_key(|c| (c.idle_since_ms.load(Ordering::Relaxed), c.id))
        };
        let handshake = || {
            candidates()
                .filter(|c| c.standing() == Standing::Handshake)
                .min_by_key(|c| (c.opened_ms, c.id))
        };
        let victim = refused.or_else(stalled).or_else(idle).or_else(handshake)?;
        let standing = victim.standing();
        victim.ask_to_close();
        Some(standing)
    }

    /// Records that `state`'s client is refused (see [`Standing`]); when
    /// that makes more refused connections than the quota, asks the oldest
    /// other one to close and returns true.
    pub fn mark_refused(&self, state: &ConnState) -> bool {
        state.set_standing(Standing::Refused);
        let open = self.lock();
        let refused: Vec<&Arc<ConnState>> = open
            .values()
            .filter(|c| {
                c.standing() == Standing::Refused && !c.close_requested.load(Ordering::Acquire)
            })
            .collect();
        if refused.len() <= self.refused_quota {
            return false;
        }
        let oldest = refused
            .into_iter()
            .filter(|c| c.id != state.id)
            .min_by_key(|c| (c.opened_ms, c.id));
        match oldest {
            Some(c) => {
                c.ask_to_close();
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

    /// What is known of the client now.
    pub fn standing(&self) -> Standing {
        Standing::of(self.standing.load(Ordering::Acquire))
    }

    /// Records what the handshake (or a later revocation) said.
    pub fn set_standing(&self, standing: Standing) {
        self.standing.store(standing.code(), Ordering::Release);
    }

    fn ask_to_close(&self) {
        self.close_requested.store(true, Ordering::Release);
        // notify_one keeps the wake-up if the task is not waiting yet.
        self.close.notify_one();
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

    use std::time::Duration;

    fn authenticated(conns: &Arc<Connections>) -> Registered {
        let r = conns.register();
        r.state.set_standing(Standing::Authenticated);
        r
    }

    async fn asked(r: &Registered, what: &str) {
        tokio::time::timeout(Duration::from_secs(5), r.state.close_requested())
            .await
            .unwrap_or_else(|_| panic!("{what} was not asked to close"));
    }

    #[tokio::test]
    async fn the_longest_idle_connection_is_closed_and_busy_ones_never() {
        let conns = Connections::new(1);
        let old = authenticated(&conns);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = authenticated(&conns);
        let _req = busy.state.busy();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let young = authenticated(&conns);
        assert_eq!(conns.len(), 3);

        // `old` is asked first; its wake-up is kept until it waits.
        assert_eq!(conns.close_for_room(), Some(Standing::Authenticated));
        asked(&old, "the oldest idle connection").await;
        assert_eq!(conns.close_for_room(), Some(Standing::Authenticated));
        asked(&young, "then the young idle one").await;
        assert_eq!(conns.close_for_room(), None, "the busy one is never chosen");
        drop(old);
        assert_eq!(conns.len(), 2);
    }

    #[tokio::test]
    async fn refused_connections_go_first_even_when_busy_and_stay_within_their_quota() {
        let conns = Connections::new(2);
        let agent = authenticated(&conns);
        let first = conns.register();
        let _req = first.state.busy();
        assert!(!conns.mark_refused(&first.state));
        let second = conns.register();
        assert!(!conns.mark_refused(&second.state));
        let third = conns.register();
        let _req3 = third.state.busy();
        assert!(
            conns.mark_refused(&third.state),
            "a third refused one is over the quota of 2"
        );
        asked(&first, "the oldest refused connection, busy as it is").await;

        // Under pressure: refused before the idle agent, busy or not.
        assert_eq!(conns.close_for_room(), Some(Standing::Refused));
        asked(&second, "the next refused connection").await;
        assert_eq!(conns.close_for_room(), Some(Standing::Refused));
        asked(&third, "the busy refused connection").await;
        // A handshake in its grace time goes after the idle agent.
        let handshaking = conns.register();
        assert_eq!(conns.close_for_room(), Some(Standing::Authenticated));
        asked(&agent, "the idle agent").await;
        assert_eq!(conns.close_for_room(), Some(Standing::Handshake));
        asked(&handshaking, "the handshake").await;
        assert_eq!(conns.close_for_room(), None);
    }

    #[tokio::test]
    async fn a_stalled_handshake_goes_before_an_idle_agent_but_a_busy_agent_never() {
        let conns = Connections::new(1);
        let stalled = conns.register();
        tokio::time::sleep(HANDSHAKE_GRACE + Duration::from_millis(50)).await;
        let working = authenticated(&conns);
        let _req = working.state.busy();
        let idle = authenticated(&conns);
        assert_eq!(conns.close_for_room(), Some(Standing::Handshake));
        asked(&stalled, "the stalled handshake").await;
        assert_eq!(conns.close_for_room(), Some(Standing::Authenticated));
        asked(&idle, "the idle agent").await;
        assert_eq!(
            conns.close_for_room(),
            None,
            "the busy agent is never chosen"
        );
    }
}
