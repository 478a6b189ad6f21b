//! Remote snapshots (FORMAT.md §15.2): an agent shipping to a collector
//! asks it every few seconds, over the same mutually authenticated
//! connection it ships through, whether an open incident names this host.
//! For each new one it runs the same snapshot as `custody-agent snapshot`
//! with its configured sources, uploads the bundle through the store, and
//! reports each step (`started`, `uploading`, `stored` or `failed` with the
//! reason) back to the collector.
//!
//! Incidents acted on are recorded in `STATE/incidents.json` before the
//! snapshot starts, so a restart never snapshots twice: a snapshot that a
//! restart interrupted is reported `failed` with that reason, and the
//! responder opens a new incident if another snapshot is wanted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use custody_evidence::timefmt::{format_utc, now_utc_micros};
use custody_store::https::{IncidentNotice, IncidentReport};
use custody_store::CollectorStore;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::snapshot::{self, Stage};

/// How often the collector is asked. With the snapshot starting right
/// after, a named host starts within this plus one request (the promise
/// is 10 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(3);

pub const HANDLED_FILE: &str = "incidents.json";
const HANDLED_FORMAT_V1: &str = "custody.agent-incidents.v1";

/// One incident this agent acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Handled {
    /// `started`, `stored` or `failed`.
    state: String,
    time: String,
    evidence_id: Option<String>,
    bundle_key: Option<String>,
    reason: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct HandledFile {
    format: String,
    incidents: BTreeMap<String, Handled>,
}

fn load(path: &Path) -> anyhow::Result<HandledFile> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged; remote snapshots are off until it is repaired or removed (removing it may repeat a snapshot)",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HandledFile {
            format: HANDLED_FORMAT_V1.into(),
            ..HandledFile::default()
        }),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(path: &Path, file: &HandledFile) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(file).context("encoding the incident record")?;
    let tmp = path.with_extension("json.tmp");
    crate::checkpoint::write_durably(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    match path.parent() {
        Some(dir) => crate::checkpoint::sync_dir(dir),
        None => Ok(()),
    }
}

/// The remote-snapshot loop of one running agent.
pub struct Responder {
    pub config: Arc<Config>,
    pub collector: Arc<CollectorStore>,
    pub url: String,
    path: PathBuf,
    handled: HandledFile,
}

impl Responder {
    pub fn new(
        config: Arc<Config>,
        collector: Arc<CollectorStore>,
        url: String,
    ) -> anyhow::Result<Responder> {
        let path = config.state_dir.join(HANDLED_FILE);
        let handled = load(&path)?;
        Ok(Responder {
            config,
            collector,
            url,
            path,
            handled,
        })
    }

    fn record(&mut self, id: &str, h: Handled) {
        self.handled.incidents.insert(id.to_string(), h);
        if let Err(e) = save(&self.path, &self.handled) {
            tracing::error!("recording incident {id} in {}: {e:#}", self.path.display());
        }
    }

    async fn report(&self, id: &str, report: IncidentReport) {
        if let Err(e) = self.collector.report_incident(id, &report).await {
            tracing::warn!(incident = %id, state = %report.state, "reporting progress to the collector: {e}");
        }
    }

    /// Runs until `stop` is set.
    pub async fn run(mut self, stop: Arc<AtomicBool>) {
        // Interrupted by a restart: say so once, never snapshot again.
        let interrupted: Vec<String> = self
            .handled
            .incidents
            .iter()
            .filter(|(_, h)| h.state == "started")
            .map(|(id, _)| id.clone())
            .collect();
        for id in interrupted {
            let reason = "the agent stopped during the snapshot; it is not repeated automatically (a partial bundle may be in the state directory's bundles/); open a new incident for another snapshot".to_string();
            self.report(
                &id,
                IncidentReport {
                    state: "failed".into(),
                    evidence_id: None,
                    bundle_key: None,
                    reason: Some(reason.clone()),
                },
            )
            .await;
            self.record(
                &id,
                Handled {
                    state: "failed".into(),
                    time: format_utc(now_utc_micros()),
                    evidence_id: None,
                    bundle_key: None,
                    reason: Some(reason),
                },
            );
        }
        let mut last_error: Option<String> = None;
        while !stop.load(Ordering::SeqCst) {
            match self.collector.open_incidents().await {
                Ok(notices) => {
                    last_error = None;
                    for n in notices {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        match self.handled.incidents.get(&n.id).cloned() {
                            // Done before (the collector lost our report): tell it again.
                            Some(h) => self.repeat(&n.id, h).await,
                            None => self.respond(n).await,
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if last_error.as_deref() != Some(&msg) {
                        tracing::debug!("asking the collector for incidents: {msg}");
                    }
                    last_error = Some(msg);
                }
            }
            let mut waited = Duration::ZERO;
            while waited < POLL_INTERVAL && !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(250)).await;
                waited += Duration::from_millis(250);
            }
        }
    }

    async fn repeat(&self, id: &str, h: Handled) {
        self.report(
            id,
            IncidentReport {
                state: if h.state == "started" {
                    "failed".into()
                } else {
                    h.state
                },
                evidence_id: h.evidence_id,
                bundle_key: h.bundle_key,
                reason: h.reason,
            },
        )
        .await;
    }

    /// Takes and uploads the snapshot for one incident.
    async fn respond(&mut self, n: IncidentNotice) {
        let id = n.id.clone();
        tracing::info!(incident = %id, operator = %n.operator, "remote snapshot requested by the collector");
        self.record(
            &id,
            Handled {
                state: "started".into(),
                time: format_utc(now_utc_micros()),
                evidence_id: None,
                bundle_key: None,
                reason: None,
            },
        );
        self.report(
            &id,
            IncidentReport {
                state: "started".into(),
                evidence_id: None,
                bundle_key: None,
                reason: None,
            },
        )
        .await;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let collector = self.collector.clone();
        let report_id = id.clone();
        let forward = tokio::spawn(async move {
            while let Some(Stage::Uploading { evidence_id, key }) = rx.recv().await {
                let r = IncidentReport {
                    state: "uploading".into(),
                    evidence_id: Some(evidence_id),
                    bundle_key: Some(key),
                    reason: None,
                };
                if let Err(e) = collector.report_incident(&report_id, &r).await {
                    tracing::warn!(incident = %report_id, "reporting progress to the collector: {e}");
                }
            }
        });
        let mut command_line: Vec<String> = std::env::args_os()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        command_line.push(format!(
            "(remote snapshot: incident {id} opened on collector {} at {} by {})",
            self.url, n.opened, n.operator
        ));
        let req = snapshot::Request {
            incident: id.clone(),
            operator: n.operator.clone(),
            reason: n.reason.clone(),
            authority: Some(format!(
                "incident {id} opened on collector {} by {}",
                self.url, n.operator
            )),
            out: None,
            images: Vec::new(),
            command_line,
            progress: Some(tx),
        };
        let config = self.config.clone();
        let handle = tokio::runtime::Handle::current();
        // The snapshot reads files and hashes: off the async workers.
        let result =
            tokio::task::spawn_blocking(move || handle.block_on(snapshot::snapshot(&config, &req)))
                .await;
        let _ = forward.await;
        let outcome = match result {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("the snapshot task ended abnormally: {e}")),
        };
        match outcome {
            Ok(o) => {
                let key = custody_evidence::bundle::bundle_store_key(
                    self.config.host_id.as_str(),
                    &id,
                    &o.evidence_id,
                );
                tracing::info!(incident = %id, evidence = %o.evidence_id, bytes = o.bytes, "remote snapshot stored");
                let h = Handled {
                    state: "stored".into(),
                    time: format_utc(now_utc_micros()),
                    evidence_id: Some(o.evidence_id),
                    bundle_key: Some(key),
                    reason: None,
                };
                self.record(&id, h.clone());
                self.repeat(&id, h).await;
            }
            Err(e) => {
                let reason = format!("{e:#}");
                tracing::error!(incident = %id, "remote snapshot failed: {reason}");
                let h = Handled {
                    state: "failed".into(),
                    time: format_utc(now_utc_micros()),
                    evidence_id: None,
                    bundle_key: None,
                    reason: Some(reason),
                };
                self.record(&id, h.clone());
                self.repeat(&id, h).await;
            }
        }
    }
}
