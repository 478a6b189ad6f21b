//! RFC 6587 §3.4.1 octet-counted frames: how a collector keeps syslog
//! message boundaries inside a segment's raw bytes (FORMAT.md, "Syslog
//! device streams").
//!
//! A frame is `MSG-LEN SP SYSLOG-MSG`, where `MSG-LEN` is the message length
//! in octets, in decimal without leading zeros, and the message bytes follow
//! exactly as received; frames follow each other with no separator. The
//! raw bytes of a syslog segment are therefore a valid octet-counted syslog
//! stream: a message may contain any byte (LF, NUL, invalid UTF-8) and is
//! never re-encoded, and the stream can be replayed to any RFC 6587 receiver.
//!
//! ```
//! use custody_evidence::octets::{append_frame, split_frames};
//! let mut raw = Vec::new();
//! append_frame(&mut raw, b"<13>1 - h app - - - hi\n");
//! append_frame(&mut raw, b"\x00\xff");
//! assert_eq!(&raw[..3], b"23 ");
//! let frames = split_frames(&raw).unwrap();
//! assert_eq!(frames, vec![&b"<13>1 - h app - - - hi\n"[..], &b"\x00\xff"[..]]);
//! ```

/// Why bytes are not a sequence of whole octet-counted frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OctetError {
    #[error("at offset {offset}: frame length missing or not decimal digits followed by a space")]
    BadLength { offset: usize },
    #[error("at offset {offset}: frame length has a leading zero")]
    LeadingZero { offset: usize },
    #[error("at offset {offset}: frame says {len} bytes but only {available} remain")]
    Truncated {
        offset: usize,
        len: usize,
        available: usize,
    },
}

/// The number of bytes `append_frame` adds for a message of `len` bytes.
pub fn framed_len(len: usize) -> usize {
    decimal_digits(len) + 1 + len
}

fn decimal_digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Appends one frame holding `msg` unchanged.
pub fn append_frame(out: &mut Vec<u8>, msg: &[u8]) {
    out.reserve(framed_len(msg.len()));
    out.extend_from_slice(msg.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(msg);
}

/// Splits raw bytes into the messages of their frames; every byte must
/// belong to a whole frame.
pub fn split_frames(raw: &[u8]) -> Result<Vec<&[u8]>, OctetError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let digits = raw[pos..]
            .iter()
            .take(11)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 || digits > 10 || raw.get(pos + digits) != Some(&b' ') {
            return Err(OctetError::BadLength { offset: pos });
        }
        if raw[pos] == b'0' {
            return Err(OctetError::LeadingZero { offset: pos });
        }
        // At most ten digits: fits in u64 on every platform.
        let len: u64 = std::str::from_utf8(&raw[pos..pos + digits])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(OctetError::BadLength { offset: pos })?;
        let start = pos + digits + 1;
        let available = raw.len() - start;
        if len > available as u64 {
            return Err(OctetError::Truncated {
                offset: pos,
                len: usize::try_from(len).unwrap_or(usize::MAX),
                available,
            });
        }
        let len = len as usize;
        out.push(&raw[start..start + len]);
        pos = start + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_bytes() {
        let msgs: Vec<Vec<u8>> = vec![
            b"x".to_vec(),
            vec![0u8; 9],
            vec![b'\n'; 10],
            (0..=255u8).collect(),
            b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed\n".to_vec(),
        ];
        let mut raw = Vec::new();
        for m in &msgs {
            let before = raw.len();
            append_frame(&mut raw, m);
            assert_eq!(raw.len() - before, framed_len(m.len()));
        }
        let back = split_frames(&raw).unwrap();
        assert_eq!(back.len(), msgs.len());
        for (a, b) in back.iter().zip(&msgs) {
            assert_eq!(*a, &b[..]);
        }
        assert_eq!(split_frames(b"").unwrap().len(), 0);
    }

    #[test]
    fn refuses_partial_or_malformed_frames() {
        assert_eq!(
            split_frames(b"5 abc"),
            Err(OctetError::Truncated {
                offset: 0,
                len: 5,
                available: 3
            })
        );
        assert_eq!(
            split_frames(b"05 abcde"),
            Err(OctetError::LeadingZero { offset: 0 })
        );
        assert_eq!(
            split_frames(b"3 abcx"),
            Err(OctetError::BadLength { offset: 5 })
        );
        assert_eq!(
            split_frames(b"<13>hi"),
            Err(OctetError::BadLength { offset: 0 })
        );
        assert_eq!(
            split_frames(b"12345678901 x"),
            Err(OctetError::BadLength { offset: 0 })
        );
    }
}
