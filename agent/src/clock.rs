//! The host clock's state for digests, from the kernel's NTP discipline
//! (`adjtimex(2)` in read-only mode: `modes = 0` changes nothing).
//!
//! This is the agent's only `unsafe`: one libc call on a zeroed struct that
//! the kernel fills in. Nothing else here needs it.
#![allow(unsafe_code)]

use custody_evidence::digest::ClockState;

#[cfg(target_os = "linux")]
pub fn clock_state() -> ClockState {
    // SAFETY: `timex` is plain data; all-zero is a valid value and with
    // `modes == 0` adjtimex only reads the kernel's state into it.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return ClockState {
            synchronized: None,
            max_error_us: None,
            est_error_us: None,
        };
    }
    ClockState {
        synchronized: Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0),
        max_error_us: Some(tx.maxerror as i64),
        est_error_us: Some(tx.esterror as i64),
    }
}

#[cfg(not(target_os = "linux"))]
pub fn clock_state() -> ClockState {
    ClockState {
        synchronized: None,
        max_error_us: None,
        est_error_us: None,
    }
}

/// The kernel's estimate of how far the clock is from its time reference
/// (NTP) right now, in microseconds: `adjtimex`'s `offset`, the correction
/// the kernel is still applying. `None` when the clock is not synchronised
/// (the value then means nothing) or the call fails. Recorded in evidence
/// bundles (RFC 3227 §3.1: note the discrepancy between the system clock
/// and UTC).
#[cfg(target_os = "linux")]
pub fn clock_offset_us() -> Option<i64> {
    // SAFETY: as in `clock_state`: plain data, read-only call (modes == 0).
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 || state == libc::TIME_ERROR || tx.status & libc::STA_UNSYNC != 0 {
        return None;
    }
    let offset = tx.offset as i64;
    Some(if tx.status & libc::STA_NANO != 0 {
        offset / 1000
    } else {
        offset
    })
}

#[cfg(not(target_os = "linux"))]
pub fn clock_offset_us() -> Option<i64> {
    None
}
