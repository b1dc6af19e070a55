//! What a provider cannot honour in a config that is otherwise valid: a
//! mount's propagation across a VM boundary, SCTP port forwarding, two
//! kernels for Apple's `container`, and so on.
//!
//! These are refused before anything boots, naming the field and why,
//! instead of being silently ignored. Each provider asks for its list
//! (`Provider::refusals`).

use super::{
    ClusterConfig, FieldError, KinaSettings, Mount, Node, PortMapping, Propagation, Protocol,
};

impl ClusterConfig {
    /// What QEMU nodes cannot honour in this config, each saying why. The
    /// QEMU provider adds the subnets that collide with its own networks,
    /// which are its to know (`provider::qemu`).
    pub fn qemu_refusals(&self) -> Vec<FieldError> {
        self.refusals(
            qemu_kernel_image_refusal(&self.kina).into_iter().collect(),
            |path, mount| vec![qemu_mount_refusal(path.to_string(), mount)],
            "QEMU's user-mode network forwards TCP and UDP only",
        )
    }

    /// What Apple's `container` cannot honour in this config.
    pub fn apple_refusals(&self) -> Vec<FieldError> {
        self.refusals(
            apple_kernel_refusal(&self.kina).into_iter().collect(),
            apple_mount_refusals,
            "Apple's container forwards TCP and UDP ports only",
        )
    }

    /// `own` (the provider's refusals of the whole config), then each
    /// node's: its image, its mounts as
    /// `mount` judges them, SCTP mappings (`sctp_why` says why not).
    fn refusals(
        &self,
        own: Vec<FieldError>,
        mount: impl Fn(&str, &Mount) -> Vec<FieldError>,
        sctp_why: &str,
    ) -> Vec<FieldError> {
        let c = &self.cluster;
        let mut out = own;
        for (n, node) in c.nodes.iter().enumerate() {
            out.extend(kindest_image_refusal(n, node));
            for (m, each) in node.extra_mounts.iter().enumerate() {
                out.extend(mount(&format!("nodes[{n}].extraMounts[{m}]"), each));
            }
            for (p, mapping) in node.extra_port_mappings.iter().enumerate() {
                let path = format!("nodes[{n}].extraPortMappings[{p}]");
                out.extend(sctp_refusal(&path, mapping, sctp_why));
            }
        }
        out
    }
}

/// A kernel image on QEMU, whose nodes boot a recipe's kernel with its
/// modules.
fn qemu_kernel_image_refusal(kina: &KinaSettings) -> Option<FieldError> {
    kina.kernel_image.is_some().then(|| {
        FieldError::kina(
            "kernelImage",
            "a kernel image is for Apple's `container --kernel`; QEMU nodes boot the kernel \
             of a kernel recipe with its modules: name the recipe in `kernel` instead",
        )
    })
}

/// Two kernels for Apple's `container --kernel`, which boots one image: a
/// kina kernel (`kernel`, whose image kina passes) and `kernelImage`. What
/// `kernel` names is told apart when it is opened (`crate::node_kernel`),
/// which refuses a Debian kernel recipe there.
fn apple_kernel_refusal(kina: &KinaSettings) -> Option<FieldError> {
    (kina.kernel.is_some() && kina.kernel_image.is_some()).then(|| {
        FieldError::kina(
            "kernel",
            "`kernel` and `kernelImage` both name the kernel Apple's `container --kernel` \
             boots; keep `kernel` for a kernel kina built or pulled, or `kernelImage` for \
             any other kernel image built for Apple's VMs",
        )
    })
}

/// One of kind's own node images, which no kina provider can boot.
fn kindest_image_refusal(n: usize, node: &Node) -> Option<FieldError> {
    let image = node
        .image
        .as_ref()
        .filter(|image| is_kindest_image(image))?;
    Some(FieldError::cluster(
        format!("nodes[{n}].image"),
        format!(
            "{image} is one of kind's node images, made to run as a container under \
             systemd; a kina node boots a kina node image (`kina image list`; leave \
             `image` out for kina's default)"
        ),
    ))
}

pub(super) fn is_kindest_image(image: &str) -> bool {
    let repo = image
        .strip_prefix("docker.io/")
        .or_else(|| image.strip_prefix("index.docker.io/"))
        .unwrap_or(image);
    repo.starts_with("kindest/node:") || repo.starts_with("kindest/node@") || repo == "kindest/node"
}

/// Any mount on QEMU, whose VMs have no shared-directory device.
fn qemu_mount_refusal(path: String, mount: &Mount) -> FieldError {
    FieldError::cluster(
        path,
        format!(
            "the QEMU provider cannot share host directories with a node yet \
             (its VMs have no virtiofs or 9p device), so {} cannot appear at {}",
            mount.host_path, mount.container_path
        ),
    )
}

/// What an Apple `container` mount cannot do across the VM boundary.
fn apple_mount_refusals(path: &str, mount: &Mount) -> Vec<FieldError> {
    let mut out = Vec::new();
    if mount.propagation != Propagation::None {
        out.push(FieldError::cluster(
            format!("{path}.propagation"),
            format!(
                "{:?} propagation needs the host and the node to share a kernel; a \
                 kina node is a VM with its own, so mounts made later on either side \
                 never reach the other (use None)",
                mount.propagation
            ),
        ));
    }
    if mount.selinux_relabel {
        out.push(FieldError::cluster(
            format!("{path}.selinuxRelabel"),
            "relabelling gives the host directory the SELinux label of the \
             container using it (docker's `:Z`); macOS has no SELinux and a kina node \
             is a VM, not a container with a label",
        ));
    }
    out
}

/// SCTP, which neither provider's port forwarding carries.
fn sctp_refusal(path: &str, mapping: &PortMapping, why: &str) -> Option<FieldError> {
    (mapping.protocol == Protocol::Sctp).then(|| {
        FieldError::cluster(
            format!("{path}.protocol"),
            format!("SCTP cannot be forwarded: {why}"),
        )
    })
}
