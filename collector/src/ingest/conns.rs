//! Which ingest connections are open, who is on the other end of each
//! ([`Standing`]), which hold one of the `max_connections` agent slots and
//! which are idle (no request being handled), so that a newcomer gets a
//! slot from the connection that matters least instead of waiting.
//!
//! Two pools (issue 12, D1):
//!
//! - **Agent slots** (`max_connections`) are held only by connections
//!   whose handshake presented a certificate of this CA naming a host that
//!   is not revoked. Only such a connection can make room in this pool
//!   ([`Connections::close_for_agent`]): a refused connection that still
//!   holds a slot (revoked while it was open) goes first, then the idle
//!   agent connection idle the longest. A connection handling an agent's
//!   request is never closed.
//! - **The door** ([`Connections::door_size`] places) is held by every
//!   connection from accept until its handshake says who it is, and from
//!   then on by connections that are only ever refused (no certificate, a
//!   revoked one, one naming no host). At the door a newcomer makes room
//!   ([`Connections::close_at_door`]) by closing a refused connection, the
//!   oldest first (even in the middle of a request: it can only ever be
//!   refused), or else a handshake unfinished after [`HANDSHAKE_GRACE`]. A
//!   handshake in its grace time is never closed: then newcomers wait.
//!
//! So clients without a usable certificate compete only with each other
//! and with handshakes for the door; they can never take or close an agent
//! slot. Eight of them sending the head of a large `PUT` and then nothing
//! used to hold all eight slots of `--max-connections 8` and lock every
//! agent out.
//!
//! Why idle agent connections are closed at all: every agent keeps a
//! keep-alive connection (its HTTP client's idle pool). A fleet larger than
//! `max_connections` would otherwise fill every slot with idle connections,
//! and new agents would wait until an idle one happened to expire (found by
//! `examples/ingest_bench.rs` with more than 512 hosts). Closing an idle
//! keep-alive connection costs its client one reconnect; refusing a new one
//! costs an agent its upload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A handshake older than this is presumed stalled and gives up its place
/// at the door to a newcomer. A real client's handshake on loopback or a
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
    /// Woken when a connection at the door finishes its handshake as a
    /// refused client, so a newcomer waiting for the door can close it
    /// at once instead of at its next look.
    refused_at_door: Notify,
}

/// One connection: its standing, whether it holds an agent slot, how many
/// requests it is handling, since when it has been idle, and the signal
/// that asks it to close.
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
    /// Holds one of the `max_connections` agent slots.
    in_slot: AtomicBool,
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
            refused_at_door: Notify::new(),
        })
    }

    /// Places at the door (handshakes in progress and refused clients)
    /// beside `max_connections` agent slots: an eighth as many, at least 8,
    /// so that handshakes proceed in parallel while refused clients hold
    /// little.
    pub fn door_size(max_connections: usize) -> usize {
        (max_connections / 8).max(8)
    }

    /// Records that `state`'s client is refused (it stays at the door) and
    /// wakes newcomers waiting for a place there.
    pub fn mark_refused(&self, state: &ConnState) {
        state.set_standing(Standing::Refused);
        self.refused_at_door.notify_waiters();
    }

    /// Completes at the next [`Connections::mark_refused`] after the
    /// returned future is enabled or first polled.
    pub fn refused_at_door(&self) -> tokio::sync::futures::Notified<'_> {
        self.refused_at_door.notified()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// A new connection, at the door in its handshake, idle from now.
    pub fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = self.now_ms();
        let state = Arc::new(ConnState {
            id,
            busy: AtomicUsize::new(0),
            opened_ms: now,
            idle_since_ms: AtomicU64::new(now),
            standing: AtomicU8::new(Standing::Handshake.code()),
            in_slot: AtomicBool::new(false),
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

    /// For a newcomer at a full door: asks the oldest refused connection
    /// at the door, or else the oldest handshake past [`HANDSHAKE_GRACE`],
    /// to close. Returns its standing; `None` when there is neither (the
    /// newcomer waits).
    pub fn close_at_door(&self) -> Option<Standing> {
        let open = self.lock();
        let now = self.now_ms();
        let grace = HANDSHAKE_GRACE.as_millis() as u64;
        let at_door = || {
            open.values().filter(|c| {
                !c.in_slot.load(Ordering::Acquire) && !c.close_requested.load(Ordering::Acquire)
            })
        };
        let victim = at_door()
            .filter(|c| c.standing() == Standing::Refused)
            .min_by_key(|c| (c.opened_ms, c.id))
            .or_else(|| {
                at_door()
                    .filter(|c| {
                        c.standing() == Standing::Handshake
                            && now.saturating_sub(c.opened_ms) >= grace
                    })
                    .min_by_key(|c| (c.opened_ms, c.id))
            })?;
        let standing = victim.standing();
        victim.ask_to_close();
        Some(standing)
    }

    /// For an authenticated connection waiting for an agent slot: asks a
    /// refused connection holding a slot (revoked since), or else the idle
    /// agent connection idle the longest, to close. Returns its standing;
    /// `None` when every slot is an agent's request in progress.
    pub fn close_for_agent(&self) -> Option<Standing> {
        let open = self.lock();
        let in_slot = || {
            open.values().filter(|c| {
                c.in_slot.load(Ordering::Acquire) && !c.close_requested.load(Ordering::Acquire)
            })
        };
        let victim = in_slot()
            .filter(|c| c.standing() == Standing::Refused)
            .min_by_key(|c| (c.opened_ms, c.id))
            .or_else(|| {
                in_slot()
                    .filter(|c| {
                        c.standing() == Standing::Authenticated
                            && c.busy.load(Ordering::Acquire) == 0
                    })
                    .min_by_key(|c| (c.idle_since_ms.load(Ordering::Relaxed), c.id))
            })?;
        let standing = victim.standing();
        victim.ask_to_close();
        Some(standing)
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

    /// Records that the connection now holds an agent slot (and has left
    /// the door).
    pub fn set_in_slot(&self) {
        self.in_slot.store(true, Ordering::Release);
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

    fn agent(conns: &Arc<Connections>) -> Registered {
        let r = conns.register();
        r.state.set_standing(Standing::Authenticated);
        r.state.set_in_slot();
        r
    }

    fn refused(conns: &Arc<Connections>) -> Registered {
        let r = conns.register();
        r.state.set_standing(Standing::Refused);
        r
    }

    async fn asked(r: &Registered, what: &str) {
        tokio::time::timeout(Duration::from_secs(5), r.state.close_requested())
            .await
            .unwrap_or_else(|_| panic!("{what} was not asked to close"));
    }

    #[tokio::test]
    async fn the_longest_idle_agent_is_closed_for_an_agent_and_busy_ones_never() {
        let conns = Connections::new();
        let old = agent(&conns);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let busy = agent(&conns);
        let _req = busy.state.busy();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let young = agent(&conns);
        assert_eq!(conns.len(), 3);

        // `old` is asked first; its wake-up is kept until it waits.
        assert_eq!(conns.close_for_agent(), Some(Standing::Authenticated));
        asked(&old, "the oldest idle connection").await;
        assert_eq!(conns.close_for_agent(), Some(Standing::Authenticated));
        asked(&young, "then the young idle one").await;
        assert_eq!(
            conns.close_for_agent(),
            None,
            "the busy one is never chosen"
        );
        drop(old);
        assert_eq!(conns.len(), 2);
    }

    #[tokio::test]
    async fn the_door_never_closes_an_agent_slot_and_refused_clients_go_first_even_busy() {
        let conns = Connections::new();
        let idle_agent = agent(&conns);
        let first = refused(&conns);
        let _req = first.state.busy();
        let second = refused(&conns);
        let handshaking = conns.register();

        assert_eq!(conns.close_at_door(), Some(Standing::Refused));
        asked(&first, "the oldest refused connection, busy as it is").await;
        assert_eq!(conns.close_at_door(), Some(Standing::Refused));
        asked(&second, "the next refused connection").await;
        assert_eq!(
            conns.close_at_door(),
            None,
            "neither the idle agent nor a handshake in its grace time"
        );
        // A revoked connection holding a slot goes before the idle agent.
        let revoked = agent(&conns);
        revoked.state.set_standing(Standing::Refused);
        let _req = revoked.state.busy();
        assert_eq!(conns.close_for_agent(), Some(Standing::Refused));
        asked(&revoked, "the revoked connection in a slot").await;
        assert_eq!(conns.close_for_agent(), Some(Standing::Authenticated));
        asked(&idle_agent, "the idle agent, for an agent").await;
        drop(handshaking);
    }

    #[tokio::test]
    async fn a_stalled_handshake_gives_up_its_place_at_the_door() {
        let conns = Connections::new();
        let stalled = conns.register();
        tokio::time::sleep(HANDSHAKE_GRACE + Duration::from_millis(50)).await;
        let fresh = conns.register();
        assert_eq!(conns.close_at_door(), Some(Standing::Handshake));
        asked(&stalled, "the stalled handshake").await;
        assert_eq!(conns.close_at_door(), None, "the fresh handshake is kept");
        drop(fresh);
    }
}
