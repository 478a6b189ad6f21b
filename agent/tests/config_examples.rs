//! Every example configuration shipped in `packaging/` must parse and check
//! with the real parser: an example that does not work teaches the wrong
//! thing to every administrator who copies it.
//!
//! An example's paths are absolute only on its own OS (`C:\...` is a
//! relative path on Linux, `/var/log` one on Windows): each example is fully
//! checked on its OS and only parsed (syntax, unknown keys) on the other.
//! The Windows build of this test runs under Wine in CI (.ci/run).

use std::path::{Path, PathBuf};

use custody_agent::config::{RawConfig, SourceFraming, StoreTarget, UTMP_RECORD_SIZE};
use custody_evidence::Category;

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
}

fn examples() -> Vec<PathBuf> {
    let packaging = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging");
    let mut files = Vec::new();
    toml_files(&packaging, &mut files);
    files.sort();
    files
}

#[test]
fn every_packaged_example_config_is_valid() {
    let files = examples();
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging"))
                .unwrap()
                .display()
                .to_string()
                .replace('\\', "/")
        })
        .collect();
    assert!(
        names.contains(&"debian/agent.toml".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"rhel/agent.toml".to_string()), "{names:?}");
    assert!(
        names.contains(&"windows/agent.toml".to_string()),
        "{names:?}"
    );

    for (file, name) in files.iter().zip(&names) {
        let raw = RawConfig::from_file(file).unwrap_or_else(|e| panic!("{e}"));
        let windows_example = name.starts_with("windows");
        if windows_example != cfg!(windows) {
            continue; // parsed above; its paths are absolute only on its OS
        }
        let config = raw
            .check_with_hostname(Some("example-host"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(config.store, StoreTarget::Filesystem(_)),
            "{}",
            file.display()
        );

        // The regulation's log kinds that every server has must be covered
        // (on Windows the OS and logon logs come from Event Log channels).
        let required: &[Category] = &[Category::Os, Category::Web, Category::Logon];
        for &category in required {
            assert!(
                config.sources.iter().any(|s| s.category == category),
                "{} has no {category} source",
                file.display()
            );
        }
        // Binary login records must never be cut as lines.
        for source in &config.sources {
            let binary = source
                .paths
                .iter()
                .any(|p| p.contains("/wtmp") || p.contains("/btmp"));
            if binary {
                assert_eq!(
                    source.framing,
                    SourceFraming::Records {
                        size: UTMP_RECORD_SIZE
                    },
                    "{}: source {}",
                    file.display(),
                    source.name
                );
            }
        }
    }
}

/// The IIS preset: every site's W3C logs, as IIS names them, category web;
/// and the glob finds them on Windows paths (run under Wine in CI).
#[test]
fn the_windows_example_follows_every_iis_site() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/windows/agent.toml");
    let raw = RawConfig::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let iis = raw
        .sources
        .iter()
        .find(|s| s.name.as_deref() == Some("iis"))
        .expect("an iis source");
    assert_eq!(iis.category.as_deref(), Some("web"));
    assert_eq!(
        iis.paths.as_deref(),
        Some(&[r"C:\inetpub\logs\LogFiles\W3SVC*\*.log".to_string()][..])
    );
    #[cfg(windows)]
    {
        let config = raw
            .check_with_hostname(Some("web01"))
            .unwrap_or_else(|e| panic!("{e}"));
        let iis = config.sources.iter().find(|s| s.name == "iis").unwrap();
        // The same pattern, rooted in a temporary directory instead of C:\.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(r"inetpub\logs\LogFiles");
        for site in ["W3SVC1", "W3SVC2"] {
            std::fs::create_dir_all(root.join(site)).unwrap();
            std::fs::write(root.join(site).join("u_ex261130.log"), "#Fields: date\r\n").unwrap();
        }
        std::fs::write(root.join("W3SVC1").join("u_ex261130.log.txt"), "").unwrap();
        let pattern =
            iis.paths[0].replacen(r"C:\inetpub\logs\LogFiles", &root.display().to_string(), 1);
        let found: Vec<_> = glob::glob(&pattern).unwrap().map(|p| p.unwrap()).collect();
        assert_eq!(found.len(), 2, "{pattern}: {found:?}");
        assert!(
            found.iter().all(|p| p.ends_with("u_ex261130.log")),
            "{found:?}"
        );
    }
}
