//! Golden bytes: the exact encodings of a segment record and a digest body
//! are pinned here. A change to these bytes is a format change: it needs a
//! new version string and a FORMAT.md update, never a quiet edit.

use custody_evidence::digest::{ClockState, DigestBody, DigestEntry, DIGEST_FORMAT_V1};
use custody_evidence::segment::{
    ByteRange, DecodeError, Framing, JournalKind, JournalSource, SegmentMeta, Source, SourceFile,
    Split, SyslogKind, SyslogSource, SyslogTransport, SEGMENT_FORMAT_V1,
};
use custody_evidence::{Category, HostId, InstanceId, SegmentSeq, Sha256, StreamId};
use time::macros::datetime;

fn h(byte: u8) -> Sha256 {
    Sha256([byte; 32])
}

fn golden_meta() -> SegmentMeta {
    SegmentMeta {
        format: SEGMENT_FORMAT_V1.to_string(),
        host_id: HostId::new("web01").unwrap(),
        stream_id: StreamId::new("logon-auth").unwrap(),
        category: Category::Logon,
        seq: SegmentSeq(7),
        agent_instance: InstanceId::new("0f8e4c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b").unwrap(),
        framing: Framing::Records { size: 384 },
        source: Source::File(SourceFile {
            path: "/var/log/wtmp".into(),
            device: 2049,
            inode: 131_073,
            fingerprint: h(0x11),
            fingerprint_len: 384,
        }),
        range: ByteRange {
            start: 768,
            end: 1920,
        },
        split: Split {
            starts_mid_unit: false,
            ends_mid_unit: true,
        },
        first_read: datetime!(2026-11-22 10:11:12.5 +08:00),
        last_read: datetime!(2026-11-22 02:11:13.000001 UTC),
        raw_len: 1152,
        raw_sha256: h(0x22),
        object_len: 301,
        object_sha256: h(0x33),
        prev_segment: Some(h(0x44)),
        retain_until: datetime!(2027-05-22 02:11:13 UTC),
    }
}

fn golden_digest() -> DigestBody {
    DigestBody {
        format: DIGEST_FORMAT_V1.to_string(),
        host_id: HostId::new("web01").unwrap(),
        agent_instance: InstanceId::new("0f8e4c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b").unwrap(),
        seq: 0,
        prev_digest: None,
        window_start: datetime!(2026-11-22 02:11:00 UTC),
        window_end: datetime!(2026-11-22 02:12:00 UTC),
        clock: ClockState {
            synchronized: Some(true),
            max_error_us: Some(16000),
            est_error_us: None,
        },
        public_key:
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCbRbc4S7YFg2cpPC5pPQe8Y3IbqtfhzvuqybqNIyLN web01"
                .into(),
        segments: vec![
            DigestEntry {
                stream_id: StreamId::new("logon-auth").unwrap(),
                seq: SegmentSeq(7),
                meta_sha256: h(0x55),
                object_sha256: h(0x33),
                raw_sha256: h(0x22),
            },
            DigestEntry {
                stream_id: StreamId::new("os-syslog").unwrap(),
                seq: SegmentSeq(0),
                meta_sha256: h(0x66),
                object_sha256: h(0x77),
                raw_sha256: h(0x88),
            },
        ],
    }
}

/// Compact JSON, fields in declaration order, UTC timestamps with six
/// fractional digits, lowercase hex, one `\n` at the end.
const GOLDEN_META: &str = concat!(
    r#"{"format":"custody.segment.v1","#,
    r#""host_id":"web01","#,
    r#""stream_id":"logon-auth","#,
    r#""category":"logon","#,
    r#""seq":7,"#,
    r#""agent_instance":"0f8e4c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b","#,
    r#""framing":{"kind":"records","#,
    r#""size":384},"#,
    r#""source":{"path":"/var/log/wtmp","#,
    r#""device":2049,"#,
    r#""inode":131073,"#,
    r#""fingerprint":"1111111111111111111111111111111111111111111111111111111111111111","#,
    r#""fingerprint_len":384},"#,
    r#""range":{"start":768,"#,
    r#""end":1920},"#,
    r#""split":{"starts_mid_unit":false,"#,
    r#""ends_mid_unit":true},"#,
    r#""first_read":"2026-11-22T02:11:12.500000Z","#,
    r#""last_read":"2026-11-22T02:11:13.000001Z","#,
    r#""raw_len":1152,"#,
    r#""raw_sha256":"2222222222222222222222222222222222222222222222222222222222222222","#,
    r#""object_len":301,"#,
    r#""object_sha256":"3333333333333333333333333333333333333333333333333333333333333333","#,
    r#""prev_segment":"4444444444444444444444444444444444444444444444444444444444444444","#,
    r#""retain_until":"2027-05-22T02:11:13.000000Z"}"#,
    "\n"
);

const GOLDEN_DIGEST: &str = concat!(
    r#"{"format":"custody.digest.v1","#,
    r#""host_id":"web01","#,
    r#""agent_instance":"0f8e4c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b","#,
    r#""seq":0,"#,
    r#""prev_digest":null,"#,
    r#""window_start":"2026-11-22T02:11:00.000000Z","#,
    r#""window_end":"2026-11-22T02:12:00.000000Z","#,
    r#""clock":{"synchronized":true,"#,
    r#""max_error_us":16000,"#,
    r#""est_error_us":null},"#,
    r#""public_key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBCbRbc4S7YFg2cpPC5pPQe8Y3IbqtfhzvuqybqNIyLN web01","#,
    r#""segments":[{"stream_id":"logon-auth","seq":7,"meta_sha256":"5555555555555555555555555555555555555555555555555555555555555555","object_sha256":"3333333333333333333333333333333333333333333333333333333333333333","raw_sha256":"2222222222222222222222222222222222222222222222222222222222222222"},"#,
    r#"{"stream_id":"os-syslog","seq":0,"meta_sha256":"6666666666666666666666666666666666666666666666666666666666666666","object_sha256":"7777777777777777777777777777777777777777777777777777777777777777","raw_sha256":"8888888888888888888888888888888888888888888888888888888888888888"}]}"#,
    "\n"
);

#[test]
fn segment_record_golden_bytes() {
    let meta = golden_meta();
    assert_eq!(String::from_utf8(meta.encode()).unwrap(), GOLDEN_META);
    assert_eq!(SegmentMeta::decode(GOLDEN_META.as_bytes()).unwrap(), meta);
    assert_eq!(
        SegmentMeta::decode(&meta.encode()).unwrap().encode(),
        GOLDEN_META.as_bytes()
    );
    // The chain hash is over exactly these bytes.
    assert_eq!(
        SegmentMeta::chain_hash(GOLDEN_META.as_bytes()),
        Sha256::digest(GOLDEN_META.as_bytes())
    );
}

/// A collector's record for a syslog device stream (FORMAT.md, "Syslog
/// device streams"): `octet_counted` framing and a `syslog` source.
const GOLDEN_SYSLOG_META: &str = concat!(
    r#"{"format":"custody.segment.v1","#,
    r#""host_id":"collector01","#,
    r#""stream_id":"fw01","#,
    r#""category":"os","#,
    r#""seq":0,"#,
    r#""agent_instance":"0f8e4c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b","#,
    r#""framing":{"kind":"octet_counted"},"#,
    r#""source":{"kind":"syslog","device":"fw01","transport":"tls","peer":"2001:db8::7","core_system":true},"#,
    r#""range":{"start":0,"end":1152},"#,
    r#""split":{"starts_mid_unit":false,"ends_mid_unit":false},"#,
    r#""first_read":"2026-11-22T02:11:12.500000Z","#,
    r#""last_read":"2026-11-22T02:11:13.000001Z","#,
    r#""raw_len":1152,"#,
    r#""raw_sha256":"2222222222222222222222222222222222222222222222222222222222222222","#,
    r#""object_len":301,"#,
    r#""object_sha256":"3333333333333333333333333333333333333333333333333333333333333333","#,
    r#""prev_segment":null,"#,
    r#""retain_until":"2027-05-22T02:11:13.000000Z"}"#,
    "\n"
);

#[test]
fn syslog_segment_record_golden_bytes() {
    let mut meta = golden_meta();
    meta.host_id = HostId::new("collector01").unwrap();
    meta.stream_id = StreamId::new("fw01").unwrap();
    meta.category = Category::Os;
    meta.seq = SegmentSeq(0);
    meta.framing = Framing::OctetCounted;
    meta.source = Source::Syslog(SyslogSource {
        kind: SyslogKind::Syslog,
        device: "fw01".into(),
        transport: SyslogTransport::Tls,
        peer: "2001:db8::7".into(),
        core_system: true,
    });
    meta.range = ByteRange {
        start: 0,
        end: 1152,
    };
    meta.split = Split::default();
    meta.prev_segment = None;
    assert_eq!(
        String::from_utf8(meta.encode()).unwrap(),
        GOLDEN_SYSLOG_META
    );
    let back = SegmentMeta::decode(GOLDEN_SYSLOG_META.as_bytes()).unwrap();
    assert_eq!(back, meta);
    assert!(back.source.as_file().is_none());
    assert_eq!(back.source.as_syslog().unwrap().device, "fw01");
    // FORMAT.md §13.3 shows exactly these bytes.
    let doc = include_str!("../FORMAT.md");
    assert!(
        doc.contains(GOLDEN_SYSLOG_META.trim_end()),
        "FORMAT.md §13.3 example differs from the golden record"
    );
    // A file source still decodes as a file, with its bytes unchanged.
    let file = SegmentMeta::decode(GOLDEN_META.as_bytes()).unwrap();
    assert_eq!(file.source.as_file().unwrap().path, "/var/log/wtmp");
    for transport in [SyslogTransport::Udp, SyslogTransport::Tcp] {
        if let Source::Syslog(s) = &mut meta.source {
            s.transport = transport;
        }
        let bytes = meta.encode();
        assert_eq!(SegmentMeta::decode(&bytes).unwrap().encode(), bytes);
        assert!(String::from_utf8(bytes)
            .unwrap()
            .contains(&format!(r#""transport":"{}""#, transport.as_str())));
    }
}

const GOLDEN_JOURNAL_META: &str = concat!(
    r#"{"format":"custody.segment.v1","host_id":"web01","stream_id":"os.journald","category":"os","seq":7,"#,
    r#""agent_instance":"0f8e4c1a-3b2d-4e5f-8a9b-0c1d2e3f4a5b","framing":{"kind":"journal_export"},"#,
    r#""source":{"kind":"journal","journal":"system","#,
    r#""first_cursor":"s=5f5f8f000b5847b7b6a30a41a133da8f;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=f0f0e2c768b2c49","#,
    r#""last_cursor":"s=5f5f8f000b5847b7b6a30a41a133da8f;i=5;b=0123456789abcdef0123456789abcdef;m=3ec;t=60a24181e4fa0;x=953ae5884507f42","#,
    r#""lost_cursor":null},"range":{"start":768,"end":1920},"split":{"starts_mid_unit":false,"ends_mid_unit":false},"#,
    r#""first_read":"2026-11-22T02:11:12.500000Z","last_read":"2026-11-22T02:11:13.000001Z","raw_len":1152,"#,
    r#""raw_sha256":"2222222222222222222222222222222222222222222222222222222222222222","object_len":301,"#,
    r#""object_sha256":"3333333333333333333333333333333333333333333333333333333333333333","#,
    r#""prev_segment":"4444444444444444444444444444444444444444444444444444444444444444","#,
    r#""retain_until":"2027-05-22T02:11:13.000000Z"}"#,
    "\n"
);

#[test]
fn journal_segment_record_golden_bytes() {
    let mut meta = golden_meta();
    meta.stream_id = StreamId::new("os.journald").unwrap();
    meta.category = Category::Os;
    meta.framing = Framing::JournalExport;
    meta.source = Source::Journal(JournalSource {
        kind: JournalKind::Journal,
        journal: "system".into(),
        first_cursor: "s=5f5f8f000b5847b7b6a30a41a133da8f;i=1;b=0123456789abcdef0123456789abcdef;m=3e8;t=60a24181e4000;x=f0f0e2c768b2c49".into(),
        last_cursor: "s=5f5f8f000b5847b7b6a30a41a133da8f;i=5;b=0123456789abcdef0123456789abcdef;m=3ec;t=60a24181e4fa0;x=953ae5884507f42".into(),
        lost_cursor: None,
    });
    meta.split = Split::default();
    assert_eq!(
        String::from_utf8(meta.encode()).unwrap(),
        GOLDEN_JOURNAL_META
    );
    let back = SegmentMeta::decode(GOLDEN_JOURNAL_META.as_bytes()).unwrap();
    assert_eq!(back, meta);
    assert!(back.source.as_file().is_none() && back.source.as_syslog().is_none());
    assert_eq!(back.source.as_journal().unwrap().journal, "system");
    // FORMAT.md §16.3 shows exactly these bytes.
    let doc = include_str!("../FORMAT.md");
    assert!(
        doc.contains(GOLDEN_JOURNAL_META.trim_end()),
        "FORMAT.md §16.3 example differs from the golden record"
    );
    // A lost cursor round-trips.
    if let Source::Journal(j) = &mut meta.source {
        j.lost_cursor = Some("s=gone;i=9".into());
    }
    let bytes = meta.encode();
    assert_eq!(SegmentMeta::decode(&bytes).unwrap(), meta);
}

#[test]
fn digest_body_golden_bytes() {
    let body = golden_digest();
    assert_eq!(String::from_utf8(body.encode()).unwrap(), GOLDEN_DIGEST);
    assert_eq!(DigestBody::decode(GOLDEN_DIGEST.as_bytes()).unwrap(), body);
    assert_eq!(
        DigestBody::decode(&body.encode()).unwrap().encode(),
        GOLDEN_DIGEST.as_bytes()
    );
}

#[test]
fn round_trips_for_every_variant() {
    let mut meta = golden_meta();
    for (framing, prev, split) in [
        (Framing::Lines, None, Split::default()),
        (
            Framing::Records { size: 1 },
            Some(h(0)),
            Split {
                starts_mid_unit: true,
                ends_mid_unit: false,
            },
        ),
    ] {
        meta.framing = framing;
        meta.prev_segment = prev;
        meta.split = split;
        let bytes = meta.encode();
        let back = SegmentMeta::decode(&bytes).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.encode(), bytes);
    }
    let mut body = golden_digest();
    body.segments.clear();
    body.prev_digest = Some(h(9));
    body.clock = ClockState {
        synchronized: None,
        max_error_us: None,
        est_error_us: Some(-3),
    };
    let bytes = body.encode();
    assert_eq!(DigestBody::decode(&bytes).unwrap().encode(), bytes);
}

fn assert_not_canonical(what: &str, bytes: &[u8]) {
    match SegmentMeta::decode(bytes) {
        Err(DecodeError::NotCanonical) => {}
        other => panic!("{what}: expected NotCanonical, got {other:?}"),
    }
}

#[test]
fn other_encodings_of_the_same_record_are_refused() {
    let golden = GOLDEN_META;
    // Fields reordered.
    let reordered = golden.replacen(
        r#""host_id":"web01","stream_id":"logon-auth","#,
        r#""stream_id":"logon-auth","host_id":"web01","#,
        1,
    );
    assert_ne!(reordered, golden);
    assert_not_canonical("reordered", reordered.as_bytes());
    // Whitespace.
    assert_not_canonical(
        "space after colon",
        golden.replacen(r#""seq":7"#, r#""seq": 7"#, 1).as_bytes(),
    );
    assert_not_canonical(
        "pretty printed",
        format!(
            "{}\n",
            serde_json::to_string_pretty(&golden_meta()).unwrap()
        )
        .as_bytes(),
    );
    // Terminator.
    assert_not_canonical("no newline", golden.trim_end().as_bytes());
    assert_not_canonical("CRLF", format!("{}\r\n", golden.trim_end()).as_bytes());
    // Same instant, other spelling.
    assert_not_canonical(
        "offset time",
        golden
            .replacen(
                "2026-11-22T02:11:12.500000Z",
                "2026-11-22T10:11:12.5+08:00",
                1,
            )
            .as_bytes(),
    );
    // Uppercase hex is refused outright (hashes are lowercase only).
    let mut m = golden_meta();
    m.raw_sha256 = h(0xab);
    let upper =
        String::from_utf8(m.encode())
            .unwrap()
            .replacen(&"ab".repeat(32), &"AB".repeat(32), 1);
    assert!(matches!(
        SegmentMeta::decode(upper.as_bytes()),
        Err(DecodeError::Corrupt(_))
    ));
    // An extra field is not silently dropped.
    assert_not_canonical(
        "extra field",
        golden
            .replacen(r#""seq":7,"#, r#""seq":7,"note":"x","#, 1)
            .as_bytes(),
    );
}

#[test]
fn unknown_version_is_not_corruption() {
    let v2 = GOLDEN_META.replacen("custody.segment.v1", "custody.segment.v2", 1);
    match SegmentMeta::decode(v2.as_bytes()) {
        Err(DecodeError::UnknownFormat { expected, found }) => {
            assert_eq!(expected, "custody.segment.v1");
            assert_eq!(found, "custody.segment.v2");
        }
        other => panic!("expected UnknownFormat, got {other:?}"),
    }
    let v2 = GOLDEN_DIGEST.replacen("custody.digest.v1", "custody.digest.v2", 1);
    assert!(matches!(
        DigestBody::decode(v2.as_bytes()),
        Err(DecodeError::UnknownFormat { .. })
    ));
    // A digest is not a segment record.
    assert!(matches!(
        SegmentMeta::decode(GOLDEN_DIGEST.as_bytes()),
        Err(DecodeError::UnknownFormat { .. })
    ));
    // Garbage is corruption.
    assert!(matches!(
        SegmentMeta::decode(b"\x00\xff"),
        Err(DecodeError::Corrupt(_))
    ));
    assert!(matches!(
        SegmentMeta::decode(&GOLDEN_META.as_bytes()[..100]),
        Err(DecodeError::Corrupt(_))
    ));
}

#[test]
fn eventlog_segment_record_golden_bytes() {
    use custody_evidence::segment::{EventLogKind, EventLogSource};
    let mut meta = golden_meta();
    meta.host_id = HostId::new("ws01").unwrap();
    meta.stream_id = StreamId::new("eventlog-security").unwrap();
    meta.category = Category::Logon;
    meta.seq = SegmentSeq(0);
    meta.framing = Framing::OctetCounted;
    meta.source = Source::EventLog(EventLogSource {
        kind: EventLogKind::Eventlog,
        channel: "Security".into(),
        encoding: "utf-16le".into(),
        first_record_id: 137222,
        last_record_id: 137225,
        resumed_after: None,
    });
    meta.range = ByteRange {
        start: 0,
        end: 1152,
    };
    meta.split = Split::default();
    meta.prev_segment = None;
    let text = String::from_utf8(meta.encode()).unwrap();
    let back = SegmentMeta::decode(text.as_bytes()).unwrap();
    assert_eq!(back, meta);
    assert!(back.source.as_file().is_none() && back.source.as_syslog().is_none());
    assert_eq!(back.source.as_eventlog().unwrap().channel, "Security");
    // FORMAT.md §17.3 shows exactly these bytes.
    let doc = include_str!("../FORMAT.md");
    assert!(
        doc.contains(text.trim_end()),
        "FORMAT.md §17.3 example differs from the golden record:\n{text}"
    );
}
