//! Debian package versions, ordered exactly as dpkg orders them.
//!
//! `[epoch:]upstream[-revision]`, compared part by part with dpkg's
//! `verrevcmp` rules: `~` sorts before anything (even the end of the string),
//! letters before other characters, digit runs numerically.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Equal as dpkg says equal (`1.0` and `1.00`, `1.0` and `1.0-0`), so `==`
/// and the order never disagree; the text is kept only to print it back.
#[derive(Clone, Debug)]
pub struct Version {
    pub epoch: u64,
    pub upstream: String,
    pub revision: String,
    text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{input}` is not a Debian version: {problem}")]
pub struct VersionParseError {
    input: String,
    problem: &'static str,
}

impl FromStr for Version {
    type Err = VersionParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |problem| VersionParseError {
            input: s.to_string(),
            problem,
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(err("empty"));
        }
        let (epoch, rest) = match text.split_once(':') {
            Some((e, rest)) => (
                e.parse::<u64>().map_err(|_| err("epoch is not a number"))?,
                rest,
            ),
            None => (0, text),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err(err("empty upstream version"));
        }
        if text.chars().any(|c| c.is_whitespace()) {
            return Err(err("contains whitespace"));
        }
        Ok(Version {
            epoch,
            upstream: upstream.to_string(),
            revision: revision.to_string(),
            text: text.to_string(),
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| verrevcmp(&self.upstream, &other.upstream))
            .then_with(|| verrevcmp(&self.revision, &other.revision))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's character weight for the non-digit parts.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(c) => c as i32 + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let mut first_diff = 0;
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let ac = order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let bc = order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while i < a.len() && a[i] == b'0' {
            i += 1;
        }
        while j < b.len() && b[j] == b'0' {
            j += 1;
        }
        while i < a.len() && a[i].is_ascii_digit() && j < b.len() && b[j].is_ascii_digit() {
            if first_diff == 0 {
                first_diff = a[i] as i32 - b[j] as i32;
            }
            i += 1;
            j += 1;
        }
        if i < a.len() && a[i].is_ascii_digit() {
            return Ordering::Greater;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            return Ordering::Less;
        }
        if first_diff != 0 {
            return first_diff.cmp(&0);
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    const PAIRS: &[(&str, &str)] = &[
        ("1.0", "1.0"),
        ("1.0~rc1", "1.0"),
        ("1.0~~", "1.0~"),
        ("1.0", "1.0-0"),
        ("1.0-1", "1.0-1+b1"),
        ("1.0+dfsg", "1.0"),
        ("1:0.1", "2.0"),
        ("2.30-1", "2.4-1"),
        ("1.0a", "1.0+"),
        ("1.0.0", "1.0"),
        ("00.1", "0.1"),
        ("6.1.0-1~bpo12+1", "6.1.0-1"),
        ("1.7.24~ds1-6+deb13u1", "1.7.24~ds1-6"),
        ("2:8.2.3995-1+deb12u1", "2:9.0.1378-2"),
        ("1.8.11-2", "1.8.9-2"),
        ("a", "b"),
        ("1.0-1", "1.0-1.1"),
        ("1.2.3~", "1.2.3"),
        ("0~20250101", "0.1"),
        ("1.0", "1.00"),
        ("1.", "1.0"),
    ];

    #[test]
    fn ordering_matches_dpkg_compare_versions() {
        for (a, b) in PAIRS {
            for (x, y) in [(a, b), (b, a)] {
                let ours = v(x).cmp(&v(y));
                let op = match ours {
                    Ordering::Less => "lt",
                    Ordering::Equal => "eq",
                    Ordering::Greater => "gt",
                };
                let status = std::process::Command::new("dpkg")
                    .args(["--compare-versions", x, op, y])
                    .status()
                    .expect("dpkg is part of every Debian system");
                assert!(status.success(), "kina says {x} {op} {y}, dpkg disagrees");
            }
        }
    }

    /// dpkg calls these equal; `==` did not (it compared the text) while
    /// the order did, so a sort and a dedup could disagree.
    #[test]
    fn versions_dpkg_calls_equal_are_equal_and_keep_their_text() {
        for (a, b) in [
            ("1.0", "1.00"),
            ("1.0", "1.0-0"),
            ("0:1.0", "1.0"),
            ("1.", "1.0"),
        ] {
            assert_eq!(v(a), v(b), "{a} == {b}");
            assert_eq!(v(a).to_string(), a);
        }
        assert_ne!(v("1.0"), v("1.0.0"));
    }

    #[test]
    fn tilde_sorts_before_release() {
        assert!(v("1.0~rc1") < v("1.0"));
        assert!(v("1:1.0") > v("9.9"));
    }

    #[test]
    fn display_keeps_the_original_text() {
        assert_eq!(v("1:2.3-4").to_string(), "1:2.3-4");
        assert!("".parse::<Version>().is_err());
        assert!("x:1".parse::<Version>().is_err());
    }
}
