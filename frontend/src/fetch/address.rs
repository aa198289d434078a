//! Which IP addresses a server-side fetch may connect to: public unicast
//! ones, plus the networks an operator lists. Everything a request could
//! use to reach the gateway's own host or its private network is refused:
//! unspecified, loopback, private (RFC 1918, IPv6 unique local),
//! link-local (the cloud metadata service at 169.254.169.254), shared
//! (CGNAT), multicast, broadcast, reserved and documentation ranges, and
//! the IPv6 forms that embed an IPv4 address (v4-mapped, v4-compatible,
//! NAT64), which are judged by the address they embed. Rust's
//! `IpAddr::is_global` would say the same but is not stable.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The rule one fetcher applies to every address it would connect to.
#[derive(Debug, Clone, Default)]
pub struct AddressRules {
    /// Networks allowed even though they are not public (an internal
    /// image server an operator trusts).
    allow: Vec<IpNet>,
}

impl AddressRules {
    /// Public addresses plus `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow }
    }

    /// Whether a fetch may connect to `ip`. A v4-mapped IPv6 address is
    /// judged as the IPv4 address it maps.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allow.iter().any(|net| net.contains(&ip)) || is_public(ip)
    }
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // "this network", 0.0.0.0 included
        || ip.is_loopback() // 127/8
        || ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local() // 169.254/16: cloud metadata
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 shared (CGNAT)
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 protocol assignments
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 192 && b == 88 && c == 99) // 6to4 relay anycast
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || a >= 224; // multicast 224/4, reserved 240/4, broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let refused = ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast() // ff00::/8
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] == 0x0064 && s[1] == 0xff9b) // 64:ff9b::/32 NAT64 (local use too)
        || (s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0) // 100::/64 discard
        || (s[0] == 0x2001 && s[1] < 0x0200) // 2001::/23 protocol assignments, Teredo
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || s[0] == 0x2002 // 6to4, tunnels to any IPv4 address
        || (s[0] & 0xe000) != 0x2000; // outside 2000::/3, the global unicast space
    !refused
}

/// The IPv4 address inside an IPv6 one that carries it: v4-mapped
/// (`::ffff:a.b.c.d`), v4-compatible (`::a.b.c.d`, deprecated) and the
/// well-known NAT64 prefix (`64:ff9b::a.b.c.d`). `::` and `::1` are not.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        [0x0064, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn refuses_every_non_public_range() {
        let rules = AddressRules::default();
        for s in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2002:7f00:1::1",
            "100::1",
            "::2:3:4:5:6",
        ] {
            assert!(!rules.allows(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn allows_public_addresses() {
        let rules = AddressRules::default();
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(rules.allows(ip(s)), "{s} must be allowed");
        }
    }

    #[test]
    fn listed_networks_are_allowed_v4_mapped_included() {
        let rules = AddressRules::new(vec!["10.1.0.0/16".parse().unwrap()]);
        assert!(rules.allows(ip("10.1.2.3")));
        assert!(rules.allows(ip("::ffff:10.1.2.3")));
        assert!(!rules.allows(ip("10.2.0.1")));
        assert!(!rules.allows(ip("127.0.0.1")));
        let rules = AddressRules::new(vec!["fd00::/8".parse().unwrap()]);
        assert!(rules.allows(ip("fd00::5")));
        assert!(!rules.allows(ip("fe80::1")));
    }
}
