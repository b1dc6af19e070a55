//! The node's root filesystem in memory, and the effects of maintainer scripts kina reproduces.

pub mod tree;
