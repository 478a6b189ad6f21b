//! `custody-report findings`: parse the preserved raw bytes of every
//! segment in a window, never altering them, and apply the rules of a
//! rules file (report/RULES.md). Every finding cites its evidence (host,
//! stream, segment, payload object, the payload's raw SHA-256, offset and
//! length of the line), so an auditor can re-derive it with `zstd -dc`,
//! `tail -c`, `head -c` and `sha256sum` alone (README.md).
//!
//! - [`payload`]: read one payload, check both hashes, stream-decompress,
//!   split lines ([`lines`]) and parse them ([`crate::parse`]);
//! - [`cleared`]: log clearing the records show (truncation, a lost
//!   journal cursor); [`overlap`]: one event kept by two sources, merged;
//! - [`rules`]: the rules file; [`detect`]: the detectors;
//! - [`model`]: the report (`custody-report/findings/v1`).

pub mod cleared;
pub mod detect;
pub mod events;
pub mod lines;
pub mod model;
pub mod overlap;
pub mod payload;
pub mod rules;
pub mod webroot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::Digest;

use custody_evidence::verify::{FindingKind, Severity};
use time::OffsetDateTime;

use crate::input::{read_store_records, InputError, Objects, S3Options, SegmentSummary};
use model::{AbnormalIp, Note, Report, StreamStats, UnverifiedSegment};

/// What `findings` was asked.
pub struct FindingsOptions {
    /// A store (path or `s3://…`), or with `bundle` set, the bundle's path
    /// as given (for the report's header).
    pub store: String,
    /// Read this evidence bundle (.tar) instead of a store.
    pub bundle: Option<std::path::PathBuf>,
    pub s3: S3Options,
    pub trusted_signers: Option<Vec<(String, String)>>,
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    /// The zone of syslog timestamps (which carry none).
    pub host_tz: String,
    pub rules: rules::Compiled,
    pub include_unverified: bool,
    /// Keep every parsed unit as an event (the timeline), not only the
    /// ones a rule may use.
    pub keep_all: bool,
    /// Only these hosts (an incident's).
    pub hosts: Option<BTreeSet<String>>,
    /// The incident the report is for: a bundle must be of it.
    pub incident: Option<String>,
    /// How the scope was chosen, for the report's notes.
    pub scope_note: Option<String>,
}

/// What reading and scanning an input gave, before the rules.
struct Scan {
    /// The units read: a store's segments in the window, or a bundle's copies.
    segs: Vec<SegmentSummary>,
    results: Vec<(usize, payload::Scanned)>,
    /// Segments whose records (or bundle) did not verify, whatever their bytes say.
    record_bad: BTreeMap<usize, UnverifiedSegment>,
    /// Log clearing the records show, by segment.
    cleared: BTreeMap<usize, events::Event>,
    notes: Vec<Note>,
    /// Hosts whose segments in the store reach back over `new_ip_logon`'s
    /// whole lookback before the window.
    lookback_complete: BTreeSet<String>,
}

/// Reads, verifies and scans the store or bundle; the report, or why
/// there is none.
pub fn run(o: &FindingsOptions) -> Result<Report, String> {
    run_with_events(o).map(|(report, _, _)| report)
}

/// What a timeline needs beside the report: every event kept (verified,
/// or all with `include_unverified`), merged across sources and sorted by
/// time, and the segments their `seg` indexes.
pub type Collected = (Report, Vec<events::Event>, Vec<SegmentSummary>);

/// [`run`], also handing back the events and segments.
pub fn run_with_events(o: &FindingsOptions) -> Result<Collected, String> {
    let host_tz = jiff::tz::TimeZone::get(&o.host_tz).map_err(|e| {
        format!(
            "--host-tz {:?}: not a known time zone ({e}); e.g. Asia/Taipei",
            o.host_tz
        )
    })?;
    let Scan {
        segs,
        results,
        mut record_bad,
        mut cleared,
        notes: input_notes,
        lookback_complete,
    } = match &o.bundle {
        Some(path) => scan_bundle(o, path, &host_tz)?,
        None => scan_store(o, &host_tz)?,
    };
    let mut events = Vec::new();
    let mut stats: BTreeMap<(String, String), StreamStats> = BTreeMap::new();
    let mut notes: Vec<Note> = input_notes;
    if let Some(n) = &o.scope_note {
        notes.insert(
            0,
            Note {
                kind: "incident".into(),
                message: n.clone(),
                evidence: None,
            },
        );
    }
    let mut notes_omitted = 0;
    let mut unverified_segments = Vec::new();
    let mut ip_table: BTreeMap<String, (payload::IpAgg, BTreeSet<String>)> = BTreeMap::new();
    let mut seen_before: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut verified_segs: BTreeSet<usize> = BTreeSet::new();
    for (i, mut s) in results {
        let bad = record_bad.remove(&i).or(s.unverified.take());
        let verified = bad.is_none();
        if verified {
            verified_segs.insert(i);
        }
        if let Some(b) = bad {
            unverified_segments.push(b);
        }
        let st = stats
            .entry((s.stats.host.clone(), s.stats.stream.clone()))
            .or_insert_with(|| StreamStats {
                host: s.stats.host.clone(),
                stream: s.stats.stream.clone(),
                category: s.stats.category.clone(),
                ..Default::default()
            });
        st.segments += 1;
        st.bytes += s.stats.bytes;
        st.lines_read += s.stats.lines_read;
        st.lines_unparsed += s.stats.lines_unparsed;
        st.lines_too_long += s.stats.lines_too_long;
        st.lines_malformed += s.stats.lines_malformed;
        st.lines_outside_window += s.stats.lines_outside_window;
        for mut e in s.stats.unparsed_examples.drain(..) {
            if st.unparsed_examples.len() < model::UNPARSED_EXAMPLES {
                e.verified = verified;
                st.unparsed_examples.push(e);
            }
        }
        for n in &mut s.notes {
            if let Some(e) = n.evidence.as_mut() {
                e.verified = verified;
            }
        }
        notes.extend(s.notes);
        notes_omitted += s.notes_omitted;
        if verified || o.include_unverified {
            seen_before
                .entry(s.stats.host.clone())
                .or_default()
                .extend(std::mem::take(&mut s.seen_before));
            for (ip, a) in s.ips {
                match ip_table.get_mut(&ip) {
                    Some((t, hosts)) => {
                        t.first = t.first.min(a.first);
                        t.last = t.last.max(a.last);
                        for (n, m) in t.counts.iter_mut().zip(a.counts) {
                            *n += m;
                        }
                        hosts.insert(s.stats.host.clone());
                    }
                    None => {
                        ip_table.insert(ip, (a, BTreeSet::from([s.stats.host.clone()])));
                    }
                }
            }
        }
        let from_record = cleared
            .remove(&i)
            .filter(|e| e.time >= o.from && e.time <= o.to);
        for mut e in s.events.into_iter().chain(from_record) {
            e.verified = verified;
            if verified || o.include_unverified {
                events.push(e);
            }
        }
    }
    if !unverified_segments.is_empty() {
        notes.push(Note {
            kind: "unverified_input".into(),
            message: format!(
                "{} segment(s) did not verify (see unverified_segments); {}",
                unverified_segments.len(),
                if o.include_unverified {
                    "their lines are included (--include-unverified) and their findings marked verified: false"
                } else {
                    "their lines are kept out of the findings (pass --include-unverified to include them, marked)"
                }
            ),
            evidence: None,
        });
    }
    let webroot = compare_webroots(o, &segs, &verified_segs);
    notes.extend(webroot.notes);
    events.extend(
        webroot
            .events
            .into_iter()
            .filter(|e| e.verified || o.include_unverified),
    );
    events.sort_by_key(|e| (e.time, e.seg, e.offset));
    let (events, merged) = overlap::merge(events, &segs);
    // The abnormal-IP table counted every line; an event two sources kept
    // is one event there too.
    for e in &events {
        for a in &e.also {
            let which = match &a.kind {
                events::Kind::FailedLogon { .. } => 0,
                events::Kind::Logon { .. } => 1,
                _ => continue,
            };
            if let Some((agg, _)) = a.ip().and_then(|ip| ip_table.get_mut(ip)) {
                agg.counts[which] = agg.counts[which].saturating_sub(1);
            }
        }
    }
    if merged > 0 {
        notes.push(Note {
            kind: "same_event_two_sources".into(),
            message: format!(
                "{merged} event(s) were kept by two sources of one host (journald and syslog, an sshd line and its wtmp/btmp record) within 2 s: each is counted once, and its finding cites both"
            ),
            evidence: None,
        });
    }
    let new_ip = detect::NewIpInput {
        seen_before,
        lookback_complete,
    };
    if o.rules.rules.new_ip_logon.enabled {
        let mut short: BTreeSet<&str> = BTreeSet::new();
        for e in &events {
            let host = segs[e.seg as usize].host.as_str();
            if matches!(e.kind, events::Kind::Logon { .. })
                && !new_ip.lookback_complete.contains(host)
            {
                short.insert(host);
            }
        }
        for host in short {
            notes.push(Note {
                kind: "new_ip_lookback_short".into(),
                message: format!(
                    "new_ip_logon not applied to host {host}: {} does not hold its segments from {} before the window ({}), so which addresses are new cannot be told",
                    if o.bundle.is_some() { "a bundle" } else { "the store" },
                    o.rules.rules.new_ip_logon.lookback,
                    custody_evidence::timefmt::format_utc(o.from - o.rules.new_ip_lookback)
                ),
                evidence: None,
            });
        }
    }
    let mut findings = detect::detect(&events, &segs, &o.rules, &new_ip);
    findings.extend(
        webroot
            .findings
            .into_iter()
            .filter(|f| f.verified || o.include_unverified),
    );
    findings.sort_by(|a, b| (&a.time, &a.rule, &a.host).cmp(&(&b.time, &b.rule, &b.host)));
    let abnormal_ips = abnormal_ips(&ip_table, &findings);
    let report = Report {
        schema: model::SCHEMA,
        store: o.store.clone(),
        from: custody_evidence::timefmt::format_utc(o.from),
        to: custody_evidence::timefmt::format_utc(o.to),
        host_tz: o.host_tz.clone(),
        office_tz: o.rules.office.tz_name.clone(),
        rules: o.rules.source.clone(),
        include_unverified: o.include_unverified,
        time_assumptions: vec![
            format!(
                "Syslog lines (RFC 3164) carry local time without year or zone: they are read in --host-tz {} for every host, in the year of their segment's last read time in that zone (the year before for a line that would fall more than a day after it).",
                o.host_tz
            ),
            "Full-timestamp syslog (rsyslog file format, RFC 5424) and access log lines carry their own UTC offset, which is used.".into(),
            "Lines are in the window when their own time is; segments are read when their record's read times overlap it.".into(),
        ],
        segments_read: segs.len() as u64,
        findings,
        abnormal_ips,
        unverified_segments,
        streams: stats.into_values().collect(),
        notes,
        notes_omitted,
    };
    Ok((report, events, segs))
}

/// The web-root inventories among `segs` compared (a store only: a
/// bundle holds log copies, not inventories).
fn compare_webroots(
    o: &FindingsOptions,
    segs: &[SegmentSummary],
    verified: &BTreeSet<usize>,
) -> webroot::Compared {
    if o.bundle.is_some() || !segs.iter().any(|s| s.inventory.is_some()) {
        return webroot::Compared::default();
    }
    let objects = match Objects::open(&o.store, &o.s3) {
        Ok(objects) => objects,
        Err(e) => {
            let mut c = webroot::Compared::default();
            c.notes.push(Note {
                kind: "webroot_inventory_unreadable".into(),
                message: format!("web-root inventories not compared: {e}"),
                evidence: None,
            });
            return c;
        }
    };
    let read_raw = |i: usize| -> Result<Vec<u8>, String> {
        let seg = &segs[i];
        let object = objects.get(&seg.payload_key)?;
        let raw = custody_evidence::segment::decompress_payload(&object, seg.raw_len as usize)
            .map_err(|e| format!("{}: does not decompress: {e}", seg.payload_key))?;
        // Read again since it was verified: check again.
        if custody_evidence::Sha256::digest(&raw) != seg.raw_sha256 {
            return Err(format!(
                "{}: its raw SHA-256 no longer matches the record",
                seg.payload_key
            ));
        }
        Ok(raw)
    };
    webroot::compare(
        segs,
        &|i| verified.contains(&i),
        &read_raw,
        o.from,
        o.to,
        o.include_unverified,
        &o.rules,
    )
}

/// Every IP a finding names, with what the window's lines say about it
/// (all lines used, not only the ones the findings cite).
fn abnormal_ips(
    table: &BTreeMap<String, (payload::IpAgg, BTreeSet<String>)>,
    findings: &[model::Finding],
) -> Vec<AbnormalIp> {
    let mut rules: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for f in findings {
        if let Some(ip) = f.ip.as_deref() {
            rules.entry(ip).or_default().insert(&f.rule);
        }
    }
    rules
        .iter()
        .filter_map(|(ip, rules)| {
            let (a, hosts) = table.get(*ip)?;
            Some(AbnormalIp {
                ip: ip.to_string(),
                internal: events::is_internal(ip),
                first_seen: custody_evidence::timefmt::format_utc(a.first),
                last_seen: custody_evidence::timefmt::format_utc(a.last),
                hosts: hosts.iter().cloned().collect(),
                counts: payload::IP_COUNT_KINDS
                    .iter()
                    .zip(a.counts)
                    .filter(|(_, n)| *n > 0)
                    .map(|(k, n)| (k.to_string(), n))
                    .collect(),
                rules: rules.iter().map(|r| r.to_string()).collect(),
            })
        })
        .collect()
}

/// What the parsers of segment `i` need from the options.
fn ctx_for<'a>(
    o: &'a FindingsOptions,
    seg: &'a SegmentSummary,
    i: usize,
    host_tz: &'a jiff::tz::TimeZone,
    seen_from: OffsetDateTime,
) -> payload::Ctx<'a> {
    payload::Ctx {
        seg,
        seg_index: i as u32,
        host_tz,
        from: o.from,
        to: o.to,
        rules: &o.rules,
        keep_all: o.keep_all,
        seen_from,
    }
}

/// A store: its records verified, the segments in the window scanned in
/// parallel (one payload per thread at a time).
fn scan_store(o: &FindingsOptions, host_tz: &jiff::tz::TimeZone) -> Result<Scan, String> {
    let input = read_store_records(&o.store, &o.s3, o.trusted_signers.clone())
        .map_err(|e: InputError| e.to_string())?;
    let mut segs: Vec<SegmentSummary> = input
        .segments
        .iter()
        .filter(|s| s.first_read <= o.to && s.last_read >= o.from - o.rules.new_ip_lookback)
        .filter(|s| o.hosts.as_ref().is_none_or(|h| h.contains(&s.host)))
        .cloned()
        .collect();
    segs.sort_by(|a, b| (&a.host, &a.stream, a.seq).cmp(&(&b.host, &b.stream, b.seq)));

    // Records, chains and digests that did not verify: as for coverage, an
    // error naming a stream makes the whole stream unverified, one naming
    // only a host the whole host, whatever their payloads say.
    let mut record_bad: BTreeMap<usize, UnverifiedSegment> = BTreeMap::new();
    for f in &input.verification.findings {
        let counts = f.severity == Severity::Error || f.kind == FindingKind::NoDigests;
        let Some(host) = f.host.as_deref().filter(|_| counts) else {
            continue;
        };
        for (i, s) in segs.iter().enumerate() {
            if s.host == host && f.stream.as_deref().is_none_or(|st| st == s.stream) {
                record_bad.entry(i).or_insert_with(|| UnverifiedSegment {
                    host: s.host.clone(),
                    stream: s.stream.clone(),
                    seq: s.seq,
                    object: s.payload_key.clone(),
                    check: "record".into(),
                    expected: f.expected.clone(),
                    found: f.found.clone(),
                    message: format!(
                        "{}: {} (custody-verify store reports the same; the {} does not verify)",
                        f.kind.name(),
                        f.message,
                        if f.stream.is_some() { "stream" } else { "host" }
                    ),
                });
            }
        }
    }

    let cleared = cleared::from_records(&input.segments, &segs);
    let objects = Objects::open(&o.store, &o.s3).map_err(|e| e.to_string())?;
    // The biggest payloads first, so the last one to finish is a small
    // one and no core waits long for the other (the results are put back
    // in segment order below).
    let mut order: Vec<usize> = (0..segs.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(segs[i].raw_len));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, payload::Scanned)>> = Mutex::new(Vec::with_capacity(segs.len()));
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(segs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let seg = &segs[i];
                    let ctx = ctx_for(o, seg, i, host_tz, o.from - o.rules.new_ip_lookback);
                    let scanned = payload::scan(objects.get(&seg.payload_key), &ctx);
                    if let Ok(mut r) = results.lock() {
                        r.push((i, scanned));
                    }
                }
            });
        }
    });
    let mut results = results
        .into_inner()
        .map_err(|_| "a scanning thread panicked".to_string())?;
    results.sort_by_key(|(i, _)| *i);
    let mut notes = Vec::new();
    for h in o.hosts.iter().flatten() {
        if !segs.iter().any(|s| &s.host == h) {
            notes.push(Note {
                kind: "host_without_segments".into(),
                message: format!(
                    "host {h}, named by the incident, has no segment in this store that was read within the window: nothing of it is in this report"
                ),
                evidence: None,
            });
        }
    }
    let since = o.from - o.rules.new_ip_lookback;
    let mut earliest: BTreeMap<&str, OffsetDateTime> = BTreeMap::new();
    for s in &input.segments {
        let e = earliest.entry(&s.host).or_insert(s.first_read);
        *e = (*e).min(s.first_read);
    }
    let lookback_complete = earliest
        .into_iter()
        .filter(|(_, t)| *t <= since)
        .map(|(h, _)| h.to_string())
        .collect();
    Ok(Scan {
        segs,
        results,
        record_bad,
        cleared,
        notes,
        lookback_complete,
    })
}

/// A bundle: verified as `custody-verify bundle` does, then each log copy
/// streamed once from the tar.
fn scan_bundle(
    o: &FindingsOptions,
    path: &std::path::Path,
    host_tz: &jiff::tz::TimeZone,
) -> Result<Scan, String> {
    let b = crate::bundle_input::Bundle::open(path, o.trusted_signers.clone())?;
    if let Some(id) = o
        .incident
        .as_deref()
        .filter(|id| *id != b.manifest.incident_id)
    {
        return Err(format!(
            "--bundle {}: it is evidence for incident {:?}, not --incident {id:?}",
            path.display(),
            b.manifest.incident_id
        ));
    }
    let (segs, skipped) = b.log_copies();
    let mut notes: Vec<Note> = skipped
        .into_iter()
        .map(|message| Note {
            kind: "copy_not_parsed".into(),
            message,
            evidence: None,
        })
        .collect();
    notes.push(Note {
        kind: "bundle".into(),
        message: format!(
            "bundle {} (evidence {}, incident {}, host {}): {}; signature {}",
            path.display(),
            b.manifest.evidence_id,
            b.manifest.incident_id,
            b.manifest.host.host_id,
            if b.report.is_clean() {
                "verified".to_string()
            } else {
                format!("{} error(s) (see unverified_segments)", b.report.count(Severity::Error))
            },
            match (&b.report.signer, b.report.signer_trusted) {
                (Some(k), true) => format!("by {k}, a key given with --allowed-signers"),
                (Some(k), false) => format!("by {k}, checked only against the bundle's own allowed_signers: compare it with the host key recorded at installation (custody-agent key show)"),
                (None, _) => "not verified".to_string(),
            }
        ),
        evidence: None,
    });
    let mut results = Vec::with_capacity(segs.len());
    b.each_copy(&segs, &mut |i, reader| {
        let seg = &segs[i];
        // No lookback in a bundle: new_ip_logon is not applied there.
        let ctx = ctx_for(o, seg, i, host_tz, o.from);
        let mut out = payload::scanned_for(seg);
        // The copy's own SHA-256 is of the bytes as kept; a compressed
        // copy is parsed decompressed, its bytes hashed as they leave the tar.
        let mut kept = HashingReader {
            inner: reader,
            hasher: sha2::Sha256::new(),
        };
        let (found, error) = if let Some(c) = seg.compression {
            let error = match c.decoder(&mut kept) {
                Ok(mut dec) => payload::scan_raw(&mut dec, &ctx, &mut out).1,
                Err(e) => Some(format!("not {} data: {e}", c.tool())),
            };
            // Whatever follows the last member or frame is hashed too.
            let _ = std::io::copy(&mut kept, &mut std::io::sink());
            (custody_evidence::Sha256::from_hasher(kept.hasher), error)
        } else {
            let (_, error) = payload::scan_raw(&mut kept, &ctx, &mut out);
            (custody_evidence::Sha256::from_hasher(kept.hasher), error)
        };
        let bad = |check: &str,
                   expected: Option<String>,
                   found: Option<String>,
                   message: String| UnverifiedSegment {
            host: seg.host.clone(),
            stream: seg.stream.clone(),
            seq: seg.seq,
            object: seg.payload_key.clone(),
            check: check.into(),
            expected,
            found,
            message,
        };
        out.unverified = if let Some(e) = error {
            Some(bad(
                "read",
                None,
                None,
                format!(
                    "{}: {e}: the copy could not be read to its end",
                    seg.payload_key
                ),
            ))
        } else if found != seg.raw_sha256 {
            Some(bad(
                "sha256",
                Some(seg.raw_sha256.to_hex()),
                Some(found.to_hex()),
                format!(
                    "{}: the copy's SHA-256 is not the custody manifest's",
                    seg.payload_key
                ),
            ))
        } else {
            None
        };
        results.push((i, out));
    })?;
    let read: BTreeSet<usize> = results.iter().map(|(i, _)| *i).collect();
    let mut record_bad = BTreeMap::new();
    for (i, seg) in segs.iter().enumerate() {
        let bag_path = seg
            .payload_key
            .strip_prefix(&format!("{}/", b.root))
            .unwrap_or(&seg.payload_key);
        let doubt = b.doubt(bag_path).or_else(|| {
            (!read.contains(&i)).then(|| crate::bundle_input::Doubt {
                check: "missing".into(),
                message: format!(
                    "{}: listed in the custody manifest but not in the tar",
                    seg.payload_key
                ),
            })
        });
        if let Some(d) = doubt {
            record_bad.insert(
                i,
                UnverifiedSegment {
                    host: seg.host.clone(),
                    stream: seg.stream.clone(),
                    seq: seg.seq,
                    object: seg.payload_key.clone(),
                    check: d.check,
                    expected: None,
                    found: None,
                    message: d.message,
                },
            );
        }
        if !read.contains(&i) {
            results.push((i, payload::scanned_for(seg)));
        }
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(Scan {
        segs,
        results,
        record_bad,
        cleared: BTreeMap::new(),
        notes,
        // A bundle's copies carry no time of their own: whether they reach
        // back far enough is not known, so the rule is not applied.
        lookback_complete: BTreeSet::new(),
    })
}

/// Hashes the bytes read through it.
struct HashingReader<'a> {
    inner: &'a mut dyn std::io::Read,
    hasher: sha2::Sha256,
}

impl std::io::Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}
