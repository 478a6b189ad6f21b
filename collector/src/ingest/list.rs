//! `GET /v1/list?prefix=v1/<host>/…`: names in the caller's own namespace,
//! sorted, as `{"keys":[…]}`.

use std::sync::Arc;

use custody_evidence::layout;
use custody_evidence::HostId;
use hyper::StatusCode;

use super::reply::{self, Reply};
use crate::app::App;

/// The `prefix` query parameter. Names use only `[A-Za-z0-9._/-]`, so the
/// only escape a well-behaved client sends is `%2F` for `/`.
fn prefix_param(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "prefix").then(|| v.replace("%2F", "/").replace("%2f", "/"))
    })
}

pub async fn list(app: &Arc<App>, host: &HostId, query: &str) -> Reply {
    let own = layout::host_prefix(host);
    let prefix = prefix_param(query).unwrap_or_else(|| own.clone());
    if !prefix.starts_with(&own) {
        return reply::text(
            StatusCode::FORBIDDEN,
            format!("host {host} may only list its own namespace {own}; refused prefix {prefix:?}"),
        );
    }
    match app.store.list(&prefix).await {
        Ok(keys) => {
            let body = serde_json::json!({ "keys": keys }).to_string();
            let mut r = reply::text(StatusCode::OK, body);
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(e) => {
            app.metrics.store_error("list");
            reply::busy(format!("backing store unavailable: {e}"), 5)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_is_read_from_the_query() {
        assert_eq!(
            super::prefix_param("prefix=v1%2Fweb01%2F").as_deref(),
            Some("v1/web01/")
        );
        assert_eq!(
            super::prefix_param("a=b&prefix=v1/x/").as_deref(),
            Some("v1/x/")
        );
        assert_eq!(super::prefix_param(""), None);
    }
}
