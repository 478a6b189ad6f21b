//! Waiting for outcomes without sleeping blindly: poll an observable
//! condition (store contents, `status.json`) until it holds or a deadline
//! passes, then fail saying what was expected and what was last seen.

use std::time::{Duration, Instant};

use crate::env::TestEnv;
use crate::store::StoreContents;

/// How often conditions are re-checked; short enough not to slow tests,
/// long enough not to steal a core from the agent under test.
const POLL: Duration = Duration::from_millis(50);

/// Polls `check` until it returns `Ok(value)`, returning the value. `check`
/// returns `Err(seen)` while the condition does not hold, describing the
/// current state; on timeout this panics with `what` and the last `seen`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(seen) => {
                if start.elapsed() >= timeout {
                    panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until the store holds at least `expected` tagged lines (see
/// [`crate::lines::ID_MARKER`]) for `env`'s host and returns the contents.
/// Reading a store that is being written can catch a payload whose record
/// is not there yet; that counts as "not yet", not as a failure.
pub fn wait_for_lines(env: &TestEnv, expected: usize, timeout: Duration) -> StoreContents {
    wait_for(
        &format!("{expected} lines in store {}", env.store.display()),
        timeout,
        || {
            let contents = StoreContents::read(&env.store, &env.host_id)
                .map_err(|e| format!("store unreadable: {e:#}"))?;
            let n = contents.line_ids().len();
            if n >= expected {
                Ok(contents)
            } else {
                Err(format!(
                    "{n} lines in {} segments",
                    contents.segment_count()
                ))
            }
        },
    )
}

/// Waits until every id in `ids` is in the store for `env`'s host (the
/// agent has caught up with what was written) and returns the contents.
/// While waiting, `alive` is called each round so that an agent that died
/// fails the test at once with its log instead of after the timeout; pass
/// `|| Ok(())` when no agent is expected to run.
pub fn wait_for_ids<S: AsRef<str>>(
    env: &TestEnv,
    ids: &[S],
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> StoreContents {
    wait_for(
        &format!(
            "all {} written lines in store {}",
            ids.len(),
            env.store.display()
        ),
        timeout,
        || {
            if let Err(e) = alive() {
                panic!("while waiting for lines to arrive: {e}");
            }
            let contents = StoreContents::read(&env.store, &env.host_id)
                .map_err(|e| format!("store unreadable: {e:#}"))?;
            let found: std::collections::HashSet<String> =
                contents.line_ids().into_iter().collect();
            let missing: Vec<&str> = ids
                .iter()
                .map(|s| s.as_ref())
                .filter(|id| !found.contains(*id))
                .collect();
            if missing.is_empty() {
                Ok(contents)
            } else {
                Err(format!(
                    "{} of {} missing (first: {}); store has {} segments",
                    missing.len(),
                    ids.len(),
                    missing
                        .iter()
                        .take(5)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", "),
                    contents.segment_count()
                ))
            }
        },
    )
}
