//! The kubeadm configuration a node gets, made by the same code on the node
//! (kina-init writes it before running kubeadm) and on the host (`kina up
//! --dry-run` prints it): the documents for the image's Kubernetes
//! version, kind's patches applied with kind's semantics, and every
//! document checked against the shapes kubeadm decodes.

pub mod documents;
pub mod merge;
pub mod shapes;
pub mod version;

pub use documents::{
    CRI_SOCKET, Generated, IgnoredCheck, Inputs, PATCHABLE_KINDS, for_node, generate,
    init_documents, join_documents, kubelet_flags, render,
};
pub use merge::{PatchSet, apply_patch_sets};
pub use version::{ApiVersion, KIND_V1BETA4_FROM_MINOR, KubeVersion, OLDEST_MINOR};
