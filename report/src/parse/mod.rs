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

/// `str::split_once` for a pattern starting with an ASCII byte, found
/// with `memchr` and compared: `str`'s own search sets up a two-way
/// searcher on every call, which costs more than the search on a log line.
pub(crate) fn split_once<'a>(s: &'a str, pat: &str) -> Option<(&'a str, &'a str)> {
    let (b, p) = (s.as_bytes(), pat.as_bytes());
    let Some((&first, rest)) = p.split_first().filter(|(f, _)| f.is_ascii()) else {
        return s.split_once(pat);
    };
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, &b[from..]) {
        let at = from + i;
        if b[at + 1..].starts_with(rest) {
            // `at` holds an ASCII byte and the match ends where `pat`'s
            // last character does: both are character boundaries.
            return Some((s.get(..at)?, s.get(at + p.len()..)?));
        }
        from = at + 1;
    }
    None
}

pub mod accounts;
pub mod journal;
pub mod sshd;
pub mod syslog;
pub mod utmp;
pub mod w3c;
pub mod web;
pub mod winevent;

#[cfg(test)]
mod tests {
    #[test]
    fn split_once_is_str_split_once() {
        for (s, p) in [
            ("a [b] \"c\" d", " ["),
            ("a [b] \"c\" d", "] \""),
            ("x: y: z", ": "),
            ("::", ": "),
            ("abc", ""),
            ("é for x", " for "),
            ("no", "zz"),
            ("a]]] \"", "] \""),
        ] {
            assert_eq!(super::split_once(s, p), s.split_once(p), "{s:?} {p:?}");
        }
    }
}
