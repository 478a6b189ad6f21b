//! The S3 store against a real S3-protocol server: moto in server mode,
//! started per test on a free port and killed when the test ends. Checked
//! with boto3 (tests/s3/s3check.py), a stock client, not with our own code.
//!
//! These tests do not skip when moto is missing: they fail and say
//! "install moto[server] and boto3 (pip)".

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use custody_store::s3::{S3Settings, S3Store, PART_SIZE};
use custody_store::{ObjectStore, PutOptions, PutOutcome, StoreError};
use time::OffsetDateTime;

/// A moto server on 127.0.0.1; killed and reaped on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        set_test_credentials();
        let probe = Command::new(python3())
            .args(["-c", "import moto.server, boto3, flask"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "install moto[server] and boto3 (pip): python3 cannot import them: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => panic!("install moto[server] and boto3 (pip): cannot run python3: {e}"),
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let child = Command::new(python3())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("install moto[server] and boto3 (pip): cannot start python3 -m moto.server");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto server exited with {status} before answering");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not listen on port {port} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    fn create_bucket(&self, bucket: &str, lock: bool) {
        let mut args = vec!["create-bucket", &self.endpoint, bucket];
        if lock {
            args.push("--lock");
        }
        s3check(&args);
    }

    fn settings(&self, bucket: &str, prefix: &str) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            path_style: true,
            ..S3Settings::new(bucket, prefix)
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Credentials for moto (it accepts any) through the standard chain's
/// first link, the environment; the same values in every test, so the
/// race of setting them from parallel tests is harmless.
fn set_test_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "custody-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "custody-test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/s3/s3check.py")
}

/// Runs tests/s3/s3check.py and parses its JSON output.
fn s3check(args: &[&str]) -> serde_json::Value {
    let out = Command::new(python3())
        .arg(script())
        .args(args)
        .output()
        .expect("running tests/s3/s3check.py");
    assert!(
        out.status.success(),
        "s3check.py {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "s3check.py {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn opts(days: i64) -> PutOptions {
    PutOptions {
        retain_until: OffsetDateTime::now_utc() + time::Duration::days(days),
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Deterministic bytes that do not compress to nothing.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn puts_are_create_only_locked_and_checksummed() {
    let moto = Moto::start();
    moto.create_bucket("custody-create-only", true);
    rt().block_on(async {
        let store = S3Store::connect(moto.settings("custody-create-only", "site/a"), true)
            .await
            .expect("connect to a protected bucket");
        assert!(store.protection().is_protected());
        let o = opts(183);
        let key = "v1/h/streams/os.x/00000000000000000001-ab.zst";
        assert_eq!(
            store.put(key, b"evidence", o).await.unwrap(),
            PutOutcome::Created
        );
        // A retry after a lost acknowledgement is harmless...
        assert_eq!(
            store.put(key, b"evidence", o).await.unwrap(),
            PutOutcome::AlreadyPresent
        );
        // ...and a rewrite is refused, leaving the first bytes.
        match store.put(key, b"tampered", o).await {
            Err(StoreError::Conflict { key: k }) => assert_eq!(k, key),
            other => panic!("expected Conflict, got {other:?}"),
        }
        assert_eq!(store.get(key).await.unwrap(), b"evidence");

        let info = store.head(key).await.unwrap().expect("object exists");
        assert_eq!(info.len, 8);
        assert_eq!(info.retain_until, S3Store::lock_time(o.retain_until));
        assert!(info.retain_until >= o.retain_until);
        assert!(!info.legal_hold);
        assert_eq!(store.head("v1/h/none").await.unwrap(), None);
        assert!(matches!(
            store.get("v1/h/none").await,
            Err(StoreError::NotFound { .. })
        ));

        store.set_legal_hold(key, true).await.unwrap();
        assert!(store.head(key).await.unwrap().unwrap().legal_hold);
        store.set_legal_hold(key, false).await.unwrap();
        assert!(!store.head(key).await.unwrap().unwrap().legal_hold);
        assert!(matches!(
            store.set_legal_hold("v1/h/none", true).await,
            Err(StoreError::NotFound { .. })
        ));

        store
            .put("v1/h/keys/k.pub", b"ssh-ed25519 AAAA\n", o)
            .await
            .unwrap();
        assert_eq!(
            store.list("v1/").await.unwrap(),
            [
                "v1/h/keys/k.pub",
                "v1/h/streams/os.x/00000000000000000001-ab.zst"
            ]
        );
        assert_eq!(store.list("v1/h/keys/").await.unwrap(), ["v1/h/keys/k.pub"]);
        // Another prefix in the same bucket is another store.
        let other = S3Store::connect(moto.settings("custody-create-only", "site/b"), true)
            .await
            .unwrap();
        assert!(other.list("").await.unwrap().is_empty());
        assert!(store
            .describe()
            .starts_with("s3://custody-create-only/site/a (endpoint http://127.0.0.1:"));
        // Pruning is the lifecycle rule's job: nothing is deleted.
        let report = store
            .prune(OffsetDateTime::now_utc() + time::Duration::days(10_000))
            .await
            .unwrap();
        assert!(report.deleted.is_empty());
        assert_eq!(store.list("").await.unwrap().len(), 2);
    });

    // What a stock client sees: COMPLIANCE, the retain-until we asked for
    // (rounded up to the second), our SHA-256, one version per name.
    let dir = tempfile::tempdir().unwrap();
    let dump = s3check(&[
        "dump",
        &moto.endpoint,
        "custody-create-only",
        dir.path().to_str().unwrap(),
    ]);
    let objects = dump["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2, "{dump}");
    for o in objects {
        assert_eq!(o["lock_mode"], "COMPLIANCE", "{o}");
        assert!(o["retain_until"].is_string(), "{o}");
        let key = o["key"].as_str().unwrap();
        let bytes = std::fs::read(dir.path().join(key)).unwrap();
        assert_eq!(
            o["checksum_sha256"].as_str(),
            Some(sha256_b64(&bytes).as_str()),
            "{o}"
        );
        assert_eq!(
            o["metadata"]["custody-retain-until"]
                .as_str()
                .map(|s| s.ends_with('Z')),
            Some(true),
            "{o}"
        );
    }
    assert_eq!(
        dump["versions"], 2,
        "a refused rewrite must not leave a second version: {dump}"
    );
    let refused = s3check(&[
        "delete-version",
        &moto.endpoint,
        "custody-create-only",
        "site/a/v1/h/keys/k.pub",
    ]);
    assert_eq!(
        refused["refused"], true,
        "deleting a locked version must be refused: {refused}"
    );
}

fn sha256_b64(bytes: &[u8]) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(bytes);
    // Standard base64 with padding, written out to avoid trusting the code under test.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in d.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn large_objects_go_up_in_checksummed_parts() {
    let moto = Moto::start();
    moto.create_bucket("custody-multipart", true);
    let big = pseudo_random(PART_SIZE + PART_SIZE / 2, 7);
    rt().block_on(async {
        let settings = S3Settings {
            multipart_threshold: 1024 * 1024,
            ..moto.settings("custody-multipart", "")
        };
        let store = S3Store::connect(settings, true).await.unwrap();
        let o = opts(30);
        assert_eq!(
            store.put("v1/h/big", &big, o).await.unwrap(),
            PutOutcome::Created
        );
        assert_eq!(
            store.put("v1/h/big", &big, o).await.unwrap(),
            PutOutcome::AlreadyPresent
        );
        let mut other = big.clone();
        other[PART_SIZE + 1] ^= 1;
        assert!(matches!(
            store.put("v1/h/big", &other, o).await,
            Err(StoreError::Conflict { .. })
        ));
        assert!(
            store.get("v1/h/big").await.unwrap() == big,
            "multipart object did not round-trip"
        );
        let info = store.head("v1/h/big").await.unwrap().unwrap();
        assert_eq!(info.len, big.len() as u64);
        assert_eq!(info.retain_until, S3Store::lock_time(o.retain_until));
    });
    let dir = tempfile::tempdir().unwrap();
    let dump = s3check(&[
        "dump",
        &moto.endpoint,
        "custody-multipart",
        dir.path().to_str().unwrap(),
    ]);
    let o = &dump["objects"][0];
    assert_eq!(o["lock_mode"], "COMPLIANCE", "{dump}");
    // A multipart object's SHA-256 is over its parts' SHA-256s; AWS adds
    // "-<parts>", moto 5.1 leaves the suffix off.
    let part_digests: Vec<u8> = big
        .chunks(PART_SIZE)
        .flat_map(|c| {
            use sha2::Digest;
            sha2::Sha256::digest(c).to_vec()
        })
        .collect();
    let composite = sha256_b64(&part_digests);
    let acked = o["checksum_sha256"].as_str().unwrap_or_default();
    assert!(
        acked == composite || acked == format!("{composite}-2"),
        "expected the composite checksum {composite}(-2): {dump}"
    );
    assert_eq!(std::fs::read(dir.path().join("v1/h/big")).unwrap(), big);
}

#[test]
fn a_bucket_without_object_lock_is_refused_when_required_and_warned_about_otherwise() {
    let moto = Moto::start();
    moto.create_bucket("custody-unlocked", false);
    rt().block_on(async {
        let err = S3Store::connect(moto.settings("custody-unlocked", ""), true)
            .await
            .expect_err("an unprotected bucket must be refused when the level requires retention");
        let text = err.to_string();
        assert!(text.contains("--object-lock-enabled-for-bucket"), "{text}");
        assert!(text.contains("put-object-lock-configuration"), "{text}");

        let store = S3Store::connect(moto.settings("custody-unlocked", ""), false)
            .await
            .expect("allowed without the lock");
        assert!(!store.protection().object_lock);
        let o = opts(31);
        assert_eq!(
            store.put("v1/h/x", b"d", o).await.unwrap(),
            PutOutcome::Created
        );
        // Retention is still recorded, in the metadata.
        let info = store.head("v1/h/x").await.unwrap().unwrap();
        assert_eq!(info.retain_until, S3Store::lock_time(o.retain_until));
        assert!(store.set_legal_hold("v1/h/x", true).await.is_err());

        let missing = S3Store::connect(moto.settings("custody-no-such-bucket", ""), true)
            .await
            .expect_err("a missing bucket");
        assert!(missing.to_string().contains("does not exist"), "{missing}");
    });
}

#[test]
fn an_unreachable_server_is_a_transient_error() {
    set_test_credentials();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    rt().block_on(async {
        let settings = S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: Some("us-east-1".into()),
            path_style: true,
            ..S3Settings::new("custody-nowhere", "")
        };
        let err = S3Store::connect(settings, true)
            .await
            .expect_err("nothing listens");
        assert!(err.is_transient(), "{err}");
        assert!(err.to_string().contains("custody-nowhere"), "{err}");
    });
}

/// The test tools' interpreter: `CUSTODY_TEST_PYTHON`, else the virtual
/// environment `.ci/run` makes in the checkout (`.venv/`), else `python3`
/// (the same rule as `custody_tests::python`, which this crate cannot use).
fn python3() -> PathBuf {
    if let Some(p) = std::env::var_os("CUSTODY_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python3");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}
