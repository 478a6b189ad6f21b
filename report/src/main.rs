//! custody-report coverage --store DIR|s3://BUCKET/PREFIX [--level A..E]
//!     [--gap-threshold 1h] [--now RFC3339] [--format json|csv|html]
//!     [--lang zh-TW|en] [--tz Asia/Taipei] [--out FILE]
//!     [--allowed-signers FILE] [--include-unverified]
//! custody-report findings (--store DIR|s3://… --from T --to T | --bundle FILE.tar [--from T] [--to T])
//!     [--rules FILE] [--host-tz ZONE] [--format json|csv|html] [--lang zh-TW|en] [--out FILE]
//!
//! Exit status: 0 the report was written and everything it used verified;
//! 1 the report was written but some input did not verify (it is marked
//! in the report and kept out of the answers unless --include-unverified);
//! 2 the report could not be made.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use custody_evidence::retention::Level;
use custody_evidence::sign::parse_allowed_signers;
use custody_report::coverage::{self, CoverageOptions};
use custody_report::i18n::Lang;
use custody_report::input::{read_store_records, S3Options};
use custody_report::localtime::Zone;
use custody_report::render;

#[derive(Parser, Debug)]
#[command(
    name = "custody-report",
    version,
    about = "Reports over custody stores for auditors and the incident report form"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Per host × category: earliest and latest preserved time, bytes, gaps, retain-until against
    /// the level's rule, and the form's bucket (< 1 month, 1–6 months, ≥ 6 months). Reads records
    /// and digests only (payloads not read) and verifies them.
    Coverage(CoverageArgs),
    /// Detections over the preserved raw bytes of a time window (failed-logon bursts, password
    /// spraying, off-hours and external logons, new accounts, privilege grants, webshell POSTs,
    /// large downloads, scanner user agents), each citing the exact bytes it rests on; rules from
    /// a TOML file (report/RULES.md). Reads and verifies every payload it uses.
    Findings(FindingsArgs),
    /// Every parsed event of the window across hosts and sources, merged and time-sorted, each
    /// with its evidence reference: CSV that Timesketch imports (message, datetime,
    /// timestamp_desc, …) or JSON Lines. The same input, verification and parsers as findings.
    Timeline(TimelineArgs),
}

/// Where the evidence is and which of it: shared by `findings` and `timeline`.
#[derive(clap::Args, Debug)]
struct InputArgs {
    /// A filesystem store (an agent's or the collector's --store directory) or s3://BUCKET/PREFIX.
    #[arg(
        long,
        value_name = "DIR|s3://BUCKET/PREFIX",
        required_unless_present = "bundle",
        conflicts_with = "bundle"
    )]
    store: Option<String>,
    /// An evidence bundle (a snapshot's .tar), verified as custody-verify bundle does; its log copies are read.
    #[arg(long, value_name = "FILE.tar")]
    bundle: Option<PathBuf>,
    /// Start of the window (RFC 3339) [with --bundle: the beginning; with --incident: --lookback before it was opened].
    #[arg(long, required_unless_present_any = ["bundle", "incident"])]
    from: Option<String>,
    /// End of the window (RFC 3339) [with --bundle: no end; with --incident: now].
    #[arg(long, required_unless_present_any = ["bundle", "incident"])]
    to: Option<String>,
    /// Scope to an incident: its hosts and window (from the collector's record, --collector-state), or with --bundle, check the bundle is its evidence.
    #[arg(long, value_name = "ID")]
    incident: Option<String>,
    /// The collector's state directory (its state_dir), where --incident's record is.
    #[arg(long, value_name = "DIR")]
    collector_state: Option<PathBuf>,
    /// With --incident: how far before the incident was opened the window starts (90s, 15m, 1h, 2d).
    #[arg(long, default_value = "7d")]
    lookback: String,
    /// Zone of syslog timestamps, which carry none (tz database name).
    #[arg(long, default_value = "Asia/Taipei")]
    host_tz: String,
    /// OpenSSH allowed_signers file with the hosts' keys (principal = host id), recorded independently of the store.
    #[arg(long)]
    allowed_signers: Option<PathBuf>,
    /// Use lines of segments that do not verify (their findings are marked verified: false).
    #[arg(long)]
    include_unverified: bool,
    /// S3 store: endpoint URL (MinIO, Ceph, a test server).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 store: region.
    #[arg(long)]
    s3_region: Option<String>,
    /// S3 store: path-style addressing [default: true with --s3-endpoint].
    #[arg(long)]
    s3_path_style: Option<bool>,
}

#[derive(clap::Args, Debug)]
struct FindingsArgs {
    #[command(flatten)]
    input: InputArgs,
    /// A rules file merged over the embedded default (report/RULES.md).
    #[arg(long)]
    rules: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// CSV only: the findings (one row each) or the abnormal-IP table.
    #[arg(long, value_enum, default_value_t = Table::Findings)]
    table: Table,
    /// Language of the HTML report: zh-TW or en.
    #[arg(long, default_value = "zh-TW")]
    lang: String,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct TimelineArgs {
    #[command(flatten)]
    input: InputArgs,
    /// csv (the columns Timesketch imports: message, datetime, timestamp_desc, …) or jsonl.
    #[arg(long, value_enum, default_value_t = TimelineFormat::Csv)]
    format: TimelineFormat,
    /// Zone of the local_time column, for people (tz database name); datetime stays UTC.
    #[arg(long, default_value = "Asia/Taipei")]
    tz: String,
    /// Write the timeline here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TimelineFormat {
    Csv,
    Jsonl,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Table {
    Findings,
    Ips,
}

#[derive(clap::Args, Debug)]
struct CoverageArgs {
    /// A filesystem store (an agent's or the collector's --store directory) or s3://BUCKET/PREFIX.
    #[arg(long, value_name = "DIR|s3://BUCKET/PREFIX")]
    store: String,
    /// Responsibility level (資通安全責任等級): A, B and C are held to six months.
    #[arg(long, default_value = "A")]
    level: String,
    /// A pause longer than this in a normally active stream, or a digest window this long, is a gap (90s, 15m, 1h, 2d).
    #[arg(long, default_value = "1h")]
    gap_threshold: String,
    /// The time the report is as of (RFC 3339) [default: now].
    #[arg(long)]
    now: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Language of the HTML report: zh-TW or en.
    #[arg(long, default_value = "zh-TW")]
    lang: String,
    /// Time zone for the HTML's local times and days (tz database name).
    #[arg(long, default_value = "Asia/Taipei")]
    tz: String,
    /// Write the report here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
    /// OpenSSH allowed_signers file with the hosts' keys (principal = host id), recorded independently of the store.
    #[arg(long)]
    allowed_signers: Option<PathBuf>,
    /// Count streams that do not verify in the buckets and form answers (they stay marked).
    #[arg(long)]
    include_unverified: bool,
    /// S3 store: endpoint URL (MinIO, Ceph, a test server).
    #[arg(long)]
    s3_endpoint: Option<String>,
    /// S3 store: region.
    #[arg(long)]
    s3_region: Option<String>,
    /// S3 store: path-style addressing [default: true with --s3-endpoint].
    #[arg(long)]
    s3_path_style: Option<bool>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Csv,
    Html,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Coverage(a) => run_coverage(a),
        Command::Findings(a) => run_findings(a),
        Command::Timeline(a) => run_timeline(a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("custody-report: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// `--allowed-signers FILE` → (principal, key line) pairs for `ns`.
fn load_signers(path: Option<&PathBuf>, ns: &str) -> Result<Option<Vec<(String, String)>>> {
    let Some(p) = path else { return Ok(None) };
    let text = std::fs::read_to_string(p)
        .with_context(|| format!("--allowed-signers {}: cannot read it", p.display()))?;
    let entries = parse_allowed_signers(&text)
        .map_err(|e| anyhow::anyhow!("--allowed-signers {}: {e}", p.display()))?;
    let signers: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e.allows_namespace(ns))
        .flat_map(|e| {
            e.principals
                .iter()
                .map(|p| (p.clone(), e.public_key_line.clone()))
        })
        .collect();
    if signers.is_empty() {
        bail!(
            "--allowed-signers {}: no entry allows namespace {ns:?}; add lines like `web01 namespaces=\"{ns}\" ssh-ed25519 AAAA…` (principal = host id)",
            p.display()
        );
    }
    Ok(Some(signers))
}

fn parse_time(flag: &str, t: &str) -> Result<time::OffsetDateTime> {
    custody_evidence::timefmt::parse_utc(t).map_err(|e| {
        anyhow::anyhow!("{flag} {t:?}: not an RFC 3339 time ({e}); e.g. 2026-12-01T00:00:00Z")
    })
}

/// Checked input flags and rules → the options both `findings` and
/// `timeline` run with.
fn findings_options(
    a: &InputArgs,
    rules: Option<&PathBuf>,
    keep_all: bool,
) -> Result<custody_report::findings::FindingsOptions> {
    // An incident on a store: its hosts, and a window that starts
    // --lookback before it was opened.
    let scope = match (&a.incident, &a.collector_state, &a.bundle) {
        (Some(id), Some(state), None) => Some(
            custody_report::incident::read(state, id).map_err(anyhow::Error::msg)?,
        ),
        (Some(_), None, None) => bail!(
            "--incident with --store needs --collector-state DIR (the collector's state_dir, where custody-collector incident open wrote the record)"
        ),
        _ => None,
    };
    let lookback = custody_report::duration::parse_duration(&a.lookback)
        .map_err(|e| anyhow::anyhow!("--lookback {e}"))?;
    let from = match (&a.from, &scope) {
        (Some(t), _) => parse_time("--from", t)?,
        (None, Some(s)) => s.opened - lookback,
        (None, None) => time::OffsetDateTime::UNIX_EPOCH,
    };
    let to = match (&a.to, &scope) {
        (Some(t), _) => parse_time("--to", t)?,
        (None, Some(_)) => time::OffsetDateTime::now_utc(),
        (None, None) => time::macros::datetime!(9999-12-31 23:59:59 UTC),
    };
    let fmt = custody_evidence::timefmt::format_utc;
    let scope_note = scope.as_ref().map(|s| {
        format!(
            "incident {} (opened {} by {}: {}): hosts {}; window {} to {}",
            s.id,
            fmt(s.opened),
            s.operator,
            s.reason,
            s.hosts.iter().cloned().collect::<Vec<_>>().join(", "),
            fmt(from),
            fmt(to)
        )
    });
    if to < from {
        bail!(
            "--from {} is after --to {}: give the window's start first",
            a.from.as_deref().unwrap_or(""),
            a.to.as_deref().unwrap_or("")
        );
    }
    let extra = match rules {
        Some(p) => Some((
            p.display().to_string(),
            std::fs::read_to_string(p)
                .with_context(|| format!("--rules {}: cannot read it", p.display()))?,
        )),
        None => None,
    };
    let rules = custody_report::findings::rules::load(
        extra.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
    )
    .map_err(anyhow::Error::msg)?;
    // A bundle is signed in its own namespace, a store's digests in theirs.
    let namespace = if a.bundle.is_some() {
        custody_evidence::bundle::BUNDLE_NAMESPACE
    } else {
        custody_evidence::digest::DIGEST_NAMESPACE
    };
    Ok(custody_report::findings::FindingsOptions {
        store: match (&a.store, &a.bundle) {
            (Some(s), _) => s.clone(),
            (None, Some(b)) => b.display().to_string(),
            (None, None) => bail!("give --store DIR|s3://BUCKET/PREFIX or --bundle FILE.tar"),
        },
        bundle: a.bundle.clone(),
        s3: S3Options {
            endpoint: a.s3_endpoint.clone(),
            region: a.s3_region.clone(),
            path_style: a.s3_path_style,
        },
        trusted_signers: load_signers(a.allowed_signers.as_ref(), namespace)?,
        from,
        to,
        host_tz: a.host_tz.clone(),
        rules,
        include_unverified: a.include_unverified,
        keep_all,
        hosts: scope.map(|s| s.hosts),
        incident: a.incident.clone(),
        scope_note,
    })
}

/// Where `--out` points, or standard output, buffered; and its name for errors.
fn sink_for(out: Option<&PathBuf>) -> Result<(Box<dyn Write>, String)> {
    // Reports run to tens of MB: 1 MiB per write, not 8 KiB.
    const BUF: usize = 1 << 20;
    Ok(match out {
        Some(path) => (
            Box::new(std::io::BufWriter::with_capacity(
                BUF,
                std::fs::File::create(path).with_context(|| {
                    format!("--out {}: cannot create the report file", path.display())
                })?,
            )),
            format!("--out {}", path.display()),
        ),
        None => (
            Box::new(std::io::BufWriter::with_capacity(
                BUF,
                std::io::stdout().lock(),
            )),
            "standard output".to_string(),
        ),
    })
}

/// Every parsed event in time order; same exit status as findings.
fn run_timeline(a: TimelineArgs) -> Result<bool> {
    let zone = Zone::get(&a.tz).map_err(anyhow::Error::msg)?;
    let opts = findings_options(&a.input, None, true)?;
    let (report, events, segs) =
        custody_report::findings::run_with_events(&opts).map_err(anyhow::Error::msg)?;
    let (mut sink, where_to) = sink_for(a.out.as_ref())?;
    let format = match a.format {
        TimelineFormat::Csv => custody_report::timeline::Format::Csv,
        TimelineFormat::Jsonl => custody_report::timeline::Format::Jsonl,
    };
    custody_report::timeline::write(&mut sink, format, &events, &segs, &zone)
        .and_then(|()| sink.flush())
        .with_context(|| format!("writing the timeline to {where_to}"))?;
    for n in &report.notes {
        if n.kind == "unverified_input" || n.kind == "bundle" {
            eprintln!("custody-report: {}", n.message);
        }
    }
    Ok(report.unverified_segments.is_empty())
}

/// Same exit status as coverage: 0 all verified, 1 some input did not.
fn run_findings(a: FindingsArgs) -> Result<bool> {
    let lang = Lang::parse(&a.lang).map_err(anyhow::Error::msg)?;
    let opts = findings_options(&a.input, a.rules.as_ref(), false)?;
    let report = custody_report::findings::run(&opts).map_err(anyhow::Error::msg)?;
    // JSON is written as it is encoded (the report can cite tens of
    // thousands of lines; no second copy of it in memory).
    let (mut sink, where_to) = sink_for(a.out.as_ref())?;
    match (a.format, a.table) {
        (Format::Json, _) => {
            serde_json::to_writer_pretty(&mut sink, &report)
                .with_context(|| format!("writing the JSON report to {where_to}"))?;
            sink.write_all(b"\n")
                .with_context(|| format!("writing the report to {where_to}"))?;
        }
        (format, table) => {
            let text = match (format, table) {
                (Format::Csv, Table::Ips) => render::findings_csv::ips(&report),
                (Format::Csv, _) => render::findings_csv::findings(&report),
                _ => render::findings_html::render(&report, lang).map_err(anyhow::Error::msg)?,
            };
            sink.write_all(text.as_bytes())
                .with_context(|| format!("writing the report to {where_to}"))?;
        }
    }
    sink.flush()
        .with_context(|| format!("writing the report to {where_to}"))?;
    let verified = report.unverified_segments.is_empty();
    // The process ends now: its memory goes back at once, not string by
    // string (a report can cite tens of thousands of lines).
    std::mem::forget(report);
    Ok(verified)
}

/// Raw flags → checked options; only this conversion fails on bad flags.
fn run_coverage(a: CoverageArgs) -> Result<bool> {
    let level: Level = a
        .level
        .parse()
        .map_err(|e| anyhow::anyhow!("--level: {e}"))?;
    let gap_threshold = custody_report::duration::parse_duration(&a.gap_threshold)
        .map_err(|e| anyhow::anyhow!("--gap-threshold {e}"))?;
    let now = match &a.now {
        Some(t) => custody_evidence::timefmt::parse_utc(t).map_err(|e| {
            anyhow::anyhow!("--now {t:?}: not an RFC 3339 time ({e}); e.g. 2026-12-01T00:00:00Z")
        })?,
        None => custody_evidence::timefmt::now_utc_micros(),
    };
    let lang = Lang::parse(&a.lang).map_err(anyhow::Error::msg)?;
    let zone = Zone::get(&a.tz).map_err(anyhow::Error::msg)?;
    let trusted = load_signers(
        a.allowed_signers.as_ref(),
        custody_evidence::digest::DIGEST_NAMESPACE,
    )?;
    let s3 = S3Options {
        endpoint: a.s3_endpoint,
        region: a.s3_region,
        path_style: a.s3_path_style,
    };
    let input = read_store_records(&a.store, &s3, trusted.clone())?;
    let opts = CoverageOptions {
        level,
        gap_threshold,
        now,
        include_unverified: a.include_unverified,
    };
    let cov = coverage::compute(&input, &opts, trusted.is_some());
    let text = match a.format {
        Format::Json => render::json::render(&cov).context("encoding the JSON report")?,
        Format::Csv => render::csv::render(&cov),
        Format::Html => {
            let heat = render::heatmap::build(&input, &cov, &zone);
            render::html::render(&cov, &heat, lang, &zone).map_err(anyhow::Error::msg)?
        }
    };
    match &a.out {
        Some(path) => std::fs::write(path, text.as_bytes())
            .with_context(|| format!("--out {}: cannot write the report", path.display()))?,
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .context("writing the report to standard output")?,
    }
    let all_verified = cov
        .hosts
        .iter()
        .all(|h| h.verified && h.streams.iter().all(|s| s.verified));
    Ok(all_verified)
}
