//! Which cluster names kina accepts, for every provider alike: a cluster
//! made on QEMU keeps its name should it be made on a Mac, and a name
//! Apple cannot use is refused before anything is made, not after the
//! node image was loaded.
//!
//! The name is used as:
//! - kind's cluster name: `^[a-z0-9.-]+$` (kind
//!   `pkg/internal/apis/config/validate.go:34`, `validNameRE`);
//! - a directory kina removes on `down`, so it starts with a letter or
//!   digit (never empty, `.`, `..` or a flag);
//! - part of Apple's network name `kina-<name>`, which must match
//!   `^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$` (apple/container 1.2.2
//!   `Sources/ContainerResource/Network/NetworkResource.swift:58`, checked
//!   by `NetworkConfiguration.swift:141-142`): so it ends with a letter or
//!   digit too;
//! - the start of node names (`<name>-control-plane2` the longest kind's
//!   namer gives a cluster of up to nine control planes), which Apple takes as container names of at most 63
//!   characters (`ManagedContainer.swift:45-52`) and Kubernetes as Node
//!   names, DNS subdomains whose dot-separated labels start and end with a
//!   letter or digit: so no `..`, `.-` or `-.`.

/// The longest cluster name: `-control-plane2` (15 characters) added to it
/// is still an Apple container name (63).
pub const MAX_LEN: usize = 63 - "-control-plane2".len();

/// Ok when `name` can name a cluster on every provider; otherwise what is
/// wrong with it, the rule and what to do.
pub fn check(name: &str) -> Result<(), String> {
    let problem = if name.is_empty() {
        Some("it is empty".to_string())
    } else if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        Some(format!("it holds `{c}`"))
    } else if name.len() > MAX_LEN {
        Some(format!("it is {} characters long", name.len()))
    } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("it does not start with a letter or digit".to_string())
    } else if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        Some("it does not end with a letter or digit".to_string())
    } else {
        ["..", ".-", "-."]
            .iter()
            .find(|pair| name.contains(*pair))
            .map(|pair| format!("it holds `{pair}`"))
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(format!(
            "`{name}` is not a cluster name: {problem}. A cluster name is 1 to {MAX_LEN} \
             lowercase letters, digits, `.` and `-`, starting and ending with a letter or digit, \
             with a letter or digit on each side of every `.` (kind's rule, narrowed so that \
             Apple's network `kina-<name>`, its container names and Kubernetes node names \
             accept it); choose another with --name or the config's `name`"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_provider_can_use_are_accepted() {
        for name in [
            "kina", "dev", "a", "0", "dev-2", "team.dev", "a1.b2-c3", "x-y-z",
        ] {
            check(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let longest = "a".repeat(MAX_LEN);
        check(&longest).unwrap();
        assert_eq!(MAX_LEN, 48);
        // The longest node name of the longest cluster name is one Apple
        // takes, and so is its network's name.
        assert_eq!(format!("{longest}-control-plane2").len(), 63);
        assert!(format!("kina-{longest}").len() <= 63);
    }

    #[test]
    fn names_apple_or_kubernetes_cannot_use_are_refused_saying_why() {
        for (name, why) in [
            ("", "it is empty"),
            ("dev-", "does not end with a letter or digit"),
            ("dev.", "does not end with a letter or digit"),
            ("-dev", "does not start with a letter or digit"),
            (".dev", "does not start with a letter or digit"),
            ("..", "does not start with a letter or digit"),
            ("Dev", "it holds `D`"),
            ("dev_1", "it holds `_`"),
            ("dev 1", "it holds ` `"),
            ("dev/1", "it holds `/`"),
            ("a..b", "it holds `..`"),
            ("a.-b", "it holds `.-`"),
            ("a-.b", "it holds `-.`"),
        ] {
            let message = check(name).unwrap_err();
            assert!(message.contains(why), "{name:?}: {message}");
            assert!(message.contains(&format!("`{name}`")), "{message}");
            assert!(message.contains("--name"), "{message}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        assert!(
            check(&long)
                .unwrap_err()
                .contains("it is 49 characters long")
        );
    }
}
