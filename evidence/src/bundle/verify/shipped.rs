//! The bundle against the store: shipped ranges in the copies, and (with
//! a store) the shipped objects themselves.

use std::collections::BTreeSet;

use super::{
    BundleFinding, BundleFindingKind, BundleReport, BundleVerifyError, BundleVerifyOptions,
    Collected,
};
use crate::bundle::SHIPPED_JSON;
use crate::ids::Sha256;
use crate::verify::Severity;

pub(super) fn check_shipped(
    report: &mut BundleReport,
    c: &Collected,
    host: Option<&str>,
    opts: &BundleVerifyOptions<'_>,
) -> Result<(), BundleVerifyError> {
    use BundleFindingKind as K;
    let Some((_, parsed)) = &c.shipped else {
        return Ok(());
    };
    let list = match parsed {
        Ok(l) => l,
        Err(e) => {
            report.push(
                BundleFinding::new(Severity::Error, K::ShippedCorrupt, e.to_string())
                    .file(SHIPPED_JSON),
            );
            return Ok(());
        }
    };
    if host.is_some() && Some(list.host_id.as_str()) != host {
        report.push(
            BundleFinding::new(
                Severity::Error,
                K::ShippedCorrupt,
                "the shipped list is another host's",
            )
            .file(SHIPPED_JSON)
            .expected(host.unwrap_or_default())
            .found(&list.host_id),
        );
    }
    for (i, s) in list.segments.iter().enumerate() {
        let Some(bag_path) = &s.bag_path else {
            continue;
        };
        let what = format!("{} seq {} ({})", s.stream_id, s.seq, s.record_key);
        match (c.data.get(bag_path), c.range_hashes.get(&i)) {
            (Some(_), Some(h)) => {
                report.shipped_ranges_checked += 1;
                if *h != s.raw_sha256 {
                    report.push(
                        BundleFinding::new(
                            Severity::Warning,
                            K::ShippedRangeMismatch,
                            format!(
                                "bytes {}..{} of the bundled copy differ from what segment {what} shipped: the file \
                                 on the host changed after it was shipped (edited, or truncated and rewritten)",
                                s.range.start, s.range.end
                            ),
                        )
                        .file(bag_path)
                        .expected(s.raw_sha256)
                        .found(h),
                    );
                }
            }
            (Some(seen), None) => report.push(
                BundleFinding::new(
                    Severity::Info,
                    K::ShippedRangeUnchecked,
                    if s.range.end > seen.size {
                        format!("segment {what} covers bytes up to {}, past the copy's end: the file was truncated or replaced since", s.range.end)
                    } else {
                        format!("segment {what}: the shipped list came after the copy in the tar, so its range was not hashed")
                    },
                )
                .file(bag_path),
            ),
            (None, _) => {}
        }
    }
    let Some(store) = opts.store else {
        return Ok(());
    };
    // One listing of the host's objects, then lookups by name.
    let listed: BTreeSet<String> = store
        .list(&crate::layout::host_prefix(&list.host_id))?
        .into_iter()
        .collect();
    let check = |key: &str,
                 want: Sha256,
                 report: &mut BundleReport|
     -> Result<(), BundleVerifyError> {
        report.store_objects_checked += 1;
        if !listed.contains(key) {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::ShippedObjectMissing,
                    "the bundle lists this object as shipped, but the store does not hold it (deleted?)",
                )
                .file(key)
                .expected(want),
            );
            return Ok(());
        }
        let got = Sha256::digest(&store.read(key)?);
        if got != want {
            report.push(
                BundleFinding::new(
                    Severity::Error,
                    K::ShippedObjectMismatch,
                    "the store object's SHA-256 differs from the bundle's shipped list",
                )
                .file(key)
                .expected(want)
                .found(got),
            );
        }
        Ok(())
    };
    for s in &list.segments {
        check(&s.record_key, s.meta_sha256, report)?;
        check(&s.payload_key, s.object_sha256, report)?;
    }
    for d in &list.digests {
        check(&d.key, d.sha256, report)?;
        if let Some(sig) = d.sig_sha256 {
            check(&d.sig_key, sig, report)?;
        }
    }
    Ok(())
}
