//! A level-triggered wake-up flag: file-system events, shutdown and the
//! committer's back-pressure release all set it; a reader sleeps on it with
//! a deadline. Events that arrive while the reader works are not lost.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Wake {
    flag: Mutex<bool>,
    cond: Condvar,
}

impl Wake {
    pub fn notify(&self) {
        let mut f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        *f = true;
        self.cond.notify_all();
    }

    /// Sleeps until notified or `deadline`; returns whether it was notified.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut f = self.flag.lock().unwrap_or_else(|e| e.into_inner());
        while !*f {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let (g, _) = self
                .cond
                .wait_timeout(f, deadline - now)
                .unwrap_or_else(|e| e.into_inner());
            f = g;
        }
        *f = false;
        true
    }

    pub fn wait_for(&self, d: Duration) -> bool {
        self.wait_until(Instant::now() + d)
    }
}
