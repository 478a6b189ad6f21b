//! Source kinds and file situations beyond rotation: binary login records
//! (wtmp/btmp) cut only at record boundaries, symlinked logs, files that
//! appear later, compressed files matched by the glob, `--start-at end`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use custody_tests::*;

const UTMP_RECORD: u64 = 384;
const WAIT: Duration = Duration::from_secs(60);

/// Binary utmp records made by util-linux's own `utmpdump -r`.
fn utmp_records(n: usize, first: usize) -> Vec<u8> {
    let mut text = String::new();
    for i in first..first + n {
        text.push_str(&format!(
            "[7] [{:05}] [ts/{}] [user{:04}] [pts/{:<9}] [10.1.{}.{:<13}] [10.1.{}.{:<9}] [2026-11-22T01:{:02}:{:02},000000+00:00]\n",
            1000 + i % 9000,
            i % 10,
            i % 10000,
            i % 100,
            i % 250,
            i % 250,
            i % 250,
            i % 250,
            (i / 60) % 60,
            i % 60
        ));
    }
    let mut child = Command::new("utmpdump")
        .arg("-r")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("utmpdump (util-linux) must be installed: apt-get install util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "utmpdump -r failed");
    assert_eq!(
        out.stdout.len() as u64,
        n as u64 * UTMP_RECORD,
        "utmpdump record size is not 384 here"
    );
    out.stdout
}

#[test]
fn wtmp_is_cut_only_at_record_boundaries() {
    let env = TestEnv::new("wtmp_records");
    let wtmp = env.log("wtmp");
    let all = utmp_records(40, 0);
    fs::write(&wtmp, &all[..(10 * UTMP_RECORD + 100) as usize]).unwrap();
    // Auto framing: a file named wtmp gets 384-byte records; segments are
    // small so many boundaries are exercised.
    let opts = AgentOptions::new(&env)
        .source("logon", &wtmp.display().to_string())
        .flag("segment-max-bytes", 4096)
        .flag("partial-line-wait-ms", 200);
    let mut agent = AgentProcess::start(&opts);
    // The torn 11th record must wait, even past the partial-line wait.
    let contents = wait_for("10 whole records in the store", WAIT, || {
        let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| e.to_string())?;
        let n: u64 = c.segments().map(|s| s.raw.len() as u64).sum();
        if n >= 10 * UTMP_RECORD {
            Ok(c)
        } else {
            Err(format!("{n} bytes"))
        }
    });
    std::thread::sleep(Duration::from_millis(800));
    let n: u64 = StoreContents::read(&env.store, &env.host_id)
        .unwrap()
        .segments()
        .map(|s| s.raw.len() as u64)
        .sum();
    assert_eq!(
        n,
        10 * UTMP_RECORD,
        "a partial record was shipped (segments: {:?})",
        contents.segment_count()
    );
    // The writer finishes the record and appends the rest.
    let mut f = OpenOptions::new().append(true).open(&wtmp).unwrap();
    f.write_all(&all[(10 * UTMP_RECORD + 100) as usize..])
        .unwrap();
    drop(f);
    wait_for("all 40 records in the store", WAIT, || {
        let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| e.to_string())?;
        let n: u64 = c.segments().map(|s| s.raw.len() as u64).sum();
        if n == all.len() as u64 {
            Ok(())
        } else {
            Err(format!("{n} of {} bytes", all.len()))
        }
    });
    assert_eq!(
        agent.sigterm(WAIT).code(),
        Some(0),
        "{}",
        agent.log_tail(30)
    );
    let store = StoreContents::read(&env.store, &env.host_id).unwrap();
    store.assert_clean();
    let mut joined = Vec::new();
    for seg in store.segments() {
        let r = seg.meta.range;
        assert_eq!(
            r.start % UTMP_RECORD,
            0,
            "segment {} starts inside a record: {r:?}",
            seg.meta.seq
        );
        assert_eq!(
            r.end % UTMP_RECORD,
            0,
            "segment {} ends inside a record: {r:?}",
            seg.meta.seq
        );
        assert!(!seg.meta.split.starts_mid_unit && !seg.meta.split.ends_mid_unit);
        assert!(seg.raw.len() <= 4096);
        assert_eq!(
            serde_json::to_value(seg.meta.framing).unwrap()["size"],
            serde_json::json!(UTMP_RECORD),
            "framing recorded in the segment"
        );
        joined.extend_from_slice(&seg.raw);
    }
    assert!(store.segment_count() > 2, "expected several segments");
    assert_eq!(joined, all, "the records in the store differ from the file");
    // And util-linux reads them back.
    let back = env.root.join("wtmp.back");
    fs::write(&back, &joined).unwrap();
    let out = Command::new("utmpdump").arg(&back).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("user00"))
            .count(),
        40
    );
}

#[test]
fn symlinked_log_and_file_appearing_later_and_compressed_ignored() {
    let env = TestEnv::new("symlink_later_gz");
    let real_dir = env.subdir("real");
    let real = real_dir.join("service.log");
    let mut writer = LineWriter::new(&real, "sym");
    writer.append(testdata_lines(), 200);
    let link = env.log("service.log");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    // A compressed rotation that also matches the glob: never ingested.
    let gz_src = env.root.join("old.log");
    fs::write(
        &gz_src,
        b"old content that must not be shipped ID=zzz-never\n",
    )
    .unwrap();
    let status = Command::new("gzip")
        .arg("-k")
        .arg(&gz_src)
        .status()
        .expect("gzip");
    assert!(status.success());
    fs::rename(env.root.join("old.log.gz"), env.log("service.log.2.gz")).unwrap();

    let glob = format!("{}/*.log*", env.logs.display());
    let opts = AgentOptions::new(&env).source("app", &glob);
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, writer.ids(), WAIT, || agent.check_running());
    // A file that appears after start is picked up.
    let mut later = LineWriter::new(env.log("later.log"), "late");
    later.append(testdata_lines(), 50);
    writer.append(testdata_lines(), 50);
    let mut all: Vec<String> = writer.ids().to_vec();
    all.extend_from_slice(later.ids());
    wait_for_ids(&env, &all, WAIT, || agent.check_running());
    assert_eq!(
        agent.sigterm(WAIT).code(),
        Some(0),
        "{}",
        agent.log_tail(30)
    );
    let store = StoreContents::read(&env.store, &env.host_id).unwrap();
    store.assert_clean();
    assert_exactly_once(&all, &store.line_ids());
    for seg in store.segments() {
        assert!(
            !seg.raw
                .windows(b"zzz-never".len())
                .any(|w| w == b"zzz-never"),
            "content of the .gz rotation was shipped in segment {}",
            seg.meta.seq
        );
        assert!(!seg
            .meta
            .source
            .as_file()
            .expect("file source")
            .path
            .ends_with(".gz"));
    }
    assert!(
        store
            .segments()
            .any(|s| s.meta.source.as_file().expect("file source").path
                == link.display().to_string()),
        "segments name the path the glob matched (the symlink)"
    );
}

#[test]
fn start_at_end_skips_existing_content_only_at_first_start() {
    let env = TestEnv::new("start_at_end");
    let path = env.log("app.log");
    let mut writer = LineWriter::new(&path, "old");
    writer.append(testdata_lines(), 100);
    let opts = AgentOptions::new(&env)
        .source("app", &path.display().to_string())
        .flag("start-at", "end");
    let mut agent = AgentProcess::start(&opts);
    // Wait until the agent follows the file (status lists it), then write.
    wait_for("the agent to follow app.log", WAIT, || {
        let st = read_status(&env.state)?;
        let n: usize = st["sources"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["files"].as_array().map_or(0, |f| f.len()))
                    .sum()
            })
            .unwrap_or(0);
        if n == 1 {
            Ok(())
        } else {
            Err(format!("{n} files followed"))
        }
    });
    let mut new_lines = LineWriter::new(&path, "new");
    new_lines.append(testdata_lines(), 30);
    wait_for_ids(&env, new_lines.ids(), WAIT, || agent.check_running());
    agent.kill9();
    // After a restart, what was written meanwhile is read: `end` applies
    // only to the very first start.
    new_lines.append(testdata_lines(), 30);
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, new_lines.ids(), WAIT, || agent.check_running());
    assert_eq!(agent.sigterm(WAIT).code(), Some(0));
    let store = StoreContents::read(&env.store, &env.host_id).unwrap();
    store.assert_clean();
    assert_exactly_once(new_lines.ids(), &store.line_ids());
}
