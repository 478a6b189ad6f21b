//! systemd's Journal Export Format (FORMAT.md §16.1), the raw bytes of a
//! journald stream: entries of `NAME=VALUE\n` text fields and
//! `NAME\n<u64 LE length><data>\n` binary fields, each entry ended by an
//! empty line. The reader follows the length prefix (splitting on
//! `"\n\n"` would cut binary fields) and borrows every field, so it
//! allocates nothing per entry.

/// One entry, with where its bytes are in the raw payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Offset of the entry's first byte (its `__CURSOR=`).
    pub offset: u64,
    /// Length of the entry, its fields' bytes and the empty line ending it.
    pub len: u64,
    /// `__REALTIME_TIMESTAMP`: microseconds since the Unix epoch, UTC.
    pub realtime_usec: Option<u64>,
    pub hostname: Option<&'a [u8]>,
    pub identifier: Option<&'a [u8]>,
    pub comm: Option<&'a [u8]>,
    pub message: Option<&'a [u8]>,
}

impl Entry<'_> {
    /// The program name sshd/account parsers match on: `SYSLOG_IDENTIFIER`,
    /// else `_COMM`.
    pub fn program(&self) -> Option<&[u8]> {
        self.identifier.or(self.comm)
    }
}

/// Malformed framing: where it is and what is wrong, for a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub offset: u64,
    pub why: &'static str,
}

/// Reads the entry starting at `pos` of `buf` (the segment's raw bytes).
/// `Ok(None)` at the end of the buffer; `Err` when the bytes from `pos`
/// are not a whole entry (the rest of the buffer is then unreadable as
/// entries: the caller notes it once).
pub fn next_entry(buf: &[u8], pos: usize) -> Result<Option<(Entry<'_>, usize)>, Malformed> {
    if pos >= buf.len() {
        return Ok(None);
    }
    let bad = |at: usize, why| Malformed {
        offset: at as u64,
        why,
    };
    let mut e = Entry {
        offset: pos as u64,
        len: 0,
        realtime_usec: None,
        hostname: None,
        identifier: None,
        comm: None,
        message: None,
    };
    let mut at = pos;
    loop {
        let rest = &buf[at..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return Err(bad(at, "journal export entry ends without its empty line (the segment was cut mid-entry, or the bytes are not journal export)"));
        };
        if nl == 0 {
            // The empty line ending the entry.
            let end = at + 1;
            if at == pos {
                return Err(bad(
                    pos,
                    "an empty line where a journal export entry should begin",
                ));
            }
            e.len = (end - pos) as u64;
            return Ok(Some((e, end)));
        }
        let head = &rest[..nl];
        let (name, value, next) = if let Some(eq) = head.iter().position(|&b| b == b'=') {
            (&head[..eq], &head[eq + 1..], at + nl + 1)
        } else {
            // Binary field: NAME LF, 8-byte little-endian length, data, LF.
            let len_at = at + nl + 1;
            let Some(len_bytes) = buf.get(len_at..len_at + 8) else {
                return Err(bad(
                    at,
                    "journal export binary field is cut before its 8-byte length",
                ));
            };
            let mut le = [0u8; 8];
            le.copy_from_slice(len_bytes);
            let data_at = len_at + 8;
            let Some(data_end) = usize::try_from(u64::from_le_bytes(le))
                .ok()
                .and_then(|n| data_at.checked_add(n))
                .filter(|&end| end < buf.len())
            else {
                return Err(bad(
                    at,
                    "journal export binary field's length runs past the end of the segment",
                ));
            };
            if buf[data_end] != b'\n' {
                return Err(bad(
                    data_end,
                    "journal export binary field's data is not followed by a newline",
                ));
            }
            (head, &buf[data_at..data_end], data_end + 1)
        };
        match name {
            b"__REALTIME_TIMESTAMP" => {
                let usec = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        bad(
                            at,
                            "__REALTIME_TIMESTAMP is not a decimal count of microseconds",
                        )
                    })?;
                e.realtime_usec = Some(usec);
            }
            b"_HOSTNAME" => e.hostname = Some(value),
            b"SYSLOG_IDENTIFIER" => e.identifier = Some(value),
            b"_COMM" => e.comm = Some(value),
            b"MESSAGE" => e.message = Some(value),
            _ => {}
        }
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: &str, data: &[u8]) -> Vec<u8> {
        let mut v = name.as_bytes().to_vec();
        v.push(b'\n');
        v.extend_from_slice(&(data.len() as u64).to_le_bytes());
        v.extend_from_slice(data);
        v.push(b'\n');
        v
    }

    #[test]
    fn reads_text_and_binary_fields_and_cites_whole_entries() {
        let first = b"__CURSOR=s=1\n__REALTIME_TIMESTAMP=1764700380123456\n_HOSTNAME=web01\nSYSLOG_IDENTIFIER=sshd\n_COMM=sshd\nMESSAGE=Failed password for root from 203.0.113.9 port 1 ssh2\n\n".to_vec();
        let mut second =
            b"__CURSOR=s=2\n__REALTIME_TIMESTAMP=1764700381000000\n_COMM=useradd\n".to_vec();
        // A binary MESSAGE holding an empty line: only the length tells where it ends.
        second.extend(binary("MESSAGE", b"new user: name=eve\n\nUID=1001"));
        second.push(b'\n');
        let buf = [first.clone(), second.clone()].concat();

        let (a, next) = next_entry(&buf, 0).unwrap().unwrap();
        assert_eq!((a.offset, a.len), (0, first.len() as u64));
        assert_eq!(a.realtime_usec, Some(1_764_700_380_123_456));
        assert_eq!(a.hostname, Some(&b"web01"[..]));
        assert_eq!(a.program(), Some(&b"sshd"[..]));
        assert_eq!(
            a.message,
            Some(&b"Failed password for root from 203.0.113.9 port 1 ssh2"[..])
        );
        let (b, end) = next_entry(&buf, next).unwrap().unwrap();
        assert_eq!((b.offset, b.len), (first.len() as u64, second.len() as u64));
        assert_eq!(b.program(), Some(&b"useradd"[..]));
        assert_eq!(b.message, Some(&b"new user: name=eve\n\nUID=1001"[..]));
        assert_eq!(&buf[b.offset as usize..][..b.len as usize], &second[..]);
        assert_eq!(next_entry(&buf, end).unwrap(), None);
    }

    #[test]
    fn malformed_framing_names_the_offset() {
        // Cut mid-entry.
        let e = next_entry(b"__CURSOR=s=1\nMESSAGE=x\n", 0).unwrap_err();
        assert_eq!(e.offset, 23);
        // A binary length past the end.
        let mut buf = b"__CURSOR=s=1\nMESSAGE\n".to_vec();
        buf.extend_from_slice(&1000u64.to_le_bytes());
        buf.extend_from_slice(b"short\n\n");
        let e = next_entry(&buf, 0).unwrap_err();
        assert_eq!(e.offset, 13);
        assert!(e.why.contains("past the end"));
        // A time that is not a number.
        let e = next_entry(b"__CURSOR=s=1\n__REALTIME_TIMESTAMP=soon\n\n", 0).unwrap_err();
        assert_eq!(e.offset, 13);
        // An empty line where an entry should begin.
        assert!(next_entry(b"\n", 0).is_err());
    }
}
