//! The Debian archive: signed releases, package indexes, versions, dependency resolution.
