//! `custody-collector operator add/list/revoke` through the real binary,
//! and the boundary between operator and agent certificates on the real
//! collector's ingest listener (issue 10, first slice).

use std::path::Path;
use std::process::Command;

use custody_tests::collector::{CollectorProcess, CollectorSetup, Curl};
use custody_tests::*;

fn collector(args: &[&str], ca_dir: &Path) -> (bool, String, String) {
    let out = Command::new(&bins().collector)
        .args(args)
        .arg("--ca-dir")
        .arg(ca_dir)
        .output()
        .expect("run custody-collector");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn openssl_x509(cert: &Path, what: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout"])
        .args(what)
        .arg("-in")
        .arg(cert)
        .output()
        .expect("openssl x509");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn operator_certificates_are_issued_listed_revoked_and_refused_on_ingest() {
    let env = TestEnv::new("operators");
    let setup = CollectorSetup::new(&env.subdir("collector"));
    let agent_enroll = setup.enroll(&env.host_id);
    let alice = setup.root.join("op-alice");
    let alice_dir = alice.to_string_lossy().into_owned();

    let (ok, stdout, stderr) = collector(
        &[
            "operator",
            "add",
            "alice",
            "--role",
            "responder",
            "--out",
            &alice_dir,
        ],
        &setup.ca_dir,
    );
    assert!(ok, "{stdout}{stderr}");
    let cert = alice.join("operator.pem");
    // The convention, as the stock tool shows it: an operator URI, no host URI.
    let san = openssl_x509(&cert, &["-ext", "subjectAltName"]);
    assert!(san.contains("URI:custody://operator/alice"), "{san}");
    assert!(!san.contains("custody://host/"), "{san}");
    let fingerprint = openssl_x509(&cert, &["-fingerprint", "-sha256"]);
    let fingerprint = fingerprint
        .trim()
        .rsplit('=')
        .next()
        .unwrap_or_default()
        .replace(':', "")
        .to_ascii_lowercase();

    let (ok, stdout, stderr) = collector(&["operator", "list", "--json"], &setup.ca_dir);
    assert!(ok, "{stderr}");
    let listed: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("operator list --json line"))
        .collect();
    assert_eq!(listed.len(), 1, "{stdout}");
    assert_eq!(listed[0]["name"], "alice");
    assert_eq!(listed[0]["role"], "responder");
    assert_eq!(listed[0]["fingerprint_sha256"], fingerprint.as_str());
    assert!(listed[0]["revoked"].is_null(), "{stdout}");

    // Bad names and roles: refused, nothing written.
    for (name, role) in [
        ("../evil", "admin"),
        ("<b>x</b>", "viewer"),
        ("bob", "root"),
    ] {
        let out = setup.root.join("op-bad");
        let (ok, stdout, stderr) = collector(
            &[
                "operator",
                "add",
                name,
                "--role",
                role,
                "--out",
                &out.to_string_lossy(),
            ],
            &setup.ca_dir,
        );
        assert!(!ok, "{name} {role}: {stdout}");
        assert!(stderr.contains(name) || stderr.contains(role), "{stderr}");
        assert!(
            !out.join("operator.key").exists(),
            "{name}: nothing written"
        );
    }
    let (_, stdout, _) = collector(&["operator", "list", "--json"], &setup.ca_dir);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    // On ingest the agent is served and the operator refused.
    let _collector = CollectorProcess::start(&setup);
    let list = format!("/v1/list?prefix=v1/{}/", env.host_id);
    let agent = Curl::new(&setup, Some(&agent_enroll));
    let reply = agent.request("GET", &list, None, &[]);
    assert_eq!(reply.status, 200, "the agent, as a control: {reply:?}");
    let mut operator = Curl::new(&setup, None);
    operator.identity = Some((cert.clone(), alice.join("operator.key")));
    let reply = operator.request("GET", &list, None, &[]);
    assert_eq!(
        reply.status, 403,
        "an operator certificate on ingest: {reply:?}"
    );
    assert!(reply.body.contains("custody://host/"), "{reply:?}");

    // Revoke: listed as revoked, its serial in the collector's revocation list.
    let (ok, stdout, stderr) = collector(&["operator", "revoke", "alice"], &setup.ca_dir);
    assert!(ok, "{stderr}");
    let serial = listed[0]["serial"].as_str().expect("serial");
    assert!(stdout.contains(serial), "{stdout}");
    let revoked =
        std::fs::read_to_string(setup.ca_dir.join("revoked.jsonl")).expect("revoked.jsonl");
    assert!(
        revoked.contains(serial) && revoked.contains("operator:alice"),
        "{revoked}"
    );
    let (_, stdout, _) = collector(&["operator", "list", "--json"], &setup.ca_dir);
    let after: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert!(after["revoked"].is_string(), "{stdout}");
    let (ok, _, stderr) = collector(&["operator", "revoke", "nobody"], &setup.ca_dir);
    assert!(!ok && stderr.contains("nobody"), "{stderr}");
}
