//! The egress rules, pure: what kind of address an IP is, the `--egress-allow`/`--egress-deny`
//! rules, and the one decision on an (host, address, port) the hub is about to connect to.
//!
//! The decision, in order: a `--egress-deny` rule that matches refuses; the hub's own address
//! (a listen address and its port, or any local address at that port when it listens on an
//! unspecified address) is refused whatever the rules say; a `--egress-allow` rule that matches
//! allows; otherwise a public address is allowed, a loopback one only while the hub listens on
//! loopback addresses only, and every other kind (link-local, private, CGNAT, metadata,
//! unspecified, multicast, broadcast, reserved) is refused.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of address an IP is, as far as egress is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Public,
    Loopback,
    /// 169.254.0.0/16, fe80::/10.
    LinkLocal,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 100.64.0.0/10 (carrier-grade NAT, RFC 6598).
    SharedCgnat,
    /// A cloud metadata service (169.254.169.254 and its kin).
    Metadata,
    Unspecified,
    Multicast,
    Broadcast,
    /// 0.0.0.0/8, 192.0.0.0/24, 198.18.0.0/15, 240.0.0.0/4 and the like: not routable.
    Reserved,
}

impl Class {
    /// How a refusal names it: "a loopback address".
    pub fn describe(self) -> &'static str {
        match self {
            Class::Public => "a public address",
            Class::Loopback => "a loopback address",
            Class::LinkLocal => "a link-local address",
            Class::Private => "a private-network address",
            Class::SharedCgnat => "a carrier-grade NAT (100.64.0.0/10) address",
            Class::Metadata => "a cloud metadata service address",
            Class::Unspecified => "the unspecified address",
            Class::Multicast => "a multicast address",
            Class::Broadcast => "the broadcast address",
            Class::Reserved => "a reserved, non-routable address",
        }
    }
}

/// Well-known metadata services: AWS/GCP/Azure/OpenStack (169.254.169.254), AWS ECS task
/// metadata (169.254.170.2), Alibaba (100.100.100.200), Azure wireserver (168.63.129.16), AWS
/// over IPv6 (fd00:ec2::254).
const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

/// The IPv4 address an IPv6 one carries (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`), else the address itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else { return ip };
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| IpAddr::V4(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    match s {
        // `::` and `::1` are IPv6's own unspecified and loopback addresses.
        [0, 0, 0, 0, 0, 0, 0, 0] | [0, 0, 0, 0, 0, 0, 0, 1] => ip,
        [0, 0, 0, 0, 0, 0, hi, lo] => v4(hi, lo),
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => v4(hi, lo),
        [0x2002, hi, lo, ..] => v4(hi, lo),
        _ => ip,
    }
}

/// The kind of an address (IPv6 forms that carry an IPv4 address are judged by it).
pub fn classify(ip: IpAddr) -> Class {
    match canonical(ip) {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, _] = ip.octets();
    if METADATA_V4.contains(&ip) {
        Class::Metadata
    } else if ip.is_unspecified() {
        Class::Unspecified
    } else if ip.is_loopback() {
        Class::Loopback
    } else if ip.is_link_local() {
        Class::LinkLocal
    } else if ip.is_private() {
        Class::Private
    } else if a == 100 && (64..128).contains(&b) {
        Class::SharedCgnat
    } else if ip.is_broadcast() {
        Class::Broadcast
    } else if ip.is_multicast() {
        Class::Multicast
    } else if a == 0 || a >= 240 || (a == 192 && b == 0 && c == 0) || (a == 198 && (b == 18 || b == 19)) {
        Class::Reserved
    } else {
        Class::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    let first = ip.segments()[0];
    if ip == METADATA_V6 {
        Class::Metadata
    } else if ip.is_unspecified() {
        Class::Unspecified
    } else if ip.is_loopback() {
        Class::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        Class::LinkLocal
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique local (fc00::/7) and the deprecated site-local (fec0::/10).
        Class::Private
    } else if ip.is_multicast() {
        Class::Multicast
    } else if first == 0x0100 && ip.segments()[1..4] == [0, 0, 0] {
        // 100::/64, the discard prefix.
        Class::Reserved
    } else {
        Class::Public
    }
}

/// What a rule names: a host name (`*.` prefix: any name below it), an address, or a network.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Name(String),
    Ip(IpAddr),
    Net(IpAddr, u8),
}

/// One `--egress-allow` or `--egress-deny` item: `HOST[:PORT]`, `IP[:PORT]`, `[IPv6][:PORT]` or
/// `CIDR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    target: Target,
    port: Option<u16>,
    text: String,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Rule, String> {
        let text = s.trim().to_owned();
        let bad = |why: &str| {
            Err(format!(
                "{text:?} is not an egress rule ({why}); give HOST[:PORT], IP[:PORT], [IPv6]:PORT or a CIDR such as 10.0.0.0/8"
            ))
        };
        if text.is_empty() {
            return bad("it is empty");
        }
        if let Some((net, bits)) = text.split_once('/') {
            let Ok(ip) = net.parse::<IpAddr>() else { return bad("the network is not an IP address") };
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let Ok(bits) = bits.parse::<u8>() else { return bad("the prefix length is not a number") };
            if bits > max {
                return bad("the prefix length is too long");
            }
            return Ok(Rule { target: Target::Net(ip, bits), port: None, text });
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Rule { target: Target::Ip(ip), port: None, text });
        }
        let (host, port) = match text.strip_prefix('[') {
            Some(rest) => {
                let Some((inner, after)) = rest.split_once(']') else { return bad("a '[' without its ']'") };
                let port = match after.strip_prefix(':') {
                    Some(p) => Some(p),
                    None if after.is_empty() => None,
                    None => return bad("text after ']' that is not :PORT"),
                };
                (inner, port)
            }
            None => match text.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text.as_str(), None),
            },
        };
        let port = match port {
            Some(p) => match p.parse::<u16>() {
                Ok(p) => Some(p),
                Err(_) => return bad("the port is not a number from 0 to 65535"),
            },
            None => None,
        };
        let target = if let Ok(ip) = host.parse::<IpAddr>() {
            Target::Ip(ip)
        } else {
            let name = host.to_ascii_lowercase();
            let plain = name.strip_prefix("*.").unwrap_or(&name);
            let valid = !plain.is_empty()
                && plain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
            if !valid {
                return bad("the host is neither an IP address nor a host name");
            }
            Target::Name(name)
        };
        Ok(Rule { target, port, text })
    }
}

impl Rule {
    /// Whether the rule covers a connection to `ip` (for host name `host`) at `port`. With the
    /// port unknown, a rule naming a port matches when `unknown_port_matches` says so.
    fn matches(&self, host: Option<&str>, ip: Option<IpAddr>, port: Option<u16>, unknown_port_matches: bool) -> bool {
        let port_ok = match (self.port, port) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => unknown_port_matches,
        };
        port_ok
            && match &self.target {
                Target::Name(name) => host.is_some_and(|h| name_matches(name, h)),
                Target::Ip(want) => ip.is_some_and(|ip| canonical(*want) == canonical(ip)),
                Target::Net(net, bits) => {
                    ip.is_some_and(|ip| net_contains(*net, *bits, ip) || net_contains(*net, *bits, canonical(ip)))
                }
            }
    }
}

fn name_matches(rule: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match rule.strip_prefix("*.") {
        Some(parent) => {
            host.len() > parent.len() && host.ends_with(parent) && host[..host.len() - parent.len()].ends_with('.')
        }
        None => host == rule,
    }
}

/// Whether `ip` is in `net/bits`; an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) holds
/// the IPv4 addresses it maps.
fn net_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    let v4 = |net: Ipv4Addr, bits: u8, ip: Ipv4Addr| {
        let mask = if bits == 0 { 0 } else { u32::MAX << (32 - u32::from(bits.min(32))) };
        u32::from(ip) & mask == u32::from(net) & mask
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) => v4(net, bits, ip),
        (IpAddr::V6(net), IpAddr::V6(ip)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - u32::from(bits.min(128))) };
            u128::from(ip) & mask == u128::from(net) & mask
        }
        (IpAddr::V6(net), IpAddr::V4(ip)) => match net.to_ipv4_mapped() {
            Some(mapped) if bits >= 96 => v4(mapped, bits - 96, ip),
            _ => false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// Why a connection is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A `--egress-deny` rule matches.
    Denied(String),
    /// It is this hub itself.
    OwnAddress,
    /// Its kind of address is refused on this hub, and no `--egress-allow` rule allows it.
    Class(Class),
    /// Not a scheme the hub sends to.
    Scheme(String),
}

/// A refused destination: the address (with its port when known) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub address: String,
    pub reason: Reason,
    /// What `--egress-allow` item would allow it, when one would.
    pub allow_with: Option<String>,
    /// Whether the hub listens on loopback addresses only.
    pub loopback_only: bool,
}

impl Refusal {
    /// What a client is told at creation: which address, why, and what changes it.
    pub fn detail(&self) -> String {
        let address = &self.address;
        match &self.reason {
            Reason::Denied(rule) => format!(
                "{address} matches the hub's --egress-deny rule {rule}; the hub sends nothing there (deny wins over --egress-allow)"
            ),
            Reason::OwnAddress => {
                format!("{address} is this hub's own address: the hub never sends requests or notifications to itself")
            }
            Reason::Scheme(scheme) => format!("{scheme} is not a scheme the hub sends to (http, https or mqtt)"),
            Reason::Class(class) => {
                let on = if self.loopback_only { "" } else { " on a hub that listens on a non-loopback address" };
                let allow = self.allow_with.as_deref().unwrap_or(address);
                format!(
                    "{address} is {}, which the hub's egress rules refuse{on}; an operator can allow it by starting the hub with --egress-allow {allow}",
                    class.describe()
                )
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

impl std::error::Error for Refusal {}

/// The egress rules of one hub.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// The addresses the hub listens on (the bound ones: port 0 resolved).
    pub listen: Vec<SocketAddr>,
}

impl Rules {
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>, listen: Vec<SocketAddr>) -> Rules {
        Rules { allow, deny, listen }
    }

    /// Whether the hub listens on loopback addresses only (no listen address counts as loopback).
    pub fn loopback_only(&self) -> bool {
        self.listen.iter().all(|a| a.ip().is_loopback())
    }

    /// Whether `ip:port` reaches this hub. `is_local` says whether an address is one of this
    /// machine's (asked only when the hub listens on an unspecified address). With the port
    /// unknown, any port of a listen address counts.
    pub fn is_own(&self, ip: IpAddr, port: Option<u16>, is_local: &dyn Fn(IpAddr) -> bool) -> bool {
        let ip = canonical(ip);
        self.listen.iter().any(|own| {
            let own_ip = canonical(own.ip());
            let port_ok = port.is_none_or(|p| p == own.port());
            port_ok && (own_ip == ip || ip.is_unspecified() || (own_ip.is_unspecified() && is_local(ip)))
        })
    }

    /// The decision on a connection to `ip` at `port` (unknown: `None`, judged for every port)
    /// for host name `host` (none for an address written as such).
    pub fn decide(
        &self,
        host: Option<&str>,
        ip: IpAddr,
        port: Option<u16>,
        is_local: &dyn Fn(IpAddr) -> bool,
    ) -> Result<(), Refusal> {
        let raw = ip;
        let ip = canonical(ip);
        let address = match (ip, port) {
            (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
            (ip, Some(p)) => format!("{ip}:{p}"),
            (ip, None) => ip.to_string(),
        };
        let refuse = |reason: Reason, allow_with: Option<String>| {
            Err(Refusal { address: address.clone(), reason, allow_with, loopback_only: self.loopback_only() })
        };
        if let Some(rule) = self.deny.iter().find(|r| r.matches(host, Some(raw), port, true)) {
            return refuse(Reason::Denied(rule.text.clone()), None);
        }
        if self.is_own(ip, port, is_local) {
            return refuse(Reason::OwnAddress, None);
        }
        if self.allow.iter().any(|r| r.matches(host, Some(raw), port, false)) {
            return Ok(());
        }
        match classify(ip) {
            Class::Public => Ok(()),
            Class::Loopback if self.loopback_only() => Ok(()),
            class => {
                let allow_with = match (host, port) {
                    (Some(h), Some(p)) => Some(format!("{h}:{p}")),
                    (Some(h), None) => Some(h.to_owned()),
                    (None, _) => None,
                };
                refuse(Reason::Class(class), allow_with)
            }
        }
    }

    /// The decision on a host name alone, before it is resolved: only a deny rule naming it
    /// refuses here (its addresses are judged once resolved).
    pub fn decide_name(&self, host: &str, port: Option<u16>) -> Result<(), Refusal> {
        match self.deny.iter().find(|r| r.matches(Some(host), None, port, true)) {
            Some(rule) => Err(Refusal {
                address: match port {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_owned(),
                },
                reason: Reason::Denied(rule.text.clone()),
                allow_with: None,
                loopback_only: self.loopback_only(),
            }),
            None => Ok(()),
        }
    }
}

/// A comma-separated list of rules (one `--egress-allow` value).
pub fn parse_list(list: &str) -> Result<Vec<Rule>, String> {
    list.split(',').filter(|s| !s.trim().is_empty()).map(str::parse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn never_local(_: IpAddr) -> bool {
        false
    }

    fn rules(allow: &str, deny: &str, listen: &str) -> Rules {
        Rules::new(parse_list(allow).unwrap(), parse_list(deny).unwrap(), vec![listen.parse().unwrap()])
    }

    #[test]
    fn addresses_are_classified() {
        for (addr, class) in [
            ("127.0.0.1", Class::Loopback),
            ("127.8.9.10", Class::Loopback),
            ("::1", Class::Loopback),
            ("169.254.1.2", Class::LinkLocal),
            ("fe80::1", Class::LinkLocal),
            ("febf::1", Class::LinkLocal),
            ("10.1.2.3", Class::Private),
            ("172.16.0.1", Class::Private),
            ("172.31.255.255", Class::Private),
            ("192.168.1.1", Class::Private),
            ("fc00::1", Class::Private),
            ("fd12:3456::1", Class::Private),
            ("100.64.0.1", Class::SharedCgnat),
            ("100.127.255.255", Class::SharedCgnat),
            ("169.254.169.254", Class::Metadata),
            ("fd00:ec2::254", Class::Metadata),
            ("100.100.100.200", Class::Metadata),
            ("0.0.0.0", Class::Unspecified),
            ("::", Class::Unspecified),
            ("224.0.0.1", Class::Multicast),
            ("ff02::1", Class::Multicast),
            ("255.255.255.255", Class::Broadcast),
            ("0.1.2.3", Class::Reserved),
            ("240.0.0.1", Class::Reserved),
            ("198.18.0.1", Class::Reserved),
            ("8.8.8.8", Class::Public),
            ("172.32.0.1", Class::Public),
            ("100.128.0.1", Class::Public),
            ("2001:4860:4860::8888", Class::Public),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn ipv6_forms_of_ipv4_addresses_are_judged_as_the_ipv4_address() {
        for (addr, class) in [
            ("::ffff:127.0.0.1", Class::Loopback),
            ("::ffff:169.254.169.254", Class::Metadata),
            ("::ffff:10.0.0.1", Class::Private),
            ("::127.0.0.1", Class::Loopback),
            ("64:ff9b::a9fe:a9fe", Class::Metadata),
            ("2002:7f00:1::", Class::Loopback),
            ("::ffff:8.8.8.8", Class::Public),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn rules_parse_hosts_ports_addresses_and_networks() {
        let r: Rule = "Sensors.City.example:8080".parse().unwrap();
        assert_eq!((r.target, r.port), (Target::Name("sensors.city.example".into()), Some(8080)));
        let r: Rule = "[::1]:9000".parse().unwrap();
        assert_eq!((r.target, r.port), (Target::Ip(ip("::1")), Some(9000)));
        let r: Rule = "fe80::1".parse().unwrap();
        assert_eq!((r.target, r.port), (Target::Ip(ip("fe80::1")), None));
        let r: Rule = "10.0.0.0/8".parse().unwrap();
        assert_eq!(r.target, Target::Net(ip("10.0.0.0"), 8));
        for bad in ["", "10.0.0.0/33", "host:99999", "[::1", "a b", "x/8", "::1/129", "*."] {
            let e = bad.parse::<Rule>().unwrap_err();
            assert!(e.contains("CIDR"), "{bad}: {e}");
        }
        assert_eq!(parse_list("10.0.0.0/8, 127.0.0.1:22,,").unwrap().len(), 2);
    }

    #[test]
    fn a_non_loopback_hub_refuses_internal_addresses_unless_allowed() {
        let hub = rules("", "", "0.0.0.0:1026");
        for addr in ["127.0.0.1", "169.254.169.254", "10.0.0.1", "192.168.0.10", "fe80::1", "100.64.0.1", "0.0.0.0"] {
            let e = hub.decide(None, ip(addr), Some(80), &never_local).unwrap_err();
            assert!(e.detail().contains("--egress-allow"), "{addr}: {}", e.detail());
        }
        assert!(hub.decide(None, ip("8.8.8.8"), Some(80), &never_local).is_ok());
        let allowing = rules("127.0.0.1:22,10.0.0.0/8,metadata.internal", "", "0.0.0.0:1026");
        assert!(allowing.decide(None, ip("127.0.0.1"), Some(22), &never_local).is_ok());
        assert!(allowing.decide(None, ip("127.0.0.1"), Some(23), &never_local).is_err());
        assert!(allowing.decide(None, ip("10.9.8.7"), Some(1), &never_local).is_ok());
        assert!(allowing.decide(Some("metadata.internal"), ip("169.254.169.254"), Some(80), &never_local).is_ok());
        // With the port unknown, a rule naming one does not allow.
        assert!(allowing.decide(None, ip("127.0.0.1"), None, &never_local).is_err());
    }

    #[test]
    fn a_loopback_hub_allows_loopback_but_never_itself() {
        let hub = rules("", "", "127.0.0.1:1026");
        assert!(hub.loopback_only());
        assert!(hub.decide(None, ip("127.0.0.1"), Some(8085), &never_local).is_ok());
        assert!(hub.decide(None, ip("::1"), Some(8085), &never_local).is_ok());
        let own = hub.decide(None, ip("127.0.0.1"), Some(1026), &never_local).unwrap_err();
        assert_eq!(own.reason, Reason::OwnAddress);
        assert!(own.detail().contains("own address"), "{}", own.detail());
        assert_eq!(
            hub.decide(None, ip("::ffff:127.0.0.1"), Some(1026), &never_local).unwrap_err().reason,
            Reason::OwnAddress
        );
        assert_eq!(hub.decide(None, ip("0.0.0.0"), Some(1026), &never_local).unwrap_err().reason, Reason::OwnAddress);
        // Allowing does not make the hub's own address reachable.
        let allowing = rules("127.0.0.1:1026,127.0.0.0/8", "", "127.0.0.1:1026");
        assert_eq!(
            allowing.decide(None, ip("127.0.0.1"), Some(1026), &never_local).unwrap_err().reason,
            Reason::OwnAddress
        );
        // The port unknown: the hub's address may be meant.
        assert!(hub.decide(None, ip("127.0.0.1"), None, &never_local).is_err());
        // Other kinds stay refused on a loopback hub.
        assert!(hub.decide(None, ip("169.254.169.254"), Some(80), &never_local).is_err());
    }

    #[test]
    fn a_hub_on_an_unspecified_address_is_every_local_address_at_its_port() {
        let hub = rules("10.0.0.0/8", "", "0.0.0.0:1026");
        let local = |ip: IpAddr| ip == "10.0.0.5".parse::<IpAddr>().unwrap();
        assert_eq!(hub.decide(None, ip("10.0.0.5"), Some(1026), &local).unwrap_err().reason, Reason::OwnAddress);
        assert!(hub.decide(None, ip("10.0.0.5"), Some(1027), &local).is_ok());
        assert!(hub.decide(None, ip("10.0.0.6"), Some(1026), &local).is_ok());
    }

    #[test]
    fn deny_wins_over_allow_and_matches_names() {
        let hub = rules("8.8.0.0/16,*.city.example", "8.8.8.8,bad.city.example,*.evil.example:80", "0.0.0.0:1026");
        assert!(matches!(
            hub.decide(None, ip("8.8.8.8"), Some(53), &never_local).unwrap_err().reason,
            Reason::Denied(_)
        ));
        assert!(hub.decide(None, ip("8.8.4.4"), Some(53), &never_local).is_ok());
        assert!(hub.decide(Some("ok.city.example"), ip("10.1.1.1"), Some(80), &never_local).is_ok());
        assert!(hub.decide(Some("BAD.city.example."), ip("10.1.1.1"), Some(80), &never_local).is_err());
        assert!(hub.decide_name("x.evil.example", Some(80)).is_err());
        assert!(hub.decide_name("x.evil.example", Some(81)).is_ok());
        // The port unknown: a deny rule naming a port refuses.
        assert!(hub.decide_name("x.evil.example", None).is_err());
        assert!(hub.decide_name("evil.example", Some(80)).is_ok());
        assert!(!name_matches("*.city.example", "xcity.example"));
    }

    proptest! {
        #[test]
        fn a_mapped_address_is_decided_as_its_ipv4_address(a: u8, b: u8, c: u8, d: u8, port: u16, listen_loopback: bool) {
            let v4 = Ipv4Addr::new(a, b, c, d);
            let listen = if listen_loopback { "127.0.0.1:1026" } else { "0.0.0.0:1026" };
            let hub = rules("", "", listen);
            let plain = hub.decide(None, IpAddr::V4(v4), Some(port), &never_local).map_err(|e| e.reason);
            let mapped = hub.decide(None, IpAddr::V6(v4.to_ipv6_mapped()), Some(port), &never_local).map_err(|e| e.reason);
            prop_assert_eq!(plain, mapped);
        }

        #[test]
        fn deny_always_wins(a: u8, b: u8, c: u8, d: u8, port: u16) {
            let addr = IpAddr::V4(Ipv4Addr::new(a, b, c, d));
            let hub = Rules::new(
                vec![format!("{addr}:{port}").parse().unwrap(), "0.0.0.0/0".parse().unwrap()],
                vec![format!("{addr}").parse().unwrap()],
                vec!["127.0.0.1:1026".parse().unwrap()],
            );
            prop_assert!(hub.decide(None, addr, Some(port), &never_local).is_err());
        }

        #[test]
        fn only_public_and_loopback_pass_without_rules(bits: u32, port: u16) {
            let addr = IpAddr::V4(Ipv4Addr::from(bits));
            let hub = rules("", "", "127.0.0.1:1026");
            let class = classify(addr);
            let allowed = hub.decide(None, addr, Some(port), &never_local).is_ok();
            let own = port == 1026 && (addr == ip("127.0.0.1") || addr == ip("0.0.0.0"));
            prop_assert_eq!(allowed, matches!(class, Class::Public | Class::Loopback) && !own, "{} {:?}", addr, class);
        }

        #[test]
        fn an_ipv4_network_rule_matches_exactly_its_addresses(bits: u32, net: u32, len in 0u8..=32) {
            let rule: Rule = format!("{}/{len}", Ipv4Addr::from(net)).parse().unwrap();
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
            let inside = bits & mask == net & mask;
            prop_assert_eq!(rule.matches(None, Some(IpAddr::V4(Ipv4Addr::from(bits))), Some(1), false), inside);
        }
    }
}
