//! Which addresses Herald refuses to fetch images from (the SSRF rules of docs/images.md).
//!
//! Every address the image host resolves to is checked, IP literals included, and IPv6 forms
//! that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4
//! `2002::/16`) are judged by the IPv4 address inside. Two classes of refusal:
//! - private: loopback, RFC 1918, CGNAT, IPv6 unique-local. `HERALD_ALLOW_PRIVATE_MEDIA_URLS`
//!   lifts these (tests serve images from 127.0.0.1);
//! - always: unspecified (`0.0.0.0` reaches the local host on Linux), link-local (which holds the
//!   cloud metadata service at 169.254.169.254), multicast, broadcast, documentation,
//!   benchmarking and reserved ranges, and IPv6 tunnels that hide their endpoint (Teredo). Nothing
//!   legitimate serves a marketing image there, so no setting lifts them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// What the address is, for the error message (e.g. "loopback").
    pub range: &'static str,
    /// `true`: refused unless private addresses are allowed (tests); `false`: always refused.
    pub private: bool,
}

const fn private(range: &'static str) -> Option<Refusal> {
    Some(Refusal {
        range,
        private: true,
    })
}

const fn always(range: &'static str) -> Option<Refusal> {
    Some(Refusal {
        range,
        private: false,
    })
}

/// `None` when Herald may connect to `ip`; otherwise why not.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether `ip` may be fetched from under the policy; the refusal when not.
pub fn check(ip: IpAddr, allow_private: bool) -> Result<(), Refusal> {
    match classify(ip) {
        Some(r) if r.private && allow_private => Ok(()),
        Some(r) => Err(r),
        None => Ok(()),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    if ip.is_broadcast() {
        return always("broadcast");
    }
    let table: [([u8; 4], u32, Option<Refusal>); 17] = [
        ([0, 0, 0, 0], 8, always("unspecified (\"this network\")")),
        ([10, 0, 0, 0], 8, private("private (10.0.0.0/8)")),
        (
            [100, 64, 0, 0],
            10,
            private("carrier-grade NAT (100.64.0.0/10)"),
        ),
        ([127, 0, 0, 0], 8, private("loopback")),
        (
            [169, 254, 0, 0],
            16,
            always("link-local (169.254.0.0/16, where cloud metadata services live)"),
        ),
        ([172, 16, 0, 0], 12, private("private (172.16.0.0/12)")),
        ([192, 0, 0, 0], 24, always("IETF protocol assignment")),
        ([192, 0, 2, 0], 24, always("documentation")),
        ([192, 31, 196, 0], 24, always("AS112")),
        ([192, 52, 193, 0], 24, always("AMT")),
        ([192, 88, 99, 0], 24, always("6to4 relay anycast")),
        ([192, 168, 0, 0], 16, private("private (192.168.0.0/16)")),
        ([192, 175, 48, 0], 24, always("AS112")),
        ([198, 18, 0, 0], 15, always("benchmarking")),
        ([198, 51, 100, 0], 24, always("documentation")),
        ([203, 0, 113, 0], 24, always("documentation")),
        ([224, 0, 0, 0], 4, always("multicast")),
    ];
    for (net, prefix, refusal) in table {
        if in_v4(ip, net, prefix) {
            return refusal;
        }
    }
    if in_v4(ip, [240, 0, 0, 0], 4) {
        return always("reserved (240.0.0.0/4)");
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return always("unspecified (::)");
    }
    if ip.is_loopback() {
        return private("loopback (::1)");
    }
    // ::ffff:a.b.c.d reaches the IPv4 address itself.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // ::a.b.c.d (IPv4-compatible, deprecated) and the rest of ::/96.
    if s[..6] == [0; 6] {
        return always("IPv4-compatible (deprecated)");
    }
    // NAT64 well-known prefix: judged by the IPv4 address it translates to.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new(
            (s[6] >> 8) as u8,
            (s[6] & 0xff) as u8,
            (s[7] >> 8) as u8,
            (s[7] & 0xff) as u8,
        );
        return classify_v4(v4).and(always("NAT64 of a refused IPv4 address"));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return always("local-use NAT64 (64:ff9b:1::/48)");
    }
    if s[0] == 0x100 && s[1..4] == [0, 0, 0] {
        return always("discard-only (100::/64)");
    }
    // 6to4: 2002:AABB:CCDD::/48 carries the IPv4 address AA.BB.CC.DD.
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new(
            (s[1] >> 8) as u8,
            (s[1] & 0xff) as u8,
            (s[2] >> 8) as u8,
            (s[2] & 0xff) as u8,
        );
        return classify_v4(v4).and(always("6to4 of a refused IPv4 address"));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        return always("Teredo tunnel (2001::/32)");
    }
    if s[0] == 0x2001 && s[1] == 0xdb8 {
        return always("documentation (2001:db8::/32)");
    }
    if s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010 {
        return always("ORCHID (2001:10::/28)");
    }
    if (s[0] & 0xfe00) == 0xfc00 {
        return private("unique-local (fc00::/7)");
    }
    if (s[0] & 0xffc0) == 0xfe80 {
        return always("link-local (fe80::/10)");
    }
    if (s[0] & 0xffc0) == 0xfec0 {
        return always("site-local (fec0::/10, deprecated)");
    }
    if (s[0] & 0xff00) == 0xff00 {
        return always("multicast (ff00::/8)");
    }
    // Everything routable on the Internet is in 2000::/3; the rest is reserved.
    if (s[0] & 0xe000) != 0x2000 {
        return always("reserved (outside 2000::/3)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> IpAddr {
        text.parse().expect("an IP address")
    }

    fn refused_private(text: &str) {
        let r = classify(v(text)).unwrap_or_else(|| panic!("{text} must be refused"));
        assert!(
            r.private,
            "{text}: {r:?} should be lifted by the test setting"
        );
        assert!(
            check(v(text), true).is_ok(),
            "{text} allowed with the setting"
        );
        assert!(check(v(text), false).is_err(), "{text} refused without it");
    }

    fn refused_always(text: &str) {
        let r = classify(v(text)).unwrap_or_else(|| panic!("{text} must be refused"));
        assert!(!r.private, "{text}: {r:?} must never be allowed");
        assert!(
            check(v(text), true).is_err(),
            "{text} refused even with the setting"
        );
    }

    fn allowed(text: &str) {
        assert_eq!(classify(v(text)), None, "{text} is public");
        assert!(check(v(text), false).is_ok());
    }

    #[test]
    fn ipv4_private_ranges_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "192.168.255.255",
            "100.64.0.1",
            "100.127.255.255",
        ] {
            refused_private(ip);
        }
    }

    #[test]
    fn ipv4_special_ranges_are_always_refused() {
        for ip in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "198.19.255.255",
            "192.88.99.1",
        ] {
            refused_always(ip);
        }
        assert!(classify(v("169.254.169.254"))
            .expect("refused")
            .range
            .contains("metadata"));
    }

    #[test]
    fn ipv4_neighbours_of_the_ranges_are_public() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.167.255.255",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.1",
            "223.255.255.255",
        ] {
            allowed(ip);
        }
    }

    #[test]
    fn ipv6_ranges() {
        refused_private("::1");
        refused_private("fc00::1");
        refused_private("fd12:3456:789a::1");
        for ip in [
            "::",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "ff05::2",
            "2001:db8::1",
            "2001::1",
            "2001:10::1",
            "100::1",
            "64:ff9b:1::1",
            "::127.0.0.1",
            "::10.0.0.1",
            "4000::1",
            "e000::1",
        ] {
            refused_always(ip);
        }
        for ip in [
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860::8888",
        ] {
            allowed(ip);
        }
    }

    #[test]
    fn ipv4_inside_ipv6_is_judged_by_the_ipv4_address() {
        // IPv4-mapped: the same class as the IPv4 address (lifted for loopback in tests).
        refused_private("::ffff:127.0.0.1");
        refused_private("::ffff:7f00:1");
        refused_private("::ffff:10.1.2.3");
        refused_private("::ffff:192.168.1.1");
        refused_private("::ffff:100.64.0.1");
        refused_always("::ffff:169.254.169.254");
        refused_always("::ffff:0.0.0.0");
        refused_always("::ffff:224.0.0.1");
        allowed("::ffff:8.8.8.8");
        // NAT64 and 6to4 of a refused address: always refused; of a public one: fine.
        refused_always("64:ff9b::7f00:1");
        refused_always("64:ff9b::a9fe:a9fe");
        allowed("64:ff9b::808:808");
        refused_always("2002:7f00:1::1");
        refused_always("2002:a9fe:a9fe::1");
        refused_always("2002:c0a8:101::1");
        allowed("2002:808:808::1");
    }
}
