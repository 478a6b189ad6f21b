//! The custody agent: discover → tail → segment → spool → ship, with the
//! checkpointer and the digest writer as rooms of their own.
#![deny(unsafe_code)]

pub mod board;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod committer;
pub mod config;
pub mod eventlog;
pub mod fingerprint;
pub mod incident;
pub mod journal;
pub mod key;
pub mod placement;
pub mod platform;
pub mod run;
pub mod seal;
pub mod service;
pub mod ship;
pub mod snapshot;
pub mod source;
pub mod spool;
pub mod status;
pub mod unreadable;
pub mod wake;
pub mod webroot;
#[cfg(windows)]
pub mod winservice;
