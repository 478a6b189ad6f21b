//! The custody agent: discover → tail → segment → spool → ship, with the
//! checkpointer and the digest writer as rooms of their own.
#![deny(unsafe_code)]

pub mod config;
pub mod key;
pub mod cli;
pub mod board;
pub mod checkpoint;
pub mod clock;
pub mod committer;
pub mod fingerprint;
pub mod run;
pub mod seal;
pub mod ship;
pub mod source;
pub mod spool;
pub mod wake;
pub mod status;
