//! How the host replaces the spec of a node that runs: through the exec
//! channel kina controls on every provider (QEMU's virtio-serial port,
//! `container exec -i` on Apple), never by rewriting a file the node
//! shares with the host. Whether Apple's virtiofs shows a host-side rename
//! to a running guest, and how late, is not known (apple/container#141:
//! no inotify; Virtualization.framework's caching is closed), so a running
//! node takes new specs only from its own standard input.
//!
//! The host runs [`REPLACE_SPEC_ARGV`] in the node with the spec's bytes on
//! standard input. kina-init checks them (a [`crate::node_spec::NodeSpec`]
//! of this version, for the node and cluster the spec in force names),
//! replaces [`crate::node_spec::NODE_SPEC_PATH`] atomically, and prints
//! the [`digest`] of the file as stored, read back after the rename, on one
//! line. The host compares it with the digest of what it sent.

use sha2::{Digest as _, Sha256};

/// The command the host runs in a node to replace its spec.
pub const REPLACE_SPEC_ARGV: [&str; 2] = ["kina-init", "replace-spec"];

/// A spec's digest as kina-init answers it: `sha256:` and the SHA-256 of
/// the spec's bytes in 64 lowercase hex digits (the OCI descriptor form),
/// without the line's newline.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_oci_form_of_sha256() {
        // SHA-256 of the empty string (FIPS 180-4 test vector).
        assert_eq!(
            digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(digest(b"{}"), digest(b"{} "));
    }
}
