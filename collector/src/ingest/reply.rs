//! Responses: every refusal carries a plain-text reason a person can act
//! on, and is logged and counted.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

pub type Reply = Response<Full<Bytes>>;

/// The reason given in a reply, kept beside the body for the log line.
#[derive(Debug, Clone)]
pub struct Reason(pub String);

pub fn text(status: StatusCode, msg: impl Into<String>) -> Reply {
    let reason = msg.into();
    let mut body = reason.clone();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    r.extensions_mut().insert(Reason(reason));
    r
}

/// A reply after which the connection is closed (`Connection: close`):
/// for a client that is refused whatever it sends next, or whose request
/// was cut off (the rest of its body would be read as the next request).
pub fn closing(status: StatusCode, msg: impl Into<String>) -> Reply {
    let mut r = text(status, msg);
    r.headers_mut().insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    r
}

/// 503 with Retry-After: the agent keeps the data in its spool and retries.
pub fn busy(msg: impl Into<String>, retry_after_s: u32) -> Reply {
    let mut r = text(StatusCode::SERVICE_UNAVAILABLE, msg);
    if let Ok(v) = retry_after_s.to_string().parse() {
        r.headers_mut().insert("retry-after", v);
    }
    r
}
