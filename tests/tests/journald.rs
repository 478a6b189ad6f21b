//! The journald source against real journal files: `systemd-journal-remote`
//! writes them from export-format input made here (with binary fields
//! holding NUL bytes and empty lines, a field that is not UTF-8 and a field
//! larger than a segment), the real agent reads them through the real
//! `journalctl`, and the store must hold exactly what
//! `journalctl --directory DIR -o export` prints: every byte, once, in
//! order, across a `kill -9`, with the cursor resumed from the checkpoint.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custody_tests::{
    push_binary_field, read_status, run_verify, wait_for, write_journal, AgentOptions,
    AgentProcess, StoreContents, StoredSegment, TestEnv,
};
use serde_json::Value;

const STREAM: &str = "os.remote";
const WAIT: Duration = Duration::from_secs(30);

/// Export-format input for `n` entries tagged `tag`, at realtime `t0` µs
/// on. Entry 3 has a binary field with NUL, LF and empty lines and a text
/// field that is not UTF-8; entry 5 a field of `big` bytes.
fn export_input(tag: &str, n: usize, t0: u64, big: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..n {
        let t = t0 + i as u64 * 1000;
        out.extend_from_slice(
            format!(
                "__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={t}\n\
                 _BOOT_ID=0123456789abcdef0123456789abcdef\n_MACHINE_ID=fedcba9876543210fedcba9876543210\n\
                 _HOSTNAME=auditee\nSYSLOG_IDENTIFIER=custody-test\nMESSAGE={tag} entry {i:04}\n"
            )
            .as_bytes(),
        );
        if i == 3 {
            push_binary_field(
                &mut out,
                "PAYLOAD",
                b"nul\0byte\n\nempty line above\n\nFAKE=1\n\n\xff\xfe end",
            );
            out.extend_from_slice(b"LATIN1=caf\xe9 cr\xe8me\n");
        }
        if i == 5 && big > 0 {
            let data: Vec<u8> = (0..big).map(|k| (k % 251) as u8).collect();
            push_binary_field(&mut out, "BIG", &data);
        }
        out.push(b'\n');
    }
    out
}

/// What the journal holds, as the stock tool exports it.
fn exported(dir: &Path) -> Vec<u8> {
    let out = Command::new("journalctl")
        .arg(format!("--directory={}", dir.display()))
        .args(["--output=export", "--no-pager"])
        .output()
        .expect("running journalctl (package systemd)");
    assert!(
        out.status.success(),
        "journalctl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn cursors(export: &[u8]) -> Vec<String> {
    export
        .split(|&b| b == b'\n')
        .filter_map(|l| l.strip_prefix(b"__CURSOR="))
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

/// The pid of the journalctl the agent runs.
fn journalctl_child(agent: u32) -> u32 {
    wait_for("the agent's journalctl child", WAIT, || {
        for entry in fs::read_dir("/proc").map_err(|e| e.to_string())? {
            let Ok(pid) = entry
                .map_err(|e| e.to_string())?
                .file_name()
                .to_string_lossy()
                .parse::<u32>()
            else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid …
            let Some((comm, rest)) = stat.split_once(") ") else {
                continue;
            };
            let ppid = rest.split(' ').nth(1).and_then(|p| p.parse::<u32>().ok());
            if comm.ends_with("(journalctl") && ppid == Some(agent) {
                return Ok(pid);
            }
        }
        Err("no journalctl child yet".to_string())
    })
}

/// Writes the agent config with one journald source reading `dir`.
fn config(env: &TestEnv, dir: &Path, extra: &str) -> PathBuf {
    let path = env.root.join("agent.toml");
    fs::write(
        &path,
        format!(
            "[[sources]]\nkind = \"journald\"\nname = \"remote\"\ndirectory = \"{}\"\n{extra}",
            dir.display()
        ),
    )
    .unwrap();
    path
}

fn options(env: &TestEnv, config: &Path) -> AgentOptions {
    let mut opts = AgentOptions::new(env).flag("segment-max-bytes", 65536);
    opts.extra_args = vec!["--config".into(), config.display().to_string()];
    opts
}

/// The journal stream's segments, and their raw bytes joined in seq order.
fn stored(env: &TestEnv) -> Result<(Vec<StoredSegment>, Vec<u8>), String> {
    let contents = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
    if !contents.problems.is_empty() {
        return Err(format!("store problems: {:?}", contents.problems));
    }
    let segs = contents.streams.get(STREAM).cloned().unwrap_or_default();
    let raw = segs.iter().flat_map(|s| s.raw.clone()).collect();
    Ok((segs, raw))
}

/// Waits until the stored stream is byte-identical to `want`.
fn wait_identical(env: &TestEnv, agent: &mut AgentProcess, want: &[u8]) -> Vec<StoredSegment> {
    wait_for(
        "the stored journal stream to equal journalctl's export",
        WAIT,
        || {
            if let Err(e) = agent.check_running() {
                panic!("{e}");
            }
            let (segs, raw) = stored(env)?;
            if raw == want {
                Ok(segs)
            } else {
                Err(format!(
                    "{} of {} bytes in {} segments; agent log:\n{}",
                    raw.len(),
                    want.len(),
                    segs.len(),
                    agent.log_tail(5)
                ))
            }
        },
    )
}

/// Records tell where each segment's bytes are in the journal.
fn check_records(segs: &[StoredSegment], journal_dir: &Path) {
    let mut offset = 0;
    for s in segs {
        let m = &s.meta;
        let rec: Value = serde_json::from_slice(&s.meta_bytes).unwrap();
        assert_eq!(
            rec["framing"],
            serde_json::json!({"kind": "journal_export"})
        );
        let j = m.source.as_journal().expect("a journal source");
        assert_eq!(j.journal, format!("directory:{}", journal_dir.display()));
        assert_eq!(m.range.start, offset, "seq {}: ranges join", m.seq.0);
        assert_eq!(m.range.end - m.range.start, s.raw.len() as u64);
        offset = m.range.end;
        let in_segment = cursors(&s.raw);
        if !m.split.starts_mid_unit {
            assert_eq!(Some(&j.first_cursor), in_segment.first(), "seq {}", m.seq.0);
        }
        if !m.split.ends_mid_unit {
            assert!(
                s.raw.ends_with(b"\n\n"),
                "seq {} ends with an entry",
                m.seq.0
            );
            if let Some(last) = in_segment.last() {
                assert_eq!(&j.last_cursor, last, "seq {}", m.seq.0);
            }
        }
        assert!(j.lost_cursor.is_none());
    }
}

#[test]
fn journal_entries_are_stored_byte_for_byte_and_resumed_by_cursor_after_kill_9() {
    let env = TestEnv::new("journald-bytes");
    let jdir = env.subdir("journal");
    // 200 KB in one field: an entry larger than a 64 KiB segment.
    write_journal(
        &jdir,
        &export_input("first", 40, 1_700_000_000_000_000, 200_000),
    );
    let cfg = config(&env, &jdir, "");
    let opts = options(&env, &cfg);
    let mut agent = AgentProcess::start(&opts);
    agent.wait_started(&env.state, WAIT);

    let want = exported(&jdir);
    assert!(
        want.windows(4).any(|w| w == b"\0byt"),
        "the binary field is exported as is"
    );
    let segs = wait_identical(&env, &mut agent, &want);
    assert!(
        segs.iter().any(|s| s.meta.split.ends_mid_unit),
        "the big entry was stored in pieces"
    );

    // Followed while running.
    write_journal(&jdir, &export_input("second", 30, 1_700_000_100_000_000, 0));
    let want = exported(&jdir);
    wait_identical(&env, &mut agent, &want);

    // journalctl crashes: restarted from the last cursor, nothing lost or twice.
    let child = journalctl_child(agent.pid());
    let killed = Command::new("sh")
        .args(["-c", &format!("kill -9 {child}")])
        .status()
        .expect("sh");
    assert!(killed.success(), "kill -9 journalctl {child}");
    write_journal(
        &jdir,
        &export_input("after-crash", 10, 1_700_000_150_000_000, 0),
    );
    let want = exported(&jdir);
    wait_identical(&env, &mut agent, &want);
    wait_for("status.json to count the journalctl restart", WAIT, || {
        let st = read_status(&env.state)?;
        let j = &st["sources"][0]["journal"];
        (j["restarts"].as_u64() >= Some(1))
            .then_some(())
            .ok_or_else(|| j.to_string())
    });
    assert!(
        agent.log().contains("journalctl ended"),
        "{}",
        agent.log_tail(10)
    );

    // kill -9, more entries, restart: nothing lost, nothing twice.
    agent.kill9();
    write_journal(
        &jdir,
        &export_input("third", 30, 1_700_000_200_000_000, 150_000),
    );
    let mut agent = AgentProcess::start(&opts);
    agent.wait_started(&env.state, WAIT);
    let want = exported(&jdir);
    let segs = wait_identical(&env, &mut agent, &want);
    check_records(&segs, &jdir);

    // The checkpointed cursor is the last entry's, in status.json too.
    let last = cursors(&want).pop().unwrap();
    wait_for("status.json to show the committed cursor", WAIT, || {
        let st = read_status(&env.state)?;
        let src = &st["sources"][0]["journal"];
        if src["committed_cursor"] == Value::String(last.clone()) {
            Ok(())
        } else {
            Err(src.to_string())
        }
    });
    agent.stop_clean(WAIT);
    // The second verifier of FORMAT.md §10 accepts the journal stream.
    run_verify(&env.store, &[]).assert_clean();

    // FORMAT.md §16.1: the stored stream rebuilds journal files that hold
    // the same entries (only the cursors, which name the file, differ).
    let rebuilt = env.subdir("rebuilt");
    let (_, raw) = stored(&env).unwrap();
    write_journal(&rebuilt, &raw);
    let without_cursors = |export: &[u8]| -> Vec<u8> {
        export
            .split_inclusive(|&b| b == b'\n')
            .filter(|l| !l.starts_with(b"__CURSOR="))
            .flatten()
            .copied()
            .collect()
    };
    assert!(
        without_cursors(&exported(&rebuilt)) == without_cursors(&want),
        "journal files rebuilt from the store differ from the original"
    );
}

#[test]
fn a_vanished_cursor_is_reported_and_reading_starts_again_at_the_oldest_entry() {
    let env = TestEnv::new("journald-lost");
    let jdir = env.subdir("journal");
    write_journal(&jdir, &export_input("old", 10, 1_700_000_000_000_000, 0));
    let cfg = config(&env, &jdir, "");
    let opts = options(&env, &cfg);
    let mut agent = AgentProcess::start(&opts);
    agent.wait_started(&env.state, WAIT);
    let old = exported(&jdir);
    wait_identical(&env, &mut agent, &old);
    agent.stop_clean(WAIT);
    let old_last = cursors(&old).pop().unwrap();

    // The journal is vacuumed and a new one begins: the cursor is gone.
    fs::remove_file(jdir.join("remote.journal")).unwrap();
    write_journal(&jdir, &export_input("new", 8, 1_700_000_500_000_000, 0));
    let new = exported(&jdir);
    assert!(!cursors(&new).contains(&old_last));

    let mut agent = AgentProcess::start(&opts);
    agent.wait_started(&env.state, WAIT);
    let mut want = old.clone();
    want.extend_from_slice(&new);
    let segs = wait_identical(&env, &mut agent, &want);
    let marked: Vec<_> = segs
        .iter()
        .filter_map(|s| {
            s.meta
                .source
                .as_journal()?
                .lost_cursor
                .clone()
                .map(|c| (s.meta.seq.0, c))
        })
        .collect();
    assert_eq!(
        marked.len(),
        1,
        "one segment records the lost cursor: {marked:?}"
    );
    assert_eq!(marked[0].1, old_last);
    let first_new = segs.iter().find(|s| s.meta.seq.0 == marked[0].0).unwrap();
    assert!(
        first_new.raw.starts_with(&new[..64]),
        "reading began at the oldest entry"
    );

    wait_for("status.json to list the lost cursor", WAIT, || {
        let st = read_status(&env.state)?;
        let lost = &st["sources"][0]["journal"]["lost_cursors"];
        if lost[0]["cursor"] == Value::String(old_last.clone()) {
            Ok(())
        } else {
            Err(st.to_string())
        }
    });
    assert!(
        agent.log().contains("is no longer in the journal"),
        "the log says so: {}",
        agent.log_tail(20)
    );
    agent.stop_clean(WAIT);
    let verdict = run_verify(&env.store, &[]);
    assert!(
        verdict.stdout.contains("journal_cursor_lost"),
        "the verifier reports the lost cursor: {}",
        verdict.stdout
    );
}

#[test]
fn a_missing_journalctl_is_named_and_the_other_sources_keep_going() {
    let env = TestEnv::new("journald-missing");
    let jdir = env.subdir("journal");
    let cfg = config(&env, &jdir, "journalctl = \"/nonexistent/journalctl\"\n");
    let log = env.log("app.log");
    fs::write(&log, "").unwrap();
    let opts = options(&env, &cfg).source("app", &log.display().to_string());
    let mut agent = AgentProcess::start(&opts);
    agent.wait_started(&env.state, WAIT);
    fs::write(&log, "a line the file source must still ship\n").unwrap();
    wait_for("the file source to ship its line", WAIT, || {
        agent.check_running()?;
        let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
        let got = c
            .streams
            .values()
            .flatten()
            .any(|s| s.raw.ends_with(b"still ship\n"));
        got.then_some(()).ok_or_else(|| "not yet".to_string())
    });
    let errors = wait_for("status.json to name the missing journalctl", WAIT, || {
        let st = read_status(&env.state)?;
        let errors = st["sources"][0]["errors"].to_string();
        if errors.contains("/nonexistent/journalctl not found") {
            Ok(errors)
        } else {
            Err(st.to_string())
        }
    });
    assert!(errors.contains("the other sources keep going"), "{errors}");
    assert!(
        agent
            .log()
            .contains("source remote: journalctl program /nonexistent/journalctl not found"),
        "the log names the source: {}",
        agent.log_tail(10)
    );
    // `custody-agent status` names the source and exits 1.
    let out = custody_tests::agent_output([
        "status".as_ref(),
        "--state-dir".as_ref(),
        env.state.as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("/nonexistent/journalctl not found"), "{text}");
    agent.stop_clean(WAIT);
}
