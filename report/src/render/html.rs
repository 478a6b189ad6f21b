//! One self-contained HTML file: inline CSS, an inline SVG heatmap, no
//! script and no external resource (agencies are often air-gapped), in the
//! language of `--lang`, times shown in `--tz` with the zone named.
//!
//! Every value reaches the page through minijinja with HTML auto-escaping
//! (the template's name ends in `.html`) and no `safe` filter anywhere:
//! everything from a log (paths, device names, cursors, finding texts) is
//! attacker-controlled and shown only as text.

use std::collections::BTreeMap;

use minijinja::{context, Environment};
use serde::Serialize;

use crate::coverage::{Bucket, Coverage, FormGroup, ReportCategory};
use crate::i18n::{Catalog, Lang};
use crate::localtime::Zone;
use crate::render::heatmap::{Cell, Heatmap};

const TEMPLATE: &str = include_str!("../../templates/coverage.html");

/// Messages the template uses by id, without arguments.
const STATIC_IDS: &[&str] = &[
    "title",
    "generated",
    "store",
    "level",
    "threshold",
    "zone",
    "payloads-not-read",
    "trusted-keys",
    "summary",
    "hosts",
    "streams",
    "segments",
    "digests",
    "errors",
    "warnings",
    "form-title",
    "form-intro",
    "flags-title",
    "no-flags",
    "heatmap-title",
    "heatmap-intro",
    "legend-kept",
    "legend-idle",
    "legend-gap",
    "legend-unverified",
    "legend-none",
    "coverage-title",
    "col-host",
    "col-category",
    "col-stream",
    "col-sources",
    "col-verified",
    "col-first",
    "col-last",
    "col-bytes",
    "col-segments",
    "col-retain",
    "col-bucket",
    "col-gaps",
    "col-flagged",
    "gaps-title",
    "col-kind",
    "col-from",
    "col-to",
    "col-seconds",
    "col-detail",
    "findings-title",
    "no-findings",
    "col-severity",
    "col-object",
    "col-message",
    "yes",
    "no",
    "lines-not-counted",
    "rule-title",
    "verification-title",
    "host-gaps",
    "none",
];

#[derive(Serialize)]
struct Rect {
    x: usize,
    w: usize,
    cls: &'static str,
    label: String,
}

#[derive(Serialize)]
struct SvgRow {
    y: usize,
    ty: usize,
    host: String,
    rects: Vec<Rect>,
}

#[derive(Serialize)]
struct SvgGrid {
    label: String,
    width: usize,
    height: usize,
    rows: Vec<SvgRow>,
}

const CELL_W: usize = 4;
const ROW_H: usize = 14;
const LABEL_W: usize = 180;

/// Renders the report as one HTML document.
pub fn render(cov: &Coverage, heat: &Heatmap, lang: Lang, zone: &Zone) -> Result<String, String> {
    let cat = Catalog::load(lang)?;
    let mut t: BTreeMap<&str, String> = BTreeMap::new();
    for id in STATIC_IDS {
        t.insert(id, cat.msg(id, &[]));
    }
    let local = |v: Option<time::OffsetDateTime>| v.map(|v| zone.format(v)).unwrap_or_default();
    let bucket = |b: Option<Bucket>| match b {
        Some(b) => cat.msg(&format!("bucket-{}", b.as_str().replace('_', "-")), &[]),
        None => cat.msg("bucket-none", &[]),
    };
    let cat_label = |c: ReportCategory| cat.msg(&format!("category-{}", c.as_str()), &[]);
    let yes_no = |b: bool| cat.msg(if b { "yes" } else { "no" }, &[]);

    // The form section: plain text, ready to copy (REQUIREMENTS.md §4).
    let mut form_text = String::new();
    for a in &cov.form {
        form_text.push_str(&cat.msg("form-host", &[("host", a.host.clone())]));
        form_text.push('\n');
        for g in FormGroup::ALL {
            let chosen = a.get(g);
            let boxes: Vec<String> = [
                Bucket::UnderOneMonth,
                Bucket::OneToSixMonths,
                Bucket::SixMonthsOrMore,
            ]
            .iter()
            .map(|b| {
                let mark = if chosen == Some(*b) { "■" } else { "□" };
                format!("{mark} {}", bucket(Some(*b)))
            })
            .collect();
            let none = if chosen.is_none() {
                format!("  ({})", bucket(None))
            } else {
                String::new()
            };
            form_text.push_str(&format!(
                "  {}: {}{}\n",
                cat.msg(&format!("form-{}", g.as_str().replace('_', "-")), &[]),
                boxes.join("  "),
                none
            ));
        }
    }

    let flags: Vec<_> = cov
        .flags
        .iter()
        .map(|f| {
            context! {
                host => f.host,
                category => cat_label(f.category),
                reason => cat.msg(&format!("flag-{}", f.reason.replace('_', "-")), &[]),
                detail => f.detail,
            }
        })
        .collect();

    let gap_view = |g: &crate::coverage::Gap| {
        context! {
            kind => cat.msg(&format!("gap-{}", g.kind.replace('_', "-")), &[]),
            from => local(g.from),
            to => local(g.to),
            seconds => g.seconds.map(|v| v.to_string()).unwrap_or_default(),
            detail => g.detail,
        }
    };
    let hosts: Vec<_> = cov
        .hosts
        .iter()
        .map(|h| {
            let categories: Vec<_> = h
                .categories
                .iter()
                .map(|c| {
                    context! {
                        label => cat_label(c.category),
                        verified => yes_no(c.verified),
                        first => local(c.first_preserved),
                        last => local(c.last_preserved),
                        bytes => c.bytes,
                        segments => c.segments,
                        retain => local(c.retain_until_earliest),
                        bucket => bucket(c.bucket),
                        gaps => c.gaps,
                        flagged => c.flagged,
                    }
                })
                .collect();
            let streams: Vec<_> = h
                .streams
                .iter()
                .map(|s| {
                    context! {
                        stream => s.stream,
                        category => cat_label(s.category),
                        sources => s.sources,
                        more_sources => s.sources_total.saturating_sub(s.sources.len() as u64),
                        verified => yes_no(s.verified),
                        ok => s.verified,
                        problems => s.problems.join(", "),
                        first => local(s.first_preserved),
                        last => local(s.last_preserved),
                        bytes => s.bytes,
                        segments => s.segments,
                        bucket => bucket(s.bucket),
                        gaps => s.gaps.iter().map(gap_view).collect::<Vec<_>>(),
                    }
                })
                .collect();
            context! {
                host => h.host,
                verified => yes_no(h.verified),
                ok => h.verified,
                problems => h.problems.join(", "),
                categories => categories,
                streams => streams,
                gaps => h.gaps.iter().map(gap_view).collect::<Vec<_>>(),
            }
        })
        .collect();

    let grids: Vec<SvgGrid> = heat
        .grids
        .iter()
        .map(|g| SvgGrid {
            label: cat_label(g.category),
            width: LABEL_W + heat.days * CELL_W + 4,
            height: g.rows.len() * ROW_H + 4,
            rows: g
                .rows
                .iter()
                .enumerate()
                .map(|(i, r)| SvgRow {
                    y: i * ROW_H + 2,
                    ty: i * ROW_H + 12,
                    host: r.host.clone(),
                    rects: r
                        .runs
                        .iter()
                        .filter(|run| run.cell != Cell::None)
                        .map(|run| Rect {
                            x: LABEL_W + run.start * CELL_W,
                            w: run.len * CELL_W,
                            cls: cell_class(run.cell),
                            label: format!(
                                "{} {}",
                                r.host,
                                cat.msg(&format!("legend-{}", cell_class(run.cell)), &[])
                            ),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();

    let findings: Vec<_> = cov
        .verification
        .findings
        .iter()
        .map(|f| {
            context! {
                severity => f.severity,
                kind => f.kind,
                host => f.host.clone().unwrap_or_default(),
                stream => f.stream.clone().unwrap_or_default(),
                seq => f.seq.map(|v| v.to_string()).unwrap_or_default(),
                object => f.object.clone().unwrap_or_default(),
                message => f.message,
            }
        })
        .collect();

    let mut env = Environment::new();
    env.add_template("coverage.html", TEMPLATE)
        .map_err(|e| format!("the HTML template does not parse: {e}"))?;
    let tmpl = env
        .get_template("coverage.html")
        .map_err(|e| format!("the HTML template: {e}"))?;
    tmpl.render(context! {
        lang => lang.tag(),
        t => t,
        now => zone.format(cov.now),
        zone => zone.name(),
        store => cov.store,
        level => cov.level.as_str(),
        threshold => cov.gap_threshold_seconds,
        rule => cat.msg(if cov.rule.six_months_required { "rule-required" } else { "rule-not-required" }, &[("level", cov.level.to_string())]),
        trusted_keys => cat.msg(&format!("keys-{}", cov.verification.trusted_keys.replace('_', "-")), &[]),
        counts => context! {
            hosts => cov.hosts.len(),
            streams => cov.hosts.iter().map(|h| h.streams.len()).sum::<usize>(),
            segments => cov.verification.segments,
            digests => cov.verification.digests,
            errors => cov.verification.errors,
            warnings => cov.verification.warnings,
        },
        form_text => form_text,
        flags => flags,
        heat_first => heat.first_day,
        heat_last => heat.last_day,
        heat_days => heat.days,
        grids => grids,
        hosts => hosts,
        findings => findings,
    })
    .map_err(|e| format!("rendering the HTML report: {e}"))
}

fn cell_class(c: Cell) -> &'static str {
    match c {
        Cell::None => "none",
        Cell::Idle => "idle",
        Cell::Kept => "kept",
        Cell::Unverified => "unverified",
        Cell::Gap => "gap",
    }
}
