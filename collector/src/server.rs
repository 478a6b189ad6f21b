//! `custody-collector serve`: opens the backing store, binds the ingest and
//! monitoring listeners, runs them and the scheduled prune, and stops them
//! all on SIGINT or SIGTERM (requests in progress finish first).

use std::sync::Arc;

use anyhow::Context;
use custody_store::{FsStore, ObjectStore, S3Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{App, Limits};
use crate::config::{Config, StoreTarget, SyslogSetup};
use crate::findings::FindingsLog;
use crate::syslog;

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
            } else {
                warn_without_lifecycle(&store).await;
            }
            Arc::new(store)
        }
    })
}

/// Warns when an Object Lock bucket has no lifecycle rule: nothing would
/// ever be removed once retention has passed, and the bucket grows without
/// bound. Only a warning: keeping evidence longer is never wrong.
async fn warn_without_lifecycle(store: &S3Store) {
    match store.enabled_lifecycle_rules().await {
        Ok(0) => tracing::warn!(
            bucket = %store.settings().bucket,
            "the bucket has no enabled lifecycle rule, so objects are never removed after their retention: \
             apply docs/s3-lifecycle.json (aws s3api put-bucket-lifecycle-configuration, see docs/s3.md)"
        ),
        Ok(rules) => tracing::info!(bucket = %store.settings().bucket, rules, "bucket lifecycle rules found"),
        Err(e) => tracing::warn!(
            "cannot read the bucket's lifecycle rules ({e}); check that one removes objects after their \
             retention (docs/s3.md)"
        ),
    }
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

/// Runs the collector until SIGINT or SIGTERM: HTTPS ingest from agents
/// (when a CA is configured), syslog from devices (when a syslog listener
/// is), `/healthz` and `/metrics`, and the scheduled prune. A fatal error in
/// the syslog service stops everything, so a broken half never runs alone.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let tls = match &config.ca_dir {
        Some(dir) => Some(crate::tls::server_config(dir)?),
        None => None,
    };
    let revocations = match &config.ca_dir {
        Some(dir) => crate::revocation::Revocations::watch(dir)?,
        None => crate::revocation::Revocations::none(),
    };
    let store = open_store(&config.store).await?;
    let findings = FindingsLog::open(&config.state_dir)?;
    let office = crate::incident::Office::open(&config.state_dir)?;
    let app = App::with_incidents(
        store.clone(),
        config.retention,
        findings,
        Limits {
            max_body_bytes: config.max_body_bytes,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            max_inflight_bytes: config.max_inflight_bytes,
        },
        Some(office),
        revocations,
    );
    let ingest = match tls {
        Some(tls) => Some((
            TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("listening on {} (listen)", config.listen))?,
            tls,
        )),
        None => None,
    };
    let api = match (&config.api_listen, &config.ca_dir) {
        (Some(addr), Some(ca_dir)) => Some((
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("listening on {addr} (api_listen)"))?,
            crate::tls::server_config(ca_dir)?,
            Arc::new(crate::api::Api {
                app: app.clone(),
                ca_dir: ca_dir.clone(),
                state_dir: config.state_dir.clone(),
                sessions: Default::default(),
                thresholds: config.host_thresholds,
            }),
        )),
        _ => None,
    };
    let ops = TcpListener::bind(config.metrics_listen)
        .await
        .with_context(|| format!("listening on {} (metrics_listen)", config.metrics_listen))?;
    let shutdown = CancellationToken::new();
    let syslog_task = match config.syslog {
        Some(SyslogSetup {
            config: syslog_config,
            host,
        }) => {
            let key = syslog::load_or_create_key(&syslog_config.state_dir, &host)?;
            let listeners = syslog::Listeners::bind(&syslog_config).await?;
            let service = syslog::SyslogService::new(syslog_config, store.clone(), key, host);
            app.metrics.attach_syslog(service.stats.clone());
            Some(tokio::spawn(syslog::serve(
                service,
                listeners,
                shutdown.clone(),
            )))
        }
        None => None,
    };
    tracing::info!(
        listen = %ingest
            .as_ref()
            .map(|(l, _)| l.local_addr().unwrap_or(config.listen).to_string())
            .unwrap_or_else(|| "off (no ca_dir)".into()),
        metrics = %ops.local_addr().unwrap_or(config.metrics_listen),
        api = %api
            .as_ref()
            .and_then(|(l, _, _)| l.local_addr().ok())
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off (no api_listen)".into()),
        syslog = syslog_task.is_some(),
        store = %config.store.describe(),
        findings = %app.findings.path().display(),
        level = %config.retention.level(),
        "collector serving"
    );
    let stopped = |token: CancellationToken| async move { token.cancelled().await };
    let ops_task = tokio::spawn(crate::ops::serve(
        ops,
        app.clone(),
        stopped(shutdown.clone()),
    ));
    let prune_task = match (&config.store, config.prune_interval) {
        (StoreTarget::Filesystem(_), Some(every)) => Some(tokio::spawn(crate::prune::run(
            app.clone(),
            every,
            stopped(shutdown.clone()),
        ))),
        _ => None,
    };
    let ingest_task = ingest.map(|(listener, tls)| {
        tokio::spawn(crate::ingest::serve(
            listener,
            tls,
            app.clone(),
            stopped(shutdown.clone()),
        ))
    });
    let api_task = api.map(|(listener, tls, api)| {
        tokio::spawn(crate::api::serve(
            listener,
            tls,
            api,
            stopped(shutdown.clone()),
        ))
    });
    tokio::select! {
        _ = signal() => tracing::info!("stopping: finishing requests in progress"),
        _ = shutdown.cancelled() => tracing::error!("stopping: the syslog service failed"),
    }
    shutdown.cancel();
    let mut result = Ok(());
    if let Some(t) = syslog_task {
        result = match t.await {
            Ok(Ok(summary)) => {
                tracing::info!(?summary, "syslog stopped");
                Ok(())
            }
            Ok(Err(e)) => Err(e.context("syslog")),
            Err(e) => Err(anyhow::anyhow!("the syslog service panicked: {e}")),
        };
    }
    if let Some(t) = ingest_task {
        let _ = t.await;
    }
    let _ = ops_task.await;
    if let Some(t) = api_task {
        let _ = t.await;
    }
    if let Some(t) = prune_task {
        let _ = t.await;
    }
    tracing::info!("collector stopped");
    result
}
