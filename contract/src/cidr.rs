//! IPv4 subnets as the cluster config, the node spec and the CNI
//! configuration write them: one parser for the host and the node, with
//! errors that say what is wrong.

use std::fmt;
use std::net::Ipv4Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address as written; host bits may be set (an interface address
    /// such as `10.0.2.15/24`).
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// `a.b.c.d/n`; host bits may be set, as Go's `net.ParseCIDR` (and so
    /// kind and kubeadm) allow.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains(',') {
            return Err(format!(
                "`{text}` is a list of subnets, i.e. dual-stack: kina supports IPv4 only, one subnet"
            ));
        }
        let (addr, prefix) = text.split_once('/').ok_or_else(|| {
            format!("`{text}` is not a CIDR (address/prefix, e.g. 10.244.0.0/16)")
        })?;
        if addr.parse::<std::net::Ipv6Addr>().is_ok() {
            return Err(format!("`{text}` is IPv6: kina supports IPv4 only"));
        }
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not a CIDR: `{addr}` is not an IPv4 address"))?;
        // Digits only: Rust's integer parser also takes a sign (`+16`),
        // which Go's, and so kubeadm's, refuses.
        let prefix: u8 = Some(prefix)
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse().ok())
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("`{text}` is not a CIDR: the prefix length is 0 to 32"))?;
        Ok(Self { addr, prefix })
    }

    pub fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The address with its host bits cleared.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Either holds the other.
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        let mask = self.mask() & other.mask(); // the shorter prefix
        u32::from(self.addr) & mask == u32::from(other.addr) & mask
    }
}

/// The subnet, written with its host bits cleared.
impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_keeps_the_address_as_written() {
        let c = Ipv4Cidr::parse("10.0.2.15/24").unwrap();
        assert_eq!(c.addr, Ipv4Addr::new(10, 0, 2, 15));
        assert!(c.contains(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(!c.contains(Ipv4Addr::new(10, 0, 3, 2)));
        assert!(
            Ipv4Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(Ipv4Addr::new(8, 8, 8, 8))
        );
    }

    #[test]
    fn nonsense_is_named() {
        for (text, says) in [
            ("10.244.0.0/16,fd00::/48", "dual-stack"),
            ("fd00::/64", "IPv6"),
            ("10.244.1.0", "not a CIDR"),
            ("10.244.1.0/33", "0 to 32"),
            // Found by tests/prop_cidr.rs: accepted as /16, refused by kubeadm.
            ("10.244.0.0/+16", "0 to 32"),
            ("10.244.1/24", "not an IPv4 address"),
        ] {
            let err = Ipv4Cidr::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
