//! `findings --format html`: one self-contained file (inline CSS, no
//! script) with the form's STEP 5/6 answers first, then every finding
//! with its evidence, the abnormal-IP table, what was read, and notes.
//!
//! As for coverage, every value reaches the page through minijinja with
//! HTML auto-escaping and no `safe` filter: user names, paths, user agents
//! and whole log lines are attacker-controlled and shown only as text.

use std::collections::BTreeMap;

use minijinja::{context, Environment};

use crate::findings::model::Report;
use crate::i18n::{Catalog, Lang};

const TEMPLATE: &str = include_str!("../../templates/findings.html");

/// Messages the template uses by id, without arguments.
const STATIC_IDS: &[&str] = &[
    "fd-title",
    "fd-window",
    "fd-store",
    "fd-host-tz",
    "fd-office-tz",
    "fd-rules",
    "fd-assumptions",
    "fd-verification",
    "fd-all-verified",
    "fd-unverified-intro",
    "fd-form-title",
    "fd-form-intro",
    "fd-q-connections",
    "fd-q-accounts",
    "fd-q-files",
    "fd-q-exfiltration",
    "fd-q-tampering",
    "fd-q-when",
    "fd-none",
    "fd-findings-title",
    "fd-no-findings",
    "fd-ips-title",
    "fd-streams-title",
    "fd-notes-title",
    "fd-col-time",
    "fd-col-rule",
    "fd-col-severity",
    "fd-col-host",
    "fd-col-summary",
    "fd-col-verified",
    "fd-col-evidence",
    "fd-col-ip",
    "fd-col-internal",
    "fd-col-first",
    "fd-col-last",
    "fd-col-hosts",
    "fd-col-counts",
    "fd-col-stream",
    "fd-col-seq",
    "fd-col-offset",
    "fd-col-len",
    "fd-col-check",
    "fd-col-expected",
    "fd-col-found",
    "fd-col-message",
    "fd-col-segments",
    "fd-col-lines",
    "fd-col-unparsed",
    "fd-col-long",
    "fd-col-malformed",
    "fd-col-outside",
    "fd-col-kind",
    "fd-yes",
    "fd-no",
    "fd-internal",
    "fd-external",
    "fd-rederive",
];

/// Renders the findings report as one HTML document.
pub fn render(r: &Report, lang: Lang) -> Result<String, String> {
    let cat = Catalog::load(lang)?;
    let mut t: BTreeMap<&str, String> = BTreeMap::new();
    for id in STATIC_IDS {
        t.insert(id, cat.msg(id, &[]));
    }
    let rule_name = |rule: &str| cat.msg(&format!("fd-rule-{}", rule.replace('_', "-")), &[]);
    let yes_no = |b: bool| cat.msg(if b { "fd-yes" } else { "fd-no" }, &[]);

    let findings: Vec<_> = r
        .findings
        .iter()
        .map(|f| {
            context! {
                time => f.time_local,
                rule => rule_name(&f.rule),
                rule_id => f.rule,
                severity => f.severity,
                host => f.host,
                summary => f.summary,
                verified => f.verified,
                verified_text => yes_no(f.verified),
                evidence => f.evidence,
            }
        })
        .collect();
    let of_rules = |rules: &[&str]| -> Vec<_> {
        r.findings
            .iter()
            .filter(|f| rules.contains(&f.rule.as_str()))
            .map(|f| context! { time => f.time_local, rule => rule_name(&f.rule), summary => f.summary, verified => f.verified })
            .collect()
    };
    let ips: Vec<_> = r
        .abnormal_ips
        .iter()
        .map(|a| {
            let counts: Vec<String> = a.counts.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            context! {
                ip => a.ip,
                where_ => cat.msg(if a.internal { "fd-internal" } else { "fd-external" }, &[]),
                first => a.first_seen,
                last => a.last_seen,
                hosts => a.hosts.join(", "),
                counts => counts.join(", "),
                rules => a.rules.iter().map(|x| rule_name(x)).collect::<Vec<_>>().join(", "),
            }
        })
        .collect();
    let when = match (
        r.findings.iter().map(|f| &f.time).min(),
        r.findings.iter().map(|f| &f.last_time).max(),
    ) {
        (Some(a), Some(b)) => cat.msg("fd-when", &[("first", a.clone()), ("last", b.clone())]),
        _ => cat.msg("fd-none", &[]),
    };

    let mut env = Environment::new();
    env.add_template("findings.html", TEMPLATE)
        .map_err(|e| format!("templates/findings.html: {e}"))?;
    let tmpl = env
        .get_template("findings.html")
        .map_err(|e| format!("templates/findings.html: {e}"))?;
    tmpl.render(context! {
        lang => lang.tag(),
        t => t,
        r => r,
        findings => findings,
        connections => ips,
        accounts => of_rules(&["off_hours_logon", "external_logon", "new_account", "privilege_grant", "failed_logon_burst", "password_spraying", "new_ip_logon"]),
        files => of_rules(&["webroot_change", "webshell"]),
        exfiltration => of_rules(&["large_response"]),
        tampering => of_rules(&["log_cleared", "new_service"]),
        when => when,
        unverified_count => cat.msg("fd-unverified-count", &[("n", r.unverified_segments.len().to_string())]),
    })
    .map_err(|e| format!("rendering templates/findings.html: {e}"))
}
