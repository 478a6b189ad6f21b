//! Reading a request body that will be used (an object, an incident
//! report): bounded in size, and bounded in time by progress: a body that
//! sends nothing for the stall bound (`idle_timeout_s`) is given up.
//!
//! Why progress and not a total deadline: an agent on a slow link may take
//! long to send 4 MiB, and that is fine; a body that stops while holding a
//! connection slot and its share of `max_inflight_bytes` is not (issue 12,
//! D1: the same hold that refused clients used, by an enrolled one).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit (`max_body_bytes`, or the report bound).
    TooLarge { limit: usize },
    /// No byte for `stall` after `read` bytes.
    Stalled { stall: Duration, read: usize },
    /// The connection failed or the framing was invalid.
    Read(hyper::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::TooLarge { limit } => write!(f, "the body is larger than {limit} bytes"),
            BodyError::Stalled { stall, read } => write!(
                f,
                "no body bytes for {} s after {read} bytes (idle_timeout_s); nothing was stored, send it again",
                stall.as_secs()
            ),
            BodyError::Read(e) => write!(f, "reading the body: {e}"),
        }
    }
}

/// The whole body, at most `limit` bytes, each part arriving within
/// `stall` of the previous one (or of the call).
pub async fn read(mut body: Incoming, limit: usize, stall: Duration) -> Result<Bytes, BodyError> {
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => {
                return Err(BodyError::Stalled {
                    stall,
                    read: out.len(),
                })
            }
            Ok(None) => return Ok(out.freeze()),
            Ok(Some(Err(e))) => return Err(BodyError::Read(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            if out.len() + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            out.extend_from_slice(data);
        }
    }
}
