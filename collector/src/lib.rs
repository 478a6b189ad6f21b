//! The custody collector: the central, physically separate side of custody
//! (REQUIREMENTS.md §1, "back them up to a physically separate system").
//!
//! This crate holds the syslog service ([`syslog`]): devices that cannot
//! run an agent send syslog, and the collector keeps every message byte for
//! byte in the same hash-chained, signed segments the agent writes.
#![forbid(unsafe_code)]

pub mod syslog;
