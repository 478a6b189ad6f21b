//! The Windows Event Log channels of `kind = "eventlog"` sources in a
//! snapshot (FORMAT.md §17.5): each channel exported with `EvtExportLog`
//! into the state directory, added to the bag byte for byte at
//! `data/eventlog/<channel, "/" as "%2F">.evtx` (kind `log`), and the
//! temporary file removed. A channel that cannot be exported is listed in
//! `changes` with the Windows error; the snapshot goes on.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use custody_evidence::bundle::custody_manifest::{Change, Item, ItemKind};
use custody_evidence::bundle::writer::BagWriter;

use crate::config::Config;

/// Exports and adds every configured channel; only an error writing the
/// bag itself ends the snapshot.
pub fn add_channels<W: Write>(
    config: &Config,
    bag: &mut BagWriter<W>,
    items: &mut Vec<Item>,
    changes: &mut Vec<Change>,
    progress: &mut dyn FnMut(u64),
) -> anyhow::Result<()> {
    let channels = config.sources.iter().filter_map(|s| s.eventlog.as_deref());
    for (i, channel) in channels.enumerate() {
        let bag_path = crate::eventlog::snapshot_bag_path(channel);
        if bag.contains(&bag_path) {
            continue; // the same channel named by two sources
        }
        let temp = config.state_dir.join(format!("snapshot-export-{i}.evtx"));
        // EvtExportLog refuses an existing target: a leftover of an
        // interrupted snapshot is ours to remove.
        let _ = fs::remove_file(&temp);
        let exported = export(channel, &temp).and_then(|()| {
            let file = File::open(&temp)
                .map_err(|e| format!("opening the export {}: {e}", temp.display()))?;
            let len = file
                .metadata()
                .map_err(|e| format!("fstat of the export {}: {e}", temp.display()))?
                .len();
            Ok((file, len))
        });
        match exported {
            Ok((file, len)) => {
                let copied = bag
                    .add_stream(&bag_path, len, file, progress)
                    .with_context(|| format!("adding the export of channel {channel}"))?;
                items.push(Item {
                    path: bag_path,
                    kind: ItemKind::Log,
                    volatility: 4,
                    original_path: Some(channel.to_string()),
                    len: copied.len,
                    sha256: copied.sha256,
                    file: None,
                    note: Some(format!(
                        "the event log channel {channel} as EvtExportLog wrote it (.evtx)"
                    )),
                });
            }
            Err(why) => changes.push(Change {
                item: None,
                what: format!("the event log channel {channel} was not exported: {why}"),
                reason: "EvtExportLog failed (FORMAT.md §17.5); the channel's events are only in the shipped segments".into(),
            }),
        }
        let _ = fs::remove_file(&temp);
    }
    Ok(())
}

#[cfg(windows)]
fn export(channel: &str, target: &Path) -> Result<(), String> {
    crate::eventlog::wevt::export_channel(channel, target)
}

/// The config refuses event log sources off Windows; never reached.
#[cfg(not(windows))]
fn export(_channel: &str, _target: &Path) -> Result<(), String> {
    Err("the Windows Event Log exists only on Windows".into())
}
