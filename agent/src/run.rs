//! The running agent (being written by the lead).
use std::future::Future;

use crate::config::Config;

/// Runs the agent until `shutdown` resolves, then flushes open segments,
/// ships what it can within `config.shutdown_grace` and persists checkpoints.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let _ = (config, shutdown);
    anyhow::bail!("the pipeline is being written")
}
