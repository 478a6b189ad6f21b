//! Running under systemd (`Type=notify`, see `packaging/systemd/`): the
//! agent tells the service manager when it is ready (`READY=1`), what it is
//! doing (`STATUS=`), that it is going down (`STOPPING=1`), and keeps the
//! watchdog fed (`WATCHDOG=1`) only while its pipeline shows signs of life.
//!
//! Everything here is a no-op when `NOTIFY_SOCKET` is unset (the agent run
//! by hand or by another supervisor). A notification that cannot be sent is
//! logged once and never stops the agent: losing systemd's view of the agent
//! is bad, losing evidence because of it would be worse.
//!
//! systemd exists only on Linux: elsewhere (Windows, where the Service
//! Control Manager is told through `winservice`) the notifier is always
//! disabled and sends nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(unix)]
use sd_notify::NotifyState;

/// The states the agent reports; off Unix there is no systemd to send
/// them to (the notifier is disabled there).
#[cfg(not(unix))]
#[allow(dead_code)]
enum NotifyState<'a> {
    Ready,
    Status(&'a str),
    Stopping,
    Watchdog,
}

/// Talks to the service manager over the `NOTIFY_SOCKET` datagram socket
/// (sd_notify(3)).
pub struct Notifier {
    /// `NOTIFY_SOCKET` was set when the agent started.
    enabled: bool,
    /// `WATCHDOG_USEC` (for this process, per `WATCHDOG_PID`), if set.
    watchdog: Option<Duration>,
    /// A send failure was already logged.
    #[cfg_attr(not(unix), allow(dead_code))]
    warned: AtomicBool,
    /// The last `STATUS=` text sent, so an unchanged line is not resent.
    last_status: Mutex<String>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`.
    pub fn from_env() -> Self {
        #[cfg(unix)]
        let (enabled, watchdog) = (
            std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
            sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
        );
        #[cfg(not(unix))]
        let (enabled, watchdog) = (false, None);
        Notifier {
            enabled,
            watchdog: if enabled { watchdog } else { None },
            warned: AtomicBool::new(false),
            last_status: Mutex::new(String::new()),
        }
    }

    /// Whether notifications go anywhere.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The watchdog timeout systemd enforces (`WatchdogSec=`), if any.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Start-up is complete: sources run, spool and checkpoint are set up.
    pub fn ready(&self, status: &str) {
        let status = one_line(status);
        self.remember(&status);
        self.send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }

    /// A `STATUS=` line for `systemctl status`; unchanged text is not resent.
    pub fn status(&self, status: &str) {
        let status = one_line(status);
        if self.remember(&status) {
            self.send(&[NotifyState::Status(&status)]);
        }
    }

    /// Shutdown has begun.
    pub fn stopping(&self, status: &str) {
        let status = one_line(status);
        self.remember(&status);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }

    /// Feeds the watchdog.
    pub fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }

    /// Records `status` as the last one sent; false if it was already.
    fn remember(&self, status: &str) -> bool {
        let mut last = self.last_status.lock().unwrap_or_else(|e| e.into_inner());
        if *last == status {
            return false;
        }
        status.clone_into(&mut last);
        true
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        #[cfg(not(unix))]
        let _ = states;
        #[cfg(unix)]
        if let Err(e) = sd_notify::notify(states) {
            if !self.warned.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    "cannot notify systemd through NOTIFY_SOCKET ({e}); the agent keeps running, \
                     but systemd may consider it not ready or hung"
                );
            }
        }
    }
}

/// `STATUS=` is one line: newlines would start new assignments.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// When a stage of the pipeline last showed it is alive (a loop turn, a
/// completed write). Cheap enough to touch in every loop iteration.
pub struct Heartbeat {
    base: Instant,
    /// Milliseconds after `base` of the last beat.
    last_ms: AtomicU64,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    pub fn new() -> Self {
        Heartbeat {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// The stage is alive now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the last beat was, seen from `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

/// A stage the watchdog checks, and how long it may stay silent before the
/// agent counts as hung.
pub struct Watched {
    pub name: &'static str,
    pub heartbeat: Arc<Heartbeat>,
    pub allowed_silence: Duration,
}

/// The committer turns its loop at least every
/// [`crate::committer::IDLE_TURN`] whether or not there is data, so silence
/// longer than that plus the watchdog timeout means it is stuck (a hung
/// fsync, a deadlock).
pub fn committer_allowed_silence(watchdog: Duration) -> Duration {
    watchdog + crate::committer::IDLE_TURN
}

/// The shipper may legitimately spend minutes on one pass over a large
/// backlog on a slow link (the S3 client retries each request for up to two
/// minutes); only a much longer silence means it hangs.
pub fn shipper_allowed_silence(watchdog: Duration) -> Duration {
    watchdog.max(Duration::from_secs(600))
}

/// The first stage silent for longer than it may be, with its silence.
pub fn stalled(stages: &[Watched], now: Instant) -> Option<(&'static str, Duration)> {
    stages.iter().find_map(|w| {
        let silent = w.heartbeat.silent_for(now);
        (silent > w.allowed_silence).then_some((w.name, silent))
    })
}

/// Pings the watchdog every half timeout while every stage is alive, or
/// unconditionally once `stopping` is set (systemd's stop timeout bounds
/// the shutdown). While a stage is stalled it withholds the pings and says
/// why, so systemd kills and restarts the agent (`Restart=on-failure`);
/// checkpoints and spool are crash-safe, so nothing is lost by that.
pub async fn watchdog(
    notifier: Arc<Notifier>,
    timeout: Duration,
    stages: Vec<Watched>,
    stopping: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(timeout / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_stalled = false;
    loop {
        tick.tick().await;
        if stopping.load(Ordering::SeqCst) {
            notifier.watchdog_ping();
            continue;
        }
        match stalled(&stages, Instant::now()) {
            None => {
                if was_stalled {
                    tracing::info!("the pipeline shows progress again: watchdog pings resumed");
                    was_stalled = false;
                }
                notifier.watchdog_ping();
            }
            Some((name, silent)) => {
                if !was_stalled {
                    let msg = format!(
                        "the {name} has shown no progress for {} s; withholding watchdog pings so systemd restarts the agent",
                        silent.as_secs()
                    );
                    tracing::error!("{msg}");
                    notifier.status(&msg);
                    was_stalled = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(name: &'static str, allowed: Duration) -> Watched {
        Watched {
            name,
            heartbeat: Arc::new(Heartbeat::new()),
            allowed_silence: allowed,
        }
    }

    #[test]
    fn a_beat_resets_the_silence() {
        let hb = Heartbeat::new();
        let later = Instant::now() + Duration::from_secs(5);
        assert!(hb.silent_for(later) >= Duration::from_secs(5));
        hb.beat();
        assert!(hb.silent_for(Instant::now()) < Duration::from_secs(1));
        // A clock reading before the beat is no silence at all.
        assert_eq!(hb.silent_for(hb.base), Duration::ZERO);
    }

    #[test]
    fn the_first_stage_past_its_allowance_is_named() {
        let stages = vec![
            watched("committer", Duration::from_secs(30)),
            watched("shipper", Duration::from_secs(600)),
        ];
        let now = Instant::now();
        assert_eq!(stalled(&stages, now), None);
        let (name, silent) =
            stalled(&stages, now + Duration::from_secs(31)).expect("committer stalled");
        assert_eq!(name, "committer");
        assert!(silent > Duration::from_secs(30));
        stages[0].heartbeat.beat();
        assert_eq!(stalled(&stages, Instant::now()), None);
        let far = Instant::now() + Duration::from_secs(601);
        assert_eq!(stalled(&stages, far).map(|s| s.0), Some("committer"));
        let patient = vec![
            watched("committer", Duration::from_secs(3600)),
            watched("shipper", Duration::from_secs(600)),
        ];
        let far = Instant::now() + Duration::from_secs(601);
        assert_eq!(stalled(&patient, far).map(|s| s.0), Some("shipper"));
    }

    #[test]
    fn allowances_follow_the_watchdog_timeout() {
        let t = Duration::from_secs(30);
        assert_eq!(
            committer_allowed_silence(t),
            t + crate::committer::IDLE_TURN
        );
        assert_eq!(shipper_allowed_silence(t), Duration::from_secs(600));
        let long = Duration::from_secs(3600);
        assert_eq!(shipper_allowed_silence(long), long);
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(one_line("a\nb\r\nc"), "a b  c");
    }

    #[test]
    fn without_notify_socket_nothing_is_sent() {
        // No NOTIFY_SOCKET in the test environment (cargo does not set it).
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            let n = Notifier::from_env();
            assert!(!n.enabled());
            assert_eq!(n.watchdog_timeout(), None);
            n.ready("x");
            n.watchdog_ping();
            assert!(!n.warned.load(Ordering::SeqCst));
        }
    }
}
