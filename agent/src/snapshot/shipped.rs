//! The shipped side of a snapshot: the segments in the store whose records
//! name one of the copied files (same device and inode), and the digests
//! that list them, by name and hash (`data/shipped.json`), so the bundle
//! and the store can be checked against each other.
//!
//! Reads every segment record of the host (small JSON objects); a store of
//! months of segments takes a while, which the snapshot reports as progress.

use std::collections::{BTreeMap, BTreeSet};

use custody_evidence::bundle::shipped::{
    ShippedDigest, ShippedList, ShippedSegment, SHIPPED_FORMAT_V1,
};
use custody_evidence::digest::DigestBody;
use custody_evidence::layout::{self, ParsedKey};
use custody_evidence::segment::SegmentMeta;
use custody_evidence::{HostId, Sha256};
use custody_store::ObjectStore;
use time::OffsetDateTime;

/// Lists what `store` holds for `host` that covers the files `(device,
/// inode) → bag path`. A store error is returned as a note in the list,
/// never as a failure: the snapshot itself matters more.
pub async fn list(
    store: &dyn ObjectStore,
    host: &HostId,
    files: &BTreeMap<(u64, u64), String>,
    now: OffsetDateTime,
) -> ShippedList {
    let mut out = ShippedList {
        format: SHIPPED_FORMAT_V1.into(),
        host_id: host.clone(),
        store: store.describe(),
        listed_at: now,
        segments: Vec::new(),
        digests: Vec::new(),
        note: None,
    };
    if let Err(e) = fill(store, host, files, &mut out).await {
        out.note = Some(format!(
            "the store could not be read completely ({e}); this list may be incomplete"
        ));
    }
    out
}

async fn fill(
    store: &dyn ObjectStore,
    host: &HostId,
    files: &BTreeMap<(u64, u64), String>,
    out: &mut ShippedList,
) -> Result<(), custody_store::StoreError> {
    let mut wanted: BTreeSet<(String, u64, Sha256)> = BTreeSet::new();
    let prefix = format!("{}{}/", layout::host_prefix(host), "streams");
    for key in store.list(&prefix).await? {
        let Some(ParsedKey::SegmentMeta {
            stream,
            seq,
            object_sha256: object,
            ..
        }) = layout::parse_key(&key)
        else {
            continue;
        };
        let bytes = store.get(&key).await?;
        let Ok(meta) = SegmentMeta::decode(&bytes) else {
            continue; // the store verifier reports damaged records
        };
        // Only file sources have copies in a host's bundle.
        let Some(source) = meta.source.as_file() else {
            continue;
        };
        let id = (source.device, source.inode);
        let Some(bag_path) = files.get(&id) else {
            continue;
        };
        let meta_sha256 = Sha256::digest(&bytes);
        wanted.insert((stream.to_string(), seq.0, meta_sha256));
        out.segments.push(ShippedSegment {
            stream_id: stream.clone(),
            seq,
            record_key: key.clone(),
            meta_sha256,
            payload_key: layout::segment_payload_key(host, &stream, seq, &object),
            object_sha256: meta.object_sha256,
            raw_sha256: meta.raw_sha256,
            source_path: source.path.clone(),
            device: source.device,
            inode: source.inode,
            range: meta.range,
            bag_path: Some(bag_path.clone()),
        });
    }
    out.segments
        .sort_by(|a, b| (&a.stream_id, a.seq).cmp(&(&b.stream_id, b.seq)));
    let digest_keys: Vec<String> = store
        .list(&layout::digest_prefix(host))
        .await?
        .into_iter()
        .filter(|k| k.ends_with(".digest.json"))
        .collect();
    let last = digest_keys.last().cloned();
    for key in digest_keys {
        let bytes = store.get(&key).await?;
        let Ok(body) = DigestBody::decode(&bytes) else {
            continue;
        };
        let lists_ours = body
            .segments
            .iter()
            .any(|e| wanted.contains(&(e.stream_id.to_string(), e.seq.0, e.meta_sha256)));
        if !lists_ours && Some(&key) != last.as_ref() {
            continue;
        }
        let sig_key = format!("{key}.sig");
        let sig_sha256 = match store.get(&sig_key).await {
            Ok(b) => Some(Sha256::digest(&b)),
            Err(custody_store::StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        out.digests.push(ShippedDigest {
            seq: body.seq,
            key,
            sha256: Sha256::digest(&bytes),
            sig_key,
            sig_sha256,
        });
    }
    Ok(())
}
