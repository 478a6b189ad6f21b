//! Web-root inventories end to end: the real agent with a `kind =
//! "webroot"` source inventories a web root every 2 s into a filesystem
//! store (several parts per inventory); a webshell is planted, a page
//! changed, a stylesheet removed; `custody-report findings` reports exactly
//! those three, each citing the inventory line that shows it, re-derived
//! with `zstd -dc | tail -c | head -c | sha256sum`. A flipped byte in the
//! inventory that first shows the webshell keeps that inventory out of the
//! comparison, and the report says so. `custody-verify store` verifies the
//! inventory stream as any other.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use custody_evidence::Sha256;
use custody_tests::*;
use serde_json::Value;
use time::OffsetDateTime;

const WAIT: Duration = Duration::from_secs(90);
const SHELL: &[u8] = b"<?php @eval($_POST['x']); ?>\n";

fn report(args: &[&str]) -> Value {
    let out = Command::new(&bins().report)
        .args(args)
        .output()
        .expect("run custody-report");
    // Exit 1: some input did not verify (the tampered run).
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "custody-report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let clean = v["unverified_segments"]
        .as_array()
        .is_some_and(|u| u.is_empty());
    assert_eq!(
        out.status.code() == Some(0),
        clean,
        "exit status says whether all verified"
    );
    v
}

/// (taken, complete) of every inventory in the store, and the segments.
fn inventories(env: &TestEnv) -> Result<Vec<(OffsetDateTime, bool)>, String> {
    let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
    let mut out: Vec<(OffsetDateTime, bool)> = Vec::new();
    for s in c.segments() {
        if let Some(i) = s.meta.source.as_inventory() {
            match out.iter_mut().find(|(t, _)| *t == i.taken) {
                Some(e) => e.1 |= i.last_part,
                None => out.push((i.taken, i.last_part)),
            }
        }
    }
    out.sort();
    Ok(out)
}

fn write(root: &Path, rel: &str, body: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

#[test]
fn files_planted_changed_and_removed_in_a_web_root_are_found_and_cited() {
    let env = TestEnv::new("report-webroot");
    let root = env.root.join("www/html");
    write(&root, "index.html", b"<h1>Agency portal</h1>\n");
    write(&root, "css/old.css", b"body { color: black }\n");
    // Enough files that one inventory spans several 4 KiB segments.
    for i in 0..80 {
        write(
            &root,
            &format!("docs/notice-{i:03}.html"),
            format!("<p>notice {i}</p>\n").as_bytes(),
        );
    }
    std::fs::create_dir_all(root.join("uploads")).unwrap();
    let config = env.root.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"webroot\"\npaths = [\"{}\"]\ninterval_seconds = 2\n",
            root.display()
        ),
    )
    .unwrap();
    let mut opts = AgentOptions::new(&env).flag("segment-max-bytes", 4096);
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    let mut agent = AgentProcess::start(&opts);
    wait_for("a first complete inventory", WAIT, || {
        agent.check_running()?;
        let inv = inventories(&env)?;
        inv.iter()
            .any(|(_, done)| *done)
            .then_some(())
            .ok_or_else(|| format!("{inv:?}"))
    });
    let planted_at = OffsetDateTime::now_utc();
    write(&root, "uploads/shell.php", SHELL);
    write(&root, "index.html", b"<h1>hacked by nobody</h1>\n");
    std::fs::remove_file(root.join("css/old.css")).unwrap();
    wait_for("an inventory taken after the planting", WAIT, || {
        agent.check_running()?;
        let inv = inventories(&env)?;
        inv.iter()
            .any(|(t, done)| *done && *t > planted_at + time::Duration::seconds(1))
            .then_some(())
            .ok_or_else(|| format!("{inv:?}"))
    });
    agent.stop_clean(WAIT);
    let c = StoreContents::read(&env.store, &env.host_id).unwrap();
    let parts = c
        .segments()
        .filter(|s| s.meta.source.as_inventory().is_some_and(|i| i.part > 0))
        .count();
    assert!(
        parts > 0,
        "an inventory of this root spans several segments"
    );

    let verify = Command::new(&bins().verify)
        .args(["store", env.store.to_str().unwrap()])
        .output()
        .unwrap();
    let verify_text = String::from_utf8_lossy(&verify.stdout);
    assert!(
        verify.status.success() && verify_text.contains(" 0 error(s)"),
        "{verify_text}"
    );

    let store = env.store.to_str().unwrap();
    let from = custody_evidence::timefmt::format_utc(planted_at);
    let to = custody_evidence::timefmt::format_utc(
        OffsetDateTime::now_utc() + time::Duration::minutes(5),
    );
    let window = ["findings", "--store", store, "--from", &from, "--to", &to];
    let v = report(&window);
    assert_eq!(v["unverified_segments"], serde_json::json!([]), "{v:#}");
    let findings = v["findings"].as_array().unwrap();
    let got: Vec<(&str, &str, String)> = findings
        .iter()
        .map(|f| {
            let s = f["summary"].as_str().unwrap();
            let path = s
                .split_whitespace()
                .find(|w| w.contains(root.to_str().unwrap()))
                .unwrap_or("")
                .trim_end_matches(':')
                .to_string();
            (
                f["rule"].as_str().unwrap(),
                f["severity"].as_str().unwrap(),
                path,
            )
        })
        .collect();
    let r = root.display();
    let mut want = vec![
        ("webroot_change", "high", format!("{r}/uploads/shell.php")),
        ("webroot_change", "medium", format!("{r}/index.html")),
        ("webroot_change", "low", format!("{r}/css/old.css")),
    ];
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "exactly the planted changes: {v:#}");
    let shell_hash = Sha256::digest(SHELL).to_hex();
    for f in findings {
        assert_eq!(f["verified"], true, "{f:#}");
        let ev = f["evidence"].as_array().unwrap();
        let want = if f["severity"] == "medium" { 2 } else { 1 };
        assert_eq!(
            ev.len(),
            want,
            "a change cites the new line and the old: {f:#}"
        );
        for e in ev {
            let line = rederive_evidence(&env.store, e);
            let entry: Value = serde_json::from_str(&line).expect("an inventory line");
            assert!(f["summary"]
                .as_str()
                .unwrap()
                .contains(entry["path"].as_str().unwrap()));
        }
        if f["severity"] == "high" {
            let line = rederive_evidence(&env.store, &ev[0]);
            assert!(line.contains(&shell_hash), "{line}");
            assert!(f["summary"].as_str().unwrap().contains(&shell_hash));
        }
    }
    let notes: Vec<&str> = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert!(
        notes.iter().all(|k| *k == "new_ip_lookback_short"),
        "no other note on a clean run: {notes:?}"
    );
    // The HTML answers the form's "unauthorised files" question with them.
    let mut html_args = window.to_vec();
    html_args.extend(["--format", "html", "--lang", "zh-TW"]);
    let html = Command::new(&bins().report)
        .args(&html_args)
        .output()
        .unwrap();
    let html = String::from_utf8_lossy(&html.stdout);
    assert!(
        html.contains("網站目錄檔案新增、變更或刪除"),
        "rule named in zh-TW"
    );
    assert!(html.contains("shell.php"), "the file named");

    // Coverage does not count the inventory as kept web logs.
    let cov_out = Command::new(&bins().report)
        .args(["coverage", "--store", store])
        .output()
        .unwrap();
    let cov = String::from_utf8_lossy(&cov_out.stdout);
    assert!(!cov.contains("web.webroot"), "{cov}");

    // Tamper: the inventory that first shows the webshell.
    let shell = findings.iter().find(|f| f["severity"] == "high").unwrap();
    let object = env
        .store
        .join(shell["evidence"][0]["object"].as_str().unwrap());
    let seq = shell["evidence"][0]["seq"].as_u64().unwrap();
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();
    let v = report(&window);
    assert!(
        v["unverified_segments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["seq"] == seq),
        "{v:#}"
    );
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "webroot_inventory_unverified"),
        "{v:#}"
    );
    for f in v["findings"].as_array().unwrap() {
        for e in f["evidence"].as_array().unwrap() {
            assert!(
                !(e["object"] == shell["evidence"][0]["object"]),
                "nothing cites the tampered inventory: {f:#}"
            );
        }
    }
}
