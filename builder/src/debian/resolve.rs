//! Choosing the packages of a node: the dependency closure of the requested
//! packages plus Debian's Essential and `Priority: required` base, for one
//! architecture, over several suites.
//!
//! The rules follow what `apt-get install --no-install-recommends` does on an
//! empty system when every root is named on its command line: roots are
//! marked first, so a dependency any root satisfies needs no choice; the
//! candidate of a name is its highest version in any suite (apt's default
//! pins); alternatives are tried in order, a real package before providers of
//! a virtual name; among several providers apt prefers Essential ones, then
//! higher priority. A test compares the result with apt's own simulation.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::packages::PackageRecord;
use super::relation::{Alternatives, Relation};
use crate::platform::Arch;

/// The packages for the base roots, and those the extra roots add on top.
#[derive(Debug)]
pub struct LayeredResolution<'a> {
    pub base: Vec<&'a PackageRecord>,
    pub extra: Vec<&'a PackageRecord>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("package {name} is not in any configured suite for {arch}{}", needed_by_text(.needed_by))]
    Missing {
        name: String,
        arch: Arch,
        needed_by: Vec<String>,
    },
    #[error(
        "{package} needs {relation}, but {}{}",
        describe_candidates(.candidates),
        needed_by_text(.needed_by)
    )]
    Unsatisfiable {
        package: String,
        relation: String,
        candidates: Vec<String>,
        needed_by: Vec<String>,
    },
    #[error(
        "{name} is a virtual package provided by {providers:?}; name one of them in the recipe"
    )]
    AmbiguousVirtual {
        name: String,
        providers: Vec<String>,
    },
    #[error("{a} and {b} cannot be installed together: {a} {kind} {relation}")]
    Conflict {
        a: String,
        b: String,
        kind: &'static str,
        relation: String,
    },
}

fn needed_by_text(chain: &[String]) -> String {
    if chain.is_empty() {
        String::new()
    } else {
        format!(" (pulled in by {})", chain.join(" ← "))
    }
}

fn describe_candidates(candidates: &[String]) -> String {
    if candidates.is_empty() {
        "no configured suite has it".to_string()
    } else {
        format!("the suites only have {}", candidates.join(", "))
    }
}

/// Candidate lookup over the universe of one architecture.
struct Universe<'a> {
    arch: Arch,
    candidates: BTreeMap<&'a str, &'a PackageRecord>,
    versions: BTreeMap<&'a str, Vec<&'a PackageRecord>>,
    providers: BTreeMap<&'a str, Vec<(&'a PackageRecord, &'a Relation)>>,
}

impl<'a> Universe<'a> {
    fn new(records: &'a [PackageRecord], arch: Arch) -> Self {
        let mut candidates: BTreeMap<&str, &PackageRecord> = BTreeMap::new();
        let mut versions: BTreeMap<&str, Vec<&PackageRecord>> = BTreeMap::new();
        for r in records {
            if r.architecture != arch.debian() && r.architecture != "all" {
                continue;
            }
            versions.entry(&r.name).or_default().push(r);
            let better = candidates
                .get(r.name.as_str())
                .is_none_or(|c| r.version > c.version);
            if better {
                candidates.insert(&r.name, r);
            }
        }
        let mut providers: BTreeMap<&str, Vec<(&PackageRecord, &Relation)>> = BTreeMap::new();
        for c in candidates.values() {
            for group in &c.provides {
                for p in group {
                    providers.entry(&p.name).or_default().push((c, p));
                }
            }
        }
        Self {
            arch,
            candidates,
            versions,
            providers,
        }
    }

    /// What `rel` would install if nothing selected satisfies it yet.
    fn choose(&self, rel: &Relation) -> Option<&'a PackageRecord> {
        if let Some(c) = self.candidates.get(rel.name.as_str())
            && rel.satisfied_by(&c.name, &c.version)
        {
            return Some(c);
        }
        let mut providers: Vec<&PackageRecord> = self
            .providers
            .get(rel.name.as_str())
            .into_iter()
            .flatten()
            .filter(|(_, p)| rel.satisfied_by_provide(p))
            .map(|(c, _)| *c)
            .collect();
        providers.sort_by(|a, b| {
            b.essential
                .cmp(&a.essential)
                .then_with(|| priority_rank(&a.priority).cmp(&priority_rank(&b.priority)))
                .then_with(|| a.name.cmp(&b.name))
        });
        providers.first().copied()
    }
}

/// Debian priorities, most important first.
fn priority_rank(priority: &str) -> u8 {
    match priority {
        "required" => 0,
        "important" => 1,
        "standard" => 2,
        "optional" => 3,
        _ => 4,
    }
}

/// The set being built, with why each package is in it.
struct Selection<'a> {
    chosen: BTreeMap<&'a str, &'a PackageRecord>,
    parent: BTreeMap<&'a str, &'a str>,
}

impl<'a> Selection<'a> {
    fn satisfies(&self, rel: &Relation) -> bool {
        if let Some(c) = self.chosen.get(rel.name.as_str())
            && rel.satisfied_by(&c.name, &c.version)
        {
            return true;
        }
        self.chosen.values().any(|c| {
            c.provides
                .iter()
                .flatten()
                .any(|p| rel.satisfied_by_provide(p))
        })
    }

    fn chain(&self, name: &str) -> Vec<String> {
        let mut chain = Vec::new();
        let mut current = name;
        while let Some(parent) = self.parent.get(current) {
            chain.push(parent.to_string());
            current = parent;
            if chain.len() > 64 {
                break;
            }
        }
        chain
    }
}

/// Resolves `base_roots` (plus the Essential/required base) and then
/// `extra_roots` on top, reporting which packages only the extra roots need.
pub fn resolve_layered<'a>(
    records: &'a [PackageRecord],
    arch: Arch,
    base_roots: &[String],
    extra_roots: &[String],
) -> Result<LayeredResolution<'a>, ResolveError> {
    let universe = Universe::new(records, arch);
    let mut selection = Selection {
        chosen: BTreeMap::new(),
        parent: BTreeMap::new(),
    };
    let mut base_names: Vec<&str> = universe
        .candidates
        .values()
        .filter(|c| c.essential || c.priority == "required")
        .map(|c| c.name.as_str())
        .collect();
    base_names.extend(base_roots.iter().map(String::as_str));
    close_over(&universe, &mut selection, &base_names)?;
    let base: BTreeSet<&str> = selection.chosen.keys().copied().collect();

    let extra_names: Vec<&str> = extra_roots.iter().map(String::as_str).collect();
    close_over(&universe, &mut selection, &extra_names)?;
    check_conflicts(&selection)?;

    let (base_set, extra_set): (Vec<_>, Vec<_>) = selection
        .chosen
        .values()
        .copied()
        .partition(|p| base.contains(p.name.as_str()));
    Ok(LayeredResolution {
        base: base_set,
        extra: extra_set,
    })
}

/// Selects `roots` (all at once, like apt's first marking pass), then every
/// dependency they need, breadth first in root order.
fn close_over<'a>(
    universe: &Universe<'a>,
    selection: &mut Selection<'a>,
    roots: &[&str],
) -> Result<(), ResolveError> {
    let mut queue = VecDeque::new();
    for &name in roots {
        let record = match universe.candidates.get(name) {
            Some(r) => *r,
            None => {
                let providers: Vec<&PackageRecord> = universe
                    .providers
                    .get(name)
                    .into_iter()
                    .flatten()
                    .map(|(c, _)| *c)
                    .collect();
                match providers.as_slice() {
                    [] => {
                        return Err(ResolveError::Missing {
                            name: name.to_string(),
                            arch: universe.arch,
                            needed_by: vec!["the recipe".into()],
                        });
                    }
                    [only] => *only,
                    many => {
                        return Err(ResolveError::AmbiguousVirtual {
                            name: name.to_string(),
                            providers: many.iter().map(|p| p.name.clone()).collect(),
                        });
                    }
                }
            }
        };
        if selection.chosen.insert(&record.name, record).is_none() {
            queue.push_back(record);
        }
    }
    while let Some(package) = queue.pop_front() {
        let groups: Vec<&Alternatives> =
            package.pre_depends.iter().chain(&package.depends).collect();
        for group in groups {
            if group.iter().any(|rel| selection.satisfies(rel)) {
                continue;
            }
            let Some(choice) = group.iter().find_map(|rel| universe.choose(rel)) else {
                let relation = group
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" | ");
                let candidates = group
                    .iter()
                    .flat_map(|rel| {
                        universe
                            .versions
                            .get(rel.name.as_str())
                            .into_iter()
                            .flatten()
                    })
                    .map(|r| format!("{} {} ({})", r.name, r.version, r.suite))
                    .collect::<Vec<_>>();
                let mut needed_by = selection.chain(&package.name);
                if needed_by.is_empty() {
                    needed_by.push("the recipe".into());
                }
                return Err(ResolveError::Unsatisfiable {
                    package: format!("{} {}", package.name, package.version),
                    relation,
                    candidates,
                    needed_by,
                });
            };
            if selection.chosen.insert(&choice.name, choice).is_none() {
                selection.parent.insert(&choice.name, &package.name);
                queue.push_back(choice);
            }
        }
    }
    Ok(())
}

fn check_conflicts(selection: &Selection<'_>) -> Result<(), ResolveError> {
    for a in selection.chosen.values() {
        for (kind, groups) in [("conflicts with", &a.conflicts), ("breaks", &a.breaks)] {
            for rel in groups.iter().flatten() {
                for b in selection.chosen.values() {
                    if b.name == a.name {
                        continue;
                    }
                    let hit = rel.satisfied_by(&b.name, &b.version)
                        || b.provides
                            .iter()
                            .flatten()
                            .any(|p| rel.satisfied_by_provide(p));
                    if hit {
                        return Err(ResolveError::Conflict {
                            a: format!("{} {}", a.name, a.version),
                            b: format!("{} {}", b.name, b.version),
                            kind,
                            relation: rel.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::packages::parse_packages;
    use crate::digest::Sha256Digest;
    use crate::recipe::DebianArchive;

    /// A small index in the exact format of a real `Packages` file.
    fn universe(stanzas: &[(&str, &str, &str)], suite: &str) -> Vec<PackageRecord> {
        let mut text = String::new();
        for (name, version, extra) in stanzas {
            text.push_str(&format!(
                "Package: {name}\nVersion: {version}\nArchitecture: amd64\nFilename: pool/{name}_{version}.deb\nSize: 1\nSHA256: {}\n{extra}\n",
                Sha256Digest::of(name.as_bytes()).hex()
            ));
        }
        parse_packages(&text, DebianArchive::Debian, suite, Arch::Amd64).unwrap()
    }

    fn names(r: &[&PackageRecord]) -> Vec<String> {
        r.iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect()
    }

    fn roots(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn essential_and_required_packages_are_always_included() {
        let u = universe(
            &[
                ("base-files", "13", "Essential: yes\n"),
                ("mawk", "1.3", "Priority: required\nProvides: awk\n"),
                ("unrelated", "1", "Priority: optional\n"),
            ],
            "trixie",
        );
        let r = resolve_layered(&u, Arch::Amd64, &[], &[]).unwrap();
        assert_eq!(names(&r.base), ["base-files 13", "mawk 1.3"]);
    }

    #[test]
    fn the_highest_version_across_suites_wins() {
        let mut u = universe(&[("containerd", "1.7.24~ds1-6", "")], "trixie");
        u.extend(universe(
            &[("containerd", "1.7.24~ds1-6+deb13u1", "")],
            "trixie-security",
        ));
        let r = resolve_layered(&u, Arch::Amd64, &[], &roots(&["containerd"])).unwrap();
        assert_eq!(names(&r.extra), ["containerd 1.7.24~ds1-6+deb13u1"]);
        assert_eq!(r.extra[0].suite, "trixie-security");
    }

    #[test]
    fn a_satisfied_alternative_needs_no_choice_and_the_first_installable_is_chosen() {
        let u = universe(
            &[
                ("app", "1", "Depends: gawk | mawk, libx (>= 2) | liby\n"),
                ("mawk", "1", "Priority: required\n"),
                ("gawk", "1", ""),
                ("libx", "1", ""),
                ("liby", "1", ""),
            ],
            "s",
        );
        let r = resolve_layered(&u, Arch::Amd64, &roots(&["app"]), &[]).unwrap();
        assert_eq!(names(&r.base), ["app 1", "liby 1", "mawk 1"]);
    }

    #[test]
    fn virtual_packages_resolve_through_versioned_provides() {
        let u = universe(
            &[
                ("app", "1", "Depends: libfoo-abi (>= 2)\n"),
                ("old", "1", "Provides: libfoo-abi (= 1)\n"),
                ("new", "1", "Provides: libfoo-abi (= 2)\n"),
            ],
            "s",
        );
        let r = resolve_layered(&u, Arch::Amd64, &roots(&["app"]), &[]).unwrap();
        assert_eq!(names(&r.base), ["app 1", "new 1"]);
    }

    #[test]
    fn extra_roots_get_only_what_the_base_lacks() {
        let u = universe(
            &[
                ("libc6", "2.41", "Priority: required\n"),
                ("containerd", "1.7", "Depends: libc6, runc\n"),
                ("runc", "1.1", "Depends: libc6\n"),
            ],
            "s",
        );
        let r = resolve_layered(&u, Arch::Amd64, &[], &roots(&["containerd"])).unwrap();
        assert_eq!(names(&r.base), ["libc6 2.41"]);
        assert_eq!(names(&r.extra), ["containerd 1.7", "runc 1.1"]);
    }

    #[test]
    fn a_missing_package_is_named_with_who_needs_it() {
        let u = universe(&[("iptables", "1.8", "Depends: libnftnl11\n")], "trixie");
        let err = resolve_layered(&u, Arch::Amd64, &roots(&["iptables"]), &[]).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("libnftnl11") && text.contains("iptables"),
            "{text}"
        );
        let err = resolve_layered(&u, Arch::Amd64, &roots(&["nosuch"]), &[]).unwrap_err();
        assert!(err.to_string().contains("nosuch"), "{err}");
    }

    #[test]
    fn an_unsatisfiable_version_lists_the_candidates() {
        let u = universe(
            &[("app", "1", "Depends: libz (>= 3)\n"), ("libz", "2", "")],
            "trixie",
        );
        let text = resolve_layered(&u, Arch::Amd64, &roots(&["app"]), &[])
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("libz (>= 3)") && text.contains("libz 2 (trixie)"),
            "{text}"
        );
    }

    #[test]
    fn conflicting_packages_are_refused() {
        let u = universe(&[("a", "1", "Conflicts: b\n"), ("b", "1", "")], "s");
        let err = resolve_layered(&u, Arch::Amd64, &roots(&["a", "b"]), &[]).unwrap_err();
        assert!(matches!(err, ResolveError::Conflict { .. }), "{err}");
    }

    #[test]
    fn a_package_conflicting_with_what_it_provides_itself_is_fine() {
        let u = universe(&[("mawk", "1", "Provides: awk\nConflicts: awk\n")], "s");
        assert!(resolve_layered(&u, Arch::Amd64, &roots(&["mawk"]), &[]).is_ok());
    }
}
