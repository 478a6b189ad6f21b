//! A real S3-protocol server for the tests: moto in server mode on a free
//! port, and `tests/s3/s3check.py`, which asks a stock client (boto3) what
//! a bucket holds. Shared by `tests/tests/s3.rs` and the collector tests.
//!
//! The tests do not skip when moto is missing: they fail and say "install
//! moto[server] and boto3 (pip)" (.ci/run installs them).

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A moto server on 127.0.0.1:PORT; killed and reaped on drop. It keeps
/// its data in memory, so [`Moto::restart`] starts an empty server on the
/// same port.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        set_test_credentials();
        let probe = Command::new(crate::python::python3())
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
        // Outside the ephemeral range, as for the collector's ports.
        let port = crate::collector::free_port();
        let mut moto = Moto {
            child: None,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.spawn();
        moto
    }

    pub fn spawn(&mut self) {
        let child = Command::new(crate::python::python3())
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("install moto[server] and boto3 (pip): cannot start python3 -m moto.server");
        self.child = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("moto server exited with {status} before answering");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "moto did not listen on port {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server (the outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A new, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn create_bucket(&self, bucket: &str, lock: bool) {
        let mut args = vec!["create-bucket", &self.endpoint, bucket];
        if lock {
            args.push("--lock");
        }
        s3check(&args);
    }

    /// Every current object of `bucket`, downloaded into `dir`.
    pub fn dump(&self, bucket: &str, dir: &Path) -> Value {
        s3check(&[
            "dump",
            &self.endpoint,
            bucket,
            dir.to_str().expect("utf-8 path"),
        ])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Credentials for moto (it accepts any), through the AWS chain's first
/// link, the environment, which the agent inherits. Same values in every
/// test, so parallel tests setting them is harmless.
pub fn set_test_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", "custody-test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "custody-test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
    });
}

pub fn s3check(args: &[&str]) -> Value {
    let script = crate::bins::workspace_root().join("tests/s3/s3check.py");
    let out = Command::new(crate::python::python3())
        .arg(&script)
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
