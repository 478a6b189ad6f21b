//! Sending signals to child processes.
//!
//! `std::process::Child::kill` only sends SIGKILL; the shutdown tests need
//! SIGTERM and SIGINT, which means `libc::kill`. This is the crate's only
//! unsafe code.
#![allow(unsafe_code)]

/// Sends `signal` to process `pid`.
pub(crate) fn send(pid: u32, signal: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("pid {pid} out of range"),
        )
    })?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours;
    // the pid belongs to a child we have not yet reaped, so it cannot have
    // been reused by another process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
