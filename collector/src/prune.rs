//! The scheduled prune of the filesystem store: every interval, delete the
//! objects whose retention has passed and that are not under legal hold.
//! The rules are [`custody_store::ObjectStore::prune`]'s; this only runs it.
//! (An S3 store is pruned by the bucket's lifecycle rule, docs/s3.md.)

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::app::App;

pub async fn run(app: Arc<App>, interval: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(interval) => {}
        }
        app.metrics.prune_runs.fetch_add(1, Ordering::Relaxed);
        match app.store.prune(OffsetDateTime::now_utc()).await {
            Ok(report) => {
                app.metrics
                    .prune_deleted
                    .fetch_add(report.deleted.len() as u64, Ordering::Relaxed);
                tracing::info!(
                    deleted = report.deleted.len(),
                    held = report.held.len(),
                    retained = report.retained,
                    unproven = report.unproven.len(),
                    "scheduled prune done"
                );
                for (key, why) in &report.unproven {
                    tracing::warn!(%key, "kept: cannot prove it expired: {why}");
                }
            }
            Err(e) => {
                app.metrics.prune_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!("scheduled prune failed: {e}");
            }
        }
    }
}
