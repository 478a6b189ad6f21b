//! Evidence bundles end to end: `custody-agent snapshot` on real files
//! (with a real agent having shipped them first), checked by the real
//! `custody-verify bundle` and by the tools auditors already have — `tar
//! xf` then `bagit.py --validate`, `sha256sum -c`, `ssh-keygen -Y verify`,
//! `zstd -t` — then every named tamper vector with its expected finding,
//! and a snapshot taken while the logs are written and rotated.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use custody_evidence::bundle::custody_log::EventLine;
use custody_evidence::Sha256;
use custody_tests::bundle::*;
use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A host with a live log, a plain rotation, a gzip and a zstd rotation;
/// the agent ships the live log, then stops. Returns the options used and
/// the log directory's files.
fn shipped_host(name: &str) -> (TestEnv, AgentOptions) {
    let env = TestEnv::new(name);
    let mut writer = LineWriter::new(env.log("app.log"), "bundle");
    writer.append(testdata_lines(), 300);
    fs::write(
        env.log("app.log.1"),
        b"older rotation line 1\nolder rotation line 2\n",
    )
    .unwrap();
    let gz = std::process::Command::new("sh")
        .arg("-c")
        .arg("printf 'gz rotation\\n' | gzip -n > app.log.2.gz && printf 'zst rotation\\n' | zstd -q -o app.log.3.zst")
        .current_dir(&env.logs)
        .status()
        .expect("sh");
    assert!(gz.success(), "gzip/zstd missing? (.ci/run installs them)");
    let opts = AgentOptions::new(&env).source("app", &format!("{}/app.log", env.logs.display()));
    let mut agent = AgentProcess::start(&opts);
    wait_for_ids(&env, writer.ids(), WAIT, || agent.check_running());
    assert_eq!(agent.sigterm(Duration::from_secs(30)).code(), Some(0));
    (env, opts)
}

fn take_snapshot(env: &TestEnv, opts: &AgentOptions, out: &Path) {
    take_snapshot_with(env, opts, out, &[]);
}

fn take_snapshot_with(env: &TestEnv, opts: &AgentOptions, out: &Path, more: &[&str]) {
    let out_s = out.to_string_lossy().into_owned();
    let mut args = vec![
        "--incident",
        "INC-2026-0042",
        "--operator",
        "alice",
        "--reason",
        "suspected intrusion on web01",
        "--out",
        &out_s,
    ];
    args.extend_from_slice(more);
    let snap = snapshot(opts, &args);
    assert_success("custody-agent snapshot", &snap);
    let stdout = String::from_utf8_lossy(&snap.stdout);
    assert!(stdout.contains("evidence INC-2026-0042_"), "{stdout}");
    assert!(out.is_file(), "no bundle at {}", out.display());
    assert!(
        !env.state.join("bundles").exists()
            || fs::read_dir(env.state.join("bundles")).unwrap().count() == 0,
        "--out must not leave a copy in the state directory"
    );
}

#[test]
fn snapshot_passes_custody_verify_and_the_auditors_tools() {
    let (env, opts) = shipped_host("bundle-interop");
    let bundle = env.root.join("incident.tar");
    // A small "disk image": pseudo-random bytes, not a multiple of 512.
    let image = env.root.join("disk.img");
    let mut rng = TestRng::new(7);
    let image_bytes: Vec<u8> = (0..3 * 1024 * 1024 + 17)
        .map(|_| rng.next_u64() as u8)
        .collect();
    fs::write(&image, &image_bytes).unwrap();
    // An access time older than the modification time: relatime would
    // update it on an ordinary read; O_NOATIME must leave it alone.
    let rotated = env.log("app.log.1");
    run_ok(
        "touch",
        &[
            "-a",
            "-d",
            "2001-02-03 04:05:06",
            &rotated.to_string_lossy(),
        ],
        &env.root,
    );
    let atime_before = fs::metadata(&rotated).unwrap().accessed().unwrap();
    take_snapshot_with(&env, &opts, &bundle, &["--image", &image.to_string_lossy()]);
    assert_eq!(
        fs::metadata(&rotated).unwrap().accessed().unwrap(),
        atime_before,
        "the snapshot changed a log's access time"
    );
    let pubkey = env.state.join("host_key.pub");

    // Our verifier, trusting the host key from an independent record, and
    // cross-checking the shipped objects in the store.
    let v = verify_bundle(
        &bundle,
        &[
            "--trusted-key",
            &pubkey.to_string_lossy(),
            "--store",
            &env.store.to_string_lossy(),
        ],
    );
    v.assert_clean();
    let j = v.json.as_ref().expect("json report");
    assert_eq!(j["signer_trusted"], Value::Bool(true), "{}", v.stdout);
    assert!(
        j["shipped_ranges_checked"].as_u64().unwrap() >= 1,
        "{}",
        v.stdout
    );
    assert!(
        j["store_objects_checked"].as_u64().unwrap() >= 3,
        "{}",
        v.stdout
    );
    assert_eq!(j["custody_events"], 1);

    // The auditors' tools on the extracted bag.
    let bag = extract(&bundle, &env.subdir("x"));
    let bagit = custody_tests::python::venv_script("bagit.py");
    run_ok(
        &bagit.to_string_lossy(),
        &["--quiet", "--validate", &bag.to_string_lossy()],
        &env.root,
    );
    run_ok("sha256sum", &["--quiet", "-c", "manifest-sha256.txt"], &bag);
    run_ok(
        "sha256sum",
        &["--quiet", "-c", "tagmanifest-sha256.txt"],
        &bag,
    );
    let tagmanifest = fs::File::open(bag.join("tagmanifest-sha256.txt")).unwrap();
    let verify = std::process::Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f", "allowed_signers", "-I"])
        .arg(&env.host_id)
        .args(["-n", "custody-bundle", "-s", "tagmanifest-sha256.txt.sig"])
        .current_dir(&bag)
        .stdin(tagmanifest)
        .output()
        .expect("ssh-keygen");
    assert_success("ssh-keygen -Y verify", &verify);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("Good \"custody-bundle\" signature"));

    // Byte-for-byte copies, compressed rotations included.
    let copies = bag
        .join("data/logs")
        .join(env.logs.strip_prefix("/").unwrap());
    for name in ["app.log", "app.log.1", "app.log.2.gz", "app.log.3.zst"] {
        assert_eq!(
            fs::read(copies.join(name)).unwrap(),
            fs::read(env.log(name)).unwrap(),
            "{name} is not a byte-for-byte copy"
        );
    }
    run_ok(
        "zstd",
        &["-q", "-t", &copies.join("app.log.3.zst").to_string_lossy()],
        &bag,
    );
    run_ok(
        "gzip",
        &["-t", &copies.join("app.log.2.gz").to_string_lossy()],
        &bag,
    );

    // The custody manifest says where each copy came from, with its facts.
    let manifest: Value =
        serde_json::from_slice(&fs::read(bag.join("custody-manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["incident_id"], "INC-2026-0042");
    assert_eq!(manifest["collected_by"], "alice");
    assert!(
        manifest.get("clock_offset_us").is_some(),
        "no clock offset field"
    );
    assert!(
        manifest["tool"]["build_sha256"].is_string(),
        "no build hash"
    );
    let items = manifest["items"].as_array().unwrap();
    let live = items
        .iter()
        .find(|i| i["original_path"] == Value::String(env.log("app.log").to_string_lossy().into()))
        .expect("app.log in the custody manifest");
    assert_eq!(live["kind"], "log");
    assert_eq!(live["file"]["size_at_start"], live["len"]);
    // Volatile state comes first (RFC 3227 order), and is there.
    assert_eq!(items[0]["kind"], "volatile");
    assert!(items
        .iter()
        .any(|i| i["path"] == "data/volatile/proc/net/tcp"));
    assert!(bag.join("data/volatile/summary.json").is_file());
    let kinds: Vec<&str> = items.iter().map(|i| i["kind"].as_str().unwrap()).collect();
    let first_log = kinds.iter().position(|k| *k == "log").unwrap();
    assert!(kinds[..first_log].iter().all(|k| *k != "log"));
    assert!(
        kinds[first_log..].iter().all(|k| *k != "volatile"),
        "{kinds:?}"
    );
}

#[test]
fn snapshot_without_out_goes_to_the_store() {
    let (env, opts) = shipped_host("bundle-store");
    let snap = snapshot(&opts, &["--incident", "INC-9", "--operator", "bob"]);
    assert_success("custody-agent snapshot", &snap);
    let dir = env.host_dir().join("bundles/INC-9");
    let tars: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no bundle directory {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(tars.len(), 1, "{tars:?}");
    let name = tars[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&format!("INC-9_{}_", env.host_id)) && name.ends_with(".tar"));
    verify_bundle(&tars[0], &["--store", &env.store.to_string_lossy()]).assert_clean();
    // The local working copy is gone once the store holds it.
    let leftovers = fs::read_dir(env.state.join("bundles"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0);
    // The store itself still verifies with a bundle in it, and says it saw one.
    let store_check = run_verify(&env.store, &[]);
    store_check.assert_clean();
    assert!(
        store_check
            .findings()
            .iter()
            .any(|f| f["kind"] == "bundle_present"
                && f["object"].as_str().is_some_and(|o| o.ends_with(&name))),
        "{}",
        store_check.stdout
    );
}

/// A tamper vector: what it does to a copy of the bundle, and the finding
/// `custody-verify bundle` must report (kind and, where given, file).
struct Vector {
    name: &'static str,
    kind: &'static str,
    file: Option<String>,
    extra: Vec<String>,
}

fn expect_finding(bundle: &Path, v: &Vector) {
    let extra: Vec<&str> = v.extra.iter().map(String::as_str).collect();
    let out = verify_bundle(bundle, &extra);
    assert_eq!(
        out.code,
        Some(1),
        "vector {}: expected exit 1, got {:?}\n{}\n{}",
        v.name,
        out.code,
        out.stdout,
        out.stderr
    );
    assert!(
        has_finding(&out, v.kind, v.file.as_deref()),
        "vector {}: expected finding {} file={:?}, report:\n{}",
        v.name,
        v.kind,
        v.file,
        out.stdout
    );
}

/// Rewrites `custody.jsonl` in an extracted bag with `lines`.
fn write_log(bag: &Path, lines: &[Vec<u8>]) {
    fs::write(bag.join("custody.jsonl"), lines.concat()).unwrap();
}

#[test]
fn every_tamper_vector_is_found() {
    let (env, opts) = shipped_host("bundle-tamper");
    let bundle = env.root.join("good.tar");
    take_snapshot(&env, &opts, &bundle);
    let pubkey = env
        .state
        .join("host_key.pub")
        .to_string_lossy()
        .into_owned();
    let good = fs::read(&bundle).unwrap();
    let copy = |name: &str| -> PathBuf {
        let p = env.root.join(format!("{name}.tar"));
        fs::write(&p, &good).unwrap();
        p
    };
    let extracted = |name: &str| -> PathBuf { extract(&bundle, &env.subdir(&format!("x-{name}"))) };
    let live = format!(
        "data/logs/{}/app.log",
        env.logs.strip_prefix("/").unwrap().display()
    );
    let mut vectors: Vec<(Vector, PathBuf)> = Vec::new();

    // 1. A flipped byte in a data file, in place in the tar.
    let p = copy("flipped");
    let mut bytes = fs::read(&p).unwrap();
    let needle = testdata_lines()[0].as_bytes();
    let needle = &needle[..needle.len().min(24)];
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("a log line in the tar");
    bytes[at] ^= 0x01;
    fs::write(&p, bytes).unwrap();
    vectors.push((
        Vector {
            name: "flipped byte",
            kind: "payload_hash_mismatch",
            file: Some(live.clone()),
            extra: vec![],
        },
        p,
    ));

    // 2. A deleted data file.
    let p = copy("deleted");
    let bag_name = extracted("names")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    run_ok(
        "tar",
        &[
            "--delete",
            "-f",
            &p.to_string_lossy(),
            &format!("{bag_name}/{live}"),
        ],
        &env.root,
    );
    vectors.push((
        Vector {
            name: "deleted file",
            kind: "payload_missing",
            file: Some(live.clone()),
            extra: vec![],
        },
        p,
    ));

    // 3. An added data file.
    let p = copy("added");
    python_append(
        &p,
        &format!("{bag_name}/data/logs/planted.log"),
        "file",
        "planted evidence\n",
    );
    vectors.push((
        Vector {
            name: "added file",
            kind: "payload_unlisted",
            file: Some("data/logs/planted.log".into()),
            extra: vec![],
        },
        p,
    ));

    // 4. An edited bag-info.txt.
    let bag = extracted("baginfo");
    let info = fs::read_to_string(bag.join("bag-info.txt")).unwrap();
    fs::write(
        bag.join("bag-info.txt"),
        info.replace("Contact-Name: alice", "Contact-Name: mallory"),
    )
    .unwrap();
    let p = env.root.join("baginfo.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "edited bag-info.txt",
            kind: "tag_hash_mismatch",
            file: Some("bag-info.txt".into()),
            extra: vec![],
        },
        p,
    ));

    // 5. A data file changed and both manifests re-hashed, but not re-signed.
    let bag = extracted("rehash");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(bag.join(&live))
        .unwrap();
    f.write_all(b"forged line\n").unwrap();
    drop(f);
    let rehash = "set -e; sha256sum $(cut -d' ' -f3- manifest-sha256.txt) > m && mv m manifest-sha256.txt; \
                  sha256sum $(cut -d' ' -f3- tagmanifest-sha256.txt) > t && mv t tagmanifest-sha256.txt";
    run_ok("sh", &["-c", rehash], &bag);
    run_ok("sha256sum", &["--quiet", "-c", "manifest-sha256.txt"], &bag);
    let p = env.root.join("rehash.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "re-hashed, not re-signed",
            kind: "signature_invalid",
            file: Some("tagmanifest-sha256.txt.sig".into()),
            extra: vec![],
        },
        p,
    ));

    // 6. The tag manifest re-signed by another key (allowed_signers left as is).
    let other = env.root.join("other_key");
    run_ok(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            &other.to_string_lossy(),
        ],
        &env.root,
    );
    let bag = extracted("otherkey");
    fs::remove_file(bag.join("tagmanifest-sha256.txt.sig")).unwrap();
    run_ok(
        "ssh-keygen",
        &[
            "-q",
            "-Y",
            "sign",
            "-f",
            &other.to_string_lossy(),
            "-n",
            "custody-bundle",
            "tagmanifest-sha256.txt",
        ],
        &bag,
    );
    let p = env.root.join("otherkey.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "signature by another key",
            kind: "signature_wrong_key",
            file: Some("tagmanifest-sha256.txt.sig".into()),
            extra: vec![],
        },
        p,
    ));

    // 6b. A consistent forgery: another key everywhere (allowed_signers
    // replaced, manifests re-hashed, re-signed). Self-consistent, so only
    // a trusted key from an independent record catches it.
    let bag = extracted("forgery");
    let other_pub = fs::read_to_string(format!("{}.pub", other.display())).unwrap();
    fs::write(
        bag.join("allowed_signers"),
        format!(
            "{} namespaces=\"custody-bundle\" {}",
            env.host_id, other_pub
        ),
    )
    .unwrap();
    run_ok("sh", &["-c", "set -e; sha256sum $(cut -d' ' -f3- tagmanifest-sha256.txt) > t && mv t tagmanifest-sha256.txt; rm tagmanifest-sha256.txt.sig"], &bag);
    run_ok(
        "ssh-keygen",
        &[
            "-q",
            "-Y",
            "sign",
            "-f",
            &other.to_string_lossy(),
            "-n",
            "custody-bundle",
            "tagmanifest-sha256.txt",
        ],
        &bag,
    );
    let p = env.root.join("forgery.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "consistent forgery, trusted key given",
            kind: "signature_wrong_key",
            file: Some("tagmanifest-sha256.txt.sig".into()),
            extra: vec!["--trusted-key".into(), pubkey.clone()],
        },
        p,
    ));

    // 7. Custody events: a second custodian appends `exported` with the
    // real binary and its own key; then the first event is removed, the
    // two are swapped, or the second is edited.
    let two = copy("custody-two");
    let custodian_state = env.subdir("custodian-state");
    let appended = agent_output([
        "custody-event".as_ref(),
        two.as_os_str(),
        "--action".as_ref(),
        "exported".as_ref(),
        "--operator".as_ref(),
        "bob".as_ref(),
        "--reason".as_ref(),
        "hand-over for root-cause analysis".as_ref(),
        "--state-dir".as_ref(),
        custodian_state.as_os_str(),
        "--host-id".as_ref(),
        "soc-workstation".as_ref(),
    ]);
    assert_success("custody-agent custody-event", &appended);
    assert!(!env.root.join("custody-two.tar.custody-tail.bak").exists());
    let out = verify_bundle(&two, &[]);
    out.assert_clean();
    assert_eq!(out.json.as_ref().unwrap()["custody_events"], 2);
    assert!(
        has_finding(&out, "custody_event_untrusted_key", Some("custody.jsonl:2")),
        "{}",
        out.stdout
    );
    // The bag itself was not touched: everything before custody.jsonl is identical.
    let two_bytes = fs::read(&two).unwrap();
    let log_at = good.len() - 1024 - 512 * 4;
    assert_eq!(&two_bytes[..log_at.min(two_bytes.len())], &good[..log_at]);
    let bag = extract(&two, &env.subdir("x-custody"));
    let log = fs::read(bag.join("custody.jsonl")).unwrap();
    let split = log.iter().position(|b| *b == b'\n').unwrap() + 1;
    let (first, second) = (log[..split].to_vec(), log[split..].to_vec());
    assert!(EventLine::decode(&second).is_ok());
    write_log(&bag, std::slice::from_ref(&second));
    let p = env.root.join("custody-removed.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "custody event removed",
            kind: "custody_chain_broken",
            file: Some("custody.jsonl:1".into()),
            extra: vec![],
        },
        p,
    ));
    write_log(&bag, &[second.clone(), first.clone()]);
    let p = env.root.join("custody-reordered.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "custody events reordered",
            kind: "custody_chain_broken",
            file: Some("custody.jsonl:2".into()),
            extra: vec![],
        },
        p,
    ));
    let edited = String::from_utf8(second.clone())
        .unwrap()
        .replace("\"actor\":\"bob\"", "\"actor\":\"eve\"");
    write_log(&bag, &[first.clone(), edited.into_bytes()]);
    let p = env.root.join("custody-edited.tar");
    repack(&bag, &p);
    vectors.push((
        Vector {
            name: "custody event edited",
            kind: "custody_event_signature_invalid",
            file: Some("custody.jsonl:2".into()),
            extra: vec![],
        },
        p,
    ));

    // 8. A truncated tar.
    let p = copy("truncated");
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(good.len() as u64 / 2 + 100).unwrap();
    vectors.push((
        Vector {
            name: "truncated tar",
            kind: "archive_truncated",
            file: None,
            extra: vec![],
        },
        p,
    ));

    // 9. A tar entry with `../`.
    let p = copy("dotdot");
    python_append(
        &p,
        &format!("{bag_name}/../escaped.txt"),
        "file",
        "outside\n",
    );
    vectors.push((
        Vector {
            name: "entry with ../",
            kind: "unsafe_path",
            file: Some(format!("{bag_name}/../escaped.txt")),
            extra: vec![],
        },
        p,
    ));

    // 10. A symlink entry.
    let p = copy("symlink");
    python_append(
        &p,
        &format!("{bag_name}/data/logs/link"),
        "symlink",
        "/etc/shadow",
    );
    vectors.push((
        Vector {
            name: "symlink entry",
            kind: "link_or_special_entry",
            file: Some(format!("{bag_name}/data/logs/link")),
            extra: vec![],
        },
        p,
    ));

    for (v, p) in &vectors {
        expect_finding(p, v);
    }
    // No custody event is appended to a bundle that does not verify.
    let refused = agent_output([
        "custody-event".as_ref(),
        vectors[0].1.as_os_str(),
        "--action".as_ref(),
        "verified".as_ref(),
        "--operator".as_ref(),
        "bob".as_ref(),
        "--reason".as_ref(),
        "check".as_ref(),
        "--state-dir".as_ref(),
        custodian_state.as_os_str(),
        "--host-id".as_ref(),
        "soc-workstation".as_ref(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not verify"));

    // 11. A shipped segment the bundle lists is removed from (a copy of) the store.
    let store_copy = env.root.join("store-copy");
    run_ok(
        "cp",
        &[
            "-a",
            &env.store.to_string_lossy(),
            &store_copy.to_string_lossy(),
        ],
        &env.root,
    );
    let report = verify_bundle(&bundle, &["--store", &store_copy.to_string_lossy()]);
    report.assert_clean();
    let shipped: Value =
        serde_json::from_slice(&fs::read(extracted("shipped").join("data/shipped.json")).unwrap())
            .unwrap();
    let record_key = shipped["segments"][0]["record_key"]
        .as_str()
        .expect("a shipped segment")
        .to_string();
    fs::remove_file(store_copy.join(&record_key)).unwrap();
    expect_finding(
        &bundle,
        &Vector {
            name: "shipped segment deleted from the store",
            kind: "shipped_object_missing",
            file: Some(record_key),
            extra: vec!["--store".into(), store_copy.to_string_lossy().into_owned()],
        },
    );
    // Nothing was extracted outside the working directory by verifying.
    assert!(!env.root.join("escaped.txt").exists());
    // The untouched bundle still verifies.
    verify_bundle(&bundle, &["--trusted-key", &pubkey]).assert_clean();
    let sha = Sha256::digest(&fs::read(&bundle).unwrap());
    assert_eq!(sha, Sha256::digest(&good));
}

/// A log edited on the host after it was shipped: the bundle's copy no
/// longer matches the shipped segment's hash over that byte range, which
/// the verifier reports (a warning about the host, not about the bundle).
#[test]
fn a_log_edited_after_shipping_shows_against_the_shipped_segment() {
    let (env, opts) = shipped_host("bundle-edited");
    let path = env.log("app.log");
    let mut bytes = fs::read(&path).unwrap();
    bytes[10] ^= 0x20;
    // Same inode, same length: an intruder's edit in place.
    let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&bytes).unwrap();
    drop(f);
    let bundle = env.root.join("edited.tar");
    take_snapshot(&env, &opts, &bundle);
    let out = verify_bundle(&bundle, &[]);
    assert_eq!(out.code, Some(0), "a warning only: {}", out.stdout);
    let live = format!(
        "data/logs/{}/app.log",
        env.logs.strip_prefix("/").unwrap().display()
    );
    assert!(
        has_finding(&out, "shipped_range_mismatch", Some(&live)),
        "{}",
        out.stdout
    );
}

#[test]
fn a_missing_bundle_is_exit_2() {
    let env = TestEnv::new("bundle-missing");
    let out = verify_bundle(&env.root.join("nope.tar"), &[]);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("nope.tar"), "{}", out.stderr);
}

/// Lines are written and the file rotated (renamed, a new one created) in
/// a tight loop while the snapshot runs. Every line written before the
/// snapshot started must be in the bundle, in one of the copies.
#[test]
fn snapshot_while_logs_are_written_and_rotated() {
    let env = TestEnv::new("bundle-live");
    let opts = AgentOptions::new(&env).source("app", &format!("{}/app.log", env.logs.display()));
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let logs = env.logs.clone();
    let (w, s) = (written.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut n = 0u64;
        let mut generation = 0u32;
        let open = |p: &Path| {
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let mut file = open(&logs.join("app.log"));
        while !s.load(Ordering::Relaxed) {
            for _ in 0..200 {
                writeln!(
                    file,
                    "line {n:08} of the live log, padding padding padding padding"
                )
                .unwrap();
                n += 1;
                w.store(n, Ordering::SeqCst);
            }
            if n.is_multiple_of(2000) {
                generation += 1;
                fs::rename(
                    logs.join("app.log"),
                    logs.join(format!("app.log-{generation:04}")),
                )
                .unwrap();
                file = open(&logs.join("app.log"));
            }
        }
        n
    });
    wait_for("the writer to get going", WAIT, || {
        let n = written.load(Ordering::SeqCst);
        if n >= 20_000 {
            Ok(())
        } else {
            Err(format!("{n} lines"))
        }
    });
    let before = written.load(Ordering::SeqCst);
    let bundle = env.root.join("live.tar");
    let snap = snapshot(
        &opts,
        &[
            "--incident",
            "INC-LIVE",
            "--operator",
            "carol",
            "--out",
            &bundle.to_string_lossy(),
        ],
    );
    stop.store(true, Ordering::Relaxed);
    let total = writer.join().unwrap();
    assert_success("custody-agent snapshot during writes", &snap);
    assert!(total > before);
    verify_bundle(&bundle, &[]).assert_clean();

    let bag = extract(&bundle, &env.subdir("x"));
    let copies = bag
        .join("data/logs")
        .join(env.logs.strip_prefix("/").unwrap());
    let mut seen = vec![false; total as usize];
    for entry in fs::read_dir(&copies).unwrap() {
        let bytes = fs::read(entry.unwrap().path()).unwrap();
        for line in bytes.split(|b| *b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"line ") {
                if let Some(n) = std::str::from_utf8(&rest[..8.min(rest.len())])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())
                {
                    if n < seen.len() {
                        seen[n] = true;
                    }
                }
            }
        }
    }
    let missing: Vec<usize> = (0..before as usize).filter(|i| !seen[*i]).collect();
    assert!(
        missing.is_empty(),
        "{} of the {before} lines written before the snapshot are not in the bundle (first: {:?})",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}
