//! The node's /etc/resolv.conf search line, for kind's
//! `networking.dnsSearch`, with the semantics of kind's node entrypoint
//! (kind `images/base/files/usr/local/bin/entrypoint:475-487`, fed by the
//! providers' `KIND_DNS_SEARCH`, `pkg/cluster/internal/providers/docker/
//! provision.go:209-211`): not set, the file is left as the node has it;
//! an empty list removes every `search` line; otherwise the file starts
//! with `search` and the domains, and its other `search` lines go.

/// `existing` with its search line replaced by `search`'s domains (none:
/// removed). A domain that is empty or holds whitespace would split into
/// other domains or other resolv.conf lines, so it is refused by name.
pub fn with_search(existing: &str, search: &[String]) -> Result<String, String> {
    if let Some(bad) = search
        .iter()
        .find(|d| d.is_empty() || d.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(format!(
            "dns_search domain {bad:?} is not a domain: it is empty or holds whitespace"
        ));
    }
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for line in existing.lines().filter(|l| !l.starts_with("search")) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    const HOSTS: &str = "nameserver 10.0.2.3\nsearch corp.example\noptions ndots:2\n";

    #[test]
    fn the_search_line_is_replaced_and_put_first() {
        assert_eq!(
            with_search(HOSTS, &domains(&["a.example", "b.example"])).unwrap(),
            "search a.example b.example\nnameserver 10.0.2.3\noptions ndots:2\n"
        );
        // Applied again (kina-init restarted), the same file.
        let once = with_search(HOSTS, &domains(&["a.example"])).unwrap();
        assert_eq!(with_search(&once, &domains(&["a.example"])).unwrap(), once);
        // A node without the file gets the line alone.
        assert_eq!(
            with_search("", &domains(&["a.example"])).unwrap(),
            "search a.example\n"
        );
    }

    #[test]
    fn an_empty_list_removes_every_search_line() {
        assert_eq!(
            with_search(HOSTS, &[]).unwrap(),
            "nameserver 10.0.2.3\noptions ndots:2\n"
        );
    }

    #[test]
    fn a_domain_that_would_write_another_line_is_refused() {
        for bad in ["", "a b", "a\nnameserver 1.2.3.4"] {
            let err = with_search(HOSTS, &domains(&["ok.example", bad])).unwrap_err();
            assert!(err.contains("is not a domain"), "{err}");
        }
    }
}
