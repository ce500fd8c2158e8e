//! Which addresses an import may connect to: an explicit table of the
//! IANA special-purpose ranges, so a reviewer can check each one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is a globally routable unicast address, i.e. one an import
/// may connect to: not loopback, unspecified, private, link-local (cloud
/// metadata), shared/CGNAT, documentation, benchmarking, multicast,
/// broadcast, reserved, or an IPv6 form embedding such an IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    non_public_kind(ip).is_none()
}

/// The kind of a non-public address (`None` when public). An explicit
/// table rather than `std`'s `is_global`, which is unstable, and so a
/// reviewer can check each range against the IANA special-purpose
/// registries.
pub(super) fn non_public_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) => v6_kind(v6),
    }
}

/// IPv4 special-purpose ranges (RFC 6890 and successors). Order matters
/// only where ranges nest: broadcast is named before the reserved /4 it
/// lies in.
const V4_RANGES: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "unspecified"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    // Includes 169.254.169.254, the cloud metadata service.
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignment"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([255, 255, 255, 255], 32, "broadcast"),
    ([240, 0, 0, 0], 4, "reserved"),
];

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let a = u32::from(ip);
    V4_RANGES
        .iter()
        .find(|(net, bits, _)| a & v4_mask(*bits) == u32::from(Ipv4Addr::from(*net)))
        .map(|(_, _, kind)| *kind)
}

fn v4_mask(bits: u32) -> u32 {
    u32::MAX.checked_shl(32 - bits).unwrap_or(0)
}

/// IPv6 ranges that are not public, after the forms that embed an IPv4
/// address have been judged by that address (see [`v6_kind`]).
const V6_RANGES: &[(u128, u32, &str)] = &[
    (0x0064_ff9b_0001 << 80, 48, "NAT64 local-use"),
    (0x0100 << 112, 64, "discard-only"),
    // Teredo tunnels to an obfuscated IPv4 client: never a web server.
    (0x2001 << 112, 32, "Teredo"),
    // The rest of 2001::/23 (benchmarking 2001:2::/48, ORCHID, …).
    (0x2001 << 112, 23, "IETF protocol assignment"),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x3fff << 112, 20, "documentation"),
    (0x3ffe << 112, 16, "reserved (former 6bone)"),
    (0xfc00 << 112, 7, "private (unique local)"),
    (0xfe80 << 112, 10, "link-local"),
    (0xfec0 << 112, 10, "site-local"),
    (0xff00 << 112, 8, "multicast"),
];

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let a = u128::from(ip);
    let within = |net: u128, bits: u32| a & v6_mask(bits) == net;
    if a == 0 {
        return Some("unspecified");
    }
    if a == 1 {
        return Some("loopback");
    }
    // Forms that carry an IPv4 address are judged by it, so that
    // ::ffff:127.0.0.1 is loopback and ::ffff:8.8.8.8 is as public as
    // 8.8.8.8: IPv4-mapped ::ffff:0:0/96, the deprecated IPv4-compatible
    // ::/96 (what is left of it after :: and ::1), NAT64 64:ff9b::/96.
    if within(0xffff << 32, 96) || within(0, 96) || within(0x0064_ff9b << 96, 96) {
        return v4_kind(Ipv4Addr::from(a as u32));
    }
    // 6to4 2002::/16 carries its IPv4 address in bits 16..48.
    if within(0x2002 << 112, 16) {
        return v4_kind(Ipv4Addr::from((a >> 80) as u32));
    }
    if let Some((_, _, kind)) = V6_RANGES.iter().find(|(net, bits, _)| within(*net, *bits)) {
        return Some(kind);
    }
    // Everything global that IANA hands out lies in 2000::/3; the rest of
    // the space is reserved.
    if !within(0x2000 << 112, 3) {
        return Some("reserved");
    }
    None
}

fn v6_mask(bits: u32) -> u128 {
    u128::MAX.checked_shl(128 - bits).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_public_judges_every_ipv4_range_on_both_sides_of_its_boundaries() {
        let table: &[(&str, bool)] = &[
            ("0.0.0.0", false),
            ("0.255.255.255", false),
            ("1.0.0.0", true),
            ("1.1.1.1", true),
            ("8.8.8.8", true),
            ("9.255.255.255", true),
            ("10.0.0.0", false),
            ("10.255.255.255", false),
            ("11.0.0.0", true),
            ("100.63.255.255", true),
            ("100.64.0.0", false),
            ("100.127.255.255", false),
            ("100.128.0.0", true),
            ("126.255.255.255", true),
            ("127.0.0.0", false),
            ("127.0.0.1", false),
            ("127.255.255.255", false),
            ("128.0.0.0", true),
            ("169.253.255.255", true),
            ("169.254.0.0", false),
            ("169.254.169.254", false),
            ("169.254.255.255", false),
            ("169.255.0.0", true),
            ("172.15.255.255", true),
            ("172.16.0.0", false),
            ("172.31.255.255", false),
            ("172.32.0.0", true),
            ("191.255.255.255", true),
            ("192.0.0.0", false),
            ("192.0.0.255", false),
            ("192.0.1.0", true),
            ("192.0.2.0", false),
            ("192.0.2.255", false),
            ("192.0.3.0", true),
            ("192.88.98.255", true),
            ("192.88.99.0", false),
            ("192.88.99.255", false),
            ("192.88.100.0", true),
            ("192.167.255.255", true),
            ("192.168.0.0", false),
            ("192.168.255.255", false),
            ("192.169.0.0", true),
            ("198.17.255.255", true),
            ("198.18.0.0", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            ("198.51.99.255", true),
            ("198.51.100.0", false),
            ("198.51.100.255", false),
            ("198.51.101.0", true),
            ("203.0.112.255", true),
            ("203.0.113.0", false),
            ("203.0.113.255", false),
            ("203.0.114.0", true),
            ("223.255.255.255", true),
            ("224.0.0.0", false),
            ("239.255.255.255", false),
            ("240.0.0.0", false),
            ("255.255.255.254", false),
            ("255.255.255.255", false),
        ];
        for (ip, public) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(ip), *public, "{ip}");
        }
    }

    #[test]
    fn is_public_judges_every_ipv6_range_and_embedded_ipv4_addresses() {
        let table: &[(&str, bool)] = &[
            ("::", false),
            ("::1", false),
            // IPv4-compatible ::/96: judged by the IPv4 address.
            ("::2", false),
            ("::127.0.0.1", false),
            ("::8.8.8.8", true),
            // IPv4-mapped ::ffff:0:0/96.
            ("::ffff:0.0.0.0", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:100.64.0.1", false),
            ("::ffff:8.8.8.8", true),
            // NAT64 64:ff9b::/96 and its local-use neighbour.
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::c0a8:1", false),
            ("64:ff9b::808:808", true),
            ("64:ff9b:1::1", false),
            ("100::1", false),
            // 2000::/3 and what is carved out of it.
            ("1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2000::", true),
            ("2001::", false),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:1::1", false),
            ("2001:2::1", false),
            ("2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:200::1", true),
            ("2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("2001:db8::", false),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("2001:db9::", true),
            ("2001:4860:4860::8888", true),
            // 6to4 2002::/16: judged by the IPv4 address in bits 16..48.
            ("2002:7f00:1::", false),
            ("2002:a00:1::1", false),
            ("2002:a9fe:a9fe::", false),
            ("2002:c0a8:101::", false),
            ("2002:808:808::1", true),
            ("2606:4700:4700::1111", true),
            ("3ffd:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("3ffe::1", false),
            ("3fff::", false),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("3fff:1000::", true),
            ("3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true),
            ("4000::", false),
            ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fc00::", false),
            ("fd12:3456::1", false),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fe80::", false),
            ("fe80::1", false),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("fec0::", false),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", false),
            ("ff00::", false),
            ("ff02::1", false),
        ];
        for (ip, public) in table {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(is_public(ip), *public, "{ip}");
        }
    }

    #[test]
    fn blocked_addresses_are_named_by_kind() {
        let kind = |s: &str| non_public_kind(s.parse().unwrap());
        assert_eq!(kind("127.0.0.1"), Some("loopback"));
        assert_eq!(kind("169.254.169.254"), Some("link-local"));
        assert_eq!(kind("100.64.0.1"), Some("shared (carrier-grade NAT)"));
        assert_eq!(kind("255.255.255.255"), Some("broadcast"));
        assert_eq!(kind("250.0.0.1"), Some("reserved"));
        assert_eq!(kind("::ffff:127.0.0.1"), Some("loopback"));
        assert_eq!(kind("64:ff9b::a9fe:a9fe"), Some("link-local"));
        assert_eq!(kind("2002:a00:1::"), Some("private"));
        assert_eq!(kind("2001::1"), Some("Teredo"));
        assert_eq!(kind("2001:db8::1"), Some("documentation"));
        assert_eq!(kind("fec0::1"), Some("site-local"));
        assert_eq!(kind("fd00::1"), Some("private (unique local)"));
        assert_eq!(kind("ff02::1"), Some("multicast"));
        assert_eq!(kind("93.184.215.14"), None);
    }
}
