//! RFC 6587 framing of syslog over TCP and TLS: cutting a byte stream into
//! messages. No I/O: the connection loop feeds bytes in and takes messages
//! out ([`FrameDecoder::feed`], [`FrameDecoder::next_message`]).
//!
//! Two framings exist (RFC 6587 §3.4) and a receiver tells them apart by the
//! first byte of each frame, which is what rsyslog does too:
//! - **octet counting** (§3.4.1, and the only framing of RFC 5425 TLS):
//!   `MSG-LEN SP SYSLOG-MSG`, `MSG-LEN` a decimal without leading zero; the
//!   frame starts with a digit. The message may contain any byte.
//! - **non-transparent framing** (§3.4.2): the message ends at `LF`; the
//!   frame starts with `<` (the PRI of the message). The `LF` is the
//!   trailer, not part of the message, and is not kept.
//!
//! Anything else at the start of a frame (including a TLS handshake sent to
//! the plain TCP port) is a malformed frame: the connection is closed with
//! the reason, because after a framing error no later byte can be trusted
//! to start a message.

/// Why a connection's bytes are not syslog frames. Each names what was
/// found and what RFC 6587 allows, for the log line that closes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error(
        "frame starts with byte 0x{byte:02x}: neither an octet count (a digit, RFC 6587 §3.4.1) nor a syslog \
         PRI '<' (non-transparent framing, §3.4.2)"
    )]
    Garbage { byte: u8 },
    #[error("octet count has a leading zero (RFC 6587 MSG-LEN is NONZERO-DIGIT *DIGIT)")]
    LeadingZero,
    #[error("octet count is longer than 10 digits")]
    CountTooLong,
    #[error("octet count not followed by a space but by byte 0x{byte:02x}")]
    NoSpace { byte: u8 },
    #[error("frame announces {len} bytes, more than the maximum message size of {max} (max_message_tcp)")]
    TooLarge { len: u64, max: usize },
    #[error("line of more than {max} bytes without LF (max_message_tcp)")]
    LineTooLong { max: usize },
    #[error("connection closed in the middle of an octet-counted frame ({have} of {len} bytes received)")]
    Truncated { have: usize, len: usize },
}

impl FrameError {
    /// A short fixed label for metrics (`reason="frame_garbage"` ...).
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::Garbage { .. } => "frame_garbage",
            FrameError::LeadingZero => "frame_leading_zero",
            FrameError::CountTooLong => "frame_count_too_long",
            FrameError::NoSpace { .. } => "frame_no_space",
            FrameError::TooLarge { .. } => "frame_too_large",
            FrameError::LineTooLong { .. } => "frame_line_too_long",
            FrameError::Truncated { .. } => "frame_truncated",
        }
    }
}

/// Splits one connection's byte stream into syslog messages.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    pos: usize,
    max: usize,
}

impl FrameDecoder {
    /// `max` is the largest message accepted (`max_message_tcp`).
    pub fn new(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            pos: 0,
            max,
        }
    }

    /// Bytes received but not yet returned as messages.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Appends bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` when more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        loop {
            let rest = &self.buf[self.pos..];
            let Some(&first) = rest.first() else {
                return Ok(None);
            };
            match first {
                b'0'..=b'9' => return self.octet_counted(),
                b'<' => return self.lf_terminated(),
                // An empty non-transparent frame (a stray LF, or CR LF
                // between frames): it holds no message.
                b'\n' => self.pos += 1,
                b'\r' if rest.get(1) == Some(&b'\n') => self.pos += 2,
                b'\r' if rest.len() == 1 => return Ok(None),
                byte => return Err(FrameError::Garbage { byte }),
            }
        }
    }

    fn octet_counted(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = &self.buf[self.pos..];
        if rest[0] == b'0' {
            return Err(FrameError::LeadingZero);
        }
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits > 10 {
            return Err(FrameError::CountTooLong);
        }
        let Some(&after) = rest.get(digits) else {
            return Ok(None);
        };
        if after != b' ' {
            return Err(FrameError::NoSpace { byte: after });
        }
        let len: u64 = rest[..digits]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        if len > self.max as u64 {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        let len = len as usize;
        let start = digits + 1;
        if rest.len() < start + len {
            return Ok(None);
        }
        let msg = rest[start..start + len].to_vec();
        self.pos += start + len;
        Ok(Some(msg))
    }

    fn lf_terminated(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(nl) if nl > self.max => Err(FrameError::LineTooLong { max: self.max }),
            Some(nl) => {
                let msg = rest[..nl].to_vec();
                self.pos += nl + 1;
                Ok(Some(msg))
            }
            None if rest.len() > self.max => Err(FrameError::LineTooLong { max: self.max }),
            None => Ok(None),
        }
    }

    /// At end of stream: a last LF-framed message without its trailer is
    /// still a message (senders often omit the final LF); a partial
    /// octet-counted frame is an error, its bytes cannot be a message.
    pub fn finish(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let rest = &self.buf[self.pos..];
        match rest.first() {
            None => Ok(None),
            Some(b'<') => {
                let msg = rest.to_vec();
                self.pos = self.buf.len();
                Ok(Some(msg))
            }
            Some(b'0'..=b'9') => {
                let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                let len = std::str::from_utf8(&rest[..digits])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                Err(FrameError::Truncated {
                    have: rest.len().saturating_sub(digits + 1),
                    len,
                })
            }
            Some(b'\r') if rest.len() == 1 => Ok(None),
            Some(&byte) => Err(FrameError::Garbage { byte }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(dec: &mut FrameDecoder) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut out = Vec::new();
        while let Some(m) = dec.next_message()? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn both_framings_byte_by_byte() {
        let stream = b"10 <13>a\nb\x00\xffc<14>line one\r\n\n<15>two\n5 <1>xy";
        let mut dec = FrameDecoder::new(100);
        let mut got = Vec::new();
        for b in stream {
            dec.feed(&[*b]);
            got.extend(all(&mut dec).unwrap());
        }
        assert_eq!(
            got,
            vec![
                b"<13>a\nb\x00\xffc".to_vec(),
                b"<14>line one\r".to_vec(),
                b"<15>two".to_vec(),
                b"<1>xy".to_vec()
            ]
        );
        assert_eq!(dec.finish().unwrap(), None);
    }

    #[test]
    fn malformed_frames_are_named() {
        let cases: [(&[u8], FrameError); 5] = [
            (b"\x16\x03\x01", FrameError::Garbage { byte: 0x16 }),
            (b"012 x", FrameError::LeadingZero),
            (b"12345678901 ", FrameError::CountTooLong),
            (b"12x", FrameError::NoSpace { byte: b'x' }),
            (b"101 ", FrameError::TooLarge { len: 101, max: 100 }),
        ];
        for (input, want) in cases {
            let mut dec = FrameDecoder::new(100);
            dec.feed(input);
            assert_eq!(dec.next_message(), Err(want), "{input:?}");
        }
        let mut dec = FrameDecoder::new(10);
        dec.feed(b"<13>0123456789");
        assert_eq!(dec.next_message(), Err(FrameError::LineTooLong { max: 10 }));
    }

    #[test]
    fn end_of_stream() {
        let mut dec = FrameDecoder::new(100);
        dec.feed(b"<13>no trailer");
        assert_eq!(dec.next_message().unwrap(), None);
        assert_eq!(dec.finish().unwrap(), Some(b"<13>no trailer".to_vec()));
        let mut dec = FrameDecoder::new(100);
        dec.feed(b"10 <13>ab");
        assert_eq!(dec.next_message().unwrap(), None);
        assert_eq!(
            dec.finish(),
            Err(FrameError::Truncated { have: 6, len: 10 })
        );
    }
}
