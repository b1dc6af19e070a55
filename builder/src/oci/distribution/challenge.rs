//! `WWW-Authenticate` challenges (RFC 9110 §11.6.1): what a registry's 401
//! asks for. Read by the session (to pick how to answer a refusal) and by
//! token handling (to fetch a token), so it sits below both.

use std::collections::BTreeMap;

/// A `WWW-Authenticate` challenge: scheme and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Challenge {
    pub(super) scheme: String,
    pub(super) params: BTreeMap<String, String>,
}

impl Challenge {
    /// The login is known but its token lacks what the request needs.
    pub(super) fn insufficient_scope(&self) -> bool {
        self.params
            .get("error")
            .is_some_and(|e| e == "insufficient_scope")
    }
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some(Challenge {
        scheme: scheme.to_ascii_lowercase(),
        params,
    })
}

/// The challenge a response carries, if any.
pub(super) fn challenge_of(resp: &reqwest::Response) -> Option<Challenge> {
    resp.headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 512,
            failure_persistence: None,
            ..Default::default()
        })]

        /// A registry's header is untrusted input: nothing in it may panic.
        #[test]
        fn any_header_parses_without_panicking(header in "\\PC{0,200}") {
            let _ = parse_challenge(&header);
        }

        /// Whatever a registry puts in quoted parameters (commas, quotes,
        /// backslashes, `=`, spaces) comes back as it was sent.
        #[test]
        fn quoted_parameters_round_trip(
            scheme in "(Bearer|Basic|bEaReR)",
            params in proptest::collection::btree_map(
                "[a-zA-Z][a-zA-Z0-9_]{0,10}",
                "[!-~]([ -~]{0,40}[!-~])?",
                0..6,
            ),
        ) {
            let params: BTreeMap<String, String> = params
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect();
            let rendered: Vec<String> = params
                .iter()
                .map(|(k, v)| {
                    format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
                })
                .collect();
            let header = format!("{scheme} {}", rendered.join(", "));
            let parsed = parse_challenge(&header).unwrap();
            proptest::prop_assert_eq!(parsed.scheme, scheme.to_ascii_lowercase());
            proptest::prop_assert_eq!(parsed.params, params);
        }
    }

    #[test]
    fn bearer_challenges_are_parsed_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example.invalid/token",service="registry",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.params["realm"], "https://auth.example.invalid/token");
        assert_eq!(c.params["service"], "registry");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let basic = parse_challenge(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(basic.scheme, "basic");
        assert_eq!(basic.params["realm"], "Registry Realm");
    }
}
