//! The running agent: wires the stages together, waits for the shutdown
//! signal, then stops them in order (sources flush → committer writes the
//! final digest and checkpoint → shipper drains within the grace period).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use anyhow::Context;
use custody_evidence::{InstanceId, StreamId};
use custody_store::{FsStore, ObjectStore};
use notify::{RecursiveMode, Watcher};

use crate::board::Board;
use crate::checkpoint::{self, Loaded};
use crate::committer::{self, Committer};
use crate::config::{Config, SourceConfig, StoreTarget};
use crate::journal::JournalReader;
use crate::seal::Sealer;
use crate::service::{self, Heartbeat, Notifier, Watched};
use crate::ship::Shipper;
use crate::source::{Source, SourceSettings};
use crate::spool::Spool;
use crate::status::{AgentStatus, SourceStatus, STATUS_FORMAT_V1};
use crate::wake::Wake;

/// The stream a source writes: category and source name, stable across
/// restarts so the hash chain continues. An event log source's name is its
/// whole stream id (`eventlog-security`, FORMAT.md §17.1).
pub fn stream_id(source: &SourceConfig) -> anyhow::Result<StreamId> {
    if source.eventlog.is_some() {
        return StreamId::new(source.name.clone())
            .with_context(|| format!("source {:?} gives an invalid stream id", source.name));
    }
    StreamId::new(format!("{}.{}", source.category, source.name))
        .with_context(|| format!("source {:?} gives an invalid stream id", source.name))
}

/// Directories to watch for a glob: the literal part before the first
/// wildcard (events in them wake the source; the poll covers the rest).
fn watch_dir(pattern: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    for comp in Path::new(pattern).components() {
        let s = comp.as_os_str().to_string_lossy();
        if s.contains(['*', '?', '[']) {
            break;
        }
        dir.push(comp);
    }
    if dir.as_os_str() == pattern {
        dir.pop();
    }
    dir
}

/// Opens the store; called at start-up and again by the shipper after a
/// failure. An S3 server that cannot be reached is an error here (the agent
/// spools and retries); an S3 bucket without versioning and Object Lock at
/// a level that requires them (A, B, C) ends the process with exit code 1
/// and the fix, whether found at start-up or on a later retry: evidence
/// must not go where it can be deleted.
fn open_store(target: &StoreTarget) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match target {
        StoreTarget::Filesystem(dir) => {
            Ok(Arc::new(FsStore::open(dir.clone()).with_context(|| {
                format!("opening the filesystem store {}", dir.display())
            })?))
        }
        StoreTarget::Collector(settings) => Ok(Arc::new(
            custody_store::CollectorStore::open(settings)
                .with_context(|| format!("opening the {}", describe_target(target)))?,
        )),
        StoreTarget::S3(settings) => {
            // Called from sync code inside the runtime (start-up and the
            // shipper's retry closure): block this worker, not the runtime.
            let handle = tokio::runtime::Handle::try_current()
                .context("the S3 store needs the agent's async runtime")?;
            if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                anyhow::bail!("the S3 store needs a multi-threaded async runtime");
            }
            let store = tokio::task::block_in_place(|| {
                handle.block_on(custody_store::S3Store::open(settings.clone()))
            })
            .with_context(|| format!("opening the {}", describe_target(target)))?;
            if let Some(problem) = store.protection().problem(settings) {
                if settings.require_object_lock {
                    // run() logs an open_store error and keeps going, which
                    // is right for an outage but not for this, so the
                    // refusal ends the process here. Spool and checkpoints
                    // are crash-safe, so nothing read so far is lost.
                    let msg = format!(
                        "refusing to run: {problem}. Responsibility levels A, B and C must keep logs where they \
                         cannot be deleted (REQUIREMENTS.md §1); use level D or E only if the table does not bind you"
                    );
                    tracing::error!("{msg}");
                    eprintln!("error: {msg}");
                    std::process::exit(1);
                }
                tracing::warn!(
                    "{problem}; writing without Object Lock (levels D and E are not bound by the retention table)"
                );
            }
            Ok(Arc::new(store))
        }
    }
}

/// Where evidence goes, for logs and status.json.
pub(crate) fn describe_target(target: &StoreTarget) -> String {
    match target {
        StoreTarget::Filesystem(dir) => format!("filesystem store at {}", dir.display()),
        StoreTarget::Collector(c) => format!("collector {}", c.url),
        StoreTarget::S3(s3) => {
            let location = if s3.prefix.is_empty() {
                format!("s3://{}", s3.bucket)
            } else {
                format!("s3://{}/{}", s3.bucket, s3.prefix)
            };
            match &s3.endpoint {
                Some(endpoint) => format!("S3 store {location} (endpoint {endpoint})"),
                None => format!("S3 store {location} (AWS)"),
            }
        }
    }
}

/// The thread body of a `kind = "eventlog"` source (Windows only): a
/// [`crate::eventlog::source::EventLogSource`] over `wevtapi`, resuming
/// after the checkpoint's bookmark.
#[cfg(windows)]
#[allow(clippy::too_many_arguments)]
fn eventlog_thread(
    channel: &str,
    src: &SourceConfig,
    stream: &StreamId,
    config: &Config,
    next_seq: u64,
    committed: Option<crate::eventlog::reader::ChannelState>,
    sealer: Sealer,
    out: std::sync::mpsc::SyncSender<crate::source::SourceEvent>,
    board: Arc<Board>,
    wake: Arc<Wake>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) -> anyhow::Result<Box<dyn FnOnce() + Send>> {
    use crate::eventlog::feed::StartFrom;
    use crate::eventlog::reader::{ChannelReader, ChannelState, CutRules};
    let feed = crate::eventlog::wevt::WevtFeed::new(channel).with_context(|| {
        format!(
            "source {}: creating the event for channel {channel}",
            src.name
        )
    })?;
    let committed = committed.unwrap_or_else(|| ChannelState {
        channel: channel.to_string(),
        ..Default::default()
    });
    let rules = CutRules {
        max_bytes: config.segment_max_bytes,
        max_age: config.segment_max_age,
        batch: 64,
        first_start: match config.start_at {
            crate::config::StartAt::Beginning => StartFrom::Oldest,
            crate::config::StartAt::End => StartFrom::Future,
        },
    };
    let source = crate::eventlog::source::EventLogSource {
        reader: ChannelReader::new(feed, committed, rules),
        channel: channel.to_string(),
        stream: stream.clone(),
        category: src.category,
        next_seq,
        sealer,
        out,
        board,
        wake,
        stop,
        paused,
    };
    Ok(Box::new(move || source.run()))
}

/// Elsewhere the config refuses `kind = "eventlog"`; this is never reached.
#[cfg(not(windows))]
#[allow(clippy::too_many_arguments)]
fn eventlog_thread(
    _channel: &str,
    src: &SourceConfig,
    _stream: &StreamId,
    _config: &Config,
    _next_seq: u64,
    _committed: Option<crate::eventlog::reader::ChannelState>,
    _sealer: Sealer,
    _out: std::sync::mpsc::SyncSender<crate::source::SourceEvent>,
    _board: Arc<Board>,
    _wake: Arc<Wake>,
    _stop: Arc<AtomicBool>,
    _paused: Arc<AtomicBool>,
) -> anyhow::Result<Box<dyn FnOnce() + Send>> {
    anyhow::bail!(
        "source {}: eventlog sources exist only on Windows; use a journald or file source here",
        src.name
    )
}

/// Takes an exclusive lock on the state directory so two agents never
/// share a checkpoint.
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("agent.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(_) => anyhow::bail!(
            "another custody-agent is already running with state directory {} (it holds {}); stop it first or use another --state-dir",
            dir.display(),
            path.display()
        ),
    }
}

/// Refuses, before anything is created or written, what `check-config`
/// reports as unusable and no retry can fix: a state directory that
/// overlaps a filesystem store (the host key would be readable by the
/// store's readers), and a store directory that is not a custody store.
/// An unreachable store, by contrast, is retried (the agent spools).
fn refuse_misplaced(config: &Config) -> anyhow::Result<()> {
    if let Err(why) = crate::placement::check_state_outside_store(&config.state_dir, &config.store)
    {
        anyhow::bail!("refusing to start: {why}");
    }
    if let StoreTarget::Filesystem(dir) = &config.store {
        if let Err(why) = crate::placement::check_store_dir(dir) {
            anyhow::bail!(
                "refusing to start: store {}: {why} (custody-agent check-config reports the same)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Runs the agent until `shutdown` resolves, then flushes open segments,
/// ships what it can within `config.shutdown_grace` and persists checkpoints.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let notifier = Arc::new(Notifier::from_env());
    notifier.status("starting: opening the state directory, spool and store");
    refuse_misplaced(&config)?;
    let state_dir = config.state_dir.clone();
    // On Windows a new state directory gets an ACL for SYSTEM and
    // Administrators only (ProgramData lets every user read otherwise).
    #[cfg(windows)]
    let created = crate::platform::create_private_dir(&state_dir);
    #[cfg(not(windows))]
    let created = std::fs::create_dir_all(&state_dir);
    created.with_context(|| {
        format!(
            "creating state directory {}; make its parent writable by the agent's user",
            state_dir.display()
        )
    })?;
    let _lock = lock_state_dir(&state_dir)?;
    let key = crate::key::load_or_create_for_host(&state_dir, &config.host_id)?;
    let public_key_line = key.public_key_line("");
    let public_key_line = public_key_line.trim_end().to_string();
    let store_target = config.store.clone();
    let describe = describe_target(&store_target);
    let store = match open_store(&store_target) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!("{e:#}; the agent keeps reading into its spool and retries the store");
            None
        }
    };
    let spool = Arc::new(Spool::open(&state_dir)?);
    let (mut cp, loaded) = checkpoint::load(&state_dir)?;
    if let Loaded::Previous(why) = &loaded {
        tracing::warn!("checkpoint damaged ({why}); using the previous generation and rolling forward from the spool");
    }
    committer::recover(&mut cp, &spool)?;
    checkpoint::save(&state_dir, &cp)?;

    let instance = InstanceId::random();
    let started = custody_evidence::timefmt::now_utc_micros();
    let streams: Vec<StreamId> = config
        .sources
        .iter()
        .map(stream_id)
        .collect::<anyhow::Result<_>>()?;
    let board = Arc::new(Board::new(
        &state_dir,
        AgentStatus {
            format: STATUS_FORMAT_V1.to_string(),
            host_id: config.host_id.to_string(),
            pid: std::process::id(),
            agent_instance: instance.to_string(),
            running: true,
            store: describe.clone(),
            last_ship_error: store
                .is_none()
                .then(|| format!("store {describe} could not be opened; retrying")),
            spool: crate::status::SpoolStatus {
                max_bytes: config.spool_max_bytes,
                ..Default::default()
            },
            sources: config
                .sources
                .iter()
                .zip(&streams)
                .map(|(s, id)| SourceStatus {
                    name: s.name.clone(),
                    category: s.category.to_string(),
                    stream_id: id.to_string(),
                    patterns: match &s.webroot {
                        Some(w) => w.roots.iter().map(|r| r.display().to_string()).collect(),
                        None => s.paths.clone(),
                    },
                    last_segment_seq: cp.streams.get(id).and_then(|st| st.next_seq.checked_sub(1)),
                    journal: s.journal.as_ref().map(|j| crate::status::JournalStatus {
                        journal: j.describe(),
                        committed_cursor: cp
                            .streams
                            .get(id)
                            .and_then(|st| st.journal.as_ref())
                            .and_then(|j| j.cursor.clone()),
                        ..Default::default()
                    }),
                    eventlog: s
                        .eventlog
                        .as_ref()
                        .map(|channel| crate::status::EventLogStatus {
                            channel: channel.clone(),
                            state: "starting".to_string(),
                            committed_record_id: cp
                                .streams
                                .get(id)
                                .and_then(|st| st.eventlog.as_ref())
                                .and_then(|e| e.last_record_id),
                            ..Default::default()
                        }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        },
    ));
    board.spool(spool.bytes(), spool.segment_count(), false, None);
    let _ = board.write();
    tracing::info!(
        host = %config.host_id,
        instance = %instance,
        store = %describe,
        sources = config.sources.len(),
        key = %key.fingerprint(),
        "custody-agent started"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let ship_wake = Arc::new(tokio::sync::Notify::new());
    let (tx, rx) = sync_channel(4);
    let wakes: Vec<Arc<Wake>> = streams.iter().map(|_| Arc::new(Wake::default())).collect();

    // File-system events wake the sources watching that directory.
    let mut dirs: Vec<(PathBuf, usize)> = Vec::new();
    for (i, s) in config.sources.iter().enumerate() {
        for p in &s.paths {
            dirs.push((watch_dir(p), i));
        }
    }
    let event_dirs = dirs.clone();
    let event_wakes = wakes.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        for path in &ev.paths {
            let parent = path.parent().unwrap_or(path);
            for (dir, i) in &event_dirs {
                if parent == dir || path == dir {
                    event_wakes[*i].notify();
                }
            }
        }
    })
    .context("starting the file-system watcher (inotify)")?;
    let mut watched: Vec<PathBuf> = dirs.iter().map(|(d, _)| d.clone()).collect();
    watched.sort();
    watched.dedup();
    for d in &watched {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::debug!(dir = %d.display(), "not watching (the poll covers it): {e}");
        }
    }

    // Sources, each on its own thread.
    let mut threads = Vec::new();
    for ((src, stream), wake) in config.sources.iter().zip(&streams).zip(&wakes) {
        let st = cp.streams.get(stream).cloned().unwrap_or_default();
        let settings = SourceSettings {
            segment_max_bytes: config.segment_max_bytes,
            segment_max_age: config.segment_max_age,
            poll_interval: config.poll_interval,
            partial_line_wait: config.partial_line_wait,
            start_at: config.start_at,
            first_start: !cp.streams.contains_key(stream)
                || (st.next_seq == 0 && st.files.is_empty()),
            foreign_globs: foreign_globs(&config.sources, &src.name),
        };
        let sealer = Sealer::new(config.zstd_level).context("creating a zstd context")?;
        let body: Box<dyn FnOnce() + Send> = if let Some(channel) = &src.eventlog {
            eventlog_thread(
                channel,
                src,
                stream,
                &config,
                st.next_seq,
                st.eventlog.clone(),
                sealer,
                tx.clone(),
                board.clone(),
                wake.clone(),
                stop.clone(),
                paused.clone(),
            )?
        } else if let Some(webroot) = &src.webroot {
            let reader = crate::webroot::InventoryReader {
                stream: stream.clone(),
                category: src.category,
                webroot: webroot.clone(),
                segment_max_bytes: config.segment_max_bytes,
                next_seq: st.next_seq,
                committed: st.inventory.clone(),
                sealer,
                out: tx.clone(),
                board: board.clone(),
                wake: wake.clone(),
                stop: stop.clone(),
                paused: paused.clone(),
            };
            Box::new(move || reader.run())
        } else if src.journal.is_some() {
            let reader = JournalReader::new(
                src.clone(),
                stream.clone(),
                settings,
                st.next_seq,
                st.journal.clone(),
                sealer,
                tx.clone(),
                board.clone(),
                wake.clone(),
                stop.clone(),
                paused.clone(),
            );
            Box::new(move || reader.run())
        } else {
            let source = Source::new(
                src.clone(),
                stream.clone(),
                settings,
                st.next_seq,
                st.files.clone(),
                sealer,
                tx.clone(),
                board.clone(),
                wake.clone(),
                stop.clone(),
                paused.clone(),
            );
            Box::new(move || source.run())
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("source {stream}"))
                .spawn(body)
                .context("starting a source thread")?,
        );
    }
    drop(tx);

    let committer_heartbeat = Arc::new(Heartbeat::new());
    let committer = Committer {
        host: config.host_id.clone(),
        instance: instance.clone(),
        state_dir: state_dir.clone(),
        retention: config.retention,
        key,
        public_key_line: public_key_line.clone(),
        spool: spool.clone(),
        spool_max_bytes: config.spool_max_bytes,
        digest_interval: config.digest_interval,
        board: board.clone(),
        paused: paused.clone(),
        source_wakes: wakes.clone(),
        ship_wake: ship_wake.clone(),
        stop: stop.clone(),
        shutdown_grace: config.shutdown_grace,
        started,
        heartbeat: committer_heartbeat.clone(),
    };
    let n_sources = streams.len();
    let committer_done = Arc::new(AtomicBool::new(false));
    let committer_done2 = committer_done.clone();
    let ship_wake2 = ship_wake.clone();
    // Wakes the main task when the committer ends, so it need not poll.
    let (committer_ended_tx, committer_ended_rx) = tokio::sync::oneshot::channel::<()>();
    let committer_thread = std::thread::Builder::new()
        .name("committer".into())
        .spawn(move || {
            let r = committer.run(cp, rx, n_sources);
            committer_done2.store(true, Ordering::SeqCst);
            ship_wake2.notify_one();
            let _ = committer_ended_tx.send(());
            r
        })
        .context("starting the committer thread")?;

    let shipper_heartbeat = Arc::new(Heartbeat::new());
    let shipper = Shipper {
        store,
        open_store: Box::new(move || open_store(&store_target)),
        describe: describe.clone(),
        spool: spool.clone(),
        host: config.host_id.clone(),
        public_key_line,
        retention: config.retention,
        board: board.clone(),
        wake: ship_wake.clone(),
        heartbeat: shipper_heartbeat.clone(),
    };
    let shipper_task =
        tokio::spawn(shipper.run(stop.clone(), config.shutdown_grace, committer_done.clone()));

    // Remote snapshots: only a collector can ask for them.
    let incident_task = match &config.store {
        StoreTarget::Collector(settings) => {
            match custody_store::CollectorStore::open(settings)
                .map_err(anyhow::Error::from)
                .and_then(|c| {
                    crate::incident::Responder::new(
                        Arc::new(config.clone()),
                        Arc::new(c),
                        settings.url.clone(),
                    )
                }) {
                Ok(responder) => Some(tokio::spawn(responder.run(stop.clone()))),
                Err(e) => {
                    tracing::error!("remote snapshots are off: {e:#}");
                    None
                }
            }
        }
        _ => None,
    };
    let status_board = board.clone();
    let status_notifier = notifier.clone();
    let status_stop = stop.clone();
    let status_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = status_board.write_if_changed() {
                tracing::debug!("writing status.json: {e}");
            }
            if !status_stop.load(Ordering::SeqCst) {
                status_notifier.status(&status_board.summary());
            }
        }
    });

    // Sources run, the spool and checkpoint are set up, the shipper is on
    // its way: systemd may consider the agent started.
    notifier.ready(&format!("running: {n_sources} sources into the {describe}"));
    let watchdog_task = notifier.watchdog_timeout().map(|timeout| {
        tracing::info!(
            timeout_s = timeout.as_secs_f64(),
            "systemd watchdog enabled: pinging while the committer and shipper make progress"
        );
        tokio::spawn(service::watchdog(
            notifier.clone(),
            timeout,
            vec![
                Watched {
                    name: "committer",
                    heartbeat: committer_heartbeat,
                    allowed_silence: service::committer_allowed_silence(timeout),
                },
                Watched {
                    name: "shipper",
                    heartbeat: shipper_heartbeat,
                    allowed_silence: service::shipper_allowed_silence(timeout),
                },
            ],
            stop.clone(),
        ))
    });

    // A source thread or the committer ending early is fatal; so is the signal.
    let why = tokio::select! {
        _ = shutdown => {
            tracing::info!("shutdown requested: flushing open segments");
            "shutting down"
        }
        _ = committer_ended_rx => {
            tracing::error!("the committer stopped unexpectedly");
            "the committer stopped unexpectedly; shutting down"
        }
    };
    stop.store(true, Ordering::SeqCst);
    notifier.stopping(&format!(
        "{why}: flushing open segments, shipping for up to {} s",
        config.shutdown_grace.as_secs()
    ));
    for w in &wakes {
        w.notify();
    }
    drop(watcher);
    let committer_result = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
        committer_thread.join()
    })
    .await
    .context("joining the agent's threads")?;
    ship_wake.notify_one();
    let _ = shipper_task.await;
    if let Some(task) = incident_task {
        // A snapshot in progress finishes (its bundle is evidence); the
        // loop itself ends at its next check of `stop`.
        let _ = task.await;
    }
    status_task.abort();
    if let Some(task) = watchdog_task {
        task.abort();
    }
    board.spool(spool.bytes(), spool.segment_count(), false, None);
    board.stopped();
    let _ = board.write();
    match committer_result {
        Ok(Ok(())) => {
            tracing::info!(
                unshipped_segments = spool.segment_count(),
                "custody-agent stopped"
            );
            notifier.status(&format!(
                "stopped; {} segments left in the spool for the next start",
                spool.segment_count()
            ));
            Ok(())
        }
        Ok(Err(e)) => Err(e),
        Err(_) => anyhow::bail!("the committer thread panicked"),
    }
}

/// The globs of every file source except `own` (journal and Event Log
/// sources have none): a file one of them matches is that source's, and
/// `own` never adopts it under another name (see `SourceSettings`).
fn foreign_globs(sources: &[crate::config::SourceConfig], own: &str) -> Vec<glob::Pattern> {
    sources
        .iter()
        .filter(|s| s.name != own && s.journal.is_none() && s.eventlog.is_none())
        .flat_map(|s| &s.paths)
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect()
}
