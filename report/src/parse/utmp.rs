//! Login records as glibc writes them to `/var/log/wtmp` (logons, logoffs,
//! boots) and `/var/log/btmp` (failed logons): `struct utmp`, 384 bytes
//! on Linux (x86-64, aarch64 and the other 64-bit ports alike, since
//! `ut_tv` is two 32-bit fields there), little-endian on the machines the
//! agent runs on. Layout (`<bits/utmp.h>`):
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `ut_type` | i16 (+2 padding) |
//! | 4 | `ut_pid` | i32 |
//! | 8 | `ut_line` | 32 bytes, NUL-padded (`pts/0`, `ssh:notty`) |
//! | 40 | `ut_id` | 4 bytes |
//! | 44 | `ut_user` | 32 bytes |
//! | 76 | `ut_host` | 256 bytes (the remote host or address) |
//! | 332 | `ut_exit` | two i16 |
//! | 336 | `ut_session` | i32 |
//! | 340 | `ut_tv` | i32 seconds, i32 microseconds |
//! | 348 | `ut_addr_v6` | 16 bytes (IPv4 in the first 4) |
//! | 364 | reserved | 20 bytes |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The size of one record.
pub const RECORD: usize = 384;

/// `ut_type` values (`<bits/utmp.h>`).
pub const BOOT_TIME: i16 = 2;
pub const LOGIN_PROCESS: i16 = 6;
pub const USER_PROCESS: i16 = 7;
pub const DEAD_PROCESS: i16 = 8;

/// One record, its strings cut at their first NUL and decoded lossily.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Utmp {
    pub kind: i16,
    pub pid: i32,
    pub line: String,
    pub user: String,
    pub host: String,
    /// Seconds and microseconds since the epoch, UTC.
    pub sec: i64,
    pub usec: u32,
    /// `ut_addr_v6` when it is not all zeros.
    pub addr: Option<IpAddr>,
}

impl Utmp {
    /// The peer's address as a report shows it: `ut_host` when it is an
    /// address, else `ut_addr_v6`, else `ut_host` as written (a host
    /// name, or empty for a local logon).
    pub fn peer(&self) -> String {
        if self.host.parse::<IpAddr>().is_ok() {
            return self.host.clone();
        }
        match self.addr {
            Some(a) => a.to_string(),
            None => self.host.clone(),
        }
    }
}

/// Why a record does not read as one.
pub fn parse(rec: &[u8]) -> Result<Utmp, &'static str> {
    if rec.len() != RECORD {
        return Err("a login record is not 384 bytes (the file's tail is cut)");
    }
    let i16_at = |o: usize| i16::from_le_bytes([rec[o], rec[o + 1]]);
    let i32_at = |o: usize| i32::from_le_bytes([rec[o], rec[o + 1], rec[o + 2], rec[o + 3]]);
    let text = |o: usize, n: usize| {
        let f = &rec[o..o + n];
        let end = f.iter().position(|&b| b == 0).unwrap_or(n);
        String::from_utf8_lossy(&f[..end]).into_owned()
    };
    let kind = i16_at(0);
    if !(0..=9).contains(&kind) {
        return Err("ut_type is not one of the utmp record types 0-9");
    }
    let usec = i32_at(344);
    if !(0..1_000_000).contains(&usec) {
        return Err("ut_tv microseconds out of range");
    }
    let a = &rec[348..364];
    let addr = if a.iter().all(|&b| b == 0) {
        None
    } else if a[4..].iter().all(|&b| b == 0) {
        Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])))
    } else {
        let mut b = [0u8; 16];
        b.copy_from_slice(a);
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    };
    Ok(Utmp {
        kind,
        pid: i32_at(4),
        line: text(8, 32),
        user: text(44, 32),
        host: text(76, 256),
        // `ut_tv.tv_sec` is unsigned in practice (a 32-bit field holding
        // times after 2038 wraps): read it as u32.
        sec: i64::from(i32_at(340) as u32),
        usec: usec as u32,
        addr,
    })
}

/// Builds a record (for tests and generators): the inverse of [`parse`].
pub fn encode(kind: i16, pid: i32, line: &str, user: &str, host: &str, sec: u32) -> Vec<u8> {
    let mut r = vec![0u8; RECORD];
    r[0..2].copy_from_slice(&kind.to_le_bytes());
    r[4..8].copy_from_slice(&pid.to_le_bytes());
    let put = |r: &mut Vec<u8>, o: usize, n: usize, s: &str| {
        let b = s.as_bytes();
        let k = b.len().min(n);
        r[o..o + k].copy_from_slice(&b[..k]);
    };
    put(&mut r, 8, 32, line);
    put(&mut r, 44, 32, user);
    put(&mut r, 76, 256, host);
    r[340..344].copy_from_slice(&sec.to_le_bytes());
    if let Ok(IpAddr::V4(v4)) = host.parse::<IpAddr>() {
        r[348..352].copy_from_slice(&v4.octets());
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_bad_ones_are_named() {
        let r = encode(
            USER_PROCESS,
            811,
            "pts/0",
            "alice",
            "203.0.113.7",
            1_796_000_000,
        );
        let u = parse(&r).unwrap();
        assert_eq!(
            (u.kind, u.pid, u.line.as_str(), u.user.as_str()),
            (USER_PROCESS, 811, "pts/0", "alice")
        );
        assert_eq!(u.peer(), "203.0.113.7");
        assert_eq!(u.sec, 1_796_000_000);
        let mut named = encode(LOGIN_PROCESS, 1, "ssh:notty", "root", "", 1);
        named[348..352].copy_from_slice(&[198, 51, 100, 4]);
        assert_eq!(parse(&named).unwrap().peer(), "198.51.100.4");
        assert!(parse(&r[..100]).is_err());
        let mut bad = r.clone();
        bad[0] = 0x7f;
        assert!(parse(&bad).is_err());
    }
}
