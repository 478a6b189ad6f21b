//! `/healthz` and Prometheus `/metrics` on a separate plain-HTTP listener
//! (default loopback): monitoring needs no client certificate, and nothing
//! here reveals evidence or accepts writes.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::app::App;
use crate::ingest::reply;

/// At most this many monitoring connections at once.
const MAX_OPS_CONNECTIONS: usize = 16;

pub async fn serve(listener: TcpListener, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_OPS_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        let tcp = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("metrics listener: {e}");
                    continue;
                }
            },
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(answer(&app, req.uri().path())) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

fn answer(app: &App, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/healthz" => reply::text(
            StatusCode::OK,
            format!("ok: storing into {}", app.store.describe()),
        ),
        "/metrics" => {
            let mut r = reply::text(StatusCode::OK, app.metrics.render());
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => reply::text(StatusCode::NOT_FOUND, "only /healthz and /metrics here"),
    }
}
