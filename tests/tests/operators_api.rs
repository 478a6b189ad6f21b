//! The operators' HTTPS API of the real collector (issue 10), driven with
//! the stock `curl`: a real agent polls the collector and its host shows
//! green; a viewer reads hosts and incidents but may not open one; a
//! responder opens an incident from "a laptop" (no shell on the collector),
//! the agent snapshots, and `custody-collector incident status` on the
//! collector host shows the same incident, opened by that operator; a form
//! post, a foreign Origin, an unknown field, a huge body, an agent's
//! certificate, no certificate and a revoked operator are refused, and
//! nothing is written by a refused request.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use custody_tests::bundle::verify_bundle;
use custody_tests::collector::{free_port, CollectorProcess, CollectorSetup};
use custody_tests::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

struct Api {
    base: String,
    ca: PathBuf,
    scratch: PathBuf,
}

struct Answer {
    status: u16,
    json: Value,
}

impl Api {
    /// `curl` with `identity` (`operator.pem`/`operator.key` or an agent's
    /// `client.pem`/`client.key`; none: no client certificate).
    fn call(
        &self,
        identity: Option<(&Path, &Path)>,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        headers: &[&str],
    ) -> Answer {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "60",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ]);
        c.arg("--cacert").arg(&self.ca);
        if let Some((cert, key)) = identity {
            c.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(b) = body {
            let file = self.scratch.join("body.json");
            std::fs::write(&file, b).unwrap();
            c.arg("--data-binary").arg(format!("@{}", file.display()));
        }
        for h in headers {
            c.arg("-H").arg(h);
        }
        c.arg(format!("{}{path}", self.base));
        let out = c.output().expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        Answer {
            status: code.trim().parse().unwrap_or(0),
            json: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }
}

impl Api {
    /// `curl` saving the body to `out`: the status and the headers.
    fn download(&self, identity: (&Path, &Path), path: &str, out: &Path) -> (u16, String) {
        let headers = self.scratch.join("download-headers.txt");
        let run = Command::new("curl")
            .args(["-sS", "--max-time", "120", "-w", "%{http_code}"])
            .arg("--cacert")
            .arg(&self.ca)
            .arg("--cert")
            .arg(identity.0)
            .arg("--key")
            .arg(identity.1)
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(out)
            .arg(format!("{}{path}", self.base))
            .output()
            .expect("curl");
        let code = String::from_utf8_lossy(&run.stdout)
            .trim()
            .parse()
            .unwrap_or(0);
        (code, std::fs::read_to_string(&headers).unwrap_or_default())
    }
}

/// The value of `name` in a block of response headers.
fn header<'a>(headers: &'a str, name: &str) -> Option<&'a str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The actions of a bundle's custody trail, in order.
fn trail_actions(trail: &Value) -> Vec<String> {
    trail["bundles"][0]["events"]
        .as_array()
        .map(|e| {
            e.iter()
                .map(|e| e["action"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir` (none if it does not exist).
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn collector(args: &[&str]) -> std::process::Output {
    Command::new(&bins().collector)
        .args(args)
        .output()
        .expect("run custody-collector")
}

fn add_operator(setup: &CollectorSetup, name: &str, role: &str) -> (PathBuf, PathBuf) {
    let dir = setup.root.join(format!("op-{name}"));
    let out = collector(&[
        "operator",
        "add",
        name,
        "--role",
        role,
        "--out",
        dir.to_str().unwrap(),
        "--ca-dir",
        setup.ca_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir.join("operator.pem"), dir.join("operator.key"))
}

fn incident_dirs(setup: &CollectorSetup) -> usize {
    std::fs::read_dir(setup.state.join("incidents"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn operators_read_open_and_are_refused_by_role_on_the_api() {
    let env = TestEnv::new("ops-api");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    let api_port = free_port();
    setup.extra = vec!["--api-listen".into(), format!("127.0.0.1:{api_port}")];
    let enroll = setup.enroll(&env.host_id);
    let mut server = CollectorProcess::start(&setup);
    let api = Api {
        base: format!("https://127.0.0.1:{api_port}"),
        ca: setup.ca_dir.join("ca.pem"),
        scratch: env.root.clone(),
    };
    let vera = add_operator(&setup, "vera", "viewer");
    let rita = add_operator(&setup, "rita", "responder");
    let vera = Some((vera.0.as_path(), vera.1.as_path()));
    let rita_id = Some((rita.0.as_path(), rita.1.as_path()));

    // A real agent, polling the collector for incidents.
    let mut w = LineWriter::new(env.log("app.log"), "api");
    w.append(testdata_lines(), 50);
    let mut opts = AgentOptions::new(&env).source("app", &env.log("app.log").to_string_lossy());
    opts.store = setup.url().into();
    opts.extra_args = vec![
        "--enrollment-dir".into(),
        enroll.to_string_lossy().into_owned(),
    ];
    let mut agent = AgentProcess::start(&opts);

    let who = api.call(vera, "GET", "/api/v1/whoami", None, &[]);
    assert_eq!(who.status, 200);
    assert_eq!(who.json["operator"], "vera");
    assert_eq!(who.json["role"], "viewer");
    let hosts = wait_for("the agent's host green on the API", WAIT, || {
        server.check_running()?;
        agent.check_running()?;
        let a = api.call(vera, "GET", "/api/v1/hosts", None, &[]);
        let h = a.json["hosts"].as_array().and_then(|l| {
            l.iter()
                .find(|h| h["host"] == env.host_id.as_str())
                .cloned()
        });
        match h {
            Some(h) if h["state"] == "green" => Ok(h),
            other => Err(format!("{} {other:?}", a.status)),
        }
    });
    assert_eq!(hosts["enrolled"], true);
    assert_eq!(hosts["revoked"], false);

    // The host's page: its stream as the store holds it, the newest
    // segment named so an auditor can check it with stock tools.
    let detail = wait_for("the agent's stream in the store", WAIT, || {
        agent.check_running()?;
        let path = format!("/api/v1/hosts/{}", env.host_id);
        let a = api.call(vera, "GET", &path, None, &[]);
        match a.json["streams"].as_array() {
            Some(s) if !s.is_empty() => Ok(a.json),
            _ => Err(format!("{} {}", a.status, a.json)),
        }
    });
    let stream = &detail["streams"][0];
    assert_eq!(stream["category"], "app", "{detail}");
    assert!(stream["segments"].as_u64().unwrap() >= 1, "{detail}");
    assert!(stream["lag_seconds"].as_i64().unwrap() < 600, "{detail}");
    assert_eq!(detail["summary"]["state"], "green", "{detail}");
    let newest = stream["newest_segment"].as_str().unwrap();
    let payload = setup
        .store
        .join(newest.strip_suffix(".seg.json").unwrap().to_string() + ".zst");
    let raw = Command::new("zstd")
        .arg("-dc")
        .arg(&payload)
        .output()
        .expect("zstd");
    assert!(raw.status.success(), "zstd -dc {}", payload.display());
    assert_eq!(
        stream["newest_raw_sha256"],
        custody_evidence::Sha256::digest(&raw.stdout).to_string(),
        "{detail}"
    );
    assert!(
        detail["newest_digest"]["key"].is_string() || detail["newest_digest"].is_null(),
        "{detail}"
    );
    for (path, want) in [
        ("/api/v1/hosts/..%2F..%2Fetc", 400),
        ("/api/v1/hosts/no-such-host", 404),
    ] {
        let a = api.call(vera, "GET", path, None, &[]);
        assert_eq!(a.status, want, "{path}: {}", a.json);
    }

    // A viewer may not open an incident: 403, nothing written.
    let open = format!(
        r#"{{"id":"INC-2026-0300","hosts":["{}"],"reason":"web defacement"}}"#,
        env.host_id
    );
    let json_type = "Content-Type: application/json";
    let a = api.call(
        vera,
        "POST",
        "/api/v1/incidents",
        Some(open.as_bytes()),
        &[json_type],
    );
    assert_eq!(a.status, 403, "{}", a.json);
    assert!(
        a.json["error"].as_str().unwrap().contains("viewer"),
        "{}",
        a.json
    );
    assert_eq!(incident_dirs(&setup), 0);

    // What a cross-site form could send: refused before the body is used.
    let a = api.call(
        rita_id,
        "POST",
        "/api/v1/incidents",
        Some(open.as_bytes()),
        &["Content-Type: application/x-www-form-urlencoded"],
    );
    assert_eq!(a.status, 415, "{}", a.json);
    let a = api.call(
        rita_id,
        "POST",
        "/api/v1/incidents",
        Some(open.as_bytes()),
        &[json_type, "Origin: https://evil.example"],
    );
    assert_eq!(a.status, 403, "{}", a.json);
    // Malformed, unknown fields, huge, traversal in the id.
    for (body, want) in [
        (b"{not json".to_vec(), 400),
        (
            br#"{"id":"INC-1","all":true,"reason":"x","admin":true}"#.to_vec(),
            400,
        ),
        (vec![b' '; 200 * 1024], 413),
        (
            br#"{"id":"../../etc","all":true,"reason":"x"}"#.to_vec(),
            400,
        ),
    ] {
        let a = api.call(
            rita_id,
            "POST",
            "/api/v1/incidents",
            Some(&body),
            &[json_type],
        );
        assert_eq!(a.status, want, "{}", a.json);
        assert!(a.json["error"].is_string(), "{}", a.json);
    }
    assert_eq!(
        incident_dirs(&setup),
        0,
        "a refused request wrote something"
    );

    // No certificate: 401. An agent's certificate: 403.
    let a = api.call(None, "GET", "/api/v1/hosts", None, &[]);
    assert_eq!(a.status, 401, "{}", a.json);
    let agent_id = (enroll.join("client.pem"), enroll.join("client.key"));
    let a = api.call(
        Some((agent_id.0.as_path(), agent_id.1.as_path())),
        "GET",
        "/api/v1/hosts",
        None,
        &[],
    );
    assert_eq!(a.status, 403, "{}", a.json);

    // The responder opens the incident from the API; the agent snapshots.
    let a = api.call(
        rita_id,
        "POST",
        "/api/v1/incidents",
        Some(open.as_bytes()),
        &[json_type],
    );
    assert_eq!(a.status, 201, "{}", a.json);
    assert_eq!(a.json["operator"], "rita");
    let again = api.call(
        rita_id,
        "POST",
        "/api/v1/incidents",
        Some(open.as_bytes()),
        &[json_type],
    );
    assert_eq!(again.status, 409, "{}", again.json);
    let state = setup.state.to_string_lossy().into_owned();
    let done = wait_for("the snapshot stored, as the API shows it", WAIT, || {
        server.check_running()?;
        agent.check_running()?;
        let a = api.call(vera, "GET", "/api/v1/incidents/INC-2026-0300", None, &[]);
        let row = a.json["hosts"][0].clone();
        match row["state"].as_str() {
            Some("stored") => Ok(a.json),
            other => Err(format!("{} {other:?}", a.status)),
        }
    });
    assert_eq!(done["incident"]["operator"], "rita");
    assert_eq!(done["incident"]["reason"], "web defacement");
    // The collector host's own command sees the same incident.
    let out = collector(&[
        "incident",
        "status",
        "INC-2026-0300",
        "--json",
        "--state-dir",
        &state,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(local["incident"]["operator"], "rita");
    let list = api.call(vera, "GET", "/api/v1/incidents", None, &[]);
    assert_eq!(list.json["incidents"][0]["id"], "INC-2026-0300");

    // The evidence: a viewer may not download or verify; an auditor may,
    // and each is a signed custody event naming her.
    let host = &env.host_id;
    let bundle_path = format!("/api/v1/incidents/INC-2026-0300/hosts/{host}/bundle");
    let verify_path = format!("/api/v1/incidents/INC-2026-0300/hosts/{host}/verify");
    let a = api.call(vera, "GET", &bundle_path, None, &[]);
    assert_eq!(a.status, 403, "{}", a.json);
    assert!(
        a.json["error"].as_str().unwrap().contains("auditor"),
        "{}",
        a.json
    );
    let a = api.call(vera, "POST", &verify_path, Some(b"{}"), &[json_type]);
    assert_eq!(a.status, 403, "{}", a.json);
    let trail = api.call(
        vera,
        "GET",
        "/api/v1/incidents/INC-2026-0300/custody",
        None,
        &[],
    );
    assert_eq!(trail.status, 200, "{}", trail.json);
    assert_eq!(
        trail_actions(&trail.json),
        ["collected", "received"],
        "refused requests add no event: {}",
        trail.json
    );
    let ada = add_operator(&setup, "ada", "auditor");
    let ada_id = Some((ada.0.as_path(), ada.1.as_path()));
    for bad in [
        "/api/v1/incidents/INC-2026-0300/hosts/..%2F..%2Fetc%2Fpasswd/bundle",
        "/api/v1/incidents/INC-2026-0300/hosts/other-host/bundle",
        "/api/v1/incidents/..%2Fincidents/hosts/x/bundle",
    ] {
        let a = api.call(ada_id, "GET", bad, None, &[]);
        assert_eq!(a.status, 404, "{bad}: {}", a.json);
    }
    let tar = env.root.join("downloaded-bundle.tar");
    let (code, headers) = api.download((&ada.0, &ada.1), &bundle_path, &tar);
    assert_eq!(code, 200, "{headers}");
    let bytes = std::fs::read(&tar).unwrap();
    assert_eq!(
        header(&headers, "x-content-sha256"),
        Some(
            custody_evidence::Sha256::digest(&bytes)
                .to_string()
                .as_str()
        ),
        "{headers}"
    );
    assert!(
        header(&headers, "content-disposition").is_some_and(|d| d.starts_with("attachment")),
        "{headers}"
    );
    // The auditor's own verifier, on the copy and the store: the copy's
    // log plus the collector's events beside it (received, exported).
    let store = setup.store.to_string_lossy().into_owned();
    let v = verify_bundle(&tar, &["--store", &store]);
    assert_eq!(v.code, Some(0), "{}\n{}", v.stdout, v.stderr);
    assert_eq!(
        v.json.as_ref().and_then(|j| j["custody_events"].as_u64()),
        Some(3),
        "{}",
        v.stdout
    );
    for (body, want) in [(&b"{\"deep\":true}"[..], 400), (&b"not json"[..], 400)] {
        let a = api.call(ada_id, "POST", &verify_path, Some(body), &[json_type]);
        assert_eq!(a.status, want, "{}", a.json);
    }
    let a = api.call(ada_id, "POST", &verify_path, Some(b"{}"), &[json_type]);
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["clean"], true, "{}", a.json);
    assert_eq!(a.json["report"]["custody_events"], 3, "{}", a.json);
    let trail = api.call(
        vera,
        "GET",
        "/api/v1/incidents/INC-2026-0300/custody",
        None,
        &[],
    );
    assert_eq!(
        trail_actions(&trail.json),
        ["collected", "received", "exported", "verified"],
        "{}",
        trail.json
    );
    for e in trail.json["bundles"][0]["events"].as_array().unwrap() {
        assert_eq!(e["chained"], true, "{e}");
        assert_eq!(e["signature"]["good"], true, "{e}");
    }
    let events = &trail.json["bundles"][0]["events"];
    assert_eq!(events[2]["actor"], "ada", "{events}");
    assert!(
        events[3]["purpose"].as_str().unwrap().contains("clean"),
        "{events}"
    );

    // A viewer may not release; the responder may, once.
    let a = api.call(
        vera,
        "POST",
        "/api/v1/incidents/INC-2026-0300/release",
        Some(br#"{"reason":"closed"}"#),
        &[json_type],
    );
    assert_eq!(a.status, 403, "{}", a.json);
    // The commands as clients of the API, from "a laptop": status and
    // release with --url and the operator's files, no state directory.
    let rita_dir = rita.0.parent().unwrap().to_str().unwrap().to_string();
    let url = api.base.clone();
    let out = collector(&[
        "incident",
        "status",
        "INC-2026-0300",
        "--url",
        &url,
        "--operator-dir",
        &rita_dir,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains(&env.host_id) && table.contains("stored"),
        "{table}"
    );
    let vera_dir = setup.root.join("op-vera").to_str().unwrap().to_string();
    let out = collector(&[
        "incident",
        "release",
        "INC-2026-0300",
        "--reason",
        "closed",
        "--url",
        &url,
        "--operator-dir",
        &vera_dir,
    ]);
    assert!(
        !out.status.success(),
        "a viewer's release through the CLI is refused too"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403") && err.contains("viewer"), "{err}");
    // Two-person rule: rita asks, rita cannot approve her own request, rob
    // (a second responder) approves.
    let release = [
        "incident",
        "release",
        "INC-2026-0300",
        "--reason",
        "closed",
        "--url",
        &url,
        "--operator-dir",
    ];
    let out = collector(&[&release[..], &[rita_dir.as_str()]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("a second operator must approve"), "{said}");
    let out = collector(&[&release[..], &[rita_dir.as_str()]].concat());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("two-person rule"));
    let status_args = [
        "incident",
        "status",
        "INC-2026-0300",
        "--json",
        "--state-dir",
        &state,
    ];
    let out = collector(&status_args);
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        local["released"].is_null(),
        "not released by one operator: {local:#}"
    );
    let rob = add_operator(&setup, "rob", "responder");
    let rob_dir = rob.0.parent().unwrap().to_str().unwrap().to_string();
    let out = collector(&[&release[..], &[rob_dir.as_str()]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("asked for by rita, approved by rob"),
        "{said}"
    );
    let out = collector(&status_args);
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(local["released"]["operator"], "rita", "{local:#}");
    assert_eq!(local["released"]["approved_by"], "rob", "{local:#}");
    let trail = api.call(
        vera,
        "GET",
        "/api/v1/incidents/INC-2026-0300/custody",
        None,
        &[],
    );
    assert_eq!(
        trail_actions(&trail.json).last().map(String::as_str),
        Some("released"),
        "{}",
        trail.json
    );
    let a = api.call(
        rita_id,
        "POST",
        "/api/v1/incidents/INC-2026-0300/release",
        Some(b"{}"),
        &[json_type],
    );
    assert_eq!(a.status, 409, "{}", a.json);
    let a = api.call(vera, "GET", "/api/v1/incidents/INC-NONE", None, &[]);
    assert_eq!(a.status, 404, "{}", a.json);
    let a = api.call(vera, "DELETE", "/api/v1/hosts", None, &[]);
    assert_eq!(a.status, 405, "{}", a.json);

    // Revoked: refused on the next request.
    let out = collector(&[
        "operator",
        "revoke",
        "rita",
        "--ca-dir",
        setup.ca_dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = api.call(rita_id, "GET", "/api/v1/whoami", None, &[]);
    assert_eq!(a.status, 403, "{}", a.json);
    assert!(
        a.json["error"].as_str().unwrap().contains("revoked"),
        "{}",
        a.json
    );

    agent.stop_clean(Duration::from_secs(60));
    let log = server.log();
    assert!(
        log.contains("api: incident opened") && log.contains("api: incident released"),
        "every mutation is logged: {log}"
    );
    assert!(!log.contains("BEGIN"), "no key material in the log");
}

/// `curl` without a client certificate, with `cookie` sent as given and
/// the response headers kept: (status, headers, JSON).
fn browser_call(
    api: &Api,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[String],
) -> (u16, String, Value) {
    let head = api.scratch.join("headers.txt");
    let mut c = Command::new("curl");
    c.args([
        "-sS",
        "--max-time",
        "60",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
    ]);
    c.arg("--cacert").arg(&api.ca).arg("-D").arg(&head);
    if let Some(b) = body {
        c.arg("--data-binary").arg(b);
    }
    for h in headers {
        c.arg("-H").arg(h);
    }
    c.arg(format!("{}{path}", api.base));
    let out = c.output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (
        code.trim().parse().unwrap_or(0),
        std::fs::read_to_string(&head).unwrap_or_default(),
        serde_json::from_str(json).unwrap_or(Value::Null),
    )
}

/// Password logins: argon2id at rest, a session cookie with the right
/// flags, CSRF on changes, logout ending the session (a replayed cookie is
/// refused), revocation ending it, and failed logins limited.
#[test]
fn password_sessions_are_checked_like_certificates() {
    let env = TestEnv::new("ops-api-pw");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    let api_port = free_port();
    setup.extra = vec!["--api-listen".into(), format!("127.0.0.1:{api_port}")];
    let _enroll = setup.enroll(&env.host_id);
    let mut server = CollectorProcess::start(&setup);
    let api = Api {
        base: format!("https://127.0.0.1:{api_port}"),
        ca: setup.ca_dir.join("ca.pem"),
        scratch: env.root.clone(),
    };
    add_operator(&setup, "rita", "responder");
    add_operator(&setup, "vera", "viewer");
    let passwd = |name: &str, pw: &str| {
        let mut child = Command::new(&bins().collector)
            .args([
                "operator",
                "passwd",
                name,
                "--ca-dir",
                setup.ca_dir.to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pw}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(!passwd("rita", "short").status.success());
    assert!(passwd("rita", "correct horse battery staple")
        .status
        .success());
    assert!(passwd("vera", "vera's long passphrase").status.success());
    let stored = std::fs::read_to_string(setup.ca_dir.join("operator-passwords.jsonl")).unwrap();
    assert!(stored.contains("$argon2id$") && !stored.contains("correct horse"));

    let json = "Content-Type: application/json".to_string();
    let login = |name: &str, pw: &str| {
        browser_call(
            &api,
            "POST",
            "/api/v1/login",
            Some(&format!(r#"{{"name":"{name}","password":"{pw}"}}"#)),
            std::slice::from_ref(&json),
        )
    };
    let (status, _, _) = login("rita", "wrong password entirely");
    assert_eq!(status, 401);
    let (status, headers, v) = login("rita", "correct horse battery staple");
    assert_eq!(status, 200, "{v}");
    let set_cookie = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie")
        .to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    let token = set_cookie
        .split_once("custody_session=")
        .unwrap()
        .1
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let cookie = format!("Cookie: custody_session={token}");
    let csrf = format!("X-CSRF-Token: {}", v["csrf_token"].as_str().unwrap());
    let (status, _, who) = browser_call(
        &api,
        "GET",
        "/api/v1/whoami",
        None,
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 200);
    assert_eq!(who["operator"], "rita");
    assert_eq!(who["role"], "responder");

    let open = format!(
        r#"{{"id":"INC-2026-0301","hosts":["{}"],"reason":"password session"}}"#,
        env.host_id
    );
    // A change without the CSRF token (what another site could forge): 403.
    let (status, _, v) = browser_call(
        &api,
        "POST",
        "/api/v1/incidents",
        Some(&open),
        &[cookie.clone(), json.clone()],
    );
    assert_eq!(status, 403, "{v}");
    let (status, _, v) = browser_call(
        &api,
        "POST",
        "/api/v1/incidents",
        Some(&open),
        &[cookie.clone(), json.clone(), csrf.clone()],
    );
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["operator"], "rita");

    // The console's tables: exported as CSV, sorted on the server.
    let (status, headers, _) = browser_call(
        &api,
        "GET",
        "/console/incidents.csv",
        None,
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 200);
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-disposition: attachment"),
        "{headers}"
    );
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&api.ca)
        .args(["-H", &cookie])
        .arg(format!("{}/console/incidents.csv", api.base))
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.starts_with(
            "\"id\",\"opened\",\"operator\",\"reason\",\"hosts\",\"released\"\r\n\"INC-2026-0301\""
        ),
        "{csv}"
    );
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&api.ca)
        .args(["-H", &cookie])
        .arg(format!(
            "{}/console/?lang=en&sort=last_seen&order=desc",
            api.base
        ))
        .output()
        .unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.contains("id=\"sort-last_seen\"") && page.contains("▼"),
        "{page}"
    );

    // Logout ends the session: the same cookie replayed is refused.
    let (status, _, _) = browser_call(
        &api,
        "POST",
        "/api/v1/logout",
        Some("{}"),
        &[cookie.clone(), json.clone(), csrf.clone()],
    );
    assert_eq!(status, 200);
    let (status, _, _) = browser_call(
        &api,
        "GET",
        "/api/v1/hosts",
        None,
        std::slice::from_ref(&cookie),
    );
    assert_eq!(status, 401, "a cookie replayed after logout");
    let (status, _, _) = browser_call(
        &api,
        "GET",
        "/api/v1/hosts",
        None,
        &["Cookie: custody_session=forged".to_string()],
    );
    assert_eq!(status, 401);

    // Revoking the operator ends a live session at its next request.
    let (status, headers, _) = login("vera", "vera's long passphrase");
    assert_eq!(status, 200);
    let vera_cookie = headers
        .lines()
        .find_map(|l| l.split_once("custody_session="))
        .map(|(_, rest)| {
            format!(
                "Cookie: custody_session={}",
                rest.split(';').next().unwrap()
            )
        })
        .unwrap();
    let (status, _, _) = browser_call(
        &api,
        "GET",
        "/api/v1/hosts",
        None,
        std::slice::from_ref(&vera_cookie),
    );
    assert_eq!(status, 200);
    let out = collector(&[
        "operator",
        "revoke",
        "vera",
        "--ca-dir",
        setup.ca_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let (status, _, v) = browser_call(
        &api,
        "GET",
        "/api/v1/hosts",
        None,
        std::slice::from_ref(&vera_cookie),
    );
    assert_eq!(status, 403, "{v}");
    let (status, _, _) = login("vera", "vera's long passphrase");
    assert_eq!(status, 401, "a revoked operator cannot log in");

    // Failed logins are limited: after five failures, 429 even for the
    // right password, with Retry-After.
    // (Two failures so far from this address: rita's first try, vera's.)
    for _ in 0..3 {
        let (status, _, _) = login("rita", "guess guess guess");
        assert_eq!(status, 401);
    }
    let (status, headers, v) = login("rita", "correct horse battery staple");
    assert_eq!(status, 429, "{v}");
    assert!(
        headers.to_ascii_lowercase().contains("retry-after:"),
        "{headers}"
    );

    server.check_running().unwrap();
    // The console's own figures in /metrics: 2 logins (rita, vera); 5
    // failures (rita's first, vera revoked, three guesses) and the limited
    // one; refusals (no CSRF, replayed and forged cookies, revoked
    // session); one change (the incident).
    assert_eq!(setup.metric("custody_collector_api_logins_total"), 2.0);
    assert_eq!(
        setup.metric("custody_collector_api_login_failures_total"),
        6.0
    );
    assert!(setup.metric("custody_collector_api_denied_total") >= 4.0);
    assert_eq!(setup.metric("custody_collector_api_changes_total"), 1.0);
    let log = server.log();
    assert!(
        log.contains("api: login failed") && log.contains("api: logout"),
        "{log}"
    );
    assert!(!log.contains("correct horse"), "no password in the log");
    assert!(!log.contains(&token), "no session token in the log");
}

/// The console in headless Chromium: a responder logs in with a password,
/// sees the agent's host green, opens an incident with the form (its reason
/// a script, shown as text, never run), switches to English and logs out;
/// nothing on any page runs, loads from elsewhere or errs in the console,
/// and the session cookie is not readable by scripts.
#[test]
fn the_console_in_a_browser() {
    let env = TestEnv::new("ops-console");
    let mut setup = CollectorSetup::new(&env.subdir("collector"));
    let api_port = free_port();
    // Yellow after 15 s without a poll (agents poll every 3 s).
    setup.extra = vec![
        "--api-listen".into(),
        format!("127.0.0.1:{api_port}"),
        "--host-quiet-after-s".into(),
        "15".into(),
    ];
    let enroll = setup.enroll(&env.host_id);
    let mut server = CollectorProcess::start(&setup);
    add_operator(&setup, "rita", "responder");
    let mut child = Command::new(&bins().collector)
        .args([
            "operator",
            "passwd",
            "rita",
            "--ca-dir",
            setup.ca_dir.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"correct horse battery staple\n")
            .unwrap();
    }
    assert!(child.wait().unwrap().success());

    let mut w = LineWriter::new(env.log("app.log"), "console");
    w.append(testdata_lines(), 20);
    let mut opts = AgentOptions::new(&env).source("app", &env.log("app.log").to_string_lossy());
    opts.store = setup.url().into();
    opts.extra_args = vec![
        "--enrollment-dir".into(),
        enroll.to_string_lossy().into_owned(),
    ];
    let mut agent = AgentProcess::start(&opts);
    let state_dir = setup.state.clone();
    wait_for("the agent's first incident poll", WAIT, || {
        agent.check_running()?;
        server.check_running()?;
        state_dir
            .join("hosts")
            .join(format!("{}.json", env.host_id))
            .exists()
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    let streams_dir = setup.store.join("v1").join(&env.host_id).join("streams");
    wait_for("a segment of the agent's in the store", WAIT, || {
        agent.check_running()?;
        let found = walk_files(&streams_dir)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".seg.json"));
        found.then_some(()).ok_or_else(|| "not yet".to_string())
    });
    const HOSTILE: &str =
        "<script>window.__custody_pwned=1</script><img src=x onerror=\"window.__custody_pwned=1\">";
    let shots = env.root.join("screens");
    std::fs::create_dir_all(&shots).unwrap();
    let mut stopped = None;
    let v = custody_tests::browser::console_flow(
        &format!("https://127.0.0.1:{api_port}"),
        "rita",
        "correct horse battery staple",
        "INC-2026-0302",
        &env.host_id,
        HOSTILE,
        Some(&shots),
        &mut || {
            agent.stop_clean(Duration::from_secs(60));
            stopped = Some(std::time::Instant::now());
        },
    );
    let stopped = stopped.expect("the flow paused for the agent to stop");
    let yellow_after = stopped.elapsed();
    let yellow = &v["dashboard_yellow"];
    let row = yellow["host_rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == env.host_id.as_str())
        .unwrap_or_else(|| panic!("the host on the dashboard: {yellow}"));
    assert_eq!(row["state"], "state-yellow", "{row}");
    assert_eq!(row["dot"], "rgb(191, 135, 0)", "drawn yellow: {row}");
    assert!(
        yellow_after < Duration::from_secs(120),
        "yellow {yellow_after:?} after the agent stopped (threshold 15 s)"
    );
    assert!(
        yellow["text"].as_str().unwrap().contains("within 15 s"),
        "the rule shown is the configured one: {}",
        yellow["text"]
    );
    for (page, view) in v.as_object().unwrap() {
        let Some(view) = view.as_object() else {
            continue;
        };
        assert_eq!(view["pwned"], false, "{page}: a planted script ran");
        assert!(view["alert"].is_null(), "{page}: an alert opened");
        assert_eq!(view["foreign_elements"], serde_json::json!([]), "{page}");
        assert_eq!(view["console_errors"], serde_json::json!([]), "{page}");
        assert_eq!(view["external_requests"], serde_json::json!([]), "{page}");
    }
    assert_eq!(v["login_page"]["lang"], "zh-TW");
    assert!(v["login_page"]["text"]
        .as_str()
        .unwrap()
        .contains("操作人員登入"));
    assert!(v["login_failed"]["text"]
        .as_str()
        .unwrap()
        .contains("名稱或密碼錯誤"));
    let dash = &v["dashboard"];
    assert!(
        dash["url"].as_str().unwrap().contains("/console/"),
        "{dash}"
    );
    assert!(dash["text"].as_str().unwrap().contains("rita"), "{dash}");
    let row = dash["host_rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["host"] == env.host_id.as_str())
        .unwrap_or_else(|| panic!("the host on the dashboard: {dash}"));
    assert_eq!(row["state"], "state-green", "{row}");
    assert_eq!(row["dot"], "rgb(26, 127, 55)", "drawn green: {row}");
    // The host's page from its link: the stream the agent ships.
    assert!(
        v["host_page"]["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/console/hosts/{}", env.host_id)),
        "{}",
        v["host_page"]
    );
    let streams = v["host_streams"].as_array().unwrap();
    assert!(
        streams
            .iter()
            .any(|s| s["stream"].as_str().is_some_and(|n| !n.is_empty())),
        "{streams:?}: {}",
        v["host_page"]["text"]
    );
    assert_eq!(
        v["cookie_visible_to_script"], "",
        "the session cookie is HttpOnly"
    );
    assert_eq!(v["incident_reason"], HOSTILE, "the reason shown as text");
    assert!(v["incident"]["text"]
        .as_str()
        .unwrap()
        .contains("INC-2026-0302"));
    // The bundle stored: download offered, verified from the page, and
    // the trail shows the verification by rita, each event chained.
    let actions = |rows: &Value| -> Vec<String> {
        rows.as_array()
            .map(|r| {
                r.iter()
                    .map(|e| e["action"].as_str().unwrap_or("?").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        actions(&v["trail_before"]),
        ["collected", "received"],
        "{}",
        v["incident_stored"]["text"]
    );
    let links = v["download_links"].as_array().unwrap();
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(
        links[0].as_str().unwrap().ends_with(&format!(
            "/api/v1/incidents/INC-2026-0302/hosts/{}/bundle",
            env.host_id
        )),
        "{links:?}"
    );
    let verified = v["verified"]["text"].as_str().unwrap_or("");
    assert!(verified.contains("驗證通過"), "{verified}");
    let after = &v["trail_after"];
    assert_eq!(
        actions(after),
        ["collected", "received", "verified"],
        "{after}"
    );
    assert_eq!(after[2]["actor"], "rita", "{after}");
    for row in after.as_array().unwrap() {
        // Chained and signed: both cells read "是" (yes).
        let cells = row["cells"].as_array().unwrap();
        assert_eq!(cells[6], "是", "{row}");
        assert!(cells[7].as_str().unwrap().starts_with("是"), "{row}");
    }
    assert!(v["dashboard_after"]["text"]
        .as_str()
        .unwrap()
        .contains(HOSTILE));
    assert_eq!(v["dashboard_other_lang"]["lang"], "en");
    assert!(v["dashboard_other_lang"]["text"]
        .as_str()
        .unwrap()
        .contains("Incidents"));
    assert!(v["after_logout"]["url"]
        .as_str()
        .unwrap()
        .contains("/console/login"));
    assert!(
        v["after_logout_revisit"]["url"]
            .as_str()
            .unwrap()
            .contains("/console/login"),
        "logged out"
    );

    // The incident the form opened is the collector's, opened by rita.
    let out = collector(&[
        "incident",
        "status",
        "INC-2026-0302",
        "--json",
        "--state-dir",
        setup.state.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let local: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(local["incident"]["operator"], "rita");
    assert_eq!(local["incident"]["reason"], HOSTILE);
    assert!(server.log().contains("console: incident opened"));
}
