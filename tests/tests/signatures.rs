//! Digest signatures checked with nothing but OpenSSH, as an auditor
//! without our tools would: `ssh-keygen -Y verify` against the
//! `allowed_signers` line `custody-agent key show` prints. Also the host
//! key's file mode, and the digests an idle agent must keep writing.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use custody_evidence::digest::DigestBody;
use custody_evidence::Sha256;
use custody_tests::*;

const WAIT: Duration = Duration::from_secs(60);

/// One stored digest: body and signature paths and the body's bytes.
struct StoredDigest {
    seq: u64,
    body_path: PathBuf,
    sig_path: PathBuf,
    bytes: Vec<u8>,
}

/// Every digest of `env`'s host in the store, in seq order.
fn stored_digests(env: &TestEnv) -> Vec<StoredDigest> {
    let dir = env.host_dir().join("digests");
    let Ok(rd) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<StoredDigest> = rd
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.to_string();
            let seq = name
                .strip_suffix(".digest.json")?
                .split_once('-')?
                .0
                .parse()
                .ok()?;
            let bytes = fs::read(&p).ok()?;
            Some(StoredDigest {
                seq,
                sig_path: p.with_file_name(format!("{name}.sig")),
                body_path: p,
                bytes,
            })
        })
        .collect();
    out.sort_by_key(|d| d.seq);
    out
}

/// The host's `allowed_signers` line from `custody-agent key show`, written
/// to a file for `ssh-keygen -Y verify -f`.
fn allowed_signers(env: &TestEnv) -> PathBuf {
    let out = agent_output([
        "key".as_ref(),
        "show".as_ref(),
        "--state-dir".as_ref(),
        env.state.as_os_str(),
        "--host-id".as_ref(),
        env.host_id.as_ref(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "custody-agent key show failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.trim();
    assert!(
        line.starts_with(&format!("{} ", env.host_id)) && line.contains("ssh-ed25519 AAAA"),
        "key show should print `{} namespaces=\"…\" ssh-ed25519 AAAA…`, printed {line:?}",
        env.host_id
    );
    assert!(
        line.contains("custody-digest"),
        "the allowed_signers line must allow the custody-digest namespace: {line:?}"
    );
    let path = env.root.join("allowed_signers");
    fs::write(&path, format!("{line}\n")).expect("write allowed_signers");
    path
}

/// `ssh-keygen -Y verify -f ALLOWED -I HOST -n custody-digest -s SIG < BODY`;
/// returns the exit success and the tool's output for messages.
fn ssh_verify(allowed: &Path, host: &str, sig: &Path, body: &[u8]) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-f"])
        .arg(allowed)
        .args(["-I", host, "-n", "custody-digest", "-s"])
        .arg(sig)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run ssh-keygen (Debian package: openssh-client)");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(body)
        .expect("feeding the digest to ssh-keygen");
    let out = child.wait_with_output().expect("waiting for ssh-keygen");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text.trim().to_string())
}

/// Runs the agent over one realistic log until it is stored and at least
/// `digests` digests exist, then stops it cleanly.
fn run_until_digests(env: &TestEnv, opts: &AgentOptions, digests: usize, expect_lines: usize) {
    let mut agent = AgentProcess::start(opts);
    wait_for(
        &format!("≥ {digests} digests and {expect_lines} lines stored"),
        WAIT,
        || {
            if let Err(e) = agent.check_running() {
                panic!("{e}");
            }
            let n = stored_digests(env).len();
            let c = StoreContents::read(&env.store, &env.host_id).map_err(|e| format!("{e:#}"))?;
            let lines = c.line_ids().len();
            if n >= digests && lines >= expect_lines {
                Ok(())
            } else {
                Err(format!("{n} digests, {lines} lines"))
            }
        },
    );
    agent.stop_clean(Duration::from_secs(30));
}

#[test]
fn every_digest_verifies_with_ssh_keygen_and_an_edited_one_does_not() {
    let env = TestEnv::new("sigs");
    let mut writer = LineWriter::new(env.log("auth.log"), "sig");
    writer.append(testdata_lines(), 400);
    let opts = AgentOptions::new(&env)
        .source("logon", &env.log("auth.log").display().to_string())
        .flag("segment-max-bytes", 8192)
        .flag("digest-interval-ms", 300);
    run_until_digests(&env, &opts, 3, writer.ids().len());

    let allowed = allowed_signers(&env);
    let digests = stored_digests(&env);
    assert!(
        digests.len() >= 3,
        "expected ≥ 3 digests, found {}",
        digests.len()
    );
    let mut listed = 0;
    for d in &digests {
        let (ok, text) = ssh_verify(&allowed, &env.host_id, &d.sig_path, &d.bytes);
        assert!(
            ok,
            "ssh-keygen -Y verify rejected digest {} ({}): {text}",
            d.seq,
            d.body_path.display()
        );
        listed += DigestBody::decode(&d.bytes)
            .unwrap_or_else(|e| panic!("digest {} does not decode: {e}", d.body_path.display()))
            .segments
            .len();
    }
    let segments = StoreContents::read(&env.store, &env.host_id)
        .expect("store readable")
        .segment_count();
    assert_eq!(
        listed, segments,
        "the digests together should list every stored segment once"
    );

    // The published key is the one key show prints.
    let keys: Vec<String> = fs::read_dir(env.host_dir().join("keys"))
        .expect("keys directory in the store")
        .map(|e| fs::read_to_string(e.expect("listing keys").path()).expect("read published key"))
        .collect();
    let allowed_line = fs::read_to_string(&allowed).expect("read allowed_signers");
    let key_b64 = |line: &str| {
        line.split_whitespace()
            .skip_while(|w| *w != "ssh-ed25519")
            .nth(1)
            .map(str::to_string)
    };
    assert_eq!(
        keys.len(),
        1,
        "exactly one key should be published, found {keys:?}"
    );
    assert_eq!(
        key_b64(&keys[0]),
        key_b64(&allowed_line),
        "the store's published key differs from the one key show prints"
    );

    // One byte changed in a digest: the same check must refuse it. Change a
    // byte inside the JSON (the window time) so the body stays plausible.
    let victim = &digests[digests.len() / 2];
    let mut edited = victim.bytes.clone();
    let at = edited
        .windows(b"\"window_end\":\"".len())
        .position(|w| w == b"\"window_end\":\"")
        .expect("digest has a window_end")
        + b"\"window_end\":\"20".len();
    edited[at] = if edited[at] == b'9' { b'8' } else { b'9' };
    let (ok, text) = ssh_verify(&allowed, &env.host_id, &victim.sig_path, &edited);
    assert!(
        !ok,
        "ssh-keygen -Y verify accepted digest {} edited by one byte: {text}",
        victim.seq
    );

    // A principal other than the host is refused too: the line binds the key
    // to this host id.
    let (ok, text) = ssh_verify(&allowed, "someone-else", &victim.sig_path, &victim.bytes);
    assert!(
        !ok,
        "ssh-keygen -Y verify accepted the digest for another principal: {text}"
    );

    // custody-verify agrees when given the same allowed_signers file.
    run_verify(
        &env.store,
        &["--allowed-signers", &allowed.display().to_string()],
    )
    .assert_clean();
}

#[test]
fn host_key_file_is_private() {
    let env = TestEnv::new("sigs-mode");
    // key show creates the key if there is none: the same code path as run.
    allowed_signers(&env);
    let key = env.state.join("host_key");
    let mode = fs::metadata(&key)
        .unwrap_or_else(|e| panic!("host key {} missing: {e}", key.display()))
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        mode,
        0o600,
        "host key {} has mode {mode:04o}, expected 0600",
        key.display()
    );

    // And after a run: the agent does not loosen it.
    fs::write(env.log("app.log"), b"one line\n").expect("write log");
    let opts = AgentOptions::new(&env).source("app", &env.log("app.log").display().to_string());
    let mut agent = AgentProcess::start(&opts);
    wait_for("one digest", WAIT, || {
        agent.check_running()?;
        match stored_digests(&env).len() {
            0 => Err("no digest yet".into()),
            _ => Ok(()),
        }
    });
    agent.stop_clean(Duration::from_secs(30));
    let mode = fs::metadata(&key).expect("host key").permissions().mode() & 0o777;
    assert_eq!(
        mode,
        0o600,
        "after a run host key {} has mode {mode:04o}, expected 0600",
        key.display()
    );
}

#[test]
fn an_idle_agent_keeps_writing_chained_empty_digests() {
    let env = TestEnv::new("sigs-idle");
    let log = env.log("idle.log");
    fs::write(&log, b"").expect("create empty log");
    let opts = AgentOptions::new(&env)
        .source("os", &log.display().to_string())
        .flag("digest-interval-ms", 300);
    let mut agent = AgentProcess::start(&opts);
    // More than two intervals with nothing written.
    wait_for("≥ 3 digests from an idle agent", WAIT, || {
        agent.check_running()?;
        let n = stored_digests(&env).len();
        if n >= 3 {
            Ok(())
        } else {
            Err(format!("{n} digests"))
        }
    });
    agent.stop_clean(Duration::from_secs(30));

    let digests = stored_digests(&env);
    let empty = digests
        .iter()
        .filter(|d| {
            DigestBody::decode(&d.bytes)
                .unwrap_or_else(|e| panic!("digest {} does not decode: {e}", d.body_path.display()))
                .segments
                .is_empty()
        })
        .count();
    assert_eq!(
        empty,
        digests.len(),
        "nothing was logged, so every digest should list no segment"
    );
    assert!(empty >= 2, "expected ≥ 2 empty digests, found {empty}");

    let mut prev: Option<Sha256> = None;
    for (i, d) in digests.iter().enumerate() {
        let body = DigestBody::decode(&d.bytes).expect("decoded above");
        assert_eq!(
            body.seq,
            i as u64,
            "digest seqs must run 0, 1, 2, … ({})",
            d.body_path.display()
        );
        assert_eq!(
            body.prev_digest, prev,
            "digest {}: prev_digest must be the SHA-256 of the previous digest's stored bytes (none for seq 0)",
            body.seq
        );
        prev = Some(Sha256::digest(&d.bytes));
    }

    let allowed = allowed_signers(&env);
    for d in &digests {
        let (ok, text) = ssh_verify(&allowed, &env.host_id, &d.sig_path, &d.bytes);
        assert!(
            ok,
            "ssh-keygen -Y verify rejected empty digest {}: {text}",
            d.seq
        );
    }
    assert!(
        !env.host_dir().join("streams").exists()
            || StoreContents::read(&env.store, &env.host_id)
                .expect("store")
                .segment_count()
                == 0,
        "an empty file must produce no segment"
    );
    run_verify(&env.store, &[]).assert_clean();
}
