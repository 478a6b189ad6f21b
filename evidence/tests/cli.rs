//! `custody-verify store DIR` over a real directory: exit codes, output
//! lines, JSON, allowed_signers, and the filesystem-only findings.

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use custody_evidence::sign::allowed_signers_line;
use support::*;

fn write_store(fx: &Fixture, dir: &Path) {
    for (key, bytes) in &fx.store.0 {
        let path = dir.join(key);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
    }
    // The store's own bookkeeping, which is not evidence.
    fs::create_dir_all(dir.join(".retention/v1/web01")).unwrap();
    fs::write(dir.join(".retention/v1/web01/x.json"), b"{}").unwrap();
    fs::create_dir_all(dir.join(".holds")).unwrap();
}

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custody-verify"))
        .args(args)
        .output()
        .expect("run custody-verify")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn clean_store_exits_0_and_tampered_exits_1() {
    let fx = Fixture::valid();
    let dir = tempfile::tempdir().unwrap();
    write_store(&fx, dir.path());
    let d = dir.path().to_str().unwrap();

    let out = verify(&["store", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("INFO agent_restart host=web01 stream=logon-auth seq=3"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .ends_with("0 error(s), 0 warning(s), 2 info: OK"),
        "{stdout}"
    );

    let out = verify(&["store", d, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["segments"], 10);
    assert_eq!(json["findings"][0]["kind"], "agent_restart");

    // Tamper: flip one byte of a payload.
    let seg = fx.seg(0, 1);
    let path = dir.path().join(&seg.payload_key);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    fs::write(&path, bytes).unwrap();
    let out = verify(&["store", d]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = format!(
        "ERROR payload_hash_mismatch host=web01 stream=os-syslog seq=1 object={} expected=",
        seg.payload_key
    );
    assert!(stdout.contains(&line), "{stdout}");
    assert!(stdout.trim_end().ends_with("FAILED"), "{stdout}");
}

// Unix symlinks (making one on Windows needs a privilege Wine's test run lacks).
#[cfg(unix)]
#[test]
fn symlink_is_a_finding_and_not_followed() {
    let fx = Fixture::valid();
    let dir = tempfile::tempdir().unwrap();
    write_store(&fx, dir.path());
    let seg = fx.seg(1, 4);
    let target = dir.path().join("elsewhere.zst");
    fs::rename(dir.path().join(&seg.payload_key), &target).unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join(&seg.payload_key)).unwrap();
    let out = verify(&["store", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "ERROR not_a_regular_file object={}",
            seg.payload_key
        )),
        "{stdout}"
    );
    assert!(stdout.contains("ERROR payload_missing"), "{stdout}");
}

#[test]
fn allowed_signers() {
    let fx = Fixture::valid();
    let dir = tempfile::tempdir().unwrap();
    write_store(&fx, dir.path());
    let d = dir.path().to_str().unwrap();
    let signers = dir.path().join("allowed_signers");
    fs::write(
        &signers,
        format!(
            "{}\n",
            allowed_signers_line("web01", &["custody-digest"], &fx.key.public_key_line(""))
        ),
    )
    .unwrap();
    let out = verify(&["store", d, "--allowed-signers", signers.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("keys_from_store"));

    let other = custody_evidence::sign::HostKey::generate();
    fs::write(&signers, format!("web01 {}\n", other.public_key_line(""))).unwrap();
    let out = verify(&["store", d, "--allowed-signers", signers.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ERROR signature_wrong_key host=web01 seq=0"),
        "{}",
        text(&out)
    );

    // Only another namespace: nothing to trust, the check cannot run.
    fs::write(
        &signers,
        allowed_signers_line("web01", &["git"], &fx.key.public_key_line("")),
    )
    .unwrap();
    let out = verify(&["store", d, "--allowed-signers", signers.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no entry allows namespace"),
        "{}",
        text(&out)
    );
}

#[test]
fn cannot_run_exits_2_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = verify(&["store", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(missing.to_str().unwrap()),
        "{}",
        text(&out)
    );

    // A directory that is not a store.
    let out = verify(&["store", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a custody store"), "{}", text(&out));

    let out = verify(&["store"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = verify(&[
        "store",
        dir.path().to_str().unwrap(),
        "--allowed-signers",
        missing.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--allowed-signers"), "{}", text(&out));
}

// Drives the stock Linux zstd (the Windows build's run under Wine has none).
#[cfg(unix)]
#[test]
fn payload_is_stock_zstd_of_the_raw_bytes() {
    // FORMAT.md promises `zstd -d` then `sha256sum` reproduces raw_sha256.
    let zstd = Path::new("/usr/bin/zstd");
    assert!(zstd.is_file(), "/usr/bin/zstd not found: install the zstd package; this test proves the payload is standard zstd");
    let fx = Fixture::valid();
    let dir = tempfile::tempdir().unwrap();
    let seg = fx.seg(0, 3);
    let p = dir.path().join("seg.zst");
    fs::write(&p, &seg.payload).unwrap();
    let out = Command::new(zstd)
        .args(["-d", "-q", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        custody_evidence::Sha256::digest(&out.stdout),
        seg.meta.raw_sha256
    );
}

#[test]
fn empty_store_and_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(".custody-store.json"),
        b"{\"format\":\"custody.fsstore.v1\"}\n",
    )
    .unwrap();
    let out = verify(&["store", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 host(s)"),
        "{}",
        text(&out)
    );

    let fx = Fixture::valid();
    write_store(&fx, dir.path());
    let tmp = dir.path().join("v1/web01/streams/os-syslog/.tmp-1234");
    fs::write(&tmp, b"partial").unwrap();
    let out = verify(&["store", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("INFO unrecognized_object object=v1/web01/streams/os-syslog/.tmp-1234"),
        "{}",
        text(&out)
    );
}
