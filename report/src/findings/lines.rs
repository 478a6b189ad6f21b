//! Line splitting over a streamed payload that never alters bytes: each
//! line is handed on as its offset and length inside the raw payload (the
//! `\n` excluded) and a borrowed slice, without a copy unless the line
//! straddles two decompressed chunks (then one reused buffer holds it).
//! Lines over the limit are not buffered at all: only their offset and
//! length are reported, so one 100 MB line costs no memory.

/// One line of a payload.
pub enum Piece<'a> {
    /// A line no longer than the limit: its bytes, `\n` excluded.
    Line { offset: u64, bytes: &'a [u8] },
    /// A line over the limit: where it is, not what it says.
    Long { offset: u64, len: u64 },
}

/// Splits a byte stream fed in chunks into [`Piece`]s.
pub struct Splitter {
    max: usize,
    carry: Vec<u8>,
    /// Offset of the current (unfinished) line.
    line_start: u64,
    /// Bytes of the current line so far, when it is over the limit.
    long_len: Option<u64>,
    /// Offset of the next chunk.
    pos: u64,
}

impl Splitter {
    /// Lines longer than `max` bytes are reported as [`Piece::Long`].
    pub fn new(max: usize) -> Self {
        Splitter {
            max,
            carry: Vec::new(),
            line_start: 0,
            long_len: None,
            pos: 0,
        }
    }

    /// Feeds the next chunk; calls `f` for every line it completes.
    pub fn feed(&mut self, chunk: &[u8], f: &mut dyn FnMut(Piece<'_>)) {
        let mut start = 0usize;
        while let Some(i) = memchr::memchr(b'\n', &chunk[start..]) {
            let part = &chunk[start..start + i];
            self.end_line(part, f);
            start += i + 1;
            self.line_start = self.pos + start as u64;
        }
        self.push_partial(&chunk[start..]);
        self.pos += chunk.len() as u64;
    }

    /// The last line when the payload does not end in `\n`.
    pub fn finish(&mut self, f: &mut dyn FnMut(Piece<'_>)) {
        if self.long_len.is_some() || !self.carry.is_empty() {
            self.end_line(&[], f);
        }
    }

    fn end_line(&mut self, part: &[u8], f: &mut dyn FnMut(Piece<'_>)) {
        let offset = self.line_start;
        if let Some(len) = self.long_len.take() {
            f(Piece::Long {
                offset,
                len: len + part.len() as u64,
            });
        } else if self.carry.is_empty() {
            if part.len() > self.max {
                f(Piece::Long {
                    offset,
                    len: part.len() as u64,
                });
            } else {
                f(Piece::Line {
                    offset,
                    bytes: part,
                });
            }
        } else {
            let total = self.carry.len() + part.len();
            if total > self.max {
                f(Piece::Long {
                    offset,
                    len: total as u64,
                });
            } else {
                self.carry.extend_from_slice(part);
                f(Piece::Line {
                    offset,
                    bytes: &self.carry,
                });
            }
        }
        self.carry.clear();
    }

    fn push_partial(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        if let Some(len) = self.long_len.as_mut() {
            *len += part.len() as u64;
        } else if self.carry.len() + part.len() > self.max {
            self.long_len = Some((self.carry.len() + part.len()) as u64);
            self.carry.clear();
        } else {
            self.carry.extend_from_slice(part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(data: &[u8], chunk: usize, max: usize) -> Vec<(u64, u64, bool)> {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        let mut f = |p: Piece<'_>| match p {
            Piece::Line { offset, bytes } => {
                assert_eq!(&data[offset as usize..offset as usize + bytes.len()], bytes);
                out.push((offset, bytes.len() as u64, false))
            }
            Piece::Long { offset, len } => out.push((offset, len, true)),
        };
        for c in data.chunks(chunk) {
            s.feed(c, &mut f);
        }
        s.finish(&mut f);
        out
    }

    #[test]
    fn offsets_survive_any_chunking() {
        let data = b"ab\ncdef\n\nxyz0123456789\ntail";
        for chunk in 1..data.len() + 1 {
            assert_eq!(
                split(data, chunk, 8),
                vec![
                    (0, 2, false),
                    (3, 4, false),
                    (8, 0, false),
                    (9, 13, true),
                    (23, 4, false)
                ],
                "chunk {chunk}"
            );
        }
    }
}
