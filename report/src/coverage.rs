//! `coverage`: per host × stream × category, what the store holds and where
//! it is missing, computed from segment records and digest bodies only
//! (no payloads), and the incident form's retention bucket (REQUIREMENTS.md
//! §4: < 1 month, 1–6 months, ≥ 6 months).
//!
//! The schema of [`Coverage`] is `custody-report/coverage/v1`, documented
//! in `report/SCHEMA.md`; every field is always present (`null` when there
//! is no value), so a consumer can rely on the shape.

use std::collections::{BTreeMap, BTreeSet};

use custody_evidence::retention::{Level, RetentionPolicy};
use custody_evidence::timefmt::serde_utc;
use custody_evidence::verify::{Finding, FindingKind, Severity};
use serde::Serialize;
use time::{Duration, OffsetDateTime};

use crate::input::{DigestSummary, Input, SegmentSummary, SourceKind};

/// The JSON schema name and version of [`Coverage`].
pub const SCHEMA: &str = "custody-report/coverage/v1";

/// REQUIREMENTS.md §1, the rule a level A–C store is held to.
pub const SIX_MONTH_RULE: &str = "REQUIREMENTS.md §1 (Taipei §24, Kaohsiung §壹拾.一): keep the most recent six months of logs; levels A, B and C must keep them (A: every system and every ICT and protection device; B: every core system and the devices connected to it; C: every core system)";

/// How many distinct source names a stream lists before it only counts.
const MAX_SOURCES_LISTED: usize = 5;

/// The incident form's retention choices (REQUIREMENTS.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Bucket {
    #[serde(rename = "under_1_month")]
    UnderOneMonth,
    #[serde(rename = "1_to_6_months")]
    OneToSixMonths,
    #[serde(rename = "6_months_or_more")]
    SixMonthsOrMore,
}

impl Bucket {
    /// The JSON and CSV spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            Bucket::UnderOneMonth => "under_1_month",
            Bucket::OneToSixMonths => "1_to_6_months",
            Bucket::SixMonthsOrMore => "6_months_or_more",
        }
    }
}

/// The bucket of evidence preserved since `earliest`, at `now`: calendar
/// months as in the retention rule (FORMAT.md §7), so "six months" here is
/// exactly what `retain_until` promises and what an auditor's calendar says.
pub fn bucket_for(earliest: OffsetDateTime, now: OffsetDateTime) -> Bucket {
    if months_after(earliest, 6) <= now {
        Bucket::SixMonthsOrMore
    } else if months_after(earliest, 1) <= now {
        Bucket::OneToSixMonths
    } else {
        Bucket::UnderOneMonth
    }
}

/// `t` plus `months` calendar months, by the retention rule's own arithmetic.
fn months_after(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    // Level D accepts any month count from 1; both values used here are valid.
    match RetentionPolicy::new(Level::D, Some(months)) {
        Ok(p) => p.retain_until(t),
        Err(_) => t + Duration::days(31 * i64::from(months)),
    }
}

/// The report's categories: the four kinds of log of REQUIREMENTS.md §1,
/// and syslog device streams (FORMAT.md §13) as "firewall / protection
/// device", whatever category their records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportCategory {
    Os,
    Web,
    App,
    Logon,
    Device,
}

impl ReportCategory {
    pub const ALL: [ReportCategory; 5] = [
        ReportCategory::Os,
        ReportCategory::Web,
        ReportCategory::App,
        ReportCategory::Logon,
        ReportCategory::Device,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ReportCategory::Os => "os",
            ReportCategory::Web => "web",
            ReportCategory::App => "app",
            ReportCategory::Logon => "logon",
            ReportCategory::Device => "device",
        }
    }

    /// Which of the form's three questions this category answers.
    pub fn form_group(&self) -> FormGroup {
        match self {
            ReportCategory::Web => FormGroup::WebLogs,
            ReportCategory::Device => FormGroup::FirewallLogs,
            _ => FormGroup::HostEventLogs,
        }
    }

    fn of(segment: &SegmentSummary) -> ReportCategory {
        if segment.source_kind == SourceKind::Syslog {
            return ReportCategory::Device;
        }
        match segment.category.as_str() {
            "web" => ReportCategory::Web,
            "app" => ReportCategory::App,
            "logon" => ReportCategory::Logon,
            _ => ReportCategory::Os,
        }
    }
}

/// The form's three retention questions (REQUIREMENTS.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormGroup {
    HostEventLogs,
    FirewallLogs,
    WebLogs,
}

impl FormGroup {
    pub const ALL: [FormGroup; 3] = [
        FormGroup::HostEventLogs,
        FormGroup::FirewallLogs,
        FormGroup::WebLogs,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            FormGroup::HostEventLogs => "host_event_logs",
            FormGroup::FirewallLogs => "firewall_logs",
            FormGroup::WebLogs => "web_logs",
        }
    }
}

/// What a coverage run is asked.
#[derive(Debug, Clone)]
pub struct CoverageOptions {
    pub level: Level,
    /// A pause longer than this, in a stream that is normally more active,
    /// is a gap; so is a digest window this long (the agent was down).
    pub gap_threshold: Duration,
    pub now: OffsetDateTime,
    /// Count streams that did not verify in the buckets and form answers.
    pub include_unverified: bool,
}

/// The whole report (`custody-report/coverage/v1`).
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    pub schema: &'static str,
    pub store: String,
    #[serde(with = "serde_utc")]
    pub now: OffsetDateTime,
    pub level: Level,
    pub gap_threshold_seconds: i64,
    pub include_unverified: bool,
    pub rule: Rule,
    pub counted: Counted,
    pub verification: Verification,
    pub hosts: Vec<HostCoverage>,
    pub flags: Vec<Flag>,
    pub form: Vec<FormAnswer>,
}

/// The retention rule applied, in the words of REQUIREMENTS.md §1.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    pub six_months_required: bool,
    pub text: &'static str,
}

/// What the figures count, said once so nobody reads more into them.
#[derive(Debug, Clone, Serialize)]
pub struct Counted {
    /// Segment records carry no line counts; counting lines needs the
    /// payloads, which coverage does not read. Always `false` in v1.
    pub lines: bool,
    pub bytes: &'static str,
    pub times: &'static str,
}

/// What was checked, and what was not.
#[derive(Debug, Clone, Serialize)]
pub struct Verification {
    /// Always `false` for coverage: "payloads not read".
    pub payloads_read: bool,
    pub checked: Vec<&'static str>,
    pub not_checked: Vec<&'static str>,
    /// `published_in_store` or `allowed_signers`.
    pub trusted_keys: &'static str,
    pub objects_listed: u64,
    pub segments: u64,
    pub digests: u64,
    pub errors: u64,
    pub warnings: u64,
    /// Every error and warning of the verifier, as it reported them.
    pub findings: Vec<FindingOut>,
}

/// One finding of `custody_evidence::verify`, as in `custody-verify --json`.
#[derive(Debug, Clone, Serialize)]
pub struct FindingOut {
    pub severity: &'static str,
    pub kind: String,
    pub host: Option<String>,
    pub stream: Option<String>,
    pub seq: Option<u64>,
    pub object: Option<String>,
    pub expected: Option<String>,
    pub found: Option<String>,
    pub message: String,
}

impl From<&Finding> for FindingOut {
    fn from(f: &Finding) -> Self {
        FindingOut {
            severity: match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "info",
            },
            kind: f.kind.name(),
            host: f.host.clone(),
            stream: f.stream.clone(),
            seq: f.seq,
            object: f.object.clone(),
            expected: f.expected.clone(),
            found: f.found.clone(),
            message: f.message.clone(),
        }
    }
}

/// One host of the store (an agent, or a collector with device streams).
#[derive(Debug, Clone, Serialize)]
pub struct HostCoverage {
    pub host: String,
    /// No error finding names the host without naming a stream (digest
    /// chain, signatures, keys).
    pub verified: bool,
    pub problems: Vec<String>,
    pub digests: DigestCoverage,
    /// Host-wide gaps: digests missing, the agent down.
    pub gaps: Vec<Gap>,
    pub categories: Vec<CategoryCoverage>,
    pub streams: Vec<StreamCoverage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DigestCoverage {
    pub count: u64,
    #[serde(with = "opt_utc")]
    pub first_window_start: Option<OffsetDateTime>,
    #[serde(with = "opt_utc")]
    pub last_window_end: Option<OffsetDateTime>,
    /// Distinct agent runs (a restart is a new one).
    pub agent_runs: u64,
}

/// One category of one host: its streams taken together.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryCoverage {
    pub category: ReportCategory,
    pub form_group: FormGroup,
    pub streams: Vec<String>,
    /// Every stream of the category verified.
    pub verified: bool,
    /// Streams counted in the figures below (verified ones, or all with
    /// `--include-unverified`).
    pub streams_counted: u64,
    #[serde(with = "opt_utc")]
    pub first_preserved: Option<OffsetDateTime>,
    #[serde(with = "opt_utc")]
    pub last_preserved: Option<OffsetDateTime>,
    pub segments: u64,
    pub bytes: u64,
    pub bucket: Option<Bucket>,
    #[serde(with = "opt_utc")]
    pub retain_until_earliest: Option<OffsetDateTime>,
    pub gaps: u64,
    pub flagged: bool,
}

/// One stream (one hash chain).
#[derive(Debug, Clone, Serialize)]
pub struct StreamCoverage {
    pub stream: String,
    pub category: ReportCategory,
    /// The `category` the records carry.
    pub record_category: String,
    pub source_kind: SourceKind,
    /// Up to five distinct source names (paths, journal, channel, device):
    /// text from the logged host, reproduced as recorded.
    pub sources: Vec<String>,
    pub sources_total: u64,
    /// No error finding names this stream or its host.
    pub verified: bool,
    /// Kinds of the error (and cursor-lost) findings naming the stream.
    pub problems: Vec<String>,
    #[serde(with = "opt_utc")]
    pub first_preserved: Option<OffsetDateTime>,
    #[serde(with = "opt_utc")]
    pub last_preserved: Option<OffsetDateTime>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub segments: u64,
    /// Raw (decompressed) bytes, from the records' `raw_len`.
    pub bytes: u64,
    /// Always `null` in v1: records carry no line counts.
    pub lines: Option<u64>,
    #[serde(with = "opt_utc")]
    pub retain_until_earliest: Option<OffsetDateTime>,
    #[serde(with = "opt_utc")]
    pub retain_until_latest: Option<OffsetDateTime>,
    /// Segments whose `retain_until` is earlier than the level's rule
    /// requires for their time (levels A–C only; 0 otherwise).
    pub retain_short_segments: u64,
    pub bucket: Option<Bucket>,
    /// At least half the pauses between segments are within the threshold,
    /// so a longer pause is unusual for this stream.
    pub normally_active: bool,
    /// The median pause between consecutive segments, seconds.
    pub median_pause_seconds: Option<i64>,
    pub gaps: Vec<Gap>,
}

/// Where evidence is missing or cannot be trusted, with the time span
/// around it where the records tell it.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    /// `chain_gap`, `chain_broken`, `chain_fork`, `segment_not_covered`,
    /// `journal_cursor_lost`, `quiet`, `digest_gap`, `agent_down`, or the
    /// verifier's finding kind for other damage to a segment.
    pub kind: String,
    #[serde(with = "opt_utc")]
    pub from: Option<OffsetDateTime>,
    #[serde(with = "opt_utc")]
    pub to: Option<OffsetDateTime>,
    pub seconds: Option<i64>,
    pub seq: Option<u64>,
    pub detail: String,
}

/// A host and category short of the rule at levels A–C.
#[derive(Debug, Clone, Serialize)]
pub struct Flag {
    pub host: String,
    pub category: ReportCategory,
    /// `under_six_months`, `retain_until_short` or `unverified`.
    pub reason: &'static str,
    pub detail: String,
    pub rule: &'static str,
}

/// The form's questions for one host (REQUIREMENTS.md §4), answered from
/// the counted streams: for each group the *shortest* bucket of its
/// categories present, so the answer never claims more than every
/// category keeps. `null`: nothing of that kind is kept (or verified).
#[derive(Debug, Clone, Serialize)]
pub struct FormAnswer {
    pub host: String,
    pub host_event_logs: Option<Bucket>,
    pub firewall_logs: Option<Bucket>,
    pub web_logs: Option<Bucket>,
}

impl FormAnswer {
    pub fn get(&self, g: FormGroup) -> Option<Bucket> {
        match g {
            FormGroup::HostEventLogs => self.host_event_logs,
            FormGroup::FirewallLogs => self.firewall_logs,
            FormGroup::WebLogs => self.web_logs,
        }
    }
}

mod opt_utc {
    use serde::Serializer;
    use time::OffsetDateTime;

    pub fn serialize<S: Serializer>(t: &Option<OffsetDateTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&custody_evidence::timefmt::format_utc(*t)),
            None => s.serialize_none(),
        }
    }
}

/// Computes the coverage report from a verified read of a store.
pub fn compute(input: &Input, opts: &CoverageOptions, trusted_keys_given: bool) -> Coverage {
    let report = &input.verification;
    let mut host_problems: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut stream_problems: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    let mut stream_findings: BTreeMap<(&str, &str), Vec<&Finding>> = BTreeMap::new();
    for f in &report.findings {
        let Some(host) = f.host.as_deref() else {
            continue;
        };
        let counts = f.severity == Severity::Error || f.kind == FindingKind::NoDigests;
        match f.stream.as_deref() {
            Some(stream) if counts || f.kind == FindingKind::JournalCursorLost => {
                stream_problems
                    .entry((host, stream))
                    .or_default()
                    .insert(f.kind.name());
                stream_findings.entry((host, stream)).or_default().push(f);
            }
            Some(_) => {}
            None if counts => {
                host_problems.entry(host).or_default().insert(f.kind.name());
            }
            None => {}
        }
    }

    // Segments per host and stream, in seq order. A web-root inventory is
    // not a log: keeping it says nothing about how long web logs are kept.
    let mut by_stream: BTreeMap<(&str, &str), Vec<&SegmentSummary>> = BTreeMap::new();
    for s in input
        .segments
        .iter()
        .filter(|s| s.source_kind != SourceKind::Inventory)
    {
        by_stream.entry((&s.host, &s.stream)).or_default().push(s);
    }
    let mut digests_by_host: BTreeMap<&str, Vec<&DigestSummary>> = BTreeMap::new();
    for d in &input.digests {
        digests_by_host.entry(&d.host).or_default().push(d);
    }
    let mut host_names: BTreeSet<&str> = by_stream.keys().map(|(h, _)| *h).collect();
    host_names.extend(digests_by_host.keys().copied());
    host_names.extend(host_problems.keys().copied());

    let mut hosts = Vec::new();
    let mut flags = Vec::new();
    let mut form = Vec::new();
    for host in host_names {
        let problems: Vec<String> = host_problems
            .get(host)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default();
        let host_ok = problems.is_empty();
        let mut digests: Vec<&DigestSummary> =
            digests_by_host.get(host).cloned().unwrap_or_default();
        digests.sort_by_key(|d| d.seq);
        digests.dedup_by_key(|d| d.seq);
        let host_gaps = digest_gaps(&digests, opts.gap_threshold);
        let mut streams = Vec::new();
        for ((_, stream), segs) in by_stream
            .range((host, "")..)
            .take_while(|((h, _), _)| *h == host)
        {
            let key = (host, *stream);
            let problems: Vec<String> = stream_problems
                .get(&key)
                .map(|p| {
                    p.iter()
                        .filter(|k| k.as_str() != "journal_cursor_lost")
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            let findings = stream_findings.get(&key).cloned().unwrap_or_default();
            streams.push(stream_coverage(
                stream,
                segs,
                &findings,
                host_ok && problems.is_empty(),
                problems,
                opts,
            ));
        }
        let categories = category_coverage(&streams, opts);
        for c in &categories {
            flags.extend(flags_for(host, c, &streams, opts));
        }
        form.push(form_answer(host, &categories));
        hosts.push(HostCoverage {
            host: host.to_string(),
            verified: host_ok,
            problems,
            digests: DigestCoverage {
                count: digests.len() as u64,
                first_window_start: digests.first().map(|d| d.window_start),
                last_window_end: digests.iter().map(|d| d.window_end).max(),
                agent_runs: digests
                    .iter()
                    .map(|d| d.agent_instance.as_str())
                    .collect::<BTreeSet<_>>()
                    .len() as u64,
            },
            gaps: host_gaps,
            categories,
            streams,
        });
    }

    let findings: Vec<FindingOut> = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .map(FindingOut::from)
        .collect();
    Coverage {
        schema: SCHEMA,
        store: input.store.clone(),
        now: opts.now,
        level: opts.level,
        gap_threshold_seconds: opts.gap_threshold.whole_seconds(),
        include_unverified: opts.include_unverified,
        rule: Rule {
            six_months_required: opts.level.six_months_required(),
            text: SIX_MONTH_RULE,
        },
        counted: Counted {
            lines: false,
            bytes: "raw (decompressed) bytes, from each record's raw_len",
            times: "first_read and last_read of the segment records (when the agent or collector read the bytes), UTC",
        },
        verification: Verification {
            payloads_read: input.payloads_read,
            checked: vec![
                "segment records (decoding, canonical encoding, names)",
                "hash chains (gaps, forks, prev_segment links)",
                "digest chains (gaps, forks, replays, windows)",
                "digest signatures (sshsig, namespace custody-digest)",
                "digest coverage of segments",
                "presence of every payload (from the listing)",
            ],
            not_checked: vec![
                "payloads not read: payload and raw SHA-256 not checked (run custody-verify store for those)",
            ],
            trusted_keys: if trusted_keys_given {
                "allowed_signers"
            } else {
                "published_in_store"
            },
            objects_listed: input.objects_listed,
            segments: report.segments,
            digests: report.digests,
            errors: report.count(Severity::Error) as u64,
            warnings: report.count(Severity::Warning) as u64,
            findings,
        },
        hosts,
        flags,
        form,
    }
}

fn stream_coverage(
    stream: &str,
    segs: &[&SegmentSummary],
    findings: &[&Finding],
    verified: bool,
    problems: Vec<String>,
    opts: &CoverageOptions,
) -> StreamCoverage {
    let mut segs: Vec<&SegmentSummary> = segs.to_vec();
    segs.sort_by_key(|s| s.seq);
    // A fork leaves two records at one seq; its finding says so, the
    // figures count the seq once.
    segs.dedup_by_key(|s| s.seq);
    let first = segs.first().copied();
    let category = first.map_or(ReportCategory::Os, ReportCategory::of);
    let mut sources: BTreeSet<&str> = BTreeSet::new();
    let mut bytes = 0u64;
    let mut retain_short = 0u64;
    let rule = opts
        .level
        .six_months_required()
        .then(|| RetentionPolicy::new(opts.level, None).ok())
        .flatten();
    for s in &segs {
        sources.insert(&s.source_label);
        bytes += s.raw_len;
        if let Some(rule) = &rule {
            // The agent and the collector derive retain_until from the
            // segment's first_read (agent/src/committer.rs), the earliest
            // time the bytes can be said to be written.
            if s.retain_until < rule.retain_until(s.first_read) {
                retain_short += 1;
            }
        }
    }
    let first_preserved = segs.iter().map(|s| s.first_read).min();
    let last_preserved = segs.iter().map(|s| s.last_read).max();

    let mut gaps = Vec::new();
    // Seqs missing (FORMAT.md §4): at the start, and between records.
    if let Some(f) = first {
        if f.seq > 0 {
            gaps.push(Gap {
                kind: "chain_gap".into(),
                from: None,
                to: Some(f.first_read),
                seconds: None,
                seq: Some(0),
                detail: format!(
                    "segments 0..={} missing before the first one stored",
                    f.seq - 1
                ),
            });
        }
    }
    let mut pauses = Vec::new();
    for w in segs.windows(2) {
        let (a, b) = (w[0], w[1]);
        let pause = b.first_read - a.last_read;
        if b.seq > a.seq + 1 {
            gaps.push(span_gap(
                "chain_gap",
                a.last_read,
                b.first_read,
                Some(a.seq + 1),
                format!("segments {}..={} missing", a.seq + 1, b.seq - 1),
            ));
        } else {
            pauses.push(pause);
        }
        if b.lost_cursor.is_some() {
            gaps.push(span_gap(
                "journal_cursor_lost",
                a.last_read,
                b.first_read,
                Some(b.seq),
                "the journal no longer had the agent's cursor: entries between may be missing (FORMAT.md §16.4)".into(),
            ));
        }
    }
    if let Some(f) = first {
        if f.lost_cursor.is_some() {
            gaps.push(span_gap(
                "journal_cursor_lost",
                f.first_read,
                f.first_read,
                Some(f.seq),
                "the journal no longer had the agent's cursor: entries before may be missing (FORMAT.md §16.4)".into(),
            ));
        }
    }
    // Other damage the verifier found at a seq (broken links, forks,
    // segments no signed digest lists, corrupt records).
    let at_seq: BTreeMap<u64, usize> = segs.iter().enumerate().map(|(i, s)| (s.seq, i)).collect();
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    for f in findings {
        let kind = f.kind.name();
        if matches!(
            f.kind,
            FindingKind::ChainGap | FindingKind::JournalCursorLost
        ) {
            continue; // from the records above, with their time spans
        }
        let Some(seq) = f.seq else { continue };
        if !seen.insert((kind.clone(), seq)) {
            continue;
        }
        let (from, to) = match at_seq.get(&seq) {
            Some(&i) => (
                i.checked_sub(1)
                    .map(|p| segs[p].last_read)
                    .or(Some(segs[i].first_read)),
                Some(segs[i].last_read),
            ),
            None => (None, None),
        };
        gaps.push(Gap {
            kind,
            from,
            to,
            seconds: match (from, to) {
                (Some(a), Some(b)) => Some((b - a).whole_seconds()),
                _ => None,
            },
            seq: Some(seq),
            detail: f.message.clone(),
        });
    }
    // Quiet intervals, where the stream is normally more active.
    let mut sorted = pauses.clone();
    sorted.sort();
    let median = sorted.get(sorted.len() / 2).copied();
    let within = sorted.iter().filter(|p| **p <= opts.gap_threshold).count();
    let normally_active = !sorted.is_empty() && within * 2 >= sorted.len();
    if normally_active {
        for w in segs.windows(2) {
            let (a, b) = (w[0], w[1]);
            if b.seq == a.seq + 1 && b.first_read - a.last_read > opts.gap_threshold {
                gaps.push(span_gap(
                    "quiet",
                    a.last_read,
                    b.first_read,
                    Some(b.seq),
                    format!(
                        "no segment for {}s in a stream whose median pause is {}s",
                        (b.first_read - a.last_read).whole_seconds(),
                        median.map_or(0, |m| m.whole_seconds())
                    ),
                ));
            }
        }
    }
    gaps.sort_by_key(|a| (a.from, a.seq));

    StreamCoverage {
        stream: stream.to_string(),
        category,
        record_category: first.map(|s| s.category.clone()).unwrap_or_default(),
        source_kind: first.map_or(SourceKind::File, |s| s.source_kind),
        sources: sources
            .iter()
            .take(MAX_SOURCES_LISTED)
            .map(|s| s.to_string())
            .collect(),
        sources_total: sources.len() as u64,
        verified,
        problems,
        first_preserved,
        last_preserved,
        first_seq: segs.first().map(|s| s.seq),
        last_seq: segs.last().map(|s| s.seq),
        segments: segs.len() as u64,
        bytes,
        lines: None,
        retain_until_earliest: segs.iter().map(|s| s.retain_until).min(),
        retain_until_latest: segs.iter().map(|s| s.retain_until).max(),
        retain_short_segments: retain_short,
        bucket: first_preserved.map(|t| bucket_for(t, opts.now)),
        normally_active,
        median_pause_seconds: median.map(|m| m.whole_seconds()),
        gaps,
    }
}

fn span_gap(
    kind: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
    seq: Option<u64>,
    detail: String,
) -> Gap {
    Gap {
        kind: kind.to_string(),
        from: Some(from),
        to: Some(to),
        seconds: Some((to - from).whole_seconds()),
        seq,
        detail,
    }
}

/// Digests are written every interval even when idle (FORMAT.md §5), and a
/// restarted agent's first window starts where the last one ended: a
/// window (or a pause between windows) longer than the threshold is time
/// the agent was not running; a hole in the digest seqs is a removed digest.
///
/// "Longer" also means more than twice the host's median window, so a host
/// configured with windows longer than the threshold is not reported down
/// at every digest.
fn digest_gaps(digests: &[&DigestSummary], threshold: Duration) -> Vec<Gap> {
    let mut lens: Vec<Duration> = digests
        .iter()
        .map(|d| d.window_end - d.window_start)
        .collect();
    lens.sort();
    let usual = lens.get(lens.len() / 2).copied().unwrap_or(Duration::ZERO);
    let threshold = threshold.max(usual * 2);
    let mut gaps = Vec::new();
    for d in digests {
        let len = d.window_end - d.window_start;
        if len > threshold {
            gaps.push(span_gap(
                "agent_down",
                d.window_start,
                d.window_end,
                Some(d.seq),
                format!(
                    "digest {} covers {}s: no digest was written in that time (agent stopped, or host down)",
                    d.seq,
                    len.whole_seconds()
                ),
            ));
        }
    }
    for w in digests.windows(2) {
        let (a, b) = (w[0], w[1]);
        if b.seq > a.seq + 1 {
            gaps.push(span_gap(
                "digest_gap",
                a.window_end,
                b.window_start,
                Some(a.seq + 1),
                format!("digests {}..={} missing", a.seq + 1, b.seq - 1),
            ));
        } else if b.window_start - a.window_end > threshold {
            gaps.push(span_gap(
                "agent_down",
                a.window_end,
                b.window_start,
                Some(b.seq),
                format!(
                    "{}s between digests {} and {}",
                    (b.window_start - a.window_end).whole_seconds(),
                    a.seq,
                    b.seq
                ),
            ));
        }
    }
    gaps.sort_by_key(|a| (a.from, a.seq));
    gaps
}

fn category_coverage(streams: &[StreamCoverage], opts: &CoverageOptions) -> Vec<CategoryCoverage> {
    let mut out = Vec::new();
    for cat in ReportCategory::ALL {
        let all: Vec<&StreamCoverage> = streams.iter().filter(|s| s.category == cat).collect();
        if all.is_empty() {
            continue;
        }
        let counted: Vec<&&StreamCoverage> = all
            .iter()
            .filter(|s| s.verified || opts.include_unverified)
            .collect();
        let first_preserved = counted.iter().filter_map(|s| s.first_preserved).min();
        out.push(CategoryCoverage {
            category: cat,
            form_group: cat.form_group(),
            streams: all.iter().map(|s| s.stream.clone()).collect(),
            verified: all.iter().all(|s| s.verified),
            streams_counted: counted.len() as u64,
            first_preserved,
            last_preserved: counted.iter().filter_map(|s| s.last_preserved).max(),
            segments: counted.iter().map(|s| s.segments).sum(),
            bytes: counted.iter().map(|s| s.bytes).sum(),
            bucket: first_preserved.map(|t| bucket_for(t, opts.now)),
            retain_until_earliest: counted.iter().filter_map(|s| s.retain_until_earliest).min(),
            gaps: all.iter().map(|s| s.gaps.len() as u64).sum(),
            flagged: false,
        });
    }
    for c in &mut out {
        c.flagged = opts.level.six_months_required()
            && (c.bucket != Some(Bucket::SixMonthsOrMore)
                || !c.verified
                || streams
                    .iter()
                    .any(|s| s.category == c.category && s.retain_short_segments > 0));
    }
    out
}

fn flags_for(
    host: &str,
    c: &CategoryCoverage,
    streams: &[StreamCoverage],
    opts: &CoverageOptions,
) -> Vec<Flag> {
    if !opts.level.six_months_required() {
        return Vec::new();
    }
    let flag = |reason, detail| Flag {
        host: host.to_string(),
        category: c.category,
        reason,
        detail,
        rule: SIX_MONTH_RULE,
    };
    let mut out = Vec::new();
    if c.bucket != Some(Bucket::SixMonthsOrMore) {
        let detail = match (c.first_preserved, c.bucket) {
            (Some(t), Some(b)) => format!(
                "earliest preserved {} ({}); level {} must keep six months",
                custody_evidence::timefmt::format_utc(t),
                b.as_str(),
                opts.level
            ),
            _ => format!(
                "no verified evidence of this category; level {} must keep six months",
                opts.level
            ),
        };
        out.push(flag("under_six_months", detail));
    }
    let short: u64 = streams
        .iter()
        .filter(|s| s.category == c.category)
        .map(|s| s.retain_short_segments)
        .sum();
    if short > 0 {
        out.push(flag(
            "retain_until_short",
            format!("{short} segment(s) carry a retain_until earlier than six calendar months after their first_read (FORMAT.md §7)"),
        ));
    }
    if !c.verified {
        let bad: Vec<&str> = streams
            .iter()
            .filter(|s| s.category == c.category && !s.verified)
            .map(|s| s.stream.as_str())
            .collect();
        out.push(flag(
            "unverified",
            format!(
                "stream(s) {} did not verify, so their evidence cannot be counted toward the rule",
                bad.join(", ")
            ),
        ));
    }
    out
}

fn form_answer(host: &str, categories: &[CategoryCoverage]) -> FormAnswer {
    let group = |g: FormGroup| {
        categories
            .iter()
            .filter(|c| c.form_group == g)
            .filter_map(|c| c.bucket)
            .min()
    };
    FormAnswer {
        host: host.to_string(),
        host_event_logs: group(FormGroup::HostEventLogs),
        firewall_logs: group(FormGroup::FirewallLogs),
        web_logs: group(FormGroup::WebLogs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn buckets_follow_calendar_months() {
        let now = datetime!(2026-08-31 12:00 UTC);
        // 28 Feb + 6 months = 28 Aug, before now.
        assert_eq!(
            bucket_for(datetime!(2026-02-28 12:00 UTC), now),
            Bucket::SixMonthsOrMore
        );
        assert_eq!(
            bucket_for(datetime!(2026-03-01 12:00 UTC), now),
            Bucket::OneToSixMonths
        );
        assert_eq!(
            bucket_for(datetime!(2026-07-31 12:00 UTC), now),
            Bucket::OneToSixMonths
        );
        assert_eq!(
            bucket_for(datetime!(2026-08-01 12:00 UTC), now),
            Bucket::UnderOneMonth
        );
    }
}
