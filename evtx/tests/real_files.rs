//! The real .evtx samples in `../shared/testdata/windows/` (EVTX-ATTACK-SAMPLES,
//! see its README). Expected values were read independently with python-evtx
//! 0.8.1 (`Evtx.Evtx(...).records()`, then the record XML; times from the
//! raw FILETIME of the record's substitutions, to 100 ns).

use custody_evtx::{read_evtx, EventKind, EvtxReadError};
use std::path::PathBuf;

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/windows")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn logon_success_and_failure() {
    let s = read_evtx(&sample("logon_4624_4625.evtx")).expect("reads");
    assert_eq!(s.records, 4);
    assert!(s.bad_checksum_chunks.is_empty());
    assert_eq!(s.count(EventKind::LogonSuccess), 3);
    assert_eq!(s.count(EventKind::LogonFailure), 1);
    assert_eq!(s.count(EventKind::LogCleared), 0);
    let fail = &s.events[0];
    assert_eq!(fail.record_id, 137222);
    assert_eq!(fail.event_id, 4625);
    // The raw FILETIME (python-evtx FiletimeTypeNode.unpack_qword) is
    // 132441311036279525; python-evtx's own rendering goes through a float
    // and prints .627951.
    assert_eq!(fail.time.as_deref(), Some("2020-09-09T13:18:23.6279525Z"));
    assert_eq!(fail.channel.as_deref(), Some("Security"));
    assert_eq!(fail.computer.as_deref(), Some("MSEDGEWIN10"));
    assert_eq!(fail.user.as_deref(), Some("IEUser"));
    assert_eq!(fail.domain.as_deref(), Some("MSEDGEWIN10"));
    assert_eq!(fail.logon_type.as_deref(), Some("2"));
    assert_eq!(fail.source_ip.as_deref(), Some("-"));
    assert_eq!(fail.status.as_deref(), Some("0xc000006d/0xc000006a"));
    let ok = &s.events[1];
    assert_eq!(ok.record_id, 137223);
    assert_eq!(ok.user.as_deref(), Some("SYSTEM"));
    assert_eq!(ok.domain.as_deref(), Some("NT AUTHORITY"));
    assert_eq!(ok.logon_type.as_deref(), Some("5"));
    assert_eq!(ok.status, None);
    let ids: Vec<u64> = s.events.iter().map(|e| e.record_id).collect();
    assert_eq!(ids, [137222, 137223, 137224, 137225]);
}

#[test]
fn rdp_logons_with_source_addresses() {
    let s = read_evtx(&sample("rdp_tunneling_4624.evtx")).expect("reads");
    assert_eq!(s.records, 18);
    assert_eq!(s.count(EventKind::LogonSuccess), 18);
    let rdp: Vec<_> = s
        .events
        .iter()
        .filter(|e| e.logon_type.as_deref() == Some("10"))
        .collect();
    assert_eq!(rdp.len(), 1);
    assert_eq!(rdp[0].record_id, 5315);
    assert_eq!(rdp[0].time.as_deref(), Some("2019-02-13T15:26:53.3567809Z"));
    assert_eq!(rdp[0].user.as_deref(), Some("IEUser"));
    assert_eq!(rdp[0].domain.as_deref(), Some("PC02"));
    assert_eq!(rdp[0].source_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(rdp[0].computer.as_deref(), Some("PC02.example.corp"));
    let from_remote: Vec<u64> = s
        .events
        .iter()
        .filter(|e| e.source_ip.as_deref() == Some("10.0.2.17"))
        .map(|e| e.record_id)
        .collect();
    assert_eq!(from_remote, [5322, 5323]);
}

#[test]
fn truncated_file_is_an_error() {
    let bytes = sample("rdp_tunneling_4624.evtx");
    // The file header (4 KiB) and part of the first chunk's records.
    let cut = &bytes[..4096 + 512 + 1000];
    match read_evtx(cut) {
        Err(EvtxReadError::Truncated {
            chunks: 1,
            expected: 69632,
            actual: 5608,
        }) => {}
        other => panic!("a truncated file must not read cleanly: {other:?}"),
    }
    assert!(matches!(
        read_evtx(&bytes[..100]),
        Err(EvtxReadError::NotEvtx(_))
    ));
}

#[test]
fn an_edited_record_shows_as_a_bad_chunk_checksum() {
    let mut bytes = sample("logon_4624_4625.evtx");
    // Record 137223's EventID (4624 at 0x1ed6) changed, CRCs left alone.
    assert_eq!(&bytes[0x1ed6..0x1ed8], &4624u16.to_le_bytes());
    bytes[0x1ed6..0x1ed8].copy_from_slice(&1102u16.to_le_bytes());
    let s = read_evtx(&bytes).expect("still reads");
    assert_eq!(s.bad_checksum_chunks, [0]);
    assert_eq!(s.count(EventKind::LogCleared), 1);
}

#[test]
fn every_record_is_placed_in_the_file_with_its_fields() {
    for name in ["logon_4624_4625.evtx", "rdp_tunneling_4624.evtx"] {
        let bytes = sample(name);
        let r = custody_evtx::records::read_records(&bytes).expect("reads");
        assert!(
            r.unreadable.is_empty() && r.bad_checksum_chunks.is_empty(),
            "{name}"
        );
        assert_eq!(
            r.records.len(),
            if name.starts_with("logon") { 4 } else { 18 }
        );
        for rec in &r.records {
            let (off, len) = rec
                .place
                .unwrap_or_else(|| panic!("{name}: {} not placed", rec.record_id));
            let at = &bytes[off as usize..(off + len) as usize];
            assert_eq!(&at[..4], b"**\0\0");
            assert_eq!(
                u64::from_le_bytes(at[8..16].try_into().unwrap()),
                rec.file_record_number
            );
            // The record ends with a copy of its size.
            assert_eq!(
                u32::from_le_bytes(at[at.len() - 4..].try_into().unwrap()) as u64,
                len
            );
        }
    }
    let r = custody_evtx::records::read_records(&sample("logon_4624_4625.evtx")).unwrap();
    let fail = &r.records[0];
    assert_eq!((fail.record_id, fail.event_id), (137222, Some(4625)));
    assert_eq!(fail.channel.as_deref(), Some("Security"));
    assert!(
        fail.fields
            .contains(&("TargetUserName".into(), "IEUser".into())),
        "{:?}",
        fail.fields
    );
    assert_eq!(fail.time.as_deref(), Some("2020-09-09T13:18:23.6279525Z"));
}
