//! Whether a registry host is this machine. Plain HTTP is trusted only
//! there: the distribution client tries it for a loopback registry without
//! `--insecure` and sends passwords to a loopback token realm, and a
//! registry mirror (`registry.rs`) may be `http://` only on loopback.

/// `host` is a name, an IPv4 address or a bracketed IPv6 address, each
/// with or without `:port`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(inside, _)| inside)
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    // Parsed, not prefix-matched: `127.example.com` is somebody's host.
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_names_and_addresses_are_parsed_not_prefix_matched() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.invalid:5000"));
        assert!(is_loopback("127.0.0.2:5000"));
        assert!(!is_loopback("127.example.invalid:5000"));
        assert!(!is_loopback("127.0.0.1.example.invalid"));
        assert!(is_loopback("[::1]:5000"));
        assert!(is_loopback("[0:0:0:0:0:0:0:1]"));
        assert!(!is_loopback("[2001:db8::1]:5000"));
    }
}
