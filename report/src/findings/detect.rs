//! The detectors: each rule of the rules file applied to the events, in
//! time order. A detector groups the events it fires on into one finding
//! (a burst, one account, one client and path), citing every one of them.

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use crate::findings::events::{is_internal, Event, Kind};
use crate::findings::model::Finding;
use crate::findings::rules::Compiled;
use crate::input::SegmentSummary;

/// What `new_ip_logon` compares the window's logons with.
#[derive(Debug, Default)]
pub struct NewIpInput {
    /// Per host, the IPs its lines showed in the lookback before the window.
    pub seen_before: BTreeMap<String, std::collections::BTreeSet<String>>,
    /// Hosts whose evidence reaches back over the whole lookback.
    pub lookback_complete: std::collections::BTreeSet<String>,
}

/// Runs every enabled rule over `events` (sorted by time).
pub fn detect(
    events: &[Event],
    segs: &[SegmentSummary],
    c: &Compiled,
    new_ip: &NewIpInput,
) -> Vec<Finding> {
    let r = &c.rules;
    let mut out = Vec::new();
    let host = |e: &Event| segs[e.seg as usize].host.clone();
    let mk = |rule: &str,
              severity: &str,
              evs: &[&Event],
              ip: Option<&str>,
              user: Option<&str>,
              summary: String| {
        let first = evs[0];
        let last = evs[evs.len() - 1];
        Finding {
            rule: rule.to_string(),
            severity: severity.to_string(),
            time: custody_evidence::timefmt::format_utc(first.time),
            time_local: local(first.time, c),
            last_time: custody_evidence::timefmt::format_utc(last.time),
            host: host(first),
            ip: ip.map(str::to_string),
            user: user.map(str::to_string),
            summary,
            verified: evs.iter().all(|e| e.verified),
            // The same event kept by two sources (journald and syslog,
            // sshd and btmp) is one event citing both.
            evidence: evidence_of(evs, segs),
        }
    };

    // Failed logons by (host, IP); the host borrowed (one per event).
    let mut failed: BTreeMap<(&str, &str), Vec<&Event>> = BTreeMap::new();
    for e in events {
        if let Kind::FailedLogon { ip, .. } = &e.kind {
            let h = segs[e.seg as usize].host.as_str();
            failed.entry((h, ip.as_str())).or_default().push(e);
        }
    }
    for ((_, ip), evs) in &failed {
        for cluster in clusters(evs, c.failed_window.max(c.spraying_window)) {
            let b = &r.failed_logon_burst;
            let from = shown_peer(ip);
            let ip = Some(*ip).filter(|i| !i.is_empty());
            if b.enabled && max_in_window(&cluster, c.failed_window) >= b.count {
                out.push(mk(
                    "failed_logon_burst",
                    &b.severity,
                    &cluster,
                    ip,
                    None,
                    format!(
                        "{} failed logons from {from} (at least {} within {})",
                        cluster.len(),
                        b.count,
                        b.window
                    ),
                ));
            }
            let s = &r.password_spraying;
            let users = max_distinct_users(&cluster, c.spraying_window);
            if s.enabled && users >= s.distinct_users {
                out.push(mk(
                    "password_spraying",
                    &s.severity,
                    &cluster,
                    ip,
                    None,
                    format!(
                        "{from} failed as {users} distinct users within {} (threshold {})",
                        s.window, s.distinct_users
                    ),
                ));
            }
        }
    }

    for e in events {
        match &e.kind {
            Kind::Logon { user, ip, method } => {
                let o = &r.off_hours_logon;
                let from = shown_peer(ip);
                let ip_field = Some(ip.as_str()).filter(|i| !i.is_empty());
                if o.enabled && !c.office.contains(e.time) {
                    out.push(mk(
                        "off_hours_logon",
                        &o.severity,
                        &[e],
                        ip_field,
                        Some(user),
                        format!(
                            "logon of {user} from {from} ({method}) at {}, outside office hours",
                            local(e.time, c)
                        ),
                    ));
                }
                let x = &r.external_logon;
                if x.enabled && !ip.is_empty() && !is_internal(ip) {
                    out.push(mk(
                        "external_logon",
                        &x.severity,
                        &[e],
                        Some(ip),
                        Some(user),
                        format!("logon of {user} from external address {ip} ({method})"),
                    ));
                }
            }
            Kind::NewAccount { name } if r.new_account.enabled => {
                out.push(mk(
                    "new_account",
                    &r.new_account.severity,
                    &[e],
                    None,
                    Some(name),
                    format!("new account {name}"),
                ));
            }
            Kind::LogCleared {
                channel,
                by,
                detail,
            } if r.log_cleared.enabled => {
                out.push(mk(
                    "log_cleared",
                    &r.log_cleared.severity,
                    &[e],
                    None,
                    Some(by.as_str()).filter(|b| !b.is_empty()),
                    if !detail.is_empty() {
                        detail.clone()
                    } else if by.is_empty() {
                        format!("{channel} cleared")
                    } else {
                        format!("{channel} cleared by {by}")
                    },
                ));
            }
            Kind::NewService {
                name,
                image,
                account,
            } if r.new_service.enabled => {
                out.push(mk(
                    "new_service",
                    &r.new_service.severity,
                    &[e],
                    None,
                    Some(account.as_str()).filter(|a| !a.is_empty()),
                    format!("service {name:?} installed: {image} (runs as {account})"),
                ));
            }
            _ => {}
        }
    }

    // Logons from addresses the host did not see in the lookback: one
    // finding per (host, IP), citing every such logon in the window.
    let n = &r.new_ip_logon;
    if n.enabled {
        let mut fresh: BTreeMap<(String, &str), Vec<&Event>> = BTreeMap::new();
        for e in events {
            if let Kind::Logon { ip, .. } = &e.kind {
                let h = host(e);
                let seen = new_ip.seen_before.get(&h).is_some_and(|s| s.contains(ip));
                if !ip.is_empty() && new_ip.lookback_complete.contains(&h) && !seen {
                    fresh.entry((h, ip.as_str())).or_default().push(e);
                }
            }
        }
        for ((_, ip), evs) in &fresh {
            let users: std::collections::BTreeSet<&str> = evs
                .iter()
                .filter_map(|e| match &e.kind {
                    Kind::Logon { user, .. } => Some(user.as_str()),
                    _ => None,
                })
                .collect();
            let users: Vec<&str> = users.into_iter().collect();
            out.push(mk(
                "new_ip_logon",
                &n.severity,
                evs,
                Some(ip),
                users.first().copied().filter(|_| users.len() == 1),
                format!(
                    "{} logon(s) from {ip} (as {}), an address none of the host's lines showed in the {} before the window",
                    evs.len(),
                    users.join(", "),
                    n.lookback
                ),
            ));
        }
    }

    // Privilege grants: one finding per (host, user, group), citing every line.
    let p = &r.privilege_grant;
    if p.enabled {
        let mut grants: BTreeMap<(String, &str, &str), Vec<&Event>> = BTreeMap::new();
        for e in events {
            if let Kind::GroupAdd { user, group } = &e.kind {
                if p.groups.iter().any(|g| g.eq_ignore_ascii_case(group)) {
                    grants.entry((host(e), user, group)).or_default().push(e);
                }
            }
        }
        for ((_, user, group), evs) in &grants {
            out.push(mk(
                "privilege_grant",
                &p.severity,
                evs,
                None,
                Some(user),
                format!("{user} added to privileged group {group}"),
            ));
        }
    }

    web(events, c, &mk, &host, &mut out);
    out.sort_by(|a, b| (&a.time, &a.rule, &a.host).cmp(&(&b.time, &b.rule, &b.host)));
    out
}

/// The evidence of `evs`, each followed by the same event as other
/// sources kept it; sized up front (a burst can cite tens of thousands).
fn evidence_of(evs: &[&Event], segs: &[SegmentSummary]) -> Vec<crate::findings::model::Evidence> {
    let mut out = Vec::with_capacity(evs.iter().map(|e| 1 + e.also.len()).sum());
    for e in evs
        .iter()
        .flat_map(|e| std::iter::once(*e).chain(e.also.iter()))
    {
        out.push(e.evidence(&segs[e.seg as usize]));
    }
    out
}

/// A peer address for a summary: a local logon has none.
fn shown_peer(ip: &str) -> &str {
    if ip.is_empty() {
        "no remote address (local)"
    } else {
        ip
    }
}

type Mk<'a> = dyn Fn(&str, &str, &[&Event], Option<&str>, Option<&str>, String) -> Finding + 'a;

fn web(
    events: &[Event],
    c: &Compiled,
    mk: &Mk<'_>,
    host: &dyn Fn(&Event) -> String,
    out: &mut Vec<Finding>,
) {
    let r = &c.rules;
    let mut errors: BTreeMap<(String, &str), Vec<&Event>> = BTreeMap::new();
    let mut shells: BTreeMap<(String, &str, &str), Vec<&Event>> = BTreeMap::new();
    let mut scanners: BTreeMap<(String, &str, &str), Vec<&Event>> = BTreeMap::new();
    let mut downloads: BTreeMap<(String, &str), Vec<&Event>> = BTreeMap::new();
    for e in events {
        let Kind::Web {
            ip,
            method,
            path,
            status,
            bytes,
            user_agent,
        } = &e.kind
        else {
            continue;
        };
        if (400..600).contains(status) {
            errors.entry((host(e), ip)).or_default().push(e);
        }
        let w = &r.webshell;
        let bare = path
            .split(['?', '#'])
            .next()
            .unwrap_or(path)
            .to_ascii_lowercase();
        if w.enabled
            && method == "POST"
            && (200..300).contains(status)
            && w.extensions
                .iter()
                .any(|x| bare.ends_with(&x.to_ascii_lowercase()))
            && w.prefixes
                .iter()
                .any(|p| bare.starts_with(&p.to_ascii_lowercase()))
        {
            shells.entry((host(e), ip, path)).or_default().push(e);
        }
        let l = &r.large_response;
        if l.enabled && (200..300).contains(status) {
            if *bytes >= l.bytes {
                out.push(mk(
                    "large_response",
                    &l.severity,
                    &[e],
                    Some(ip),
                    None,
                    format!(
                        "{bytes} bytes sent to {ip} for {method} {path} (threshold {})",
                        l.bytes
                    ),
                ));
            } else if *bytes >= l.min_bytes {
                downloads.entry((host(e), ip)).or_default().push(e);
            }
        }
        let s = &r.scanner_user_agent;
        if s.enabled {
            let ua = user_agent.to_ascii_lowercase();
            if let Some(sub) = s
                .substrings
                .iter()
                .find(|x| ua.contains(&x.to_ascii_lowercase()))
            {
                scanners.entry((host(e), ip, sub)).or_default().push(e);
            }
        }
    }
    let b = &r.web_error_burst;
    if b.enabled {
        for ((_, ip), evs) in &errors {
            for cluster in clusters(evs, c.web_error_window) {
                if max_in_window(&cluster, c.web_error_window) >= b.count {
                    out.push(mk(
                        "web_error_burst",
                        &b.severity,
                        &cluster,
                        Some(ip),
                        None,
                        format!(
                            "{} error responses (4xx/5xx) to {ip} (at least {} within {})",
                            cluster.len(),
                            b.count,
                            b.window
                        ),
                    ));
                }
            }
        }
    }
    for ((_, ip, path), evs) in &shells {
        out.push(mk(
            "webshell",
            &r.webshell.severity,
            evs,
            Some(ip),
            None,
            format!(
                "{} successful POST(s) from {ip} to script {path} under an upload/static path",
                evs.len()
            ),
        ));
    }
    let l = &r.large_response;
    for ((_, ip), evs) in &downloads {
        for cluster in clusters(evs, c.downloads_window) {
            if max_in_window(&cluster, c.downloads_window) >= l.count {
                out.push(mk(
                    "large_response",
                    &l.severity,
                    &cluster,
                    Some(ip),
                    None,
                    format!(
                        "{} downloads of at least {} bytes by {ip} within {}",
                        cluster.len(),
                        l.min_bytes,
                        l.window
                    ),
                ));
            }
        }
    }
    for ((_, ip, sub), evs) in &scanners {
        out.push(mk(
            "scanner_user_agent",
            &r.scanner_user_agent.severity,
            evs,
            Some(ip),
            None,
            format!(
                "{} request(s) from {ip} with a scanner User-Agent ({sub})",
                evs.len()
            ),
        ));
    }
}

/// Whether an access-log request could count for any enabled web rule
/// (an error status, a POST, a large response, a scanner agent): only
/// those are kept as events, so memory follows the suspicious requests,
/// not the traffic.
pub fn web_relevant(c: &Compiled, r: &crate::parse::web::Request<'_>) -> bool {
    web_relevant_with(c, r, |ua| scanner_agent(c, ua))
}

/// [`web_relevant`] with the scanner check given: a caller that sees the
/// same few User-Agents on every line remembers its answers.
pub fn web_relevant_with(
    c: &Compiled,
    r: &crate::parse::web::Request<'_>,
    scanner: impl FnOnce(&str) -> bool,
) -> bool {
    let rules = &c.rules;
    (rules.web_error_burst.enabled && (400..600).contains(&r.status))
        || (rules.webshell.enabled && r.method == "POST")
        || (rules.large_response.enabled
            && r.bytes
                >= rules
                    .large_response
                    .min_bytes
                    .min(rules.large_response.bytes))
        || (rules.scanner_user_agent.enabled && scanner(r.user_agent))
}

/// Whether `ua` holds one of the scanner substrings, ignoring ASCII case
/// (as `to_ascii_lowercase` on both sides, without allocating either).
pub fn scanner_agent(c: &Compiled, ua: &str) -> bool {
    c.rules
        .scanner_user_agent
        .substrings
        .iter()
        .any(|x| contains_ignore_ascii_case(ua.as_bytes(), x.as_bytes()))
}

fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

pub(crate) fn local(t: OffsetDateTime, c: &Compiled) -> String {
    match jiff::Timestamp::new(t.unix_timestamp(), 0) {
        Ok(ts) => format!(
            "{} ({})",
            ts.to_zoned(c.office.tz.clone())
                .strftime("%Y-%m-%d %H:%M:%S %:z"),
            c.office.tz_name
        ),
        Err(_) => custody_evidence::timefmt::format_utc(t),
    }
}

/// Splits time-ordered events where consecutive ones are more than `gap` apart.
fn clusters<'a>(evs: &[&'a Event], gap: Duration) -> Vec<Vec<&'a Event>> {
    let mut out: Vec<Vec<&Event>> = Vec::new();
    for e in evs {
        match out.last_mut() {
            Some(c) if e.time - c[c.len() - 1].time <= gap => c.push(e),
            _ => out.push(vec![e]),
        }
    }
    out
}

/// The most events inside any window of length `w`.
fn max_in_window(evs: &[&Event], w: Duration) -> usize {
    let mut best = 0;
    let mut j = 0;
    for i in 0..evs.len() {
        while evs[i].time - evs[j].time > w {
            j += 1;
        }
        best = best.max(i - j + 1);
    }
    best
}

/// The most distinct failing users inside any window of length `w`.
fn max_distinct_users<'a>(evs: &[&'a Event], w: Duration) -> usize {
    let user = |e: &'a Event| match &e.kind {
        Kind::FailedLogon { user, .. } => user.as_str(),
        _ => "",
    };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let mut best = 0;
    let mut j = 0;
    for i in 0..evs.len() {
        *counts.entry(user(evs[i])).or_default() += 1;
        while evs[i].time - evs[j].time > w {
            let u = user(evs[j]);
            if let Some(n) = counts.get_mut(u) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(u);
                }
            }
            j += 1;
        }
        best = best.max(counts.len());
    }
    best
}
