//! Leaving paths out of a node image the way dpkg's `--path-exclude` and
//! `--path-include` do, so the image is what a Debian system configured with
//! the same filters would hold after installing the same packages.
//!
//! dpkg's semantics (dpkg `src/main/filters.c`, `filter_should_skip`, and
//! `src/main/archives.c`, checked against dpkg 1.21 installing a package with
//! `--root`): every filter is an fnmatch(3) pattern without flags, matched
//! against the entry's absolute path; the last matching filter decides; an
//! excluded directory or symlink is kept when an include pattern's literal
//! prefix (up to its first wildcard, trailing `/` dropped) is a prefix of its
//! path, because a re-included file may need it. A left-out path stays in
//! the package's `.list` and `md5sums`, so `dpkg -V` reports it `missing`
//! and `dpkg -S` still names its package.

use std::collections::BTreeSet;

use crate::recipe::LeaveOut;

/// Where the filters are written in the node, as Debian's slim container
/// images write theirs (`/etc/dpkg/dpkg.cfg.d/docker`), so a package a user
/// installs in a node later leaves out the same paths.
pub const DPKG_CFG_PATH: &str = "etc/dpkg/dpkg.cfg.d/kina-leave-out";

#[derive(Clone, Debug, PartialEq, Eq)]
struct Filter {
    include: bool,
    pattern: String,
    /// Index of the recipe group the filter comes from.
    group: usize,
}

/// The recipe's `leave_out` groups as one ordered dpkg filter list.
#[derive(Clone, Debug, Default)]
pub struct PathFilters {
    filters: Vec<Filter>,
    groups: Vec<LeaveOut>,
}

/// One filter of a [`PathFilters`] list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FilterId(usize);

impl PathFilters {
    pub fn new(groups: &[LeaveOut]) -> Self {
        let mut filters = Vec::new();
        for (group, g) in groups.iter().enumerate() {
            for pattern in &g.path_exclude {
                filters.push(Filter {
                    include: false,
                    pattern: pattern.clone(),
                    group,
                });
            }
            for pattern in &g.path_include {
                filters.push(Filter {
                    include: true,
                    pattern: pattern.clone(),
                    group,
                });
            }
        }
        Self {
            filters,
            groups: groups.to_vec(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn groups(&self) -> &[LeaveOut] {
        &self.groups
    }

    /// The exclude filter that leaves `path` (absolute, no trailing `/`)
    /// out, or `None` when dpkg would install it. `keeps_children` is true
    /// for directories and symlinks, which dpkg keeps when an include
    /// pattern may need them.
    pub fn excluded_by(&self, path: &str, keeps_children: bool) -> Option<FilterId> {
        // Last match wins.
        let (index, decision) = self
            .filters
            .iter()
            .enumerate()
            .rev()
            .find(|(_, f)| fnmatch(f.pattern.as_bytes(), path.as_bytes()))?;
        if decision.include {
            return None;
        }
        if keeps_children
            && self.filters.iter().filter(|f| f.include).any(|f| {
                let literal = f
                    .pattern
                    .find(['*', '?', '[', '\\'])
                    .unwrap_or(f.pattern.len());
                path.starts_with(f.pattern[..literal].trim_end_matches('/'))
            })
        {
            return None;
        }
        Some(FilterId(index))
    }

    /// The recipe group a filter belongs to.
    pub fn group(&self, id: FilterId) -> &LeaveOut {
        &self.groups[self.filters[id.0].group]
    }

    /// Exclude patterns of `must_match` groups that are not in `used`, as
    /// `(group name, pattern)`.
    pub fn unused_required<'a>(
        &'a self,
        used: &'a BTreeSet<FilterId>,
    ) -> impl Iterator<Item = (&'a str, &'a str)> {
        self.filters
            .iter()
            .enumerate()
            .filter(|(i, f)| {
                !f.include && self.groups[f.group].must_match && !used.contains(&FilterId(*i))
            })
            .map(|(_, f)| (self.groups[f.group].name.as_str(), f.pattern.as_str()))
    }

    /// The text of [`DPKG_CFG_PATH`]: each group's reason as a comment, then
    /// its filters in dpkg.cfg syntax (dpkg(1): long options without `--`).
    pub fn dpkg_cfg(&self) -> String {
        let mut text = String::from(
            "# Written by kina image build from the recipe's leave_out groups: these\n\
             # paths were left out of this node image, and dpkg keeps them out of\n\
             # packages installed later. They stay listed in dpkg's database, so\n\
             # `dpkg -V` reports them as missing.\n",
        );
        for (index, group) in self.groups.iter().enumerate() {
            text.push_str(&format!("\n# {}: ", group.name));
            text.push_str(
                &group
                    .reason
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
            );
            text.push('\n');
            for f in self.filters.iter().filter(|f| f.group == index) {
                let option = if f.include {
                    "path-include"
                } else {
                    "path-exclude"
                };
                text.push_str(&format!("{option}={}\n", f.pattern));
            }
        }
        text
    }
}

/// fnmatch(3) with no flags, as dpkg calls it: `*` matches any run of bytes
/// and `?` any one byte, `/` and a leading `.` included; `[...]` is a
/// bracket expression with ranges and `!`/`^` negation; `\` quotes the next
/// byte. Hand-written because the glob crates give `**`, `{a,b}` or `/`
/// meanings of their own that dpkg's filters do not have.
pub fn fnmatch(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative matching with one backtrack point for the last `*`: a later
    // `*` can always absorb what an earlier one would have, so retrying only
    // the most recent star is complete (the classic wildcard algorithm).
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, n));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match bracket(&pattern[p..], name[n]) {
                Some((true, len)) => Some(p + len),
                Some((false, _)) => None,
                // An unclosed `[` is an ordinary character, as in glibc.
                None => (name[n] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == name[n]).then_some(p + 2),
            Some(&c) => (c == name[n]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                n += 1;
            }
            (None, Some((star_p, star_n))) => {
                p = star_p;
                n = star_n + 1;
                star = Some((star_p, star_n + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `c` against the bracket expression at the start of `pattern`;
/// returns whether it matched and the expression's length, or `None` when
/// the bracket is not closed.
fn bracket(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let mut lo = *pattern.get(i)?;
        if lo == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if lo == b'\\' {
            i += 1;
            lo = *pattern.get(i)?;
        }
        i += 1;
        if pattern.get(i) == Some(&b'-') && pattern.get(i + 1).is_some_and(|&h| h != b']') {
            let mut hi = pattern[i + 1];
            i += 2;
            if hi == b'\\' {
                hi = *pattern.get(i)?;
                i += 1;
            }
            matched |= lo <= c && c <= hi;
        } else {
            matched |= lo == c;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str, exclude: &[&str], include: &[&str]) -> LeaveOut {
        LeaveOut {
            name: name.into(),
            reason: "test".into(),
            path_exclude: exclude.iter().map(|s| s.to_string()).collect(),
            path_include: include.iter().map(|s| s.to_string()).collect(),
            must_match: false,
        }
    }

    #[test]
    fn fnmatch_follows_posix_without_flags() {
        let m = |p: &str, n: &str| fnmatch(p.as_bytes(), n.as_bytes());
        assert!(m("/usr/share/doc/*", "/usr/share/doc/x/README"));
        assert!(!m("/usr/share/doc/*", "/usr/share/doc"));
        assert!(m("/usr/*/READ*", "/usr/share/doc/package/README"));
        assert!(m("/a?c", "/a/c"), "? matches a slash");
        assert!(m("/x/.*", "/x/.hidden"));
        assert!(m("/lib/[a-c]x", "/lib/bx"));
        assert!(!m("/lib/[!a-c]x", "/lib/bx"));
        assert!(m("/lib/[^a-c]x", "/lib/dx"));
        assert!(m("/lib/[]]", "/lib/]"));
        assert!(m("/lib/\\*", "/lib/*"));
        assert!(!m("/lib/\\*", "/lib/a"));
        assert!(m("/lib/[x", "/lib/[x"), "an unclosed bracket is literal");
        assert!(m("*a*b*c", "/xaxxbxxc"));
        assert!(!m("*a*b*c", "/xaxxbxxcd"));
        assert!(m("/usr/**", "/usr/bin/ls"), "** is two stars, nothing more");
        assert!(!m("/{a,b}", "/a"), "braces are literal");
    }

    #[test]
    fn the_last_matching_filter_decides_and_directories_for_includes_stay() {
        let f = PathFilters::new(&[
            group(
                "docs",
                &["/usr/share/doc/*"],
                &["/usr/share/doc/*/copyright"],
            ),
            group("locales", &["/usr/share/locale/*"], &[]),
        ]);
        let group = |path: &str, dir: bool| f.excluded_by(path, dir).map(|id| &f.group(id).name);
        assert_eq!(group("/usr/share/doc/t/README", false).unwrap(), "docs");
        assert_eq!(f.excluded_by("/usr/share/doc/t/copyright", false), None);
        assert_eq!(
            f.excluded_by("/usr/share/doc/t", true),
            None,
            "kept for copyright"
        );
        assert_eq!(group("/usr/share/doc/t", false).unwrap(), "docs");
        assert_eq!(group("/usr/share/locale/de", true).unwrap(), "locales");
        assert_eq!(f.excluded_by("/usr/share/locale", true), None);
        assert_eq!(f.excluded_by("/usr/bin/ls", false), None);
    }

    #[test]
    fn the_dpkg_configuration_lists_every_filter_in_order_with_its_reason() {
        let f = PathFilters::new(&[group(
            "docs",
            &["/usr/share/doc/*"],
            &["/usr/share/doc/*/copyright"],
        )]);
        let cfg = f.dpkg_cfg();
        let lines: Vec<&str> = cfg.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "",
                "path-exclude=/usr/share/doc/*",
                "path-include=/usr/share/doc/*/copyright"
            ]
        );
        assert!(cfg.contains("# docs: test"));
    }
}
