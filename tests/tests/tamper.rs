//! Tamper detection, end to end: the real agent writes a store, then each
//! named tamper vector is applied to a fresh copy (`cp -a`) and the real
//! `custody-verify store --json` must exit 1 with the finding kind the
//! verifier defines for it (evidence/src/verify.rs, FORMAT.md
//! "Verification findings"), naming the stream, seq and object touched.
//!
//! One agent run serves every vector: the store is read-only evidence, and
//! each vector works on its own copy, so they cannot disturb one another.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custody_tests::lines::testdata_dir;
use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// One stored segment: its seq and the two object paths, relative to the
/// store root so they can be found again in a copy.
#[derive(Debug, Clone)]
struct Seg {
    seq: u64,
    payload: PathBuf,
    record: PathBuf,
}

/// One stored digest: its seq and the body and signature paths, relative
/// to the store root.
#[derive(Debug, Clone)]
struct Dig {
    seq: u64,
    body: PathBuf,
    sig: PathBuf,
}

/// What the untampered store holds.
struct Base {
    store: PathBuf,
    host: String,
    /// Stream id → segments in seq order.
    streams: Vec<(String, Vec<Seg>)>,
    digests: Vec<Dig>,
    /// The agent's state directory, whose `host_key` a forger with the key
    /// uses to re-sign.
    state: PathBuf,
}

/// What a tamper vector must produce: a finding of `kind`, and where given,
/// for that stream and seq, with an object name containing `object`.
#[derive(Debug, Clone)]
struct Expect {
    kind: &'static str,
    stream: Option<String>,
    seq: Option<u64>,
    object: Option<String>,
}

impl Expect {
    fn matches(&self, f: &Value) -> bool {
        let s = |k: &str| f.get(k).and_then(Value::as_str);
        let stream_ok = match &self.stream {
            Some(w) => s("stream") == Some(w.as_str()),
            None => true,
        };
        let seq_ok = match self.seq {
            Some(w) => f.get("seq").and_then(Value::as_u64) == Some(w),
            None => true,
        };
        let object_ok = match &self.object {
            Some(w) => s("object").is_some_and(|o| o.contains(w.as_str())),
            None => true,
        };
        s("kind") == Some(self.kind) && stream_ok && seq_ok && object_ok
    }
}

fn rel(store: &Path, p: &Path) -> PathBuf {
    p.strip_prefix(store)
        .unwrap_or_else(|_| panic!("{} is not under {}", p.display(), store.display()))
        .to_path_buf()
}

/// The file name stem `<seq:020>-` every object of one seq starts with.
fn seq_stem(seq: u64) -> String {
    format!("{seq:020}-")
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| {
            e.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path()
        })
        .collect();
    v.sort();
    v
}

fn digests_of(env: &TestEnv) -> Vec<Dig> {
    let dir = env.host_dir().join("digests");
    if !dir.is_dir() {
        return Vec::new();
    }
    sorted_files(&dir)
        .into_iter()
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let stem = name.strip_suffix(".digest.json")?;
            let seq = stem.split_once('-')?.0.parse().ok()?;
            let sig = p.with_file_name(format!("{name}.sig"));
            Some(Dig {
                seq,
                body: rel(&env.store, &p),
                sig: rel(&env.store, &sig),
            })
        })
        .collect()
}

/// Runs the agent over two realistic logs with small segments and a short
/// digest interval until both files are stored in full and at least three
/// digests exist, then stops it with SIGTERM.
fn produce(env: &TestEnv) -> Base {
    let data = testdata_dir();
    let os = env.log("syslog");
    let web = env.log("access.log");
    for (from, to) in [("Linux_2k.log", &os), ("Apache_2k.log", &web)] {
        let src = data.join(from);
        fs::copy(&src, to).unwrap_or_else(|e| {
            panic!(
                "cannot copy test data {} (is shared/ next to the repository?): {e}",
                src.display()
            )
        });
    }
    let want: Vec<(PathBuf, Vec<u8>)> = [&os, &web]
        .iter()
        .map(|p| ((*p).clone(), fs::read(p).expect("just written")))
        .collect();
    let opts = AgentOptions::new(env)
        .source("os", &os.display().to_string())
        .source("web", &web.display().to_string())
        .flag("segment-max-bytes", 16384)
        .flag("digest-interval-ms", 300);
    let mut agent = AgentProcess::start(&opts);
    wait_for(
        "both logs stored in full in ≥ 5 segments each, and ≥ 3 digests",
        WAIT,
        || {
            if let Err(e) = agent.check_running() {
                panic!("{e}");
            }
            let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
            let complete = want.iter().all(|(path, bytes)| {
                c.files.iter().any(|f| {
                    f.paths.contains(&path.display().to_string())
                        && f.start == 0
                        && f.bytes == *bytes
                })
            });
            let counts: Vec<usize> = c.streams.values().map(Vec::len).collect();
            let digests = digests_of(env).len();
            if complete && counts.len() == 2 && counts.iter().all(|&n| n >= 5) && digests >= 3 {
                Ok(())
            } else {
                Err(format!(
                "complete={complete}, segments per stream {counts:?}, {digests} digests, problems {:?}",
                c.problems
            ))
            }
        },
    );
    agent.stop_clean(Duration::from_secs(30));

    let contents =
        StoreContents::read(&env.store, &env.host_id).expect("store readable after shutdown");
    contents.assert_clean();
    let streams = contents
        .streams
        .iter()
        .map(|(id, segs)| {
            let segs = segs
                .iter()
                .map(|s| Seg {
                    seq: s.meta.seq.0,
                    payload: rel(&env.store, &s.payload_path),
                    record: rel(&env.store, &s.meta_path),
                })
                .collect();
            (id.clone(), segs)
        })
        .collect();
    Base {
        store: env.store.clone(),
        host: env.host_id.clone(),
        streams,
        digests: digests_of(env),
        state: env.state.clone(),
    }
}

/// `cp -a` of the base store into a new directory of `env`.
fn copy_store(base: &Base, env: &TestEnv, name: &str) -> PathBuf {
    let dest = env.root.join(format!("copy-{name}"));
    let out = Command::new("cp")
        .arg("-a")
        .arg(&base.store)
        .arg(&dest)
        .output()
        .expect("cannot run cp");
    assert!(
        out.status.success(),
        "cp -a {} {}: {}",
        base.store.display(),
        dest.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    dest
}

fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Writes `bytes` over a store file. Store files are 0444; the tests run as
/// root, which writes them anyway, as an intruder with root would.
fn overwrite(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).unwrap_or_else(|e| panic!("cannot overwrite {}: {e}", p.display()));
}

fn remove(p: &Path) {
    fs::remove_file(p).unwrap_or_else(|e| panic!("cannot remove {}: {e}", p.display()));
}

/// Signs `body` with a freshly made Ed25519 key (not the host's) in the
/// custody-digest namespace, exactly as an attacker with OpenSSH would.
fn sign_with_foreign_key(scratch: &Path, body: &[u8]) -> Vec<u8> {
    fs::create_dir_all(scratch).expect("scratch dir");
    let key = scratch.join("intruder_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "intruder", "-f"])
        .arg(&key)
        .output()
        .expect("cannot run ssh-keygen (Debian package: openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen -t ed25519: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = scratch.join("body");
    fs::write(&msg, body).expect("write body copy");
    let out = Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "custody-digest", "-f"])
        .arg(&key)
        .arg(&msg)
        .output()
        .expect("cannot run ssh-keygen -Y sign");
    assert!(
        out.status.success(),
        "ssh-keygen -Y sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read(&scratch.join("body.sig"))
}

type Tamper = fn(&Base, &Path, &Path) -> Vec<Expect>;

fn stream(base: &Base, i: usize) -> (&str, &[Seg]) {
    let (id, segs) = &base.streams[i];
    (id, segs)
}

/// A middle segment, so a neighbour exists on both sides.
fn middle(segs: &[Seg]) -> &Seg {
    &segs[segs.len() / 2]
}

fn flipped_payload_byte(base: &Base, store: &Path, _scratch: &Path) -> Vec<Expect> {
    let (id, segs) = stream(base, 0);
    let seg = middle(segs);
    let path = store.join(&seg.payload);
    let mut bytes = read(&path);
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    overwrite(&path, &bytes);
    vec![Expect {
        kind: "payload_hash_mismatch",
        stream: Some(id.into()),
        seq: Some(seg.seq),
        object: Some(seq_stem(seg.seq)),
    }]
}

fn deleted_segment(base: &Base, store: &Path, _scratch: &Path) -> Vec<Expect> {
    let (id, segs) = stream(base, 1);
    let seg = middle(segs);
    remove(&store.join(&seg.payload));
    remove(&store.join(&seg.record));
    vec![
        Expect {
            kind: "chain_gap",
            stream: Some(id.into()),
            seq: Some(seg.seq),
            object: None,
        },
        // The signed digest still lists it.
        Expect {
            kind: "digest_entry_missing_segment",
            stream: Some(id.into()),
            seq: Some(seg.seq),
            object: None,
        },
    ]
}

fn swapped_payload_contents(base: &Base, store: &Path, _scratch: &Path) -> Vec<Expect> {
    let (id, segs) = stream(base, 0);
    let (a, b) = (&segs[1], &segs[2]);
    let (pa, pb) = (store.join(&a.payload), store.join(&b.payload));
    let (ba, bb) = (read(&pa), read(&pb));
    assert_ne!(
        ba, bb,
        "segments {} and {} of {id} have identical payloads",
        a.seq, b.seq
    );
    overwrite(&pa, &bb);
    overwrite(&pb, &ba);
    [a, b]
        .iter()
        .map(|s| Expect {
            kind: "payload_hash_mismatch",
            stream: Some(id.into()),
            seq: Some(s.seq),
            object: Some(seq_stem(s.seq)),
        })
        .collect()
}

fn swapped_record_positions(base: &Base, store: &Path, _scratch: &Path) -> Vec<Expect> {
    let (id, segs) = stream(base, 1);
    let (a, b) = (&segs[1], &segs[2]);
    let (ra, rb) = (store.join(&a.record), store.join(&b.record));
    let (ba, bb) = (read(&ra), read(&rb));
    overwrite(&ra, &bb);
    overwrite(&rb, &ba);
    // Each name now holds the other's record: the name disagrees with the
    // content at both positions.
    [a, b]
        .iter()
        .map(|s| Expect {
            kind: "record_name_mismatch",
            stream: Some(id.into()),
            seq: Some(s.seq),
            object: Some(
                s.record
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("utf-8 name")
                    .to_string(),
            ),
        })
        .collect()
}

fn digest_signed_by_another_key(base: &Base, store: &Path, scratch: &Path) -> Vec<Expect> {
    let d = &base.digests[1];
    let body = read(&store.join(&d.body));
    let sig = sign_with_foreign_key(scratch, &body);
    overwrite(&store.join(&d.sig), &sig);
    let sig_name = d
        .sig
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name")
        .to_string();
    vec![Expect {
        kind: "signature_wrong_key",
        stream: None,
        seq: Some(d.seq),
        object: Some(sig_name),
    }]
}

fn removed_digest(base: &Base, store: &Path, _scratch: &Path) -> Vec<Expect> {
    let d = &base.digests[1];
    remove(&store.join(&d.body));
    remove(&store.join(&d.sig));
    vec![Expect {
        kind: "digest_gap",
        stream: None,
        seq: Some(d.seq),
        object: None,
    }]
}

/// A segment appended to stream 1 whose record claims the file and byte
/// range of stream 0's first segment but holds stream 1's own bytes: chained
/// to stream 1's last record and listed in a new digest signed with the
/// host's own key (an intruder who took it), so the chain, digest and
/// signature checks all hold. Only the cross-stream check (FORMAT.md §10
/// item 6) sees that two streams claim different bytes for one file range.
fn segment_claiming_another_streams_file(
    base: &Base,
    store: &Path,
    _scratch: &Path,
) -> Vec<Expect> {
    use custody_evidence::digest::{DigestBody, DigestEntry, DIGEST_NAMESPACE};
    use custody_evidence::layout;
    use custody_evidence::segment::SegmentMeta;
    use custody_evidence::sign::HostKey;
    use custody_evidence::{SegmentSeq, Sha256};

    let (_, segs0) = stream(base, 0);
    let (_, segs1) = stream(base, 1);
    let claimed =
        SegmentMeta::decode(&read(&store.join(&segs0[0].record))).expect("record decodes");
    let last_bytes = read(&store.join(&segs1[segs1.len() - 1].record));
    let last = SegmentMeta::decode(&last_bytes).expect("record decodes");
    let donor = SegmentMeta::decode(&read(&store.join(&segs1[0].record))).expect("record decodes");
    let payload = read(&store.join(&segs1[0].payload));

    let mut meta = claimed.clone();
    meta.stream_id = last.stream_id.clone();
    meta.category = last.category;
    meta.seq = SegmentSeq(last.seq.0 + 1);
    meta.agent_instance = last.agent_instance.clone();
    meta.prev_segment = Some(SegmentMeta::chain_hash(&last_bytes));
    meta.range.end = meta.range.start + donor.raw_len;
    meta.raw_len = donor.raw_len;
    meta.raw_sha256 = donor.raw_sha256;
    meta.object_len = donor.object_len;
    meta.object_sha256 = donor.object_sha256;
    meta.first_read = last.last_read;
    meta.last_read = last.last_read;
    let record = meta.encode();
    let host = meta.host_id.clone();
    let record_key =
        layout::segment_meta_key(&host, &meta.stream_id, meta.seq, &meta.object_sha256);
    let payload_key =
        layout::segment_payload_key(&host, &meta.stream_id, meta.seq, &meta.object_sha256);
    fs::write(store.join(&payload_key), &payload).expect("write forged payload");
    fs::write(store.join(&record_key), &record).expect("write forged record");

    let last_dig = base.digests.last().expect("digests");
    let prev_body = read(&store.join(&last_dig.body));
    let prev = DigestBody::decode(&prev_body).expect("digest decodes");
    let mut body = prev.clone();
    body.seq = prev.seq + 1;
    body.prev_digest = Some(Sha256::digest(&prev_body));
    body.window_start = prev.window_end;
    body.segments = vec![DigestEntry {
        stream_id: meta.stream_id.clone(),
        seq: meta.seq,
        meta_sha256: SegmentMeta::chain_hash(&record),
        object_sha256: meta.object_sha256,
        raw_sha256: meta.raw_sha256,
    }];
    let bytes = body.encode();
    let sha = Sha256::digest(&bytes);
    let key_text = fs::read_to_string(base.state.join("host_key")).expect("read host_key");
    let key = HostKey::from_openssh(&key_text).expect("host key parses");
    let sig = key.sign(DIGEST_NAMESPACE, &bytes).expect("sign");
    fs::write(
        store.join(layout::digest_key(&host, body.seq, &sha)),
        &bytes,
    )
    .expect("write digest");
    fs::write(
        store.join(layout::digest_sig_key(&host, body.seq, &sha)),
        sig,
    )
    .expect("write sig");
    vec![Expect {
        kind: "cross_stream_conflict",
        stream: None,
        seq: None,
        object: None,
    }]
}

const VECTORS: &[(&str, Tamper)] = &[
    ("payload_flipped_byte", flipped_payload_byte),
    ("segment_deleted", deleted_segment),
    ("payloads_swapped", swapped_payload_contents),
    ("records_swapped", swapped_record_positions),
    ("digest_signed_by_another_key", digest_signed_by_another_key),
    ("digest_removed", removed_digest),
    (
        "segment_claiming_another_streams_file",
        segment_claiming_another_streams_file,
    ),
];

#[test]
fn every_tamper_vector_is_detected_by_custody_verify() {
    let env = TestEnv::new("tamper");
    let base = produce(&env);
    assert!(
        base.digests.len() >= 3,
        "need ≥ 3 digests, have {}",
        base.digests.len()
    );

    let clean = run_verify(&base.store, &[]);
    clean.assert_clean();
    // The copy itself must not look tampered, or every vector below would
    // pass for the wrong reason.
    let control = copy_store(&base, &env, "control");
    run_verify(&control, &[]).assert_clean();

    let mut failures = Vec::new();
    for (name, tamper) in VECTORS {
        let store = copy_store(&base, &env, name);
        let expects = tamper(&base, &store, &env.root.join(format!("scratch-{name}")));
        let out = run_verify(&store, &[]);
        let findings = out.findings();
        if out.code != Some(1) {
            failures.push(format!(
                "{name}: exit {:?}, expected 1\nstdout:\n{}\nstderr:\n{}",
                out.code, out.stdout, out.stderr
            ));
            continue;
        }
        for want in expects {
            if !findings.iter().any(|f| want.matches(f)) {
                let seen: Vec<String> = findings
                    .iter()
                    .map(|f| {
                        format!(
                            "{} stream={} seq={} object={}",
                            f["kind"], f["stream"], f["seq"], f["object"]
                        )
                    })
                    .collect();
                failures.push(format!(
                    "{name}: expected {want:?} (host {}), found:\n  {}",
                    base.host,
                    seen.join("\n  ")
                ));
            }
        }
        // Every finding must be attributed to the tampered host.
        for f in &findings {
            if f.get("severity").and_then(Value::as_str) == Some("error")
                && f.get("host").and_then(Value::as_str) != Some(base.host.as_str())
            {
                failures.push(format!(
                    "{name}: error finding not attributed to host {}: {f}",
                    base.host
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} tamper vector(s) failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn verify_of_a_missing_store_cannot_run() {
    let env = TestEnv::new("tamper-missing");
    let missing = env.root.join("no-such-store");
    let out = run_verify(&missing, &[]);
    assert_eq!(
        out.code,
        Some(2),
        "custody-verify store {} (missing) expected exit 2, found {:?}\nstdout:\n{}\nstderr:\n{}",
        missing.display(),
        out.code,
        out.stdout,
        out.stderr
    );
    assert!(
        out.stderr.contains(&missing.display().to_string()),
        "the error should name the store path {}; stderr:\n{}",
        missing.display(),
        out.stderr
    );
}
