//! Package relationships (`Depends`, `Pre-Depends`, `Conflicts`, `Breaks`,
//! `Provides`) as Debian policy §7.1 defines them.

use std::fmt;

use super::version::Version;
use crate::platform::Arch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "<<" => Op::Lt,
            "<=" | "<" => Op::Le,
            "=" => Op::Eq,
            ">=" | ">" => Op::Ge,
            ">>" => Op::Gt,
            _ => return None,
        })
    }

    pub fn matches(self, have: &Version, want: &Version) -> bool {
        let ord = have.cmp(want);
        match self {
            Op::Lt => ord.is_lt(),
            Op::Le => ord.is_le(),
            Op::Eq => ord.is_eq(),
            Op::Ge => ord.is_ge(),
            Op::Gt => ord.is_gt(),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">>",
        }
    }
}

/// One package name with an optional version constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub name: String,
    /// `:any` or `:native`; kina resolves one architecture at a time, so both
    /// are satisfied by a package of the target or `all` architecture.
    pub arch_qualifier: Option<String>,
    pub constraint: Option<(Op, Version)>,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(q) = &self.arch_qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = &self.constraint {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// `a | b | c`: any one of them satisfies the group.
pub type Alternatives = Vec<Relation>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot parse relationship `{text}`: {problem}")]
pub struct RelationParseError {
    pub text: String,
    pub problem: String,
}

/// Parses a relationship field for `arch`: groups whose architecture
/// restriction (`[amd64]`, `[!arm64]`) excludes `arch` are dropped, build
/// profiles (`<!nocheck>`) are ignored since binary packages never carry them.
pub fn parse_relations(text: &str, arch: Arch) -> Result<Vec<Alternatives>, RelationParseError> {
    let mut groups = Vec::new();
    for group in text.split(',') {
        let group = group.trim();
        if group.is_empty() {
            continue;
        }
        let mut alternatives = Vec::new();
        for alt in group.split('|') {
            if let Some(rel) =
                parse_one(alt.trim(), arch).map_err(|problem| RelationParseError {
                    text: text.to_string(),
                    problem,
                })?
            {
                alternatives.push(rel);
            }
        }
        if !alternatives.is_empty() {
            groups.push(alternatives);
        }
    }
    Ok(groups)
}

fn profile_start(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '<' if depth == 0 => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_one(text: &str, arch: Arch) -> Result<Option<Relation>, String> {
    let mut rest = text;
    // Strip build profiles: the first `<` outside the version constraint's
    // parentheses (inside them, `<<`, `<=` and the obsolete `<` are
    // operators).
    if let Some(pos) = profile_start(rest) {
        rest = rest[..pos].trim_end();
    }
    if let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|i| open + i)
            .ok_or_else(|| format!("unclosed `[` in `{text}`"))?;
        let list = &rest[open + 1..close];
        let mut negated = false;
        let mut listed = false;
        for a in list.split_whitespace() {
            let (neg, name) = a.strip_prefix('!').map_or((false, a), |n| (true, n));
            negated |= neg;
            if name == arch.debian() || name == "any" || name == format!("linux-{}", arch.debian())
            {
                listed = true;
            }
        }
        let applies = if negated { !listed } else { listed };
        if !applies {
            return Ok(None);
        }
        rest = rest[..open].trim_end();
    }
    let (name_part, constraint) = match rest.find('(') {
        Some(open) => {
            let close = rest[open..]
                .find(')')
                .map(|i| open + i)
                .ok_or_else(|| format!("unclosed `(` in `{text}`"))?;
            let inner = rest[open + 1..close].trim();
            let split = inner
                .find(|c: char| !matches!(c, '<' | '>' | '='))
                .ok_or_else(|| format!("no version in `{text}`"))?;
            let op = Op::parse(inner[..split].trim())
                .ok_or_else(|| format!("unknown operator `{}` in `{text}`", &inner[..split]))?;
            let version: Version = inner[split..]
                .trim()
                .parse()
                .map_err(|e: super::version::VersionParseError| e.to_string())?;
            (rest[..open].trim(), Some((op, version)))
        }
        None => (rest.trim(), None),
    };
    let (name, qualifier) = match name_part.split_once(':') {
        Some((n, q)) => (n, Some(q.to_string())),
        None => (name_part, None),
    };
    if name.is_empty() {
        return Err(format!("empty package name in `{text}`"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!("invalid package name `{name}`"));
    }
    Ok(Some(Relation {
        name: name.to_string(),
        arch_qualifier: qualifier,
        constraint,
    }))
}

impl Relation {
    /// Whether a real package `name` at `version` satisfies this relation.
    pub fn satisfied_by(&self, name: &str, version: &Version) -> bool {
        self.name == name
            && self
                .constraint
                .as_ref()
                .is_none_or(|(op, want)| op.matches(version, want))
    }

    /// Whether a `Provides:` entry satisfies this relation. An unversioned
    /// provide never satisfies a versioned dependency (policy §7.5).
    pub fn satisfied_by_provide(&self, provide: &Relation) -> bool {
        if self.name != provide.name {
            return false;
        }
        match (&self.constraint, &provide.constraint) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((op, want)), Some((Op::Eq, have))) => op.matches(have, want),
            (Some(_), Some(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn groups_alternatives_and_constraints_parse() {
        let r = parse_relations(
            "libc6 (>= 2.34), awk | mawk:any, libfoo (<< 2~)",
            Arch::Amd64,
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[0][0].to_string(), "libc6 (>= 2.34)");
        assert_eq!(r[1].len(), 2);
        assert_eq!(r[1][1].arch_qualifier.as_deref(), Some("any"));
        assert!(r[2][0].satisfied_by("libfoo", &v("1.9")));
        assert!(!r[2][0].satisfied_by("libfoo", &v("2~")));
    }

    #[test]
    fn architecture_restrictions_filter_for_the_target() {
        let text = "a [amd64], b [!amd64], c [arm64 amd64], d";
        let names = |arch| {
            parse_relations(text, arch)
                .unwrap()
                .into_iter()
                .map(|g| g[0].name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Arch::Amd64), ["a", "c", "d"]);
        assert_eq!(names(Arch::Arm64), ["b", "c", "d"]);
    }

    #[test]
    fn versioned_provides_satisfy_only_matching_constraints() {
        let dep = &parse_relations("awk (>= 1.0)", Arch::Amd64).unwrap()[0][0];
        let unversioned = &parse_relations("awk", Arch::Amd64).unwrap()[0][0];
        let versioned = &parse_relations("awk (= 1.2)", Arch::Amd64).unwrap()[0][0];
        assert!(!dep.satisfied_by_provide(unversioned));
        assert!(dep.satisfied_by_provide(versioned));
        assert!(unversioned.satisfied_by_provide(versioned));
    }

    #[test]
    fn malformed_fields_name_the_text() {
        let err = parse_relations("libc6 (>= 2.34", Arch::Amd64).unwrap_err();
        assert!(err.to_string().contains("libc6 (>= 2.34"));
        assert!(parse_relations("Bad_Name", Arch::Amd64).is_err());
        assert!(parse_relations("x (~= 1)", Arch::Amd64).is_err());
    }

    #[test]
    fn a_qualifier_without_a_name_is_refused() {
        // Found by tests/prop_debian.rs: `:` and `:any` parsed to a relation
        // on the package with the empty name.
        for text in [":", ":any", "a, :native (>= 1)"] {
            let err = parse_relations(text, Arch::Amd64).unwrap_err();
            assert!(err.problem.contains("empty package name"), "{err}");
        }
    }

    #[test]
    fn the_obsolete_less_than_operator_means_at_most_and_profiles_are_dropped() {
        // Policy 7.1: `<` and `>` are obsolete spellings of `<=` and `>=`.
        // The `<` used to be taken for a build profile: "unclosed `(`".
        let old = &parse_relations("libfoo (< 2.0)", Arch::Amd64).unwrap()[0][0];
        assert_eq!(old.to_string(), "libfoo (<= 2.0)");
        assert!(old.satisfied_by("libfoo", &v("2.0")));
        assert!(!old.satisfied_by("libfoo", &v("2.1")));
        let profiled =
            &parse_relations("libbar (<< 3) [amd64] <!nocheck> <stage1>", Arch::Amd64).unwrap()[0];
        assert_eq!(profiled[0].to_string(), "libbar (<< 3)");
    }

    #[test]
    fn a_closing_bracket_before_the_opening_one_is_an_error() {
        // Found by tests/prop_debian.rs: `)(` and `][` sliced backwards and panicked.
        for text in [")(", "a ] [amd64", "a ) (>= 1)"] {
            let err = parse_relations(text, Arch::Amd64).unwrap_err();
            assert_eq!(err.text, text);
        }
    }
}
