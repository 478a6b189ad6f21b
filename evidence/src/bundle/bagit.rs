//! The BagIt (RFC 8493) tag files, as text: `bagit.txt`, `bag-info.txt` and
//! the `manifest-sha256.txt` / `tagmanifest-sha256.txt` line format.
//! Encoders give exactly one encoding (FORMAT.md, "Evidence bundles");
//! parsers accept what RFC 8493 allows so a bag made by another tool is
//! reported on, not refused.

use std::fmt;

use crate::ids::Sha256;

/// `bagit.txt` as custody writes it (RFC 8493 §2.1.1).
pub const BAGIT_TXT: &str = "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n";

/// Why a tag file could not be parsed; `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {why}")]
pub struct TagFileError {
    pub line: usize,
    pub why: String,
}

/// One line of a manifest: the hash of a file and its path relative to the
/// bag root (`data/…` in the payload manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub sha256: Sha256,
    pub path: String,
}

/// RFC 8493 §2.1.3: in manifest paths `%`, CR and LF are percent-encoded.
pub fn encode_manifest_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '\r' => out.push_str("%0D"),
            '\n' => out.push_str("%0A"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`encode_manifest_path`]; other `%XX` sequences are kept
/// as written (RFC 8493 decodes only these three).
pub fn decode_manifest_path(path: &str) -> String {
    path.replace("%0D", "\r")
        .replace("%0d", "\r")
        .replace("%0A", "\n")
        .replace("%0a", "\n")
        .replace("%25", "%")
}

/// `<hash>  <path>\n` per entry, in the order given: the same two-space
/// form `sha256sum` writes, so `sha256sum -c manifest-sha256.txt` works in
/// the bag root.
pub fn encode_manifest(entries: &[ManifestEntry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&e.sha256.to_hex());
        out.push_str("  ");
        out.push_str(&encode_manifest_path(&e.path));
        out.push('\n');
    }
    out
}

/// Parses a manifest: each non-empty line is a checksum, whitespace, and a
/// path. Uppercase hex is refused (custody writes lowercase; a verifier
/// that accepted both would have two encodings of one manifest).
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>, TagFileError> {
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let err = |why: String| TagFileError { line: i + 1, why };
        let (hash, rest) = line
            .split_once([' ', '\t'])
            .ok_or_else(|| err("no path after the checksum".into()))?;
        let path = rest.trim_start_matches([' ', '\t']);
        if path.is_empty() {
            return Err(err("no path after the checksum".into()));
        }
        let sha256 = hash
            .parse::<Sha256>()
            .map_err(|e| err(format!("checksum {hash:?}: {}", e.why)))?;
        out.push(ManifestEntry {
            sha256,
            path: decode_manifest_path(path),
        });
    }
    Ok(out)
}

/// `bag-info.txt`: labelled values in order (labels may repeat, RFC 8493
/// §2.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BagInfo {
    pub fields: Vec<(String, String)>,
}

/// A label or value that cannot be written on one `bag-info.txt` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bag-info.txt {label:?}: {why}")]
pub struct BagInfoError {
    pub label: String,
    pub why: &'static str,
}

impl BagInfo {
    pub fn push(&mut self, label: &str, value: impl Into<String>) {
        self.fields.push((label.to_string(), value.into()));
    }

    /// The first value under `label` (labels compare case-insensitively, as
    /// RFC 8493 recommends readers do).
    pub fn get(&self, label: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(l, _)| l.eq_ignore_ascii_case(label))
            .map(|(_, v)| v.as_str())
    }

    /// `Label: value\n` per field. Values are single lines: custody refuses
    /// control characters in what goes here (the operator's text is kept
    /// exactly in the custody manifest), so there is no line folding.
    pub fn encode(&self) -> Result<String, BagInfoError> {
        let mut out = String::new();
        for (label, value) in &self.fields {
            let bad = |why| {
                Err(BagInfoError {
                    label: label.clone(),
                    why,
                })
            };
            if label.is_empty()
                || label.contains(':')
                || label.chars().any(|c| c.is_control() || c.is_whitespace())
            {
                return bad("labels must be non-empty, without ':', spaces or control characters");
            }
            if value.chars().any(char::is_control) {
                return bad("values must not contain control characters (line breaks)");
            }
            if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
                return bad("values must not begin or end with whitespace");
            }
            out.push_str(label);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        }
        Ok(out)
    }

    /// Parses `Label: value` lines; a line starting with whitespace
    /// continues the previous value (joined with one space).
    pub fn parse(text: &str) -> Result<BagInfo, TagFileError> {
        let mut info = BagInfo::default();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line.starts_with([' ', '\t']) {
                match info.fields.last_mut() {
                    Some((_, v)) => {
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                    None => {
                        return Err(TagFileError {
                            line: i + 1,
                            why: "continuation line before any label".into(),
                        })
                    }
                }
                continue;
            }
            let (label, value) = line.split_once(':').ok_or_else(|| TagFileError {
                line: i + 1,
                why: format!("{line:?} is not `Label: value`"),
            })?;
            info.fields
                .push((label.trim().to_string(), value.trim().to_string()));
        }
        Ok(info)
    }
}

/// RFC 8493 §2.2.2 `Payload-Oxum`: `<octets>.<file count>` of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadOxum {
    pub octets: u64,
    pub files: u64,
}

impl fmt::Display for PayloadOxum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.octets, self.files)
    }
}

impl PayloadOxum {
    pub fn parse(s: &str) -> Option<PayloadOxum> {
        let (o, n) = s.split_once('.')?;
        Some(PayloadOxum {
            octets: o.parse().ok()?,
            files: n.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_with_encoded_paths() {
        let entries = vec![
            ManifestEntry {
                sha256: Sha256::digest(b"a"),
                path: "data/logs/var/log/auth.log".into(),
            },
            ManifestEntry {
                sha256: Sha256::digest(b"b"),
                path: "data/odd%name\nwith newline".into(),
            },
        ];
        let text = encode_manifest(&entries);
        assert!(text.starts_with(&format!(
            "{}  data/logs/var/log/auth.log\n",
            Sha256::digest(b"a")
        )));
        assert!(text.contains("data/odd%25name%0Awith newline\n"), "{text}");
        assert_eq!(parse_manifest(&text).unwrap(), entries);
        assert!(parse_manifest("ABCD  data/x\n").is_err());
        assert_eq!(parse_manifest("zz\n").unwrap_err().line, 1);
    }

    #[test]
    fn bag_info_one_line_values_only() {
        let mut info = BagInfo::default();
        info.push("External-Identifier", "inc-1");
        info.push("Payload-Oxum", "10.2");
        let text = info.encode().unwrap();
        assert_eq!(text, "External-Identifier: inc-1\nPayload-Oxum: 10.2\n");
        assert_eq!(BagInfo::parse(&text).unwrap(), info);
        assert_eq!(info.get("payload-oxum"), Some("10.2"));
        let mut bad = BagInfo::default();
        bad.push("Custody-Reason", "two\nlines");
        assert!(bad.encode().is_err());
        let folded = BagInfo::parse("A: one\n  two\n").unwrap();
        assert_eq!(folded.get("A"), Some("one two"));
        assert_eq!(
            PayloadOxum::parse("10.2"),
            Some(PayloadOxum {
                octets: 10,
                files: 2
            })
        );
    }
}
