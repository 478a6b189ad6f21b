//! A wrapper that makes any store misbehave on purpose, so tests can show
//! the agent survives outages, refused writes and lost acknowledgements.
//!
//! The fault plan is shared by every clone of a [`FaultyStore`]: hand one
//! clone to the code under test (as `Arc<dyn ObjectStore>`) and keep another
//! to change the plan and read the call counters while it runs.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::{ObjectInfo, ObjectStore, PruneReport, PutOptions, PutOutcome, StoreError};

/// One kind of misbehaviour. Faults of different kinds combine; setting a
/// kind again replaces its previous setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every operation fails with [`StoreError::Unavailable`] until cleared.
    Unavailable,
    /// The next `n` puts fail before reaching the inner store.
    FailNextPuts(u32),
    /// The next `n` puts that succeed in the inner store report an error to
    /// the caller anyway: the write happened, the acknowledgement was lost.
    FailAfterWrite(u32),
    /// Every operation waits this long first (zero turns it off).
    Latency(Duration),
}

/// How often each operation was called (failed calls included), and how
/// many failures were injected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CallCounts {
    pub put: u64,
    pub get: u64,
    pub head: u64,
    pub list: u64,
    pub set_legal_hold: u64,
    pub prune: u64,
    pub injected: u64,
}

#[derive(Debug, Default)]
struct Plan {
    unavailable: bool,
    fail_next_puts: u32,
    fail_after_write: u32,
    latency: Option<Duration>,
}

#[derive(Debug, Default)]
struct Shared {
    plan: Mutex<Plan>,
    counts: Mutex<CallCounts>,
}

/// Wraps `S` and injects the faults in its (shared, changeable) plan.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: Arc<S>,
    shared: Arc<Shared>,
}

impl<S> Clone for FaultyStore<S> {
    fn clone(&self) -> Self {
        FaultyStore {
            inner: Arc::clone(&self.inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Which operation a call is, for the counters.
#[derive(Clone, Copy)]
enum Op {
    Put,
    Get,
    Head,
    List,
    Hold,
    Prune,
}

impl<S: ObjectStore> FaultyStore<S> {
    /// Wraps `inner` with an empty plan: it behaves exactly like `inner`.
    pub fn new(inner: S) -> FaultyStore<S> {
        FaultyStore {
            inner: Arc::new(inner),
            shared: Arc::default(),
        }
    }

    /// The wrapped store, to inspect what really arrived.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Adds `fault` to the plan (replacing an earlier one of the same kind).
    pub fn set(&self, fault: Fault) {
        let mut plan = self.plan();
        match fault {
            Fault::Unavailable => plan.unavailable = true,
            Fault::FailNextPuts(n) => plan.fail_next_puts = n,
            Fault::FailAfterWrite(n) => plan.fail_after_write = n,
            Fault::Latency(d) => plan.latency = (!d.is_zero()).then_some(d),
        }
    }

    /// Removes every fault: from now on calls pass straight through.
    pub fn clear(&self) {
        *self.plan() = Plan::default();
    }

    /// A snapshot of the call counters.
    pub fn counts(&self) -> CallCounts {
        *lock(&self.shared.counts)
    }

    fn plan(&self) -> MutexGuard<'_, Plan> {
        lock(&self.shared.plan)
    }

    fn injected(&self, why: &str) -> StoreError {
        lock(&self.shared.counts).injected += 1;
        StoreError::Unavailable(format!("injected fault: {why}"))
    }

    /// Counts the call, waits out any latency, and fails it if the store is
    /// "down" (or, for a put, if a refused put is due).
    async fn before(&self, op: Op) -> Result<(), StoreError> {
        {
            let mut counts = lock(&self.shared.counts);
            match op {
                Op::Put => counts.put += 1,
                Op::Get => counts.get += 1,
                Op::Head => counts.head += 1,
                Op::List => counts.list += 1,
                Op::Hold => counts.set_legal_hold += 1,
                Op::Prune => counts.prune += 1,
            }
        }
        let latency = self.plan().latency;
        if let Some(d) = latency {
            tokio::time::sleep(d).await;
        }
        let refused = {
            let mut plan = self.plan();
            if plan.unavailable {
                Some("store unavailable (Fault::Unavailable)")
            } else if matches!(op, Op::Put) && plan.fail_next_puts > 0 {
                plan.fail_next_puts -= 1;
                Some("put refused before writing (Fault::FailNextPuts)")
            } else {
                None
            }
        };
        match refused {
            Some(why) => Err(self.injected(why)),
            None => Ok(()),
        }
    }
}

/// The plan and counters stay valid even if a holder panicked.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl<S: ObjectStore> ObjectStore for FaultyStore<S> {
    fn describe(&self) -> String {
        format!("fault-injecting wrapper around {}", self.inner.describe())
    }

    async fn put(
        &self,
        key: &str,
        bytes: &[u8],
        opts: PutOptions,
    ) -> Result<PutOutcome, StoreError> {
        self.before(Op::Put).await?;
        let outcome = self.inner.put(key, bytes, opts).await?;
        let lose_ack = {
            let mut plan = self.plan();
            let due = plan.fail_after_write > 0;
            if due {
                plan.fail_after_write -= 1;
            }
            due
        };
        if lose_ack {
            return Err(self.injected(
                "acknowledgement lost after the object was written (Fault::FailAfterWrite)",
            ));
        }
        Ok(outcome)
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        self.before(Op::Get).await?;
        self.inner.get(key).await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        self.before(Op::Head).await?;
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.before(Op::List).await?;
        self.inner.list(prefix).await
    }

    async fn set_legal_hold(&self, key: &str, hold: bool) -> Result<(), StoreError> {
        self.before(Op::Hold).await?;
        self.inner.set_legal_hold(key, hold).await
    }

    async fn prune(&self, now: OffsetDateTime) -> Result<PruneReport, StoreError> {
        self.before(Op::Prune).await?;
        self.inner.prune(now).await
    }
}
