//! `custody-collector`: `ca init`, `enroll`, `serve` and `incident`. Thin: parsing
//! here (raw flags and TOML → [`RawConfig::check`]), everything else in the
//! library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use custody_collector::config::RawConfig;
use custody_collector::syslog::{RawDevicesFile, RawSyslog};
use custody_evidence::HostId;

#[derive(Parser)]
#[command(
    name = "custody-collector",
    version,
    about = "Receives custody evidence from agents over mutually authenticated HTTPS, and syslog from devices"
)]
struct Cli {
    /// Log format on stderr: text or json (one JSON object per line).
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The collector's certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Issue one agent's client certificate (writes ca.pem, client.pem, client.key).
    Enroll {
        /// The CA directory made by `ca init`.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The agent's host id (its host_id setting); it may write only v1/ID/.
        #[arg(long, value_name = "ID")]
        host_id: String,
        /// Where to write the enrollment files (created; must not hold them yet).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Revoke client certificates: the serving collector refuses them from
    /// its next request on (no restart). Enroll the host again for a new one.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["host_id", "serial"])))]
    Revoke {
        /// The CA directory made by `ca init`.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// Revoke every certificate issued to this host so far.
        #[arg(long, value_name = "ID")]
        host_id: Option<String>,
        /// Revoke one certificate by serial (hex, as `openssl x509 -noout -serial` prints it).
        #[arg(long, value_name = "HEX")]
        serial: Option<String>,
    },
    /// Operators of the collector (people, not agents): client certificates with a role.
    Operator {
        #[command(subcommand)]
        command: OperatorCommand,
    },
    /// Receive evidence (agents over HTTPS, devices over syslog) until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Remote snapshots and legal holds: open an incident, follow it, release it.
    Incident {
        #[command(subcommand)]
        command: Box<IncidentCommand>,
    },
}

/// Where the collector keeps its records: the same configuration file and
/// flags as `serve` (only these matter here).
#[derive(Args, Clone)]
struct SiteArgs {
    /// The collector's TOML configuration file (as for `serve`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The collector's state directory [default: /var/lib/custody-collector].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The CA directory (for --all: every host enrolled with it).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// The collector's backing store (release lifts holds there).
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    store: Option<String>,
    /// Responsibility level A|B|C|D|E, as for `serve` (retention of the custody events written).
    #[arg(long, value_name = "LEVEL")]
    level: Option<String>,
    /// Months to keep every object, as for `serve`.
    #[arg(long, value_name = "N")]
    retention_months: Option<u32>,
    /// S3 store: endpoint URL of an S3-compatible server [default: AWS].
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 store: region [default: from AWS_REGION or the AWS profile].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// S3 store: path-style addressing [default: true with --s3-endpoint].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    s3_path_style: Option<bool>,
}

/// Run the command on a collector's operators' API instead of its state
/// directory (from anywhere, as the operator of the certificate).
#[derive(Args)]
struct ApiArgs {
    /// The operators' API, https://COLLECTOR:PORT (its --api-listen).
    #[arg(long, value_name = "URL", requires = "operator_dir")]
    url: Option<String>,
    /// The directory `operator add --out` wrote (ca.pem, operator.pem, operator.key).
    #[arg(long, value_name = "DIR", requires = "url")]
    operator_dir: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> anyhow::Result<Option<custody_collector::api::client::ApiClient>> {
        match (&self.url, &self.operator_dir) {
            (Some(url), Some(dir)) => Ok(Some(custody_collector::api::client::ApiClient::new(
                url, dir,
            )?)),
            _ => Ok(None),
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(f)
}

#[derive(Subcommand)]
enum IncidentCommand {
    /// Ask agents for a snapshot: each named agent connected to this collector starts within 10 s.
    Open {
        /// Incident id (1-64 of A-Z a-z 0-9 . _ -).
        #[arg(long, value_name = "ID")]
        id: String,
        /// Hosts to snapshot, comma-separated.
        #[arg(
            long,
            value_name = "H1,H2",
            value_delimiter = ',',
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        hosts: Vec<String>,
        /// Every host enrolled (with --ca-dir) or seen by this collector.
        #[arg(long)]
        all: bool,
        /// Who is opening it (recorded); with --url, the certificate's operator.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "url",
            conflicts_with = "url"
        )]
        operator: Option<String>,
        /// Why (recorded, and written into each bundle's custody records).
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[command(flatten)]
        site: SiteArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Each host's progress and result.
    Status {
        /// Incident id.
        id: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        site: SiteArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Lift the legal holds of an incident, recording who and why.
    Release {
        /// Incident id.
        id: String,
        /// Who is releasing it (recorded in a signed custody event); with
        /// --url, the certificate's operator.
        #[arg(
            long,
            value_name = "NAME",
            required_unless_present = "url",
            conflicts_with = "url"
        )]
        operator: Option<String>,
        /// Why (recorded).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        #[command(flatten)]
        site: SiteArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
}

#[derive(Subcommand)]
enum OperatorCommand {
    /// Issue an operator's client certificate (writes ca.pem, operator.pem, operator.key).
    Add {
        /// The CA directory made by `ca init`.
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// The operator's name (1-64 of A-Z a-z 0-9 . _ -), shown in custody events.
        name: String,
        /// What the operator may do.
        #[arg(long, value_enum)]
        role: custody_collector::operators::Role,
        /// Where to write the files (created; must not hold them yet).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// List the operators: name, role, serial, fingerprint, revoked or not.
    List {
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set an operator's password for browser logins on the operators' API
    /// (read from standard input, one line, at least 12 characters; stored
    /// as an argon2id hash).
    Passwd {
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        name: String,
    },
    /// Revoke every certificate of an operator; a running collector refuses them at once.
    Revoke {
        #[arg(long, value_name = "DIR")]
        ca_dir: PathBuf,
        name: String,
    },
}

fn operator(command: OperatorCommand) -> anyhow::Result<()> {
    use custody_collector::operators;
    match command {
        OperatorCommand::Add {
            ca_dir,
            name,
            role,
            out,
        } => {
            for f in operators::add(&ca_dir, &name, role, &out)? {
                println!("wrote {}", f.display());
            }
            println!("operator {name} ({}) added", role.as_str());
        }
        OperatorCommand::List { ca_dir, json } => {
            for l in operators::list(&ca_dir)? {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&l).context("encoding an operator")?
                    );
                } else {
                    println!(
                        "{}\t{}\tserial {}\tsha256 {}\t{}",
                        l.operator.name,
                        l.operator.role.as_str(),
                        l.operator.serial,
                        l.operator.fingerprint_sha256,
                        match &l.revoked {
                            Some(t) => format!("revoked {t}"),
                            None => "active".to_string(),
                        }
                    );
                }
            }
        }
        OperatorCommand::Passwd { ca_dir, name } => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            custody_collector::api::passwords::set(&ca_dir, &name, password)?;
            println!(
                "password set for operator {name} (argon2id hash in {})",
                ca_dir
                    .join(custody_collector::api::passwords::PASSWORDS_FILE)
                    .display()
            );
        }
        OperatorCommand::Revoke { ca_dir, name } => {
            let done = operators::revoke(&ca_dir, &name)?;
            if done.is_empty() {
                println!("operator {name}: already revoked; nothing to do");
            }
            for r in &done {
                println!(
                    "revoked operator {name} serial {} at {}",
                    r.serial, r.revoked
                );
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum CaCommand {
    /// Make a new CA and the collector's server certificate.
    Init {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// DNS name or IP address agents use to reach the collector; repeatable
        /// [default: localhost and 127.0.0.1].
        #[arg(long = "server-name", value_name = "NAME")]
        server_names: Vec<String>,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (flags override it).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Ingest address [default: 0.0.0.0:8443].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Plain-HTTP address of /healthz and /metrics [default: 127.0.0.1:9464].
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// The operators' HTTPS API (/api/v1; operator client certificates
    /// from --ca-dir) [default: off].
    #[arg(long, value_name = "ADDR")]
    api_listen: Option<String>,
    /// The CA directory made by `ca init` (agents over HTTPS; without it,
    /// syslog only).
    #[arg(long, value_name = "DIR")]
    ca_dir: Option<PathBuf>,
    /// Backing store: a directory or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    store: Option<String>,
    /// Where findings.jsonl is kept [default: /var/lib/custody-collector].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Responsibility level A|B|C|D|E [default: C].
    #[arg(long, value_name = "LEVEL")]
    level: Option<String>,
    /// Months to keep every object [default: 6].
    #[arg(long, value_name = "N")]
    retention_months: Option<u32>,
    /// Largest accepted object [default: 67108864].
    #[arg(long, value_name = "N")]
    max_body_bytes: Option<u64>,
    /// Agent connections served at once; at the limit the longest idle one is closed to make room (handshakes and clients without a usable certificate have max/8, at least 8, places of their own) [default: 512].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Upload bytes held in memory at once; beyond it 503 + Retry-After [default: 536870912].
    #[arg(long, value_name = "N")]
    max_inflight_bytes: Option<u64>,
    /// Seconds a connection may go without a request (or take to send one's headers), or an upload without a body byte (408), before it is closed [default: 30].
    #[arg(long, value_name = "N")]
    idle_timeout_s: Option<u64>,
    /// Seconds without an incident poll before the console shows a host yellow (quiet) [default: 300].
    #[arg(long, value_name = "N")]
    host_quiet_after_s: Option<u64>,
    /// Seconds without an incident poll before the console shows a host red (silent) [default: 3600].
    #[arg(long, value_name = "N")]
    host_silent_after_s: Option<u64>,
    /// Seconds between prunes of a filesystem store; 0 turns it off [default: 3600].
    #[arg(long, value_name = "N")]
    prune_interval_s: Option<u64>,
    /// S3 store: endpoint URL of an S3-compatible server [default: AWS].
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// S3 store: region [default: from AWS_REGION or the AWS profile].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// S3 store: path-style addressing [default: true with --s3-endpoint].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    s3_path_style: Option<bool>,
    /// S3 store: upload objects larger than this in parts [default: 16777216].
    #[arg(long, value_name = "N")]
    s3_multipart_threshold: Option<u64>,
    /// The collector's own host id: syslog device streams are stored under v1/<ID>/.
    #[arg(long, value_name = "ID")]
    host_id: Option<String>,
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
    /// PEM CA certificate(s): require syslog TLS clients to present a certificate it issued.
    #[arg(long, value_name = "FILE")]
    syslog_tls_client_ca: Option<PathBuf>,
    /// Device mapping file (TOML, [[device]] tables), tried after the config's rules.
    #[arg(long, value_name = "FILE")]
    devices: Option<PathBuf>,
    /// Syslog senders no device rule matches: accept (as unknown-<address>) or refuse.
    #[arg(long, value_name = "accept|refuse")]
    unknown_senders: Option<String>,
    /// Seconds between the syslog streams' signed digests [default: 60].
    #[arg(long, value_name = "SECS")]
    digest_interval_secs: Option<u64>,
}

fn absolute(p: PathBuf) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p)
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the working directory to resolve a relative path")?
            .join(p))
    }
}

fn read_devices(path: &PathBuf) -> anyhow::Result<RawDevicesFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--devices {}: cannot read", path.display()))?;
    toml::from_str(&text).with_context(|| format!("--devices {}: not valid", path.display()))
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let base = match &args.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let store = match args.store {
        Some(s) if !s.contains("://") => {
            Some(absolute(PathBuf::from(s))?.to_string_lossy().into_owned())
        }
        other => other,
    };
    let flags = RawConfig {
        listen: args.listen,
        metrics_listen: args.metrics_listen,
        api_listen: args.api_listen,
        ca_dir: args.ca_dir.map(absolute).transpose()?,
        store,
        state_dir: args.state_dir.map(absolute).transpose()?,
        level: args.level,
        retention_months: args.retention_months,
        max_body_bytes: args.max_body_bytes,
        max_connections: args.max_connections,
        max_inflight_bytes: args.max_inflight_bytes,
        idle_timeout_s: args.idle_timeout_s,
        host_quiet_after_s: args.host_quiet_after_s,
        host_silent_after_s: args.host_silent_after_s,
        prune_interval_s: args.prune_interval_s,
        s3_endpoint: args.s3_endpoint,
        s3_region: args.s3_region,
        s3_path_style: args.s3_path_style,
        s3_multipart_threshold: args.s3_multipart_threshold,
        host_id: args.host_id,
        syslog: Some(RawSyslog {
            udp: args.syslog_udp,
            tcp: args.syslog_tcp,
            tls: args.syslog_tls,
            tls_cert: args.syslog_tls_cert.map(absolute).transpose()?,
            tls_key: args.syslog_tls_key.map(absolute).transpose()?,
            tls_client_ca: args.syslog_tls_client_ca.map(absolute).transpose()?,
            unknown_senders: args.unknown_senders,
            digest_interval_secs: args.digest_interval_secs,
            ..RawSyslog::default()
        }),
        extra_devices: match &args.devices {
            Some(path) => read_devices(path)?.device,
            None => Vec::new(),
        },
        ..RawConfig::default()
    };
    let config = base.merge_flags(flags).check()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(custody_collector::server::run(config))
}

/// The configuration `serve` would use, from the file and these flags.
fn site_config(site: &SiteArgs) -> anyhow::Result<RawConfig> {
    let base = match &site.config {
        Some(path) => RawConfig::from_file(path)?,
        None => RawConfig::default(),
    };
    let store = match site.store.clone() {
        Some(s) if !s.contains("://") => {
            Some(absolute(PathBuf::from(s))?.to_string_lossy().into_owned())
        }
        other => other,
    };
    Ok(base.merge_flags(RawConfig {
        state_dir: site.state_dir.clone().map(absolute).transpose()?,
        ca_dir: site.ca_dir.clone().map(absolute).transpose()?,
        store,
        level: site.level.clone(),
        retention_months: site.retention_months,
        s3_endpoint: site.s3_endpoint.clone(),
        s3_region: site.s3_region.clone(),
        s3_path_style: site.s3_path_style,
        ..RawConfig::default()
    }))
}

fn state_dir_of(raw: &RawConfig) -> PathBuf {
    raw.state_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(custody_collector::config::DEFAULT_STATE_DIR))
}

fn incident(command: IncidentCommand) -> anyhow::Result<()> {
    use custody_collector::incident::commands::{self, Hosts};
    match command {
        IncidentCommand::Open {
            id,
            hosts,
            all,
            operator,
            reason,
            site,
            api,
        } => {
            if let Some(client) = api.client()? {
                let mut body = serde_json::json!({ "id": id, "reason": reason });
                if all {
                    body["all"] = true.into();
                } else {
                    body["hosts"] = hosts.into();
                }
                let v = block_on(client.post("/api/v1/incidents", &body))?;
                let named: Vec<String> = v["hosts"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .filter_map(|h| h.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "opened incident {id} for {} host(s): {} (as operator {})",
                    named.len(),
                    named.join(", "),
                    v["operator"].as_str().unwrap_or("?")
                );
                println!("follow with: custody-collector incident status {id} --url URL --operator-dir DIR");
                return Ok(());
            }
            let operator = operator.unwrap_or_default();
            let raw = site_config(&site)?;
            let which = if all {
                Hosts::All(raw.ca_dir.clone())
            } else {
                Hosts::Named(hosts)
            };
            let named = commands::open(&state_dir_of(&raw), &id, which, &operator, &reason)?;
            println!(
                "opened incident {id} for {} host(s): {}",
                named.len(),
                named.join(", ")
            );
            println!(
                "agents connected to this collector start their snapshot within 10 s; follow with: custody-collector incident status {id}"
            );
            Ok(())
        }
        IncidentCommand::Status {
            id,
            json,
            site,
            api,
        } => {
            let status = match api.client()? {
                Some(client) => {
                    let path = format!("/api/v1/incidents/{id}");
                    let v = block_on(client.get(&path))?;
                    serde_json::from_value(v).context("the API's incident status")?
                }
                None => commands::status(&state_dir_of(&site_config(&site)?), &id)?,
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).context("encoding the status")?
                );
            } else {
                print!("{}", commands::render(&status));
            }
            Ok(())
        }
        IncidentCommand::Release {
            id,
            operator,
            reason,
            site,
            api,
        } => {
            if let Some(client) = api.client()? {
                let path = format!("/api/v1/incidents/{id}/release");
                let v = block_on(client.post(&path, &serde_json::json!({ "reason": reason })))?;
                if v["status"] == "awaiting_approval" {
                    println!(
                        "release of incident {id} asked for by {}: a second operator must approve it (run the same command with their --operator-dir)",
                        v["requested_by"].as_str().unwrap_or("?")
                    );
                    return Ok(());
                }
                println!(
                    "released incident {id} (asked for by {}, approved by {}): legal hold lifted on {} object(s) in {} bundle(s)",
                    v["operator"].as_str().unwrap_or("?"),
                    v["approved_by"].as_str().unwrap_or("?"),
                    v["objects_released"],
                    v["bundles"].as_array().map_or(0, |b| b.len())
                );
                return Ok(());
            }
            let operator = operator.unwrap_or_default();
            let raw = site_config(&site)?;
            // The store and retention exactly as `serve` reads them; a
            // configuration `serve` would refuse is refused here too.
            let config = raw.check()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let release = runtime.block_on(async {
                let store = custody_collector::server::open_store(&config.store).await?;
                commands::release(
                    &config.state_dir,
                    store.as_ref(),
                    &config.retention,
                    &id,
                    &operator,
                    None,
                    reason.as_deref(),
                )
                .await
            })?;
            println!(
                "released incident {id}: legal hold lifted on {} object(s) in {} bundle(s); custody event(s): {}",
                release.objects_released,
                release.bundles.len(),
                release
                    .bundles
                    .iter()
                    .map(|b| b.event_key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if !release.kept_for_other_incidents.is_empty() {
                println!(
                    "kept under hold because another open incident references them: {}",
                    release.kept_for_other_incidents.join(", ")
                );
            }
            Ok(())
        }
    }
}

fn revoke(
    ca_dir: &std::path::Path,
    host_id: Option<String>,
    serial: Option<String>,
) -> anyhow::Result<()> {
    use custody_collector::revocation::{revoke, Target};
    let host = host_id
        .map(|h| HostId::new(h.clone()).map_err(|e| anyhow::anyhow!("--host-id {h:?} {}", e.why)))
        .transpose()?;
    let target = match (&host, &serial) {
        (Some(h), _) => Target::Host(h),
        (None, Some(s)) => Target::Serial(s),
        (None, None) => anyhow::bail!("give --host-id or --serial"),
    };
    let done = revoke(ca_dir, target)?;
    if done.is_empty() {
        println!("already revoked; nothing to do");
    }
    for r in &done {
        println!(
            "revoked serial {} (host {}) at {}",
            r.serial,
            r.host.as_deref().unwrap_or("unknown"),
            r.revoked
        );
    }
    if !done.is_empty() {
        println!(
            "a running collector refuses it from its next request on; enroll the host again for a new certificate"
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CUSTODY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let result = match cli.command {
        Command::Ca {
            command: CaCommand::Init { dir, server_names },
        } => custody_collector::pki::ca_init(&dir, &server_names).map(|files| {
            for f in files {
                println!("wrote {}", f.display());
            }
            println!("next: custody-collector enroll --ca-dir {} --host-id HOST --out DIR", dir.display());
        }),
        Command::Enroll { ca_dir, host_id, out } => HostId::new(host_id.clone())
            .map_err(|e| anyhow::anyhow!("--host-id {host_id:?} {}", e.why))
            .and_then(|host| custody_collector::pki::enroll(&ca_dir, &host, &out))
            .map(|files| {
                for f in files {
                    println!("wrote {}", f.display());
                }
                println!(
                    "copy {} to the agent and set store = \"https://COLLECTOR:PORT\" and enrollment_dir to it",
                    out.display()
                );
            }),
        Command::Revoke {
            ca_dir,
            host_id,
            serial,
        } => revoke(&ca_dir, host_id, serial),
        Command::Operator { command } => operator(command),
        Command::Serve(args) => serve(*args),
        Command::Incident { command } => incident(*command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Bad flags or configuration and failures at run time alike: 1
        // (clap's usage errors exit 2 before this).
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
