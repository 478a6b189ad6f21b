//! The custody agent: discover → tail → segment → spool → ship, with the
//! checkpointer and the digest writer as rooms of their own.
#![forbid(unsafe_code)]

pub mod config;
pub mod run;
pub mod status;
