//! Every example configuration shipped in `packaging/` must parse and check
//! with the real parser: an example that does not work teaches the wrong
//! thing to every administrator who copies it.

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
        })
        .collect();
    assert!(
        names.contains(&"debian/agent.toml".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"rhel/agent.toml".to_string()), "{names:?}");

    for file in &files {
        let raw = RawConfig::from_file(file).unwrap_or_else(|e| panic!("{e}"));
        let config = raw
            .check_with_hostname(Some("example-host"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(config.store, StoreTarget::Filesystem(_)),
            "{}",
            file.display()
        );

        // The regulation's log kinds that every server has must be covered.
        for category in [Category::Os, Category::Web, Category::Logon] {
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
