//! `custody-collector`: thin command line over [`custody_collector::syslog::serve`].
//! Flag parsing goes raw (clap, TOML) → checked ([`SyslogConfig::from_raw`]);
//! only that conversion fails on bad input, naming the flag or key.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use custody_collector::syslog::{
    self, Listeners, RawDevicesFile, RawSyslog, SyslogConfig, SyslogService,
};
use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::HostId;
use custody_store::{FsStore, ObjectStore};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "custody-collector",
    version,
    about = "The central custody collector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive syslog from devices into the store until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Configuration file (TOML); its [syslog] table holds the syslog settings
    /// and [[syslog.device]] rules. Flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Filesystem store directory.
    #[arg(long, value_name = "DIR")]
    store: Option<PathBuf>,
    /// State directory: signing key, syslog checkpoint.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The collector's own host id: device streams are stored under v1/<ID>/.
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
    /// Responsibility level A|B|C|D|E [default: C].
    #[arg(long)]
    level: Option<String>,
    /// Months to keep every object [default: 6; at least 6 for levels A, B, C].
    #[arg(long)]
    retention_months: Option<u32>,
    /// Listen for syslog over UDP (RFC 5426), e.g. 0.0.0.0:514.
    #[arg(long, value_name = "ADDR")]
    syslog_udp: Option<String>,
    /// Listen for syslog over TCP (RFC 6587), e.g. 0.0.0.0:601.
    #[arg(long, value_name = "ADDR")]
    syslog_tcp: Option<String>,
    /// Listen for syslog over TLS (RFC 5425), e.g. 0.0.0.0:6514.
    #[arg(long, value_name = "ADDR")]
    syslog_tls: Option<String>,
    /// PEM certificate chain for --syslog-tls.
    #[arg(long, value_name = "FILE")]
    syslog_tls_cert: Option<PathBuf>,
    /// PEM private key for --syslog-tls.
    #[arg(long, value_name = "FILE")]
    syslog_tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): require TLS clients to present a certificate it issued.
    #[arg(long, value_name = "FILE")]
    syslog_tls_client_ca: Option<PathBuf>,
    /// Device mapping file (TOML, [[device]] tables), tried after the config's rules.
    #[arg(long, value_name = "FILE")]
    devices: Option<PathBuf>,
    /// Senders no device rule matches: accept (as unknown-<address>) or refuse.
    #[arg(long, value_name = "accept|refuse")]
    unknown_senders: Option<String>,
    /// Seconds between signed digests [default: 60].
    #[arg(long, value_name = "SECS")]
    digest_interval_secs: Option<u64>,
    /// Log format: text or json [default: text].
    #[arg(long, default_value = "text")]
    log_format: String,
}

/// The collector's configuration file. Only the keys this build knows are
/// read; other tables (HTTPS ingest, S3) belong to other parts.
#[derive(Deserialize, Default)]
struct FileConfig {
    store: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    host_id: Option<String>,
    level: Option<String>,
    retention_months: Option<u32>,
    #[serde(default)]
    syslog: RawSyslog,
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &PathBuf, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what} {}: cannot read", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{what} {}: not valid", path.display()))
}

struct Checked {
    config: SyslogConfig,
    store: PathBuf,
    host: HostId,
}

fn check(a: &ServeArgs) -> anyhow::Result<Checked> {
    let file: FileConfig = match &a.config {
        Some(p) => read_toml(p, "--config")?,
        None => FileConfig::default(),
    };
    let store = a
        .store
        .clone()
        .or(file.store)
        .context("--store DIR is required (or store = \"DIR\" in --config)")?;
    let state_dir = a
        .state_dir
        .clone()
        .or(file.state_dir)
        .context("--state-dir DIR is required (or state_dir in --config): it holds the signing key and chain state")?;
    let host_text = a
        .host_id
        .clone()
        .or(file.host_id)
        .context("--host-id ID is required (or host_id in --config)")?;
    let host = HostId::new(host_text).context("--host-id")?;
    let level_text = a.level.clone().or(file.level).unwrap_or_else(|| "C".into());
    let level: Level = level_text
        .parse()
        .map_err(|e| anyhow::anyhow!("--level {level_text:?}: {e}; use A, B, C, D or E"))?;
    let retention = RetentionPolicy::new(level, a.retention_months.or(file.retention_months))
        .context("--retention-months")?;
    let mut raw = file.syslog;
    let set = |slot: &mut Option<String>, v: &Option<String>| {
        if v.is_some() {
            *slot = v.clone();
        }
    };
    set(&mut raw.udp, &a.syslog_udp);
    set(&mut raw.tcp, &a.syslog_tcp);
    set(&mut raw.tls, &a.syslog_tls);
    set(&mut raw.unknown_senders, &a.unknown_senders);
    if a.syslog_tls_cert.is_some() {
        raw.tls_cert = a.syslog_tls_cert.clone();
    }
    if a.syslog_tls_key.is_some() {
        raw.tls_key = a.syslog_tls_key.clone();
    }
    if a.syslog_tls_client_ca.is_some() {
        raw.tls_client_ca = a.syslog_tls_client_ca.clone();
    }
    if a.digest_interval_secs.is_some() {
        raw.digest_interval_secs = a.digest_interval_secs;
    }
    if raw.udp.is_none() && raw.tcp.is_none() && raw.tls.is_none() {
        anyhow::bail!("nothing to listen on: give --syslog-udp, --syslog-tcp and/or --syslog-tls (or [syslog] udp/tcp/tls in --config)");
    }
    let extra: RawDevicesFile = match &a.devices {
        Some(p) => read_toml(p, "--devices")?,
        None => RawDevicesFile::default(),
    };
    let config = SyslogConfig::from_raw(&raw, &extra.device, state_dir, retention)?;
    Ok(Checked {
        config,
        store,
        host,
    })
}

fn init_logging(format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => anyhow::bail!("--log-format {other:?}: use text or json"),
    }
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let Checked {
        config,
        store,
        host,
    } = check(&a)?;
    let store: Arc<dyn ObjectStore> = Arc::new(
        FsStore::open(&store)
            .with_context(|| format!("--store {}: cannot open", store.display()))?,
    );
    let key = syslog::load_or_create_key(&config.state_dir, &host)?;
    let listeners = Listeners::bind(&config).await?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt received"),
            _ = on_signal.cancelled() => {}
        }
        on_signal.cancel();
    });
    let service = SyslogService::new(config, store, key, host);
    syslog::serve(service, listeners, shutdown).await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Serve(args) = cli.command;
    if let Err(e) = init_logging(&args.log_format) {
        eprintln!("custody-collector: {e:#}");
        return ExitCode::from(2);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("custody-collector: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(serve(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("custody-collector: {e:#}");
            ExitCode::from(1)
        }
    }
}
