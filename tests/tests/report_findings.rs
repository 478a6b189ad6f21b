//! `custody-report findings` over a store the real agent wrote from
//! realistic logs (lines of shared/testdata/linux as background, their
//! times moved into the window) with planted attacks: the report finds
//! exactly the planted findings, each one's evidence re-derives with the
//! real `zstd -dc | tail -c | head -c | sha256sum`, a rewritten payload
//! makes its findings unverified, hostile names are escaped in the HTML,
//! and bad input (NUL, invalid UTF-8, a 2 MB line, a clock going back, a
//! malformed date) is counted and referenced, never a crash.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custody_tests::*;
use serde_json::Value;
use time::macros::offset;
use time::{OffsetDateTime, PrimitiveDateTime, Time, Weekday};

const WAIT: Duration = Duration::from_secs(90);
const HOSTILE: &str = "<script>window.__custody_pwned=1</script>";
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Log lines with their Taipei local time, sorted and rendered.
struct Log {
    lines: Vec<(PrimitiveDateTime, String)>,
}

impl Log {
    fn new() -> Self {
        Log { lines: Vec::new() }
    }
    fn push(&mut self, t: PrimitiveDateTime, line: String) {
        self.lines.push((t, line));
    }
    fn render_syslog(&mut self) -> Vec<u8> {
        self.lines.sort_by_key(|(t, _)| *t);
        let mut out = Vec::new();
        for (t, rest) in &self.lines {
            out.extend_from_slice(syslog_stamp(*t).as_bytes());
            out.push(b' ');
            out.extend_from_slice(rest.as_bytes());
            out.push(b'\n');
        }
        out
    }
    /// rsyslog's RSYSLOG_FileFormat (Debian 12's default): full time with
    /// its offset, then `host prog[pid]: message`.
    fn render_iso(&mut self) -> Vec<u8> {
        self.lines.sort_by_key(|(t, _)| *t);
        let mut out = Vec::new();
        for (t, rest) in &self.lines {
            let stamp = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}+08:00",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.microsecond()
            );
            out.extend_from_slice(stamp.as_bytes());
            out.push(b' ');
            out.extend_from_slice(rest.as_bytes());
            out.push(b'\n');
        }
        out
    }
    fn render_web(&mut self) -> Vec<u8> {
        self.lines.sort_by_key(|(t, _)| *t);
        let mut out = Vec::new();
        for (t, line) in &self.lines {
            out.extend_from_slice(line.replace("{T}", &web_stamp(*t)).as_bytes());
            out.push(b'\n');
        }
        out
    }
}

fn syslog_stamp(t: PrimitiveDateTime) -> String {
    format!(
        "{} {:>2} {:02}:{:02}:{:02}",
        MONTHS[t.month() as usize - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn web_stamp(t: PrimitiveDateTime) -> String {
    format!(
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0800",
        t.day(),
        MONTHS[t.month() as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The most recent weekday before today, Taipei time: office hours on it
/// are in the past, and its 02:13 is off hours.
fn planted_day() -> time::Date {
    let mut d = OffsetDateTime::now_utc().to_offset(offset!(+8)).date();
    loop {
        d = d.previous_day().expect("a day before");
        if !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday) {
            return d;
        }
    }
}

fn at(d: time::Date, h: u8, m: u8, s: u8) -> PrimitiveDateTime {
    PrimitiveDateTime::new(d, Time::from_hms(h, m, s).expect("a time"))
}

/// The planted logs and the findings they must give, as (rule, key).
struct Planted {
    auth: Vec<u8>,
    /// Full-timestamp syslog (the account changes).
    iso: Vec<u8>,
    web: Vec<u8>,
    expected: BTreeSet<(String, String)>,
}

fn plant(seed: u64) -> Planted {
    let mut rng = TestRng::new(seed);
    let day = planted_day();
    let mut auth = Log::new();
    let mut web = Log::new();
    let mut iso = Log::new();
    // Background: real syslog lines (su, cron, kernel, sshd's PAM and
    // connection messages), their times moved into office hours. The
    // OpenSSH sample's own logon outcomes are left out: they are real
    // attacks from 2015 and would be (true) findings.
    for l in testdata_lines() {
        let b = l.as_bytes();
        let syslog_like = b.len() > 16
            && b[3] == b' '
            && b[15] == b' '
            && MONTHS.iter().any(|m| l.starts_with(m));
        if !syslog_like
            || l.contains("Failed ")
            || l.contains("Accepted ")
            || l.contains("Invalid user")
        {
            continue;
        }
        if !rng.chance(0.5) {
            continue;
        }
        let t = at(
            day,
            rng.range(8, 16) as u8,
            rng.range(0, 59) as u8,
            rng.range(0, 59) as u8,
        );
        auth.push(t, l[16..].to_string());
    }
    for i in 0..20 {
        let t = at(day, rng.range(9, 16) as u8, rng.range(0, 59) as u8, 1);
        auth.push(
            t,
            format!(
                "web01 sshd[{}]: Accepted publickey for deploy from 10.0.0.8 port {} ssh2",
                3000 + i,
                40000 + i
            ),
        );
    }
    let pages = [
        "/",
        "/index.html",
        "/css/site.css",
        "/js/app.js",
        "/news?id=12",
        "/img/logo.png",
    ];
    for i in 0..400 {
        let t = at(
            day,
            rng.range(8, 17) as u8,
            rng.range(0, 59) as u8,
            rng.range(0, 59) as u8,
        );
        let status = if rng.chance(0.03) { 404 } else { 200 };
        web.push(
            t,
            format!(
                "10.0.{}.{} - - [{{T}}] \"GET {} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0\"",
                rng.range(0, 4),
                rng.range(2, 250),
                pages[i % pages.len()],
                rng.range(300, 60000)
            ),
        );
    }

    let mut expected = BTreeSet::new();
    let mut want = |rule: &str, key: &str| expected.insert((rule.to_string(), key.to_string()));
    // Brute force: 12 failures for root from 203.0.113.7, then it gets in.
    for i in 0..12u8 {
        auth.push(
            at(day, 10, 0, i * 3),
            format!(
                "web01 sshd[5100]: Failed password for root from 203.0.113.7 port {} ssh2",
                50000 + i as u32
            ),
        );
    }
    auth.push(
        at(day, 10, 1, 0),
        "web01 sshd[5101]: Accepted password for root from 203.0.113.7 port 50100 ssh2".into(),
    );
    want("failed_logon_burst", "203.0.113.7");
    want("external_logon", "203.0.113.7");
    // Spraying: one IP, 8 users (one of them a hostile name).
    let users = [
        "admin", "test", "oracle", "postgres", "ubuntu", "guest", HOSTILE, "ftp",
    ];
    for (i, u) in users.iter().enumerate() {
        let t = at(day, 13, 0, i as u8 * 5);
        auth.push(
            t,
            format!(
                "web01 sshd[{}]: Invalid user {u} from 198.51.100.9 port {}",
                5200 + i,
                41000 + i
            ),
        );
        auth.push(t, format!("web01 sshd[{}]: Failed password for invalid user {u} from 198.51.100.9 port {} ssh2", 5200 + i, 41000 + i));
    }
    want("password_spraying", "198.51.100.9");
    // Off hours: 02:13 Taipei, from inside.
    auth.push(
        at(day, 2, 13, 5),
        "web01 sshd[811]: Accepted password for alice from 10.0.0.5 port 51234 ssh2".into(),
    );
    want("off_hours_logon", "10.0.0.5");
    // A new admin account, in a full-timestamp syslog file.
    iso.push(at(day, 14, 0, 0), "web01 useradd[4242]: new user: name=backdoor, UID=1001, GID=1001, home=/home/backdoor, shell=/bin/bash, from=/dev/pts/0".into());
    iso.push(
        at(day, 14, 0, 1),
        "web01 usermod[4243]: add 'backdoor' to group 'sudo'".into(),
    );
    iso.push(
        at(day, 14, 0, 1),
        "web01 usermod[4243]: add 'backdoor' to shadow group 'sudo'".into(),
    );
    want("new_account", "backdoor");
    want("privilege_grant", "backdoor");
    // Webshell POSTs, one with a hostile path.
    for i in 0..3u8 {
        web.push(
            at(day, 11, 0, i * 7),
            "198.51.100.23 - - [{T}] \"POST /uploads/x.php HTTP/1.1\" 200 38 \"-\" \"Mozilla/5.0\""
                .into(),
        );
    }
    web.push(at(day, 11, 1, 0), format!("198.51.100.24 - - [{{T}}] \"POST /uploads/{HOSTILE}.php HTTP/1.1\" 200 38 \"-\" \"Mozilla/5.0\""));
    want("webshell", "198.51.100.23");
    want("webshell", "198.51.100.24");
    // One 300 MB download.
    web.push(at(day, 15, 30, 0), "10.20.30.40 - - [{T}] \"GET /backup/db.tar.gz HTTP/1.1\" 200 314572800 \"-\" \"curl/8.5.0\"".into());
    want("large_response", "10.20.30.40");
    // sqlmap.
    for i in 0..6u8 {
        web.push(at(day, 16, 0, i), format!("192.0.2.50 - - [{{T}}] \"GET /news?id=1%27+OR+{i}=1 HTTP/1.1\" 500 120 \"-\" \"sqlmap/1.7.2#stable (https://sqlmap.org)\""));
    }
    want("scanner_user_agent", "192.0.2.50");
    // A 404 burst: 40 in 40 seconds.
    for i in 0..40u8 {
        web.push(at(day, 16, 30, i), format!("192.0.2.99 - - [{{T}}] \"GET /admin{i}/ HTTP/1.1\" 404 196 \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\""));
    }
    want("web_error_burst", "192.0.2.99");
    Planted {
        auth: auth.render_syslog(),
        iso: iso.render_iso(),
        web: web.render_web(),
        expected,
    }
}

/// Runs the agent over `files` until every byte is in the store, then stops it.
fn ship(env: &TestEnv, files: &[(&str, &Path)]) {
    let mut opts = AgentOptions::new(env);
    for (category, path) in files {
        opts = opts.source(category, &path.display().to_string());
    }
    let total: u64 = files
        .iter()
        .map(|(_, p)| std::fs::metadata(p).expect("log written").len())
        .sum();
    let mut agent = AgentProcess::start(&opts);
    wait_for(&format!("{total} raw bytes in the store"), WAIT, || {
        agent.check_running()?;
        let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
        let n: u64 = c.segments().map(|s| s.raw.len() as u64).sum();
        if n >= total {
            Ok(())
        } else {
            Err(format!("{n} bytes"))
        }
    });
    agent.stop_clean(WAIT);
}

fn window() -> (String, String) {
    let now = OffsetDateTime::now_utc();
    let fmt = |t: OffsetDateTime| custody_evidence::timefmt::format_utc(t);
    (
        fmt(now - time::Duration::days(6)),
        fmt(now + time::Duration::hours(1)),
    )
}

fn findings(env: &TestEnv, args: &[&str]) -> (Option<i32>, String, String) {
    let (from, to) = window();
    let out = Command::new(&bins().report)
        .arg("findings")
        .arg("--store")
        .arg(&env.store)
        .args(["--from", &from, "--to", &to])
        .args(args)
        .output()
        .expect("run custody-report");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn findings_json(env: &TestEnv, args: &[&str]) -> (Option<i32>, Value) {
    let (code, stdout, stderr) = findings(env, args);
    let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}); exit {code:?}; stderr:\n{stderr}\nstdout:\n{stdout}")
    });
    (code, v)
}

/// (rule, ip or user) of each finding.
fn keys(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let key = f["ip"].as_str().or(f["user"].as_str()).unwrap_or("");
            let key = if f["rule"] == "new_account" || f["rule"] == "privilege_grant" {
                f["user"].as_str().unwrap_or("")
            } else {
                key
            };
            (
                f["rule"].as_str().unwrap_or("").to_string(),
                key.to_string(),
            )
        })
        .collect()
}

/// Re-derives one evidence entry with the README's commands only.
fn rederive(store: &Path, e: &Value) {
    let text = rederive_evidence(store, e);
    assert_eq!(text, e["line"].as_str().expect("line"), "{e:#}");
}

#[test]
fn findings_are_exactly_the_planted_ones_and_cite_their_bytes() {
    let env = TestEnv::new("report_findings");
    let seed = std::env::var("CUSTODY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261202);
    let p = plant(seed);
    let auth = env.log("auth.log");
    let web = env.log("access.log");
    std::fs::write(&auth, &p.auth).expect("write auth.log");
    std::fs::write(&web, &p.web).expect("write access.log");
    let os = env.log("syslog");
    std::fs::write(&os, &p.iso).expect("write syslog");
    ship(&env, &[("logon", &auth), ("web", &web), ("os", &os)]);

    let (code, v) = findings_json(&env, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["schema"], "custody-report/findings/v1");
    assert!(
        v["unverified_segments"]
            .as_array()
            .expect("list")
            .is_empty(),
        "{v:#}"
    );
    let got: Vec<(String, String)> = keys(&v);
    let got_set: BTreeSet<(String, String)> = got.iter().cloned().collect();
    assert_eq!(got.len(), got_set.len(), "a finding twice: {got:#?}");
    assert_eq!(got_set, p.expected, "seed {seed}; notes {:#}", v["notes"]);
    // Real background lines parse or are counted, never malformed. The one
    // note: a store of minutes cannot say which logon addresses are new.
    let notes = v["notes"].as_array().expect("notes");
    assert!(
        notes.iter().all(|n| n["kind"] == "new_ip_lookback_short"),
        "{notes:#?}"
    );
    let streams = v["streams"].as_array().expect("streams");
    let lines: u64 = streams
        .iter()
        .map(|s| s["lines_read"].as_u64().unwrap())
        .sum();
    let written = p
        .auth
        .iter()
        .chain(&p.web)
        .chain(&p.iso)
        .filter(|&&b| b == b'\n')
        .count() as u64;
    assert_eq!(lines, written, "{streams:#?}");

    // Each kind: its evidence re-derives with zstd, tail, head, sha256sum.
    let mut seen = BTreeSet::new();
    for f in v["findings"].as_array().unwrap() {
        assert_eq!(f["verified"], true);
        let ev = f["evidence"].as_array().expect("evidence");
        assert!(!ev.is_empty(), "{f:#}");
        if seen.insert(f["rule"].as_str().unwrap().to_string()) {
            for e in ev {
                rederive(&env.store, e);
            }
        }
        match f["rule"].as_str().unwrap() {
            "failed_logon_burst" => assert_eq!(ev.len(), 12, "{f:#}"),
            "password_spraying" => assert_eq!(ev.len(), 8, "{f:#}"),
            "privilege_grant" => assert_eq!(ev.len(), 2, "{f:#}"),
            "off_hours_logon" => {
                assert!(
                    f["time_local"]
                        .as_str()
                        .unwrap()
                        .contains(" 02:13:05 +08:00 (Asia/Taipei)"),
                    "{f:#}"
                );
            }
            _ => {}
        }
    }
    assert_eq!(seen.len(), 10, "{seen:?}");
    let ips: Vec<&str> = v["abnormal_ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["ip"].as_str().unwrap())
        .collect();
    for ip in [
        "203.0.113.7",
        "198.51.100.9",
        "10.0.0.5",
        "198.51.100.23",
        "192.0.2.50",
    ] {
        assert!(ips.contains(&ip), "{ip} not in {ips:?}");
    }
    let a = v["abnormal_ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["ip"] == "203.0.113.7")
        .unwrap();
    assert_eq!(a["internal"], false);
    assert_eq!(a["counts"]["failed_logon"], 12);
    assert_eq!(a["counts"]["logon"], 1);
    let a = v["abnormal_ips"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["ip"] == "10.0.0.5")
        .unwrap();
    assert_eq!(a["internal"], true);

    // CSV: one row per finding; the IP table.
    let (code, csv, _) = findings(&env, &["--format", "csv"]);
    assert_eq!(code, Some(0));
    assert_eq!(csv.lines().count(), 1 + p.expected.len(), "{csv}");
    let (_, ips_csv, _) = findings(&env, &["--format", "csv", "--table", "ips"]);
    assert!(
        ips_csv
            .lines()
            .any(|l| l.starts_with("\"203.0.113.7\",\"false\"")),
        "{ips_csv}"
    );

    // HTML, both languages: the hostile user name and path only escaped.
    for lang in ["en", "zh-TW"] {
        let (code, html, stderr) = findings(&env, &["--format", "html", "--lang", lang]);
        assert_eq!(code, Some(0), "{stderr}");
        assert!(
            !html.contains(HOSTILE),
            "{lang}: raw hostile text in the HTML"
        );
        assert!(
            !html.contains("<script"),
            "{lang}: a script tag in the HTML"
        );
        assert!(
            html.contains("&lt;script&gt;window.__custody_pwned=1&lt;&#x2f;script&gt;"),
            "{lang}: escaped form missing"
        );
        assert!(
            html.contains("203.0.113.7") && html.contains("02:13:05"),
            "{lang}"
        );
        // What a responder sees: the page in headless Chromium, the hostile
        // text shown as text, nothing from the logs run.
        let page = env.root.join(format!("findings-{lang}.html"));
        std::fs::write(&page, &html).expect("write the HTML report");
        let view = custody_tests::browser::view_page(
            &format!("file://{}", page.display()),
            &["h1", "h2", "table", "img"],
            Some(&env.root.join(format!("findings-{lang}.png"))),
        );
        view.assert_safe();
        assert_eq!(view.lang, lang);
        assert_eq!(view.count("h1"), 1, "{lang}");
        assert!(
            view.count("table") >= 2,
            "{lang}: {} tables",
            view.count("table")
        );
        assert_eq!(view.count("img"), 0, "{lang}: an <img> element exists");
        assert!(
            view.text.contains(HOSTILE),
            "{lang}: the hostile user name is not shown as text"
        );
        assert!(view.text.contains("203.0.113.7"), "{lang}");
    }
    let (_, zh, _) = findings(&env, &["--format", "html", "--lang", "zh-TW"]);
    assert!(
        zh.contains("非上班時間登入") && zh.contains("異常連線"),
        "zh-TW messages"
    );

    // Rules are data: a holiday makes every logon of the day off hours; a
    // higher burst threshold drops the burst; a typo is an error naming
    // the file and the key.
    let rules = env.root.join("agency.toml");
    std::fs::write(
        &rules,
        format!(
            "[off_hours_logon]\nholidays = [\"{}\"]\n[failed_logon_burst]\ncount = 13\n",
            planted_day()
        ),
    )
    .unwrap();
    let (code, r) = findings_json(&env, &["--rules", rules.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    let rk = keys(&r);
    let off = rk
        .iter()
        .filter(|(rule, _)| rule == "off_hours_logon")
        .count();
    assert_eq!(off, 22, "20 deploy logons, root's and alice's: {rk:#?}");
    assert!(
        !rk.iter().any(|(rule, _)| rule == "failed_logon_burst"),
        "{rk:#?}"
    );
    assert!(
        rk.iter().any(|(rule, _)| rule == "password_spraying"),
        "{rk:#?}"
    );
    assert!(r["rules"].as_str().unwrap().contains("agency.toml"));
    std::fs::write(&rules, "[failed_logon_burst]\ncuont = 3\n").unwrap();
    let (code, _, stderr) = findings(&env, &["--rules", rules.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("agency.toml") && stderr.contains("cuont"),
        "{stderr}"
    );

    // Tamper: the auth payload rewritten (one name changed, recompressed):
    // its findings become unverified and are left out; the web ones stay.
    let store = StoreContents::read(&env.store, &env.host_id).expect("store");
    let seg = store
        .segments()
        .find(|s| s.raw.windows(5).any(|w| w == b"alice"))
        .expect("the segment with alice's logon");
    let changed: Vec<u8> = String::from_utf8_lossy(&seg.raw)
        .replace("alice", "alicf")
        .into_bytes();
    let tmp = env.root.join("changed.raw");
    std::fs::write(&tmp, &changed).unwrap();
    sh(
        r#"zstd -q -f -c "$1" > "$2""#,
        &[tmp.to_str().unwrap(), seg.payload_path.to_str().unwrap()],
    );
    let (code, t) = findings_json(&env, &[]);
    assert_eq!(code, Some(1), "exit 1 when input does not verify");
    let un = t["unverified_segments"].as_array().unwrap();
    assert_eq!(un.len(), 1, "{un:#?}");
    assert_eq!(un[0]["host"], env.host_id.as_str());
    assert_eq!(un[0]["seq"], seg.meta.seq.0);
    assert_eq!(un[0]["check"], "object_sha256");
    assert_eq!(un[0]["expected"], seg.meta.object_sha256.to_hex());
    assert_ne!(un[0]["found"], un[0]["expected"]);
    let kept: BTreeSet<(String, String)> = keys(&t).into_iter().collect();
    let other_streams = [
        "new_account",
        "privilege_grant",
        "webshell",
        "large_response",
        "scanner_user_agent",
        "web_error_burst",
    ];
    let want: BTreeSet<(String, String)> = p
        .expected
        .iter()
        .filter(|(r, _)| other_streams.contains(&r.as_str()))
        .cloned()
        .collect();
    assert_eq!(kept, want);
    let (_, inc) = findings_json(&env, &["--include-unverified"]);
    let off: Vec<&Value> = inc["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "off_hours_logon")
        .collect();
    assert_eq!(off.len(), 1);
    assert_eq!(off[0]["verified"], false);
    assert!(off[0]["evidence"][0]["line"]
        .as_str()
        .unwrap()
        .contains("alicf"));
    let (_, html, _) = findings(&env, &["--format", "html", "--lang", "en"]);
    assert!(
        html.contains("1 segment(s) did not verify"),
        "the HTML says so"
    );

    // Digest signatures removed: the host does not verify, so no segment
    // of it does and nothing is found (unless --include-unverified).
    for entry in walk(&env.store) {
        if entry.extension().is_some_and(|x| x == "sig") {
            std::fs::remove_file(&entry).unwrap();
        }
    }
    let (code, u) = findings_json(&env, &[]);
    assert_eq!(code, Some(1));
    assert!(
        u["findings"].as_array().unwrap().is_empty(),
        "{:#}",
        u["findings"]
    );
    let un = u["unverified_segments"].as_array().unwrap();
    assert_eq!(
        un.len() as u64,
        u["segments_read"].as_u64().unwrap(),
        "{un:#?}"
    );
    assert!(un.iter().all(|s| s["check"] == "record"), "{un:#?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn bad_input_is_counted_and_referenced_never_a_crash() {
    let env = TestEnv::new("report_findings_bad");
    let day = planted_day();
    let stamp = |h, m, s| syslog_stamp(at(day, h, m, s));
    let mut log: Vec<u8> = Vec::new();
    let mut offsets = Vec::new();
    let mut line = |log: &mut Vec<u8>, bytes: &[u8]| {
        offsets.push((log.len() as u64, bytes.len() as u64));
        log.extend_from_slice(bytes);
        log.push(b'\n');
    };
    line(
        &mut log,
        format!(
            "{} web01 sshd[1]: Accepted publickey for deploy from 10.0.0.8 port 1 ssh2",
            stamp(10, 0, 0)
        )
        .as_bytes(),
    );
    line(
        &mut log,
        format!("{} web01 app[2]: a\0NUL\0line", stamp(10, 0, 1)).as_bytes(),
    );
    let mut bad_utf8 =
        format!("{} web01 sshd[3]: Failed password for ", stamp(10, 0, 2)).into_bytes();
    bad_utf8.extend_from_slice(b"r\xffo\xfeot from 10.0.0.9 port 2 ssh2");
    line(&mut log, &bad_utf8);
    let long = format!(
        "{} web01 app[4]: {}",
        stamp(10, 0, 3),
        "x".repeat(2 * 1024 * 1024)
    );
    line(&mut log, long.as_bytes());
    // The clock goes back an hour.
    line(
        &mut log,
        format!("{} web01 app[5]: after a clock step", stamp(9, 0, 0)).as_bytes(),
    );
    line(&mut log, b"Dec 99 10:00:00 web01 app[6]: no such day");
    line(&mut log, b"just some text no parser knows");
    let auth = env.log("auth.log");
    std::fs::write(&auth, &log).unwrap();
    ship(&env, &[("logon", &auth)]);

    let (code, v) = findings_json(&env, &[]);
    assert_eq!(code, Some(0), "{v:#}");
    let s = &v["streams"][0];
    assert_eq!(s["lines_read"], 7, "{s:#}");
    assert_eq!(s["lines_too_long"], 1, "{s:#}");
    assert_eq!(s["lines_malformed"], 1, "{s:#}");
    assert_eq!(s["lines_unparsed"], 1, "{s:#}");
    let ex = &s["unparsed_examples"][0];
    assert_eq!(ex["line"], "just some text no parser knows", "{s:#}");
    assert_eq!(
        (ex["offset"].as_u64().unwrap(), ex["len"].as_u64().unwrap()),
        offsets[6]
    );
    let notes = v["notes"].as_array().unwrap();
    let note = |kind: &str| -> &Value {
        notes
            .iter()
            .find(|n| n["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} note: {notes:#?}"))
    };
    let check = |kind: &str, i: usize| {
        let e = &note(kind)["evidence"];
        assert_eq!(
            (e["offset"].as_u64().unwrap(), e["len"].as_u64().unwrap()),
            offsets[i],
            "{kind}: {e:#}"
        );
        let object = env.store.join(e["object"].as_str().unwrap());
        let got = sh(
            r#"zstd -dc "$1" | tail -c +$(($2 + 1)) | head -c "$3" | wc -c"#,
            &[
                object.to_str().unwrap(),
                &offsets[i].0.to_string(),
                &offsets[i].1.to_string(),
            ],
        );
        assert_eq!(got.trim(), offsets[i].1.to_string());
    };
    check("nul_bytes", 1);
    check("invalid_utf8", 2);
    check("line_too_long", 3);
    check("clock_backwards", 4);
    check("malformed", 5);
    assert!(note("line_too_long")["message"]
        .as_str()
        .unwrap()
        .contains(&format!("{}-byte line", offsets[3].1)));
    // The invalid-UTF-8 failure is still matched (one failure: no finding),
    // and its evidence hash is of the raw bytes, not of the lossy text.
    let e = &note("invalid_utf8")["evidence"];
    let raw_sha = custody_evidence::Sha256::digest(&bad_utf8).to_hex();
    assert_eq!(e["line_sha256"], raw_sha.as_str());
    assert!(
        v["findings"].as_array().unwrap().is_empty(),
        "{:#}",
        v["findings"]
    );

    // A corrupt object (not zstd at all): reported as such, exit 1, no crash.
    let store = StoreContents::read(&env.store, &env.host_id).expect("store");
    let seg = store.segments().next().expect("a segment");
    std::fs::write(&seg.payload_path, b"\x28\xb5\x2f\xfd garbage, not a frame").unwrap();
    let (code, c) = findings_json(&env, &[]);
    assert_eq!(code, Some(1), "{c:#}");
    let un = &c["unverified_segments"][0];
    assert_eq!(un["check"], "decompress", "{un:#}");
    assert_eq!(un["seq"], seg.meta.seq.0);
    assert!(
        un["message"]
            .as_str()
            .unwrap()
            .contains(un["object"].as_str().unwrap()),
        "{un:#}"
    );
}

/// The same planted logs shipped by the real agent to the S3 test server
/// (moto) and then snapshotted into a bundle: `findings` over the bucket and
/// over the bundle finds exactly the planted findings too, and a bundle
/// citation re-derives with `tar -xOf | tail -c | head -c | sha256sum`.
#[test]
fn the_same_planted_findings_from_an_s3_store_and_from_a_bundle() {
    use custody_tests::bundle::{assert_success, snapshot};
    use custody_tests::moto::Moto;
    let env = TestEnv::new("report_findings_s3");
    let p = plant(20261203);
    let auth = env.log("auth.log");
    let web = env.log("access.log");
    let os = env.log("syslog");
    std::fs::write(&auth, &p.auth).expect("write auth.log");
    std::fs::write(&web, &p.web).expect("write access.log");
    std::fs::write(&os, &p.iso).expect("write syslog");
    let total = (p.auth.len() + p.web.len() + p.iso.len()) as u64;

    let moto = Moto::start();
    let bucket = "report-findings";
    moto.create_bucket(bucket, true);
    let url = format!("s3://{bucket}/site-a");
    let mut opts = AgentOptions::new(&env)
        .source("logon", &auth.display().to_string())
        .source("web", &web.display().to_string())
        .source("os", &os.display().to_string())
        .flag("s3-endpoint", &moto.endpoint)
        .flag("s3-region", "us-east-1");
    opts.store = std::path::PathBuf::from(&url);
    let (from, to) = window();
    let run = |input: &[&str]| -> (Option<i32>, Value) {
        let out = Command::new(&bins().report)
            .arg("findings")
            .args(input)
            .args(["--from", &from, "--to", &to])
            .output()
            .expect("run custody-report");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code(), v)
    };
    let s3_input = [
        "--store",
        url.as_str(),
        "--s3-endpoint",
        moto.endpoint.as_str(),
        "--s3-region",
        "us-east-1",
    ];
    let mut agent = AgentProcess::start(&opts);
    wait_for(
        "every byte in the bucket, as the report reads it",
        WAIT,
        || {
            agent.check_running()?;
            let (_, v) = run(&s3_input);
            let n: u64 = v["streams"]
                .as_array()
                .map(|s| s.iter().map(|x| x["bytes"].as_u64().unwrap_or(0)).sum())
                .unwrap_or(0);
            (n == total)
                .then_some(())
                .ok_or_else(|| format!("{n} of {total} bytes"))
        },
    );
    agent.stop_clean(WAIT);

    let (code, v) = run(&s3_input);
    assert_eq!(code, Some(0), "{v:#}");
    let got: BTreeSet<(String, String)> = keys(&v).into_iter().collect();
    assert_eq!(got, p.expected, "over S3; notes {:#}", v["notes"]);
    for f in v["findings"].as_array().unwrap() {
        assert_eq!(f["verified"], true, "{f:#}");
        assert!(f["evidence"][0]["object"]
            .as_str()
            .unwrap()
            .starts_with("v1/"));
    }

    // The snapshot of the same host: the log files as they are now.
    let bundle = env.root.join("incident.tar");
    let snap = snapshot(
        &opts,
        &[
            "--incident",
            "INC-2026-0120",
            "--operator",
            "responder",
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    assert_success("custody-agent snapshot", &snap);
    let (code, v) = run(&["--bundle", bundle.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{v:#}");
    let got: BTreeSet<(String, String)> = keys(&v).into_iter().collect();
    assert_eq!(got, p.expected, "over the bundle; notes {:#}", v["notes"]);
    let f = &v["findings"][0];
    let e = &f["evidence"][0];
    assert_eq!(e["archive"], bundle.to_str().unwrap());
    let member = e["object"].as_str().unwrap();
    let offset = e["offset"].as_u64().unwrap().to_string();
    let len = e["len"].as_u64().unwrap().to_string();
    let line_hash = sh(
        r#"tar -xOf "$1" "$2" | tail -c +$(($3 + 1)) | head -c "$4" | sha256sum | cut -d' ' -f1"#,
        &[bundle.to_str().unwrap(), member, &offset, &len],
    );
    assert_eq!(line_hash.trim(), e["line_sha256"], "{e:#}");
}
