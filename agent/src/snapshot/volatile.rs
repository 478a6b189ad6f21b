//! Volatile state, captured first (RFC 3227 §2.1: the most volatile
//! evidence before the less volatile): raw copies of the `/proc` and
//! `/etc` files that describe connections, routes, processes, logged-in
//! users, kernel state and host identity, each read once into memory, plus
//! `summary.json`, a readable digest of them derived from those same bytes.
//!
//! Nothing here runs another program: everything is read from `/proc`,
//! `/run` and `/etc`, read-only. The raw copies are the evidence; the
//! summary is a convenience and says where each value came from.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

/// Largest single `/proc` or `/etc` file read into memory (16 MiB); larger
/// (a huge `/proc/net/unix` on a busy host) is cut there and noted.
const MAX_VOLATILE_FILE: u64 = 16 << 20;
/// At most this many processes are copied one by one (their files); the
/// summary lists all.
const MAX_PROCESS_COPIES: usize = 4096;

/// One captured file.
pub struct Captured {
    /// Path in the bag.
    pub bag_path: String,
    /// Where it was read (`None` for the generated summary).
    pub original: Option<String>,
    pub bytes: Vec<u8>,
    /// RFC 3227 §2.1 class.
    pub volatility: u8,
    pub note: Option<String>,
}

/// What the snapshot needs from the volatile state besides the copies.
#[derive(Debug, Default, Clone)]
pub struct Identity {
    pub hostname: Option<String>,
    pub machine_id: Option<String>,
    pub boot_id: Option<String>,
}

fn read_capped(path: &Path) -> Option<(Vec<u8>, bool)> {
    let f = fs::File::open(path).ok()?;
    let mut v = Vec::new();
    f.take(MAX_VOLATILE_FILE + 1).read_to_end(&mut v).ok()?;
    let cut = v.len() as u64 > MAX_VOLATILE_FILE;
    v.truncate(MAX_VOLATILE_FILE as usize);
    Some((v, cut))
}

fn first_line(bytes: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(bytes);
    let l = s.lines().next()?.trim().to_string();
    (!l.is_empty()).then_some(l)
}

/// Captures everything, in order of volatility. `root` is `/` in use and a
/// fake tree in tests.
pub fn capture(root: &Path) -> (Vec<Captured>, Identity) {
    let mut out: Vec<Captured> = Vec::new();
    let take = |rel: &str, volatility: u8, out: &mut Vec<Captured>| -> Option<Vec<u8>> {
        let path = root.join(rel);
        let (bytes, cut) = read_capped(&path)?;
        out.push(Captured {
            bag_path: format!("data/volatile/{rel}"),
            original: Some(format!("/{rel}")),
            bytes: bytes.clone(),
            volatility,
            note: cut.then(|| format!("cut at {MAX_VOLATILE_FILE} bytes")),
        });
        Some(bytes)
    };
    // Class 2 (routing table, ARP cache, process table, kernel statistics, memory):
    // connections first, they change fastest.
    let mut net = BTreeMap::new();
    for name in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6", "unix"] {
        if let Some(b) = take(&format!("proc/net/{name}"), 2, &mut out) {
            net.insert(name, b);
        }
    }
    let route = take("proc/net/route", 2, &mut out);
    for name in ["ipv6_route", "arp", "dev"] {
        take(&format!("proc/net/{name}"), 2, &mut out);
    }
    let if_inet6 = take("proc/net/if_inet6", 2, &mut out);
    let fib_trie = take("proc/net/fib_trie", 2, &mut out);
    let processes = capture_processes(root, &mut out);
    for rel in [
        "proc/uptime",
        "proc/loadavg",
        "proc/meminfo",
        "proc/stat",
        "proc/mounts",
        "proc/modules",
        "proc/cmdline",
        "proc/version",
        "proc/sys/kernel/hostname",
        "proc/sys/kernel/osrelease",
        "proc/sys/kernel/random/boot_id",
    ] {
        take(rel, 2, &mut out);
    }
    // Class 3 (temporary file systems): the login records on /run.
    let utmp = take("run/utmp", 3, &mut out).or_else(|| take("var/run/utmp", 3, &mut out));
    // Class 6 (physical configuration): host identity.
    for rel in ["etc/machine-id", "etc/hostname", "etc/os-release"] {
        take(rel, 6, &mut out);
    }
    let get = |rel: &str| {
        out.iter()
            .find(|c| c.original.as_deref() == Some(&format!("/{rel}")))
            .map(|c| c.bytes.clone())
    };
    let identity = Identity {
        hostname: get("proc/sys/kernel/hostname").and_then(|b| first_line(&b)),
        machine_id: get("etc/machine-id").and_then(|b| first_line(&b)),
        boot_id: get("proc/sys/kernel/random/boot_id").and_then(|b| first_line(&b)),
    };
    let socket_owners = socket_owners(root, &processes);
    let summary = Summary {
        hostname: identity.hostname.clone(),
        machine_id: identity.machine_id.clone(),
        boot_id: identity.boot_id.clone(),
        uptime_seconds: get("proc/uptime")
            .and_then(|b| first_line(&b))
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok())),
        os: get("etc/os-release").and_then(|b| os_name(&b)),
        kernel: get("proc/version").and_then(|b| first_line(&b)),
        interfaces: interfaces(route.as_deref(), if_inet6.as_deref(), fib_trie.as_deref()),
        logged_in: utmp.as_deref().map(parse_utmp).unwrap_or_default(),
        processes: processes.iter().map(|p| p.summary.clone()).collect(),
        sockets: net
            .iter()
            .filter(|(n, _)| **n != "unix")
            .flat_map(|(n, b)| parse_sockets(n, b, &socket_owners))
            .collect(),
    };
    let mut json = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    json.push(b'\n');
    out.push(Captured {
        bag_path: "data/volatile/summary.json".into(),
        original: None,
        bytes: json,
        volatility: 2,
        note: Some(
            "derived from the raw copies under data/volatile/ (a readable digest; the copies are the evidence)"
                .into(),
        ),
    });
    (out, identity)
}

#[derive(Serialize)]
struct Summary {
    hostname: Option<String>,
    machine_id: Option<String>,
    boot_id: Option<String>,
    uptime_seconds: Option<f64>,
    os: Option<String>,
    kernel: Option<String>,
    interfaces: Vec<Interface>,
    logged_in: Vec<LoggedIn>,
    processes: Vec<ProcessSummary>,
    sockets: Vec<Socket>,
}

#[derive(Serialize, Default)]
struct Interface {
    name: String,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
}

#[derive(Serialize)]
struct LoggedIn {
    user: String,
    line: String,
    host: String,
    pid: i32,
    login_unix: i64,
}

#[derive(Serialize, Clone)]
struct ProcessSummary {
    pid: u32,
    ppid: Option<u32>,
    uid: Option<u32>,
    name: Option<String>,
    cmdline: Vec<String>,
    exe: Option<String>,
}

struct Process {
    pid: u32,
    summary: ProcessSummary,
}

#[derive(Serialize)]
struct Socket {
    proto: String,
    local: String,
    remote: String,
    state: String,
    uid: Option<u32>,
    inode: Option<u64>,
    pids: Vec<u32>,
}

fn capture_processes(root: &Path, out: &mut Vec<Captured>) -> Vec<Process> {
    let mut pids: Vec<u32> = fs::read_dir(root.join("proc"))
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    let mut procs = Vec::new();
    for (i, pid) in pids.into_iter().enumerate() {
        let dir = root.join(format!("proc/{pid}"));
        let status = fs::read(dir.join("status")).ok();
        let cmdline = fs::read(dir.join("cmdline")).ok();
        let stat = fs::read(dir.join("stat")).ok();
        if status.is_none() && stat.is_none() {
            continue; // exited meanwhile
        }
        let exe = fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned());
        let field = |name: &str| -> Option<String> {
            let s = String::from_utf8_lossy(status.as_deref()?);
            s.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let summary = ProcessSummary {
            pid,
            ppid: field("PPid:").and_then(|v| v.parse().ok()),
            uid: field("Uid:").and_then(|v| v.split_whitespace().next()?.parse().ok()),
            name: field("Name:"),
            cmdline: cmdline
                .as_deref()
                .map(|c| {
                    c.split(|b| *b == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .unwrap_or_default(),
            exe,
        };
        if i < MAX_PROCESS_COPIES {
            for (name, bytes) in [("stat", &stat), ("status", &status), ("cmdline", &cmdline)] {
                if let Some(b) = bytes {
                    out.push(Captured {
                        bag_path: format!("data/volatile/proc/{pid}/{name}"),
                        original: Some(format!("/proc/{pid}/{name}")),
                        bytes: b.clone(),
                        volatility: 2,
                        note: None,
                    });
                }
            }
        }
        procs.push(Process { pid, summary });
    }
    procs
}

/// Socket inode → pids holding it (from `/proc/<pid>/fd` links, not followed).
fn socket_owners(root: &Path, procs: &[Process]) -> BTreeMap<u64, Vec<u32>> {
    let mut owners: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
    for p in procs {
        let Ok(rd) = fs::read_dir(root.join(format!("proc/{}/fd", p.pid))) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            if let Ok(target) = fs::read_link(e.path()) {
                let t = target.to_string_lossy();
                if let Some(ino) = t
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse().ok())
                {
                    let v = owners.entry(ino).or_default();
                    if !v.contains(&p.pid) {
                        v.push(p.pid);
                    }
                }
            }
        }
    }
    owners
}

fn os_name(os_release: &[u8]) -> Option<String> {
    String::from_utf8_lossy(os_release).lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim_matches('"').to_string())
    })
}

fn ipv4_le(hex: &str) -> Option<[u8; 4]> {
    let v = u32::from_str_radix(hex, 16).ok()?;
    Some(v.to_le_bytes())
}

fn ipv4_text(b: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])
}

/// `/proc/net/tcp6` writes an address as four 32-bit words in host order.
fn ipv6_words(hex: &str) -> Option<std::net::Ipv6Addr> {
    if hex.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for w in 0..4 {
        let v = u32::from_str_radix(&hex[w * 8..w * 8 + 8], 16).ok()?;
        bytes[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    Some(std::net::Ipv6Addr::from(bytes))
}

fn tcp_state(code: &str) -> &'static str {
    match code {
        "01" => "ESTABLISHED",
        "02" => "SYN_SENT",
        "03" => "SYN_RECV",
        "04" => "FIN_WAIT1",
        "05" => "FIN_WAIT2",
        "06" => "TIME_WAIT",
        "07" => "CLOSE",
        "08" => "CLOSE_WAIT",
        "09" => "LAST_ACK",
        "0A" => "LISTEN",
        "0B" => "CLOSING",
        _ => "UNKNOWN",
    }
}

fn parse_sockets(proto: &str, bytes: &[u8], owners: &BTreeMap<u64, Vec<u32>>) -> Vec<Socket> {
    let text = String::from_utf8_lossy(bytes);
    let v6 = proto.ends_with('6');
    let addr = |s: &str| -> String {
        let Some((a, p)) = s.split_once(':') else {
            return s.to_string();
        };
        let port = u16::from_str_radix(p, 16).unwrap_or(0);
        if v6 {
            ipv6_words(a)
                .map(|ip| format!("[{ip}]:{port}"))
                .unwrap_or_else(|| s.to_string())
        } else {
            ipv4_le(a)
                .map(|ip| format!("{}:{port}", ipv4_text(ip)))
                .unwrap_or_else(|| s.to_string())
        }
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 {
                return None;
            }
            let inode = f[9].parse().ok();
            let state = if proto.starts_with("tcp") {
                tcp_state(f[3]).to_string()
            } else {
                f[3].to_string()
            };
            Some(Socket {
                proto: proto.to_string(),
                local: addr(f[1]),
                remote: addr(f[2]),
                state,
                uid: f[7].parse().ok(),
                inode,
                pids: inode
                    .and_then(|i| owners.get(&i).cloned())
                    .unwrap_or_default(),
            })
        })
        .collect()
}

fn interfaces(
    route: Option<&[u8]>,
    if_inet6: Option<&[u8]>,
    fib_trie: Option<&[u8]>,
) -> Vec<Interface> {
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    // IPv4 networks per interface from the routing table, to place the
    // local addresses the FIB lists.
    let mut nets: Vec<(String, u32, u32)> = Vec::new();
    if let Some(r) = route {
        for l in String::from_utf8_lossy(r).lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 8 {
                let dest = u32::from_str_radix(f[1], 16).unwrap_or(0);
                let mask = u32::from_str_radix(f[7], 16).unwrap_or(0);
                by_name.entry(f[0].to_string()).or_default();
                if mask != 0 {
                    nets.push((f[0].to_string(), dest, mask));
                }
            }
        }
    }
    if let Some(t) = fib_trie {
        let text = String::from_utf8_lossy(t);
        let lines: Vec<&str> = text.lines().collect();
        let mut seen = std::collections::BTreeSet::new();
        for w in lines.windows(2) {
            if w[1].trim() == "/32 host LOCAL" {
                if let Some(ip) = w[0].trim().strip_prefix("|-- ") {
                    if let Ok(addr) = ip.parse::<std::net::Ipv4Addr>() {
                        if !seen.insert(addr) {
                            continue;
                        }
                        let le = u32::from_le_bytes(addr.octets());
                        let name = if addr.is_loopback() {
                            "lo".to_string()
                        } else {
                            nets.iter()
                                .find(|(_, d, m)| le & m == *d)
                                .map(|(n, _, _)| n.clone())
                                .unwrap_or_else(|| "?".into())
                        };
                        by_name.entry(name).or_default().ipv4.push(addr.to_string());
                    }
                }
            }
        }
    }
    if let Some(b) = if_inet6 {
        for l in String::from_utf8_lossy(b).lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 6 {
                let mut bytes = [0u8; 16];
                if hex::decode_to_slice(f[0], &mut bytes).is_ok() {
                    let prefix = u8::from_str_radix(f[2], 16).unwrap_or(0);
                    by_name
                        .entry(f[5].to_string())
                        .or_default()
                        .ipv6
                        .push(format!("{}/{prefix}", std::net::Ipv6Addr::from(bytes)));
                }
            }
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut i)| {
            i.name = name;
            i
        })
        .collect()
}

/// `USER_PROCESS` records of a Linux utmp file (glibc `struct utmp`, 384 bytes).
fn parse_utmp(bytes: &[u8]) -> Vec<LoggedIn> {
    let text = |b: &[u8]| {
        let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    let i32_at = |r: &[u8], o: usize| i32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
    bytes
        .chunks_exact(384)
        .filter(|r| i16::from_le_bytes([r[0], r[1]]) == 7)
        .map(|r| LoggedIn {
            pid: i32_at(r, 4),
            line: text(&r[8..40]),
            user: text(&r[44..76]),
            host: text(&r[76..332]),
            login_unix: i64::from(i32_at(r, 340)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_and_utmp() {
        let tcp = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n";
        let mut owners = BTreeMap::new();
        owners.insert(12345, vec![42]);
        let s = parse_sockets("tcp", tcp, &owners);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].local, "127.0.0.1:22");
        assert_eq!(s[0].state, "LISTEN");
        assert_eq!(s[0].pids, vec![42]);
        let mut rec = vec![0u8; 384];
        rec[0] = 7;
        rec[8..13].copy_from_slice(b"pts/0");
        rec[44..49].copy_from_slice(b"alice");
        rec[340..344].copy_from_slice(&1_700_000_000i32.to_le_bytes());
        let users = parse_utmp(&rec);
        assert_eq!(users.len(), 1);
        assert_eq!(
            (users[0].user.as_str(), users[0].line.as_str()),
            ("alice", "pts/0")
        );
        assert_eq!(
            ipv6_words("00000000000000000000000001000000")
                .unwrap()
                .to_string(),
            "::1"
        );
    }

    #[test]
    fn captures_this_machine_without_failing() {
        let (items, identity) = capture(Path::new("/"));
        assert!(items
            .iter()
            .any(|c| c.bag_path == "data/volatile/proc/uptime"));
        assert!(items
            .iter()
            .any(|c| c.bag_path == "data/volatile/summary.json"));
        assert!(identity.boot_id.is_some());
    }
}
