//! `custody-collector serve`: opens the backing store, binds the ingest and
//! monitoring listeners, runs them and the scheduled prune, and stops them
//! all on SIGINT or SIGTERM (requests in progress finish first).

use std::sync::Arc;

use anyhow::Context;
use custody_store::{FsStore, ObjectStore, S3Store};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{App, Limits};
use crate::config::{Config, StoreTarget};
use crate::findings::FindingsLog;

/// Opens the backing store. An S3 bucket without versioning and Object Lock
/// is refused where the level requires retention (A, B, C).
pub async fn open_store(target: &StoreTarget) -> anyhow::Result<Arc<dyn ObjectStore>> {
    Ok(match target {
        StoreTarget::Filesystem(dir) => Arc::new(
            FsStore::open(dir.clone())
                .with_context(|| format!("opening the filesystem store {}", dir.display()))?,
        ),
        StoreTarget::S3(settings) => {
            let store = S3Store::open(settings.clone())
                .await
                .with_context(|| format!("opening the {}", target.describe()))?;
            if let Some(problem) = store.protection().problem(settings) {
                if settings.require_object_lock {
                    anyhow::bail!(
                        "refusing to run: {problem}. Responsibility levels A, B and C must keep logs where they \
                         cannot be deleted (REQUIREMENTS.md §1)"
                    );
                }
                tracing::warn!("{problem}; storing without Object Lock (levels D and E)");
            }
            Arc::new(store)
        }
    })
}

async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the collector until SIGINT or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let tls = crate::tls::server_config(&config.ca_dir)?;
    let store = open_store(&config.store).await?;
    let findings = FindingsLog::open(&config.state_dir)?;
    let app = App::new(
        store,
        config.retention,
        findings,
        Limits {
            max_body_bytes: config.max_body_bytes,
            max_connections: config.max_connections,
            max_inflight_bytes: config.max_inflight_bytes,
        },
    );
    let ingest = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} (listen)", config.listen))?;
    let ops = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("listening on {} (metrics_listen)", config.metrics_listen))?;
    tracing::info!(
        listen = %ingest.local_addr().unwrap_or(config.listen),
        metrics = %ops.local_addr().unwrap_or(config.metrics_listen),
        store = %config.store.describe(),
        findings = %app.findings.path().display(),
        level = %config.retention.level(),
        "collector serving"
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ops_task = tokio::spawn(crate::ops::serve(
        ops,
        app.clone(),
        stopped(stop_rx.clone()),
    ));
    let prune_task = match (&config.store, config.prune_interval) {
        (StoreTarget::Filesystem(_), Some(every)) => Some(tokio::spawn(crate::prune::run(
            app.clone(),
            every,
            stopped(stop_rx.clone()),
        ))),
        _ => None,
    };
    let ingest_task = tokio::spawn(crate::ingest::serve(
        ingest,
        tls,
        app.clone(),
        stopped(stop_rx.clone()),
    ));
    signal().await;
    tracing::info!("stopping: finishing requests in progress");
    let _ = stop_tx.send(true);
    let _ = ingest_task.await;
    let _ = ops_task.await;
    if let Some(t) = prune_task {
        let _ = t.await;
    }
    tracing::info!("collector stopped");
    Ok(())
}
