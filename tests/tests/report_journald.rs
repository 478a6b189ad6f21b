//! `custody-report findings` over a journald stream the real agent read
//! through the real `journalctl` from journal files that
//! `systemd-journal-remote` wrote: sshd failures and a `useradd` given as
//! journal entries (one with a binary MESSAGE field) are found exactly, at
//! their `__REALTIME_TIMESTAMP`, and each finding's evidence is a whole
//! entry that re-derives with `zstd -dc | tail -c | head -c | sha256sum`.

use std::process::Command;
use std::time::Duration;

use custody_tests::*;
use serde_json::Value;

const STREAM: &str = "os.remote";
const WAIT: Duration = Duration::from_secs(60);
const ATTACKER: &str = "203.0.113.77";

fn entry(out: &mut Vec<u8>, t: u64, ident: &str, message: &[u8], binary: bool) {
    out.extend_from_slice(
        format!(
            "__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={t}\n\
             _BOOT_ID=0123456789abcdef0123456789abcdef\n_MACHINE_ID=fedcba9876543210fedcba9876543210\n\
             _HOSTNAME=auditee\nSYSLOG_IDENTIFIER={ident}\n_COMM={ident}\n"
        )
        .as_bytes(),
    );
    if binary {
        push_binary_field(out, "MESSAGE", message);
    } else {
        out.extend_from_slice(b"MESSAGE=");
        out.extend_from_slice(message);
        out.push(b'\n');
    }
    out.push(b'\n');
}

#[test]
fn journald_entries_give_exactly_the_planted_findings_citing_whole_entries() {
    let env = TestEnv::new("report-journald");
    let jdir = env.root.join("journal");
    std::fs::create_dir_all(&jdir).unwrap();
    // An hour ago, one second apart: a 12-failure burst, background, a new account.
    let t0 = (time::OffsetDateTime::now_utc() - time::Duration::hours(1)).unix_timestamp() as u64
        * 1_000_000;
    let mut input = Vec::new();
    for i in 0..12u64 {
        let msg = format!(
            "Failed password for root from {ATTACKER} port {} ssh2",
            40000 + i
        );
        entry(
            &mut input,
            t0 + i * 1_000_000,
            "sshd",
            msg.as_bytes(),
            false,
        );
    }
    entry(
        &mut input,
        t0 + 13_000_000,
        "cron",
        b"(root) CMD (run-parts /etc/cron.hourly)",
        false,
    );
    entry(
        &mut input,
        t0 + 14_000_000,
        "useradd",
        b"new user: name=mallory, UID=1001, GID=1001, home=/home/mallory, shell=/bin/bash, from=/dev/pts/0",
        true,
    );
    write_journal(&jdir, &input);

    let cfg = env.root.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[sources]]\nkind = \"journald\"\nname = \"remote\"\ndirectory = \"{}\"\n",
            jdir.display()
        ),
    )
    .unwrap();
    let mut opts = AgentOptions::new(&env);
    opts.extra_args = vec!["--config".into(), cfg.display().to_string()];
    let mut agent = AgentProcess::start(&opts);
    wait_for("the 14 journal entries in the store", WAIT, || {
        agent.check_running()?;
        let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
        let raw: Vec<u8> = c
            .streams
            .get(STREAM)
            .map(|s| s.iter().flat_map(|x| x.raw.clone()).collect())
            .unwrap_or_default();
        let n = raw.windows(9).filter(|w| w == b"__CURSOR=").count();
        if n >= 14 {
            Ok(())
        } else {
            Err(format!("{n} entries; agent log:\n{}", agent.log_tail(5)))
        }
    });
    agent.stop_clean(WAIT);

    let fmt = custody_evidence::timefmt::format_utc;
    let now = time::OffsetDateTime::now_utc();
    let out = Command::new(&bins().report)
        .arg("findings")
        .arg("--store")
        .arg(&env.store)
        .args(["--from", &fmt(now - time::Duration::days(1))])
        .args(["--to", &fmt(now + time::Duration::hours(1))])
        .output()
        .expect("run custody-report");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); stderr:\n{}\nstdout:\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings = v["findings"].as_array().expect("findings");
    let mut got: Vec<(String, String)> = findings
        .iter()
        .map(|f| {
            let key = if f["rule"] == "new_account" {
                f["user"].as_str()
            } else {
                f["ip"].as_str()
            };
            (
                f["rule"].as_str().unwrap_or("").to_string(),
                key.unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("failed_logon_burst".to_string(), ATTACKER.to_string()),
            ("new_account".to_string(), "mallory".to_string()),
        ],
        "exactly the planted findings: {v:#}"
    );
    for f in findings {
        assert_eq!(f["verified"], true, "{f:#}");
        let ev = f["evidence"].as_array().expect("evidence");
        let want = if f["rule"] == "new_account" { 1 } else { 12 };
        assert_eq!(ev.len(), want, "{f:#}");
        for e in ev {
            assert_eq!(e["stream"], STREAM);
            let text = rederive_evidence(&env.store, e);
            // A whole entry: from its cursor to the empty line ending it.
            assert!(text.starts_with("__CURSOR="), "{text}");
            assert!(text.ends_with("\n\n"), "{text:?}");
        }
    }
}
