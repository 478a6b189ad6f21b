//! The framing of `journalctl -o export` output (systemd's "Journal Export
//! Format"), parsed only far enough to find where each entry ends and what
//! its `__CURSOR` is. The bytes themselves are never touched.
//!
//! ```text
//! entry        = 1*field LF              ; an empty line ends the entry
//! field        = text-field / binary-field
//! text-field   = NAME "=" VALUE LF       ; VALUE holds no LF
//! binary-field = NAME LF LEN64LE DATA LF ; DATA: any bytes (NUL, LF, non-UTF-8)
//! ```
//!
//! Binary fields are length-prefixed, so splitting on `"\n\n"` would cut
//! entries inside a field whose data holds an empty line; the length must be
//! followed.

/// Longest field name accepted. journald allows 64 bytes; a longer "name"
/// means the stream is not export format.
const MAX_NAME: usize = 256;
/// Longest `__CURSOR` value kept (cursors are about 150 bytes).
const MAX_CURSOR: usize = 1024;
/// Largest binary field length believed (journald's own limit is 768 MiB):
/// anything larger means the framing has been lost.
pub const MAX_FIELD_LEN: u64 = 1 << 32;

/// An entry completed inside the bytes just fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryEnd {
    /// Offset in the fed chunk just after the entry's terminating empty line.
    pub end: usize,
    /// The entry's `__CURSOR` (None if the entry had no such text field).
    pub cursor: Option<String>,
}

/// Why bytes are not export format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("a field name longer than {MAX_NAME} bytes (at entry byte {0})")]
    NameTooLong(u64),
    #[error("an empty field name (at entry byte {0})")]
    EmptyName(u64),
    #[error("a binary field of {len} bytes, more than the {MAX_FIELD_LEN} believed (at entry byte {at})")]
    FieldTooLong { len: u64, at: u64 },
    #[error("a binary field not followed by a newline (at entry byte {0})")]
    BinaryNotTerminated(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line: a field name, or the empty line ending the entry.
    LineStart,
    /// In a field name, until `=` (text) or LF (binary).
    Name,
    /// In a text value, until LF.
    Text { cursor: bool },
    /// In the 8-byte little-endian length of a binary field.
    BinLen { got: u8 },
    /// In a binary field's data.
    BinData { left: u64 },
    /// Expecting the LF after a binary field's data.
    BinEnd,
}

/// Incremental parser: feed it the output in chunks of any size.
#[derive(Debug)]
pub struct ExportParser {
    state: State,
    /// Bytes of the current entry seen so far.
    in_entry: u64,
    name: Vec<u8>,
    len: [u8; 8],
    cursor: Vec<u8>,
    /// The current entry's cursor, once its `__CURSOR` line is complete.
    current: Option<String>,
    broken: Option<FramingError>,
}

impl Default for ExportParser {
    fn default() -> Self {
        Self::new()
    }
}

impl ExportParser {
    pub fn new() -> Self {
        ExportParser {
            state: State::LineStart,
            in_entry: 0,
            name: Vec::new(),
            len: [0; 8],
            cursor: Vec::new(),
            current: None,
            broken: None,
        }
    }

    /// Bytes of the entry not yet complete (0 between entries).
    pub fn bytes_in_entry(&self) -> u64 {
        self.in_entry
    }

    /// The cursor of the entry being read, once its `__CURSOR` field is read.
    pub fn current_cursor(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Parses `data`, returning every entry that ends in it. After an error
    /// the parser stays broken: no later byte can be trusted to start a field.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<EntryEnd>, FramingError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let mut ends = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let b = data[i];
            match self.state {
                State::LineStart => {
                    if b == b'\n' {
                        if self.in_entry == 0 {
                            return Err(self.fail(FramingError::EmptyName(0)));
                        }
                        i += 1;
                        ends.push(EntryEnd {
                            end: i,
                            cursor: self.current.take(),
                        });
                        self.in_entry = 0;
                        continue;
                    }
                    self.name.clear();
                    self.state = State::Name;
                    continue; // the byte is part of the name
                }
                State::Name => {
                    // Take the name up to '=' or LF at once.
                    let rest = &data[i..];
                    let stop = rest.iter().position(|&c| c == b'=' || c == b'\n');
                    let take = stop.unwrap_or(rest.len());
                    if self.name.len() + take > MAX_NAME {
                        return Err(self.fail(FramingError::NameTooLong(self.in_entry)));
                    }
                    self.name.extend_from_slice(&rest[..take]);
                    self.advance(&mut i, take);
                    let Some(_) = stop else { continue };
                    if self.name.is_empty() {
                        return Err(self.fail(FramingError::EmptyName(self.in_entry)));
                    }
                    let sep = data[i];
                    self.advance(&mut i, 1);
                    self.state = if sep == b'=' {
                        let cursor = self.name == b"__CURSOR";
                        if cursor {
                            self.cursor.clear();
                        }
                        State::Text { cursor }
                    } else {
                        State::BinLen { got: 0 }
                    };
                }
                State::Text { cursor } => {
                    let rest = &data[i..];
                    let stop = rest.iter().position(|&c| c == b'\n');
                    let take = stop.unwrap_or(rest.len());
                    if cursor && self.cursor.len() < MAX_CURSOR {
                        let room = MAX_CURSOR - self.cursor.len();
                        self.cursor.extend_from_slice(&rest[..take.min(room)]);
                    }
                    if stop.is_some() {
                        self.advance(&mut i, take + 1);
                        if cursor {
                            self.current = Some(String::from_utf8_lossy(&self.cursor).into_owned());
                        }
                        self.state = State::LineStart;
                    } else {
                        self.advance(&mut i, take);
                    }
                }
                State::BinLen { got } => {
                    self.len[got as usize] = b;
                    self.advance(&mut i, 1);
                    if got == 7 {
                        let len = u64::from_le_bytes(self.len);
                        if len > MAX_FIELD_LEN {
                            let at = self.in_entry;
                            return Err(self.fail(FramingError::FieldTooLong { len, at }));
                        }
                        self.state = if len == 0 {
                            State::BinEnd
                        } else {
                            State::BinData { left: len }
                        };
                    } else {
                        self.state = State::BinLen { got: got + 1 };
                    }
                }
                State::BinData { left } => {
                    let take = left.min((data.len() - i) as u64) as usize;
                    self.advance(&mut i, take);
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::BinEnd
                    } else {
                        State::BinData { left }
                    };
                }
                State::BinEnd => {
                    if b != b'\n' {
                        let at = self.in_entry;
                        return Err(self.fail(FramingError::BinaryNotTerminated(at)));
                    }
                    self.advance(&mut i, 1);
                    self.state = State::LineStart;
                }
            }
        }
        Ok(ends)
    }

    fn advance(&mut self, i: &mut usize, n: usize) {
        *i += n;
        self.in_entry += n as u64;
    }

    fn fail(&mut self, e: FramingError) -> FramingError {
        self.broken = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binary field as journalctl writes it.
    fn binary(name: &str, data: &[u8]) -> Vec<u8> {
        let mut out = format!("{name}\n").into_bytes();
        out.extend_from_slice(&(data.len() as u64).to_le_bytes());
        out.extend_from_slice(data);
        out.push(b'\n');
        out
    }

    fn sample() -> (Vec<u8>, Vec<usize>) {
        let mut out = Vec::new();
        let mut ends = Vec::new();
        out.extend_from_slice(b"__CURSOR=s=1;i=1\n__REALTIME_TIMESTAMP=1\nMESSAGE=hello\n\n");
        ends.push(out.len());
        out.extend_from_slice(b"__CURSOR=s=1;i=2\n");
        // Data holding an empty line, NUL bytes, a fake field and invalid UTF-8.
        out.extend_from_slice(&binary("MESSAGE", b"a\n\nb\0c\n\nFAKE=1\n\n\xff\xfe"));
        out.extend_from_slice(&binary("EMPTY", b""));
        out.extend_from_slice(b"\n");
        ends.push(out.len());
        out.extend_from_slice(b"MESSAGE=no cursor\n\n");
        ends.push(out.len());
        (out, ends)
    }

    #[test]
    fn entries_end_at_empty_lines_outside_binary_fields() {
        let (bytes, want) = sample();
        let mut p = ExportParser::new();
        let got = p.feed(&bytes).unwrap();
        let ends: Vec<usize> = got.iter().map(|e| e.end).collect();
        assert_eq!(ends, want);
        assert_eq!(got[0].cursor.as_deref(), Some("s=1;i=1"));
        assert_eq!(got[1].cursor.as_deref(), Some("s=1;i=2"));
        assert_eq!(got[2].cursor, None);
        assert_eq!(p.bytes_in_entry(), 0);
    }

    #[test]
    fn any_chunking_gives_the_same_boundaries() {
        let (bytes, want) = sample();
        for size in [1, 2, 3, 7, 8, 9, 16, 31] {
            let mut p = ExportParser::new();
            let mut ends = Vec::new();
            let mut cursors = Vec::new();
            for (k, chunk) in bytes.chunks(size).enumerate() {
                for e in p.feed(chunk).unwrap() {
                    ends.push(k * size + e.end);
                    cursors.push(e.cursor);
                }
            }
            assert_eq!(ends, want, "chunks of {size}");
            assert_eq!(cursors[1].as_deref(), Some("s=1;i=2"), "chunks of {size}");
        }
    }

    #[test]
    fn the_cursor_is_known_before_the_entry_ends() {
        let mut p = ExportParser::new();
        assert!(p.feed(b"__CURSOR=c1\nMESSAGE=x").unwrap().is_empty());
        assert_eq!(p.current_cursor(), Some("c1"));
        assert_eq!(p.bytes_in_entry(), 21);
    }

    #[test]
    fn broken_framing_is_reported_and_stays_broken() {
        let mut p = ExportParser::new();
        let mut bytes = b"MESSAGE\n".to_vec();
        bytes.extend_from_slice(&3u64.to_le_bytes());
        bytes.extend_from_slice(b"abcX");
        assert_eq!(p.feed(&bytes), Err(FramingError::BinaryNotTerminated(19)));
        assert!(p.feed(b"\n").is_err());

        let mut p = ExportParser::new();
        let mut bytes = b"M\n".to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            p.feed(&bytes),
            Err(FramingError::FieldTooLong { .. })
        ));

        let mut p = ExportParser::new();
        assert!(matches!(p.feed(b"\n"), Err(FramingError::EmptyName(_))));
        let mut p = ExportParser::new();
        assert!(matches!(
            p.feed(&vec![b'A'; 300]),
            Err(FramingError::NameTooLong(_))
        ));
    }
}
