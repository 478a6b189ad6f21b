//! Parsers for the log formats `findings` reads, one module per format.
//! Each takes a line already decoded for matching (lossy UTF-8; the
//! evidence keeps the raw bytes' offset and length) and returns borrowed
//! fields, so parsing allocates nothing per line.
//!
//! A parser answers three ways: the line is in its format (`Ok(Some)`),
//! the line is not in its format at all (`Ok(None)`, counted as unparsed
//! but not an error), or the line looks like its format but is malformed
//! (`Err`, which becomes a note with the line's evidence reference).
//! The binary formats ([`utmp`] records, [`winevent`] UTF-16LE XML and
//! [`journal`] entries) take a whole unit's bytes instead.

pub mod accounts;
pub mod journal;
pub mod sshd;
pub mod syslog;
pub mod utmp;
pub mod w3c;
pub mod web;
pub mod winevent;
