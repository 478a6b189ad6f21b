//! Windows events: the XML Windows renders for one event (an Event Log
//! stream's frame, FORMAT.md §17.2: UTF-16LE, as `EvtRender` wrote it),
//! read into the few fields the rules use, and what those fields mean.
//!
//! The XML is parsed with `roxmltree`, which refuses a DTD (so no entity
//! expansion) and never fetches anything. Field names are Windows'
//! (`TargetUserName`, `IpAddress`, …); values are kept as written (`-`
//! included), the meaning is decided in [`meaning`].

use std::collections::BTreeMap;

/// The fields of one event the report reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WinEvent {
    pub event_id: u32,
    /// `TimeCreated/@SystemTime` as written (UTC, up to 100 ns).
    pub system_time: Option<String>,
    pub record_id: Option<u64>,
    pub channel: String,
    pub computer: String,
    pub provider: String,
    /// `EventData/Data[@Name]`, or the children of the one element under
    /// `UserData` (1102, 104 carry theirs there).
    pub data: BTreeMap<String, String>,
}

/// UTF-16LE bytes to text; `lossy` when an unpaired surrogate was
/// replaced by U+FFFD (the evidence keeps the bytes).
pub fn decode_utf16le(bytes: &[u8]) -> Result<(String, bool), &'static str> {
    if !bytes.len().is_multiple_of(2) {
        return Err("an Event Log frame has an odd number of bytes: not UTF-16LE");
    }
    let units = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    let mut lossy = false;
    let text = char::decode_utf16(units)
        .map(|r| {
            r.unwrap_or_else(|_| {
                lossy = true;
                char::REPLACEMENT_CHARACTER
            })
        })
        .collect();
    Ok((text, lossy))
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// Reads the event of one rendered XML document.
pub fn parse_xml(xml: &str) -> Result<WinEvent, String> {
    let doc =
        roxmltree::Document::parse(xml).map_err(|e| format!("event XML does not parse: {e}"))?;
    let event = doc.root_element();
    if event.tag_name().name() != "Event" {
        return Err(format!(
            "event XML's root element is <{}>, not <Event>",
            event.tag_name().name()
        ));
    }
    let system = child(event, "System").ok_or("event XML without <System>")?;
    let text_of = |name: &str| {
        child(system, name)
            .and_then(|n| n.text())
            .map(|t| t.trim().to_string())
    };
    let event_id = text_of("EventID")
        .and_then(|t| t.parse().ok())
        .ok_or("event XML without a numeric <EventID>")?;
    let mut ev = WinEvent {
        event_id,
        system_time: child(system, "TimeCreated")
            .and_then(|n| n.attribute("SystemTime"))
            .map(str::to_string),
        record_id: text_of("EventRecordID").and_then(|t| t.parse().ok()),
        channel: text_of("Channel").unwrap_or_default(),
        computer: text_of("Computer").unwrap_or_default(),
        provider: child(system, "Provider")
            .and_then(|n| n.attribute("Name"))
            .unwrap_or_default()
            .to_string(),
        data: BTreeMap::new(),
    };
    if let Some(d) = child(event, "EventData") {
        for (i, n) in d.children().filter(|c| c.is_element()).enumerate() {
            let name = n
                .attribute("Name")
                .map(str::to_string)
                .unwrap_or_else(|| format!("param{}", i + 1));
            ev.data
                .insert(name, n.text().unwrap_or_default().to_string());
        }
    } else if let Some(u) = child(event, "UserData") {
        if let Some(inner) = u.children().find(|c| c.is_element()) {
            for n in inner.children().filter(|c| c.is_element()) {
                ev.data.insert(
                    n.tag_name().name().to_string(),
                    n.text().unwrap_or_default().to_string(),
                );
            }
        }
    }
    Ok(ev)
}

/// What a Windows event means for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Meaning {
    /// 4624 of a person (not a service, the machine or a system account).
    Logon {
        user: String,
        ip: String,
        logon_type: String,
    },
    /// 4625.
    FailedLogon { user: String, ip: String },
    /// 4720.
    NewAccount { name: String },
    /// 4728, 4732, 4756: a member added to a security group.
    GroupAdd { user: String, group: String },
    /// 1102 (Security) or 104 (any other log).
    LogCleared { channel: String, by: String },
    /// 7045 (Service Control Manager).
    NewService {
        name: String,
        image: String,
        account: String,
    },
    /// An event no rule fires on that a responder reads in the timeline:
    /// 4634 `logoff`, 4648 `explicit_credentials` (runas, lateral
    /// movement), 4672 `special_privileges` (an administrator's logon),
    /// 7040 `service_start_type_changed` (`detail`: service, from, to).
    Noted {
        what: &'static str,
        user: String,
        ip: String,
        detail: String,
    },
}

/// The account as Windows names it: `DOMAIN\user`, or `user` alone.
fn account(domain: Option<&String>, user: &str) -> String {
    match domain.map(String::as_str) {
        Some(d) if !d.is_empty() && d != "-" => format!("{d}\\{user}"),
        _ => user.to_string(),
    }
}

/// `-`, empty, and the loopback forms Windows writes for "no remote
/// address" become empty: a logon with no peer.
fn peer(ip: Option<&String>) -> String {
    match ip.map(|s| s.trim()) {
        None | Some("") | Some("-") | Some("::1") | Some("127.0.0.1") => String::new(),
        Some(s) => s.strip_prefix("::ffff:").unwrap_or(s).to_string(),
    }
}

/// Accounts that log on by themselves all day: a report about people's
/// logons leaves them out.
fn is_system_account(user: &str) -> bool {
    let u = user.to_ascii_uppercase();
    u.is_empty()
        || u == "-"
        || u.ends_with('$')
        || matches!(
            u.as_str(),
            "SYSTEM" | "LOCAL SERVICE" | "NETWORK SERVICE" | "ANONYMOUS LOGON"
        )
        || u.starts_with("DWM-")
        || u.starts_with("UMFD-")
}

/// The logon types of a person at a keyboard or over the network:
/// 2 interactive, 3 network, 7 unlock, 8 network cleartext, 9 new
/// credentials, 10 remote interactive (RDP), 11 cached interactive.
/// 0, 4 (batch) and 5 (service) are the machine's own.
fn is_person_logon(logon_type: &str) -> bool {
    matches!(logon_type, "2" | "3" | "7" | "8" | "9" | "10" | "11")
}

/// `None` for events no rule uses.
pub fn meaning(ev: &WinEvent) -> Option<Meaning> {
    let f = |k: &str| ev.data.get(k);
    let s = |k: &str| f(k).cloned().unwrap_or_default();
    let security = ev.channel.eq_ignore_ascii_case("Security");
    match ev.event_id {
        4624 if security => {
            let user = s("TargetUserName");
            let logon_type = s("LogonType");
            if is_system_account(&user) || !is_person_logon(&logon_type) {
                return None;
            }
            Some(Meaning::Logon {
                user: account(f("TargetDomainName"), &user),
                ip: peer(f("IpAddress")),
                logon_type,
            })
        }
        4625 if security => Some(Meaning::FailedLogon {
            user: account(f("TargetDomainName"), &s("TargetUserName")),
            ip: peer(f("IpAddress")),
        }),
        4720 if security => Some(Meaning::NewAccount {
            name: account(f("TargetDomainName"), &s("TargetUserName")),
        }),
        4728 | 4732 | 4756 if security => {
            let member = match f("MemberName").map(String::as_str) {
                Some(m) if !m.is_empty() && m != "-" => m.to_string(),
                _ => s("MemberSid"),
            };
            Some(Meaning::GroupAdd {
                user: member,
                group: s("TargetUserName"),
            })
        }
        1102 if security => Some(Meaning::LogCleared {
            channel: "Security".into(),
            by: account(f("SubjectDomainName"), &s("SubjectUserName")),
        }),
        104 => Some(Meaning::LogCleared {
            channel: f("Channel").cloned().unwrap_or_else(|| ev.channel.clone()),
            by: account(f("SubjectDomainName"), &s("SubjectUserName")),
        }),
        7045 => Some(Meaning::NewService {
            name: s("ServiceName"),
            image: s("ImagePath"),
            account: s("AccountName"),
        }),
        4634 if security && !is_system_account(&s("TargetUserName")) => Some(Meaning::Noted {
            what: "logoff",
            user: account(f("TargetDomainName"), &s("TargetUserName")),
            ip: String::new(),
            detail: format!("logon type {}", s("LogonType")),
        }),
        4648 if security => Some(Meaning::Noted {
            what: "explicit_credentials",
            user: account(f("TargetDomainName"), &s("TargetUserName")),
            ip: peer(f("IpAddress")),
            detail: format!(
                "by {} to {} ({})",
                account(f("SubjectDomainName"), &s("SubjectUserName")),
                s("TargetServerName"),
                s("ProcessName")
            ),
        }),
        4672 if security && !is_system_account(&s("SubjectUserName")) => Some(Meaning::Noted {
            what: "special_privileges",
            user: account(f("SubjectDomainName"), &s("SubjectUserName")),
            ip: String::new(),
            detail: s("PrivilegeList")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        }),
        7040 => Some(Meaning::Noted {
            what: "service_start_type_changed",
            user: String::new(),
            ip: String::new(),
            // The System log's 7040 has no names, only param1..param4.
            detail: format!("{}: {} -> {}", s("param1"), s("param2"), s("param3")),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `EvtRender(EvtRenderEventXml)` writes a 4624 (trimmed of fields
    /// the report does not read).
    const LOGON: &str = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Security-Auditing' Guid='{54849625-5478-4994-a5ba-3e3b0328c30d}'/><EventID>4624</EventID><Version>2</Version><Level>0</Level><Task>12544</Task><Keywords>0x8020000000000000</Keywords><TimeCreated SystemTime='2026-12-01T18:13:05.1234567Z'/><EventRecordID>137222</EventRecordID><Execution ProcessID='636' ThreadID='700'/><Channel>Security</Channel><Computer>ws01.agency.gov.tw</Computer><Security/></System><EventData><Data Name='SubjectUserSid'>S-1-0-0</Data><Data Name='TargetUserName'>alice</Data><Data Name='TargetDomainName'>AGENCY</Data><Data Name='LogonType'>10</Data><Data Name='IpAddress'>203.0.113.7</Data><Data Name='IpPort'>50123</Data></EventData></Event>";

    #[test]
    fn a_rendered_logon_reads_and_means_a_logon() {
        let ev = parse_xml(LOGON).unwrap();
        assert_eq!(ev.event_id, 4624);
        assert_eq!(ev.record_id, Some(137222));
        assert_eq!(
            ev.system_time.as_deref(),
            Some("2026-12-01T18:13:05.1234567Z")
        );
        assert_eq!(ev.computer, "ws01.agency.gov.tw");
        assert_eq!(
            meaning(&ev),
            Some(Meaning::Logon {
                user: "AGENCY\\alice".into(),
                ip: "203.0.113.7".into(),
                logon_type: "10".into()
            })
        );
        // A service logon of the machine account is not a person's.
        let svc = LOGON
            .replace(">alice<", ">WS01$<")
            .replace("'LogonType'>10", "'LogonType'>5");
        assert_eq!(meaning(&parse_xml(&svc).unwrap()), None);
    }

    #[test]
    fn events_for_the_timeline_only_are_named() {
        let explicit = LOGON
            .replace("<EventID>4624<", "<EventID>4648<")
            .replace(
                "<Data Name='SubjectUserSid'>S-1-0-0</Data>",
                "<Data Name='SubjectUserName'>bob</Data><Data Name='SubjectDomainName'>AGENCY</Data><Data Name='TargetServerName'>dc01</Data><Data Name='ProcessName'>C:\\Windows\\System32\\runas.exe</Data>",
            );
        match meaning(&parse_xml(&explicit).unwrap()) {
            Some(Meaning::Noted {
                what,
                user,
                ip,
                detail,
            }) => {
                assert_eq!(
                    (what, user.as_str(), ip.as_str()),
                    ("explicit_credentials", "AGENCY\\alice", "203.0.113.7")
                );
                assert!(detail.starts_with("by AGENCY\\bob to dc01"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let changed = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Service Control Manager'/><EventID Qualifiers='16384'>7040</EventID><TimeCreated SystemTime='2026-12-01T18:20:00.0000000Z'/><EventRecordID>9</EventRecordID><Channel>System</Channel><Computer>ws01</Computer></System><EventData><Data Name='param1'>Windows Defender Antivirus Service</Data><Data Name='param2'>auto start</Data><Data Name='param3'>disabled</Data><Data Name='param4'>WinDefend</Data></EventData></Event>";
        assert_eq!(
            meaning(&parse_xml(changed).unwrap()),
            Some(Meaning::Noted {
                what: "service_start_type_changed",
                user: String::new(),
                ip: String::new(),
                detail: "Windows Defender Antivirus Service: auto start -> disabled".into(),
            })
        );
        // The machine's own logoffs are left out, a person's kept.
        let logoff = LOGON.replace("<EventID>4624<", "<EventID>4634<");
        assert!(matches!(
            meaning(&parse_xml(&logoff).unwrap()),
            Some(Meaning::Noted { what: "logoff", .. })
        ));
        let machine = logoff.replace(">alice<", ">WS01$<");
        assert_eq!(meaning(&parse_xml(&machine).unwrap()), None);
    }

    #[test]
    fn user_data_events_and_utf16() {
        let clear = "<Event xmlns='http://schemas.microsoft.com/win/2004/08/events/event'><System><Provider Name='Microsoft-Windows-Eventlog'/><EventID>1102</EventID><TimeCreated SystemTime='2026-12-01T18:20:00.0000000Z'/><EventRecordID>9</EventRecordID><Channel>Security</Channel><Computer>ws01</Computer></System><UserData><LogFileCleared xmlns='http://manifests.microsoft.com/win/2004/08/windows/eventlog'><SubjectUserSid>S-1-5-21-1</SubjectUserSid><SubjectUserName>mallory</SubjectUserName><SubjectDomainName>AGENCY</SubjectDomainName></LogFileCleared></UserData></Event>";
        let bytes: Vec<u8> = clear.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
        let (text, lossy) = decode_utf16le(&bytes).unwrap();
        assert!(!lossy);
        assert_eq!(
            meaning(&parse_xml(&text).unwrap()),
            Some(Meaning::LogCleared {
                channel: "Security".into(),
                by: "AGENCY\\mallory".into()
            })
        );
        assert!(decode_utf16le(&bytes[1..]).is_err());
        // An unpaired surrogate is replaced, and said so.
        let (_, lossy) = decode_utf16le(&[0x00, 0xd8, b'a', 0]).unwrap();
        assert!(lossy);
        // A DTD (an entity bomb's vehicle) is refused.
        assert!(parse_xml("<!DOCTYPE x [<!ENTITY a 'b'>]><Event/>").is_err());
        assert!(parse_xml("<Other/>").is_err());
    }
}
