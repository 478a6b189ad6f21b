//! Syslog from devices that cannot run an agent (firewalls, IPS, switches:
//! REQUIREMENTS.md §1, levels A and B): RFC 5424 and RFC 3164 messages over
//! UDP (RFC 5426), TCP (RFC 6587, octet counting and LF framing) and TLS
//! (RFC 5425), kept byte for byte in the same segments, hash chains and
//! signed digests the agent writes, so `custody-verify store` checks them.
//!
//! Pipeline, one module per stage:
//! listeners ([`udp`], [`tcp`] with [`tls`], framing in [`framing`]) →
//! device mapping ([`devices`], hostnames from [`parse`]) → [`segmenter`]
//! (one open segment per device) → one [`writer`] per device stream
//! (seal, chain, store) → [`digest`] (signed digests, checkpoint).
//! Chain state survives restarts through [`state`].
//!
//! Entry point: [`serve`] with a [`SyslogService`] and bound [`Listeners`]:
//!
//! ```no_run
//! # async fn example(config: custody_collector::syslog::SyslogConfig,
//! #     store: std::sync::Arc<dyn custody_store::ObjectStore>) -> anyhow::Result<()> {
//! use custody_collector::syslog::{self, Listeners, SyslogService};
//! let host = custody_evidence::HostId::new("collector01")?;
//! let key = syslog::load_or_create_key(&config.state_dir, &host)?;
//! let listeners = Listeners::bind(&config).await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let service = SyslogService::new(config, store, key, host);
//! let summary = syslog::serve(service, listeners, shutdown.clone()).await?;
//! # Ok(()) }
//! ```

pub mod config;
pub mod devices;
pub mod digest;
pub mod framing;
pub mod ingress;
pub mod message;
pub mod parse;
pub mod segmenter;
pub mod shared;
pub mod state;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod writer;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use custody_evidence::sign::HostKey;
use custody_evidence::{HostId, InstanceId};
use custody_store::ObjectStore;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{RawDevice, RawDevicesFile, RawSyslog, SyslogConfig, TlsFiles};
pub use stats::{StatsSnapshot, SyslogStats};

/// Concurrent store writes over all device streams.
const STORE_CONCURRENCY: usize = 16;
/// Messages queued between the listeners and the segmenter (the memory
/// budget bounds their bytes; this bounds their count).
const QUEUE: usize = 8192;

/// Loads the collector's signing key from `STATE/host_key` (0600), making
/// it on first start; `STATE/host_key.pub` gets `custody-collector@<host>`.
pub fn load_or_create_key(state_dir: &Path, host: &HostId) -> anyhow::Result<HostKey> {
    custody_agent::key::load_or_create_with_comment(state_dir, &format!("custody-collector@{host}"))
}

/// A UDP socket with a large receive buffer. The kernel may grant less
/// (`net.core.rmem_max`); that is logged, not refused.
fn bind_udp(addr: SocketAddr, want: usize) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(e) = sock.set_recv_buffer_size(want) {
        tracing::warn!(error = %e, "syslog udp: cannot set the receive buffer size");
    }
    sock.bind(&addr.into())?;
    sock.set_nonblocking(true)?;
    // Linux reports twice the usable size it granted.
    let got = sock.recv_buffer_size().unwrap_or(0) / 2;
    if got < want {
        tracing::warn!(
            asked = want,
            granted = got,
            "syslog udp: the kernel granted a smaller receive buffer; bursts beyond it are dropped by the kernel \
             before the collector sees them: raise net.core.rmem_max (sysctl) to at least the size asked"
        );
    }
    Ok(UdpSocket::from_std(sock.into())?)
}

/// Bound sockets, so the caller can bind before dropping privileges or
/// learn the ports it got (`127.0.0.1:0` in tests).
#[derive(Default)]
pub struct Listeners {
    pub udp: Option<UdpSocket>,
    pub tcp: Option<TcpListener>,
    pub tls: Option<(TcpListener, TlsAcceptor)>,
}

impl Listeners {
    /// Binds what the configuration names and loads the TLS certificate.
    pub async fn bind(config: &SyslogConfig) -> anyhow::Result<Self> {
        let mut l = Listeners::default();
        if let Some(addr) = config.udp {
            l.udp = Some(
                bind_udp(addr, config.udp_receive_buffer)
                    .with_context(|| format!("--syslog-udp {addr}: cannot bind"))?,
            );
        }
        if let Some(addr) = config.tcp {
            l.tcp = Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("--syslog-tcp {addr}: cannot bind"))?,
            );
        }
        if let (Some(addr), Some(files)) = (config.tls, &config.tls_files) {
            let acceptor = tls::acceptor(files)?;
            let sock = TcpListener::bind(addr)
                .await
                .with_context(|| format!("--syslog-tls {addr}: cannot bind"))?;
            l.tls = Some((sock, acceptor));
        }
        Ok(l)
    }

    /// The bound addresses: `(udp, tcp, tls)`.
    pub fn local_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.udp.as_ref().and_then(|s| s.local_addr().ok()),
            self.tcp.as_ref().and_then(|s| s.local_addr().ok()),
            self.tls.as_ref().and_then(|(s, _)| s.local_addr().ok()),
        )
    }
}

/// Everything [`serve`] needs besides its sockets and shutdown signal.
pub struct SyslogService {
    pub config: SyslogConfig,
    pub store: Arc<dyn ObjectStore>,
    /// The collector's own signing key ([`load_or_create_key`]).
    pub key: HostKey,
    /// The collector's own host id: device streams are stored under
    /// `v1/<collector>/streams/<device>/`.
    pub collector: HostId,
    /// Counters for `/metrics`; pass a clone to read them while serving.
    pub stats: Arc<SyslogStats>,
}

impl SyslogService {
    pub fn new(
        config: SyslogConfig,
        store: Arc<dyn ObjectStore>,
        key: HostKey,
        collector: HostId,
    ) -> Self {
        SyslogService {
            config,
            store,
            key,
            collector,
            stats: Arc::new(SyslogStats::default()),
        }
    }
}

/// What a finished [`serve`] did.
#[derive(Debug, Clone)]
pub struct SyslogSummary {
    pub stats: StatsSnapshot,
    pub digests_next_seq: u64,
}

/// Runs the syslog service until `shutdown` is cancelled, then stops
/// reading, stores every open segment and writes a final digest.
///
/// Recovers chain state first (checkpoint in `STATE/syslog/`, rolled
/// forward over the store), so it refuses to start when the store holds a
/// chain it cannot continue. Returns an error when a store write failed for
/// good (integrity alarm, or the store still down after the shutdown grace);
/// the error names what was not stored.
pub async fn serve(
    service: SyslogService,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<SyslogSummary> {
    let SyslogService {
        config,
        store,
        key,
        collector,
        stats,
    } = service;
    let dir = config.syslog_dir();
    let started = custody_evidence::timefmt::now_utc_micros();
    let cp = state::recover(&dir, store.as_ref(), &collector, &key, &config.retention)
        .await
        .context("recovering the syslog chain state")?;
    let instance =
        InstanceId::new(uuid::Uuid::new_v4().to_string()).expect("a UUID is a valid instance id");
    let shared = Arc::new(shared::Shared {
        host: collector.clone(),
        instance: instance.clone(),
        store: store.clone(),
        retention: config.retention,
        public_key_line: key.public_key_line(&format!("custody-collector@{collector}")),
        key,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        grace: config.shutdown_grace,
        dir,
        store_ops: Arc::new(Semaphore::new(STORE_CONCURRENCY)),
        zstd_level: config.zstd_level,
        failure: Mutex::new(None),
        store_log: ingress::RateLimit::new(Duration::from_secs(30)),
    });

    let (committed_tx, committed_rx) = mpsc::unbounded_channel();
    let digests = digest::DigestWriter {
        shared: shared.clone(),
        interval: config.digest_interval,
        started,
    };
    let heads: HashMap<_, _> = cp.streams.clone().into_iter().collect();
    let digest_shared = shared.clone();
    let digest_task = tokio::spawn(async move {
        let result = digests.run(cp, committed_rx).await;
        if let Err(e) = &result {
            // Without digests nothing new would be signed: stop at once.
            digest_shared.fail(e);
        }
        result
    });
    let (tx, rx) = mpsc::channel(QUEUE);
    let segmenter = segmenter::Segmenter::new(
        shared.clone(),
        config.segment_max_bytes,
        config.segment_max_age,
        heads,
        committed_tx,
    );
    let segmenter_task = tokio::spawn(segmenter.run(rx));

    let budget = message::Budget::new(config.max_buffered_bytes);
    stats.set_budget(budget.clone());
    let ingress = ingress::Ingress {
        devices: config.devices.clone(),
        budget,
        tx,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
        refused_log: Arc::new(ingress::RateLimit::new(Duration::from_secs(10))),
        refused_conn_log: Arc::new(ingress::RateLimit::new(Duration::from_secs(10))),
        dropped_log: Arc::new(ingress::RateLimit::new(Duration::from_secs(10))),
    };
    let tasks = TaskTracker::new();
    let connections = Arc::new(Semaphore::new(config.max_connections));
    let (udp_addr, tcp_addr, tls_addr) = listeners.local_addrs();
    if let Some(sock) = listeners.udp {
        tasks.spawn(udp::run(sock, ingress.clone(), config.max_message_udp));
    }
    for (sock, tls) in [
        listeners.tcp.map(|s| (s, None)),
        listeners.tls.map(|(s, a)| (s, Some(a))),
    ]
    .into_iter()
    .flatten()
    {
        let l = tcp::StreamListener {
            ingress: ingress.clone(),
            tls,
            max_message: config.max_message_tcp,
            connections: connections.clone(),
            tasks: tasks.clone(),
        };
        tasks.spawn(l.run(sock));
    }
    drop(ingress);
    tracing::info!(
        host = %collector,
        instance = %instance,
        udp = ?udp_addr,
        tcp = ?tcp_addr,
        tls = ?tls_addr,
        devices = config.devices.rules().len(),
        "syslog: listening"
    );

    shutdown.cancelled().await;
    tracing::info!(
        "syslog: shutting down: closing listeners, storing open segments, writing the final digest"
    );
    tasks.close();
    tasks.wait().await;
    segmenter_task.await.context("syslog segmenter task")?;
    let cp = digest_task.await.context("syslog digest task")?.ok();
    if let Some(why) = shared.failure() {
        let lost = stats.snapshot().segments_lost;
        anyhow::bail!("syslog service failed: {why} ({lost} segment(s) of messages not stored)");
    }
    let summary = SyslogSummary {
        stats: stats.snapshot(),
        digests_next_seq: cp.map_or(0, |c| c.digest.next_seq),
    };
    tracing::info!(
        messages = summary.stats.messages,
        segments = summary.stats.segments_stored,
        digests = summary.stats.digests_stored,
        udp_dropped = summary.stats.udp_dropped_busy + summary.stats.udp_dropped_oversize,
        "syslog: stopped"
    );
    Ok(summary)
}
