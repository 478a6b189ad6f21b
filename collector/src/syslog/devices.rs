//! Which device a message belongs to. Each device is its own stream (one
//! hash chain), with a category and a "core system" flag: responsibility
//! levels A and B must keep the logs of devices connected to core systems
//! (REQUIREMENTS.md §1).
//!
//! Rules are tried in the order configured; the first that matches wins. A
//! rule matches when the sender's address is in one of its `addresses`
//! (CIDR or exact; any address if none are given) **and** the message's
//! HOSTNAME is one of its `hostnames` (any hostname if none are given). So
//! `addresses` alone trusts the network, `hostnames` alone trusts what the
//! message claims, and both together map messages a relay forwards.
//! Senders no rule matches are either accepted as a device named
//! `unknown-<address>` or refused, as configured.

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use custody_evidence::{Category, StreamId};
use ipnet::IpNet;

use super::parse;

/// A sending device: the stream its messages go to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub name: StreamId,
    pub category: Category,
    pub core_system: bool,
}

/// One configured mapping rule (`[[syslog.device]]`).
#[derive(Debug, Clone)]
pub struct DeviceRule {
    pub device: Arc<Device>,
    pub addresses: Vec<IpNet>,
    /// Lowercase; compared case-insensitively.
    pub hostnames: Vec<String>,
}

/// What to do with a sender no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSenders {
    /// Keep its messages as the device `unknown-<address>`.
    Accept {
        category: Category,
        core_system: bool,
    },
    /// Drop its messages (and close its connections), logging each refusal.
    Refuse,
}

/// Parses `10.0.0.1`, `10.0.0.0/24`, `2001:db8::/32`: an exact address is
/// a one-address network.
pub fn parse_address(text: &str) -> Result<IpNet, String> {
    if let Ok(net) = IpNet::from_str(text) {
        return Ok(net.trunc());
    }
    IpAddr::from_str(text).map(IpNet::from).map_err(|_| {
        format!("{text:?} is neither an IP address nor a CIDR network (e.g. 10.0.0.0/24)")
    })
}

/// The mapping from sender to device.
#[derive(Debug, Clone)]
pub struct DeviceMap {
    rules: Vec<DeviceRule>,
    unknown: UnknownSenders,
}

/// The device name for an unmapped sender: `unknown-10.0.0.5`,
/// `unknown-2001_db8__7` (`:` is not allowed in a stream id).
pub fn unknown_device_name(peer: IpAddr) -> StreamId {
    let text = peer.to_string().replace(':', "_");
    StreamId::new(format!("unknown-{text}")).expect("an IP address is a valid stream id component")
}

/// IPv4 senders reaching a dual-stack socket show as `::ffff:a.b.c.d`.
pub fn canonical(peer: IpAddr) -> IpAddr {
    peer.to_canonical()
}

impl DeviceMap {
    pub fn new(rules: Vec<DeviceRule>, unknown: UnknownSenders) -> Self {
        DeviceMap { rules, unknown }
    }

    pub fn rules(&self) -> &[DeviceRule] {
        &self.rules
    }

    /// Whether any rule looks at the message's HOSTNAME.
    pub fn uses_hostnames(&self) -> bool {
        self.rules.iter().any(|r| !r.hostnames.is_empty())
    }

    /// Whether some message from `peer` could be accepted: lets a TCP
    /// connection from a refused sender be closed before reading.
    pub fn may_accept(&self, peer: IpAddr) -> bool {
        let peer = canonical(peer);
        matches!(self.unknown, UnknownSenders::Accept { .. })
            || self
                .rules
                .iter()
                .any(|r| r.addresses.is_empty() || r.addresses.iter().any(|n| n.contains(&peer)))
    }

    /// The device of one message, or `None` when the sender is refused.
    /// `unknown` devices are built on the fly (one allocation per message
    /// from an unmapped sender; mapped senders cost none).
    pub fn resolve(&self, peer: IpAddr, msg: &[u8]) -> Option<Arc<Device>> {
        let peer = canonical(peer);
        let host = if self.uses_hostnames() {
            parse::hostname(msg)
        } else {
            None
        };
        for rule in &self.rules {
            let addr_ok =
                rule.addresses.is_empty() || rule.addresses.iter().any(|n| n.contains(&peer));
            if !addr_ok {
                continue;
            }
            let host_ok = rule.hostnames.is_empty()
                || host.is_some_and(|h| {
                    rule.hostnames
                        .iter()
                        .any(|want| want.as_bytes().eq_ignore_ascii_case(h))
                });
            if host_ok {
                return Some(rule.device.clone());
            }
        }
        match self.unknown {
            UnknownSenders::Accept {
                category,
                core_system,
            } => Some(Arc::new(Device {
                name: unknown_device_name(peer),
                category,
                core_system,
            })),
            UnknownSenders::Refuse => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(name: &str, addrs: &[&str], hosts: &[&str]) -> DeviceRule {
        DeviceRule {
            device: Arc::new(Device {
                name: StreamId::new(name).unwrap(),
                category: Category::Os,
                core_system: true,
            }),
            addresses: addrs.iter().map(|a| parse_address(a).unwrap()).collect(),
            hostnames: hosts.iter().map(|h| h.to_lowercase()).collect(),
        }
    }

    #[test]
    fn first_matching_rule_wins() {
        let map = DeviceMap::new(
            vec![
                rule("fw01", &["192.0.2.0/24"], &["fw01"]),
                rule("relay", &["192.0.2.10"], &[]),
                rule("web", &[], &["WEB01"]),
            ],
            UnknownSenders::Refuse,
        );
        let ip = |s: &str| IpAddr::from_str(s).unwrap();
        let name = |peer, msg: &[u8]| map.resolve(ip(peer), msg).map(|d| d.name.to_string());
        assert_eq!(
            name("192.0.2.10", b"<13>Nov  3 01:02:03 FW01 kernel: x"),
            Some("fw01".into())
        );
        assert_eq!(
            name("192.0.2.10", b"<13>Nov  3 01:02:03 other kernel: x"),
            Some("relay".into())
        );
        assert_eq!(
            name("::ffff:198.51.100.1", b"<13>1 - web01 a - - - x"),
            Some("web".into())
        );
        assert_eq!(name("198.51.100.1", b"<13>1 - - a - - - x"), None);
        assert!(map.may_accept(ip("198.51.100.1")));
    }

    #[test]
    fn unknown_senders_are_named_by_address() {
        let accept = UnknownSenders::Accept {
            category: Category::App,
            core_system: false,
        };
        let map = DeviceMap::new(vec![rule("fw01", &["10.0.0.1"], &[])], accept);
        let d = map
            .resolve(IpAddr::from_str("2001:db8::7").unwrap(), b"x")
            .unwrap();
        assert_eq!(d.name.as_str(), "unknown-2001_db8__7");
        assert_eq!(d.category, Category::App);
        let refuse = DeviceMap::new(
            vec![rule("fw01", &["10.0.0.1"], &[])],
            UnknownSenders::Refuse,
        );
        assert!(!refuse.may_accept(IpAddr::from_str("10.0.0.2").unwrap()));
        assert!(refuse.may_accept(IpAddr::from_str("10.0.0.1").unwrap()));
        assert!(parse_address("10.0.0.0/33").is_err());
        assert!(parse_address("fw01").is_err());
    }
}
