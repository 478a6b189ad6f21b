//! Evidence bundles: one tar file holding a BagIt bag (RFC 8493) with a
//! chain-of-custody manifest, an append-only custody log and a detached
//! `sshsig` signature over the tag manifest (FORMAT.md §14, "Evidence
//! bundles", is the binding description).
//!
//! - [`bagit`]: `bagit.txt`, `bag-info.txt` and manifest lines.
//! - [`custody_manifest`]: `custody-manifest.json` (RFC 3227, NIST SP 800-86 fields).
//! - [`custody_log`]: `custody.jsonl`, signed hand-over events in a hash chain.
//! - [`facts`]: what a custodian reads out of a bundle it holds (its
//!   custody log's last line, the shipped objects it references).
//! - [`shipped`]: `data/shipped.json`, the store objects that cover the copies.
//! - [`writer`]: [`writer::BagWriter`], streaming a bag into any `Write`
//!   with the fixed tar header rules, so the same inputs give the same bytes.
//! - [`tar_read`]: a bounded, link-refusing tar entry reader.
//! - [`verify`]: [`verify::verify_bundle`], checking a bundle read as a
//!   stream and returning findings.
//!
//! No file or socket access here: writers and readers take `Write`/`Read`.

pub mod bagit;
pub mod custody_log;
pub mod custody_manifest;
pub mod facts;
pub mod shipped;
pub mod tar_read;
pub mod verify;
pub mod writer;

use time::OffsetDateTime;

use crate::ids::IdError;

/// The sshsig namespace of the tag-manifest signature and custody events.
pub const BUNDLE_NAMESPACE: &str = "custody-bundle";
/// The bundle format version, written to `bag-info.txt` as `Custody-Bundle-Format`.
pub const BUNDLE_FORMAT_V1: &str = "custody.bundle.v1";

pub const BAGIT_TXT: &str = "bagit.txt";
pub const BAG_INFO_TXT: &str = "bag-info.txt";
pub const MANIFEST_TXT: &str = "manifest-sha256.txt";
pub const TAGMANIFEST_TXT: &str = "tagmanifest-sha256.txt";
pub const TAGMANIFEST_SIG: &str = "tagmanifest-sha256.txt.sig";
pub const ALLOWED_SIGNERS: &str = "allowed_signers";
pub const CUSTODY_MANIFEST_JSON: &str = "custody-manifest.json";
pub const CUSTODY_LOG: &str = "custody.jsonl";
/// The shipped-objects list inside the payload.
pub const SHIPPED_JSON: &str = "data/shipped.json";

/// The tag files the tag manifest lists, in this order.
pub const SIGNED_TAG_FILES: [&str; 5] = [
    BAGIT_TXT,
    BAG_INFO_TXT,
    MANIFEST_TXT,
    CUSTODY_MANIFEST_JSON,
    ALLOWED_SIGNERS,
];

/// Largest tag file a verifier reads into memory (64 MiB): tag files are
/// small text; anything bigger is refused rather than buffered.
pub const MAX_TAG_FILE: u64 = 64 << 20;

/// Incident ids are object-name components (the store key of a bundle), so
/// they use the host-id alphabet: 1–64 of `A–Z a–z 0–9 . _ -`, not starting
/// with `.` or `-`.
pub fn check_incident_id(id: &str) -> Result<(), IdError> {
    let err = |why| IdError {
        what: "incident id",
        value: id.to_string(),
        why,
    };
    if id.is_empty() || id.len() > 64 {
        return Err(err("must be 1 to 64 characters"));
    }
    if id.starts_with('.') || id.starts_with('-') {
        return Err(err("must not start with '.' or '-'"));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(err("may contain only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// `<incident>_<host>_<YYYYMMDDTHHMMSSffffffZ>`: the evidence id, also the
/// bag's directory name in the tar and the bundle's store object stem.
pub fn evidence_id(incident: &str, host: &str, started: OffsetDateTime) -> String {
    let t = crate::timefmt::format_utc(started).replace(['-', ':', '.'], "");
    format!("{incident}_{host}_{t}")
}

/// Store key of a bundle: `v1/<host>/bundles/<incident>/<evidence-id>.tar`.
pub fn bundle_store_key(host: &str, incident: &str, evidence_id: &str) -> String {
    format!(
        "{}/{host}/bundles/{incident}/{evidence_id}.tar",
        crate::layout::ROOT
    )
}

/// Bytes allowed unchanged in bag path components; others become `_`.
fn safe_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'+' | b'@' | b'=' | b',' | b'~')
}

/// The bag path for a copy of the host file `original` (absolute):
/// `data/logs/` followed by its components, each byte outside
/// `A–Z a–z 0–9 . _ - + @ = , ~` replaced by `_`, and `.`/`..`/empty
/// components dropped. The original path is kept exactly in the custody
/// manifest; this one only has to be safe and recognisable. Callers make
/// the result unique (see [`unique_path`]).
pub fn bag_path_for(prefix: &str, original: &[u8]) -> String {
    let mut out = String::from(prefix);
    let mut first = true;
    for comp in original.split(|b| *b == b'/') {
        if comp.is_empty() || comp == b"." || comp == b".." {
            continue;
        }
        if !first {
            out.push('/');
        }
        first = false;
        out.extend(
            comp.iter()
                .map(|&b| if safe_byte(b) { b as char } else { '_' }),
        );
    }
    if first {
        out.push('_');
    }
    out
}

/// `path`, or `path~N` for the smallest N ≥ 2 that `taken` does not contain.
pub fn unique_path(path: String, taken: &dyn Fn(&str) -> bool) -> String {
    if !taken(&path) {
        return path;
    }
    (2u64..)
        .map(|n| format!("{path}~{n}"))
        .find(|p| !taken(p))
        .expect("an unbounded range always yields a free name")
}

/// Why a path inside a bag is unsafe or not canonical.
pub fn check_bag_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty path");
    }
    if path.starts_with('/') {
        return Err("absolute path");
    }
    if path.len() > 4096 {
        return Err("path longer than 4096 bytes");
    }
    for comp in path.split('/') {
        match comp {
            "" => return Err("empty path component (`//` or trailing `/`)"),
            "." | ".." => return Err("`.` or `..` path component"),
            _ => {}
        }
        if comp.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\') {
            return Err("control character or backslash in path");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn ids_and_paths() {
        assert_eq!(
            evidence_id("INC-7", "web01", datetime!(2026-11-30 09:01:02.5 UTC)),
            "INC-7_web01_20261130T090102500000Z"
        );
        assert!(check_incident_id("INC-2026-0042").is_ok());
        assert!(check_incident_id("../x").is_err());
        assert_eq!(
            bag_path_for("data/logs/", b"/var/log/nginx/access log\n.1"),
            "data/logs/var/log/nginx/access_log_.1"
        );
        assert_eq!(bag_path_for("data/logs/", b"/a/../b"), "data/logs/a/b");
        let taken = |p: &str| p == "data/x" || p == "data/x~2";
        assert_eq!(unique_path("data/x".into(), &taken), "data/x~3");
        assert!(check_bag_path("b/data/../x").is_err());
        assert!(check_bag_path("/etc/passwd").is_err());
        assert!(check_bag_path("b/data/x").is_ok());
        let key = bundle_store_key("web01", "INC-7", "INC-7_web01_20261130T090102500000Z");
        assert_eq!(
            key,
            "v1/web01/bundles/INC-7/INC-7_web01_20261130T090102500000Z.tar"
        );
        assert!(matches!(
            crate::layout::parse_key(&key),
            Some(crate::layout::ParsedKey::Bundle { .. })
        ));
        assert!(crate::layout::parse_key("v1/web01/bundles/INC-7/other.tar").is_none());
        let event = crate::layout::bundle_event_key(&key, 3);
        assert_eq!(
            event,
            "v1/web01/bundles/INC-7/INC-7_web01_20261130T090102500000Z.events/00000000000000000003.json"
        );
        assert!(matches!(
            crate::layout::parse_key(&event),
            Some(crate::layout::ParsedKey::BundleEvent { seq: 3, .. })
        ));
        assert!(crate::layout::parse_key("v1/web01/bundles/INC-7/x.events/1.json").is_none());
    }
}
