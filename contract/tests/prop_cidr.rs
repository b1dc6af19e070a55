//! IPv4 subnets, fuzzed: any text is parsed or refused with a message that
//! quotes it; what is accepted is exactly what Go's `net.ParseCIDR` (and so
//! kubeadm, which gets the text as written) accepts for IPv4; printing and
//! parsing round-trip; membership and overlap agree with address ranges
//! worked out by hand.

// Integration test: helpers outside #[test] functions fail the test by panicking too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::Ipv4Addr;

use kina_contract::cidr::Ipv4Cidr;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// An octet as someone might write it, well or badly.
fn octet_texts() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u16..=255).prop_map(|n| n.to_string()),
        1 => (256u32..100_000).prop_map(|n| n.to_string()),
        1 => (0u16..=255).prop_map(|n| format!("0{n}")),
        1 => prop_oneof![
            Just(String::new()),
            Just("-1".to_string()),
            Just("+1".to_string()),
            Just(" 1".to_string()),
            Just("1 ".to_string()),
            Just("0x1".to_string()),
            Just("a".to_string()),
            Just("١".to_string()),
        ],
    ]
}

/// A prefix length as someone might write it, well or badly.
fn prefix_texts() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u32..=32).prop_map(|n| n.to_string()),
        1 => (33u32..1000).prop_map(|n| n.to_string()),
        1 => (0u32..=40).prop_map(|n| format!("0{n}")),
        1 => (0u32..=40).prop_map(|n| format!("+{n}")),
        1 => (0u32..=40).prop_map(|n| format!("-{n}")),
        1 => prop_oneof![
            Just(String::new()),
            Just(" 8".to_string()),
            Just("8 ".to_string()),
            Just("8/8".to_string()),
            Just("0x8".to_string()),
            Just("٨".to_string()),
            Just("+".to_string()),
        ],
    ]
}

/// Go's rule for an IPv4 octet: decimal, 0 to 255, no leading zero.
fn canonical_octet(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
        && s.parse::<u16>().is_ok_and(|n| n <= 255)
}

/// Go's `dtoi` for the prefix: ASCII digits only, all of them, at most 32.
fn go_prefix(s: &str) -> Option<u8> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = s.trim_start_matches('0');
    if n.len() > 2 {
        return None;
    }
    let n: u8 = if n.is_empty() { 0 } else { n.parse().ok()? };
    (n <= 32).then_some(n)
}

/// Every address of the subnet of `addr/prefix`, as a range.
fn range(addr: u32, prefix: u8) -> (u64, u64) {
    let size = 1u64 << (32 - u32::from(prefix));
    let start = u64::from(addr) / size * size;
    (start, start + size - 1)
}

fn cidrs() -> impl Strategy<Value = Ipv4Cidr> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, prefix)| Ipv4Cidr {
        addr: Ipv4Addr::from(a),
        prefix,
    })
}

/// An address near `base` (same high bits, so inside small subnets often).
fn near(base: u32) -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        (0u32..=32, any::<u32>()).prop_map(move |(bits, noise)| {
            let mask = if bits == 32 {
                u32::MAX
            } else {
                (1u32 << bits) - 1
            };
            (base & !mask) | (noise & mask)
        }),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    /// Any text: parsed, or refused with a message that quotes it.
    #[test]
    fn any_text_is_parsed_or_refused_quoting_it(
        text in prop_oneof![
            any::<String>(),
            "[0-9./:,a-f +-]{0,24}",
        ],
    ) {
        if let Err(e) = Ipv4Cidr::parse(&text) {
            prop_assert!(e.contains(&format!("`{text}`")), "{}", e);
        }
    }

    /// Texts built from well and badly written octets and prefix lengths
    /// are accepted exactly when Go's net.ParseCIDR accepts them as IPv4
    /// (kubeadm is handed the text as written), with that address and
    /// prefix length.
    #[test]
    fn accepted_exactly_when_go_accepts(
        octets in prop::collection::vec(octet_texts(), 3..=5),
        slash in prop::bool::weighted(0.95),
        prefix in prefix_texts(),
    ) {
        let addr = octets.join(".");
        let text = if slash { format!("{addr}/{prefix}") } else { addr.clone() };
        let want = (slash && octets.len() == 4 && octets.iter().all(|o| canonical_octet(o)))
            .then(|| go_prefix(&prefix))
            .flatten()
            .map(|p| {
                let o: Vec<u8> = octets.iter().map(|o| o.parse().unwrap()).collect();
                (Ipv4Addr::new(o[0], o[1], o[2], o[3]), p)
            });
        match (Ipv4Cidr::parse(&text), want) {
            (Ok(c), Some((a, p))) => prop_assert_eq!((c.addr, c.prefix), (a, p)),
            (Err(_), None) => {}
            (got, want) => prop_assert!(false, "`{}`: parsed {:?}, Go says {:?}", text, got, want),
        }
    }

    /// Printing gives the network (host bits cleared) and parses back to
    /// it; the address as written parses back to itself.
    #[test]
    fn display_and_parse_round_trip(c in cidrs()) {
        let shown = c.to_string();
        let back = Ipv4Cidr::parse(&shown).unwrap();
        prop_assert_eq!(back, Ipv4Cidr { addr: c.network(), prefix: c.prefix });
        prop_assert_eq!(back.to_string(), shown.clone());
        let (start, _) = range(u32::from(c.addr), c.prefix);
        prop_assert_eq!(shown, format!("{}/{}", Ipv4Addr::from(start as u32), c.prefix));
        prop_assert_eq!(Ipv4Cidr::parse(&format!("{}/{}", c.addr, c.prefix)).unwrap(), c);
    }

    /// Membership agrees with the subnet's address range.
    #[test]
    fn contains_agrees_with_the_address_range(
        (c, ip) in cidrs().prop_flat_map(|c| (Just(c), near(u32::from(c.addr)))),
    ) {
        let (start, end) = range(u32::from(c.addr), c.prefix);
        let ip64 = u64::from(ip);
        prop_assert_eq!(c.contains(Ipv4Addr::from(ip)), start <= ip64 && ip64 <= end);
        prop_assert!(c.contains(c.addr) && c.contains(c.network()));
    }

    /// Overlap agrees with the ranges intersecting, both ways round, and
    /// means one subnet holds the other.
    #[test]
    fn overlaps_agrees_with_the_ranges(
        (a, b) in cidrs().prop_flat_map(|a| {
            (Just(a), (near(u32::from(a.addr)), 0u8..=32))
        }).prop_map(|(a, (addr, prefix))| (a, Ipv4Cidr { addr: Ipv4Addr::from(addr), prefix })),
    ) {
        let (a0, a1) = range(u32::from(a.addr), a.prefix);
        let (b0, b1) = range(u32::from(b.addr), b.prefix);
        let intersect = a0 <= b1 && b0 <= a1;
        prop_assert_eq!(a.overlaps(&b), intersect);
        prop_assert_eq!(b.overlaps(&a), intersect);
        if intersect {
            prop_assert!((a0 <= b0 && b1 <= a1) || (b0 <= a0 && a1 <= b1));
        }
    }
}
