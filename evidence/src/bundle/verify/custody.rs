//! Who signed: the tag-manifest signature and the custody log's events.

use super::{BundleFinding, BundleFindingKind, BundleReport, BundleVerifyOptions, Collected};
use crate::bundle::custody_log::{split_lines, Action, EventLine};
use crate::bundle::{
    ALLOWED_SIGNERS, BUNDLE_NAMESPACE, CUSTODY_LOG, TAGMANIFEST_SIG, TAGMANIFEST_TXT,
};
use crate::ids::Sha256;
use crate::segment::DecodeError;
use crate::sign::{self, SignError};
use crate::verify::{Severity, SourceError};

/// Checks the tag-manifest signature; returns the signer's key line when it verified.
pub(super) fn check_signature(
    report: &mut BundleReport,
    c: &Collected,
    host: Option<&str>,
    opts: &BundleVerifyOptions<'_>,
) -> Option<String> {
    use BundleFindingKind as K;
    let tagmanifest = c.tags.get(TAGMANIFEST_TXT)?;
    let Some(sig_bytes) = c.tags.get(TAGMANIFEST_SIG) else {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::SignatureMissing,
                "no signature over the tag manifest: nothing in the bundle is signed",
            )
            .file(TAGMANIFEST_SIG),
        );
        return None;
    };
    let sig = String::from_utf8_lossy(sig_bytes).into_owned();
    let claimed = match sign::signer_of(&sig) {
        Ok(k) => k,
        Err(e) => {
            report.push(
                BundleFinding::new(Severity::Error, K::SignatureInvalid, e.to_string())
                    .file(TAGMANIFEST_SIG),
            );
            return None;
        }
    };
    let claimed_fp = sign::fingerprint_of(&claimed).unwrap_or_else(|_| claimed.clone());
    let principal_ok = |p: &str| p == "*" || Some(p) == host;
    let (candidates, trusted): (Vec<String>, bool) = match &opts.trusted_signers {
        Some(list) => (
            list.iter()
                .filter(|(p, _)| principal_ok(p))
                .map(|(_, k)| k.clone())
                .collect(),
            true,
        ),
        None => {
            let bundled = c
                .tags
                .get(ALLOWED_SIGNERS)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            match sign::parse_allowed_signers(&bundled) {
                Ok(entries) => (
                    entries
                        .into_iter()
                        .filter(|e| e.allows_namespace(BUNDLE_NAMESPACE))
                        .filter(|e| e.principals.iter().any(|p| principal_ok(p)))
                        .map(|e| e.public_key_line)
                        .collect(),
                    false,
                ),
                Err(e) => {
                    report.push(
                        BundleFinding::new(
                            Severity::Error,
                            K::NoTrustedKey,
                            format!("the bundled allowed_signers is unusable ({e}) and no trusted key was given"),
                        )
                        .file(ALLOWED_SIGNERS),
                    );
                    return None;
                }
            }
        }
    };
    if candidates.is_empty() {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::NoTrustedKey,
                format!(
                    "no key for host {} in namespace {BUNDLE_NAMESPACE} to check the signature with ({})",
                    host.unwrap_or("(unknown)"),
                    if trusted { "the trusted keys given" } else { "the bundled allowed_signers" }
                ),
            )
            .file(TAGMANIFEST_SIG)
            .found(&claimed_fp),
        );
        return None;
    }
    let mut last_err = None;
    for key in &candidates {
        match sign::verify(key, BUNDLE_NAMESPACE, tagmanifest, &sig) {
            Ok(info) => {
                report.signer = Some(info.fingerprint.clone());
                report.signer_trusted = trusted;
                report.push(
                    BundleFinding::new(
                        Severity::Info,
                        K::SignedBy,
                        if trusted {
                            "the tag manifest is signed by a trusted key".to_string()
                        } else {
                            "the tag manifest is signed by the key in the bundle's own allowed_signers".to_string()
                        },
                    )
                    .file(TAGMANIFEST_SIG)
                    .found(&info.fingerprint),
                );
                if !trusted {
                    report.push(
                        BundleFinding::new(
                            Severity::Info,
                            K::KeysFromBundle,
                            "the signature was checked against the key the bundle carries, which proves only that the \
                             bundle is consistent with itself; give --trusted-key or --allowed-signers from an \
                             independent record to know who signed it",
                        )
                        .file(ALLOWED_SIGNERS),
                    );
                }
                return Some(info.public_key_line);
            }
            Err(e) => last_err = Some(e),
        }
    }
    let expected = candidates
        .iter()
        .map(|k| sign::fingerprint_of(k).unwrap_or_else(|_| k.clone()))
        .collect::<Vec<_>>()
        .join(",");
    let finding = match last_err {
        Some(SignError::WrongKey { .. }) => BundleFinding::new(
            Severity::Error,
            K::SignatureWrongKey,
            if trusted {
                "the tag manifest is signed by a key that is not trusted for this host"
            } else {
                "the tag manifest is signed by a key other than the one in the bundle's allowed_signers"
            },
        )
        .expected(expected)
        .found(claimed_fp),
        Some(e) => BundleFinding::new(
            Severity::Error,
            K::SignatureInvalid,
            format!("{e}: the tag manifest (or a file it lists) changed after signing"),
        )
        .found(claimed_fp),
        None => BundleFinding::new(Severity::Error, K::SignatureInvalid, "no key to check"),
    };
    report.push(finding.file(TAGMANIFEST_SIG));
    None
}

/// The custody log: `custody.jsonl`'s lines and then, with a store, the
/// events a collector appended beside the stored bundle (FORMAT.md §15.4),
/// one chain. Errs only when the store cannot be read.
pub(super) fn check_custody_log(
    report: &mut BundleReport,
    c: &Collected,
    bag_signer: Option<&str>,
    opts: &BundleVerifyOptions<'_>,
) -> Result<(), SourceError> {
    use BundleFindingKind as K;
    let Some(bytes) = c.tags.get(CUSTODY_LOG) else {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::CustodyLogMissing,
                "custody.jsonl is missing: no record of who handled the evidence",
            )
            .file(CUSTODY_LOG),
        );
        return Ok(());
    };
    let bag_sha = c.tags.get(TAGMANIFEST_TXT).map(|t| Sha256::digest(t));
    let lines = split_lines(bytes);
    if lines.is_empty() {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::CustodyChainBroken,
                "custody.jsonl is empty: the `collected` event was removed",
            )
            .file(CUSTODY_LOG)
            .expected("event 0 (collected)")
            .found("no events"),
        );
        return Ok(());
    }
    // (label, line): the bag's own lines, then the events stored beside it.
    let mut entries: Vec<(String, Vec<u8>)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (format!("{CUSTODY_LOG}:{}", i + 1), l.to_vec()))
        .collect();
    if let (Some(store), Some(root), Some(host), Some(incident)) = (
        opts.store,
        c.root.as_deref(),
        report.host_id.as_deref(),
        report.incident_id.as_deref(),
    ) {
        let bundle_key = crate::bundle::bundle_store_key(host, incident, root);
        for key in store.list(&crate::layout::bundle_events_prefix(&bundle_key))? {
            let bytes = store.read(&key)?;
            entries.push((key, bytes));
        }
    }
    let trusted_keys: Option<Vec<String>> = opts.trusted_signers.as_ref().map(|l| {
        l.iter()
            .filter_map(|(_, k)| sign::normalize_public_key(k).ok())
            .collect()
    });
    let mut prev: Option<&[u8]> = None;
    for (i, (file, line)) in entries.iter().enumerate() {
        let (file, line) = (file.as_str(), line.as_slice());
        let ev = match EventLine::decode(line) {
            Ok(ev) => ev,
            Err(e) => {
                report.push(
                    BundleFinding::new(
                        Severity::Error,
                        match e {
                            DecodeError::UnknownFormat { .. } => K::UnknownFormat,
                            _ => K::CustodyEventCorrupt,
                        },
                        e.to_string(),
                    )
                    .file(file),
                );
                prev = Some(line);
                continue;
            }
        };
        report.custody_events += 1;
        let e = &ev.event;
        if e.seq != i as u64 {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "custody events out of sequence: an event was removed or the events were reordered",
                )
                .file(file)
                .expected(format!("seq {i}"))
                .found(format!("seq {}", e.seq)),
            );
        }
        let want_prev = prev.map(Sha256::digest);
        if e.prev_event != want_prev {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "prev_event is not the hash of the line before: an event was removed, reordered or edited",
                )
                .file(file)
                .expected(
                    want_prev
                        .map(|h| h.to_hex())
                        .unwrap_or_else(|| "null".into()),
                )
                .found(
                    e.prev_event
                        .map(|h| h.to_hex())
                        .unwrap_or_else(|| "null".into()),
                ),
            );
        }
        if i == 0 && e.action != Action::Collected {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "the first custody event must be `collected`",
                )
                .file(file)
                .expected("collected")
                .found(format!("{:?}", e.action).to_lowercase()),
            );
        }
        if c.root.as_deref() != Some(e.evidence_id.as_str()) {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyChainBroken,
                    "a custody event about another bundle",
                )
                .file(file)
                .expected(c.root.clone().unwrap_or_default())
                .found(&e.evidence_id),
            );
        }
        if let Some(h) = bag_sha {
            if e.bag_sha256 != h {
                report.push(
                    BundleFinding::new(
                        Severity::Error,
                        K::CustodyChainBroken,
                        "the event names another tag manifest: it is about a different (or altered) bag",
                    )
                    .file(file)
                    .expected(h)
                    .found(e.bag_sha256),
                );
            }
        }
        match ev.verify_signature() {
            Err(err) => report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::CustodyEventSignatureInvalid,
                    format!("{err}: the event was altered after signing"),
                )
                .file(file),
            ),
            Ok(info) => {
                let signer = info.public_key_line;
                let trusted = match &trusted_keys {
                    Some(keys) => keys.contains(&signer),
                    None => Some(signer.as_str()) == bag_signer,
                };
                if i == 0 && bag_signer.is_some() && Some(signer.as_str()) != bag_signer {
                    report.push(
                        BundleFinding::new(
                            Severity::Error,
                            K::CustodyEventSignatureInvalid,
                            "the `collected` event must be signed by the key that signed the bag",
                        )
                        .file(file)
                        .expected(
                            bag_signer
                                .and_then(|k| sign::fingerprint_of(k).ok())
                                .unwrap_or_default(),
                        )
                        .found(&info.fingerprint),
                    );
                } else if !trusted {
                    report.push(
                        BundleFinding::new(
                            Severity::Warning,
                            K::CustodyEventUntrustedKey,
                            format!(
                                "event {:?} by {:?} is signed by a key not among the trusted keys (another custodian?)",
                                format!("{:?}", e.action).to_lowercase(),
                                e.actor
                            ),
                        )
                        .file(file)
                        .found(&info.fingerprint),
                    );
                }
            }
        }
        prev = Some(line);
    }
    Ok(())
}
