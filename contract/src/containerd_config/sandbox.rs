//! containerd's sandbox (pause) image: the one the node image's kubeadm
//! pulls for its Kubernetes version, so containerd pins the image kubeadm
//! preloads or pulls and a node never fetches a second pause image (since
//! Kubernetes 1.35 the kubelet has no `--pod-infra-container-image`, so the
//! CRI's pinned sandbox image is the only one that matters).
//!
//! kina-init asks the image's kubeadm (`kubeadm config images list`,
//! [`pause_from_kubeadm_images`]); the table here is for where kubeadm
//! cannot be asked: the host's `kina up --dry-run`, and a node image
//! without Kubernetes, which gets the newest entry.

use std::fmt;

/// Where kubeadm takes its images from when no `imageRepository` is set.
pub const PAUSE_REPOSITORY: &str = "registry.k8s.io/pause";

/// The pause tag kubeadm uses per Kubernetes minor (1.x): kubespray
/// `roles/kubespray_defaults/vars/main/main.yml:9-12` at 46dbdd3
/// (`pod_infra_supported_versions`: 1.36 3.10.2, 1.35 3.10.1, 1.34 3.10.1),
/// with 1.36's 3.10.2 confirmed by kubeclipper PR #947 ("k8s 1.36 uses
/// pause:3.10.2, not 3.10.1"). Oldest first.
pub const PAUSE_BY_MINOR: [(u32, &str); 3] = [(34, "3.10.1"), (35, "3.10.1"), (36, "3.10.2")];

/// A Kubernetes version the table has no pause tag for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKubernetesVersion {
    pub version: String,
}

impl fmt::Display for UnknownKubernetesVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let known: Vec<String> = PAUSE_BY_MINOR
            .iter()
            .map(|(minor, _)| format!("1.{minor}"))
            .collect();
        write!(
            f,
            "no pause image is known for Kubernetes `{}` (kina knows {}); the node image's \
             kubeadm says which with `kubeadm config images list`",
            self.version,
            known.join(", ")
        )
    }
}

impl std::error::Error for UnknownKubernetesVersion {}

/// The pause image for `kubernetes_version` (`v1.34.11`, `1.34.11` or
/// `1.34`); for `None` (an image without Kubernetes) the newest one.
pub fn pause_image(kubernetes_version: Option<&str>) -> Result<String, UnknownKubernetesVersion> {
    let tag = match kubernetes_version {
        None => PAUSE_BY_MINOR[PAUSE_BY_MINOR.len() - 1].1,
        Some(version) => {
            let unknown = || UnknownKubernetesVersion {
                version: version.to_string(),
            };
            let minor = minor_of(version).ok_or_else(unknown)?;
            PAUSE_BY_MINOR
                .iter()
                .find(|(m, _)| *m == minor)
                .map(|(_, tag)| *tag)
                .ok_or_else(unknown)?
        }
    };
    Ok(format!("{PAUSE_REPOSITORY}:{tag}"))
}

/// The minor of a `1.x` version.
fn minor_of(version: &str) -> Option<u32> {
    let mut parts = version.trim().trim_start_matches('v').split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The pause image in the output of `kubeadm config images list` (its
/// default text output: one image reference per line, e.g.
/// `registry.k8s.io/pause:3.10.1`, as kubeadm's reference page
/// `kubeadm_config_images_list.md` and its `imagesList` printer show): the
/// line whose repository's last path element is `pause`. Anything else
/// kubeadm prints (warnings go to stderr, but a line of another shape is
/// skipped, not misread).
pub fn pause_from_kubeadm_images(output: &str) -> Option<String> {
    output.lines().map(str::trim).find_map(|line| {
        if line.is_empty() || line.contains(char::is_whitespace) {
            return None;
        }
        let (repository, tag) = line.rsplit_once(':')?;
        let name = repository.rsplit('/').next()?;
        (name == "pause" && !tag.is_empty() && !tag.contains('/')).then(|| line.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_gives_kubeadms_pause_per_minor() {
        assert_eq!(
            pause_image(Some("v1.34.11")).unwrap(),
            "registry.k8s.io/pause:3.10.1"
        );
        assert_eq!(
            pause_image(Some("1.35.8")).unwrap(),
            "registry.k8s.io/pause:3.10.1"
        );
        assert_eq!(
            pause_image(Some("v1.36.4")).unwrap(),
            "registry.k8s.io/pause:3.10.2"
        );
        assert_eq!(
            pause_image(Some("1.36")).unwrap(),
            "registry.k8s.io/pause:3.10.2"
        );
        // Without Kubernetes: the newest.
        assert_eq!(pause_image(None).unwrap(), "registry.k8s.io/pause:3.10.2");
        for unknown in ["v1.33.5", "1.37.0", "2.34.0", "latest", ""] {
            let err = pause_image(Some(unknown)).unwrap_err();
            assert_eq!(err.version, unknown);
            assert!(err.to_string().contains("1.34, 1.35, 1.36"), "{err}");
        }
    }

    #[test]
    fn the_pause_line_is_picked_from_kubeadms_image_list() {
        // The text output of `kubeadm config images list
        // --kubernetes-version v1.34.1`, one reference per line.
        let listed = "registry.k8s.io/kube-apiserver:v1.34.1\n\
                      registry.k8s.io/kube-controller-manager:v1.34.1\n\
                      registry.k8s.io/kube-scheduler:v1.34.1\n\
                      registry.k8s.io/kube-proxy:v1.34.1\n\
                      registry.k8s.io/coredns/coredns:v1.12.1\n\
                      registry.k8s.io/pause:3.10.1\n\
                      registry.k8s.io/etcd:3.6.4-0\n";
        assert_eq!(
            pause_from_kubeadm_images(listed).as_deref(),
            Some("registry.k8s.io/pause:3.10.1")
        );
        // Another repository (an imageRepository setting) is kept as is.
        assert_eq!(
            pause_from_kubeadm_images("mirror.example:5000/k8s/pause:3.10.2\n").as_deref(),
            Some("mirror.example:5000/k8s/pause:3.10.2")
        );
        // A registry port is not a tag, and no pause line is no answer.
        assert_eq!(pause_from_kubeadm_images("localhost:5000/pause\n"), None);
        assert_eq!(
            pause_from_kubeadm_images("registry.k8s.io/etcd:3.6.4-0\n"),
            None
        );
        assert_eq!(
            pause_from_kubeadm_images("W0101 could not find pause:3.10\n"),
            None
        );
        assert_eq!(pause_from_kubeadm_images(""), None);
        // Not misled by an image merely ending in "pause".
        assert_eq!(
            pause_from_kubeadm_images("registry.k8s.io/nopause:1\n"),
            None
        );
    }
}
